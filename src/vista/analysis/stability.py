"""``stability``: do the same features come back when the SAE is trained again with another seed?

Decoder rows of this SAE are matched one-to-one to those of each other SAE (Hungarian assignment
on cosine similarity, scipy's ``linear_sum_assignment``; greedy above ``max_exact`` latents); a
latent's stability is its mean matched cosine over the other SAEs. The null is the same matching
against random dictionaries of the same size, drawn from a Gaussian with the activations'
covariance (``null=data``: directions a trained decoder could plausibly hold) or isotropic; a
latent is ``stable`` when its stability exceeds the ``null_quantile`` of the null's matched cosines.
Decoder agreement can sit close to such a null (Null-Calibrated Evaluation of SAE Decoder
Reproducibility, ICML 2026), hence the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.similarity import matched_similarity, unit_rows
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class StabilityConfig:
    saes: list[str] = field(default_factory=list)
    """Other SAEs trained on the same store (other seeds): directories or files any verb reads."""
    null: str = "data"
    """data (Gaussian with the activations' covariance) or isotropic."""
    null_draws: int = 2
    null_quantile: float = 0.99
    max_exact: int = 4096
    """Hungarian up to this many latents, greedy matching above."""


def _needs(cfg: StabilityConfig) -> str:
    if not cfg.saes:
        return "it needs other SAEs trained on the same store, e.g. stability.saes=[DIR_seed1,DIR_seed2]"
    if cfg.null not in ("data", "isotropic"):
        return f"unknown stability.null {cfg.null!r} (data or isotropic)"
    return ""


def null_dictionary(ctx: Context, n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    d = ctx.sae.d_model
    z = rng.standard_normal((n, d))
    if kind == "data":
        x = ctx.encoded.pooled_raw.astype(np.float64)
        cov = np.cov(x, rowvar=False) + 1e-9 * np.eye(d)
        z = z @ np.linalg.cholesky(cov).T
    return unit_rows(z)


def _matched(ctx: Context, mine: np.ndarray, cfg: StabilityConfig) -> tuple[list[np.ndarray], str]:
    """Per other SAE, each latent's cosine with its matched latent there; and the matching used."""
    from vista.errors import VistaError
    from vista.saes.io import load_sae

    matched, how = [], "hungarian"
    for path in cfg.saes:
        other = load_sae(path)
        if other.d_model != ctx.sae.d_model:
            raise VistaError(
                f"stability: {path!r} reads {other.d_model}-d activations, not {ctx.sae.d_model}."
            )
        value, _, how = matched_similarity(
            mine @ unit_rows(other.W_dec.detach().cpu().numpy()).T, cfg.max_exact
        )
        matched.append(value)
    return matched, how


OUT = Outputs("stability")
STABILITY_MEAN = OUT.scalar("mean_stability", "higher", "mean matched cosine over the other SAEs")
OUT.scalar("null_mean", "none", "mean matched cosine against random dictionaries")
OUT.scalar("null_threshold", "none", "the null quantile a stable latent must pass")
OUT.scalar("fraction_stable", "higher", "share of latents above the null threshold")
OUT.scalar("n_other_saes", "none", "SAEs compared with")
STABILITY = OUT.array("stability", "per latent: mean matched cosine")
STABLE = OUT.array("stable", "per latent: above the null threshold")
OUT.array("null_matched_cosine", "matched cosines against the null dictionaries")
OUT.array("matched_cosine_per_sae", "(other SAEs, latents): matched cosines")


@register_analysis(
    "stability",
    StabilityConfig,
    "Reseed stability: Hungarian-matched decoder cosines against other seeds and a random null.",
    needs=_needs,
    order=220,
    outputs=OUT,
)
def run(ctx: Context, cfg: StabilityConfig) -> Result:
    s = ctx.settings
    mine = unit_rows(ctx.sae.W_dec.detach().cpu().numpy())
    matched, how = _matched(ctx, mine, cfg)
    stab = np.mean(matched, axis=0)
    rng = ctx.rng("stability", "null")
    null = np.concatenate(
        [
            matched_similarity(
                mine @ null_dictionary(ctx, mine.shape[0], cfg.null, rng).T, cfg.max_exact
            )[0]
            for _ in range(max(1, cfg.null_draws))
        ]
    )
    cut = float(np.quantile(null, cfg.null_quantile))
    stable = stab > cut
    r = Result("stability")
    n = len(stab)
    r.add(
        "mean_stability",
        float(stab.mean()),
        "higher",
        mean_ci(stab, s.n_boot, ctx.rng("stability"), s.confidence),
        n,
    )
    r.add("null_mean", float(null.mean()), "none", n=len(null))
    r.add("null_threshold", cut, "none")
    r.add(
        "fraction_stable",
        float(stable.mean()),
        "higher",
        mean_ci(stable, s.n_boot, ctx.rng("stability", "f"), s.confidence),
        n,
    )
    r.add("n_other_saes", len(cfg.saes), "none")
    r.headline = ["mean_stability", "null_mean", "fraction_stable"]
    r.arrays["stability"] = stab.astype(np.float32)
    r.arrays["stable"] = stable
    r.arrays["null_matched_cosine"] = null.astype(np.float32)
    r.arrays["matched_cosine_per_sae"] = np.asarray(matched, dtype=np.float32)
    r.metadata["matching"] = how
    r.metadata["other_saes"] = list(cfg.saes)
    return r
