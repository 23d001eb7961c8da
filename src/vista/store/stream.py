"""Streaming token batches out of a store: chunked reads, a seeded shuffle buffer, rank sharding.

Reads go by *blocks* of whole HDF5 chunks (so each chunk is decompressed once). With shuffling, the
block order is permuted per epoch and tokens pass through a buffer that holds at most
``buffer_tokens + block`` rows: when full it is permuted and the front part is emitted, the rest
kept. Every token of the (rank's share of the) split is emitted exactly once per epoch. Memory is
bounded by the buffer, never by the split.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from vista.errors import VistaError
from vista.store.reader import ActivationStore

_TARGET_BLOCK_TOKENS = 16384


@dataclass(frozen=True)
class StreamConfig:
    """How to stream one split."""

    split: str = "training"
    batch_size: int = 4096
    """Tokens per batch."""
    shuffle: bool = True
    buffer_tokens: int = 262144
    """Shuffle-buffer capacity in tokens (ignored without shuffling)."""
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


class TokenStream:
    """Epochs of ``(batch, d_model)`` float32 token batches from one split of a store."""

    def __init__(self, path: str | os.PathLike[str], cfg: StreamConfig) -> None:
        if cfg.batch_size < 1:
            raise VistaError(f"batch_size must be at least 1, got {cfg.batch_size}.")
        if not 0 <= cfg.rank < cfg.world_size:
            raise VistaError(f"rank {cfg.rank} is outside world_size {cfg.world_size}.")
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

    def rank_blocks(self, epoch: int) -> list[tuple[int, int]]:
        """This rank's blocks for ``epoch``, in reading order (disjoint across ranks)."""
        order = np.arange(len(self.blocks))
        if self.cfg.shuffle:
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.blocks))
        return [self.blocks[i] for i in order[self.cfg.rank :: self.cfg.world_size]]

    def _read_blocks(self, blocks: list[tuple[int, int]]) -> Iterator[np.ndarray]:
        with ActivationStore(self.path) as store:
            for start, stop in blocks:
                rows = store.read_rows(self.cfg.split, start, stop)
                tokens = rows.reshape(-1, self.info.d_model)
                if self.cfg.check_finite and not all_finite(tokens):
                    raise VistaError(
                        f"Rows {start}-{stop} of split {self.cfg.split!r} in {str(self.path)!r} "
                        "contain NaN or infinite activations; re-extract them or remove those rows."
                    )
                yield tokens

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        """All of this rank's tokens of the split once, as batches (float32 numpy arrays)."""
        source = self._read_blocks(self.rank_blocks(epoch))
        if self.cfg.shuffle:
            rng = np.random.default_rng([self.cfg.seed, epoch, self.cfg.rank, 1])
            batches = _shuffled_batches(source, self.cfg, rng, self.info.d_model)
        else:
            batches = _sequential_batches(source, self.cfg)
        # Reading, decompressing, shuffling and the float32 cast all run in one background
        # thread, ahead of the consumer: they overlap the training step (torch releases the GIL).
        if self.cfg.prefetch_blocks > 0:
            batches = _prefetch(batches, self.cfg.prefetch_blocks)
        yield from batches

    def batches(self, start_epoch: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """``(epoch, batch)`` forever, epoch after epoch."""
        e = start_epoch
        while True:
            n = 0
            for batch in self.epoch(e):
                n += 1
                yield e, batch
            if n == 0:
                raise VistaError(
                    f"Split {self.cfg.split!r} yields no batch of {self.cfg.batch_size} tokens; "
                    "lower the batch size or set drop_last=false."
                )
            e += 1


_EXPONENT = {2: (np.uint16, 0x7C00), 4: (np.uint32, 0x7F800000), 8: (np.uint64, 0x7FF << 52)}


def all_finite(x: np.ndarray) -> bool:
    """No NaN or infinity in ``x``: the exponent bits of an IEEE float are all ones exactly for
    those, a test on the integer view about twice as fast as ``np.isfinite(x).all()``."""
    bits = _EXPONENT.get(x.dtype.itemsize) if x.dtype.kind == "f" and x.flags.c_contiguous else None
    if bits is None:
        return bool(np.isfinite(x).all())
    view, mask = bits
    return not bool(((x.view(view) & view(mask)) == view(mask)).any())


def _out_dtype(cfg: StreamConfig) -> Any:
    """The batches' dtype, or None to keep the store's."""
    if cfg.dtype not in ("float32", "stored"):
        raise VistaError(f"StreamConfig.dtype={cfg.dtype!r}; use 'float32' or 'stored'.")
    return np.float32 if cfg.dtype == "float32" else None


def _emit(rows: np.ndarray, batch_size: int, dtype: Any = np.float32) -> Iterator[np.ndarray]:
    for i in range(0, len(rows) - batch_size + 1, batch_size):
        yield np.asarray(rows[i : i + batch_size], dtype=dtype or rows.dtype)


def _sequential_batches(source: Iterator[np.ndarray], cfg: StreamConfig) -> Iterator[np.ndarray]:
    carry = np.empty((0, 0), dtype=np.float32)
    for tokens in source:
        rows = tokens if carry.size == 0 else np.concatenate([carry, tokens])
        n_full = len(rows) // cfg.batch_size * cfg.batch_size
        yield from _emit(rows[:n_full], cfg.batch_size, _out_dtype(cfg))
        carry = rows[n_full:]
    if len(carry) and not cfg.drop_last:
        yield np.asarray(carry, dtype=_out_dtype(cfg) or carry.dtype)


def _shuffled_batches(
    source: Iterator[np.ndarray], cfg: StreamConfig, rng: np.random.Generator, d_model: int
) -> Iterator[np.ndarray]:
    capacity = max(cfg.buffer_tokens, 2 * cfg.batch_size)
    buf: np.ndarray | None = None
    n = 0
    for tokens in source:
        m = len(tokens)
        if buf is None or n + m > len(buf):
            grown = np.empty((max(capacity + m, n + m), d_model), dtype=tokens.dtype)
            if buf is not None:
                grown[:n] = buf[:n]
            buf = grown
        buf[n : n + m] = tokens
        n += m
        if n >= capacity:
            # Emit all but half a buffer, so later blocks still mix with earlier ones.
            perm = rng.permutation(n)
            n_out = (n - capacity // 2) // cfg.batch_size * cfg.batch_size
            out = buf[perm[:n_out]]
            buf[: n - n_out] = buf[perm[n_out:]]
            n -= n_out
            yield from _emit(out, cfg.batch_size, _out_dtype(cfg))
    if buf is not None and n:
        rest = buf[rng.permutation(n)]
        n_full = n // cfg.batch_size * cfg.batch_size
        yield from _emit(rest[:n_full], cfg.batch_size, _out_dtype(cfg))
        if n_full < n and not cfg.drop_last:
            yield np.asarray(rest[n_full:], dtype=_out_dtype(cfg) or rest.dtype)


_DONE = object()
T = TypeVar("T")


def _prefetch(source: Iterator[T], depth: int) -> Iterator[T]:
    """Run ``source`` in a thread, ``depth`` items ahead; errors are re-raised in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:
            q.put(e)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=work, daemon=True, name="vista-prefetch")
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def iter_row_blocks(
    path: str | os.PathLike[str], split: str, rows_per_block: int, prefetch: int = 2
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start_row, rows)`` over a split in order, ``rows`` as stored (``(n, T, D)`` or ``(n, D)``).

    Raises on NaN/inf activations, naming the rows.
    """

    def read() -> Iterator[tuple[int, np.ndarray]]:
        with ActivationStore(path) as store:
            n = store.split(split).n_rows
            for start in range(0, n, rows_per_block):
                rows = store.read_rows(split, start, min(start + rows_per_block, n))
                if not all_finite(rows):
                    raise VistaError(
                        f"Rows {start}-{start + len(rows)} of split {split!r} in {str(path)!r} contain "
                        "NaN or infinite activations; re-extract them or remove those rows."
                    )
                yield start, rows

    source = read()
    yield from (_prefetch(source, prefetch) if prefetch > 0 else source)
