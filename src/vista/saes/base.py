"""The SAE base: parameters, decoding, the unit-norm decoder, input-scale folding, the output contract.

A variant overrides only what its math changes: ``encode`` (inference codes) and
``training_forward`` (the training loss), plus ``fold_input_scale_`` when it holds thresholds.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from vista.saes import ops
from vista.saes.config import SAEConfig


class SAEOutput(NamedTuple):
    """Inference output of any SAE."""

    x_hat: Tensor
    """``(n, d_model)`` reconstruction."""
    codes: Tensor
    """``(n, d_sae)`` dense latent codes (mostly zeros)."""


class TrainOutput(NamedTuple):
    """One training forward, the same for every architecture."""

    loss: Tensor
    """Scalar to minimise: ``recon_loss + sparsity_loss + aux_loss``."""
    x_hat: Tensor
    """``(n, d_model)`` reconstruction."""
    fired: Tensor
    """``(d_sae,)`` bool: latents that were non-zero for at least one token of the batch."""
    l0: Tensor
    """Mean number of non-zero latents per token."""
    recon_loss: Tensor
    """Fraction of variance unexplained on this batch (the reconstruction term)."""
    sparsity_loss: Tensor
    """Weighted sparsity penalty (0 for the TopK family)."""
    aux_loss: Tensor
    """Weighted auxiliary loss (AuxK for the TopK family; 0 when no latent is dead)."""


def batch_total_variance(x: Tensor) -> Tensor:
    """``sum ||x_i - mean(x)||^2`` over the batch: the denominator of the batch FVU."""
    return (x - x.mean(dim=0, keepdim=True)).pow(2).sum().clamp_min(1e-12)


class SAE(nn.Module):
    """Parameters ``W_enc (d_model, d_sae)``, ``b_enc``, ``W_dec (d_sae, d_model)``, ``b_dec``.

    Orientation and names follow SAELens, so exported weights load there unchanged.
    """

    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    signed_codes: ClassVar[bool] = False

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        if cfg.d_model < 1 or cfg.d_sae < 1:
            raise ValueError(f"d_model and d_sae must be positive, got {cfg.d_model}, {cfg.d_sae}.")
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        w_dec = torch.randn(cfg.d_sae, cfg.d_model, generator=gen)
        ops.normalize_rows_(w_dec)
        self.W_dec = nn.Parameter(w_dec)
        # Transposed init (Gao et al. 2024, sec. 2.4) keeps early codes aligned with the dictionary.
        self.W_enc = nn.Parameter(w_dec.t().clone() * cfg.enc_init_scale)
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_model))

    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    # -- inference --------------------------------------------------------------------------
    def pre_acts(self, x: Tensor) -> Tensor:
        """``(x - b_dec) W_enc + b_enc``, before any non-linearity."""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        """Inference codes ``(n, d_sae)``; depend on each token alone, never on the batch."""
        raise NotImplementedError

    def decode(self, codes: Tensor) -> Tensor:
        return codes @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> SAEOutput:
        codes = self.encode(x)
        return SAEOutput(self.decode(codes), codes)

    # -- training ---------------------------------------------------------------------------
    def training_forward(self, x: Tensor, dead_mask: Tensor | None = None) -> TrainOutput:
        """The training loss on a batch ``x (n, d_model)``; ``dead_mask (d_sae,)`` from the tracker."""
        raise NotImplementedError

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        ops.remove_parallel_grads_(self.W_dec)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        ops.normalize_rows_(self.W_dec)

    @torch.no_grad()
    def init_b_dec_(self, x: Tensor) -> None:
        """Start the decoder bias at the data mean (a cheap stand-in for the geometric median)."""
        self.b_dec.copy_(x.mean(dim=0).to(self.b_dec))

    # -- export -----------------------------------------------------------------------------
    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        """Turn an SAE trained on ``scale * x`` into one that takes ``x`` directly.

        Encoder pre-activations and biases are divided by ``scale``, so codes come out in input
        units and the decoder keeps unit-norm rows; the latent selection is unchanged.
        """
        self.b_enc.div_(scale)
        self.b_dec.div_(scale)
