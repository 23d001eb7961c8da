"""Factorial ANOVA with type-II sums of squares for many response variables at once.

The seeds fit one statsmodels OLS per latent (``y ~ C(a)*C(b)*C(c)``, ``anova_lm(typ=2)``), which
takes minutes for thousands of latents. Every design here is spanned by the indicators of the
cells (the combinations of the factors' levels), so each image's design row depends only on its
cell: with ``D`` the treatment-coded design per cell, ``n_g`` the cell sizes and ``S`` the cell sums
of the responses, ``X^T X = D^T diag(n) D`` and ``X^T y = D^T S``. Every model's fit therefore
comes from ``A = diag(sqrt(n)) D`` alone: ``RSS = ||y||^2 - ||Q_A^T (S / sqrt(n))||^2`` with ``Q_A``
an orthonormal basis of ``A``'s columns (rank-revealing, so empty or collinear cells are handled).
Memory is cells x responses, whatever the number of images. Type II: a term's sum of squares is
``RSS(M) - RSS(M + term)``, ``M`` holding every term that does not contain it (Langsrud 2003),
as ``anova_lm(typ=2)`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np


@dataclass
class AnovaTerm:
    """One term of the table, for every response column."""

    name: str
    ss: np.ndarray
    df: int
    f: np.ndarray
    p: np.ndarray
    partial_eta_sq: np.ndarray
    """``SS_term / (SS_term + SS_residual)``."""


def cell_statistics(
    y: Any, factors: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(n per cell, sums per cell (G, m), sum of squares per column (m,), level per cell per
    factor)`` of ``y (n, m)`` (dense or scipy-sparse) over the occupied cells of ``factors``."""
    keys = np.stack([np.asarray(v) for v in factors.values()], axis=1)
    cells, cell_of = np.unique(keys, axis=0, return_inverse=True)
    cell_of = cell_of.ravel()
    g = len(cells)
    counts = np.bincount(cell_of, minlength=g).astype(np.float64)
    onehot = np.zeros((len(cell_of), g))
    onehot[np.arange(len(cell_of)), cell_of] = 1.0
    sums = np.asarray(y.T @ onehot, dtype=np.float64).T
    if hasattr(y, "multiply"):
        sumsq = np.asarray(y.multiply(y).sum(axis=0), dtype=np.float64).ravel()
    else:
        sumsq = (np.asarray(y, dtype=np.float64) ** 2).sum(axis=0)
    levels = {k: cells[:, i] for i, k in enumerate(factors)}
    return counts, sums, sumsq, levels


def _dummies(levels: np.ndarray) -> np.ndarray:
    """Treatment-coded indicator columns (the first level is the reference)."""
    uniq = np.unique(levels)
    return (levels[:, None] == uniq[None, 1:]).astype(np.float64)


def factorial_anova(
    y: Any, factors: dict[str, np.ndarray]
) -> tuple[list[AnovaTerm], np.ndarray, int]:
    """Type-II ANOVA of every column of ``y (n, m)`` on the full factorial of ``factors``.

    Returns ``(terms, residual SS (m,), residual df)``; term names join factor names with ``:``
    (``age:gender``), main effects first, as statsmodels orders them.
    """
    counts, sums, sumsq, levels = cell_statistics(y, factors)
    return anova_from_cells(counts, sums, sumsq, levels)


def anova_from_cells(
    counts: np.ndarray, sums: np.ndarray, sumsq: np.ndarray, levels: dict[str, np.ndarray]
) -> tuple[list[AnovaTerm], np.ndarray, int]:
    """``factorial_anova`` from the cell statistics of ``cell_statistics``."""
    from scipy.stats import f as f_dist

    n = int(counts.sum())
    names = list(levels)
    dummies = {k: _dummies(v) for k, v in levels.items()}
    terms = [c for r in range(1, len(names) + 1) for c in combinations(names, r)]

    def design(term: tuple[str, ...]) -> np.ndarray:
        cols = dummies[term[0]]
        for name in term[1:]:
            d = dummies[name]
            cols = (cols[:, :, None] * d[:, None, :]).reshape(len(counts), -1)
        return cols

    cols = {t: design(t) for t in terms}
    # Every model has the intercept: centre the responses first (less cancellation in the RSS).
    mean = sums.sum(axis=0) / n
    sums = sums - counts[:, None] * mean
    sumsq = sumsq - n * mean**2
    root = np.sqrt(counts)
    scaled = sums / root[:, None]
    cache: dict[frozenset, tuple[np.ndarray, int]] = {}

    def rss(model: frozenset) -> tuple[np.ndarray, int]:
        if model not in cache:
            a = np.hstack([np.ones((len(counts), 1)), *[cols[t] for t in terms if t in model]])
            u, s, _ = np.linalg.svd(root[:, None] * a, full_matrices=False)
            q = u[:, s > s.max() * max(a.shape) * np.finfo(np.float64).eps]
            cache[model] = (sumsq - ((q.T @ scaled) ** 2).sum(axis=0), q.shape[1])
        return cache[model]

    rss_full, rank_full = rss(frozenset(terms))
    df_resid = n - rank_full
    mse = rss_full / max(df_resid, 1)
    out = []
    for t in terms:
        reduced = frozenset(u for u in terms if not set(t) <= set(u))
        rss_r, rank_r = rss(reduced)
        rss_a, rank_a = rss(reduced | {t})
        ss = np.maximum(rss_r - rss_a, 0.0)
        df = rank_a - rank_r
        with np.errstate(invalid="ignore", divide="ignore"):
            fstat = (ss / max(df, 1)) / mse
            eta = ss / (ss + rss_full)
        p = f_dist.sf(fstat, df, df_resid) if df > 0 and df_resid > 0 else np.full(len(ss), np.nan)
        out.append(AnovaTerm(":".join(t), ss, df, fstat, p, eta))
    return out, rss_full, df_resid
