"""Binned mutual information between latents and labels, with the Panzeri-Treves correction.

As in the seed (docs/originals.md §4.4): each latent is cut into ``n_bins`` equal-width bins over its own
``[min, max]``; MI is the plug-in estimate in bits minus the Panzeri-Treves bias
``(n_bins - 1)(|Y| - 1) / (2 N ln 2)``, clipped at 0; a constant latent has MI 0. All latents at
once: one ``bincount`` over (latent, bin, label).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def bin_columns(values: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """``(n, m)`` int bin index of each value, equal-width over each column's range."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    width = np.where(hi > lo, hi - lo, 1.0)
    return np.clip(((v - lo) / width * n_bins).astype(np.int64), 0, n_bins - 1)


def binned_mutual_information(
    values: Any, labels: np.ndarray, n_bins: int = 20, correct: bool = True
) -> np.ndarray:
    """``(m,)`` MI in bits between each column of ``values (n, m)`` (dense or scipy-sparse; the
    zeros of a sparse column are binned like any value) and ``labels`` (``-1`` excluded)."""
    from scipy import sparse

    keep = np.flatnonzero(labels >= 0)
    m = sparse.csc_matrix(values[keep], dtype=np.float64)
    m.eliminate_zeros()
    n, f = m.shape
    if n == 0:
        return np.zeros(f)
    _, y = np.unique(labels[keep], return_inverse=True)
    n_y = int(y.max()) + 1
    nnz = np.diff(m.indptr)
    col = np.repeat(np.arange(f), nnz)
    has_zero = nnz < n
    lo, hi = np.where(has_zero, 0.0, np.inf), np.where(has_zero, 0.0, -np.inf)
    some = nnz > 0
    lo[some] = np.minimum(lo[some], np.minimum.reduceat(m.data, m.indptr[:-1][some]))
    hi[some] = np.maximum(hi[some], np.maximum.reduceat(m.data, m.indptr[:-1][some]))
    width = np.where(hi > lo, hi - lo, 1.0)

    def bin_of(v: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.clip(((v - lo[c]) / width[c] * n_bins).astype(np.int64), 0, n_bins - 1)

    key = (col * n_bins + bin_of(m.data, col)) * n_y + y[m.indices]
    counts = np.bincount(key, minlength=f * n_bins * n_y).reshape(f, n_bins, n_y).astype(np.float64)
    nz_per_label = np.bincount(col * n_y + y[m.indices], minlength=f * n_y).reshape(f, n_y)
    zeros = np.bincount(y, minlength=n_y)[None, :] - nz_per_label  # (f, n_y)
    counts[np.arange(f), bin_of(np.zeros(f), np.arange(f))] += zeros
    joint = counts / n
    p_b = joint.sum(axis=2, keepdims=True)
    p_y = joint.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(joint > 0, joint * np.log2(joint / (p_b * p_y)), 0.0)
    mi = terms.sum(axis=(1, 2))
    if correct:
        mi -= (n_bins - 1) * (n_y - 1) / (2 * n * np.log(2))
    mi[hi <= lo] = 0.0  # constant columns
    return np.maximum(mi, 0.0)


def combine_labels(*labels: np.ndarray) -> np.ndarray:
    """One label per combination of the given labels (``-1`` where any is missing)."""
    out = np.zeros(len(labels[0]), dtype=np.int64)
    missing = np.zeros(len(labels[0]), dtype=bool)
    for y in labels:
        out = out * (int(y.max(initial=0)) + 1) + np.maximum(y, 0)
        missing |= y < 0
    out[missing] = -1
    return out
