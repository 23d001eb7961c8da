"""Labelled image datasets, one registry."""

from vista.sources.datasets.base import (
    DATASET_REGISTRY,
    DatasetConfig,
    LabelledImages,
    make_dataset,
    register_dataset,
)

from vista.sources.datasets import mnist  # noqa: F401  isort: skip

__all__ = [
    "DATASET_REGISTRY",
    "DatasetConfig",
    "LabelledImages",
    "make_dataset",
    "register_dataset",
]
