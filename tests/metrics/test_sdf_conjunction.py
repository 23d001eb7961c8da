"""SDF discovery against a direct per-class loop of the original filter (docs/originals.md §4.3), and conjunction features by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from vista.metrics.conjunction import conjunction_scores
from vista.metrics.sdf import alignment_hits, paper_variant, three_stage


def _spec_three_stage(x: np.ndarray, y: np.ndarray, c: int, k1: int, k2: int, k3: int, k_top: int):
    """docs/originals.md §4.3 written as plainly as possible."""
    freq = (x[y == c] > 0).mean(axis=0)
    s1 = np.argsort(-freq, kind="stable")[:k1]
    mean = x[y == c].mean(axis=0)
    s2 = s1[np.argsort(-mean[s1], kind="stable")[:k2]]
    ent = []
    for j in s2:
        top = np.argsort(-x[:, j], kind="stable")[:k_top]
        mass = np.array([x[top][y[top] == lab, j].sum() for lab in range(y.max() + 1)])
        p = mass / (mass.sum() + 1e-9)
        ent.append(-(p * np.log(p + 1e-9)).sum())
    ent = np.array(ent)
    keep = np.lexsort((-mean[s2], ent))[:k3]
    return s2[keep]


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_three_stage_equals_the_spec_loop(kind: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = np.where(rng.random((300, 40)) < 0.3, rng.random((300, 40)), 0.0)
    x[:, :6] += (y[:, None] == np.arange(6) % 3) * 0.8
    xin = x if kind == "dense" else sparse.csr_matrix(x)
    seed = three_stage(xin, y, 3, 20, 10, 5, 15, own_class=False)
    fixed = three_stage(xin, y, 3, 20, 10, 5, 15)
    for c in range(3):
        np.testing.assert_array_equal(seed[c][0], _spec_three_stage(x, y, c, 20, 10, 5, 15))
        # With the own-class check the planted features lead and no other class's pure latent
        # is kept (the seed's filter keeps e.g. feature 4, pure for class 1, for class 2).
        assert set(fixed[c][0][:2]) == {c, c + 3}
        assert not set(fixed[c][0]) & ({0, 1, 2, 3, 4, 5} - {c, c + 3})


def test_alignment_hits_are_the_labels_of_the_top_images() -> None:
    x = np.array([[3.0, 0], [2.0, 1], [1.0, 2], [0.0, 3]])
    y = np.array([0, 0, 1, 1])
    hits = alignment_hits(x, np.array([0, 1]), y, 0, 2)
    assert hits.tolist() == [[True, True], [False, False]]


def test_paper_variant_flags_the_planted_feature_as_aligned() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    x = np.where(rng.random((600, 12)) < 0.3, rng.random((600, 12)), 0.0)
    x[:, 0] = (y == 2) * (1 + rng.random(600))
    res = paper_variant(x, y, 3)
    assert 0 in res[2]["features"] and res[2]["aligned"][list(res[2]["features"]).index(0)]


def test_conjunction_scores_by_hand() -> None:
    a = np.repeat([0, 0, 1, 1], 40)
    b = np.tile(np.repeat([0, 1], 40), 2)
    fired = np.zeros((160, 2))
    fired[(a == 1) & (b == 1), 0] = 1  # only the (1, 1) cell
    fired[a == 1, 1] = 1  # attribute a alone
    res = conjunction_scores(fired, a, b, 2, 2, min_size=30)
    cell = int(np.flatnonzero((res["cell_a"] == 1) & (res["cell_b"] == 1))[0])
    assert res["gap"][0, cell] == pytest.approx(1.0) and res["p"][0, cell] < 1e-10
    assert res["gap"][1, cell] == pytest.approx(0.0) and res["p"][1, cell] == pytest.approx(0.5)
