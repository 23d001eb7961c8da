"""Metrics against float64 numpy references and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vista.metrics.alignment import class_means, inter_class_variance, selectivity
from vista.metrics.reconstruction import (
    ReconstructionAccumulator,
    explained_variance,
    fvu,
    mean_cosine,
)
from vista.metrics.sparsity import SparsityAccumulator, frequency_histogram, l0_per_token


def _numpy_fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    x, x_hat = x.astype(np.float64), x_hat.astype(np.float64)
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(axis=0)) ** 2).sum())


def test_fvu_matches_a_float64_numpy_reference(rng: np.random.Generator) -> None:
    x = (rng.normal(size=(500, 12)) * rng.uniform(0.1, 10, size=12) + 50).astype(np.float32)
    x_hat = x + rng.normal(size=x.shape).astype(np.float32)
    ref = _numpy_fvu(x, x_hat)
    assert fvu(torch.from_numpy(x), torch.from_numpy(x_hat)) == pytest.approx(ref, rel=1e-12)
    assert explained_variance(torch.from_numpy(x), torch.from_numpy(x_hat)) == pytest.approx(
        1 - ref, rel=1e-10
    )


def test_fvu_is_relative_to_the_per_dimension_mean_not_zero() -> None:
    # Predicting the per-dimension mean explains none of the variance, however far the mean is from 0.
    x = torch.tensor([[100.0, -5.0], [102.0, -7.0], [98.0, -6.0]])
    assert fvu(x, x.mean(0, keepdim=True).expand_as(x)) == pytest.approx(1.0)


def test_streaming_accumulator_equals_one_pass_in_float64(rng: np.random.Generator) -> None:
    # Large offset + small spread: a naive float32 sum-of-squares formula loses most digits here.
    x = (rng.normal(size=(3000, 7)) * 0.01 + 1000.0).astype(np.float32)
    x_hat = (x + rng.normal(size=x.shape) * 0.003).astype(np.float32)
    acc = ReconstructionAccumulator()
    for a in range(0, 3000, 250):
        acc.update(torch.from_numpy(x[a : a + 250]), torch.from_numpy(x_hat[a : a + 250]))
    r = acc.result()
    assert r["fvu"] == pytest.approx(_numpy_fvu(x, x_hat), rel=1e-9)
    x64, xh64 = x.astype(np.float64), x_hat.astype(np.float64)
    assert r["mse"] == pytest.approx(((x64 - xh64) ** 2).mean(), rel=1e-12)
    cos = (x64 * xh64).sum(1) / (np.linalg.norm(x64, axis=1) * np.linalg.norm(xh64, axis=1))
    assert r["cosine_similarity"] == pytest.approx(cos.mean(), rel=1e-12)
    assert r["l2_ratio"] == pytest.approx(
        (np.linalg.norm(xh64, axis=1) / np.linalg.norm(x64, axis=1)).mean()
    )
    assert r["relative_reconstruction_bias"] == pytest.approx((xh64**2).sum() / (x64 * xh64).sum())
    assert mean_cosine(torch.from_numpy(x), torch.from_numpy(x_hat)) == pytest.approx(
        cos.mean(), rel=1e-12
    )


def test_sparsity_accumulator_by_hand() -> None:
    codes = torch.tensor(
        [[1.0, 0.0, 0.0, 0.0], [2.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [5.0, 1.0, 1.0, 0.0]]
    )  # two images of two tokens
    acc = SparsityAccumulator(d_sae=4)
    acc.update(codes, tokens_per_image=2)
    r = acc.result()
    assert acc.counts.tolist() == [3, 2, 1, 0]
    assert l0_per_token(codes).tolist() == [1, 2, 0, 3]
    assert (
        r["dead_feature_count"],
        r["dead_feature_ratio"],
        r["total_tokens"],
        r["num_samples"],
    ) == (1, 0.25, 4, 2)
    assert r["l0_mean"] == pytest.approx(1.5) and r["l0_std"] == pytest.approx(
        0.0
    )  # images: 1.5, 1.5
    assert r["activation_frequency_percentiles"]["100"] == 3.0
    assert r["firing_frequency_percentiles"]["100"] == pytest.approx(0.75)


def test_frequency_histogram_counts_alive_latents_and_dead_separately() -> None:
    h = frequency_histogram(np.array([0.0, 0.5, 0.05, 1e-9]), bins=7, low=-7.0)
    assert h["dead"] == 1 and sum(h["counts"]) == 3
    assert h["counts"][0] == 1  # 1e-9 is clipped into the lowest bin


def test_class_means_and_inter_class_variance_by_hand() -> None:
    feats = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 4.0], [2.0, 2.0]])
    y = np.array([0, 0, 1, 1])
    m = class_means(feats, y, 3)
    np.testing.assert_allclose(m[:2], [[2.0, 0.0], [1.0, 3.0]])
    assert np.isnan(m[2]).all()
    np.testing.assert_allclose(inter_class_variance(m[:2]), [0.25, 2.25])


def test_selectivity_is_bounded_where_vistas_ratio_explodes() -> None:
    means = np.array([[4.0, 1.0, 0.0, 2.0], [0.0, 1.0, 0.0, 2.0], [0.0, 1.0, 0.0, 1.0]])
    s = selectivity(means)
    # feature 0 fires for one class only -> 1; feature 1 is flat -> 0; feature 2 never fires -> nan;
    # feature 3: top 2, rest mean 1.5 -> 0.5 / 3.5
    assert s[0] == pytest.approx(1.0) and s[1] == pytest.approx(0.0) and np.isnan(s[2])
    assert s[3] == pytest.approx(0.5 / 3.5)
    vista_ratio = means.max(0)[0] / max(means.min(0)[0], 1e-12)
    assert vista_ratio > 1e11 and np.nanmax(s) <= 1.0


def test_saebench_explained_variance_and_mse_follow_its_per_token_per_batch_definitions() -> None:
    """SAEBench (evals/core): per token 1 - ||x - x_hat||^2 / ||x - mean of its batch||^2 and
    ||x - x_hat||^2 / (tokens in the batch), each averaged over all tokens; recomputed in numpy."""
    from vista.metrics.reconstruction import ReconstructionAccumulator

    rng = np.random.default_rng(3)
    batches = [rng.normal(size=(n, 6)) + 2.0 for n in (50, 17)]
    acc = ReconstructionAccumulator()
    ev, mse = [], []
    for x in batches:
        xh = x + rng.normal(scale=0.3, size=x.shape)
        acc.update(torch.as_tensor(x), torch.as_tensor(xh))
        rss = ((x - xh) ** 2).sum(1)
        ev.append(1 - rss / ((x - x.mean(0)) ** 2).sum(1))
        mse.append(rss / len(x))
    got = acc.result()
    assert got["saebench_explained_variance"] == pytest.approx(np.concatenate(ev).mean(), rel=1e-12)
    assert got["saebench_mse"] == pytest.approx(np.concatenate(mse).mean(), rel=1e-12)
    # vista's own FVU is against the split's per-dimension mean, over all tokens at once.
    x_all = np.concatenate(batches)
    assert got["explained_variance"] != pytest.approx(got["saebench_explained_variance"], rel=1e-3)
    assert got["total_variance_per_token"] == pytest.approx(
        ((x_all - x_all.mean(0)) ** 2).sum(1).mean()
    )
