"""ReLU SAE with a decoder-norm-weighted L1 penalty (Anthropic's April 2024 training update)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vista.saes.base import SAE, TrainOutput, fired_from_codes, fvu_terms
from vista.saes.config import PenaltyConfig
from vista.saes.registry import register_sae


@dataclass
class VanillaConfig(PenaltyConfig):
    """ReLU SAE with an L1 penalty weighted by decoder row norms (Anthropic, April 2024 update).

    The decoder is not constrained while training; the exported weights are rescaled to unit
    decoder rows with the same function (``canonicalize_``).
    """

    architecture: str = "vanilla"
    l1_coeff: float = 0.1
    """Weight of ``mean_tokens sum_i f_i ||W_dec_i|| / rms(x - mean)`` (scale-free L1)."""
    dec_init_norm: float = 0.1
    """Initial norm of each decoder row (the encoder starts as the transposed decoder)."""


def scale_free_l1(codes: Tensor, dec_norms: Tensor, total_var: Tensor) -> Tensor:
    """``mean_tokens sum_i f_i ||W_dec_i||`` divided by the batch's RMS distance to its mean.

    Both loss terms are then dimensionless (the FVU and this), so one ``l1_coeff`` means the same
    on any input scale. With unit decoder rows the weights are 1 and this is the plain L1.
    """
    n = codes.shape[0]
    return (codes @ dec_norms).sum() / n / (total_var / n).sqrt()


@register_sae("vanilla")
class VanillaSAE(SAE):
    """``f = ReLU((x - b_dec) W_enc + b_enc)``; loss = FVU + l1 * sum_i f_i ||W_dec_i||.

    Decoder rows are free while training (the norm-weighted penalty stops the codes from shrinking
    against growing rows) and are rescaled to unit norm on export with the same function.
    """

    saelens_architecture = "standard"

    config_class = VanillaConfig
    cfg: VanillaConfig
    unit_decoder = False

    def __init__(self, cfg: VanillaConfig) -> None:
        super().__init__(cfg)
        with torch.no_grad():
            self.W_dec.mul_(cfg.dec_init_norm)
            self.W_enc.copy_(self.W_dec.t() * cfg.enc_init_scale)

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu(self.pre_acts(x))

    def training_forward(
        self, x: Tensor, dead_mask: Tensor | None = None, sparsity_scale: float | Tensor = 1.0
    ) -> TrainOutput:
        codes = self.encode(x)
        x_hat = self.decode(codes)
        recon, total_var = fvu_terms(x, x_hat)
        l1 = scale_free_l1(codes, self.W_dec.norm(dim=1), total_var)
        sparsity = self.cfg.l1_coeff * sparsity_scale * l1
        return TrainOutput(
            loss=recon + sparsity,
            x_hat=x_hat,
            fired=fired_from_codes(codes),
            l0=(codes > 0).sum() / x.shape[0],
            recon_loss=recon.detach(),
            sparsity_loss=sparsity.detach(),
            aux_loss=recon.new_zeros(()),
        )
