"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead") with a threshold that learns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vista.saes import ops
from vista.saes.base import SAE, TrainOutput, fired_from_codes, fired_from_sparse, fvu_terms
from vista.saes.config import PenaltyConfig
from vista.saes.registry import register_sae


@dataclass
class JumpReLUConfig(PenaltyConfig):
    """JumpReLU (Rajamanoharan et al. 2024): a learned per-latent threshold, L0 penalty, STE.

    The threshold is a float32 parameter in pre-activation units (not log-space: Adam steps on a
    log threshold barely move it, SAELens PR #718). Bandwidth and initial threshold are relative
    to the RMS of the pre-activations measured on the initialisation sample, so the threshold
    gets gradient whether or not the inputs are normalised.
    """

    architecture: str = "jumprelu"
    l0_coeff: float = 0.02
    """Weight of the mean L0 per token, added to the batch FVU."""
    bandwidth: float = 0.1
    """Width of the rectangle kernel of the straight-through estimators, times the pre-act RMS."""
    init_l0: float | None = 64.0
    """Mean L0 per token at the start of training: each latent's threshold starts at the
    quantile of its own pre-activations on the initialisation sample above which it fires on
    ``init_l0 / d_sae`` of the tokens (capped at all of them), so training starts sparse and no
    latent starts dead (with ``target_l0`` set, at that L0 instead). ``None``: one common
    threshold of ``threshold_init`` instead."""
    threshold_init: float = 0.5
    """Initial threshold, times the pre-activation RMS, when ``init_l0`` is ``None`` (and the
    threshold before any data initialisation)."""


def _rectangle(z: Tensor, theta: Tensor, eps: Tensor) -> Tensor:
    """``K((z - theta) / eps) / eps`` with the rectangle kernel ``K(u) = 1[|u| < 1/2]``."""
    return ((z - theta).abs() < eps / 2).to(z.dtype) / eps


class _JumpReLU(torch.autograd.Function):
    """``z * 1[z > theta]``; d/dz = 1[z > theta], d/dtheta = -(theta / eps) K((z - theta)/eps)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, eps: Tensor) -> Tensor:
        ctx.save_for_backward(z, theta, eps)
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, None]:
        z, theta, eps = ctx.saved_tensors
        dz = g * (z > theta).to(g.dtype)
        dtheta = (-theta * _rectangle(z, theta, eps) * g).sum(0)
        return dz, dtheta, None


class _Step(torch.autograd.Function):
    """``1[z > theta]``; d/dz = 0, d/dtheta = -(1/eps) K((z - theta)/eps)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, eps: Tensor) -> Tensor:
        ctx.save_for_backward(z, theta, eps)
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[None, Tensor, None]:
        z, theta, eps = ctx.saved_tensors
        return None, (-_rectangle(z, theta, eps) * g).sum(0), None


def jumprelu(z: Tensor, theta: Tensor, eps: Tensor) -> Tensor:
    return _JumpReLU.apply(z, theta, eps)


def step(z: Tensor, theta: Tensor, eps: Tensor) -> Tensor:
    return _Step.apply(z, theta, eps)


INIT_CHUNK_ENTRIES = 2**24
"""Pre-activations computed at once during the data initialisation (64 MB of float32)."""


@register_sae("jumprelu")
class JumpReLUSAE(SAE):
    """``f = z * 1[z > threshold]`` with ``z = (x - b_dec) W_enc + b_enc``; loss = FVU + l0 * L0.

    ``threshold`` (float32, >= 0, one per latent) is trained through straight-through estimators
    with a rectangle kernel (paper eq. 11-12); the L0 term moves only the thresholds. SAELens's
    JumpReLU layout (``threshold`` tensor, no log) is what is exported.
    """

    saelens_architecture = "jumprelu"

    config_class = JumpReLUConfig
    cfg: JumpReLUConfig
    preact_scale: Tensor

    def __init__(self, cfg: JumpReLUConfig) -> None:
        super().__init__(cfg)
        self.threshold = nn.Parameter(torch.full((cfg.d_sae,), cfg.threshold_init))
        # RMS of the pre-activations at initialisation: the unit of bandwidth and threshold_init.
        self.register_buffer("preact_scale", torch.tensor(1.0))

    def encode(self, x: Tensor) -> Tensor:
        z = self.pre_acts(x).float()
        # The ReLU matters only for thresholds below zero (imported SAEs: SAELens and
        # dictionary_learning apply it; vista's own thresholds stay >= 0).
        return (z.relu() * (z > self.threshold)).to(x.dtype)

    def training_forward(
        self, x: Tensor, dead_mask: Tensor | None = None, sparsity_scale: float | Tensor = 1.0
    ) -> TrainOutput:
        # Thresholds and their window are compared in float32, even under autocast.
        eps = self.preact_scale * self.cfg.bandwidth
        codes, vals, offsets, l0 = ops.jumprelu_train(
            x, self.b_dec, self.W_enc, self.b_enc, self.threshold.float(), eps
        )
        if vals is None:  # dense codes (many latents fire, early in training)
            x_hat = codes @ self.W_dec + self.b_dec
            fired = fired_from_codes(codes.detach())
        else:
            x_hat = ops.sparse_decode(codes, vals.to(self.W_dec.dtype), self.W_dec, offsets)
            x_hat = x_hat + self.b_dec
            fired = fired_from_sparse(codes, vals, self.d_sae)
        recon, _ = fvu_terms(x, x_hat)
        sparsity = self.cfg.l0_coeff * sparsity_scale * l0
        return TrainOutput(
            loss=recon + sparsity,
            x_hat=x_hat,
            fired=fired,
            l0=l0.detach(),
            recon_loss=recon.detach(),
            sparsity_loss=sparsity.detach(),
            aux_loss=recon.new_zeros(()),
        )

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        super().after_optimizer_step()
        self.threshold.clamp_(min=0.0)

    @torch.no_grad()
    def init_from_data_(self, x: Tensor, b_dec_init: str = "mean") -> None:
        super().init_from_data_(x, b_dec_init)
        rms, top = self._preact_stats(x)
        self.preact_scale.copy_(rms)
        if top is None:
            self.threshold.fill_(float(rms) * self.cfg.threshold_init)
        else:  # the (m+1)-th largest pre-activation of each latent: m tokens lie above it
            self.threshold.copy_(top[:, -1].clamp_min(0.0))

    def _preact_stats(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """RMS of the pre-activations of ``x`` and, with ``init_l0``, the ``m + 1`` largest
        pre-activations of each latent (``(d_sae, m + 1)``, descending), with ``m`` tokens
        ``init_l0 / d_sae`` of ``x``; chunked so no ``(n, d_sae)`` matrix is formed."""
        n = x.shape[0]
        keep = None
        start = self.cfg.target_l0 or self.cfg.init_l0  # a target L0 is also where to start
        if start is not None and n > 1:
            rate = min(max(start, 0.0) / self.d_sae, 1.0)
            keep = min(n, round(rate * n) + 1)
        chunk = max(1, INIT_CHUNK_ENTRIES // self.d_sae)
        sq = torch.zeros((), dtype=torch.float64, device=self.W_enc.device)
        top = None
        for part in x.split(chunk):
            zt = self.pre_acts(part.to(self.W_enc)).float().t()  # (d_sae, tokens)
            sq += zt.double().pow(2).sum()
            if keep is not None:
                cand = zt if top is None else torch.cat([top, zt], dim=1)
                top = cand.topk(min(keep, cand.shape[1]), dim=1).values
        rms = (sq / max(n * self.d_sae, 1)).sqrt().clamp_min(1e-12).float()
        return rms, top

    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        super().fold_input_scale_(scale)
        self.threshold.div_(scale)
        self.preact_scale.div_(scale)
