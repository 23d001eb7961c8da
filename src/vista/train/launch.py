"""Starting the processes of a job on several devices and nodes through Lightning, and waiting for
them at its end."""

from __future__ import annotations

import logging
import subprocess
from typing import Any

from vista.errors import VistaError
from vista.sources.extract import Ranks
from vista.train.config import TrainerConfig


def launch(trainer_cfg: TrainerConfig | None, shard_gb: float | None = None) -> Ranks:
    """Start the processes of ``trainer.devices`` x ``trainer.num_nodes`` through Lightning
    (Fabric: gloo on CPUs, NCCL on GPUs; torchrun and SLURM through its cluster environments),
    or stay one process. An extraction (``shard_gb`` given) on several processes writes shards,
    each its own contiguous range (-1, automatic, chooses shards; 0, one file, is refused)."""
    if trainer_cfg is None or (trainer_cfg.device_count() == 1 and trainer_cfg.num_nodes == 1):
        return Ranks()
    fabric = trainer_cfg.fabric()
    if fabric.world_size == 1:
        return Ranks()
    if shard_gb is not None and shard_gb == 0:
        raise VistaError(
            f"Extraction on {fabric.world_size} processes writes a sharded store, each process its "
            "own shards: give shard_gb (e.g. shard_gb=2) or leave it automatic (-1)."
        )
    fabric.launch()
    strategy = fabric.strategy
    return Ranks(
        fabric.global_rank,
        fabric.world_size,
        fabric.barrier,
        fabric.device,
        lambda: wait_for_ranks(strategy),
        max(1, fabric.world_size // max(1, int(trainer_cfg.num_nodes))),
    )


log = logging.getLogger(__name__)

EXIT_GRACE_S = 600.0
"""How long the launching process waits for a process it started, once its own work is done."""


def wait_for_ranks(strategy: Any, grace_s: float = EXIT_GRACE_S) -> None:
    """In a process that started others (Lightning's launcher, ``trainer.devices`` > 1 without
    torchrun or SLURM), wait until they have exited: a job ends when all of its processes have,
    and one that failed fails the job. A process still alive ``grace_s`` after its work is done
    (hung at exit: the collective work is over, and the results are written) is stopped with a
    warning. Elsewhere (one process, a worker, an external launcher) nothing happens."""
    procs = list(getattr(getattr(strategy, "launcher", None), "procs", None) or [])
    failed = []
    for rank, proc in enumerate(procs, start=1):
        try:
            code = proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning(
                "Process %d (pid %d) had not exited %g s after the end of the job; stopped it.",
                rank,
                proc.pid,
                grace_s,
            )
            proc.kill()
            proc.wait()
            continue
        if code != 0:
            failed.append(f"process {rank} (pid {proc.pid}) exited with code {code}")
    if failed:
        raise VistaError(
            f"The job's other processes did not all succeed: {'; '.join(failed)}; see their "
            "messages above, fix the cause and run the same command again (finished work is kept)."
        )
