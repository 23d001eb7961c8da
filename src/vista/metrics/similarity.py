"""Comparing representations and dictionaries: CKA in feature space, matching, principal angles.

- ``linear_cka``: the seeds' linear CKA with the unbiased HSIC of Song et al. (2012) on
  column-centred inputs, computed from ``X^T Y`` products instead of ``N x N`` Gram matrices
  (docs/originals.md D9): with centred rows ``x_i`` and ``a_i = ||x_i||^2``, ``tr(K~L~) = ||X^T Y||_F^2 -
  sum a_i b_i``, ``1^T K~ 1 = -sum a_i`` and ``1^T K~ L~ 1 = sum a_i b_i``.
- ``match``: the one-to-one assignment maximising total similarity (Hungarian, scipy's
  ``linear_sum_assignment``), greedy above ``max_exact`` rows.
- ``principal_angles``: cosines of the principal angles between two column spans.
- ``ks_overlap``: the seed's "SDF overlap", 1 - KS distance between cumulative-share curves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_BLOCK = 1024


def _centred_cross_sq(x: Any, y: Any) -> float:
    """``||X_c^T Y_c||_F^2`` for column-centred X, Y (dense or sparse), in column blocks of X."""
    n = x.shape[0]
    mx = np.asarray(x.mean(axis=0)).ravel()
    my = np.asarray(y.mean(axis=0)).ravel()
    total = 0.0
    for a in range(0, x.shape[1], _BLOCK):
        xb = x[:, a : a + _BLOCK]
        prod = np.asarray(
            (xb.T @ y).toarray() if hasattr(xb.T @ y, "toarray") else xb.T @ y, dtype=np.float64
        )
        prod -= n * np.outer(mx[a : a + _BLOCK], my)
        total += float((prod**2).sum())
    return total


def _row_sq_norms_centred(x: Any) -> np.ndarray:
    """``||x_i - mean||^2`` per row, without densifying a sparse ``x``."""
    mx = np.asarray(x.mean(axis=0)).ravel()
    sq = (
        np.asarray(x.multiply(x).sum(axis=1)).ravel()
        if hasattr(x, "multiply")
        else (np.asarray(x, dtype=np.float64) ** 2).sum(axis=1)
    )
    dot = np.asarray(x @ mx).ravel()
    return sq - 2 * dot + float(mx @ mx)


def unbiased_hsic(x: Any, y: Any) -> float:
    """Unbiased HSIC of linear kernels on column-centred ``x`` and ``y`` (0 when n < 4)."""
    n = x.shape[0]
    if n < 4:
        return 0.0
    a, b = _row_sq_norms_centred(x), _row_sq_norms_centred(y)
    ab = float(a @ b)
    trace = _centred_cross_sq(x, y) - ab
    return (trace + a.sum() * b.sum() / ((n - 1) * (n - 2)) - 2 * ab / (n - 2)) / (n * (n - 3))


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA between two representations of the same ``n`` samples, clipped to [0, 1]."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples, got {x.shape[0]} and {y.shape[0]} rows")
    xy, xx, yy = unbiased_hsic(x, y), unbiased_hsic(x, x), unbiased_hsic(y, y)
    denom = np.sqrt(max(xx, 0.0) * max(yy, 0.0))
    return 0.0 if denom < 1e-12 else float(np.clip(xy / denom, 0.0, 1.0))


def match(sim: np.ndarray, max_exact: int = 4096) -> tuple[np.ndarray, np.ndarray, str]:
    """``(rows, cols, method)`` of a one-to-one matching maximising the summed ``sim``."""
    if max(sim.shape) <= max_exact:
        from scipy.optimize import linear_sum_assignment

        r, c = linear_sum_assignment(-sim)
        return r, c, "hungarian"
    # Greedy over each row's 16 best candidates: best remaining pair first.
    k = min(16, sim.shape[1])
    cand = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    ri = np.repeat(np.arange(sim.shape[0]), k)
    ci = cand.ravel()
    order = np.argsort(-sim[ri, ci], kind="stable")
    used_r, used_c = np.zeros(sim.shape[0], bool), np.zeros(sim.shape[1], bool)
    rows, cols = [], []
    for i, j in zip(ri[order].tolist(), ci[order].tolist(), strict=True):
        if not used_r[i] and not used_c[j]:
            used_r[i] = used_c[j] = True
            rows.append(i)
            cols.append(j)
            if len(rows) == min(sim.shape):
                break
    return np.array(rows), np.array(cols), "greedy"


def matched_similarity(
    sim: np.ndarray, max_exact: int = 4096
) -> tuple[np.ndarray, np.ndarray, str]:
    """Per row of ``sim``: its matched similarity (0 if unmatched) and matched column (-1)."""
    r, c, how = match(sim, max_exact)
    value = np.zeros(sim.shape[0])
    partner = np.full(sim.shape[0], -1)
    value[r], partner[r] = sim[r, c], c
    return value, partner, how


def unit_rows(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the spans of the columns of ``a`` and ``b``."""
    if a.shape[1] == 0 or b.shape[1] == 0:
        return np.zeros(0)
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    return np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)


def ks_overlap(u: np.ndarray, v: np.ndarray) -> float:
    """1 - max |difference| between the cumulative-share curves of two descending-sorted score
    vectors, interpolated to a common grid of ``max(len)`` points (the seed's "SDF overlap")."""

    def curve(s: np.ndarray, grid: np.ndarray) -> np.ndarray:
        s = np.sort(np.asarray(s, dtype=np.float64))[::-1]
        cum = np.cumsum(s) / max(s.sum(), 1e-300)
        return np.interp(grid, np.linspace(0, 1, len(s)), cum)

    grid = np.linspace(0, 1, max(len(u), len(v)))
    return float(1 - np.abs(curve(u, grid) - curve(v, grid)).max())
