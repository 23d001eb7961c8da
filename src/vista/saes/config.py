"""Configurations of the SAE architectures: plain dataclasses, typed, one docstring per field.

They double as Hydra structured configs (``vista.conf`` registers them in the ``sae`` group).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SAEConfig:
    """What every architecture has."""

    architecture: str = "topk"
    """Registry name of the architecture."""
    d_model: int = 0
    """Input width; 0 = take it from the activation store."""
    d_sae: int = 4096
    """Number of latents (dictionary size)."""
    enc_init_scale: float = 1.0
    """Encoder initialised as this times the transposed (unit-row) decoder."""
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
