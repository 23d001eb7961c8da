"""Atomic, resumable writing of an activation store.

Everything is written to ``PATH.partial``; ``finish()`` marks the file complete and renames it to
``PATH`` in one ``os.replace``, so a killed writer never leaves a file at ``PATH`` that looks
complete. The partial file records how many rows of each split are written, so a writer opened
again with the same specification continues where the killed one stopped.

Rows are buffered in memory and written a whole compressed chunk at a time: writing part of a
chunk would compress it, then read it back, decompress and recompress it when the next batch
completes it. The on-disk row counter moves only after a write is flushed, so a killed writer
loses at most the buffered rows (less than one chunk), which the resumed run recomputes.

A resumed file is byte-identical to an uninterrupted one. Two things make it so: every chunk is
written exactly once (``close()`` drops a split's incomplete last chunk rather than writing it
and rewriting it on resume), and the file has no HDF5 free-space aggregation
(``fs_strategy="none"``): with it, every session that reopens the file starts fresh 2 KiB blocks
for small metadata and data, so where the remaining objects land depends on when the run was
interrupted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from vista.errors import VistaError
from vista.store import layout

_FINGERPRINT_ATTR = "vista_partial_fingerprint"
_TARGET_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class SplitSpec:
    """The shape of one split to be written."""

    n_rows: int
    """Number of images (rows of ``encoded``)."""
    d_model: int
    """Width of one activation vector."""
    n_tokens: int | None = None
    """Tokens per image; ``None`` stores ``(N, D)`` instead of ``(N, T, D)``."""
    labels: dict[str, list[str]] = field(default_factory=dict)
    """Label name -> class names (index = stored label value)."""

    def row_shape(self) -> tuple[int, ...]:
        return (self.d_model,) if self.n_tokens is None else (self.n_tokens, self.d_model)


def chunk_rows_for(n_rows: int, row_bytes: int) -> int:
    """Rows per chunk of ``encoded``: about 1 MiB, at most the split."""
    return max(1, min(n_rows, _TARGET_CHUNK_BYTES // max(row_bytes, 1)))


def partial_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".partial")


def _difference(then: str, now: str) -> str:
    """What differs between two resume fingerprints, as a phrase."""
    try:
        a, b = json.loads(then), json.loads(now)
    except json.JSONDecodeError:
        return "other settings"
    for key in ("dtype", "compression", "splits"):
        if a.get(key) != b.get(key):
            return (
                f"another {key} ({a.get(key)!r}, not {b.get(key)!r})"
                if key != "splits"
                else ("other splits (row counts, widths or labels)")
            )
    ta, tb = a.get("attrs", {}), b.get("attrs", {})
    for key in sorted(set(ta) | set(tb)):
        if ta.get(key) != tb.get(key):
            if key == "encoder_fingerprint":
                return "another encoder (its weights or preprocessing differ)"
            return f"another {key} ({str(ta.get(key))[:80]!r}, not {str(tb.get(key))[:80]!r})"
    return "other settings"


class StoreWriter:
    """Write splits of activations, labels and indices; ``finish()`` publishes the file.

    Args:
        path: the final file name.
        splits: split name -> its shape.
        attrs: root attributes (encoder, layer, token_selection, dataset, ...).
        dtype: storage dtype of ``encoded`` (float16, as the original).
        compression: ``"zstd"`` (hdf5plugin, as the original), ``"gzip"`` or ``None``.
        resume: continue a matching ``PATH.partial`` instead of starting over.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        splits: dict[str, SplitSpec],
        attrs: dict[str, Any],
        *,
        dtype: str = "float16",
        compression: str | None = "zstd",
        resume: bool = True,
    ) -> None:
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.splits = splits
        unknown = set(splits) - set(layout.SPLITS)
        if unknown:
            raise VistaError(
                f"Unknown split name(s) {sorted(unknown)}; a store holds {list(layout.SPLITS)}."
            )
        fingerprint = json.dumps(
            {
                "splits": {k: asdict(v) for k, v in sorted(splits.items())},
                "attrs": {k: _jsonable(v) for k, v in sorted(attrs.items())},
                "dtype": dtype,
                "compression": compression,
            },
            sort_keys=True,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dtype = np.dtype(dtype)
        self._pending: dict[str, list[tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]]] = {
            s: [] for s in splits
        }
        self._n_pending = dict.fromkeys(splits, 0)
        self._file: h5py.File | None = None
        self._made = (attrs, dtype, compression, fingerprint)  # what _create needs, for _repack
        self._resumed = False
        if resume and self.tmp.exists():
            try:
                f = h5py.File(self.tmp, "r+")
            except OSError:
                f = None  # unreadable partial file (killed mid-flush): start over
            if f is not None:
                then = str(f.attrs.get(_FINGERPRINT_ATTR, ""))
                if then == fingerprint:
                    self._file = f
                    self._resumed = True
                else:
                    f.close()
                    raise VistaError(
                        f"{str(self.tmp)!r} was started with {_difference(then, fingerprint)}; "
                        "run the command it was started with to resume it, or delete it (or "
                        "pass resume=false) to start over."
                    )
        if self._file is None:
            self.tmp.unlink(missing_ok=True)
            self._file = h5py.File(self.tmp, "w", fs_strategy="none")
            self._create(attrs, dtype, compression, fingerprint)

    def _create(self, attrs: dict[str, Any], dtype: str, compression: str | None, fp: str) -> None:
        """A new partial file with the root attributes and the resume fingerprint."""
        f = self._file
        assert f is not None
        for k, v in attrs.items():
            f.attrs[k] = _attr_value(v)
        f.attrs[_FINGERPRINT_ATTR] = fp
        filt: dict[str, Any] = {}
        if compression == "zstd":
            filt = layout.zstd_filter(3)
        elif compression == "lz4":
            import hdf5plugin

            filt = dict(hdf5plugin.LZ4())
        elif compression == "gzip":
            filt = {"compression": "gzip", "compression_opts": 4}
        elif compression is not None:
            raise VistaError(
                f"Unknown compression {compression!r}; use 'zstd', 'lz4', 'gzip' or null."
            )
        for name, spec in self.splits.items():
            g = f.create_group(name)
            g.attrs[layout.ROWS_WRITTEN_ATTR] = 0
            row_bytes = int(np.prod(spec.row_shape())) * np.dtype(dtype).itemsize
            chunk_rows = chunk_rows_for(spec.n_rows, row_bytes)
            g.create_dataset(
                layout.ENCODED,
                shape=(spec.n_rows, *spec.row_shape()),
                dtype=dtype,
                chunks=(chunk_rows, *spec.row_shape()) if spec.n_rows else None,
                **(filt if spec.n_rows else {}),
            )
            lab_chunks = (max(1, min(spec.n_rows, 65536)),) if spec.n_rows else None
            lg = g.create_group(layout.LABELS)
            for lname, cnames in spec.labels.items():
                ds = lg.create_dataset(
                    lname, shape=(spec.n_rows,), dtype="int64", chunks=lab_chunks
                )
                ds.attrs[layout.CLASS_NAMES_ATTR] = json.dumps(list(cnames))
            g.create_dataset(
                layout.ORIGINAL_INDICES, shape=(spec.n_rows,), dtype="int64", chunks=lab_chunks
            )
        f.flush()

    def rows_written(self, split: str) -> int:
        """Rows appended so far: those on disk plus those buffered for the next chunk write."""
        return self._rows_on_disk(split) + self._n_pending[split]

    def _rows_on_disk(self, split: str) -> int:
        assert self._file is not None
        return int(self._file[split].attrs[layout.ROWS_WRITTEN_ATTR])

    def append(
        self,
        split: str,
        acts: np.ndarray,
        labels: dict[str, np.ndarray],
        original_indices: np.ndarray,
    ) -> None:
        """Add the next rows of ``split``; they reach the disk when a whole chunk is complete."""
        assert self._file is not None
        spec = self.splits[split]
        start = self.rows_written(split)
        n = len(acts)
        if acts.shape[1:] != spec.row_shape():
            raise VistaError(
                f"Activations of shape {acts.shape[1:]} do not fit split {split!r}, "
                f"which holds rows of shape {spec.row_shape()}."
            )
        if start + n > spec.n_rows:
            raise VistaError(
                f"Split {split!r} holds {spec.n_rows} rows; writing {n} more after {start} overflows it."
            )
        if set(labels) != set(spec.labels):
            raise VistaError(
                f"Labels {sorted(labels)} given for split {split!r}, which expects {sorted(spec.labels)}."
            )
        peak = float(np.abs(acts).max()) if acts.size else 0.0
        if not np.isfinite(peak):
            raise VistaError(
                f"The encoder produced NaN or infinite activations for rows {start}-{start + n} of "
                f"{split!r}; check the encoder weights and the input preprocessing."
            )
        if self._dtype.kind == "f" and peak > float(np.finfo(self._dtype).max):
            raise VistaError(
                f"Activations in rows {start}-{start + n} of {split!r} reach {peak:.4g}, beyond the "
                f"range of {self._dtype.name}; store them as float32 (dtype=float32)."
            )
        self._pending[split].append(
            (
                np.asarray(acts, dtype=self._dtype),
                {k: np.asarray(v, dtype=np.int64) for k, v in labels.items()},
                np.asarray(original_indices, dtype=np.int64),
            )
        )
        self._n_pending[split] += n
        self._write_pending(split, whole_chunks_only=start + n < spec.n_rows)

    def _write_pending(self, split: str, whole_chunks_only: bool) -> None:
        """Write buffered rows up to the last chunk boundary (or all of them), then the counter."""
        assert self._file is not None
        g = self._file[split]
        disk, n = self._rows_on_disk(split), self._n_pending[split]
        chunk = (g[layout.ENCODED].chunks or (1,))[0]
        end = (disk + n) // chunk * chunk if whole_chunks_only else disk + n
        if end <= disk:
            return
        pending = self._pending[split]
        acts = np.concatenate([p[0] for p in pending])
        labels = {k: np.concatenate([p[1][k] for p in pending]) for k in pending[0][1]}
        idx = np.concatenate([p[2] for p in pending])
        k = end - disk
        self._check_space(acts[:k].nbytes + 9 * 8 * k)
        try:
            # One chunk per write, whatever the batch size: the file's bytes then depend on its
            # contents only, not on how the rows arrived (so a resumed file equals a whole one).
            _write_chunks(
                self._file, g, disk, acts[:k], {c: v[:k] for c, v in labels.items()}, idx[:k]
            )
        except OSError as e:
            raise self._write_failed(e) from None
        rest = n - k
        self._pending[split] = (
            [(acts[k:], {c: v[k:] for c, v in labels.items()}, idx[k:])] if rest else []
        )
        self._n_pending[split] = rest

    def _check_space(self, nbytes: int) -> None:
        """Refuse a write the disk has no room for (the uncompressed size plus a margin), before
        anything is written: a full disk mid-write is where HDF5 loses track of its file."""
        import shutil

        free = shutil.disk_usage(self.tmp.parent).free
        need = int(1.1 * nbytes) + (1 << 20)
        if free < need:
            raise VistaError(
                f"The disk holding {str(self.tmp)!r} is full ({free / 2**20:.1f} MiB free, "
                f"{need / 2**20:.1f} MiB needed for the next rows); free space and run the same "
                "command again: it resumes from the rows already written."
            )

    def _write_failed(self, e: OSError) -> VistaError:
        import errno

        if e.errno == errno.ENOSPC or "No space" in str(e):
            return VistaError(
                f"The disk holding {str(self.tmp)!r} filled up while writing; free space and run "
                "the same command again: it resumes from the rows already written."
            )
        return VistaError(f"Writing {str(self.tmp)!r} failed ({e}); check the disk and retry.")

    def _write_all_pending(self) -> None:
        for name in self.splits:
            self._write_pending(name, whole_chunks_only=False)

    def write_extra(self, name: str, array: np.ndarray) -> None:
        """Keep an auxiliary array (e.g. a synthetic store's true dictionary) at ``/extras/NAME``."""
        assert self._file is not None
        g = self._file.require_group(layout.EXTRAS)
        if name in g:
            del g[name]
        g.create_dataset(name, data=np.asarray(array))
        self._file.flush()

    def finish(self) -> Path:
        """Check every split is complete, mark the file finished and move it to its final name."""
        assert self._file is not None
        self._write_all_pending()
        for name, spec in self.splits.items():
            done = self.rows_written(name)
            if done != spec.n_rows:
                raise VistaError(
                    f"Split {name!r} has {done} of {spec.n_rows} rows written; finish writing it first."
                )
        if self._resumed:
            self._repack()
        assert self._file is not None
        for name in self.splits:
            del self._file[name].attrs[layout.ROWS_WRITTEN_ATTR]
        del self._file.attrs[_FINGERPRINT_ATTR]
        self._file.attrs[layout.FORMAT_ATTR] = layout.FORMAT_VERSION
        self._file.close()
        self._file = None
        os.replace(self.tmp, self.path)
        return self.path

    def _repack(self) -> None:
        """Rewrite a resumed partial file as an uninterrupted run writes it: a fresh file, the
        same creation, the rows copied chunk by chunk, the extras last. A kill leaves HDF5's
        allocation in a state that depends on when it struck (a chunk allocated twice, metadata
        elsewhere); the copy's bytes depend on the contents only, so a resumed store is byte-
        identical to an uninterrupted one. Costs one more read and write of the store, and only
        after a resume."""
        assert self._file is not None
        old, self._file = self._file, None
        fresh = self.tmp.with_name(self.tmp.name + ".repack")
        self._check_space(
            int(sum(old[n][layout.ENCODED].id.get_storage_size() for n in self.splits))
        )
        try:
            self._file = h5py.File(fresh, "w", fs_strategy="none")
            self._create(*self._made)
            for name in self.splits:
                src, dst = old[name], self._file[name]
                n = int(src.attrs[layout.ROWS_WRITTEN_ATTR])
                step = (src[layout.ENCODED].chunks or (max(n, 1),))[0] * 64
                for lo in range(0, n, step):
                    hi = min(n, lo + step)
                    labels = {c: src[layout.LABELS][c][lo:hi] for c in src[layout.LABELS]}
                    _write_chunks(
                        self._file,
                        dst,
                        lo,
                        src[layout.ENCODED][lo:hi],
                        labels,
                        src[layout.ORIGINAL_INDICES][lo:hi],
                    )
            if layout.EXTRAS in old:
                for key, ds in old[layout.EXTRAS].items():
                    self._file.require_group(layout.EXTRAS).create_dataset(key, data=ds[...])
            self._file.flush()
        except BaseException:
            if self._file is not None:
                self._file.close()
            self._file = old
            fresh.unlink(missing_ok=True)
            raise
        old.close()
        self._file.close()
        os.replace(fresh, self.tmp)
        self._file = h5py.File(self.tmp, "r+")
        self._resumed = False

    def close(self) -> None:
        """Close without publishing; the partial file stays for a resume.

        The buffered rows of each split's incomplete chunk are dropped (the resumed run recomputes
        them), so no chunk is ever written twice and the resumed file is byte-identical."""
        if self._file is not None:
            try:
                for name in self.splits:
                    self._write_pending(name, whole_chunks_only=True)
            finally:
                self._file.close()
            self._file = None

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _write_chunks(
    f: h5py.File,
    g: h5py.Group,
    start: int,
    acts: np.ndarray,
    labels: dict[str, np.ndarray],
    idx: np.ndarray,
) -> None:
    """Write ``acts`` (and its labels and indices) at row ``start`` of split group ``g``, one
    chunk per write whatever the batch size: the file's bytes then depend on its contents only,
    not on how the rows arrived."""
    chunk = (g[layout.ENCODED].chunks or (max(len(acts), 1),))[0]
    for a in range(0, len(acts), chunk):
        b = min(len(acts), a + chunk)
        lo, hi = start + a, start + b
        g[layout.ENCODED][lo:hi] = acts[a:b]
        for lname, values in labels.items():
            g[layout.LABELS][lname][lo:hi] = values[a:b]
        g[layout.ORIGINAL_INDICES][lo:hi] = idx[a:b]
        f.flush()
        # The counter moves only once the rows are on disk: a resume never trusts rows that a
        # failed write left half there.
        g.attrs[layout.ROWS_WRITTEN_ATTR] = hi
        f.flush()


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _attr_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, dict | list | tuple):
        return json.dumps(_jsonable(v))
    return v
