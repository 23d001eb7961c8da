"""Bootstrap intervals and permutation p-values against exact and hand-computed references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vista.metrics.uncertainty import (
    macro_f1_ci,
    mean_ci,
    paired_permutation_pvalue,
    percentile_interval,
    ratio_ci,
    resample_counts,
    rng_for,
    two_sample_permutation_pvalue,
)


def test_resample_counts_are_multinomial_draws_of_n() -> None:
    c = resample_counts(50, 300, np.random.default_rng(0))
    assert c.shape == (300, 50) and (c.sum(axis=1) == 50).all()
    assert abs(c.mean() - 1.0) < 1e-12 and 0.8 < c.var() < 1.2  # Binomial(50, 1/50): var 0.98


def test_mean_ci_is_seeded_contains_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small, big = rng.random(50), rng.random(5000)
    a = mean_ci(small, 500, rng_for(0, "x"))
    assert a == mean_ci(small, 500, rng_for(0, "x"))  # same seed, same interval
    assert a[0] < small.mean() < a[1]
    b = mean_ci(big, 500, rng_for(0, "x"))
    assert (b[1] - b[0]) < (a[1] - a[0]) / 5
    assert mean_ci(np.full(30, 0.25), 200, rng_for(0)) == (0.25, 0.25)


def test_mean_ci_matches_the_normal_theory_width_for_a_proportion() -> None:
    # 1,000 Bernoulli(0.3): the 95% interval is about +-1.96 * sqrt(0.21 / 1000) = +-0.0284.
    x = np.zeros(1000)
    x[:300] = 1
    lo, hi = mean_ci(x, 4000, rng_for(3))
    assert (hi - lo) / 2 == pytest.approx(1.96 * np.sqrt(0.21 / 1000), rel=0.1)


def test_ratio_ci_resamples_pairs() -> None:
    num, den = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0])
    lo, hi = ratio_ci(num, den, 2000, rng_for(0))
    assert 1.0 <= lo < 2.0 < hi <= 3.0
    assert ratio_ci(2 * den, den, 100, rng_for(0)) == (2.0, 2.0)


def test_percentile_interval_ignores_nan_replicates() -> None:
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == (1.5, 2.5)


def test_paired_permutation_pvalue_matches_the_exact_sign_flip_test() -> None:
    a = np.array([0.9, 1.4, 0.2, 1.1, 0.8, 1.6, 0.3, 1.2])
    b = np.array([0.5, 1.0, 0.4, 0.6, 0.7, 1.1, 0.1, 0.9])
    d = a - b
    flips = np.array(list(itertools.product([-1, 1], repeat=len(d))))
    exact = float((np.abs(flips @ d) >= abs(d.sum()) - 1e-12).mean())
    mc = paired_permutation_pvalue(a, b, 20000, rng_for(0))
    assert mc == pytest.approx(exact, abs=0.01)
    assert paired_permutation_pvalue(a, a, 100, rng_for(0)) == 1.0


def test_two_sample_permutation_pvalue_separates_shifted_samples() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=40), rng.normal(size=40) + 2
    assert two_sample_permutation_pvalue(x, y, 500, rng_for(0)) == pytest.approx(1 / 501)
    assert two_sample_permutation_pvalue(x, x.copy(), 200, rng_for(0)) == 1.0


def test_rng_for_is_stable_across_calls_and_keys_matter() -> None:
    assert rng_for(0, "a", 3).random() == rng_for(0, "a", 3).random()
    assert rng_for(0, "a").random() != rng_for(0, "b").random()


def test_macro_f1_ci_recomputes_sklearns_macro_f1_on_each_resample() -> None:
    """Each replicate is sklearn's macro F1 of the resampled images (classes absent from a
    resample left out, as sklearn leaves them out of a smaller array)."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    p = np.where(rng.random(60) < 0.7, y, rng.integers(0, 4, 60))
    p[:3] = 5  # a predicted class no image has
    counts = resample_counts(60, 50, np.random.default_rng(3))
    want = [f1_score(np.repeat(y, c.astype(int)), np.repeat(p, c.astype(int)), average="macro",
                     zero_division=0)
            for c in counts]  # fmt: skip
    lo, hi = macro_f1_ci(y, p, 50, np.random.default_rng(3), confidence=0.9)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(want, [0.05, 0.95])), abs=1e-12)
    whole = f1_score(y, p, average="macro", zero_division=0)
    lo, hi = macro_f1_ci(y, p, 2000, np.random.default_rng(1))
    assert lo < whole < hi
