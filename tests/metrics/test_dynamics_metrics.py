"""Spectra, concept paths and purity (docs/originals.md §5.2-5.4) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from vista.metrics.paths import overlaps, pair_jaccard, select
from vista.metrics.purity import purity
from vista.metrics.spectral import spectral_summary


def test_spectral_summary_of_a_diagonal_matrix() -> None:
    s = spectral_summary(np.diag([4.0, 2.0, 1.0, 0.0]))
    assert s["stable_rank"] == pytest.approx((16 + 4 + 1) / 16)
    p = np.array([4, 2, 1, 0]) / 7
    assert s["effective_rank"] == pytest.approx(np.exp(-(p[:3] * np.log(p[:3])).sum()))
    assert s["participation_ratio"] == pytest.approx(49 / 21)
    assert s["rank"] == 3 and s["condition_number"] == float("inf")
    assert s["rank_above_0.1"] == 3 and s["rank_above_0.001"] == 3
    assert spectral_summary(np.eye(3))["spectral_decay"] == pytest.approx(0.0)


def _loop_select(x: np.ndarray, method: str, value: float) -> np.ndarray:
    out = np.zeros_like(x)
    for i, row in enumerate(x):
        cand = np.flatnonzero(row >= 1e-5)
        if not len(cand):
            continue
        v = row[cand]
        if method == "top_k":
            keep = cand[np.argsort(-v, kind="stable")[: int(value)]]
        elif method == "percentile":
            keep = cand[v >= np.percentile(v, value) - 1e-12]
        else:
            keep = cand[v >= v.mean() + value * v.std() - 1e-12]
        out[i, keep] = 1
    return out


@pytest.mark.parametrize(
    ("method", "value"), [("top_k", 3), ("percentile", 90), ("std_threshold", 1.0)]
)
def test_path_selection_equals_a_per_image_loop(method: str, value: float) -> None:
    rng = np.random.default_rng(0)
    x = np.where(rng.random((60, 25)) < 0.4, rng.random((60, 25)), 0.0)
    np.testing.assert_array_equal(
        select(x, method, value).toarray(), _loop_select(x, method, value)
    )


def test_overlaps_and_jaccard_by_hand() -> None:
    x = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1.0]])
    sel = select(x, "absolute", 0)
    assert pair_jaccard(sel, np.array([0, 2]), np.array([1, 3])).tolist() == [1 / 3, 1.0]
    ov = overlaps(sel, np.array([0, 0, 1, 1]), 2, 100, np.random.default_rng(0))
    assert ov["between_class_jaccard"] == pytest.approx(1 / 4)  # {0,1,2} vs {2,3}
    assert ov["mean_path_size"] == 2.0 and ov["unique_latents"] == 4


def test_purity_by_hand() -> None:
    # latent 0: its strong images (>= half its max) are labels 0, 0, 1 -> p = (2/3, 1/3, 0)
    codes = np.array([[1.0, 0], [0.9, 0], [0.6, 0], [0.2, 0.0]])
    labels = np.array([0, 0, 1, 2])
    p = purity(codes, labels, 3)
    np.testing.assert_allclose(p["p"][0], [2 / 3, 1 / 3, 0])
    assert p["csi"][0] == pytest.approx((2 / 3 - 1 / 6) / (2 / 3))
    assert p["gini"][0] == pytest.approx(4 / 9 + 1 / 9)
    assert p["kind"][0] == 2 and p["active_classes"][0] == 2  # csi 0.75 > 0.7: pure
    np.testing.assert_allclose(p["p"][1], [1 / 3] * 3)  # never fires: uniform
