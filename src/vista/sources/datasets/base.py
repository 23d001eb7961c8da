"""The dataset contract: labelled images, named splits, a registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from vista.errors import VistaError


@dataclass
class DatasetConfig:
    """Which labelled images to use."""

    name: str = "mnist"
    """Registry name of the dataset."""
    root: str = ""
    """Where the data lives, for datasets that are not bundled ('' = the default location)."""
    limit: int = 0
    """Keep only the first ``limit`` images of each split (0 = all); for quick runs and tests."""


@dataclass
class LabelledImages:
    """Images with per-image integer labels and named splits, loadable by index.

    ``images`` holds the whole dataset in memory (small bundled datasets); larger datasets
    override ``load``.
    """

    name: str
    images: np.ndarray
    """``(N, H, W)`` or ``(N, H, W, C)``; uint8 in [0, 255] or float in [0, 1]."""
    labels: dict[str, np.ndarray]
    """Label name -> ``(N,)`` int64 class indices."""
    class_names: dict[str, list[str]]
    splits: dict[str, np.ndarray]
    """Split name -> indices into the dataset (e.g. train / val / test)."""
    store_splits: dict[str, list[str]] = field(default_factory=dict)
    """Store split ('training', 'validation') -> the dataset splits it is made of."""

    def __len__(self) -> int:
        return len(self.images)

    def load(self, indices: np.ndarray) -> np.ndarray:
        return self.images[indices]

    def split_indices(self, names: list[str]) -> np.ndarray:
        missing = [n for n in names if n not in self.splits]
        if missing:
            raise VistaError(
                f"Dataset {self.name!r} has no split(s) {missing}; it has {sorted(self.splits)}."
            )
        return np.concatenate([self.splits[n] for n in names])

    def limited(self, limit: int) -> LabelledImages:
        """The same dataset with each split cut to its first ``limit`` images."""
        if limit <= 0:
            return self
        return LabelledImages(
            name=self.name,
            images=self.images,
            labels=self.labels,
            class_names=self.class_names,
            splits={k: v[:limit] for k, v in self.splits.items()},
            store_splits=self.store_splits,
        )


DATASET_REGISTRY: dict[str, Callable[[DatasetConfig], LabelledImages]] = {}
F = TypeVar("F", bound=Callable[[DatasetConfig], LabelledImages])


def register_dataset(name: str) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        if name in DATASET_REGISTRY:
            raise ValueError(f"Dataset {name!r} is registered twice.")
        DATASET_REGISTRY[name] = fn
        return fn

    return deco


def make_dataset(cfg: DatasetConfig | Any) -> LabelledImages:
    import vista.sources.datasets  # noqa: F401  (registers the bundled datasets)

    if cfg.name not in DATASET_REGISTRY:
        raise VistaError(f"Unknown dataset {cfg.name!r}; choose one of {sorted(DATASET_REGISTRY)}.")
    return DATASET_REGISTRY[cfg.name](cfg).limited(int(cfg.limit))
