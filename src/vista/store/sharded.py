"""A store as a directory: ``manifest.json`` plus shards, each a complete single-file store.

A user's store is hundreds of GB of patch tokens; one HDF5 file of that size cannot be written by
many processes, copied in parts, or staged to local disks shard by shard. A sharded store splits
each split into contiguous row ranges, one version-1 HDF5 file per range (``training-00000.h5``,
...), each of which opens alone with ``ActivationStore``. The manifest, written last, lists per split
the shards in order with their row ranges, sizes, checksums and identities, and repeats what every
shard holds (width, tokens per image, dtype, labels and class names, the encoder and dataset
records), so a shard from another extraction, a missing or truncated shard, or a gap between row
ranges is found when the store is opened, in one sentence naming the shard.

``ActivationStore(DIR)`` opens a sharded store (``ShardedStore``), so every verb takes ``store=DIR``
as it takes ``store=FILE``. ``shard_store`` and ``merge_store`` convert between the two, exactly.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vista.errors import VistaError
from vista.jsonio import jsonable, write_json
from vista.store import layout
from vista.store.reader import ActivationStore, SplitInfo
from vista.store.writer import SplitSpec, StoreWriter

MANIFEST = "manifest.json"
FORMAT = "vista.sharded/1"
SHARD_ID_ATTR = "vista_shard_id"
"""Root attribute of a shard: the identity the manifest records for it."""
DEFAULT_SHARD_BYTES = 2 * 1024**3


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class ShardedStore(ActivationStore):
    """A read-only view of a sharded store, with ``ActivationStore``'s interface."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import hdf5plugin  # noqa: F401  (registers the Zstd and LZ4 filters with HDF5)

        self.path = Path(path)
        self._doc = _read_manifest(self.path)
        self._open: dict[str, list[ActivationStore]] = {}
        self._starts: dict[str, list[int]] = {}
        try:
            self._splits = {s: self._inspect_split(s) for s in self._doc["splits"]}
        except Exception:
            self.close()
            raise

    def _inspect_split(self, split: str) -> SplitInfo:
        entries = self._doc["splits"][split]["shards"]
        fix = "re-create the sharded store (`vista shard`) or restore the shard"
        expected = 0
        for e in entries:  # the ranges first: a gap or an overlap is named as such
            if e["start"] != expected:
                what = "overlap" if e["start"] < expected else "leave a gap"
                raise VistaError(
                    f"Shard {e['file']!r} of {str(self.path)!r} starts at row {e['start']}, but "
                    f"the shards before it end at row {expected}: the row ranges {what}; {fix}."
                )
            expected = e["stop"]
        shards = [
            self._open_shard(e, f"Shard {e['file']!r} of {str(self.path)!r}", fix) for e in entries
        ]
        if expected != self._doc["splits"][split]["n_rows"]:
            raise VistaError(
                f"The shards of split {split!r} of {str(self.path)!r} end at row {expected}, but "
                f"the manifest says the split has {self._doc['splits'][split]['n_rows']}; {fix}."
            )
        self._open[split] = shards
        self._starts[split] = [e["start"] for e in entries]
        first = shards[0].split(split)
        return SplitInfo(
            name=split,
            n_rows=expected,
            n_tokens=first.n_tokens,
            d_model=first.d_model,
            has_token_axis=first.has_token_axis,
            # The source's reading unit, so the stream plans the same blocks as on the file.
            chunk_rows=int(self._doc["splits"][split].get("chunk_rows", first.chunk_rows)),
            label_names=tuple(sorted(self._doc["labels"])),
            dtype=first.dtype,
        )

    def _open_shard(self, e: dict[str, Any], where: str, fix: str) -> ActivationStore:
        file = self.path / e["file"]
        if not file.is_file():
            raise VistaError(f"{where} is missing; {fix}.")
        if file.stat().st_size != e["bytes"]:
            raise VistaError(
                f"{where} has {file.stat().st_size} bytes, not the {e['bytes']} the manifest "
                f"records: it is truncated or was replaced; {fix}."
            )
        shard = ActivationStore(file)
        if str(shard.attrs.get(SHARD_ID_ATTR, "")) != e["id"]:
            shard.close()
            raise VistaError(
                f"{where} is not the shard this manifest was written with (another extraction's "
                f"file, or a copy of another shard); {fix}."
            )
        split, n = e["split"], e["stop"] - e["start"]
        info = shard.split(split)
        if (info.n_rows, info.d_model, info.n_tokens) != (
            n,
            self._doc["d_model"],
            self._doc["n_tokens"],
        ):
            shard.close()
            raise VistaError(
                f"{where} holds {info.n_rows} rows of {info.n_tokens} x {info.d_model}, not the "
                f"{n} rows of {self._doc['n_tokens']} x {self._doc['d_model']} the manifest "
                f"records; {fix}."
            )
        if info.dtype != self._doc["dtype"]:
            shard.close()
            raise VistaError(
                f"{where} holds {info.dtype} activations, not the {self._doc['dtype']} the "
                f"manifest records; {fix}."
            )
        return shard

    # -- what ActivationStore answers from the file, answered from the manifest and shards ---------
    @property
    def format_version(self) -> int:
        return layout.FORMAT_VERSION

    @property
    def attrs(self) -> dict[str, Any]:
        return {**self._doc["attrs"], layout.FORMAT_ATTR: layout.FORMAT_VERSION}

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._doc))

    def labels(self, split: str, names: list[str] | None = None) -> dict[str, np.ndarray]:
        self.split(split)
        wanted = list(self._doc["labels"]) if names is None else names
        missing = [n for n in wanted if n not in self._doc["labels"]]
        if missing:
            raise VistaError(
                f"Label(s) {missing} not found in split {split!r} of {str(self.path)!r}; "
                f"available labels: {list(self._doc['labels']) or 'none'}."
            )
        parts = [s.labels(split, wanted) for s in self._open[split]]
        return {n: np.concatenate([p[n] for p in parts]) for n in wanted}

    def class_names(self, split: str, label: str) -> list[str]:
        return list(self._doc["labels"][label])

    def original_indices(self, split: str) -> np.ndarray | None:
        parts = [s.original_indices(split) for s in self._open[self.split(split).name]]
        if any(p is None for p in parts):
            return None
        return np.concatenate([p for p in parts if p is not None])

    def extra(self, name: str) -> np.ndarray:
        return self._first().extra(name)

    def extras(self) -> dict[str, np.ndarray]:
        return self._first().extras()

    def _first(self) -> ActivationStore:
        """The first shard: it holds the store's extras (every shard does)."""
        return next(iter(self._open.values()))[0]

    def _spans(
        self, split: str, start: int, stop: int
    ) -> Iterator[tuple[ActivationStore, int, int]]:
        """``(shard, a, b)``: the rows ``[start, stop)`` of the split as row ranges of its shards."""
        info = self.split(split)
        start, stop = max(0, start), min(stop, info.n_rows)
        starts, shards = self._starts[split], self._open[split]
        i = bisect.bisect_right(starts, start) - 1
        while start < stop:
            end = starts[i + 1] if i + 1 < len(starts) else info.n_rows
            take = min(stop, end)
            yield shards[i], start - starts[i], take - starts[i]
            start, i = take, i + 1

    def read_rows(self, split: str, start: int, stop: int) -> np.ndarray:
        parts = [shard.read_rows(split, a, b) for shard, a, b in self._spans(split, start, stop)]
        if not parts:
            return self._open[split][0].read_rows(split, 0, 0)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def read_rows_into(self, split: str, start: int, stop: int, out: np.ndarray) -> None:
        at = 0
        for shard, a, b in self._spans(split, start, stop):
            shard.read_rows_into(split, a, b, out[at : at + b - a])
            at += b - a

    def close(self) -> None:
        for shards in self._open.values():
            for s in shards:
                s.close()
        self._open = {}


ActivationStore.directory_reader = ShardedStore


def _read_manifest(path: Path) -> dict[str, Any]:
    from vista.jsonio import read_json_object

    man = path / MANIFEST
    if not man.is_file() and any(path.glob("*.h5*")):
        raise VistaError(
            f"{str(path)!r} is a directory without manifest.json holding shards: an unfinished "
            "sharded extraction; run the same `vista extract` command again to finish it."
        )
    if not man.is_file():
        raise VistaError(
            f"{str(path)!r} is a directory without {MANIFEST}, so it is not a sharded activation "
            "store; point at a store file, or a directory written by `vista shard`."
        )
    doc = read_json_object(man, "a sharded store's manifest", "re-create it with `vista shard`")
    if doc.get("format") != FORMAT:
        raise VistaError(
            f"{str(man)!r} has format {doc.get('format')!r}, not {FORMAT!r}; it was written by "
            "another tool or a newer vista (upgrade vista, or re-create it with `vista shard`)."
        )
    keys = ("splits", "labels", "attrs", "d_model", "n_tokens")
    bad = [k for k in keys if k not in doc]
    shard_keys = {"file", "split", "start", "stop", "bytes", "sha256", "id"}
    for split, entry in doc.get("splits", {}).items():
        if split not in layout.SPLITS or not entry.get("shards"):
            bad.append(f"splits.{split}")
        elif any(set(e) < shard_keys for e in entry["shards"]):
            bad.append(f"splits.{split}.shards")
    if bad or not doc.get("splits"):
        raise VistaError(
            f"{str(man)!r} lacks or garbles {bad or ['splits']}; re-create the store with "
            "`vista shard`."
        )
    return doc


def rows_per_shard(n_tokens: int, d_model: int, itemsize: int, shard_bytes: int) -> int:
    """Images per shard for about ``shard_bytes`` of activations."""
    return max(1, shard_bytes // max(n_tokens * d_model * itemsize, 1))


def shard_name(split: str, i: int) -> str:
    return f"{split}-{i:05d}.h5"


def manifest_base(
    attrs: dict[str, Any],
    labels: dict[str, list[str]],
    d_model: int,
    n_tokens: int,
    dtype: str,
    compression: str | None,
) -> dict[str, Any]:
    """The manifest without its splits: what every shard of the store holds."""
    plain = {k: _plain(v) for k, v in attrs.items() if k not in (layout.FORMAT_ATTR, SHARD_ID_ATTR)}
    return {
        "format": FORMAT,
        "d_model": d_model,
        "n_tokens": n_tokens,
        "token_selection": str(plain.get("token_selection", "")),
        "dtype": dtype,
        "compression": compression or "none",
        "labels": {k: list(v) for k, v in labels.items()},
        "attrs": plain,
        "splits": {},
    }


def shard_entry(
    directory: Path, name: str, split: str, start: int, stop: int, sid: str
) -> dict[str, Any]:
    """The manifest's record of a finished shard file."""
    path = directory / name
    size = path.stat().st_size
    return {"file": name, "split": split, "start": start, "stop": stop, "bytes": size,
            "sha256": file_digest(path), "id": sid}  # fmt: skip


SIDECAR = ".entry.json"
"""Beside a shard being extracted: its manifest entry, written by the process that wrote it."""


def entry_sidecar(
    directory: Path, name: str, split: str, start: int, stop: int, sid: str
) -> dict[str, Any]:
    """The manifest entry of a finished shard, from its sidecar where that still describes the
    file (same id, same size), else computed (the sha256 of the whole file) and written there."""
    from vista.jsonio import write_json

    side = directory / (name + SIDECAR)
    if side.is_file():
        try:
            entry = json.loads(side.read_text())
        except (OSError, ValueError):
            entry = None
        size = (directory / name).stat().st_size
        want = {"file": name, "split": split, "start": start, "stop": stop, "id": sid}
        if isinstance(entry, dict) and entry.get("bytes") == size and want.items() <= entry.items():
            return entry
    entry = shard_entry(directory, name, split, start, stop, sid)
    write_json(side, entry)
    return entry


def shard_store(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    compression: str | None = "zstd",
    block_rows: int = 4096,
) -> Path:
    """Write the store ``src`` as a sharded store in the directory ``out`` (refused if it exists):
    the same rows, labels, class names, original indices, attributes and extras, in shards of
    about ``shard_bytes`` of activations. Written into ``out.partial/`` and renamed at the end."""
    out = Path(out)
    if out.exists():
        raise VistaError(f"{str(out)!r} already exists; delete it or choose another out.")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with ActivationStore(src) as st:
        first = next(iter(st.splits))
        dtype = str(st.read_rows(first, 0, 1).dtype)
        labels = {n: st.class_names(first, n) for n in st.split(first).label_names}
        info0 = st.split(first)
        doc = manifest_base(st.attrs, labels, st.d_model, info0.n_tokens, dtype, compression)
        extras = st.extras()
        for split, info in st.splits.items():
            step = rows_per_shard(
                info.n_tokens, info.d_model, np.dtype(dtype).itemsize, shard_bytes
            )
            entries, index = [], _split_index(st, split)
            for i, a in enumerate(range(0, info.n_rows, step)):
                b = min(a + step, info.n_rows)
                name, sid = shard_name(split, i), uuid.uuid4().hex
                attrs = {**doc["attrs"], SHARD_ID_ATTR: sid}
                writing = (dtype, compression, block_rows)
                _copy_rows(st, split, (a, b), tmp / name, attrs, writing, extras, index)
                entries.append(shard_entry(tmp, name, split, a, b, sid))
            doc["splits"][split] = {
                "n_rows": info.n_rows,
                "chunk_rows": info.chunk_rows,
                "shards": entries,
            }
    write_json(tmp / MANIFEST, doc)
    os.replace(tmp, out)
    return out


def merge_store(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    compression: str | None = "zstd",
    block_rows: int = 4096,
) -> Path:
    """Write the sharded store ``src`` as one store file ``out`` (refused if it exists), exactly:
    the same rows, labels, class names, original indices, attributes and extras."""
    out = Path(out)
    if out.exists():
        raise VistaError(f"{str(out)!r} already exists; delete it or choose another out.")
    with ActivationStore(src) as st:
        attrs = {k: v for k, v in st.attrs.items() if k not in (layout.FORMAT_ATTR, SHARD_ID_ATTR)}
        specs = {
            s: SplitSpec(
                info.n_rows,
                info.d_model,
                info.n_tokens if info.has_token_axis else None,
                {n: st.class_names(s, n) for n in info.label_names},
            )
            for s, info in st.splits.items()
        }
        dtype = str(st.read_rows(next(iter(specs)), 0, 1).dtype)
        with StoreWriter(
            out, specs, attrs, dtype=dtype, compression=compression, resume=False
        ) as w:
            for split, info in st.splits.items():
                _append_rows(st, w, split, 0, info.n_rows, block_rows, _split_index(st, split))
            for name, array in st.extras().items():
                w.write_extra(name, array)
            w.finish()
    return out


def _copy_rows(
    st: ActivationStore,
    split: str,
    rows: tuple[int, int],
    path: Path,
    attrs: dict[str, Any],
    writing: tuple[str, str | None, int],
    extras: dict[str, np.ndarray],
    index: tuple[dict[str, np.ndarray], np.ndarray],
) -> None:
    """Rows ``[a, b)`` of ``split`` as a complete single-file store at ``path``."""
    (a, b), (dtype, compression, block_rows) = rows, writing
    info = st.split(split)
    labels = {n: st.class_names(split, n) for n in info.label_names}
    spec = SplitSpec(b - a, info.d_model, info.n_tokens if info.has_token_axis else None, labels)
    with StoreWriter(
        path, {split: spec}, attrs, dtype=dtype, compression=compression, resume=False
    ) as w:
        _append_rows(st, w, split, a, b, block_rows, index)
        for name, array in extras.items():
            w.write_extra(name, array)
        w.finish()


def _split_index(st: ActivationStore, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The split's labels and original indices (read once per split, sliced per shard)."""
    oi = st.original_indices(split)
    n = st.split(split).n_rows
    return st.labels(split), oi if oi is not None else np.arange(n, dtype=np.int64)


def _append_rows(
    st: ActivationStore,
    w: StoreWriter,
    split: str,
    a: int,
    b: int,
    block_rows: int,
    index: tuple[dict[str, np.ndarray], np.ndarray],
) -> None:
    """Append rows ``[a, b)`` of ``split`` of ``st`` to ``w``, in blocks, with their labels and
    original indices from ``index`` (``_split_index``)."""
    labels, oi = index
    for s in range(a, b, block_rows):
        e = min(s + block_rows, b)
        w.append(split, st.read_rows(split, s, e), {k: v[s:e] for k, v in labels.items()}, oi[s:e])


def _plain(v: Any) -> Any:
    """An attribute as JSON holds it (h5py gives numpy scalars, arrays, and bytes)."""
    return jsonable(v.decode() if isinstance(v, bytes) else v)
