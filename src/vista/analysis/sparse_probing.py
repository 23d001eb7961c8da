"""``sparse_probing``: SAEBench's sparse probing, for vision labels (Gao et al. 2024; SAEBench).

Every class of every label is a balanced one-vs-rest task. With ``definition=saebench`` (the
default) it is SAEBench's (``sae_bench/evals/sparse_probing/probe_training.py``): the negatives are
spread evenly over the other classes (``prepare_probe_data``: ``ceil(m / classes)`` of each, then
``m`` of those), the latents are ranked by ``|mean_pos - mean_neg|`` of their per-image codes on the
task's training part (``get_top_k_mean_diff_mask``), and the probe on the top k is sklearn's
L2 logistic regression with ``C=1``, ``max_iter=1000`` on the unscaled codes
(``train_sklearn_probe``), scored on the task's held-out part. Next to it, a dense probe on all the
raw activations (SAEBench's "LLM" probe) and one on all the latents; SAEBench trains these two with
Adam on a GPU, vista with its standardised L2 probe (``C`` from the config) under either
definition. ``definition=vista`` keeps
vista's earlier variant: negatives drawn uniformly, latents ranked by the signed difference,
probes on standardised inputs (``C`` from the config, 300 iterations). A high top-1 accuracy says
single latents carry the class. Scalars are means over tasks, with intervals over tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.probing import fit_logistic
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.errors import VistaError
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


DEFINITIONS = ("saebench", "vista")


@dataclass
class SparseProbingConfig:
    definition: str = "saebench"
    """``saebench`` (SAEBench's negatives, ranking and probe) or ``vista`` (the earlier variant)."""
    ks: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20])
    max_train: int = 4000
    """Training images per task at most (SAEBench: 4000), half positive."""
    max_test: int = 1000
    C: float = 1.0
    """Inverse L2 strength of the logistic probes (SAEBench: 1)."""


def balanced_task(
    idx: np.ndarray, y: np.ndarray, c: int, rng: np.random.Generator, limit: int
) -> np.ndarray:
    """Of the images ``idx``: as many of class ``c`` as of the others, at most ``limit`` in all."""
    pos, neg = idx[y[idx] == c], idx[(y[idx] != c) & (y[idx] >= 0)]
    m = min(len(pos), len(neg), limit // 2)
    return np.sort(
        np.concatenate([rng.choice(pos, m, replace=False), rng.choice(neg, m, replace=False)])
    )


def spread_task(
    idx: np.ndarray, y: np.ndarray, c: int, rng: np.random.Generator, limit: int
) -> np.ndarray:
    """SAEBench's task of class ``c`` among the images ``idx``: ``m`` positives and ``m`` negatives
    taken ``ceil(m / other classes)`` from each other class, then ``m`` of those at random
    (``prepare_probe_data``); ``m`` is lowered when the other classes hold too few."""
    pos = idx[y[idx] == c]
    others = [idx[y[idx] == o] for o in np.unique(y[idx]) if o != c and o >= 0]
    m = min(len(pos), limit // 2)
    if not others or m == 0:
        return np.zeros(0, dtype=idx.dtype)
    per = -(-m // len(others))
    neg = np.concatenate([rng.choice(o, min(per, len(o)), replace=False) for o in others])
    m = min(m, len(neg))
    return np.sort(
        np.concatenate([rng.choice(pos, m, replace=False), rng.choice(neg, m, replace=False)])
    )


def top_k_latents(codes: Any, target: np.ndarray, k: int, absolute: bool) -> np.ndarray:
    """The ``k`` latents of largest ``|mean_pos - mean_neg|`` (SAEBench's
    ``get_top_k_mean_diff_mask``), or largest signed difference, in ascending column order."""
    diff = np.asarray(codes[target].mean(axis=0) - codes[~target].mean(axis=0)).ravel()
    score = np.abs(diff) if absolute else diff
    return np.sort(np.argsort(-score, kind="stable")[:k])


def _fit_score(
    x_tr: Any, y_tr: np.ndarray, x_te: Any, y_te: np.ndarray, c: float, saebench: bool
) -> float:
    if saebench:  # train_sklearn_probe: L2, C=1, max_iter=1000, on the unscaled inputs
        model = fit_logistic(x_tr, y_tr, C=c, max_iter=1000, standardize=False)
    else:
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
    saebench = cfg.definition == "saebench"
    task = spread_task if saebench else balanced_task
    tr = task(split[0], y, cls, rng, cfg.max_train)
    te = task(split[1], y, cls, rng, cfg.max_test)
    t_tr, t_te = y[tr] == cls, y[te] == cls
    # The dense references: SAEBench trains these two with Adam on a GPU, not with its sklearn
    # probe, so both definitions fit vista's standardised probe (the same optimum, fast).
    out = {
        "raw": _fit_score(raw[tr], t_tr, raw[te], t_te, cfg.C, False),
        "sae": _fit_score(codes[tr], t_tr, codes[te], t_te, cfg.C, False),
    }
    for k in cfg.ks:
        cols = top_k_latents(codes[tr], t_tr, k, absolute=saebench)
        x_tr, x_te = codes[tr][:, cols], codes[te][:, cols]
        out[f"top_{k}"] = _fit_score(x_tr, t_tr, x_te, t_te, cfg.C, saebench)
    out["n_test"] = len(te)
    return out


OUT = Outputs("sparse_probing")
OUT.scalar("raw_test_accuracy", "higher", "probe accuracy on the raw activations")
OUT.scalar("sae_test_accuracy", "higher", "probe accuracy on all SAE latents")
TOP_K = OUT.scalar("sae_top_{k}_test_accuracy", "higher", "probe accuracy on the top k latents")
OUT.table("tasks", "per task: the accuracies")
OUT.meta("definition", "saebench or vista (the module docstring)")


@register_analysis(
    "sparse_probing",
    SparseProbingConfig,
    "SAEBench sparse probing: balanced one-vs-rest probes on the top-k latents vs dense probes.",
    needs_labels=1,
    order=140,
    outputs=OUT,
)
def run(ctx: Context, cfg: SparseProbingConfig) -> Result:
    if cfg.definition not in DEFINITIONS:
        raise VistaError(
            f"sparse_probing.definition={cfg.definition!r} is not one of {list(DEFINITIONS)}."
        )
    enc, s = ctx.encoded, ctx.settings
    r = Result("sparse_probing")
    r.metadata["definition"] = cfg.definition
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
