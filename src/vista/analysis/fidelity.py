"""``fidelity``: whom the SAE fails. Reconstruction and sparsity per subgroup and per intersection.

Per class of each label, and per composite subgroup of all labels (at least ``min_group_size``
images each), from the per-image numbers of the shared pass:

- ``nmse``: mean squared error per token divided by the split's total variance per token; the
  same denominator for every group, so groups compare directly (1 = as bad as predicting the mean);
- ``fvu``: the group's own FVU (its error over its variance about its own mean);
- ``cosine``, ``l0``: per-token means; ``dead``: latents that never fire on the group's images,
  next to ``dead_expected``, the mean count for random image sets of the same size (small groups
  leave more latents unfired by chance alone).

Intervals resample images within the group. The worst-group gap (worst ``nmse`` over the split's)
gets a permutation p-value: how often randomly relabelled groups show a spread of ``nmse`` as large.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.reconstruction import image_total_variance
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.information import combine_labels
from vista.metrics.uncertainty import bootstrap_replicates, mean_ci, percentile_interval, ratio_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class FidelityConfig:
    labels: list[str] = field(default_factory=list)
    """Labels whose classes are groups (empty = every usable label)."""
    intersections: bool = True
    """Also the composite subgroups of all those labels."""
    min_group_size: int = 30
    dead_null_draws: int = 20
    """Random image sets per group for ``dead_expected``."""
    n_perm: int = 200
    """Permutations behind the worst-group p-value."""


def group_fvu_ci(
    sq: np.ndarray,
    scatter: np.ndarray,
    centred: np.ndarray,
    t: int,
    n_boot: int,
    rng: np.random.Generator,
    conf: float,
) -> tuple[float, float]:
    """Bootstrap CI of a group's own FVU (variance about the resample's own mean, exactly)."""
    sq_c = (centred**2).sum(axis=1)

    def stat(c: np.ndarray) -> np.ndarray:
        n = c.sum(axis=1)
        mean = (c @ centred) / n[:, None]
        tv = c @ scatter + t * (c @ sq_c - n * (mean**2).sum(axis=1))
        return (c @ sq) / tv

    return percentile_interval(bootstrap_replicates(len(sq), stat, n_boot, rng), conf)


def dead_expected(active: Any, size: int, draws: int, rng: np.random.Generator) -> float:
    n = active.shape[0]
    counts = []
    for _ in range(draws):
        pick = np.sort(rng.choice(n, size=size, replace=False))
        counts.append(int((np.asarray(active[pick].sum(axis=0)).ravel() == 0).sum()))
    return float(np.mean(counts))


def group_rows(
    ctx: Context, groups: np.ndarray, names: dict[int, str], cfg: FidelityConfig, key: str
) -> list[dict[str, Any]]:
    enc, s = ctx.encoded, ctx.settings
    t = enc.tokens_per_image
    tv = image_total_variance(enc.pooled_raw, enc.image_scatter, t)
    var_per_token = tv.sum() / (enc.n_images * t)
    active = enc.codes != 0
    rows = []
    for g, name in names.items():
        idx = np.flatnonzero(groups == g)
        rng = ctx.rng("fidelity", key, g)
        x = enc.pooled_raw[idx].astype(np.float64)
        centred = x - x.mean(axis=0)
        sq = enc.image_sq_error[idx]
        own_tv = enc.image_scatter[idx] + t * (centred**2).sum(axis=1)
        nmse = sq.sum() / (len(idx) * t) / var_per_token
        nmse_ci = ratio_ci(sq, np.full(len(idx), t * var_per_token), s.n_boot, rng, s.confidence)
        dead = int((np.asarray(active[idx].sum(axis=0)).ravel() == 0).sum())
        rows.append(
            {
                "group": name,
                "n": len(idx),
                "nmse": nmse,
                "nmse_ci": list(nmse_ci),
                "fvu": sq.sum() / own_tv.sum(),
                "fvu_ci": list(
                    group_fvu_ci(
                        sq, enc.image_scatter[idx], centred, t, s.n_boot, rng, s.confidence
                    )
                ),
                "cosine": float(enc.image_cosine[idx].mean()),
                "cosine_ci": list(mean_ci(enc.image_cosine[idx], s.n_boot, rng, s.confidence)),
                "l0": float(enc.image_l0[idx].mean()),
                "l0_ci": list(mean_ci(enc.image_l0[idx], s.n_boot, rng, s.confidence)),
                "dead": dead,
                "dead_expected": dead_expected(active, len(idx), cfg.dead_null_draws, rng),
            }
        )
    return rows


def spread_ci(ctx: Context, groups: np.ndarray, key: str) -> tuple[float, float]:
    """Bootstrap interval of the max-min spread of group NMSE: each group's images resampled
    within the group (the groups keep their sizes), the spread taken per replicate."""
    enc, s = ctx.encoded, ctx.settings
    t = enc.tokens_per_image
    tv = image_total_variance(enc.pooled_raw, enc.image_scatter, t)
    scale = tv.sum() / enc.n_images  # NMSE of an image = sq_error / scale
    if s.n_boot <= 0:
        return float("nan"), float("nan")
    rng = ctx.rng("fidelity", key, "spread")
    reps = []
    for g in np.unique(groups[groups >= 0]):
        sq = enc.image_sq_error[groups == g]

        def group_nmse(c: np.ndarray, sq: np.ndarray = sq) -> np.ndarray:
            return c @ sq / len(sq) / scale

        reps.append(bootstrap_replicates(len(sq), group_nmse, s.n_boot, rng))
    per = np.stack(reps)  # (groups, replicates)
    return percentile_interval(per.max(axis=0) - per.min(axis=0), s.confidence)


def spread_p_value(
    ctx: Context, groups: np.ndarray, observed: float, n_perm: int, key: str
) -> float:
    """How often random group labels give a max-min spread of group NMSE at least ``observed``."""
    enc = ctx.encoded
    t = enc.tokens_per_image
    tv = image_total_variance(enc.pooled_raw, enc.image_scatter, t)
    scale = t * tv.sum() / (enc.n_images * t)  # NMSE of an image = sq_error / scale
    keep = np.flatnonzero(groups >= 0)
    g = np.unique(groups[keep], return_inverse=True)[1]
    sq, n_g = enc.image_sq_error[keep], np.bincount(g).astype(np.float64)
    rng = ctx.rng("fidelity", key, "perm")
    hits = 0
    for _ in range(n_perm):
        per = np.bincount(rng.permutation(g), weights=sq) / n_g / scale
        hits += int(per.max() - per.min() >= observed - 1e-15)
    return (1 + hits) / (1 + n_perm)


OUT = Outputs("fidelity")
OUT.scalar("{label}/best_group_nmse", "lower", "NMSE of the best-reconstructed class")
OUT.scalar("{label}/worst_group_nmse", "lower", "NMSE of the worst-reconstructed class")
OUT.scalar("{label}/nmse_spread", "lower", "worst minus best NMSE")
OUT.scalar("{label}/nmse_spread_p_value", "none", "permutation p-value of the spread")
ROWS = OUT.table("{label}", "per class: its NMSE with interval")


@register_analysis(
    "fidelity",
    FidelityConfig,
    "Per subgroup and intersection: NMSE, FVU, cosine, L0, dead latents; worst-group gap and test.",
    needs_labels=1,
    order=110,
    outputs=OUT,
)
def run(ctx: Context, cfg: FidelityConfig) -> Result:
    names = ctx.pick_labels(cfg.labels)
    r = Result("fidelity")
    sets: dict[str, tuple[np.ndarray, dict[int, str]]] = {}
    for n in names:
        y = ctx.labels[n]
        sizes = np.bincount(y[y >= 0], minlength=len(ctx.class_names[n]))
        ok = {c: ctx.class_names[n][c] for c in range(len(sizes)) if sizes[c] >= cfg.min_group_size}
        sets[n] = (np.where(np.isin(y, list(ok)), y, -1), ok)
    if cfg.intersections and len(names) >= 2:
        joint = combine_labels(*[ctx.labels[n] for n in names])
        vals, counts = np.unique(joint[joint >= 0], return_counts=True)
        ok_vals = vals[counts >= cfg.min_group_size]
        ids = np.where(np.isin(joint, ok_vals), np.searchsorted(ok_vals, joint), -1)
        first = {v: int(np.flatnonzero(joint == v)[0]) for v in ok_vals}
        readable = {
            i: "_".join(ctx.class_names[n][ctx.labels[n][first[v]]] for n in names)
            for i, v in enumerate(ok_vals)
        }
        sets["x".join(names)] = (ids, readable)
    for key, (groups, gnames) in sets.items():
        if len(gnames) < 2:
            r.skipped[key] = f"fewer than two groups with at least {cfg.min_group_size} images"
            continue
        rows = group_rows(ctx, groups, gnames, cfg, key)
        r.tables[key] = rows
        nmse = np.array([row["nmse"] for row in rows])
        worst = rows[int(nmse.argmax())]
        spread = float(nmse.max() - nmse.min())
        r.add(
            f"{key}/worst_group_nmse", worst["nmse"], "lower", tuple(worst["nmse_ci"]), worst["n"]
        )
        best = rows[int(nmse.argmin())]
        r.add(f"{key}/best_group_nmse", best["nmse"], "lower", tuple(best["nmse_ci"]), best["n"])
        r.add(f"{key}/nmse_spread", spread, "lower", spread_ci(ctx, groups, key), len(rows))
        r.add(
            f"{key}/nmse_spread_p_value",
            spread_p_value(ctx, groups, spread, cfg.n_perm, key),
            "none",
        )
        r.metadata[f"{key}/worst_group"] = worst["group"]
        r.headline += [f"{key}/worst_group_nmse", f"{key}/nmse_spread_p_value"]
    return r
