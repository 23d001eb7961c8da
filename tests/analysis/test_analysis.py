"""Alignment and probes, checked against sklearn run directly."""

from __future__ import annotations

import numpy as np
import pytest

from vista.analysis.alignment import feature_alignment
from vista.analysis.probes import probe_comparison
from vista.analysis.probing import ProbeConfig, split_indices


def test_split_is_stratified_and_seeded() -> None:
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    tr, te, stratified = split_indices(y, 0.2, 42)
    assert stratified and len(te) == 20 and len(np.intersect1d(tr, te)) == 0
    assert np.bincount(y[te]).tolist() == [10, 6, 4]
    tr2, te2, _ = split_indices(y, 0.2, 42)
    np.testing.assert_array_equal(te, te2)


def test_probe_accuracy_equals_sklearn_directly(rng: np.random.Generator) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    y = rng.integers(0, 3, size=300)
    raw = rng.normal(size=(300, 5)) + y[:, None]
    codes = np.abs(rng.normal(size=(300, 9))) * (y[:, None] == np.arange(9) % 3)
    cfg = ProbeConfig(standardize=False)
    res, raw_pred, sae_pred = probe_comparison(raw, codes, y, ["a", "b", "c"], cfg)
    tr, te = train_test_split(np.arange(300), test_size=0.2, random_state=42, stratify=y)
    raw_ok, sae_ok = (
        raw_pred == y[np.sort(te)],
        sae_pred == y[np.sort(te)],
    )  # sorted, as vista splits
    ref_raw = LogisticRegression(C=0.1, max_iter=1000).fit(raw[tr], y[tr]).score(raw[te], y[te])
    ref_sae = LogisticRegression(C=0.1, max_iter=1000).fit(codes[tr], y[tr]).score(codes[te], y[te])
    assert res["raw_latent_accuracy"] == pytest.approx(ref_raw)
    assert res["sae_latent_accuracy"] == pytest.approx(ref_sae)
    assert res["delta"] == pytest.approx(ref_sae - ref_raw)
    assert set(res["per_class_report"]) >= {"a", "b", "c", "accuracy"}
    assert raw_ok.mean() == pytest.approx(ref_raw) and len(sae_ok) == 60


def test_alignment_finds_the_class_specific_latent() -> None:
    y = np.repeat([0, 1, 2], 10)
    codes = np.zeros((30, 4))
    codes[y == 1, 2] = 5.0  # latent 2 fires for class 1 only
    codes[:, 0] = 1.0  # latent 0 fires for everything
    codes[y == 0, 3] = 0.5
    a, var, sel = feature_alignment(codes, y, ["x", "y", "z"], top_n=2)
    assert a["top_variant_features"] == [2, 3]
    assert a["top_variant_scores"][0] == pytest.approx(np.var([0.0, 5.0, 0.0]))
    assert a["mean_per_class_top_features"]["y"] == [5.0, 0.0]
    assert a["selectivity_max"] == pytest.approx(1.0) and a["n_scored_features"] == 3
