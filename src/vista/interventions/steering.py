"""Steering a label from one class to another through its SAE features (docs/originals.md §4.5 ``steering``).

For an ordered class pair (src, tgt), the held-out images of class src are edited on the features
of both classes (each class's top ``k`` SDFs), and the label's fixed probe (trained on the original
embeddings) reads them: the success rate is the share now predicted as tgt, against the share
predicted as tgt before the edit. Methods:

- ``scale`` (VISTA): src features times ``1 - alpha``, tgt features times ``1 + alpha``;
- ``mean``: both sets moved a fraction ``alpha`` of the way to their mean over the training images
  of class tgt (``alpha = 1`` clamps them there), which can also switch on a feature that is off.

The control does the same edit on as many random firing features outside the label's selection.
The SAE's reconstruction error is kept by default, so only the edit changes the embedding.
"""

from __future__ import annotations

from itertools import permutations
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.interventions import ops
from vista.interventions.targets import class_means, random_features
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.interventions.edits import Edits


def pairs(
    n_classes: int, present: set[int], cap: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Ordered class pairs (all, or ``cap`` drawn at random when there are more)."""
    every = [(a, b) for a, b in permutations(sorted(present), 2)]
    if cap and len(every) > cap:
        pick = np.sort(rng.choice(len(every), size=cap, replace=False))
        every = [every[i] for i in pick]
    return every


def edited(
    edits: Edits,
    rows: np.ndarray,
    feats: np.ndarray,
    goal: np.ndarray,
    alpha: float,
    method: str,
    src_feats: np.ndarray,
    keep: bool,
) -> np.ndarray:
    """Embeddings of ``rows`` with ``feats`` steered (``goal``: tgt-class means of ``feats``)."""
    codes = edits.ctx.encoded.codes[rows]
    now = ops.dense(codes, feats)
    if method == "scale":
        is_src = np.isin(feats, src_feats)
        new = now * np.where(is_src, 1.0 - alpha, 1.0 + alpha)
    else:
        new = now + alpha * (goal[None, :] - now)
    delta = (new - now) @ edits.w_dec[feats]
    return (edits.x0[rows] if keep else edits.x_hat[rows]) + delta


def steer_label(
    edits: Edits, label: str, per_class: dict[int, np.ndarray], selected: np.ndarray, cfg: Any
) -> dict[str, Any]:
    """Per pair and alpha: success rate, original target rate, and the random control."""
    ctx, attr = edits.ctx, edits.scorer.attrs[label]
    tr, te, y = attr.train, attr.test, attr.y
    rng = ctx.rng("steer", label)
    rows_out, summary = [], []
    present = {int(c) for c in np.unique(y[te]) if (y[tr] == c).any()}
    for src, tgt in pairs(len(ctx.class_names[label]), present, cfg.steer_max_pairs, rng):
        rows = te[y[te] == src]
        feats = np.union1d(
            per_class.get(src, [])[: cfg.steer_k], per_class.get(tgt, [])[: cfg.steer_k]
        ).astype(np.int64)
        if len(rows) == 0 or len(feats) == 0:
            continue
        rand = random_features(
            ctx, selected, len(feats), ctx.rng("steer", label, src, tgt), like=feats
        )
        before = (attr.probe.predict(edits.x0[rows]) == tgt).astype(np.float64)
        for alpha in cfg.steer_alphas:
            res = {}
            for name, f, src_f in (
                ("sdf", feats, per_class.get(src, [])[: cfg.steer_k]),
                ("random", rand, rand),
            ):
                goal = class_means(ctx.encoded.codes, y, tr, tgt, f)
                x = edited(
                    edits, rows, f, goal, alpha, cfg.steer_method, np.asarray(src_f), cfg.keep_error
                )
                res[name] = (attr.probe.predict(x) == tgt).astype(np.float64)
            rows_out.append(
                {
                    "src": ctx.class_names[label][src],
                    "tgt": ctx.class_names[label][tgt],
                    "alpha": alpha,
                    "n": len(rows),
                    "n_features": len(feats),
                    "original_target_rate": float(before.mean()),
                    "steering_success_rate": float(res["sdf"].mean()),
                    "random_success_rate": float(res["random"].mean()),
                    "delta": float(res["sdf"].mean() - before.mean()),
                }
            )
            summary.append(
                (
                    alpha,
                    res["sdf"].mean() - before.mean(),
                    res["random"].mean() - before.mean(),
                    res["sdf"].mean(),
                )
            )
    return {"rows": rows_out, "summary": _summarise(summary, ctx, label)}


def _summarise(summary: list[tuple], ctx: Any, label: str) -> list[dict[str, Any]]:
    """Per alpha: mean success, mean delta and the random control's, intervals over pairs."""
    s, out = ctx.settings, []
    for alpha in sorted({a for a, *_ in summary}):
        d = np.array([v for a, v, _, _ in summary if a == alpha])
        r = np.array([v for a, _, v, _ in summary if a == alpha])
        succ = np.array([v for a, _, _, v in summary if a == alpha])
        rng = ctx.rng("steer-summary", label, str(alpha))
        out.append(
            {
                "alpha": alpha,
                "n_pairs": len(d),
                "success_rate": float(succ.mean()),
                "success_ci": list(mean_ci(succ, s.n_boot, rng, s.confidence)),
                "delta": float(d.mean()),
                "delta_ci": list(mean_ci(d, s.n_boot, rng, s.confidence)),
                "random_delta": float(r.mean()),
                "random_delta_ci": list(mean_ci(r, s.n_boot, rng, s.confidence)),
            }
        )
    return out
