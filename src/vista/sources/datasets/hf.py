"""Local Hugging Face ``datasets`` directories: ``save_to_disk`` output or a hub snapshot of parquet files.

Read with pyarrow alone (the ``datasets`` package is not needed): Arrow stream files with their
``dataset_info.json``, or parquet files whose schema carries the ``huggingface`` features. Class
names come from the ``ClassLabel`` features; images stay encoded until a batch is loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vista.errors import VistaError
from vista.sources.datasets.base import (
    DatasetConfig,
    LabelledImages,
    encode_labels,
    read_image,
    register_dataset,
)
from vista.sources.datasets.files import split_name, with_splits

_SHARD = re.compile(r"^(?P<split>[A-Za-z]+)(-\d+-of-\d+)?$")


@dataclass
class HFTable:
    """One local HF dataset: its rows (all splits concatenated), split of each row, features."""

    table: Any
    """pyarrow Table."""
    split_of_row: np.ndarray
    features: dict[str, Any]
    root: Path


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
    except ImportError:
        raise VistaError(
            "Reading Hugging Face datasets needs pyarrow; `pip install pyarrow`."
        ) from None
    return pa


def _read_arrow_dir(d: Path) -> tuple[Any, dict[str, Any]]:
    pa = _pyarrow()
    files = sorted(d.glob("data-*.arrow")) or sorted(d.glob("*.arrow"))
    tables = []
    for f in files:
        with pa.memory_map(str(f)) as src:
            try:
                tables.append(pa.ipc.open_stream(src).read_all())
            except pa.ArrowInvalid:
                tables.append(pa.ipc.open_file(src).read_all())
    info = d / "dataset_info.json"
    features = json.loads(info.read_text()).get("features", {}) if info.is_file() else {}
    return pa.concat_tables(tables), features


def _parquet_features(schema: Any) -> dict[str, Any]:
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return {}
    return json.loads(meta).get("info", {}).get("features", {})


def read_hf_dir(root: Path) -> HFTable:
    """All splits of a local HF dataset directory."""
    pa = _pyarrow()
    if not root.exists():
        raise VistaError(
            f"dataset.root {str(root)!r} does not exist; point it at a directory written by "
            "`datasets.save_to_disk` or a downloaded hub snapshot with parquet files."
        )
    parts: dict[str, list[Any]] = {}
    features: dict[str, Any] = {}
    dd = root / "dataset_dict.json"
    if dd.is_file():
        for s in json.loads(dd.read_text()).get("splits", []):
            t, features = _read_arrow_dir(root / s)
            parts.setdefault(s, []).append(t)
    elif list(root.glob("*.arrow")):
        t, features = _read_arrow_dir(root)
        parts["train"] = [t]
    else:
        import pyarrow.parquet as pq

        for f in sorted(root.rglob("*.parquet")):
            m = _SHARD.match(f.stem)
            split = m.group("split") if m else f.parent.name
            t = pq.read_table(f)
            features = features or _parquet_features(t.schema)
            parts.setdefault(split, []).append(t)
    if not parts:
        raise VistaError(
            f"{str(root)!r} holds no dataset_dict.json, .arrow or .parquet files; point "
            "dataset.root at a `save_to_disk` directory or a hub snapshot."
        )
    names: list[np.ndarray] = []
    tables = []
    for split, ts in parts.items():
        t = pa.concat_tables(ts)
        tables.append(t)
        names.append(np.full(t.num_rows, split_name(split), dtype=object))
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid as e:
        raise VistaError(f"The splits of {str(root)!r} have different columns ({e}).") from None
    return HFTable(table, np.concatenate(names), features, root)


@dataclass
class ArrowImages(LabelledImages):
    """Images decoded on demand from an Arrow image column (``{bytes, path}`` structs)."""

    base: Path = Path()

    def load(self, indices: np.ndarray) -> list[np.ndarray]:
        import pyarrow as pa

        rows = self.images.take(pa.array(np.asarray(indices, dtype=np.int64))).to_pylist()
        out = []
        for r in rows:
            if isinstance(r, dict):
                src = r.get("bytes") or r.get("path")
                if isinstance(src, str) and not Path(src).is_absolute():
                    src = str(self.base / src)
            else:
                src = r
            out.append(read_image(src))
        return out


def class_label_names(features: dict[str, Any], column: str) -> list[str] | None:
    f = features.get(column)
    if isinstance(f, dict) and f.get("_type") == "ClassLabel" and "names" in f:
        return [str(n) for n in f["names"]]
    return None


def hf_dataset(
    cfg: DatasetConfig,
    name: str,
    remap: dict[str, list[str]] | None = None,
    aliases: dict[str, str] | None = None,
) -> LabelledImages:
    """A labelled image dataset from a local HF directory.

    ``remap`` fixes each label's class order by name (the HF order may differ); ``aliases``
    renames class names on the way in.
    """
    alias = aliases or {}
    hf = read_hf_dir(Path(cfg.root).expanduser())
    cols = hf.table.column_names
    if cfg.image_column not in cols:
        raise VistaError(
            f"{str(hf.root)!r} has no image column {cfg.image_column!r}; its columns are {cols}; "
            "set dataset.image_column."
        )
    wanted = list(cfg.labels) or [c for c in cols if class_label_names(hf.features, c)]
    if not wanted:
        raise VistaError(
            f"{str(hf.root)!r} has no ClassLabel columns; name the label columns with dataset.labels "
            f"(of {cols})."
        )
    labels: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    for c in wanted:
        if c not in cols:
            raise VistaError(f"{str(hf.root)!r} has no label column {c!r}; it has {cols}.")
        values = np.asarray(hf.table.column(c).to_pylist(), dtype=object)
        own = class_label_names(hf.features, c)
        if own is not None:
            values = np.asarray([alias.get(own[int(v)], own[int(v)]) for v in values], dtype=object)
            target = (remap or {}).get(c, [alias.get(n, n) for n in own])
            labels[c], names[c] = encode_labels(values, c, target)
        else:
            if values.dtype == object and len(values) and isinstance(values[0], str):
                values = np.asarray([alias.get(v, v) for v in values], dtype=object)
            labels[c], names[c] = encode_labels(values, c, (remap or {}).get(c))
    ds = ArrowImages(
        name=name,
        images=hf.table.column(cfg.image_column),
        labels=labels,
        class_names=names,
        splits={},
        base=hf.root,
    )
    given = hf.split_of_row if len(set(hf.split_of_row.tolist())) > 1 else None
    return with_splits(ds, given, cfg)


@register_dataset("hf")
def load_hf(cfg: DatasetConfig) -> LabelledImages:
    """A local HF dataset dir (``dataset.root``); labels = ``dataset.labels`` or every ClassLabel."""
    if not cfg.root:
        raise VistaError(
            "dataset.root is not set; point it at a `save_to_disk` directory or a hub snapshot."
        )
    return hf_dataset(cfg, "hf")
