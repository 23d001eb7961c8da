"""MNIST with real per-image attributes measured from the digits (Morpho-MNIST, Castro et al. 2019).

Each image is binarised (ink > 0.5) and measured:

- ``area``: ink pixels;
- ``length``: pixels of the 1-pixel skeleton;
- ``thickness``: stroke width from the distance to the background along the skeleton (2d - 1);
- ``slant``: the shear angle of the ink's second moments, ``-atan(mu_xy / mu_yy)`` with rows
  pointing down, so a digit leaning right is positive (radians);
- ``width`` / ``height``: the ink's bounding box.

Each measure is cut into ``dataset.bins`` quantile classes on the training images, so the digits
carry several real, intersecting labels (digit x thickness x slant ...) offline. The raw
measures are cached (``$VISTA_CACHE/morpho_mnist``) and returned in ``measures``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np

from vista.cache import cache_root
from vista.errors import VistaError
from vista.sources.datasets.base import DatasetConfig, LabelledImages, register_dataset
from vista.sources.datasets.mnist import load_mnist, mnist_pickle_path

log = logging.getLogger(__name__)
MEASURES = ("area", "length", "thickness", "slant", "width", "height")


def measure_digits(images: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Morphometrics of ``(N, H, W)`` grey digits in [0, 1] (ink bright); see the module docstring."""
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import skeletonize

    ink = np.asarray(images) > threshold
    n, h, w = ink.shape
    area = ink.sum(axis=(1, 2)).astype(np.float64)
    length = np.zeros(n)
    thickness = np.zeros(n)
    for i in range(n):
        if not ink[i].any():
            continue
        skel = skeletonize(ink[i])
        length[i] = skel.sum()
        # The skeleton runs along the stroke's centre: a centre pixel at distance d from the
        # background sits in a stroke 2d - 1 pixels wide.
        thickness[i] = 2.0 * distance_transform_edt(ink[i])[skel].mean() - 1.0
    rows = np.arange(h, dtype=np.float64)[None, :, None]
    cols = np.arange(w, dtype=np.float64)[None, None, :]
    m = ink.astype(np.float64)
    mass = np.maximum(area, 1.0)
    cy = (m * rows).sum(axis=(1, 2)) / mass
    cx = (m * cols).sum(axis=(1, 2)) / mass
    dy = rows - cy[:, None, None]
    dx = cols - cx[:, None, None]
    mu_yy = (m * dy * dy).sum(axis=(1, 2))
    mu_xy = (m * dx * dy).sum(axis=(1, 2))
    slant = -np.arctan(np.divide(mu_xy, mu_yy, out=np.zeros(n), where=mu_yy > 0))
    any_row, any_col = ink.any(axis=2), ink.any(axis=1)

    def extent(mask: np.ndarray) -> np.ndarray:
        first = mask.argmax(axis=1)
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
        return np.where(mask.any(axis=1), last - first + 1, 0).astype(np.float64)

    return {
        "area": area,
        "length": length,
        "thickness": thickness,
        "slant": slant,
        "width": extent(np.asarray(any_col)),
        "height": extent(np.asarray(any_row)),
    }


def quantile_bins(
    values: np.ndarray, fit_on: np.ndarray, bins: int
) -> tuple[np.ndarray, list[str]]:
    """Class indices of ``values`` in ``bins`` quantile bins of ``values[fit_on]``, and bin names.

    Tied quantiles merge (MNIST digits are scaled to one height, so ``height`` gets fewer bins).
    """
    fit = values[fit_on]
    edges = np.unique(np.quantile(fit, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = edges[edges > fit.min()]  # an edge at the minimum would leave its lower bin empty
    idx = np.searchsorted(edges, values, side="right").astype(np.int64)
    bounds = [-np.inf, *edges.tolist(), np.inf]
    names = [f"[{bounds[i]:.3g}, {bounds[i + 1]:.3g})" for i in range(len(edges) + 1)]
    return idx, names


@register_dataset("morpho_mnist")
def load_morpho_mnist(cfg: DatasetConfig) -> LabelledImages:
    if int(cfg.bins) < 2:
        raise VistaError(f"dataset.bins must be at least 2, got {cfg.bins}.")
    ds = load_mnist(cfg)
    src = mnist_pickle_path(cfg.root)
    key = hashlib.sha256(f"{src.resolve()}:{src.stat().st_size}".encode()).hexdigest()[:12]
    cache = cache_root() / "morpho_mnist" / f"measures-{key}.npz"
    measures: dict[str, np.ndarray] | None = None
    if cache.is_file():
        with np.load(cache) as z:
            if set(z.files) == set(MEASURES):
                measures = {k: z[k] for k in MEASURES}
    if measures is None:
        log.info("Measuring %d digits (Morpho-MNIST), cached at %s.", len(ds.images), cache)
        measures = measure_digits(ds.images)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **measures)  # type: ignore[arg-type]  # numpy's stub: keyword arrays
        tmp.replace(cache)
    fit_on = ds.split_indices(ds.store_splits["training"])
    labels = dict(ds.labels)
    names = dict(ds.class_names)
    for k in MEASURES:
        labels[k], names[k] = quantile_bins(measures[k], fit_on, int(cfg.bins))
    return dataclasses.replace(
        ds,
        name="morpho_mnist",
        labels=labels,
        class_names=names,
        split_info={"attributes": "Morpho-MNIST measures, quantile bins on the training split"},
        measures=measures,
    )
