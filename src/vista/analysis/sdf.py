"""``sdf``: the selective demographic features (SDFs) of each class, and how aligned they are
(docs/originals.md §4.3; VISTA's 3-stage filter by default, the paper's definition with ``sdf.method=paper``).

An SDF's alignment rate is the share of its ``k_top`` highest-activating images that belong to its
class; chance is the class's share of the images, so ``lift = rate / chance`` says how much better
than chance it is. Intervals: per SDF, a bootstrap over its top images; per class, over its SDFs.
SDFs are listed in importance order (lowest label entropy first), and ``ranking`` orders the union
of all SDFs by alignment rate, so "the first k SDFs" are the most aligned (docs/originals.md D17).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.sdf import alignment_hits, paper_variant, three_stage
from vista.metrics.uncertainty import bootstrap_replicates, mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class SDFConfig:
    method: str = "three_stage"
    """three_stage (VISTA's code) or paper (the paper's description, docs/originals.md D16)."""
    k1: int = 200
    """three_stage: latents kept by firing frequency within the class."""
    k2: int = 100
    """Latents kept by class-mean activation (paper: by max/min class-mean ratio)."""
    k3: int = 50
    """three_stage: latents kept by lowest weighted label entropy."""
    k_top: int = 20
    """Top-activating images per latent (entropy and alignment rate)."""
    held_out: bool = True
    """Select SDFs on the training part and measure alignment on the held-out part (the split of
    ``eval.test_size``). Measured on the images that selected them, the rates of even a random
    SAE's SDFs sit above chance; VISTA did that (false)."""
    own_class: bool = True
    """three_stage: keep a latent only if its top images are mostly of the class. VISTA's filter
    (false) keeps any low-entropy latent, even one pure for another class."""
    min_freq: float = 0.1
    """paper: minimum firing frequency within the class."""
    alpha: float = 0.05
    """paper: family-wise level of the Bonferroni-corrected Kruskal-Wallis test."""


def _needs(cfg: SDFConfig) -> str:
    return (
        ""
        if cfg.method in ("three_stage", "paper")
        else f"unknown sdf.method {cfg.method!r} (three_stage or paper)"
    )


def find_sdfs(
    codes: Any, y: np.ndarray, n_cls: int, cfg: SDFConfig
) -> dict[int, dict[str, np.ndarray]]:
    """Class -> ``{features, score}`` in importance order, by the configured method."""
    if cfg.method == "paper":
        res = paper_variant(codes, y, n_cls, cfg.min_freq, cfg.k2, cfg.alpha)
        return {
            c: {
                "features": v["features"],
                "score": v["ratio"],
                "kw_p": v["kw_p"],
                "aligned": v["aligned"],
            }
            for c, v in res.items()
        }
    res3 = three_stage(codes, y, n_cls, cfg.k1, cfg.k2, cfg.k3, cfg.k_top, cfg.own_class)
    return {c: {"features": f, "score": e} for c, (f, e) in res3.items()}


def rate_intervals(hits: np.ndarray, ctx: Context, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row bootstrap interval of the mean of ``hits (n_features, k)``."""
    s = ctx.settings
    if hits.size == 0 or s.n_boot <= 0:
        nan = np.full(len(hits), np.nan)
        return nan, nan
    h = hits.astype(np.float64)
    reps = bootstrap_replicates(
        h.shape[1], lambda c: c @ h.T / h.shape[1], s.n_boot, ctx.rng("sdf", key)
    )
    a = (1 - s.confidence) / 2
    return np.quantile(reps, a, axis=0), np.quantile(reps, 1 - a, axis=0)


def label_sdfs(ctx: Context, label: str, cfg: SDFConfig) -> dict[str, Any]:
    """SDFs of every class of ``label``: rows per class, the legacy documents, the ranking."""
    codes, s = ctx.encoded.codes, ctx.settings
    names, y_all = ctx.class_names[label], ctx.labels[label]
    if cfg.held_out:
        select_rows, score_rows = ctx.train_test(label)
    else:
        select_rows = score_rows = ctx.labelled(label)
    found = find_sdfs(codes[select_rows], y_all[select_rows], len(names), cfg)
    y, scored = y_all[score_rows], codes[score_rows]
    out: dict[str, Any] = {"rows": [], "sdfs": {}, "alignment": {}, "union": []}
    for c, v in found.items():
        feats = v["features"]
        hits = alignment_hits(scored, feats, y, c, cfg.k_top)
        rates = hits.mean(axis=1) if hits.size else np.zeros(0)
        lo, hi = rate_intervals(hits, ctx, f"{label}/{c}")
        chance = float((y == c).mean())
        mean_rate = float(rates.mean()) if len(rates) else float("nan")
        ci = mean_ci(rates, s.n_boot, ctx.rng("sdf", label, c), s.confidence)
        out["rows"].append(
            {
                "class": names[c],
                "n_sdfs": len(feats),
                "mean_alignment_rate": mean_rate,
                "ci": list(ci),
                "chance": chance,
                "lift": mean_rate / chance if chance else np.nan,
                **({"n_aligned_kw": int(v["aligned"].sum())} if "aligned" in v else {}),
            }
        )
        out["sdfs"][str(c)] = feats.tolist()
        out["alignment"][str(c)] = {
            "feature_indices": feats.tolist(),
            "alignment_rates": rates.tolist(),
            "alignment_ci_low": lo.tolist(),
            "alignment_ci_high": hi.tolist(),
            "mean_alignment_rate": mean_rate,
        }
        out["union"] += [
            (float(rt), -float(sc), int(f), c, chance)
            for f, rt, sc in zip(feats, rates, v["score"], strict=True)
        ]
    out["union"].sort(key=lambda u: (-u[0], -u[1], u[2]))
    return out


OUT = Outputs("sdf")
OUT.scalar("{label}/mean_alignment_rate", "higher", "mean alignment rate of the SDFs")
OUT.scalar("{label}/mean_chance_rate", "none", "the alignment rate chance gives")
OUT.scalar("{label}/mean_lift", "higher", "alignment rate over chance")
OUT.scalar("{label}/n_sdfs", "none", "selective features found")
RANKING = OUT.array("{label}/ranking", "the SDFs of every class, in importance order")
RANKING_CLASS = OUT.array("{label}/ranking_class", "the class of each ranked SDF")
OUT.array("{label}/ranking_rate", "the alignment rate of each ranked SDF")
CLASSES = OUT.table("{label}/classes", "per class: its SDFs, alignment rate and interval")


@register_analysis(
    "sdf",
    SDFConfig,
    "Per class: its selective features (SDFs), importance-ranked, with alignment rates and CIs.",
    needs_labels=1,
    needs=_needs,
    order=80,
    outputs=OUT,
)
def run(ctx: Context, cfg: SDFConfig) -> Result:
    s = ctx.settings
    r = Result("sdf")
    for label in ctx.require_labels():
        res = label_sdfs(ctx, label, cfg)
        union = res["union"]
        r.arrays[f"{label}/ranking"] = np.array([u[2] for u in union], dtype=np.int64)
        r.arrays[f"{label}/ranking_class"] = np.array([u[3] for u in union], dtype=np.int64)
        r.arrays[f"{label}/ranking_rate"] = np.array([u[0] for u in union], dtype=np.float32)
        rates = np.array([u[0] for u in union])
        chance = np.array([u[4] for u in union])
        n = len(union)
        ci = mean_ci(rates, s.n_boot, ctx.rng("sdf", label), s.confidence)
        r.add(f"{label}/mean_alignment_rate", float(rates.mean()) if n else np.nan, "higher", ci, n)
        r.add(f"{label}/mean_chance_rate", float(chance.mean()) if n else np.nan, "none", n=n)
        lift = rates / np.maximum(chance, 1e-12)
        r.add(
            f"{label}/mean_lift",
            float(lift.mean()) if n else np.nan,
            "higher",
            mean_ci(lift, s.n_boot, ctx.rng("sdf", label, "lift"), s.confidence),
            n,
        )
        r.add(f"{label}/n_sdfs", n, "none")
        r.headline += [f"{label}/mean_alignment_rate", f"{label}/mean_chance_rate"]
        r.tables[f"{label}/classes"] = res["rows"]
        r.files["sdf_results.json#" + label] = {
            "sdfs": res["sdfs"],
            "alignment": res["alignment"],
            "class_names": ctx.class_names[label],
            "params": asdict(cfg),
        }
        r.files[f"sdfs_{label}.npz"] = {
            k: np.asarray(v, dtype=np.int64) for k, v in res["sdfs"].items()
        }
    return r
