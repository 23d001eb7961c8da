"""Feature-concept alignment: class means, inter-class variance, a bounded selectivity."""

from __future__ import annotations

from typing import Any

import numpy as np


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(N, n_classes)`` float64 indicator matrix (a label of -1 gives a zero row)."""
    out = np.zeros((len(labels), n_classes), dtype=np.float64)
    ok = labels >= 0
    out[np.flatnonzero(ok), labels[ok]] = 1.0
    return out


def class_sums(features: Any, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_features)`` float64 sums per class; ``features`` dense or scipy-sparse."""
    return np.asarray(features.T @ one_hot(labels, n_classes)).T


def class_means(features: Any, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_features)`` mean of ``features`` over the samples of each class (float64).

    ``features`` may be a dense array or a scipy sparse matrix; a class with no samples gets NaN.
    """
    sums = class_sums(features, labels, n_classes)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def inter_class_variance(means: np.ndarray) -> np.ndarray:
    """Population variance over classes of each feature's class mean (classes without samples skipped)."""
    return np.nanvar(means, axis=0)


def selectivity(means: np.ndarray) -> np.ndarray:
    """How much a feature prefers its top class: ``(mu_max - mu_rest) / (mu_max + mu_rest)``.

    ``mu_rest`` is the mean over the other classes; magnitudes are used, so signed codes work too.
    The value lies in ``[0, 1]`` (1 = fires for one class only, 0 = equal for all); a feature that
    never fires has NaN. This replaces VISTA's ``max / max(min, 1e-12)``, which explodes to ~1e12
    whenever one class mean is zero (docs/originals.md D7).
    """
    m = np.abs(means[~np.isnan(means).any(axis=1)])
    if m.shape[0] < 2:
        return np.full(means.shape[1], np.nan)
    top = m.max(axis=0)
    rest = (m.sum(axis=0) - top) / (m.shape[0] - 1)
    denom = top + rest
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (top - rest) / denom
    out[denom <= 0] = np.nan
    return out
