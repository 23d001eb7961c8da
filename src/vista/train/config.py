"""Training configuration: the SAE schedule, the Lightning trainer settings, encoder training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """How to train SAEs on a store."""

    max_tokens: int = 20_000_000
    """Training tokens (the run length); steps = ceil(max_tokens / (batch_size * devices))."""
    batch_size: int = 0
    """Tokens per optimisation step and device (the global batch is this times the devices);
    0 = from the budget: the power of two nearest ``max_tokens / 1500``, within [256, 4096] (a
    few thousand steps on any budget; docs/training.md)."""
    lr: float = 0.0
    """Adam learning rate; 0 = 2e-4 / sqrt(d_sae / 2**14), sparsify's width scaling, times the
    architecture's ``lr_scale`` (2 for MP, 1 otherwise)."""
    lr_warmup_steps: int = -1
    """Linear learning-rate warm-up; -1 = 5% of the steps, at most 100."""
    lr_decay_fraction: float = 0.2
    """Linear decay to zero over this final fraction of the steps."""
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 0.0
    """Clip the gradient norm to this value (0 = off)."""
    sparsity_warmup_steps: int = 0
    """Ramp the L1/L0 coefficients linearly from 0 over these steps (vanilla, gated, jumprelu)."""
    b_dec_init: str = "mean"
    """Start b_dec at the data's mean, geometric_median, or zeros."""
    normalize_inputs: bool = True
    """Scale inputs so that E||x||^2 = d_model during training; folded into the exported weights."""
    init_tokens: int = 65536
    """Tokens used to estimate the input scale and to initialise b_dec at the data mean."""
    split: str = "training"
    """Store split to train on."""
    buffer_tokens: int = 1048576
    """Shuffle window in tokens: random blocks of the split fill it, its tokens leave in random
    order (docs/storage.md)."""
    buffer_gb: float = 4.0
    """Memory bound of the stream's two windows, in GB: the window shrinks to fit."""
    readers: int = 0
    """Threads reading the store (0: one per core, at most 8)."""
    seed: int = 0
    """Seed of the data order (each SAE's weights use sae.seed)."""
    log_every_steps: int = 25
    checkpoint_every_steps: int = 500
    """Write out_dir/checkpoints/last.ckpt this often (and at the end)."""
    resume: bool = False
    """Continue from out_dir/checkpoints/last.ckpt; the run ends where an uninterrupted one would."""

    def problems(self) -> list[str]:
        """Settings that cannot train, each naming the setting (empty: none)."""
        import math

        out = []
        if self.batch_size < 0:
            out.append(f"train.batch_size={self.batch_size} must be positive (0: from the budget)")
        if self.lr_warmup_steps < -1:
            out.append(f"train.lr_warmup_steps={self.lr_warmup_steps} must be >= 0 (-1: auto)")
        for name in (
            "max_tokens",
            "init_tokens",
            "buffer_tokens",
            "log_every_steps",
            "checkpoint_every_steps",
        ):
            if getattr(self, name) <= 0:
                out.append(f"train.{name}={getattr(self, name)} must be positive")
        for name in ("lr", "grad_clip", "sparsity_warmup_steps"):
            v = getattr(self, name)
            if v < 0 or not math.isfinite(v):
                out.append(f"train.{name}={v} must be zero or positive")
        if not (math.isfinite(self.buffer_gb) and self.buffer_gb > 0):
            out.append(f"train.buffer_gb={self.buffer_gb} must be positive (GB for the shuffle)")
        if self.readers < 0:
            out.append(f"train.readers={self.readers} must be 0 (one per core) or positive")
        if not 0.0 <= self.lr_decay_fraction <= 1.0:
            out.append(f"train.lr_decay_fraction={self.lr_decay_fraction} must be in [0, 1]")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                out.append(f"train.{name}={getattr(self, name)} must be in [0, 1)")
        if self.b_dec_init not in ("mean", "geometric_median", "zeros"):
            out.append(
                f"train.b_dec_init={self.b_dec_init!r} is not mean, geometric_median or zeros"
            )
        return out

    def resolved(self, world_size: int = 1) -> TrainConfig:
        """The config with the budget-derived defaults (``batch_size=0``, ``lr_warmup_steps=-1``)
        made concrete."""
        import math
        from dataclasses import replace

        batch = self.batch_size
        if batch == 0:
            batch = 2 ** round(math.log2(max(1.0, self.max_tokens / 1500)))
            batch = min(4096, max(256, batch))
        steps = math.ceil(self.max_tokens / (batch * world_size))
        warm = self.lr_warmup_steps if self.lr_warmup_steps >= 0 else min(100, steps // 20)
        return replace(self, batch_size=batch, lr_warmup_steps=warm)

    # What a resumed run must share with the run that wrote the checkpoint.
    RESUME_KEYS = (
        "max_tokens",
        "batch_size",
        "lr",
        "lr_warmup_steps",
        "lr_decay_fraction",
        "seed",
        "split",
        "normalize_inputs",
        "b_dec_init",
    )


@dataclass
class TrainerConfig:
    """Lightning trainer settings (device-agnostic: the same run on CPU, one GPU or many)."""

    accelerator: str = "auto"
    devices: str = "1"
    """Devices per node: an int, a list like '[0,1]', or 'auto'."""
    num_nodes: int = 1
    strategy: str = "auto"
    """'auto', 'ddp', 'ddp_spawn', ... (gloo on CPU, nccl on GPU)."""
    precision: str = "32-true"
    """'32-true', 'bf16-mixed' or '16-mixed'."""
    logger: str = "csv"
    """csv | tensorboard | wandb (wandb runs offline unless WANDB_MODE says otherwise)."""
    progress_bar: bool = True
    deterministic: bool = False

    def build(self, **kwargs: Any) -> Any:
        """``lightning.pytorch.Trainer(**kwargs)``, where a setting Lightning cannot use here (an
        unknown accelerator or strategy, devices that do not exist) is one sentence naming the
        trainer settings instead of Lightning's exception."""
        import lightning.pytorch as pl

        return self._checked(lambda: pl.Trainer(**kwargs))

    def device_count(self) -> Any:
        """``devices`` as Lightning takes it: an int for a count (``"2"``, ``"-1"``), else as given
        (``"auto"``, ``"0,1"``)."""
        devices = str(self.devices).strip()
        return int(devices) if devices.lstrip("-").isdigit() else self.devices

    def fabric(self) -> Any:
        """``lightning.fabric.Fabric`` on these settings (extraction on several devices and
        nodes), with the same one-sentence refusal as ``build``."""
        from lightning.fabric import Fabric

        devices = self.device_count()
        return self._checked(
            lambda: Fabric(
                accelerator=self.accelerator,
                devices=devices,
                num_nodes=self.num_nodes,
                strategy=self.strategy,
            )
        )

    def _checked(self, make: Any) -> Any:
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        from vista.errors import VistaError

        try:
            return make()
        except (ValueError, TypeError, RuntimeError, MisconfigurationException) as e:
            first = " ".join(str(e).split())[:300]
            raise VistaError(
                f"The trainer settings (trainer.accelerator={self.accelerator}, trainer.devices="
                f"{self.devices}, trainer.num_nodes={self.num_nodes}, trainer.strategy="
                f"{self.strategy}) cannot run here: {first.rstrip('.')}; choose values this "
                "machine supports (docs/training.md)."
            ) from None


@dataclass
class EncoderTrainingConfig:
    """How to train the encoder."""

    architecture: str = "mnist_cnn"
    """Which trainable encoder: mnist_cnn or alexnet_transformer."""
    options: dict[str, Any] = field(default_factory=dict)
    """Constructor options of the architecture, e.g. alexnet_transformer's
    ``{n_layer: 4, n_embd: 128, n_head: 8, width: 0.5, image_size: 96}``."""
    label: str = ""
    """The label to classify ('' = the dataset's first label)."""
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    """Peak AdamW learning rate (one-cycle schedule)."""
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class MultiTaskProbeConfig:
    """How the multi-task probe is trained."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    """Adam learning rate (the seeds' default)."""
    weight_decay: float = 0.0
    standardize: bool = True
    """Z-score inputs with the training part's statistics (the seeds did not; raw activations and
    codes differ in scale by orders of magnitude)."""
    seed: int = 0
