"""``conjunction``: latents that fire for an intersection of two attributes but for neither
attribute alone (none of the seeds looks for these; the intersectional family's sharpest test).

For every pair of labels, every cell ``(a, b)`` with at least ``min_cell_size`` images (and as many
in ``A=a, B!=b`` and in ``A!=a, B=b``) and every latent: the firing rate in the cell, the larger of
the two attribute-alone rates, their gap, and a one-sided two-proportion z-test of the cell against
that larger rate, Bonferroni-corrected over every (latent, cell) tested (metrics/conjunction). A
conjunction feature has a gap of at least ``min_gap`` and a corrected p below ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.conjunction import conjunction_scores

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class ConjunctionConfig:
    labels: list[str] = field(default_factory=list)
    """Labels whose pairs are tested (empty = every usable label)."""
    min_cell_size: int = 30
    min_gap: float = 0.2
    """Firing-rate gap of the cell over either attribute alone."""
    alpha: float = 0.05
    """Family-wise level (Bonferroni over every latent and cell tested)."""


OUT = Outputs("conjunction")
OUT.scalar("max_gap", "none", "largest gap between a conjunction and its parts")
OUT.scalar("n_conjunction_features", "none", "latents that fire for a conjunction of classes")
OUT.scalar("n_tests", "none", "tests run")
OUT.array("conjunction_features", "the conjunction latents")
FEATURES = OUT.table("conjunction_features", "per conjunction latent: its classes and gap")


@register_analysis(
    "conjunction",
    ConjunctionConfig,
    "Latents firing for an intersection of two labels but for neither label alone, tested.",
    needs_labels=2,
    order=100,
    outputs=OUT,
)
def run(ctx: Context, cfg: ConjunctionConfig) -> Result:
    names = ctx.pick_labels(cfg.labels, 2)
    fired = (ctx.encoded.codes != 0).astype(np.float64)
    tests = []
    for a, b in combinations(names, 2):
        res = conjunction_scores(
            fired,
            ctx.labels[a],
            ctx.labels[b],
            len(ctx.class_names[a]),
            len(ctx.class_names[b]),
            cfg.min_cell_size,
        )
        tests.append((a, b, res))
    n_tests = sum(res["p"].size for _, _, res in tests)
    rows: list[dict[str, Any]] = []
    for a, b, res in tests:
        p_corr = np.minimum(res["p"] * max(n_tests, 1), 1.0)
        feat, cell = np.nonzero((res["gap"] >= cfg.min_gap) & (p_corr < cfg.alpha))
        for f, c in zip(feat, cell, strict=True):
            rows.append(
                {
                    "feature": int(f),
                    "labels": f"{a}x{b}",
                    "cell": f"{ctx.class_names[a][res['cell_a'][c]]}_{ctx.class_names[b][res['cell_b'][c]]}",
                    "rate_cell": float(res["r_cell"][f, c]),
                    "rate_either_alone": float(res["r_other"][f, c]),
                    "gap": float(res["gap"][f, c]),
                    "p_corrected": float(p_corr[f, c]),
                }
            )
    rows.sort(key=lambda row: -row["gap"])
    feats = sorted({row["feature"] for row in rows})
    r = Result("conjunction")
    r.tables["conjunction_features"] = rows
    r.add("n_conjunction_features", len(feats), "none", n=ctx.sae.d_sae)
    r.add("n_tests", n_tests, "none")
    r.add("max_gap", max((row["gap"] for row in rows), default=0.0), "none")
    r.arrays["conjunction_features"] = np.array(feats, dtype=np.int64)
    r.headline = ["n_conjunction_features", "max_gap"]
    r.metadata["label_pairs"] = [f"{a}x{b}" for a, b, _ in tests]
    return r
