"""Class purity of each latent's strongest images (docs/originals.md §5.4)."""

from __future__ import annotations

from typing import Any

import numpy as np


def purity(codes: Any, labels: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Per latent, from the labels of the images where it reaches at least half its maximum:
    class frequencies ``p`` (uniform when it never fires), ``csi = (p_max - mean(p_others)) /
    p_max``, ``entropy_purity = 1 - H(p) / ln C``, ``gini = sum p^2``, ``top2_ratio``, the number
    of classes with ``p > 0.1``, and the kind: 2 pure (csi > 0.7), 1 compositional (> 0.3),
    0 distributed."""
    from scipy import sparse

    m = sparse.csc_matrix(codes, dtype=np.float64)
    m.eliminate_zeros()
    f = m.shape[1]
    nnz = np.diff(m.indptr)
    col = np.repeat(np.arange(f), nnz)
    col_max = np.zeros(f)
    has = nnz > 0
    col_max[has] = np.maximum.reduceat(m.data, m.indptr[:-1][has])
    strong = (m.data >= 0.5 * col_max[col]) & (m.data > 0)
    lab = labels[m.indices[strong]]
    ok = lab >= 0
    counts = np.bincount(col[strong][ok] * n_classes + lab[ok], minlength=f * n_classes)
    counts = counts.reshape(f, n_classes).astype(np.float64)
    tot = counts.sum(axis=1, keepdims=True)
    p = np.where(tot > 0, counts / np.maximum(tot, 1), 1.0 / n_classes)
    srt = np.sort(p, axis=1)[:, ::-1]
    p_max = srt[:, 0]
    others = (p.sum(axis=1) - p_max) / max(n_classes - 1, 1)
    csi = np.where(p_max > 0, (p_max - others) / p_max, 0.0)
    h = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0)).sum(axis=1)
    return {
        "p": p,
        "csi": csi,
        "entropy_purity": 1 - h / np.log(n_classes) if n_classes > 1 else np.ones(f),
        "gini": (p**2).sum(axis=1),
        "top2_ratio": srt[:, 1] / np.maximum(p_max, 1e-12) if n_classes > 1 else np.zeros(f),
        "active_classes": (p > 0.1).sum(axis=1),
        "kind": np.where(csi > 0.7, 2, np.where(csi > 0.3, 1, 0)),
        "support": tot.ravel(),
    }
