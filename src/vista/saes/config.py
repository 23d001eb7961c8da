"""Configurations of the SAE architectures: plain dataclasses, typed, one docstring per field.

They double as Hydra structured configs (``vista.conf`` registers them in the ``sae`` group).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SAEConfig:
    """What every architecture has."""

    architecture: str = "topk"
    """Registry name of the architecture."""
    d_model: int = 0
    """Input width; 0 = take it from the activation store."""
    d_sae: int = 4096
    """Number of latents (dictionary size)."""
    enc_init_scale: float = 0.5
    """Encoder initialised as this times the transposed (unit-row) decoder. Below 1 (sparsify's
    nn.Linear init gives row norms of 1/sqrt(3)) reaches a lower FVU for the same samples:
    on the shape-A toy data after 246k samples, 0.637 at 1.0, 0.621 at 0.577, 0.619 at 0.3."""
    seed: int = 0
    """Seed of the weight initialisation."""


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
    dead_tokens: int = 10_000_000
    """A latent is dead after this many training tokens without firing."""


@dataclass
class BatchTopKConfig(TopKConfig):
    """BatchTopK (Bussmann et al. 2024): the k*B largest pre-activations over a batch of B tokens.

    At inference a global threshold (a running mean of the smallest selected activation per
    training batch) replaces the batch-level selection, so codes never depend on the batch.
    """

    architecture: str = "batchtopk"
    threshold_momentum: float = 0.99
    """Momentum of the running estimate of the inference threshold."""


@dataclass
class VanillaConfig(SAEConfig):
    """ReLU SAE with an L1 penalty weighted by decoder row norms (Anthropic, April 2024 update).

    The decoder is not constrained while training; the exported weights are rescaled to unit
    decoder rows with the same function (``canonicalize_``).
    """

    architecture: str = "vanilla"
    l1_coeff: float = 0.1
    """Weight of ``mean_tokens sum_i f_i ||W_dec_i|| / rms(x - mean)`` (scale-free L1)."""
    dec_init_norm: float = 0.1
    """Initial norm of each decoder row (the encoder starts as the transposed decoder)."""


@dataclass
class JumpReLUConfig(SAEConfig):
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
    latent starts dead. ``None``: one common threshold of ``threshold_init`` instead."""
    threshold_init: float = 0.5
    """Initial threshold, times the pre-activation RMS, when ``init_l0`` is ``None`` (and the
    threshold before any data initialisation)."""


@dataclass
class GatedConfig(SAEConfig):
    """Gated SAE (Rajamanoharan et al. 2024): a gate path decides which latents fire, a
    magnitude path (shared weights rescaled by exp(r_mag)) how strongly."""

    architecture: str = "gated"
    l1_coeff: float = 0.5
    """Weight of the L1 on ReLU(gate pre-activations), scale-free as in ``vanilla``."""


@dataclass
class MatryoshkaConfig(BatchTopKConfig):
    """Matryoshka BatchTopK (Bussmann et al. 2025): every prefix of the latents must reconstruct
    on its own, so early latents learn general features and later ones refine them."""

    architecture: str = "matryoshka"
    group_sizes: list[int] = field(default_factory=list)
    """Sizes of the nested groups (summing to d_sae); empty = d/16, d/16, d/8, d/4, d/2."""


@dataclass
class MatchingPursuitConfig(SAEConfig):
    """Matching-pursuit SAE (MP-SAE, Costa et al. 2025): the encoder is k greedy steps of
    residual pursuit on the decoder dictionary, trained end to end through the unrolled steps."""

    architecture: str = "mp"
    k: int = 16
    """Pursuit steps per token (an upper bound on L0)."""


@dataclass
class PursuitConfig(SAEConfig):
    """Inference-time pursuit encoders on a trained dictionary (``W_dec``, ``b_dec``)."""

    architecture: str = "ihtp"
    k: int = 8
    """ihtp: atoms per token before the union over an instance; mpsae: pursuit steps."""
    solver: str = "min_norm"
    """ihtp least squares: ``min_norm`` (pseudo-inverse, right when the support exceeds d_model)
    or ``ridge``."""
    ridge: float = 1e-3
    """Ridge strength, relative to the mean squared norm of the support atoms' Gram diagonal."""
