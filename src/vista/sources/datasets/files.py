"""The user's own images: a folder per class (``imagefolder``) or a table of paths and labels (``table``)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from vista.errors import VistaError
from vista.sources.datasets.base import (
    DatasetConfig,
    ImageFiles,
    LabelledImages,
    encode_labels,
    register_dataset,
    split_by_stratification,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
TRAIN_NAMES = ("train", "training")
VAL_NAMES = ("val", "valid", "validation", "test")


def _root(cfg: DatasetConfig, what: str) -> Path:
    if not cfg.root:
        raise VistaError(f"dataset.root is not set; point it at {what}.")
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise VistaError(f"dataset.root {str(root)!r} does not exist; point it at {what}.")
    return root


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def split_name(value: Any) -> str:
    """A split column's value -> 'train' or 'val' (test counts as validation)."""
    v = str(value).strip().lower()
    if v in TRAIN_NAMES:
        return "train"
    if v in VAL_NAMES:
        return "val"
    raise VistaError(
        f"Unknown split {value!r} in the split column; use one of {TRAIN_NAMES + VAL_NAMES}."
    )


def with_splits(
    ds: LabelledImages, split_of_row: np.ndarray | None, cfg: DatasetConfig
) -> LabelledImages:
    """Use the data's own train/val assignment if it has one, else a joint-stratified split."""
    if split_of_row is None:
        return split_by_stratification(ds, cfg)
    splits = {s: np.flatnonzero(split_of_row == s) for s in ("train", "val")}
    if not len(splits["train"]) or not len(splits["val"]):
        empty = "train" if not len(splits["train"]) else "val"
        raise VistaError(
            f"The data's own split has no {empty!r} rows; fix the split column or drop "
            "dataset.split_column to split by stratification."
        )
    ds.splits = splits
    ds.store_splits = {"training": ["train"], "validation": ["val"]}
    ds.split_info = {"method": "given"}
    return ds


@register_dataset("imagefolder")
def load_imagefolder(cfg: DatasetConfig) -> LabelledImages:
    """``root/CLASS/*.png`` (label ``class``), or ``root/train/CLASS/...`` + ``root/val/CLASS/...``."""
    root = _root(cfg, "a folder with one subfolder of images per class")
    sub = {p.name.lower(): p for p in _class_dirs(root)}
    train_dir = next((sub[n] for n in TRAIN_NAMES if n in sub), None)
    val_dir = next((sub[n] for n in VAL_NAMES if n in sub), None)
    parts = {"train": train_dir, "val": val_dir} if train_dir and val_dir else {"all": root}
    classes = sorted({c.name for d in parts.values() for c in _class_dirs(d)})
    if not classes:
        raise VistaError(
            f"{str(root)!r} has no class subfolders; put each class's images in root/CLASS/."
        )
    lookup = {c: i for i, c in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    split_of_row: list[str] = []
    for part, d in parts.items():
        for c in _class_dirs(d):
            for f in _images_in(c):
                paths.append(str(f))
                labels.append(lookup[c.name])
                split_of_row.append(part)
    if not paths:
        raise VistaError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {str(root)!r}.")
    ds = ImageFiles(
        name="imagefolder",
        images=np.asarray(paths, dtype=object),
        labels={"class": np.asarray(labels, dtype=np.int64)},
        class_names={"class": classes},
        splits={},
    )
    given = np.asarray(split_of_row) if "all" not in parts else None
    return with_splits(ds, given, cfg)


def read_table(path: Path) -> dict[str, np.ndarray]:
    """A CSV or parquet file -> column name -> values."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise VistaError("Reading parquet needs pyarrow; `pip install pyarrow`.") from None
        t = pq.read_table(path)
        return {c: np.asarray(t.column(c).to_pylist(), dtype=object) for c in t.column_names}
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise VistaError(f"The table {str(path)!r} has no rows.")
    return {c: np.asarray([r[c] for r in rows], dtype=object) for c in rows[0]}


_CLEAN_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def column_labels(values: np.ndarray, column: str, where: str) -> tuple[np.ndarray, list[str]]:
    """A table's label column -> class indices and class names.

    Values stay strings (classes: the sorted distinct values) unless every one is a clean integer
    (an integer cell, or text without leading zeros or signs: "01", "1" and "001" are three
    classes). Clean integers that are dense, 0 <= v < 2 x (distinct values), are class indices
    (a digit column keeps 0..9); sparse ones (ZIP codes, years, ids) are classes named by their
    values, in numeric order, not thousands of empty classes. An empty cell is an error."""
    empty = [
        i
        for i, v in enumerate(values)
        if v is None
        or (isinstance(v, str) and not v.strip())
        or (isinstance(v, float) and math.isnan(v))
    ]
    if empty:
        raise VistaError(
            f"Label column {column!r} of {where} is empty in data row {empty[0] + 1} "
            f"({len(empty)} empty cell(s)); fill the label or leave the row out of the table."
        )

    def clean(v: Any) -> bool:
        if isinstance(v, (bool, np.bool_)):
            return False
        if isinstance(v, (int, np.integer)):
            return True
        return isinstance(v, str) and _CLEAN_INT.fullmatch(v) is not None

    if len(values) and all(clean(v) for v in values):
        ints = np.asarray([int(v) for v in values], dtype=np.int64)
        uniq = np.unique(ints)
        if ints.min() >= 0 and ints.max() < 2 * len(uniq):
            return encode_labels(ints, column)
        return np.searchsorted(uniq, ints).astype(np.int64), [str(u) for u in uniq]
    return encode_labels(np.asarray([str(v) for v in values], dtype=object), column)


@register_dataset("table")
def load_table(cfg: DatasetConfig) -> LabelledImages:
    """A CSV or parquet table: ``dataset.path_column`` (relative to the table) + ``dataset.labels``."""
    path = _root(cfg, "a CSV or parquet file with an image-path column and label columns")
    cols = read_table(path)
    if cfg.path_column not in cols:
        raise VistaError(
            f"{str(path)!r} has no column {cfg.path_column!r}; its columns are {sorted(cols)}; "
            "set dataset.path_column."
        )
    if not cfg.labels:
        raise VistaError(
            f"dataset.labels is empty; name the label columns of {str(path)!r} (of {sorted(cols)})."
        )
    missing = [c for c in cfg.labels if c not in cols]
    if missing:
        raise VistaError(f"{str(path)!r} has no label column(s) {missing}; it has {sorted(cols)}.")
    labels, names = {}, {}
    for c in cfg.labels:
        labels[c], names[c] = column_labels(cols[c], c, repr(str(path)))
    base = path.parent
    paths = np.asarray(
        [str(p if Path(p).is_absolute() else base / p) for p in cols[cfg.path_column]], dtype=object
    )
    absent = [p for p in paths[:1000] if not Path(p).is_file()]
    if absent:
        raise VistaError(
            f"{len(absent)} image path(s) in {str(path)!r} do not exist (first: {absent[0]!r}); "
            "paths are read relative to the table's folder."
        )
    ds = ImageFiles(name="table", images=paths, labels=labels, class_names=names, splits={})
    given = None
    if cfg.split_column:
        if cfg.split_column not in cols:
            raise VistaError(f"{str(path)!r} has no split column {cfg.split_column!r}.")
        given = np.asarray([split_name(v) for v in cols[cfg.split_column]])
    return with_splits(ds, given, cfg)
