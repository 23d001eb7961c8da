"""BatchTopK SAE (Bussmann, Leask & Nanda 2024) with a learned global inference threshold."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vista.saes.registry import register_sae
from vista.saes.topk import TopKConfig, TopKSAE


@dataclass
class BatchTopKConfig(TopKConfig):
    """BatchTopK (Bussmann et al. 2024): the k*B largest pre-activations over a batch of B tokens.

    At inference a global threshold (a running mean of the smallest selected activation per
    training batch) replaces the batch-level selection, so codes never depend on the batch.
    """

    architecture: str = "batchtopk"
    threshold_momentum: float = 0.99
    """Momentum of the running estimate of the inference threshold."""


@register_sae("batchtopk")
class BatchTopKSAE(TopKSAE):
    """Training keeps the ``k * n`` largest ReLU pre-activations of a batch of ``n`` tokens.

    Inference uses ``threshold``: a latent is active when its pre-activation exceeds it. The
    threshold is a running mean of the smallest activation the batch selection kept (BatchTopK
    paper, sec. 3.2), stored per latent (all equal) so the export loads as a SAELens JumpReLU.
    Until it has been estimated, inference falls back to per-token TopK (still batch-independent).
    """

    # BatchTopK-family inference is a per-latent threshold: exactly SAELens's JumpReLU.
    saelens_architecture = "jumprelu"

    config_class = BatchTopKConfig
    cfg: BatchTopKConfig
    threshold: Tensor

    def __init__(self, cfg: BatchTopKConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.full((cfg.d_sae,), -1.0))

    @property
    def has_threshold(self) -> bool:
        return bool(self.threshold[0] >= 0)

    def encode(self, x: Tensor) -> Tensor:
        if not self.has_threshold:
            return super().encode(x)
        pre = self.pre_acts(x)
        return torch.where(pre > self.threshold, pre, torch.zeros_like(pre)).relu_()

    batch_selection = True

    def observe_selection(self, vals: Tensor) -> None:
        self._update_threshold(vals)

    def export_architecture(self) -> str:
        # Without a learned threshold, inference is per-token TopK: export it as that.
        return super().export_architecture() if self.has_threshold else "topk"

    @torch.no_grad()
    def _update_threshold(self, vals: Tensor) -> None:
        positive = vals[vals > 0]
        if positive.numel() == 0:
            return
        batch_min = positive.min().to(self.threshold)
        if not self.has_threshold:
            self.threshold.fill_(batch_min)
        else:
            m = self.cfg.threshold_momentum
            self.threshold.mul_(m).add_((1 - m) * batch_min)

    @torch.no_grad()
    def calibrate_threshold_(self, x: Tensor) -> float:
        """Set the inference threshold so that the mean L0 over the tokens ``x`` is exactly
        ``k`` (the cut BatchTopK makes on ``x`` as one batch); returns the threshold.

        The running estimate of training lags the encoder while it still moves (short runs end
        with a mean L0 well off k); this pins the exported SAE to its training sparsity."""
        pre = self.pre_acts(x).float().relu().flatten()
        m = int(self.cfg.k) * x.shape[0]
        positive = int((pre > 0).sum())
        t = 0.0 if m >= positive else float(torch.topk(pre, m + 1).values[-1])
        self.threshold.fill_(t)
        return t

    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        super().fold_input_scale_(scale)
        if self.has_threshold:
            self.threshold.div_(scale)
