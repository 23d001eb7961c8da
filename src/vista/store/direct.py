"""Reading uncompressed activation rows straight from the file's bytes, in parallel.

An ``encoded`` dataset stored without filters (``compression=none``) is, chunk by chunk, the rows'
raw bytes at known file offsets. ``DirectRows`` records those offsets once and then reads any row
range with ``os.preadv`` into the caller's array: no HDF5 call, no intermediate copy, and no lock,
so several threads read at once (``pread`` releases the GIL; h5py serialises every call on one
lock). Any other layout (a filter, a byte order other than the machine's, an unallocated chunk, a
chunk narrower than a row, a virtual or external dataset, a file driver other than the default)
gives ``None`` and the caller reads through h5py.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vista.errors import VistaError


@dataclass
class DirectRows:
    """Where each chunk of one uncompressed ``encoded`` dataset lies in its file."""

    path: Path
    fd: int
    row_bytes: int
    chunk_rows: int
    """Rows per chunk (the whole dataset for a contiguous one)."""
    offsets: np.ndarray
    """File offset of each chunk, in row order."""

    @classmethod
    def of(cls, path: Path, file: h5py.File, dset: h5py.Dataset) -> DirectRows | None:
        offsets, chunk_rows = _chunk_offsets(file, dset)
        if offsets is None:
            return None
        row_bytes = int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return cls(path, fd, row_bytes, chunk_rows, offsets)

    def read_into(self, start: int, stop: int, out: np.ndarray) -> None:
        """Rows ``[start, stop)`` into ``out`` (C-contiguous, ``stop - start`` rows)."""
        if not out.flags.c_contiguous or out.nbytes != (stop - start) * self.row_bytes:
            raise ValueError("read_into needs a C-contiguous array of exactly the rows asked for")
        dest = out.reshape(-1).view(np.uint8).data
        at = 0
        for c in range(start // self.chunk_rows, (stop - 1) // self.chunk_rows + 1):
            a, b = max(start, c * self.chunk_rows), min(stop, (c + 1) * self.chunk_rows)
            n = (b - a) * self.row_bytes
            offset = int(self.offsets[c]) + (a - c * self.chunk_rows) * self.row_bytes
            self._pread(dest[at : at + n], offset, start, stop)
            at += n

    def _pread(self, dest: memoryview, offset: int, start: int, stop: int) -> None:
        done = 0
        while done < len(dest):
            if hasattr(os, "preadv"):
                got = os.preadv(self.fd, [dest[done:]], offset + done)
            else:  # pragma: no cover  (platforms without preadv)
                data = os.pread(self.fd, len(dest) - done, offset + done)
                dest[done : done + len(data)] = data
                got = len(data)
            if got == 0:
                raise VistaError(
                    f"Rows {start}-{stop} of {str(self.path)!r} end past the end of the file: it "
                    "is truncated; re-extract it (or restore the shard)."
                )
            done += got

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _chunk_offsets(file: h5py.File, dset: h5py.Dataset) -> tuple[np.ndarray | None, int]:
    """The file offset of every chunk of ``dset`` in row order, or ``None`` where the bytes are
    not plain rows at fixed offsets."""
    if file.driver != "sec2" or not _native(dset.dtype) or dset.shape[0] == 0:
        return None, 0
    dcpl = dset.id.get_create_plist()
    if dcpl.get_nfilters() or dcpl.get_external_count():
        return None, 0
    base = file.id.get_create_plist().get_userblock()
    layout = dcpl.get_layout()
    n = int(dset.shape[0])
    if layout == h5py.h5d.CONTIGUOUS:
        offset = dset.id.get_offset()
        return (None, 0) if offset is None else (np.array([base + offset], np.int64), n)
    if layout != h5py.h5d.CHUNKED or tuple(dset.chunks[1:]) != tuple(dset.shape[1:]):
        return None, 0
    chunk_rows = int(dset.chunks[0])
    n_chunks = -(-n // chunk_rows)
    if dset.id.get_num_chunks() != n_chunks:
        return None, 0  # chunks never written read as the fill value: leave them to HDF5
    offsets = np.full(n_chunks, -1, np.int64)
    for i in range(n_chunks):
        info: Any = dset.id.get_chunk_info(i)
        offsets[info.chunk_offset[0] // chunk_rows] = base + info.byte_offset
    return (None, 0) if (offsets < 0).any() else (offsets, chunk_rows)


def _native(dtype: np.dtype) -> bool:
    order = dtype.byteorder
    return order in ("=", "|") or order == ("<" if sys.byteorder == "little" else ">")
