"""Streaming token batches out of a store: parallel block reads, a seeded shuffle window, rank sharding.

A split is cut into *blocks* of whole HDF5 chunks (so each chunk is decompressed once). Each epoch
the block order is permuted, each rank takes every ``world_size``-th block, and the rank's blocks
are grouped into *windows* of at most ``buffer_tokens`` tokens. Several threads read a window's
blocks at once, straight into one of two reused buffers (``ActivationStore.read_rows_into``;
an uncompressed store is read from its bytes without HDF5, ``vista.store.direct``), while the
previous window is drained: its tokens leave in a random order, as batches gathered straight
from the buffer; the fewer-than-a-batch tokens left over join the next window. So every token
of the rank's share is emitted exactly once per epoch, each batch is drawn from a window of
blocks picked at random from the whole split, every batch is full but the epoch's last, and
memory is bounded by the two windows (``buffer_gb``), never by the split.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import os
import queue
import sys
import threading
import weakref
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from vista.errors import VistaError
from vista.store.reader import ActivationStore, SplitInfo

_TARGET_BLOCK_TOKENS = 16384


def default_readers() -> int:
    """Reading threads when ``readers=0``: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class StreamConfig:
    """How to stream one split."""

    split: str = "training"
    batch_size: int = 4096
    """Tokens per batch."""
    shuffle: bool = True
    buffer_tokens: int = 1048576
    """Shuffle window in tokens: random blocks of the split fill it, and its tokens leave in a
    random order (ignored without shuffling)."""
    buffer_gb: float = 4.0
    """Memory bound of the stream's two windows (one filling while the other drains), in GB: the
    window shrinks to fit (never below one block)."""
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False
    """Drop each epoch's final short batch."""
    check_finite: bool = True
    """Raise on NaN/inf activations (one vectorised check per block)."""
    dtype: str = "float32"
    """The batches' dtype: ``float32``, or ``stored`` for the store's own (float16 as a rule):
    half the bytes through the shuffle buffer and to the device, which casts (training does)."""
    prefetch_blocks: int = 2
    """Batches prepared ahead (read, shuffled, cast) in a background thread (0 = inline)."""
    readers: int = 0
    """Threads reading blocks at once (0: one per core, at most 8)."""


def plan_blocks(
    n_rows: int, chunk_rows: int, n_tokens: int, min_tokens: int, min_blocks: int = 1
) -> list[tuple[int, int]]:
    """Row ranges made of whole chunks, each holding at least ``min_tokens`` tokens (but the last).

    A split too small to give ``min_blocks`` such ranges (one per rank) is cut into ``min_blocks``
    near-equal row ranges instead, at the cost of decompressing a shared chunk more than once.
    """
    chunks_per_block = max(1, math.ceil(min_tokens / max(1, chunk_rows * n_tokens)))
    step = chunk_rows * chunks_per_block
    blocks = [(s, min(s + step, n_rows)) for s in range(0, n_rows, step)]
    if len(blocks) < min_blocks <= n_rows:
        edges = np.linspace(0, n_rows, min_blocks + 1).round().astype(int)
        blocks = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    return blocks


def plan_windows(
    blocks: list[tuple[int, int]], n_tokens: int, capacity: int
) -> list[list[tuple[int, int]]]:
    """Consecutive runs of ``blocks`` holding at most ``capacity`` tokens each (at least one block)."""
    windows: list[list[tuple[int, int]]] = []
    size = 0
    for a, b in blocks:
        m = (b - a) * n_tokens
        if not windows or size + m > capacity:
            windows.append([])
            size = 0
        windows[-1].append((a, b))
        size += m
    return windows


class TokenStream:
    """Epochs of ``(batch, d_model)`` token batches from one split of a store."""

    def __init__(self, path: str | os.PathLike[str], cfg: StreamConfig) -> None:
        if cfg.batch_size < 1:
            raise VistaError(f"batch_size must be at least 1, got {cfg.batch_size}.")
        if not 0 <= cfg.rank < cfg.world_size:
            raise VistaError(f"rank {cfg.rank} is outside world_size {cfg.world_size}.")
        if cfg.buffer_tokens < 1 or not cfg.buffer_gb > 0:
            raise VistaError(
                f"buffer_tokens={cfg.buffer_tokens} and buffer_gb={cfg.buffer_gb} must be positive."
            )
        _out_dtype(cfg)
        self.path = path
        self.cfg = cfg
        with ActivationStore(path) as store:
            self.info = store.split(cfg.split)
        self.blocks = plan_blocks(
            self.info.n_rows,
            self.info.chunk_rows,
            self.info.n_tokens,
            max(_TARGET_BLOCK_TOKENS, cfg.batch_size),
            min_blocks=cfg.world_size,
        )
        if len(self.blocks) < cfg.world_size:
            raise VistaError(
                f"Split {cfg.split!r} has {self.info.n_rows} images, fewer than the "
                f"{cfg.world_size} ranks sharing it; use fewer devices or a larger store."
            )

    @property
    def d_model(self) -> int:
        return self.info.d_model

    @property
    def window_tokens(self) -> int:
        """Tokens per window: ``buffer_tokens``, less where two windows would pass ``buffer_gb``."""
        itemsize = np.dtype(self.info.dtype).itemsize
        fits = int(self.cfg.buffer_gb * 1e9) // (2 * self.info.d_model * itemsize)
        return max(1, min(self.cfg.buffer_tokens, fits))

    def rank_blocks(self, epoch: int) -> list[tuple[int, int]]:
        """This rank's blocks for ``epoch``, in reading order (disjoint across ranks)."""
        order = np.arange(len(self.blocks))
        if self.cfg.shuffle:
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.blocks))
        return [self.blocks[i] for i in order[self.cfg.rank :: self.cfg.world_size]]

    def epoch(self, epoch: int) -> Generator[np.ndarray, None, None]:
        """All of this rank's tokens of the split once, as batches (numpy arrays). A consumer that
        stops early closes it (``close()``, or ``contextlib.closing``): that ends its threads."""
        windows = plan_windows(self.rank_blocks(epoch), self.info.n_tokens, self.window_tokens)
        rng = np.random.default_rng([self.cfg.seed, epoch, self.cfg.rank, 1])
        reader = _WindowReader(self.path, self.info, self.cfg, rng if self.cfg.shuffle else None)
        batches = _drain(reader.windows(windows), self.cfg)
        # Reading and the shuffle's scatter run in the reader threads, the batches' copies and
        # cast in one background thread: all ahead of the consumer, overlapping the training
        # step (pread, numpy's copies and torch release the GIL).
        if self.cfg.prefetch_blocks > 0:
            batches = _prefetch(batches, self.cfg.prefetch_blocks)
        yield from batches

    def batches(self, start_epoch: int = 0) -> Generator[tuple[int, np.ndarray], None, None]:
        """``(epoch, batch)`` forever, epoch after epoch (``close()`` ends the current epoch's
        threads)."""
        e = start_epoch
        while True:
            n = 0
            with contextlib.closing(self.epoch(e)) as batches:
                for batch in batches:
                    n += 1
                    yield e, batch
            if n == 0:
                raise VistaError(
                    f"Split {self.cfg.split!r} yields no batch of {self.cfg.batch_size} tokens; "
                    "lower the batch size or set drop_last=false."
                )
            e += 1


@dataclass
class _Window:
    """One filled window: its tokens are ``buf[head : head + n]``, in the stream's order."""

    buf: np.ndarray
    n: int


class _WindowReader:
    """Fills windows of blocks with parallel reads, one window ahead, into two reused buffers.

    With shuffling, each reading thread puts its block's tokens straight at their places in the
    window's random order (numpy's scatter, which releases the GIL, so the threads run at once);
    draining a window is then a run of contiguous copies. A buffer holds ``head`` spare token
    rows before the window's tokens, where the previous window's leftover tokens are copied (no
    window is ever concatenated)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: SplitInfo,
        cfg: StreamConfig,
        rng: np.random.Generator | None,
    ) -> None:
        self.path, self.info, self.cfg, self.rng = path, info, cfg, rng
        self.head = cfg.batch_size
        self.buffers: list[np.ndarray | None] = [None, None]
        self.scratch = threading.local()

    def windows(self, windows: list[list[tuple[int, int]]]) -> Iterator[_Window]:
        """Each window filled, the next one reading meanwhile."""
        if not windows:
            return
        readers = self.cfg.readers or default_readers()
        with ActivationStore(self.path) as store, ThreadPoolExecutor(readers) as pool:
            pending = self._submit(store, pool, windows[0], 0)
            for k in range(len(windows)):
                window, futures = pending
                try:
                    for f in futures:
                        f.result()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
                if k + 1 < len(windows):  # read the next window while this one drains
                    pending = self._submit(store, pool, windows[k + 1], (k + 1) % 2)
                yield window

    def _submit(
        self,
        store: ActivationStore,
        pool: ThreadPoolExecutor,
        blocks: list[tuple[int, int]],
        slot: int,
    ) -> tuple[_Window, list[Future[None]]]:
        t = self.info.n_tokens
        n = sum(b - a for a, b in blocks) * t
        buf = self.buffers[slot]
        if buf is None or len(buf) < self.head + n:
            buf = np.empty((self.head + n, self.info.d_model), dtype=self.info.dtype)
            self.buffers[slot] = buf
        body = buf[self.head : self.head + n]
        places = None if self.rng is None else self.rng.permutation(n)
        futures, at = [], 0
        for a, b in blocks:
            m = (b - a) * t
            where = None if places is None else places[at : at + m]
            futures.append(pool.submit(self._read, store, a, b, body, at, where))
            at += m
        return _Window(buf, n), futures

    def _read(
        self,
        store: ActivationStore,
        start: int,
        stop: int,
        body: np.ndarray,
        at: int,
        places: np.ndarray | None,
    ) -> None:
        """Rows ``[start, stop)`` to ``body[at:]`` in order, or to ``body[places]``."""
        m = (stop - start) * self.info.n_tokens
        if places is None:
            out = body[at : at + m]
        else:  # read into this thread's scratch rows, then scatter them
            scratch = getattr(self.scratch, "rows", None)
            if scratch is None or len(scratch) < m:
                scratch = np.empty((m, self.info.d_model), dtype=self.info.dtype)
                self.scratch.rows = scratch
            out = scratch[:m]
        store.read_rows_into(self.cfg.split, start, stop, out.reshape(-1, *self.info.row_shape))
        if self.cfg.check_finite and not all_finite(out):
            raise non_finite_rows(self.cfg.split, self.path, start, stop)
        if places is not None:
            body[places] = out


def _drain(windows: Iterator[_Window], cfg: StreamConfig) -> Iterator[np.ndarray]:
    """Batches of contiguous tokens from filled windows (already in their random order)."""
    cast, bs, head = _out_dtype(cfg), cfg.batch_size, cfg.batch_size
    carry: np.ndarray | None = None
    for w in windows:
        c = 0 if carry is None else len(carry)
        if carry is not None and c:
            w.buf[head - c : head] = carry
        tokens = w.buf[head - c : head + w.n]
        n_full = len(tokens) // bs * bs
        for i in range(0, n_full, bs):
            yield np.array(tokens[i : i + bs], dtype=cast or tokens.dtype)
        carry = tokens[n_full:].copy()
    if carry is not None and len(carry) and not cfg.drop_last:
        yield carry if cast is None else carry.astype(cast)


_EXPONENT = {2: (np.uint16, 0x7C00), 4: (np.uint32, 0x7F800000), 8: (np.uint64, 0x7FF << 52)}


def all_finite(x: np.ndarray) -> bool:
    """No NaN or infinity in ``x``: the exponent bits of an IEEE float are all ones exactly for
    those, a test on the integer view about twice as fast as ``np.isfinite(x).all()``."""
    bits = _EXPONENT.get(x.dtype.itemsize) if x.dtype.kind == "f" and x.flags.c_contiguous else None
    if bits is None:
        return bool(np.isfinite(x).all())
    view, mask = bits
    return not bool(((x.view(view) & view(mask)) == view(mask)).any())


def non_finite_rows(split: str, path: str | os.PathLike[str], start: int, stop: int) -> VistaError:
    """The error for NaN or infinite activations in rows ``[start, stop)``."""
    return VistaError(
        f"Rows {start}-{stop} of split {split!r} in {str(path)!r} contain NaN or infinite "
        "activations; re-extract them or remove those rows."
    )


def _out_dtype(cfg: StreamConfig) -> Any:
    """The batches' dtype, or None to keep the store's."""
    if cfg.dtype not in ("float32", "stored"):
        raise VistaError(f"StreamConfig.dtype={cfg.dtype!r}; use 'float32' or 'stored'.")
    return np.float32 if cfg.dtype == "float32" else None


_DONE = object()
T = TypeVar("T")
_LIVE: weakref.WeakSet[_Prefetcher] = weakref.WeakSet()
"""Every prefetching thread still running: stopped at interpreter exit (``_stop_all``)."""


class _Prefetcher(threading.Thread):
    """Runs ``source`` ``depth`` items ahead of its consumer; ended by ``stop``.

    A daemon thread, so a consumer that walks away never blocks the exit. It must never be
    *inside* h5py when the interpreter finalises, though: a daemon thread is then terminated where
    it stands, and one holding h5py's global lock (opening or closing a store) leaves every later
    h5py call waiting for ever, the process hanging at exit. So a stopped worker is joined (its
    source closed, its store shut) before its consumer goes on, and ``_stop_all`` stops and joins
    every worker still running when the interpreter exits, before finalisation begins.
    """

    def __init__(self, source: Iterator[Any], depth: int) -> None:
        super().__init__(daemon=True, name="vista-prefetch")
        self.source = source
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            for item in self.source:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as e:
            self._put(e)
        finally:
            close = getattr(self.source, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        """Hand ``item`` over unless stopped first (never a put that can block for ever)."""
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def items(self) -> Iterator[Any]:
        """The source's items, in this thread's order; errors are re-raised here."""
        while True:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                if self.is_alive():
                    continue
                raise VistaError(  # the worker ended without its last word: a bug, never a hang
                    "The stream's reading thread ended without finishing the epoch."
                ) from None
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """End the worker and wait for it (its source closed), unless the interpreter is
        already finalising, when it can no longer run."""
        self.stopped.set()
        if self is not threading.current_thread() and not sys.is_finalizing():
            self.join()


@atexit.register
def _stop_all() -> None:
    for worker in list(_LIVE):
        worker.stop()


def _prefetch(source: Iterator[T], depth: int) -> Iterator[T]:
    """Run ``source`` in a thread, ``depth`` items ahead; errors are re-raised in the consumer."""
    worker = _Prefetcher(source, depth)
    _LIVE.add(worker)
    worker.start()
    try:
        yield from worker.items()
    finally:
        worker.stop()


def iter_row_blocks(
    path: str | os.PathLike[str],
    split: str,
    rows_per_block: int,
    prefetch: int = 2,
    readers: int = 0,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start_row, rows)`` over a split in order, ``rows`` as stored (``(n, T, D)`` or ``(n, D)``);
    only the rows ``start:stop`` (all by default), in blocks from ``start``.

    ``readers`` threads (0: one per core) read up to ``max(prefetch, readers)`` blocks ahead.
    Raises on NaN/inf activations, naming the rows.
    """
    n_readers = readers or default_readers()
    depth = max(1, prefetch, n_readers)

    def read(store: ActivationStore, info: SplitInfo, start: int, stop: int) -> np.ndarray:
        rows = np.empty((stop - start, *info.row_shape), dtype=info.dtype)
        store.read_rows_into(split, start, stop, rows)
        if not all_finite(rows):
            raise non_finite_rows(split, path, start, stop)
        return rows

    with ActivationStore(path) as store, ThreadPoolExecutor(n_readers) as pool:
        info = store.split(split)
        end = info.n_rows if stop is None else min(stop, info.n_rows)
        ahead: deque[tuple[int, Future[np.ndarray]]] = deque()
        try:
            for a in range(start, end, rows_per_block):
                b = min(a + rows_per_block, end)
                ahead.append((a, pool.submit(read, store, info, a, b)))
                if len(ahead) >= depth:
                    first, rows = ahead.popleft()
                    yield first, rows.result()
            while ahead:
                first, rows = ahead.popleft()
                yield first, rows.result()
        finally:
            for _, f in ahead:
                f.cancel()
