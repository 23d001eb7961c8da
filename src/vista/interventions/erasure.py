"""Erasing a label from the embeddings without the SAE's decoder: LEACE and S&P Top-K.

- ``leace``: the ``concept-erasure`` package's eraser, fitted on the label's training part only
  (VISTA fitted it on the split it scored, docs/originals.md §4.5), applied to every image. Its guarantee: no
  linear probe retrained on the erased embeddings beats a constant predictor on the label.
- ``sp_topk`` (Barbalau et al.): the label's top-k latents by inter-class variance (or SDFs), a
  logistic probe on their codes, the control axis ``a = W_enc[:, S] w`` in input space and the
  projection ``x (I - alpha a a^T / ||a||^2)``. Its control projects a random direction out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.probing import fit_logistic
from vista.interventions import ops

if TYPE_CHECKING:
    from vista.interventions.edits import Edits, Outcome


def leace(edits: Edits, label: str) -> tuple[Outcome, np.ndarray]:
    attr = edits.scorer.attrs[label]
    n_cls = len(edits.ctx.class_names[label])
    eraser = ops.leace(edits.x0[attr.train], attr.y[attr.train], n_cls)
    return edits.run(f"{label}/leace", ops.erase(eraser, edits.x0))


def sp_coef(codes: Any, y: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The S&P probe: logistic regression (C=0.1) on the selected codes; its coefficients per
    unit of code. The codes are scaled to unit variance for the fit (lbfgs converges in tens of
    iterations instead of hundreds) and the coefficients scaled back."""
    model = fit_logistic(ops.dense(codes, feats), y, C=0.1, max_iter=300, center=False)
    return np.asarray(model[-1].coef_) / model[0].scale_


def sp_topk(
    edits: Edits, label: str, ranked: np.ndarray, ks: list[int], alphas: list[float]
) -> list[tuple[int, float, Outcome, np.ndarray]]:
    """``(k, alpha, outcome, cosine)`` per setting, and ``(0, 1.0, ...)`` for the random axis."""
    attr = edits.scorer.attrs[label]
    codes = edits.ctx.encoded.codes
    w_enc = edits.ctx.sae.W_enc.detach().cpu().double().numpy()
    out = []
    for k in sorted({min(int(k), len(ranked)) for k in ks if int(k) > 0}):
        feats = np.sort(ranked[:k])
        axis = ops.sp_axis(w_enc, feats, sp_coef(codes[attr.train], attr.y[attr.train], feats))
        for alpha in alphas:
            x = edits.x0 @ ops.projection(axis, alpha)
            out.append((k, alpha, *edits.run(f"{label}/sp{k}/{alpha}", x)))
    rand = np.asarray(edits.ctx.rng("sp_topk", label).normal(size=edits.x0.shape[1]))
    out.append((0, 1.0, *edits.run(f"{label}/sp_random", edits.x0 @ ops.projection(rand, 1.0))))
    return out
