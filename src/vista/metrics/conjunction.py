"""Conjunction features: latents that fire for an intersection of two attributes but for neither
attribute alone (a test none of the seeds has).

For attributes A, B, a cell ``(a, b)`` and a latent, with firing rates over images
``r_cell = P(fire | A=a, B=b)``, ``r_a = P(fire | A=a, B!=b)``, ``r_b = P(fire | A!=a, B=b)``:
the conjunction gap is ``r_cell - max(r_a, r_b)``, and a one-sided two-proportion z-test compares
the cell with the larger of the two marginal-only groups (Bonferroni over every latent and cell
tested).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vista.metrics.alignment import class_sums


def conjunction_scores(
    fired: Any, a: np.ndarray, b: np.ndarray, n_a: int, n_b: int, min_size: int = 30
) -> dict[str, np.ndarray]:
    """Gap and one-sided p-value (uncorrected) for every (latent, cell) with enough images.

    ``fired (n, m)`` is 0/1 (dense or sparse); ``a``, ``b`` are labels in ``0..n_a-1`` /
    ``0..n_b-1`` (``-1`` excluded). Returns ``cell_a``, ``cell_b`` (tested cells), and
    ``(m, n_cells)`` arrays ``r_cell``, ``r_other`` (the larger marginal-only rate), ``gap``, ``p``.
    """
    from scipy.stats import norm

    ok = (a >= 0) & (b >= 0)
    cell = np.where(ok, a * n_b + b, -1)
    c_cell = class_sums(fired, cell, n_a * n_b).T  # (m, n_a*n_b) firing counts per cell
    n_cell = np.bincount(cell[ok], minlength=n_a * n_b).astype(np.float64)
    c3 = c_cell.reshape(-1, n_a, n_b)
    n3 = n_cell.reshape(n_a, n_b)
    c_a, n_arow = c3.sum(axis=2), n3.sum(axis=1)  # per a
    c_b, n_bcol = c3.sum(axis=1), n3.sum(axis=0)  # per b
    ia, ib = np.divmod(np.arange(n_a * n_b), n_b)
    rest_a_n = n_arow[ia] - n_cell  # A=a, B!=b
    rest_b_n = n_bcol[ib] - n_cell  # A!=a, B=b
    tested = (n_cell >= min_size) & (rest_a_n >= min_size) & (rest_b_n >= min_size)
    idx = np.flatnonzero(tested)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_cell = c_cell[:, idx] / n_cell[idx]
        r_a = (c_a[:, ia[idx]] - c_cell[:, idx]) / rest_a_n[idx]
        r_b = (c_b[:, ib[idx]] - c_cell[:, idx]) / rest_b_n[idx]
        use_a = r_a >= r_b
        r_other = np.where(use_a, r_a, r_b)
        n_other = np.where(use_a, rest_a_n[idx], rest_b_n[idx])
        pooled = (r_cell * n_cell[idx] + r_other * n_other) / (n_cell[idx] + n_other)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_cell[idx] + 1 / n_other))
        z = np.where(se > 0, (r_cell - r_other) / se, 0.0)
    return {
        "cell_a": ia[idx],
        "cell_b": ib[idx],
        "r_cell": r_cell,
        "r_other": r_other,
        "gap": r_cell - r_other,
        "p": norm.sf(z),
    }
