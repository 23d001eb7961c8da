"""Opening and validating an activation store, in vista's layout or the original VISTA one."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import h5py
import numpy as np

from vista.errors import VistaError
from vista.store import layout
from vista.store.direct import DirectRows
from vista.store.writer import partial_path


@dataclass(frozen=True)
class SplitInfo:
    """What one split holds."""

    name: str
    n_rows: int
    """Images."""
    n_tokens: int
    """Tokens per image (1 for an ``(N, D)`` split)."""
    d_model: int
    has_token_axis: bool
    """True when ``encoded`` is ``(N, T, D)``."""
    chunk_rows: int
    """Rows per HDF5 chunk: the unit the stream reads."""
    label_names: tuple[str, ...]
    dtype: str = "float16"
    """The stored dtype of ``encoded``."""

    @property
    def row_shape(self) -> tuple[int, ...]:
        """One row of ``encoded``: ``(T, D)`` or ``(D,)``."""
        return (self.n_tokens, self.d_model) if self.has_token_axis else (self.d_model,)

    @property
    def n_token_rows(self) -> int:
        return self.n_rows * self.n_tokens


class ActivationStore:
    """A read-only view of an HDF5 activation store.

    Nothing is loaded at open time but the small label and index arrays on request; activations are
    read by row ranges (``read_rows``) or streamed (``vista.store.stream``). A directory opens as a
    sharded store (``vista.store.sharded.ShardedStore``, the same interface).
    """

    directory_reader: ClassVar[type[ActivationStore] | None] = None
    """The reader of a store that is a directory (``vista.store.sharded`` sets it on import)."""

    def __new__(cls, path: str | os.PathLike[str]) -> ActivationStore:
        reader = ActivationStore.directory_reader
        if cls is ActivationStore and reader is not None and Path(path).is_dir():
            return super().__new__(reader)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import hdf5plugin  # noqa: F401  (registers the Zstd filter with HDF5)

        self.path = Path(path)
        self._direct: dict[str, DirectRows | None] = {}
        self._direct_lock = threading.Lock()
        if not self.path.exists():
            hint = ""
            if partial_path(self.path).exists():
                hint = (
                    f" An interrupted extraction left {partial_path(self.path).name}; run the same "
                    "`vista extract` command again to resume it."
                )
            raise VistaError(
                f"Activation store {str(self.path)!r} does not exist; check the path or create it "
                f"with `vista extract`.{hint}"
            )
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise VistaError(
                f"{str(self.path)!r} is not a readable HDF5 file ({e.__class__.__name__}: it may be "
                "truncated or corrupt); re-create it with `vista extract`."
            ) from None
        try:
            self._splits = {name: self._inspect(name) for name in self._split_names()}
        except Exception:
            self._file.close()
            raise

    # -- validation -------------------------------------------------------------------------
    def _split_names(self) -> list[str]:
        names = [
            s
            for s in layout.SPLITS
            if s in self._file
            and isinstance(self._file[s], h5py.Group)
            and layout.ENCODED in self._file[s]
        ]
        if not names:
            raise VistaError(
                f"{str(self.path)!r} has no /training/encoded or /validation/encoded dataset, so it "
                "is not an activation store; point at a file written by `vista extract` or VISTA."
            )
        if self._file.attrs.get(layout.FORMAT_ATTR, 0) > layout.FORMAT_VERSION:
            raise VistaError(
                f"{str(self.path)!r} uses store format {self._file.attrs[layout.FORMAT_ATTR]}, newer "
                f"than this vista reads ({layout.FORMAT_VERSION}); upgrade vista."
            )
        return names

    def _inspect(self, name: str) -> SplitInfo:
        g = self._file[name]
        enc = g[layout.ENCODED]
        where = f"{self.path}:/{name}/{layout.ENCODED}"
        if not isinstance(enc, h5py.Dataset):
            raise VistaError(
                f"{where} is a group, not an array of activations; point at a store written by "
                "`vista extract` or VISTA."
            )
        if enc.ndim not in (2, 3):
            raise VistaError(
                f"{where} has shape {enc.shape}; expected (N, D) or (N, T, D). Re-extract with a "
                "token selection that yields one of these."
            )
        if enc.dtype.kind != "f":
            raise VistaError(
                f"{where} has dtype {enc.dtype}; activations must be floating point (float16 or "
                "float32). Re-extract or convert the dataset."
            )
        n = enc.shape[0]
        if n == 0 or 0 in enc.shape[1:]:
            what = "no images" if n == 0 else f"shape {enc.shape} (no tokens or no dimensions)"
            raise VistaError(
                f"{where} has {what}; re-extract the split (or leave it out of the store)."
            )
        label_names: list[str] = []
        if layout.LABELS in g:
            for lname, ds in g[layout.LABELS].items():
                if not isinstance(ds, h5py.Dataset):
                    continue
                if ds.shape != (n,):
                    raise VistaError(
                        f"Label {lname!r} of split {name!r} in {str(self.path)!r} has shape "
                        f"{ds.shape}, but the split has {n} images; labels must be one value per image."
                    )
                if ds.dtype.kind not in "iu":
                    raise VistaError(
                        f"Label {lname!r} of split {name!r} in {str(self.path)!r} has dtype "
                        f"{ds.dtype}; labels must be integer class indices."
                    )
                label_names.append(lname)
        if layout.ROWS_WRITTEN_ATTR in g.attrs:
            raise VistaError(
                f"{str(self.path)!r} is an unfinished store (split {name!r} is partly written); "
                "resume the extraction that wrote it."
            )
        chunk_rows = enc.chunks[0] if enc.chunks else max(1, min(n, 1024))
        return SplitInfo(
            name=name,
            n_rows=n,
            n_tokens=enc.shape[1] if enc.ndim == 3 else 1,
            d_model=enc.shape[-1],
            has_token_axis=enc.ndim == 3,
            chunk_rows=int(chunk_rows),
            label_names=tuple(sorted(label_names)),
            dtype=str(enc.dtype),
        )

    # -- metadata ---------------------------------------------------------------------------
    @property
    def splits(self) -> dict[str, SplitInfo]:
        return dict(self._splits)

    def split(self, name: str) -> SplitInfo:
        if name not in self._splits:
            raise VistaError(
                f"{str(self.path)!r} has no split {name!r}; it has {sorted(self._splits)}."
            )
        return self._splits[name]

    @property
    def format_version(self) -> int:
        return int(self._file.attrs.get(layout.FORMAT_ATTR, 0))

    @property
    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self._file.attrs.items():
            out[k] = v.item() if isinstance(v, np.generic) else v
        return out

    @property
    def d_model(self) -> int:
        return next(iter(self._splits.values())).d_model

    def labels(self, split: str, names: list[str] | None = None) -> dict[str, np.ndarray]:
        info = self.split(split)
        wanted = list(info.label_names) if names is None else names
        missing = [n for n in wanted if n not in info.label_names]
        if missing:
            raise VistaError(
                f"Label(s) {missing} not found in split {split!r} of {str(self.path)!r}; "
                f"available labels: {list(info.label_names) or 'none'}."
            )
        out: dict[str, np.ndarray] = {}
        if not wanted:
            return out  # a store without a labels group at all (an original file, another tool's)
        g = self._file[split][layout.LABELS]
        for n in wanted:
            y = np.asarray(g[n][...], dtype=np.int64)
            if y.size and y.min() < -1:
                row = int(np.argmin(y))
                raise VistaError(
                    f"Label {n!r} of split {split!r} in {str(self.path)!r} has the negative value "
                    f"{int(y[row])} (row {row}); labels are class indices 0..C-1, or -1 for an "
                    "image without one: re-extract the store."
                )
            named = self.class_names(split, n)
            if y.size and y.max() >= len(named):
                row = int(np.argmax(y))
                raise VistaError(
                    f"Label {n!r} of split {split!r} in {str(self.path)!r} has the value "
                    f"{int(y[row])} (row {row}) but only {len(named)} class names; the store is "
                    "inconsistent: re-extract it."
                )
            out[n] = y
        return out

    def class_names(self, split: str, label: str) -> list[str]:
        """Names of the classes of ``label``; stored by vista, FairFace's for VISTA files, else digits."""
        ds = self._file[split][layout.LABELS][label]
        raw = ds.attrs.get(layout.CLASS_NAMES_ATTR)
        if raw is not None:
            try:
                names = json.loads(raw)
            except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
                names = None
            if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
                raise VistaError(
                    f"The class names of label {label!r} in split {split!r} of "
                    f"{str(self.path)!r} are not a JSON list of strings; re-extract the store."
                )
            return names
        n_classes = int(np.max(ds[...], initial=-1)) + 1
        known = layout.FAIRFACE_CLASS_NAMES.get(label)
        if known is not None and n_classes <= len(known):
            return list(known)
        return [str(i) for i in range(n_classes)]

    def original_indices(self, split: str) -> np.ndarray | None:
        g = self._file[self.split(split).name]
        if layout.ORIGINAL_INDICES not in g:
            return None
        return np.asarray(g[layout.ORIGINAL_INDICES][...], dtype=np.int64)

    # -- activations ------------------------------------------------------------------------
    def extra(self, name: str) -> np.ndarray:
        """An auxiliary array written with ``StoreWriter.write_extra``."""
        g = self._file.get(layout.EXTRAS)
        if g is None or name not in g:
            raise VistaError(
                f"{str(self.path)!r} holds no extra array {name!r}"
                f" (it has {sorted(g) if g is not None else []})."
            )
        return np.asarray(g[name])

    def extras(self) -> dict[str, np.ndarray]:
        """Every auxiliary array of the store (``write_extra``), by name."""
        g = self._file.get(layout.EXTRAS)
        return {name: np.asarray(g[name]) for name in g} if g is not None else {}

    def read_rows(self, split: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of ``encoded`` as stored: ``(n, T, D)`` or ``(n, D)``."""
        try:
            return self._file[split][layout.ENCODED][start:stop]
        except OSError as e:
            raise self._unreadable(split, start, stop, e) from None

    def read_rows_into(self, split: str, start: int, stop: int, out: np.ndarray) -> None:
        """Rows ``[start, stop)`` of ``encoded`` into ``out`` (C-contiguous, the stored dtype and
        row shape). Safe to call from several threads at once: an uncompressed split is read from
        its bytes in parallel (``vista.store.direct``), any other through h5py, one call at a time."""
        if stop <= start:
            return
        direct = self._direct_rows(split)
        if direct is None:
            try:
                self._file[split][layout.ENCODED].read_direct(
                    out, np.s_[start:stop], np.s_[0 : stop - start]
                )
            except OSError as e:
                raise self._unreadable(split, start, stop, e) from None
        else:
            direct.read_into(start, stop, out)

    def _unreadable(self, split: str, start: int, stop: int, e: OSError) -> VistaError:
        return VistaError(
            f"Rows {start}-{stop} of {str(self.path)!r}:/{split}/encoded cannot be read "
            f"({str(e).splitlines()[0][:120]}); the file is corrupt: re-extract it."
        )

    def _direct_rows(self, split: str) -> DirectRows | None:
        with self._direct_lock:
            if split not in self._direct:
                self._direct[split] = DirectRows.of(
                    self.path, self._file, self._file[split][layout.ENCODED]
                )
            return self._direct[split]

    def close(self) -> None:
        for d in getattr(self, "_direct", {}).values():
            if d is not None:
                d.close()
        self._file.close()

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def store_fingerprint(store: str | os.PathLike[str], split: str, samples: int = 8) -> str:
    """A digest of what training reads from ``store``: its attributes, the split's shape and
    dtype, its labels' names, and ``samples`` rows spread over the split (cheap on any size)."""
    import hashlib

    h = hashlib.sha256()
    with ActivationStore(store) as st:
        info = st.split(split)
        attrs = {k: str(v) for k, v in sorted(st.attrs.items())}
        h.update(json.dumps([attrs, info.n_rows, info.n_tokens, info.d_model]).encode())
        h.update(json.dumps(list(info.label_names)).encode())
        for r in sorted({int(i) for i in np.linspace(0, info.n_rows - 1, samples)}):
            rows = np.ascontiguousarray(st.read_rows(split, r, r + 1))
            h.update(str(rows.dtype).encode() + rows.tobytes())
    return h.hexdigest()[:16]
