"""Token batches for Lightning: an iterable over the store stream, rank-aware and resumable."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset

from vista.store import StreamConfig, TokenStream


class TokenBatches(IterableDataset):
    """Endless float32 ``(batch, d_model)`` tensors from one split, epoch after epoch.

    The rank and world size are read when iteration starts (inside the DDP process). After a resume
    ``skip_batches`` batches are skipped: the stream is deterministic, so the continued run sees
    exactly the batches the uninterrupted run would have seen next.
    """

    def __init__(self, path: str | os.PathLike[str], cfg: StreamConfig) -> None:
        super().__init__()
        self.path = path
        self.cfg = cfg
        self.skip_batches = 0

    def _stream(self) -> TokenStream:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        from dataclasses import replace

        return TokenStream(self.path, replace(self.cfg, rank=rank, world_size=world))

    def __iter__(self) -> Iterator[torch.Tensor]:
        stream = self._stream()
        epoch, skip = 0, self.skip_batches
        while skip:
            n = self._batches_in_epoch(stream, epoch)
            if skip < n:
                break
            skip -= n
            epoch += 1
        batches = (b for _, b in stream.batches(start_epoch=epoch))
        for b in itertools.islice(batches, skip, None):
            yield torch.from_numpy(b)

    def _batches_in_epoch(self, stream: TokenStream, epoch: int) -> int:
        # Every batch the stream emits is full but an epoch's last one (see store.stream).
        tokens = sum((b - a) * stream.info.n_tokens for a, b in stream.rank_blocks(epoch))
        full, rest = divmod(tokens, self.cfg.batch_size)
        return max(1, full + (1 if rest and not self.cfg.drop_last else 0))
