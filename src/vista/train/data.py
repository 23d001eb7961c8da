"""Token batches for Lightning: an iterable over the store stream, rank-aware and resumable."""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Generator, Iterator

import torch
from torch.utils.data import IterableDataset

from vista.store import StreamConfig, TokenStream


class TokenBatches(IterableDataset):
    """Endless float32 ``(batch, d_model)`` tensors from one split, epoch after epoch.

    The rank and world size are read when iteration starts (inside the DDP process). After a resume
    ``skip_batches`` batches are skipped: the stream is deterministic, so the continued run sees
    exactly the batches the uninterrupted run would have seen next. ``close`` ends every iteration
    still open (its reading threads stopped and joined, its store closed): training calls it once
    the fit is over, whatever Lightning still holds.
    """

    def __init__(self, path: str | os.PathLike[str], cfg: StreamConfig) -> None:
        super().__init__()
        self.path = path
        self.cfg = cfg
        self.skip_batches = 0
        self._open: weakref.WeakSet[Generator[torch.Tensor, None, None]] = weakref.WeakSet()

    def _stream(self) -> TokenStream:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        from dataclasses import replace

        return TokenStream(self.path, replace(self.cfg, rank=rank, world_size=world))

    def __iter__(self) -> Iterator[torch.Tensor]:
        batches = self._batches()
        self._open.add(batches)
        return batches

    def close(self) -> None:
        """End every open iteration (a no-op for those already finished)."""
        for batches in list(self._open):
            batches.close()

    def _batches(self) -> Generator[torch.Tensor, None, None]:
        stream = self._stream()
        epoch, skip = 0, self.skip_batches
        while skip:
            n = self._batches_in_epoch(stream, epoch)
            if skip < n:
                break
            skip -= n
            epoch += 1
        batches = stream.batches(start_epoch=epoch)
        try:
            for _, b in itertools.islice(batches, skip, None):
                yield torch.from_numpy(b)
        finally:
            batches.close()  # the epoch's reading threads end here, not whenever it is collected

    def _batches_in_epoch(self, stream: TokenStream, epoch: int) -> int:
        # Every batch the stream emits is full but an epoch's last one (see store.stream).
        tokens = sum((b - a) * stream.info.n_tokens for a, b in stream.rank_blocks(epoch))
        full, rest = divmod(tokens, self.cfg.batch_size)
        return max(1, full + (1 if rest and not self.cfg.drop_last else 0))
