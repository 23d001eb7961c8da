"""Concept paths (docs/originals.md §5.3): the set of latents each image selects, and how these sets overlap
between classes, within classes and for random pairs (seeded: the seed's pairs were not, D36)."""

from __future__ import annotations

from typing import Any

import numpy as np


def select(codes: Any, method: str, value: float, min_activation: float = 1e-5) -> Any:
    """``(N, d_sae)`` sparse 0/1 matrix of the latents each image selects.

    Candidates are codes ``>= min_activation``; ``top_k`` keeps the ``value`` largest,
    ``percentile`` those at or above the ``value``-th percentile of the image's candidates,
    ``std_threshold`` those at or above ``mean + value * std`` of them, ``absolute`` all.
    """
    from scipy import sparse

    m = sparse.csr_matrix(codes, dtype=np.float64)
    n, f = m.shape
    row = np.repeat(np.arange(n), np.diff(m.indptr))
    keep = m.data >= min_activation
    row, col, val = row[keep], m.indices[keep], m.data[keep]
    if method == "top_k":
        order = np.lexsort((-val, row))
        starts = np.searchsorted(row[order], np.arange(n))
        pos = np.arange(len(order)) - starts[row[order]]
        sel = np.zeros(len(val), dtype=bool)
        sel[order[pos < int(value)]] = True
    elif method in ("percentile", "std_threshold"):
        cnt = np.maximum(np.bincount(row, minlength=n), 1)
        if method == "std_threshold":
            mean = np.bincount(row, weights=val, minlength=n) / cnt
            var = np.bincount(row, weights=val**2, minlength=n) / cnt - mean**2
            cut = mean + value * np.sqrt(np.maximum(var, 0))
        else:  # numpy's linear-interpolation percentile of each image's candidates, vectorised
            order = np.lexsort((val, row))
            v_s = val[order]
            starts = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n))[:-1]])
            pos = (cnt - 1) * value / 100.0
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, cnt - 1)
            has = np.bincount(row, minlength=n) > 0
            cut = np.full(n, np.inf)
            a, b = (
                v_s[np.minimum(starts + lo, len(v_s) - 1)],
                v_s[np.minimum(starts + hi, len(v_s) - 1)],
            )
            cut[has] = (a + (pos - lo) * (b - a))[has]
        sel = val >= cut[row] - 1e-12
    elif method == "absolute":
        sel = np.ones(len(val), dtype=bool)
    else:
        raise ValueError(f"unknown concept-path method {method!r}")
    return sparse.csr_matrix((np.ones(int(sel.sum())), (row[sel], col[sel])), shape=(n, f))


def pair_jaccard(sel: Any, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Jaccard index of the selected sets of image pairs ``(i[k], j[k])`` (0 for two empty sets)."""
    inter = np.asarray(sel[i].multiply(sel[j]).sum(axis=1)).ravel()
    sizes = np.asarray(sel.sum(axis=1)).ravel()
    union = sizes[i] + sizes[j] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def overlaps(
    sel: Any, labels: np.ndarray, n_classes: int, n_pairs: int, rng: np.random.Generator
) -> dict[str, float]:
    """Mean path size, unique latents, and mean Jaccard between classes (of their union sets),
    within classes and for random pairs of images."""
    sizes = np.asarray(sel.sum(axis=1)).ravel()
    ok = labels >= 0
    union = np.asarray((sel[ok].T @ np.eye(n_classes)[labels[ok]]) > 0)  # (d_sae, C)
    jac = []
    for a in range(n_classes):
        for b in range(a + 1, n_classes):
            u = (union[:, a] | union[:, b]).sum()
            jac.append((union[:, a] & union[:, b]).sum() / u if u else 0.0)
    n = sel.shape[0]
    i, j = rng.integers(0, n, n_pairs), rng.integers(0, n, n_pairs)
    within = []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if len(members) >= 2:
            per = max(1, n_pairs // n_classes)
            within.append(pair_jaccard(sel, rng.choice(members, per), rng.choice(members, per)))
    return {
        "mean_path_size": float(sizes.mean()),
        "std_path_size": float(sizes.std()),
        "unique_latents": float((np.asarray(sel.sum(axis=0)).ravel() > 0).sum()),
        "between_class_jaccard": float(np.mean(jac)) if jac else float("nan"),
        "within_class_jaccard": float(np.concatenate(within).mean()) if within else float("nan"),
        "random_pair_jaccard": float(pair_jaccard(sel, i, j).mean()),
    }
