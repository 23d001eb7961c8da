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

__all__ = [
    "DATASETS",
    "DATASET_REGISTRY",
    "DatasetConfig",
    "LabelledImages",
    "make_dataset",
    "register_dataset",
    "stratified_split",
]
