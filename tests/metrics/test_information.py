"""Binned MI with the Panzeri-Treves correction, against a hand-computed plug-in estimate."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import mutual_info_score

from vista.metrics.information import bin_columns, binned_mutual_information, combine_labels


def test_plugin_mi_equals_sklearn_on_the_bins_minus_the_bias() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 1000)
    v = rng.normal(size=(1000, 2)) + y[:, None] * np.array([1.0, 0.0])
    mi = binned_mutual_information(v, y, n_bins=20)
    bias = 19 * 2 / (2 * 1000 * np.log(2))
    for j in range(2):
        plug_in = mutual_info_score(bin_columns(v, 20)[:, j], y) / np.log(2)  # nats -> bits
        assert mi[j] == pytest.approx(max(plug_in - bias, 0.0), abs=1e-12)
    assert mi[0] > 0.3 and mi[1] < 0.02
    sparse_codes = np.where(v > 1.0, v, 0.0)  # a sparse matrix bins its zeros like any value
    np.testing.assert_allclose(
        binned_mutual_information(sparse.csr_matrix(sparse_codes), y),
        binned_mutual_information(sparse_codes, y),
        atol=1e-12,
    )


def test_constant_features_and_missing_labels() -> None:
    y = np.array([0, 1, 0, 1, -1, -1])
    v = np.column_stack([np.ones(6), [0.0, 1.0, 0.0, 1.0, 5.0, 5.0]])
    mi = binned_mutual_information(v, y, n_bins=2, correct=False)
    assert mi[0] == 0.0 and mi[1] == pytest.approx(1.0)  # one bit once -1 is dropped


def test_combine_labels_is_one_id_per_combination() -> None:
    a, b = np.array([0, 1, 1, 2, -1]), np.array([1, 0, 1, 1, 0])
    c = combine_labels(a, b)
    assert c[-1] == -1 and len(set(c[:4].tolist())) == 4
