"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders") with AuxK."""

from __future__ import annotations

import torch
from torch import Tensor

from vista.saes import ops
from vista.saes.base import SAE, TrainOutput, batch_total_variance
from vista.saes.config import TopKConfig
from vista.saes.registry import register_sae


def auxk_loss(
    pre: Tensor,
    residual: Tensor,
    w_dec: Tensor,
    dead_mask: Tensor | None,
    k_aux: int,
) -> Tensor:
    """AuxK: the top-``k_aux`` dead latents per token must reconstruct what the live ones missed.

    Dead latents are ranked on their pre-activations and, as in OpenAI's reference, their values
    pass through the ReLU: decoding raw negative values trains dead latents as anti-directions of
    the residual that never fire. The loss is the residual's own normalised MSE (OpenAI's
    ``normalized_mse``), so it keeps its strength when the residual is already small; normalising
    by the input's variance instead left 30-40% of latents dead on MNIST. The target is detached,
    so the term moves only the dead latents' parameters (SAELens #666).
    """
    if dead_mask is None or not bool(dead_mask.any()):
        return pre.new_zeros(())
    k = min(k_aux, int(dead_mask.sum()))
    masked = pre.masked_fill(~dead_mask, float("-inf"))
    vals, idx = masked.topk(k, dim=-1, sorted=False)
    e_hat = ops.sparse_decode(idx, torch.relu(vals), w_dec)
    e = residual.detach()
    return (e_hat - e).pow(2).sum() / batch_total_variance(e)


@register_sae("topk")
class TopKSAE(SAE):
    """Codes = the ``k`` largest ReLU pre-activations of each token."""

    config_class = TopKConfig
    cfg: TopKConfig

    def encode(self, x: Tensor) -> Tensor:
        return ops.topk_mask_dense(torch.relu(self.pre_acts(x)), self.cfg.k)

    def select(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Training-time selection: ``(indices, values, offsets)`` for ``ops.sparse_decode``."""
        vals, idx = pre.topk(min(self.cfg.k, self.d_sae), dim=-1, sorted=False)
        return idx, torch.relu(vals), None

    def training_forward(self, x: Tensor, dead_mask: Tensor | None = None) -> TrainOutput:
        pre = self.pre_acts(x)
        idx, vals, offsets = self.select(pre)
        x_hat = ops.sparse_decode(idx, vals, self.W_dec, offsets) + self.b_dec
        total_var = batch_total_variance(x)
        residual = x - x_hat
        recon = residual.pow(2).sum() / total_var
        aux = self.cfg.aux_coeff * auxk_loss(pre, residual, self.W_dec, dead_mask, self.cfg.k_aux)
        active = vals > 0
        fired = torch.zeros(self.d_sae, dtype=torch.bool, device=x.device)
        fired[idx[active]] = True
        zero = recon.new_zeros(())
        return TrainOutput(
            loss=recon + aux,
            x_hat=x_hat,
            fired=fired,
            l0=active.sum() / x.shape[0],
            recon_loss=recon.detach(),
            sparsity_loss=zero,
            aux_loss=aux.detach(),
        )
