"""The dataset contract: labelled images, named splits, a registry."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vista.errors import VistaError
from vista.registry import Registry


@dataclass
class DatasetConfig:
    """Which labelled images to use."""

    name: str = "mnist"
    """Registry name of the dataset."""
    root: str = ""
    """Where the data lives, for datasets that are not bundled ('' = the default location)."""
    limit: int = 0
    """Keep only the first ``limit`` images of each split (0 = all); for quick runs and tests."""
    labels: list[str] = field(default_factory=list)
    """Labels to keep (tables, HF datasets: the label columns, required; others: empty = all)."""
    path_column: str = "path"
    """table: the column holding image paths (relative to the table's folder)."""
    image_column: str = "image"
    """hf: the column holding the images."""
    split_column: str = ""
    """table / hf: a column naming each row's split (train / val / test); '' = split by stratify."""
    stratify: list[str] = field(default_factory=list)
    """Labels whose joint classes the train/validation split preserves (empty = every label)."""
    val_fraction: float = 0.15
    """Share of each joint class held out for validation when the data has no splits of its own."""
    seed: int = 42
    """Seed of the stratified split."""
    bins: int = 3
    """morpho_mnist: classes per measured attribute (quantile bins on the training images)."""


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

    measures: dict[str, np.ndarray] = field(default_factory=dict)
    """Continuous per-image attributes behind binned labels (e.g. Morpho-MNIST's thickness)."""
    split_info: dict[str, Any] = field(default_factory=dict)
    """How the splits were made (recorded in the store), e.g. the stratified split's settings."""

    def __len__(self) -> int:
        return len(self.images)

    def load(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """The images at ``indices``: one array, or a list of ``(H, W[, C])`` arrays of any size."""
        return self.images[indices]

    def split_indices(self, names: list[str]) -> np.ndarray:
        missing = [n for n in names if n not in self.splits]
        if missing:
            raise VistaError(
                f"Dataset {self.name!r} has no split(s) {missing}; it has {sorted(self.splits)}."
            )
        return np.concatenate([self.splits[n] for n in names])

    def with_labels(self, names: list[str]) -> LabelledImages:
        """The same dataset keeping only the labels ``names`` (all if empty)."""
        if not names:
            return self
        missing = [n for n in names if n not in self.labels]
        if missing:
            raise VistaError(
                f"Dataset {self.name!r} has no label(s) {missing}; it has {sorted(self.labels)}."
            )
        return dataclasses.replace(
            self,
            labels={n: self.labels[n] for n in names},
            class_names={n: self.class_names[n] for n in names},
        )

    def limited(self, limit: int) -> LabelledImages:
        """The same dataset with each split cut to its first ``limit`` images."""
        if limit <= 0:
            return self
        return dataclasses.replace(self, splits={k: v[:limit] for k, v in self.splits.items()})


@dataclass
class ImageFiles(LabelledImages):
    """Images decoded from files on demand (``images`` holds their paths)."""

    def load(self, indices: np.ndarray) -> list[np.ndarray]:
        return [read_image(self.images[i]) for i in np.asarray(indices)]


@dataclass
class ImageBytes(LabelledImages):
    """Images decoded on demand from encoded bytes (``images`` holds PNG/JPEG bytes objects)."""

    def load(self, indices: np.ndarray) -> list[np.ndarray]:
        return [read_image(self.images[i]) for i in np.asarray(indices)]


def read_image(source: Any) -> np.ndarray:
    """A path or encoded bytes -> an ``(H, W, 3)`` uint8 RGB array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        what = "in-memory image" if isinstance(source, bytes) else repr(str(source))
        raise VistaError(
            f"Could not read the {what} ({e.__class__.__name__}: {e}); replace or remove it."
        ) from None


def stratified_split(
    labels: dict[str, np.ndarray], on: list[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation indices preserving the joint distribution of the labels ``on``.

    Each joint class (e.g. every age x gender x race cell, not race alone: docs/originals.md D15) sends
    ``round(val_fraction * n)`` of its ``n`` images to validation, keeping at least one image on
    each side when it has two or more. Both outputs are sorted.
    """
    if not 0.0 < val_fraction < 1.0:
        raise VistaError(f"dataset.val_fraction must be in (0, 1), got {val_fraction}.")
    missing = [k for k in on if k not in labels]
    if missing:
        raise VistaError(
            f"Cannot stratify on {missing}: the dataset's labels are {sorted(labels)}; fix "
            "dataset.stratify."
        )
    n = len(next(iter(labels.values()))) if labels else 0
    if not on:
        keys = np.zeros(n, dtype=np.int64)
    else:
        keys = np.unique(np.stack([labels[k] for k in on], axis=1), axis=0, return_inverse=True)[1]
        keys = keys.reshape(-1)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for g in np.unique(keys):
        members = np.flatnonzero(keys == g)
        m = len(members)
        n_val = round(val_fraction * m)
        n_val = min(max(n_val, 1), m - 1) if m >= 2 else 0
        val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def split_by_stratification(ds: LabelledImages, cfg: DatasetConfig | Any) -> LabelledImages:
    """Give a dataset without splits of its own seeded, joint-stratified train/val splits."""
    on = list(cfg.stratify) or sorted(ds.labels)
    train, val = stratified_split(ds.labels, on, float(cfg.val_fraction), int(cfg.seed))
    return dataclasses.replace(
        ds,
        splits={"train": train, "val": val},
        store_splits={"training": ["train"], "validation": ["val"]},
        split_info={
            "method": "stratified",
            "stratify": on,
            "val_fraction": float(cfg.val_fraction),
            "seed": int(cfg.seed),
        },
    )


def encode_labels(
    values: Any, column: str, names: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Column values -> int64 class indices and class names.

    Strings map to the sorted unique values unless ``names`` fixes the order; integers are kept
    as class indices (named by ``names`` or by their own values).
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
        if names is None:
            hi = int(out.max()) + 1 if len(out) else 0
            names = [str(i) for i in range(hi)]
        if len(out) and (out.min() < 0 or out.max() >= len(names)):
            raise VistaError(
                f"Label column {column!r} holds class indices outside 0..{len(names) - 1}; "
                "fix the labels or their class names."
            )
        return out, list(names)
    strs = [str(v) for v in arr]  # a list: numpy's fixed-width strings drop trailing NULs
    if names is None:
        names = sorted(set(strs))
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(strs) - set(lookup))
    if unknown:
        raise VistaError(
            f"Label column {column!r} has values {unknown[:5]} that are not among its classes "
            f"{names}; fix the data or the class list."
        )
    return np.asarray([lookup[v] for v in strs], dtype=np.int64), list(names)


DATASETS: Registry[Callable[[DatasetConfig], LabelledImages]] = Registry(
    "dataset", "vista.sources.datasets"
)
DATASET_REGISTRY = DATASETS
register_dataset = DATASETS.register


def make_dataset(cfg: DatasetConfig | Any) -> LabelledImages:
    cfg = as_dataset_config(cfg)
    ds = DATASETS.get_entry(cfg.name)(cfg).with_labels(list(cfg.labels))
    return ds.limited(int(cfg.limit))


def as_dataset_config(cfg: DatasetConfig | Any) -> DatasetConfig:
    """A ``DatasetConfig`` from itself, a Hydra node or a mapping (unknown keys are an error)."""
    if isinstance(cfg, DatasetConfig):
        return cfg
    from omegaconf import DictConfig, OmegaConf

    d = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    known = {f.name for f in dataclasses.fields(DatasetConfig)}
    unknown = sorted(set(d) - known)  # type: ignore[arg-type]
    if unknown:
        raise VistaError(f"Unknown dataset option(s) {unknown}; the options are {sorted(known)}.")
    return DatasetConfig(**d)  # type: ignore[arg-type]
