"""Feature-concept alignment: class means, inter-class variance, a bounded selectivity."""

from __future__ import annotations

import numpy as np


def class_means(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_features)`` mean of ``features`` over the samples of each class (float64).

    A class with no samples gets NaN.
    """
    sums = np.zeros((n_classes, features.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, features.astype(np.float64))
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
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
    whenever one class mean is zero (SPEC D7).
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
