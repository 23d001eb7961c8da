"""One-vs-rest ranking metrics for every (feature, class) pair at once: AUC by ranks and average
precision, on dense arrays or scipy-sparse matrices (whose zeros are one tied block).

No Python loop over features: entries are sorted once by (feature, value), ties are averaged
(AUC) or grouped into one threshold (average precision, as sklearn does), and per-class sums are
``bincount``s. Columns are processed in chunks so memory stays bounded for dense inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_CHUNK_ENTRIES = 8_000_000
"""Entries (non-zeros plus one zero block per feature) handled per chunk of features."""


def _csc(x: Any) -> Any:
    from scipy import sparse

    m = sparse.csc_matrix(x, dtype=np.float64)
    m.eliminate_zeros()
    m.sort_indices()
    return m


def _chunks(x: Any, budget: int = _CHUNK_ENTRIES) -> list[tuple[int, int]]:
    """Feature ranges whose entries stay under ``budget``."""
    n, f = x.shape
    nnz = np.diff(_csc(x).indptr) if hasattr(x, "tocsc") else np.full(f, n)
    ends = np.cumsum(nnz + 1)
    out, start = [], 0
    while start < f:
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + budget, side="right")))
        out.append((start, min(stop, f)))
        start = min(stop, f)
    return out


def _entries(x: Any, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(col, value, label, counts_per_col)`` of the non-zero entries of a feature chunk."""
    m = _csc(x)
    nnz = np.diff(m.indptr)
    col = np.repeat(np.arange(m.shape[1]), nnz)
    return col, m.data, labels[m.indices], nnz


def auc_one_vs_rest(scores: Any, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_features, n_classes)`` ROC AUC of each feature for each class against the rest.

    Equals ``sklearn.metrics.roc_auc_score(labels == c, scores[:, j])``; a class without
    positives or negatives gets NaN. ``labels`` must be in ``0..n_classes-1``.
    """
    n, f = scores.shape
    out = np.empty((f, n_classes))
    n_pos = np.bincount(labels, minlength=n_classes).astype(np.float64)
    for a, b in _chunks(scores):
        out[a:b] = _auc_chunk(scores[:, a:b], labels, n_classes, n_pos)
    n_neg = n - n_pos
    out[:, (n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def _auc_chunk(x: Any, labels: np.ndarray, n_classes: int, n_pos: np.ndarray) -> np.ndarray:
    n, f = x.shape
    col, val, lab, nnz = _entries(x, labels)
    order = np.lexsort((val, col))
    c_s, v_s = col[order], val[order]
    starts = np.concatenate([[0], np.cumsum(nnz)[:-1]])
    pos = np.arange(len(order)) - starts[c_s]
    n_zero = n - nnz
    n_neg_vals = np.bincount(col[val < 0], minlength=f)
    rank = pos + 1.0 + np.where(v_s > 0, n_zero[c_s], 0)
    if len(order):
        new = np.concatenate([[True], (c_s[1:] != c_s[:-1]) | (v_s[1:] != v_s[:-1])])
        run = np.cumsum(new) - 1
        rank = (np.bincount(run, weights=rank) / np.bincount(run))[run]
    zero_rank = n_neg_vals + (n_zero + 1) / 2.0
    key = c_s * n_classes + lab[order]
    rank_sum = np.bincount(key, weights=rank, minlength=f * n_classes).reshape(f, n_classes)
    nz_in_class = np.bincount(key, minlength=f * n_classes).reshape(f, n_classes)
    rank_sum += zero_rank[:, None] * (n_pos[None, :] - nz_in_class)
    n_neg = n - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def average_precision_one_vs_rest(scores: Any, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_features, n_classes)`` average precision, as ``sklearn.metrics.average_precision_score``
    (one threshold per distinct value, ties together); NaN for a class without positives."""
    _n, f = scores.shape
    n_pos = np.bincount(labels, minlength=n_classes).astype(np.float64)
    out = np.empty((f, n_classes))
    for a, b in _chunks(scores, max(1, _CHUNK_ENTRIES // (2 * n_classes))):
        out[a:b] = _ap_chunk(scores[:, a:b], labels, n_classes, n_pos)
    out[:, n_pos == 0] = np.nan
    return out


def _ap_chunk(x: Any, labels: np.ndarray, n_classes: int, n_pos: np.ndarray) -> np.ndarray:
    _n, f = x.shape
    col, val, lab, _ = _entries(x, labels)
    # Entries sorted by (feature, descending value); each feature's zeros form one block, placed
    # after its positive and before its negative values.
    all_col = np.concatenate([col, np.arange(f)])
    all_val = np.concatenate([val, np.zeros(f)])
    order = np.lexsort((-all_val, all_col))
    c_s, v_s = all_col[order], all_val[order]
    new = np.concatenate([[True], (c_s[1:] != c_s[:-1]) | (v_s[1:] != v_s[:-1])])
    run_of = np.empty(len(order), dtype=np.int64)
    run_of[order] = np.cumsum(new) - 1  # the threshold group of every entry
    n_runs = int(new.sum())
    run_col = c_s[new]
    run_w = (
        np.bincount(run_of[: len(col)] * n_classes + lab, minlength=n_runs * n_classes)
        .reshape(n_runs, n_classes)
        .astype(np.float64)
    )
    nz_in_class = np.bincount(col * n_classes + lab, minlength=f * n_classes).reshape(f, n_classes)
    run_w[run_of[len(col) :]] += n_pos[None, :] - nz_in_class  # the zero blocks
    cum = np.cumsum(run_w, axis=0)
    first_run = np.searchsorted(run_col, np.arange(f))
    before = np.vstack([np.zeros((1, n_classes)), cum])[first_run]  # cumulative before each feature
    tp = cum - before[run_col]
    total = tp.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        contrib = (run_w / n_pos[None, :]) * (tp / np.maximum(total, 1e-300))
    out = np.zeros((f, n_classes))
    np.add.at(out, run_col, contrib)
    return out


def purity_at_k(scores: np.ndarray, labels: np.ndarray, target: int, k: int) -> float:
    """Fraction of the ``k`` highest-scoring samples (ties by index) whose label is ``target``."""
    k = min(k, len(scores))
    if k == 0:
        return float("nan")
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return float((labels[top] == target).mean())
