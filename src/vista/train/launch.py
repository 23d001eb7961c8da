"""Starting the processes of a job on several devices and nodes, through Lightning's Fabric."""

from __future__ import annotations

from vista.errors import VistaError
from vista.sources.extract import Ranks
from vista.train.config import TrainerConfig


def launch(trainer_cfg: TrainerConfig | None, shard_gb: float) -> Ranks:
    """Start the processes of ``trainer.devices`` x ``trainer.num_nodes`` through Lightning
    (Fabric: gloo on CPUs, NCCL on GPUs; torchrun and SLURM through its cluster environments),
    or stay one process. Several processes write shards: each its own contiguous range
    (``shard_gb`` -1, automatic, chooses shards; 0, one file, is refused)."""
    if trainer_cfg is None or (trainer_cfg.device_count() == 1 and trainer_cfg.num_nodes == 1):
        return Ranks()
    fabric = trainer_cfg.fabric()
    if fabric.world_size == 1:
        return Ranks()
    if shard_gb == 0:
        raise VistaError(
            f"Extraction on {fabric.world_size} processes writes a sharded store, each process its "
            "own shards: give shard_gb (e.g. shard_gb=2) or leave it automatic (-1)."
        )
    fabric.launch()
    return Ranks(fabric.global_rank, fabric.world_size, fabric.barrier, fabric.device)
