"""Rank-based AUC and average precision for all features at once, against sklearn per feature."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import average_precision_score, roc_auc_score

from vista.metrics import ranking
from vista.metrics.ranking import auc_one_vs_rest, average_precision_one_vs_rest, purity_at_k


def _codes(rng: np.random.Generator, n: int = 400, f: int = 30, c: int = 4):
    y = rng.integers(0, c, n)
    # Quantised values (ties), many exact zeros, a dead column, a signed column.
    x = np.where(rng.random((n, f)) < 0.3, np.round(rng.random((n, f)) * 5) / 5, 0.0)
    x += 0.4 * (y[:, None] == np.arange(f) % c) * (rng.random((n, f)) < 0.5)
    x[:, 3] = 0.0
    x[:, 5] = rng.normal(size=n).round(1)
    return x, y


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_auc_and_ap_equal_sklearn_for_every_feature_and_class(kind: str) -> None:
    x, y = _codes(np.random.default_rng(0))
    xin = x if kind == "dense" else sparse.csr_matrix(x)
    auc, ap = auc_one_vs_rest(xin, y, 4), average_precision_one_vs_rest(xin, y, 4)
    for j in range(x.shape[1]):
        for c in range(4):
            assert auc[j, c] == pytest.approx(roc_auc_score(y == c, x[:, j]), abs=1e-12)
            assert ap[j, c] == pytest.approx(average_precision_score(y == c, x[:, j]), abs=1e-12)


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _codes(np.random.default_rng(1))
    whole = auc_one_vs_rest(x, y, 4), average_precision_one_vs_rest(x, y, 4)
    monkeypatch.setattr(ranking, "_CHUNK_ENTRIES", 500)  # several features per chunk
    np.testing.assert_allclose(auc_one_vs_rest(x, y, 4), whole[0], atol=1e-12)
    np.testing.assert_allclose(average_precision_one_vs_rest(x, y, 4), whole[1], atol=1e-12)


def test_a_class_without_positives_is_nan() -> None:
    x = np.random.default_rng(0).random((20, 3))
    y = np.zeros(20, dtype=int)
    y[10:] = 1
    assert np.isnan(auc_one_vs_rest(x, y, 3)[:, 2]).all()
    assert np.isnan(average_precision_one_vs_rest(x, y, 3)[:, 2]).all()


def test_purity_at_k_by_hand() -> None:
    scores = np.array([0.9, 0.1, 0.8, 0.8, 0.0])
    labels = np.array([1, 1, 0, 1, 1])
    assert purity_at_k(scores, labels, 1, 2) == 0.5  # 0.9 (label 1) and the first 0.8 (label 0)
    assert purity_at_k(scores, labels, 1, 3) == pytest.approx(2 / 3)
