"""``alignment``: which latents separate the classes of each label, and how selective they are
(VISTA's ``feature_demographic_alignment``, with a bounded selectivity, docs/originals.md D7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.alignment import class_means, inter_class_variance, selectivity
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class AlignmentConfig:
    top_features: int = 20
    """Latents listed per label (VISTA's 20)."""
    min_support: int = 10
    """Selectivity is averaged over latents active on at least this many images: a latent seen
    on one image scores 1 and says nothing."""


def feature_alignment(
    codes: Any,
    labels: np.ndarray,
    class_names: list[str],
    top_n: int = 20,
    min_support: int = 1,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """``(VISTA section, inter-class variance (d_sae,), selectivity (d_sae,))`` for one label.

    ``codes`` are the ``(N, d_sae)`` pooled codes (dense or CSR); selectivity is NaN for latents
    active on fewer than ``min_support`` images.
    """
    n_classes = max(len(class_names), int(labels.max(initial=-1)) + 1)
    means = class_means(codes, labels, n_classes)
    present = ~np.isnan(means).any(axis=1)
    var = inter_class_variance(means[present])
    order = np.argsort(-var, kind="stable")[:top_n]
    sel = selectivity(means[present])
    support = np.asarray((codes != 0).sum(axis=0)).ravel()
    sel[support < min_support] = np.nan
    finite = sel[np.isfinite(sel)]
    name = [class_names[i] if i < len(class_names) else str(i) for i in range(n_classes)]
    section = {
        "top_variant_features": order.tolist(),
        "top_variant_scores": var[order].tolist(),
        "selectivity_mean": float(finite.mean()) if finite.size else float("nan"),
        "selectivity_max": float(finite.max()) if finite.size else float("nan"),
        "selectivity_definition": "(mu_top - mu_rest) / (mu_top + mu_rest) over |class means|, in [0, 1]",
        "selectivity_min_support": min_support,
        "n_scored_features": int(finite.size),
        "mean_per_class_top_features": {
            name[c]: means[c, order].tolist() for c in range(n_classes) if present[c]
        },
    }
    return section, var, sel


OUT = Outputs("alignment")
OUT.scalar("{label}/selectivity_mean", "higher", "mean selectivity of the latents")
OUT.scalar("{label}/selectivity_max", "none", "largest selectivity")
SELECTIVITY = OUT.array("{label}/selectivity", "per latent: selectivity for the label")
OUT.array("{label}/inter_class_variance", "per latent: variance of its class means")


@register_analysis(
    "alignment",
    AlignmentConfig,
    "Per label: latents by inter-class variance; bounded selectivity with a support floor.",
    needs_labels=1,
    order=40,
    outputs=OUT,
)
def run(ctx: Context, cfg: AlignmentConfig) -> Result:
    enc, s = ctx.encoded, ctx.settings
    r = Result("alignment")
    sections = {}
    for label in ctx.require_labels():
        idx = ctx.labelled(label)
        codes = enc.codes[idx] if len(idx) < enc.n_images else enc.codes
        sec, var, sel = feature_alignment(
            codes, ctx.labels[label][idx], ctx.class_names[label], cfg.top_features, cfg.min_support
        )
        sections[label] = sec
        finite = sel[np.isfinite(sel)]
        ci = mean_ci(finite, s.n_boot, ctx.rng("alignment", label), s.confidence)
        r.add(f"{label}/selectivity_mean", sec["selectivity_mean"], "higher", ci, int(finite.size))
        r.headline.append(f"{label}/selectivity_mean")
        r.add(f"{label}/selectivity_max", sec["selectivity_max"], "none", n=int(finite.size))
        r.arrays[f"{label}/inter_class_variance"] = var.astype(np.float32)
        r.arrays[f"{label}/selectivity"] = sel.astype(np.float32)
    r.files["evaluation_results.json#feature_demographic_alignment"] = sections
    return r
