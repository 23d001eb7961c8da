"""Uncertainty: percentile bootstrap confidence intervals and permutation p-values.

Every interval is a percentile bootstrap over the independent unit of the data (images, as a
rule), with a seeded generator; every p-value is a Monte-Carlo permutation test with the +1
correction (Phipson & Smyth 2010), so it is never exactly 0. The VISTA paper promises both and the
code has neither (docs/originals.md D18).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from vista.progress import heartbeat

_BLOCK = 128
"""Bootstrap replicates drawn at once (bounds memory at ``_BLOCK * n`` counts)."""


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator determined by ``seed`` and ``keys`` (stable across processes, unlike hash())."""
    words = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(str(k).encode()) if not isinstance(k, int) else k & 0xFFFFFFFF)
    return np.random.default_rng(np.random.SeedSequence(words))


def resample_counts(n: int, n_rep: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_rep, n)`` how often each of ``n`` units is drawn in each bootstrap replicate."""
    idx = rng.integers(0, n, size=(n_rep, n))
    flat = (np.arange(n_rep)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=n_rep * n).reshape(n_rep, n).astype(np.float64)


def bootstrap_replicates(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``statistic(counts (b, n)) -> (b, ...)`` over ``n_boot`` replicates, in blocks."""
    out = []
    for start in range(0, n_boot, _BLOCK):
        heartbeat("bootstrap replicates", start, n_boot)
        out.append(np.asarray(statistic(resample_counts(n, min(_BLOCK, n_boot - start), rng))))
    return np.concatenate(out, axis=0)


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of the replicates (NaN replicates ignored)."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    a = (1 - confidence) / 2
    lo, hi = np.quantile(r, [a, 1 - a])
    return float(lo), float(hi)


def mean_ci(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, confidence: float = 0.95
) -> tuple[float, float]:
    """Bootstrap CI of the mean of ``values (n,)`` (e.g. per-image correctness -> accuracy)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    reps = bootstrap_replicates(len(v), lambda c: c @ v / len(v), n_boot, rng)
    return percentile_interval(reps, confidence)


def draws_mean_ci(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, confidence: float = 0.95
) -> tuple[float, float]:
    """Bootstrap CI of the mean of ``values (draws, n)``: the effect of each of several random
    draws (e.g. random feature sets) on each of ``n`` images. Each replicate resamples the draws
    and the images, so the interval holds the spread over draws as well as over images (a mean
    over the draws taken first would treat the drawn sets as fixed)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None, :]
    n_draws, n = v.shape
    if n == 0 or n_boot <= 0:
        return float("nan"), float("nan")

    def stat(counts: np.ndarray) -> np.ndarray:
        per_draw = v @ counts.T  # (draws, b): each draw's sum over the resampled images
        pick = rng.integers(0, n_draws, (counts.shape[0], n_draws))  # the resampled draws
        return per_draw[pick, np.arange(counts.shape[0])[:, None]].sum(axis=1) / (n_draws * n)

    return percentile_interval(bootstrap_replicates(n, stat, n_boot, rng), confidence)


def macro_f1_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap CI of the macro F1 (sklearn's ``average="macro"``, ``zero_division=0``: the mean
    F1 over the classes among the true or predicted labels of each resample), resampling the
    images."""
    y, p = np.asarray(y_true), np.asarray(y_pred)
    if y.size == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    classes = np.union1d(y, p)
    is_true = (y[:, None] == classes).astype(np.float64)  # (n, K)
    is_pred = (p[:, None] == classes).astype(np.float64)
    hit = is_true * is_pred

    def stat(c: np.ndarray) -> np.ndarray:
        seen = c @ is_true + c @ is_pred  # (b, K): 0 where a class is absent from the resample
        f1 = 2 * (c @ hit) / np.maximum(seen, 1e-300)
        present = seen > 0
        return (f1 * present).sum(axis=1) / present.sum(axis=1)

    return percentile_interval(bootstrap_replicates(len(y), stat, n_boot, rng), confidence)


def ratio_ci(
    num: np.ndarray,
    den: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap CI of ``sum(num) / sum(den)`` resampling the paired units (e.g. an FVU)."""
    a, b = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if a.size == 0 or n_boot <= 0:
        return float("nan"), float("nan")

    def stat(c: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (c @ a) / (c @ b)

    return percentile_interval(bootstrap_replicates(len(a), stat, n_boot, rng), confidence)


def paired_permutation_pvalue(
    a: np.ndarray, b: np.ndarray, n_perm: int, rng: np.random.Generator
) -> float:
    """Two-sided p-value that paired scores ``a`` and ``b`` have the same mean (sign flips)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0 or n_perm <= 0:
        return float("nan")
    observed = abs(d.mean())
    hits = 0
    for start in range(0, n_perm, _BLOCK):
        heartbeat("permutations", start, n_perm)
        m = min(_BLOCK, n_perm - start)
        signs = rng.integers(0, 2, size=(m, d.size)) * 2.0 - 1.0
        hits += int((np.abs(signs @ d / d.size) >= observed - 1e-12).sum())
    return (1 + hits) / (1 + n_perm)


def two_sample_permutation_pvalue(
    x: np.ndarray, y: np.ndarray, n_perm: int, rng: np.random.Generator
) -> float:
    """Two-sided p-value that two independent samples have the same mean (label shuffles)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.size == 0 or n_perm <= 0:
        return float("nan")
    pooled = np.concatenate([x, y])
    observed = abs(x.mean() - y.mean())
    hits = 0
    for i in range(n_perm):
        if i % _BLOCK == 0:
            heartbeat("permutations", i, n_perm)
        p = rng.permutation(pooled)
        hits += int(abs(p[: x.size].mean() - p[x.size :].mean()) >= observed - 1e-12)
    return (1 + hits) / (1 + n_perm)
