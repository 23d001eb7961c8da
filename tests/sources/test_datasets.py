"""Every registered dataset loads with labels, class names and disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest

from vista.errors import VistaError
from vista.sources.datasets import DATASET_REGISTRY, DatasetConfig, make_dataset


@pytest.mark.parametrize("name", sorted(DATASET_REGISTRY))
def test_registered_dataset_contract(name: str) -> None:
    ds = make_dataset(DatasetConfig(name=name, limit=64))
    assert len(ds.labels) >= 1
    for label, y in ds.labels.items():
        assert y.dtype == np.int64 and len(y) == len(ds)
        assert y.min() >= 0 and y.max() < len(ds.class_names[label])
    idx = [ds.splits[s] for s in ds.splits]
    assert len(np.unique(np.concatenate(idx))) == sum(len(i) for i in idx)
    for store_split, parts in ds.store_splits.items():
        assert store_split in ("training", "validation") and set(parts) <= set(ds.splits)
    assert ds.load(ds.splits[next(iter(ds.splits))][:4]).shape[0] == 4


def test_mnist_is_complete() -> None:
    ds = make_dataset(DatasetConfig(name="mnist"))
    assert {k: len(v) for k, v in ds.splits.items()} == {
        "train": 50000,
        "val": 10000,
        "test": 10000,
    }
    assert np.bincount(ds.labels["digit"]).min() > 6000
    assert ds.images.shape[1:] == (28, 28) and ds.images.min() >= 0.0 and ds.images.max() <= 1.0


def test_unknown_dataset_lists_the_registry() -> None:
    with pytest.raises(VistaError, match="choose one of"):
        make_dataset(DatasetConfig(name="imagenet-21k"))
