"""``tpp``: targeted probe perturbation (SAEBench), for vision labels.

For every class ``i`` of a label, a balanced one-vs-rest probe on the raw per-image activations;
the latents attributed to class ``i`` (positive effect on its probe, see ``latent_effects``) are
ablated ``n`` at a time. ``intended`` = the drop of class ``i``'s probe accuracy; ``unintended`` = the
mean drop of the other classes' probes under the same ablation; ``total = intended - unintended``
(higher is better: the SAE has latents specific to each class). Means over classes, with intervals
over classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.latent_effects import ablate, accuracy, attribution, fit_direction
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.analysis.sparse_probing import balanced_task
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class TPPConfig:
    ns: list[int] = field(default_factory=lambda: [2, 5, 10, 20, 50])
    """Numbers of latents ablated (SAEBench's thresholds)."""
    max_images: int = 4000


def _drop(
    enc: Any,
    y: np.ndarray,
    probe: Any,
    te: np.ndarray,
    j: int,
    w_dec: np.ndarray,
    latents: np.ndarray,
) -> float:
    """Class ``j``'s probe accuracy on its test task, clean minus with ``latents`` ablated."""
    clean = accuracy(probe, enc.pooled_raw[te], y[te] == j)
    ablated = accuracy(probe, ablate(enc.pooled_raw[te], enc.codes[te], w_dec, latents), y[te] == j)
    return clean - ablated


OUT = Outputs("tpp")
TOTAL = OUT.scalar(
    "{label}/tpp_threshold_{n}_total_metric", "higher", "intended minus unintended drop"
)
OUT.table("{label}", "per n: intended, unintended and total")


@register_analysis(
    "tpp",
    TPPConfig,
    "Targeted probe perturbation: ablating a class's latents hurts its probe, not the others'.",
    needs_labels=1,
    order=160,
    outputs=OUT,
)
def run(ctx: Context, cfg: TPPConfig) -> Result:
    enc, s = ctx.encoded, ctx.settings
    w_dec = ctx.sae.W_dec.detach().cpu().double().numpy()
    r = Result("tpp")
    for label in ctx.require_labels():
        y, names = ctx.labels[label], ctx.class_names[label]
        tr_all, te_all = ctx.train_test(label)
        classes = [
            c
            for c in range(len(names))
            if (y[tr_all] == c).sum() >= 4 and (y[te_all] == c).sum() >= 2
        ]
        rng = ctx.rng("tpp", label)
        probes, tests, scores = {}, {}, {}
        for c in classes:
            tr = balanced_task(tr_all, y, c, rng, cfg.max_images)
            probes[c], w = fit_direction(enc.pooled_raw[tr], y[tr] == c)
            tests[c] = balanced_task(te_all, y, c, rng, cfg.max_images)
            scores[c] = np.maximum(attribution(enc.codes[tr], y[tr] == c, w, w_dec), 0.0)
        rows = []
        for n in cfg.ns:
            per_class = []
            for c in classes:
                latents = np.argsort(-scores[c], kind="stable")[:n]
                drops = {j: _drop(enc, y, probes[j], tests[j], j, w_dec, latents) for j in classes}
                unintended = (
                    float(np.mean([d for j, d in drops.items() if j != c]))
                    if len(classes) > 1
                    else 0.0
                )
                per_class.append((drops[c], unintended))
            total = np.array([a - b for a, b in per_class])
            rows.append(
                {
                    "n": n,
                    "intended": float(np.mean([a for a, _ in per_class])),
                    "unintended": float(np.mean([b for _, b in per_class])),
                    "total": float(total.mean()),
                }
            )
            r.add(
                f"{label}/tpp_threshold_{n}_total_metric",
                float(total.mean()),
                "higher",
                mean_ci(total, s.n_boot, rng, s.confidence),
                len(total),
            )
        r.tables[label] = rows
        mid = min(cfg.ns, key=lambda n: abs(n - 10))
        r.headline.append(f"{label}/tpp_threshold_{mid}_total_metric")
    return r
