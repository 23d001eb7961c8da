"""Labelled image datasets, one registry."""

from vista.sources.datasets.base import (
    DATASET_REGISTRY,
    DATASETS,
    DatasetConfig,
    LabelledImages,
    make_dataset,
    register_dataset,
    stratified_split,
)

from vista.sources.datasets import (  # noqa: F401  isort: skip
    bundled,
    fairface,
    files,
    hf,
    mnist,
    morpho,
)

__all__ = [
    "DATASETS",
    "DATASET_REGISTRY",
    "DatasetConfig",
    "LabelledImages",
    "make_dataset",
    "register_dataset",
    "stratified_split",
]
