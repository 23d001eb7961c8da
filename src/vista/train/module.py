"""The Lightning module that trains one or several SAEs on one token stream."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any, cast

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from vista.errors import VistaError
from vista.saes import SAE, make_sae
from vista.saes.registry import config_from_dict, sae_name
from vista.train.config import TrainConfig
from vista.train.step import DeadLatentTracker, make_adam, train_step


def default_lr(d_sae: int, scale: float = 1.0) -> float:
    """sparsify's width scaling: 2e-4 at 16k latents, growing as 1/sqrt(d_sae) below, times the
    architecture's ``lr_scale``."""
    return scale * 2e-4 / math.sqrt(d_sae / 2**14)


def lr_factor(step: int, n_steps: int, warmup: int, decay_fraction: float) -> float:
    """Linear warm-up, constant, then linear decay to zero over the last ``decay_fraction``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    decay_steps = int(n_steps * decay_fraction)
    if decay_steps > 0 and step >= n_steps - decay_steps:
        return max(0.0, (n_steps - step) / decay_steps)
    return 1.0


class SAETrainingModule(pl.LightningModule):
    """Holds the SAEs, their dead-latent trackers and the input scale; calls ``train_step``."""

    input_scale: Tensor
    tokens_seen: Tensor
    sparsity_gain: Tensor

    def __init__(
        self,
        sae_cfgs: list[dict[str, Any]],
        train_cfg: dict[str, Any],
        n_steps: int,
        store_fingerprint: str = "",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # the fingerprint lets a resume check it reads the same data
        self.train_cfg = TrainConfig(**train_cfg)
        self.n_steps = n_steps
        self.saes = nn.ModuleList([make_sae(config_from_dict(c)) for c in sae_cfgs])
        self.trackers = nn.ModuleList(
            [
                DeadLatentTracker(s.d_sae, int(getattr(s.cfg, "dead_tokens", 0) or 10_000_000))
                for s in self.sae_list
            ]
        )
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.register_buffer("tokens_seen", torch.tensor(0, dtype=torch.long))
        # log of each SAE's sparsity-coefficient factor, moved by the target-L0 controller
        # (training state like the trackers: checkpointed, never exported).
        self.register_buffer("sparsity_gain", torch.zeros(len(self.saes)))
        self.data: Any = None  # the TokenBatches dataset, told how far to skip on resume
        self._t_last = 0.0
        self._tokens_last = 0

    @property
    def sae_list(self) -> list[SAE]:
        """The SAEs, typed (``self.saes`` is the ``nn.ModuleList`` the checkpoints name)."""
        return cast(list[SAE], list(self.saes))

    @property
    def tracker_list(self) -> list[DeadLatentTracker]:
        return cast(list[DeadLatentTracker], list(self.trackers))

    @torch.no_grad()
    def initialize_from_sample(self, sample: Tensor) -> None:
        """Estimate the input scale and start every b_dec at the (scaled) data mean."""
        sample = sample.float()
        if self.train_cfg.normalize_inputs:
            # In float64: squared norms of float32 values near 1e30 overflow float32.
            sq = float(sample.double().pow(2).sum(dim=1).mean())
            scale = math.sqrt(sample.shape[1] / max(sq, 1e-12))
            if not math.isfinite(sq) or not 1e-37 < scale < 1e37:
                raise VistaError(
                    f"The training activations cannot be scaled to unit size (mean squared norm "
                    f"{sq:.3g}); check the store for extreme or non-finite values (vista info "
                    "STORE) and re-extract it."
                )
            self.input_scale.fill_(scale)
        for sae in self.sae_list:
            sae.init_from_data_(sample * self.input_scale, self.train_cfg.b_dec_init)

    def sae_names(self) -> list[str]:
        return sweep_names([asdict(s.cfg) for s in self.sae_list])

    # -- the step -------------------------------------------------------------------------------
    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        x = batch.float() * self.input_scale
        sync = self.trainer.world_size > 1
        warm = self.train_cfg.sparsity_warmup_steps
        ramp = min(1.0, (self.global_step + 1) / warm) if warm > 0 else 1.0
        scales = ramp * self.sparsity_gain.exp()  # 0-d tensors: no host sync per step
        step = train_step(
            self.sae_list, self.tracker_list, x, sync_fired=sync, sparsity_scale=scales
        )
        if ramp >= 1.0:
            self._steer_to_target_l0(step.outputs, sync)
        self.tokens_seen += x.shape[0] * self.trainer.world_size
        if (
            self.global_step % self.train_cfg.log_every_steps == 0
            or self.global_step == self.n_steps - 1
        ):
            self._log_step(step.outputs)
        return step.loss

    @torch.no_grad()
    def _steer_to_target_l0(self, outputs: list, sync: bool) -> None:
        """Move the sparsity coefficient of every SAE with a ``target_l0`` towards it: a
        multiplicative integral controller on the batch L0 (averaged over ranks under DDP, so
        every rank keeps the same coefficient)."""
        targets = [float(getattr(s.cfg, "target_l0", 0.0)) for s in self.sae_list]
        if not any(targets):
            return
        l0 = torch.stack([o.l0.detach().float() for o in outputs]).to(self.sparsity_gain)
        if sync:
            import torch.distributed as dist

            dist.all_reduce(l0)
            l0 /= self.trainer.world_size
        for i, (sae, target) in enumerate(zip(self.sae_list, targets, strict=True)):
            if target > 0:
                err = torch.log((l0[i] + 1e-3) / target).clamp(-1.0, 1.0)
                self.sparsity_gain[i] += float(getattr(sae.cfg, "target_l0_rate", 0.0)) * err

    def sparsity_factor(self, i: int) -> float:
        """What SAE ``i``'s sparsity coefficient is multiplied by now (1 without a target L0)."""
        return float(self.sparsity_gain[i].exp())

    def _log_step(self, outputs: list) -> None:
        now, seen = time.perf_counter(), int(self.tokens_seen)
        logs: dict[str, float] = {"tokens": float(seen)}
        if self._t_last:
            logs["tokens_per_s"] = (seen - self._tokens_last) / max(now - self._t_last, 1e-9)
        self._t_last, self._tokens_last = now, seen
        names = self.sae_names()
        for i, (name, out, tracker) in enumerate(
            zip(names, outputs, self.tracker_list, strict=True)
        ):
            prefix = "" if len(outputs) == 1 else f"{name}/"
            logs[f"{prefix}fvu"] = float(out.recon_loss)
            logs[f"{prefix}l0"] = float(out.l0)
            logs[f"{prefix}dead"] = float(tracker.dead_mask().float().mean())
            logs[f"{prefix}aux_loss"] = float(out.aux_loss)
            logs[f"{prefix}sparsity_loss"] = float(out.sparsity_loss)
            if getattr(self.sae_list[i].cfg, "target_l0", 0.0):
                logs[f"{prefix}sparsity_factor"] = self.sparsity_factor(i)
            logs[f"{prefix}loss"] = float(out.loss.detach())
            if not math.isfinite(logs[f"{prefix}loss"]):
                raise VistaError(
                    f"Training diverged at step {self.global_step}: the loss of SAE {name} became "
                    f"{logs[f'{prefix}loss']}; nothing was exported. Lower train.lr, or check the "
                    "store for extreme or non-finite values (vista info STORE)."
                )
        bar = {"tokens_per_s", "fvu", "l0", "dead"}
        for k, v in logs.items():
            self.log(k, v, prog_bar=k in bar, on_step=True, on_epoch=False, rank_zero_only=True)

    # -- decoder constraint around the optimiser step -------------------------------------------
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        for sae in self.sae_list:
            sae.before_optimizer_step()

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # Renormalise right after the step, before any callback (e.g. checkpointing) sees the weights.
        super().optimizer_step(*args, **kwargs)
        for sae in self.sae_list:
            sae.after_optimizer_step()

    def configure_optimizers(self) -> Any:
        c = self.train_cfg
        groups = [
            {"params": list(sae.parameters()), "lr": c.lr or default_lr(sae.d_sae, sae.lr_scale)}
            for sae in self.sae_list
        ]
        opt = make_adam(groups, (c.beta1, c.beta2))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, self.n_steps, c.lr_warmup_steps, c.lr_decay_fraction)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- resume -----------------------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.data is not None:
            self.data.skip_batches = int(checkpoint.get("global_step", 0))


def sweep_names(cfgs: list[dict[str, Any]]) -> list[str]:
    """``sae_name`` of each config; configs that differ only in settings the name does not show
    (e.g. Matryoshka's ``group_sizes``) get a short hash of their config appended."""
    import hashlib
    import json

    names = [sae_name(c) for c in cfgs]
    shared = {n for n in names if names.count(n) > 1}
    for i, name in enumerate(names):
        if name in shared:
            digest = hashlib.sha256(json.dumps(cfgs[i], sort_keys=True).encode()).hexdigest()
            names[i] = f"{name}_{digest[:6]}"
    return names
