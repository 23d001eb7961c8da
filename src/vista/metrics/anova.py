"""Factorial ANOVA with type-II sums of squares for many response variables at once.

The seeds fit one statsmodels OLS per latent (``y ~ C(a)*C(b)*C(c)``, ``anova_lm(typ=2)``), which
takes minutes for thousands of latents. Every latent shares the design, so here each model of the
comparison is one orthonormal basis ``Q`` of its column space (treatment coding, rank-revealing,
so empty cells are handled), and ``RSS = ||y||^2 - ||Q^T y||^2`` for all latents in one product.
Type II: the sum of squares of a term is ``RSS(M) - RSS(M + term)``, where ``M`` holds every term
that does not contain it (Langsrud 2003), as ``anova_lm(typ=2)`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

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


def _dummies(levels: np.ndarray) -> np.ndarray:
    """Treatment-coded indicator columns (the first level is the reference)."""
    uniq = np.unique(levels)
    return (levels[:, None] == uniq[None, 1:]).astype(np.float64)


def _basis(columns: list[np.ndarray], n: int) -> np.ndarray:
    """Orthonormal basis of the span of the intercept and ``columns``."""
    x = np.hstack([np.ones((n, 1)), *columns]) if columns else np.ones((n, 1))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    tol = s.max() * max(x.shape) * np.finfo(np.float64).eps
    return u[:, s > tol]


def factorial_anova(
    y: np.ndarray, factors: dict[str, np.ndarray]
) -> tuple[list[AnovaTerm], np.ndarray, int]:
    """Type-II ANOVA of every column of ``y (n, m)`` on the full factorial of ``factors``.

    Returns ``(terms, residual SS (m,), residual df)``; term names join factor names with ``:``
    (``age:gender``), main effects first, as statsmodels orders them.
    """
    from scipy.stats import f as f_dist

    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    names = list(factors)
    dummies = {k: _dummies(np.asarray(v)) for k, v in factors.items()}
    terms = [c for r in range(1, len(names) + 1) for c in combinations(names, r)]

    def design(term: tuple[str, ...]) -> np.ndarray:
        cols = dummies[term[0]]
        for name in term[1:]:
            d = dummies[name]
            cols = (cols[:, :, None] * d[:, None, :]).reshape(n, -1)
        return cols

    cols = {t: design(t) for t in terms}
    yy = (y**2).sum(axis=0)
    cache: dict[frozenset, tuple[np.ndarray, int]] = {}

    def rss(model: frozenset) -> tuple[np.ndarray, int]:
        if model not in cache:
            q = _basis([cols[t] for t in terms if t in model], n)
            proj = q.T @ y
            cache[model] = (yy - (proj**2).sum(axis=0), q.shape[1])
        return cache[model]

    full = frozenset(terms)
    rss_full, rank_full = rss(full)
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
