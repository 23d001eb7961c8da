"""The Lightning trainer of ``vista train``: checkpoints written atomically, the logger, progress
lines, and a checkpoint saved when a scheduler stops the run."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vista.errors import VistaError
from vista.jsonio import umask_mode
from vista.train.config import TrainConfig, TrainerConfig

log = logging.getLogger(__name__)


def make_trainer(t: TrainerConfig, out: Path, tc: TrainConfig) -> Any:
    from lightning.pytorch.callbacks import ModelCheckpoint

    devices = t.device_count()
    if t.precision not in ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"):
        raise VistaError(f"Unknown precision {t.precision!r}; use 32-true, bf16-mixed or 16-mixed.")
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=max(1, tc.checkpoint_every_steps),
        save_on_train_epoch_end=False,
    )
    from vista.progress import lightning_progress

    bar, lines = lightning_progress("train", t.progress_bar)
    return t.build(
        max_steps=1,  # set from the world size by the caller
        max_epochs=-1,
        accelerator=t.accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        logger=_make_logger(t.logger, out),
        callbacks=[ckpt, *lines],
        plugins=[AtomicCheckpointIO()],
        gradient_clip_val=tc.grad_clip or None,
        log_every_n_steps=max(1, tc.log_every_steps),
        enable_progress_bar=bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        deterministic=t.deterministic,
        default_root_dir=str(out),
    )


def _make_logger(kind: str, out: Path) -> Any:
    from lightning.pytorch import loggers

    # One version directory per (re)start: a resumed run keeps the earlier run's curves.
    if kind == "csv":
        return loggers.CSVLogger(str(out), name="logs")
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(str(out), name="logs")
    if kind == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        return loggers.WandbLogger(project="vista", save_dir=str(out))
    if kind in ("none", "", "false"):
        return False
    raise VistaError(f"Unknown logger {kind!r}; use csv, tensorboard, wandb or none.")


def save_on_stop(last: Path) -> Any:
    """A callback saving ``last`` when the run is stopped (SIGTERM from a scheduler, Ctrl-C),
    after the step in progress, so the run resumes exactly where it stopped."""
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    class SaveOnStop(pl.Callback):
        step = 0

        def on_exception(self, trainer: Any, module: Any, exc: BaseException) -> None:
            if isinstance(exc, (SIGTERMException, KeyboardInterrupt)):
                self.step = int(trainer.global_step)
                trainer.save_checkpoint(str(last), weights_only=False)  # the full state
                if trainer.is_global_zero:
                    log.info("stopped after step %d; checkpoint saved to %s", self.step, last)

    return SaveOnStop()


class AtomicCheckpointIO:
    """Lightning checkpoint IO that writes to a temporary file and renames it into place.

    A run killed mid-save (SIGKILL) keeps the previous complete ``last.ckpt``.
    """

    def __new__(cls) -> Any:
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        class _Atomic(TorchCheckpointIO):
            def save_checkpoint(
                self, checkpoint: dict, path: Any, storage_options: Any = None
            ) -> None:
                path = Path(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                os.close(fd)
                try:
                    torch.save(checkpoint, tmp)
                    os.chmod(tmp, umask_mode())
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise

        return _Atomic()
