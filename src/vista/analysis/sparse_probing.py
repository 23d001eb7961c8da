"""``sparse_probing``: SAEBench's sparse probing, for vision labels (Gao et al. 2024; SAEBench).

Every class of every label is a balanced one-vs-rest task (negatives subsampled to the number of
positives, seeded). On the task's training part the latents are ranked by the difference of their
mean per-image code between positives and negatives; logistic probes on the top k latents
(k in ``ks``) are scored on the task's held-out part, next to a dense probe on all the raw
activations (SAEBench's "LLM" probe) and one on all the latents. A high top-1 accuracy says single
latents carry the class. Scalars are means over tasks, with intervals over tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.probing import fit_logistic
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class SparseProbingConfig:
    ks: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20])
    max_train: int = 4000
    """Training images per task at most (SAEBench: 4000), half positive."""
    max_test: int = 1000
    C: float = 1.0
    """Inverse L2 strength of the logistic probes."""


def balanced_task(
    idx: np.ndarray, y: np.ndarray, c: int, rng: np.random.Generator, limit: int
) -> np.ndarray:
    """Of the images ``idx``: as many of class ``c`` as of the others, at most ``limit`` in all."""
    pos, neg = idx[y[idx] == c], idx[(y[idx] != c) & (y[idx] >= 0)]
    m = min(len(pos), len(neg), limit // 2)
    return np.sort(
        np.concatenate([rng.choice(pos, m, replace=False), rng.choice(neg, m, replace=False)])
    )


def _fit_score(x_tr: Any, y_tr: np.ndarray, x_te: Any, y_te: np.ndarray, c: float) -> float:
    model = fit_logistic(x_tr, y_tr, C=c, max_iter=300, tol=1e-3, solver="auto")
    return float(model.score(x_te, y_te))


def task_scores(
    codes: Any,
    raw: np.ndarray,
    y: np.ndarray,
    cls: int,
    cfg: SparseProbingConfig,
    rng: np.random.Generator,
    split: tuple[np.ndarray, np.ndarray],
) -> dict[str, float]:
    """Accuracies of one one-vs-rest task: raw, all latents, top-k latents for each k."""
    tr = balanced_task(split[0], y, cls, rng, cfg.max_train)
    te = balanced_task(split[1], y, cls, rng, cfg.max_test)
    t_tr, t_te = y[tr] == cls, y[te] == cls
    out = {
        "raw": _fit_score(raw[tr], t_tr, raw[te], t_te, cfg.C),
        "sae": _fit_score(codes[tr], t_tr, codes[te], t_te, cfg.C),
    }
    diff = np.asarray(codes[tr][t_tr].mean(axis=0) - codes[tr][~t_tr].mean(axis=0)).ravel()
    order = np.argsort(-diff, kind="stable")
    for k in cfg.ks:
        cols = np.sort(order[:k])
        out[f"top_{k}"] = _fit_score(codes[tr][:, cols], t_tr, codes[te][:, cols], t_te, cfg.C)
    out["n_test"] = len(te)
    return out


OUT = Outputs("sparse_probing")
OUT.scalar("raw_test_accuracy", "higher", "probe accuracy on the raw activations")
OUT.scalar("sae_test_accuracy", "higher", "probe accuracy on all SAE latents")
TOP_K = OUT.scalar("sae_top_{k}_test_accuracy", "higher", "probe accuracy on the top k latents")
OUT.table("tasks", "per task: the accuracies")


@register_analysis(
    "sparse_probing",
    SparseProbingConfig,
    "SAEBench sparse probing: balanced one-vs-rest probes on the top-k latents vs dense probes.",
    needs_labels=1,
    order=140,
    outputs=OUT,
)
def run(ctx: Context, cfg: SparseProbingConfig) -> Result:
    enc, s = ctx.encoded, ctx.settings
    r = Result("sparse_probing")
    rows = []
    for label in ctx.require_labels():
        y = ctx.labels[label]
        split = ctx.train_test(label)
        for c, name in enumerate(ctx.class_names[label]):
            if (y == c).sum() < 4:
                r.skipped[f"{label}={name}"] = "fewer than 4 images"
                continue
            sc = task_scores(
                enc.codes, enc.pooled_raw, y, c, cfg, ctx.rng("sparse_probing", label, c), split
            )
            rows.append({"label": label, "class": name, **sc})
    r.tables["tasks"] = rows
    rng = ctx.rng("sparse_probing", "ci")
    for key, direction in [("raw", "higher"), ("sae", "higher")] + [
        (f"top_{k}", "higher") for k in cfg.ks
    ]:
        vals = np.array([row[key] for row in rows])
        name = {"raw": "raw_test_accuracy", "sae": "sae_test_accuracy"}.get(
            key, f"sae_{key}_test_accuracy"
        )
        r.add(
            name,
            float(vals.mean()) if len(vals) else float("nan"),
            direction,
            mean_ci(vals, s.n_boot, rng, s.confidence),
            len(vals),
        )
    r.headline = [
        k
        for k in ("sae_top_1_test_accuracy", "sae_top_5_test_accuracy", "raw_test_accuracy")
        if k in r.scalars
    ]
    return r
