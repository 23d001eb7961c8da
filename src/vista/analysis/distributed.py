"""The shared encode pass on several processes (``trainer.devices`` x ``trainer.num_nodes``).

Each process encodes a contiguous range of whole blocks of images (the blocks of a one-process
pass, so each block's numbers are the same), on its own device, and saves what it gathered, as
plain arrays, into a scratch folder of the run directory; after a barrier the first process
concatenates the per-image arrays and codes in image order and merges the accumulators, then runs
the analyses alone. The result equals the one-process pass: exactly for the per-image arrays,
codes and counts, to float64 rounding for the reconstruction sums (added in another order).

The scratch files, not collectives, carry the results: their size (the pooled activations of a
million images are GBs) never passes through a device's memory, and a failed process leaves its
sentence there for the first to raise. Several nodes need the run directory on a file system
every node sees, as a sharded extraction does.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from vista.analysis.encoding import EncodedSplit, merge_passes, plan_pass, run_pass
from vista.errors import VistaError


def block_range(n_images: int, rows_per_block: int, rank: int, world: int) -> tuple[int, int]:
    """The images ``[first, stop)`` of process ``rank``: a contiguous share of whole blocks."""
    n_blocks = -(-n_images // rows_per_block)
    b0, b1 = rank * n_blocks // world, (rank + 1) * n_blocks // world
    return min(b0 * rows_per_block, n_images), min(b1 * rows_per_block, n_images)


def encode_split_shared(
    sae: Any,
    store_path: str | os.PathLike[str],
    split: str,
    ranks: Any,
    scratch: Path,
    *,
    batch_tokens: int = 16384,
    dense_codes_mb: float = 128.0,
) -> EncodedSplit | None:
    """The pass over ``split`` shared by the processes of ``ranks`` (``vista.sources.extract.Ranks``):
    the whole ``EncodedSplit`` in the first process, None in the others."""
    t0 = time.perf_counter()
    plan = plan_pass(sae, store_path, split, batch_tokens, dense_codes_mb)
    first, stop = block_range(plan.n_images, plan.rows_per_block, ranks.rank, ranks.world)
    mine = scratch / f"rank-{ranks.rank:05d}.npz"
    failed = scratch / f"rank-{ranks.rank:05d}.error"
    if ranks.rank == 0:
        shutil.rmtree(scratch, ignore_errors=True)  # a killed run's leftovers
    ranks.barrier()
    error: Exception | None = None
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        acc = run_pass(sae, store_path, split, plan, first, stop, ranks.device or "cpu")
        tmp = scratch / f"rank-{ranks.rank:05d}.partial.npz"
        arrays: dict[str, Any] = acc.state()
        np.savez(tmp, **arrays)
        os.replace(tmp, mine)
    except Exception as e:
        error = e  # raised after the barrier, which every process reaches: none waits for ever
        failed.write_text(str(e))
    ranks.barrier()
    if error is not None:
        raise error
    if ranks.rank:
        return None
    return _collect(scratch, ranks.world, plan, t0)


def _collect(scratch: Path, world: int, plan: Any, t0: float) -> EncodedSplit:
    """The first process's merge of every process's share (or the first failure's sentence)."""
    errors = sorted(scratch.glob("rank-*.error"))
    if errors:
        rank = int(errors[0].stem.split("-")[1])
        raise VistaError(f"Process {rank} of the encode pass failed: {errors[0].read_text()}")
    states = []
    for r in range(world):
        path = scratch / f"rank-{r:05d}.npz"
        if not path.is_file():
            raise VistaError(
                f"Process {r} of the encode pass left no result in {str(scratch)!r}; run the "
                "same command again."
            )
        with np.load(path, allow_pickle=False) as f:
            states.append({k: f[k] for k in f.files})
    shutil.rmtree(scratch, ignore_errors=True)
    return merge_passes(states, plan, time.perf_counter() - t0)
