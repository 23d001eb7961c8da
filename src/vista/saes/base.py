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


class SparseCodes(NamedTuple):
    """The non-zero entries of a batch's codes, in row-major order (rows ascending)."""

    rows: Tensor
    """``(nnz,)`` token index of each entry."""
    cols: Tensor
    """``(nnz,)`` latent of each entry."""
    vals: Tensor
    """``(nnz,)`` its code."""


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
    """Codes may be negative (the pursuit encoders); otherwise every code is >= 0."""
    unit_decoder: ClassVar[bool] = True
    """Decoder rows are kept at unit norm during training (else only at export, see ``canonicalize_``)."""
    trainable: ClassVar[bool] = True
    """False for inference-time encoders built on a trained dictionary."""
    encodes_instances: ClassVar[bool] = False
    """Codes of a token depend on the other tokens of its image (``encode_instances``)."""
    lr_scale: ClassVar[float] = 1.0
    """Multiplies the default learning rate (``train.lr=0``); an explicit ``train.lr`` is used as given."""
    saelens_architecture: ClassVar[str] = ""
    """The SAELens architecture whose inference encoding is identical ('' when SAELens has none):
    ``save_sae`` writes the weights under it (``vista.saes.interop``)."""
    penalty_scale: ClassVar[float] = 1.0
    """For penalised architectures: how much larger a coefficient than vanilla's L1 reaches a
    similar L0; the benchmark's grid multiplies its ``l1_coeff`` list by it."""

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
        # W_enc is (d_model, d_sae) as in SAELens, stored latent-major (a transposed view of a
        # (d_sae, d_model) tensor): the sparse backward produces its gradient in that layout, so
        # no 4-byte-per-weight transpose copy is made per step; the forward GEMM reads it as is.
        self.W_enc = nn.Parameter((w_dec.clone() * cfg.enc_init_scale).t())
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

    def encode_sparse(self, x: Tensor) -> SparseCodes:
        """``encode(x)``'s non-zero entries; variants that select sparsely override it to skip
        the dense codes."""
        codes = self.encode(x)
        rows, cols = codes.nonzero(as_tuple=True)
        return SparseCodes(rows, cols, codes[rows, cols])

    def encode_instances(self, x: Tensor) -> Tensor:
        """Codes ``(b, t, d_sae)`` of ``b`` images of ``t`` tokens each; per token by default."""
        b, t, d = x.shape
        return self.encode(x.reshape(b * t, d)).view(b, t, -1)

    def decode(self, codes: Tensor) -> Tensor:
        return codes @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> SAEOutput:
        codes = self.encode(x)
        return SAEOutput(self.decode(codes), codes)

    # -- training ---------------------------------------------------------------------------
    def training_forward(
        self, x: Tensor, dead_mask: Tensor | None = None, sparsity_scale: float | Tensor = 1.0
    ) -> TrainOutput:
        """The training loss on a batch ``x (n, d_model)``.

        ``dead_mask (d_sae,)`` comes from the dead-latent tracker; ``sparsity_scale`` in [0, 1]
        multiplies the sparsity coefficient during its warm-up.
        """
        raise NotImplementedError

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        if self.unit_decoder:
            ops.remove_parallel_grads_(self.W_dec)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if self.unit_decoder:
            ops.normalize_rows_(self.W_dec)

    @torch.no_grad()
    def init_from_data_(self, x: Tensor, b_dec_init: str = "mean") -> None:
        """Start ``b_dec`` at the data's ``mean`` or ``geometric_median`` (``zeros`` leaves it).

        Variants with data-dependent state (JumpReLU's scale) extend this.
        """
        if b_dec_init == "mean":
            self.b_dec.copy_(x.mean(dim=0).to(self.b_dec))
        elif b_dec_init == "geometric_median":
            self.b_dec.copy_(ops.geometric_median(x).to(self.b_dec))
        elif b_dec_init != "zeros":
            from vista.errors import VistaError

            raise VistaError(
                f"Unknown b_dec_init {b_dec_init!r}; use mean, geometric_median or zeros."
            )

    # -- export -----------------------------------------------------------------------------
    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        """Turn an SAE trained on ``scale * x`` into one that takes ``x`` directly.

        Encoder pre-activations and biases are divided by ``scale``, so codes come out in input
        units and the decoder keeps unit-norm rows; the latent selection is unchanged.
        """
        self.b_enc.div_(scale)
        self.b_dec.div_(scale)

    def export_architecture(self) -> str:
        """The SAELens architecture whose inference encoding equals this SAE's (vista's own name
        when SAELens has none); ``save_sae`` writes the weights under it."""
        return self.saelens_architecture or self.cfg.architecture

    def non_finite(self) -> list[str]:
        """Names of the floating parameters and buffers holding NaN or infinite values."""
        tensors = [*self.named_parameters(), *self.named_buffers()]
        return [n for n, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]

    @torch.no_grad()
    def canonicalize_(self) -> None:
        """Bring the weights to the exported form: unit-norm decoder rows, same function.

        A no-op for architectures that keep unit rows while training.
        """
        if self.unit_decoder:
            return
        norms = self.W_dec.norm(dim=1).clamp_min(1e-12)
        self.W_dec.div_(norms[:, None])
        self.W_enc.mul_(norms[None, :])
        self.b_enc.mul_(norms)


def fvu_terms(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    """``(batch FVU, batch total variance)``: the reconstruction term every architecture uses."""
    total_var = batch_total_variance(x)
    return (x - x_hat).pow(2).sum() / total_var, total_var


def fired_from_codes(codes: Tensor) -> Tensor:
    """``(d_sae,)`` bool: latents non-zero for at least one token of ``codes (n, d_sae)``."""
    return (codes != 0).any(dim=0)


def fired_from_sparse(idx: Tensor, vals: Tensor, d_sae: int) -> Tensor:
    """``fired_from_codes`` for flat sparse codes: latents ``idx`` with a positive value."""
    fired = torch.zeros(d_sae, dtype=torch.bool, device=idx.device)
    fired[idx[vals > 0]] = True
    return fired
