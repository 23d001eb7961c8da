"""``compare``: two SAEs, or two encoders' SAEs, on the same images (docs/originals.md §4.9).

- Linear CKA (unbiased HSIC, computed in feature space: no N x N matrix, docs/originals.md D9) between the two
  SAEs' per-image codes, and between the two stores' raw activations when they differ.
- SDF overlap: 1 - KS distance between the cumulative curves of the latents' inter-class variances.
- Principal angles between the decoder spans of each SAE's top latents for a label, only when both
  read the same input space (same store); across encoders the seed zero-padded the dimensions,
  which has no geometric meaning (docs/originals.md D19), so it is skipped there.
- Shared and unique latents: one-to-one matching on decoder cosine (same input space) or on the
  correlation of the per-image codes (different encoders); matched above ``threshold`` = shared.

Images are paired by ``original_indices`` when both stores have them, else by position (the two
splits must then have the same size).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.errors import VistaError
from vista.metrics.alignment import class_means, inter_class_variance
from vista.metrics.similarity import (
    ks_overlap,
    linear_cka,
    matched_similarity,
    principal_angles,
    unit_rows,
)

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class CompareConfig:
    other_sae: str = ""
    """The SAE to compare with."""
    other_store: str = ""
    """Its store of the same images ('' = this store: two SAEs of one encoder)."""
    top_latents: int = 50
    """Latents per label whose decoder spans are compared (principal angles)."""
    threshold: float = 0.7
    """Matched cosine (or correlation) above which a latent counts as shared."""
    max_exact: int = 4096


def _needs(cfg: CompareConfig) -> str:
    return "" if cfg.other_sae else "it needs the SAE to compare with: compare.other_sae=DIR"


def _pairing(ctx: Context, other: Context) -> tuple[np.ndarray, np.ndarray]:
    a, b = ctx.original_indices, other.original_indices
    if a is not None and b is not None:
        common, ia, ib = np.intersect1d(a, b, return_indices=True)
        if len(common) < 4:
            raise VistaError(
                "compare: the two stores share fewer than 4 images (by original_indices)."
            )
        return ia, ib
    if ctx.info.n_rows != other.info.n_rows:
        raise VistaError(
            f"compare: the splits hold {ctx.info.n_rows} and {other.info.n_rows} images and no "
            "original_indices to pair them; extract both from the same dataset split."
        )
    idx = np.arange(ctx.info.n_rows)
    return idx, idx


def _corr_similarity(x: Any, y: Any) -> np.ndarray:
    """Pearson correlation between every column of x and of y (per-image codes)."""

    def z(m: Any) -> np.ndarray:
        d = np.asarray(m.toarray() if hasattr(m, "toarray") else m, dtype=np.float64)
        d -= d.mean(axis=0)
        return d / np.maximum(np.linalg.norm(d, axis=0), 1e-12)

    return z(x).T @ z(y)


def shared_latents(
    r: Result, ctx: Context, other_sae: Any, ca: Any, cb: Any, same_space: bool, cfg: CompareConfig
) -> None:
    """One-to-one matching of the two SAEs' latents; shared above ``cfg.threshold``."""
    if same_space:
        wa = unit_rows(ctx.sae.W_dec.detach().cpu().numpy())
        sim = (wa @ unit_rows(other_sae.W_dec.detach().cpu().numpy()).T).astype(np.float32)
        basis = "decoder cosine"
    else:
        alive_a = np.flatnonzero(np.asarray((ca != 0).sum(axis=0)).ravel())
        alive_b = np.flatnonzero(np.asarray((cb != 0).sum(axis=0)).ravel())
        sim = np.zeros((ca.shape[1], cb.shape[1]), dtype=np.float32)
        sim[np.ix_(alive_a, alive_b)] = _corr_similarity(ca[:, alive_a], cb[:, alive_b])
        basis = "code correlation"
    value, partner, how = matched_similarity(sim, cfg.max_exact)
    r.add("fraction_shared", float((value >= cfg.threshold).mean()), "none", n=len(value))
    r.add("mean_matched_similarity", float(value.mean()), "none", n=len(value))
    r.arrays["matched_similarity"] = value.astype(np.float32)
    r.arrays["matched_latent"] = partner.astype(np.int64)
    r.metadata.update(match_basis=basis, matching=how)


def per_label(
    r: Result,
    ctx: Context,
    other: Context,
    ia: np.ndarray,
    ca: Any,
    cb: Any,
    same_space: bool,
    cfg: CompareConfig,
) -> None:
    """SDF overlap, and principal angles of the top latents' decoder spans (same space only)."""
    for label in [k for k, why in ctx.usable_labels().items() if not why and k in other.labels]:
        y = ctx.labels[label][ia]
        n_cls = len(ctx.class_names[label])
        va = inter_class_variance(class_means(ca, y, n_cls))
        vb = inter_class_variance(class_means(cb, y, n_cls))
        r.add(f"{label}/sdf_overlap", ks_overlap(va, vb), "none")
        if not same_space:
            r.skipped[f"{label}/principal_angles"] = (
                "the two SAEs read different input spaces (docs/originals.md D19)"
            )
            continue
        ta = np.argsort(-va, kind="stable")[: cfg.top_latents]
        tb = np.argsort(-vb, kind="stable")[: cfg.top_latents]
        cos = principal_angles(
            ctx.sae.W_dec.detach().cpu().numpy()[ta].T.astype(np.float64),
            other.sae.W_dec.detach().cpu().numpy()[tb].T.astype(np.float64),
        )
        r.add(
            f"{label}/mean_cos_principal_angle",
            float(cos.mean()) if len(cos) else 0.0,
            "none",
            n=len(cos),
        )
        r.add(
            f"{label}/grassmann_distance", float(np.linalg.norm(np.arccos(cos))), "none", n=len(cos)
        )


OUT = Outputs("compare")
OUT.scalar("cka_codes", "none", "linear CKA of the two SAEs' codes")
OUT.scalar("cka_raw", "none", "linear CKA of the two stores' activations")
OUT.scalar("fraction_shared", "none", "share of latents matched above threshold")
OUT.scalar("mean_matched_similarity", "none", "mean similarity of matched latents")
OUT.scalar("{label}/sdf_overlap", "none", "overlap of the two SAEs' top latents by class variance")
OUT.scalar("{label}/mean_cos_principal_angle", "none", "mean cosine of the principal angles")
OUT.scalar("{label}/grassmann_distance", "none", "Grassmann distance of the top latents' spans")
OUT.array("matched_similarity", "per latent: similarity with its match")
OUT.array("matched_latent", "per latent: its match in the other SAE")


@register_analysis(
    "compare",
    CompareConfig,
    "Two SAEs or two encoders on the same images: CKA, SDF overlap, principal angles, shared latents.",
    needs=_needs,
    order=230,
    outputs=OUT,
)
def run(ctx: Context, cfg: CompareConfig) -> Result:
    from vista.analysis.context import Context as Ctx
    from vista.saes.io import load_sae

    store = Path(cfg.other_store) if cfg.other_store else ctx.store
    other_sae = load_sae(cfg.other_sae, device=ctx.settings.device)
    other = Ctx(other_sae, store, ctx.settings, sae_path=cfg.other_sae)
    ia, ib = _pairing(ctx, other)
    ca, cb = ctx.encoded.codes[ia], other.encoded.codes[ib]
    same_space = store.resolve() == ctx.store.resolve()
    r = Result("compare")
    r.add("cka_codes", linear_cka(ca, cb), "none", n=len(ia))
    if not same_space:
        raw = linear_cka(ctx.encoded.pooled_raw[ia], other.encoded.pooled_raw[ib])
        r.add("cka_raw", raw, "none", n=len(ia))
    shared_latents(r, ctx, other_sae, ca, cb, same_space, cfg)
    per_label(r, ctx, other, ia, ca, cb, same_space, cfg)
    r.metadata.update(other_sae=cfg.other_sae, other_store=str(store))
    r.headline = [k for k in ("cka_codes", "cka_raw", "fraction_shared") if k in r.scalars]
    return r
