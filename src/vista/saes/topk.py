"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders") with AuxK."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from vista.saes import ops
from vista.saes.base import (
    SAE,
    SparseCodes,
    TrainOutput,
    batch_total_variance,
    fired_from_sparse,
    fvu_terms,
)
from vista.saes.config import SAEConfig
from vista.saes.registry import register_sae


@dataclass
class TopKConfig(SAEConfig):
    """TopK (Gao et al. 2024): the k largest ReLU pre-activations per token, with AuxK."""

    architecture: str = "topk"
    k: int = 32
    """Active latents per token."""
    k_aux: int = 256
    """Dead latents the auxiliary loss may use per token (AuxK)."""
    aux_coeff: float = 1 / 32
    """Weight of the AuxK loss (Gao et al. 2024, appendix A.2)."""
    dead_tokens: int = 0
    """A latent is dead (for AuxK) after this many training tokens without firing; 0 = a tenth
    of train.max_tokens, within [10 batches, 10M tokens]."""


def auxk_loss(
    pre_dead: Tensor,
    dead_idx: Tensor,
    residual: Tensor,
    w_dec: Tensor,
    k_aux: int,
) -> Tensor:
    """AuxK: the top-``k_aux`` dead latents per token must reconstruct what the live ones missed.

    ``pre_dead (n, n_dead)`` are the pre-activations of the dead latents ``dead_idx``. As in
    OpenAI's reference, their values pass through the ReLU: decoding raw negative values trains
    dead latents as anti-directions of the residual that never fire. The loss is the residual's
    own normalised MSE (OpenAI's ``normalized_mse``), so it keeps its strength when the residual
    is already small; normalising by the input's variance instead left 30-40% of latents dead on
    MNIST. The target is detached, so the term moves only the dead latents' parameters (SAELens
    #666).
    """
    if dead_idx.numel() == 0:
        return pre_dead.new_zeros(())
    k = min(k_aux, dead_idx.numel())
    vals, j = pre_dead.topk(k, dim=-1, sorted=False)
    e_hat = ops.sparse_decode(dead_idx[j], torch.relu(vals).to(w_dec.dtype), w_dec)
    e = residual.detach()
    return (e_hat - e).pow(2).sum() / batch_total_variance(e)


@register_sae("topk")
class TopKSAE(SAE):
    """Codes = the ``k`` largest ReLU pre-activations of each token.

    Training uses ``ops.sparse_encode`` (one dense GEMM, a sparse backward) and an embedding-bag
    decoder, so only the selected latents' rows are touched after the encoder GEMM.
    """

    saelens_architecture = "topk"

    config_class = TopKConfig
    cfg: TopKConfig
    batch_selection: ClassVar[bool] = False
    """Select ``k * n`` over the batch (BatchTopK) instead of ``k`` per token."""

    def encode(self, x: Tensor) -> Tensor:
        return ops.topk_mask_dense(torch.relu(self.pre_acts(x)), self.cfg.k)

    def encode_sparse(self, x: Tensor) -> SparseCodes:
        if type(self).encode is not TopKSAE.encode:  # BatchTopK's threshold, ...
            return super().encode_sparse(x)
        # The k largest pre-activations that are positive: the same entries as the ReLU-then-top-k
        # of ``encode``, without the dense ReLU, the dense codes or a scan for their non-zeros.
        pre = self.pre_acts(x)
        vals, idx = pre.topk(min(self.cfg.k, pre.shape[-1]), dim=-1, sorted=False)
        keep = vals > 0
        rows = torch.arange(pre.shape[0], device=pre.device).unsqueeze(1).expand_as(idx)
        return SparseCodes(rows[keep], idx[keep], vals[keep])

    def select(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training-time selection: flat ``(indices, values, offsets)`` for ``ops.sparse_decode``."""
        idx, vals, offsets = ops.sparse_encode(
            x, self.b_dec, self.W_enc, self.b_enc, self.cfg.k, self.batch_selection
        )
        if self.training:
            self.observe_selection(vals)
        return idx, vals, offsets

    def observe_selection(self, vals: Tensor) -> None:
        """Hook for state learned from the training selection (BatchTopK's threshold)."""

    def auxk(self, x: Tensor, residual: Tensor, dead_mask: Tensor | None) -> Tensor:
        """The weighted AuxK term; one extra GEMM over the dead latents' columns only."""
        if dead_mask is None or not bool(dead_mask.any()):
            return x.new_zeros(())
        dead_idx = dead_mask.nonzero().squeeze(1)
        pre_dead = (x - self.b_dec) @ self.W_enc[:, dead_idx] + self.b_enc[dead_idx]
        return self.cfg.aux_coeff * auxk_loss(
            pre_dead, dead_idx, residual, self.W_dec, self.cfg.k_aux
        )

    def training_forward(
        self, x: Tensor, dead_mask: Tensor | None = None, sparsity_scale: float | Tensor = 1.0
    ) -> TrainOutput:
        idx, vals, offsets = self.select(x)
        x_hat = ops.sparse_decode(idx, vals, self.W_dec, offsets) + self.b_dec
        recon, _ = fvu_terms(x, x_hat)
        aux = self.auxk(x, x - x_hat, dead_mask)
        return self._output(x, x_hat, idx, vals, recon, aux)

    def _output(
        self, x: Tensor, x_hat: Tensor, idx: Tensor, vals: Tensor, recon: Tensor, aux: Tensor
    ) -> TrainOutput:
        zero = recon.new_zeros(())
        return TrainOutput(
            loss=recon + aux,
            x_hat=x_hat,
            fired=fired_from_sparse(idx, vals, self.d_sae),
            l0=(vals > 0).sum() / x.shape[0],
            recon_loss=recon.detach(),
            sparsity_loss=zero,
            aux_loss=aux.detach(),
        )
