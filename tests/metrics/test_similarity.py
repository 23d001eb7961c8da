"""CKA in feature space against the seeds' N x N formula; matching against scipy; angles by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from vista.metrics.similarity import (
    ks_overlap,
    linear_cka,
    match,
    matched_similarity,
    principal_angles,
    unit_rows,
)


def _gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The seed's computation: centred columns, N x N Gram matrices, unbiased HSIC (Song 2012)."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    n = len(x)

    def hsic(k: np.ndarray, l_: np.ndarray) -> float:
        k, l_ = k.copy(), l_.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(l_, 0)
        one = np.ones(n)
        return (
            np.trace(k @ l_)
            + one @ k @ one * (one @ l_ @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ l_ @ one
        ) / (n * (n - 3))

    k, l_ = x @ x.T, y @ y.T
    return float(np.clip(hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_)), 0, 1))


def test_feature_space_cka_equals_the_gram_computation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 9))
    y = x @ rng.normal(size=(9, 6)) + rng.normal(size=(80, 6))
    codes = np.where(x > 0.5, x, 0.0)
    assert linear_cka(x, y) == pytest.approx(_gram_cka(x, y), abs=1e-12)
    assert linear_cka(sparse.csr_matrix(codes), y) == pytest.approx(_gram_cka(codes, y), abs=1e-12)
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ np.linalg.qr(rng.normal(size=(9, 9)))[0]) == pytest.approx(1.0)
    assert linear_cka(x[:3], y[:3]) == 0.0  # n < 4


def test_hungarian_matching_recovers_a_permuted_dictionary() -> None:
    rng = np.random.default_rng(1)
    d = unit_rows(rng.normal(size=(40, 16)))
    perm = rng.permutation(40)
    value, partner, how = matched_similarity(d @ d[perm].T)
    assert how == "hungarian" and np.allclose(value, 1.0)
    np.testing.assert_array_equal(perm[partner], np.arange(40))
    sim = rng.random((30, 25))
    r, c, _ = match(sim)
    rr, cc = linear_sum_assignment(-sim)
    assert sim[r, c].sum() == pytest.approx(sim[rr, cc].sum())
    _, _, greedy = match(d @ d[perm].T, max_exact=10)
    assert greedy == "greedy"


def test_principal_angles_by_hand() -> None:
    e = np.eye(4)
    np.testing.assert_allclose(principal_angles(e[:, :2], e[:, [1, 0]]), [1.0, 1.0])
    np.testing.assert_allclose(principal_angles(e[:, :2], e[:, 2:]), [0.0, 0.0], atol=1e-12)
    c = principal_angles(e[:, :1], (e[:, 0] + e[:, 1])[:, None])
    assert c[0] == pytest.approx(np.sqrt(0.5))


def test_ks_overlap() -> None:
    v = np.array([5.0, 3.0, 1.0, 0.5])
    assert ks_overlap(v, v) == pytest.approx(1.0)
    assert ks_overlap(np.array([1.0, 0, 0, 0]), np.ones(4)) == pytest.approx(0.25)
