"""FairFace (Karkkainen & Joo 2021) in both public formats, with the label encodings of docs/originals.md §3.1.

- The original release: ``fairface_label_train.csv`` / ``fairface_label_val.csv`` (columns
  ``file,age,gender,race,service_test``) beside the ``train/`` and ``val/`` image folders.
- The Hugging Face layout (``HuggingFaceM4/FairFace``, e.g. config ``0.25``): parquet shards with
  the image bytes and ``age``, ``gender``, ``race`` as ``ClassLabel`` ints, whose class order
  differs from the project's; they are remapped by name.

Labels: race 0 White .. 6 Middle Eastern, gender 0 Male / 1 Female, age 0 "0-2" .. 8 "70+"
("more than 70" in the data). With both official splits present, train is the store's training
split and val its validation split. With only train (as the original VISTA used), the split is
seeded and stratified on the joint age x gender x race classes, not race alone (docs/originals.md D15).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vista.errors import VistaError
from vista.sources.datasets.base import (
    DatasetConfig,
    ImageFiles,
    LabelledImages,
    encode_labels,
    register_dataset,
)
from vista.sources.datasets.files import read_table, with_splits
from vista.sources.datasets.hf import hf_dataset
from vista.store.layout import FAIRFACE_CLASS_NAMES

LABELS = ("age", "gender", "race")
ALIASES = {"more than 70": "70+"}
CSV_FILES = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv"}


def _load_csv_release(root: Path, cfg: DatasetConfig) -> LabelledImages:
    paths: list[str] = []
    values: dict[str, list[str]] = {k: [] for k in LABELS}
    split_of_row: list[str] = []
    for split, fname in CSV_FILES.items():
        f = root / fname
        if not f.is_file():
            continue
        cols = read_table(f)
        missing = [c for c in ("file", *LABELS) if c not in cols]
        if missing:
            raise VistaError(f"{str(f)!r} lacks the FairFace column(s) {missing}.")
        paths += [str(root / p) for p in cols["file"]]
        for k in LABELS:
            values[k] += [ALIASES.get(str(v), str(v)) for v in cols[k]]
        split_of_row += [split] * len(cols["file"])
    labels, names = {}, {}
    for k in LABELS:
        labels[k], names[k] = encode_labels(
            np.asarray(values[k], dtype=object), k, FAIRFACE_CLASS_NAMES[k]
        )
    absent = [p for p in paths[:1000] if not Path(p).is_file()]
    if absent:
        raise VistaError(
            f"FairFace images are missing under {str(root)!r} (first: {absent[0]!r}); unpack the "
            "image folders beside the label CSVs."
        )
    ds = ImageFiles(
        name="fairface",
        images=np.asarray(paths, dtype=object),
        labels=labels,
        class_names=names,
        splits={},
    )
    rows = np.asarray(split_of_row)
    return with_splits(ds, rows if len(set(split_of_row)) > 1 else None, cfg)


@register_dataset("fairface")
def load_fairface(cfg: DatasetConfig) -> LabelledImages:
    if not cfg.root:
        raise VistaError(
            "dataset.root is not set; point it at FairFace: the folder with fairface_label_*.csv "
            "and train/ val/, or a HuggingFaceM4/FairFace snapshot (e.g. its 0.25/ parquet folder)."
        )
    root = Path(cfg.root).expanduser()
    if not cfg.stratify:
        cfg = dataclasses.replace(cfg, stratify=list(LABELS))
    if any((root / f).is_file() for f in CSV_FILES.values()):
        ds = _load_csv_release(root, cfg)
    else:
        if not cfg.labels:
            cfg = dataclasses.replace(cfg, labels=list(LABELS))
        ds = hf_dataset(cfg, "fairface", remap=FAIRFACE_CLASS_NAMES, aliases=ALIASES)
    ds.name = "fairface"
    return ds
