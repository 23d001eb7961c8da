"""Sparse autoencoders: one file per architecture, one registry, one output contract."""

from vista.saes.base import SAE, SAEOutput, TrainOutput
from vista.saes.config import (
    BatchTopKConfig,
    GatedConfig,
    JumpReLUConfig,
    MatchingPursuitConfig,
    MatryoshkaConfig,
    PursuitConfig,
    SAEConfig,
    TopKConfig,
    VanillaConfig,
)
from vista.saes.registry import SAE_REGISTRY, make_sae, register_sae, sae_class

# Architectures register themselves on import.
from vista.saes import (  # noqa: F401  isort: skip
    batchtopk,
    gated,
    jumprelu,
    matryoshka,
    mp,
    pursuit,
    topk,
    vanilla,
)

__all__ = [
    "SAE",
    "SAE_REGISTRY",
    "BatchTopKConfig",
    "GatedConfig",
    "JumpReLUConfig",
    "MatchingPursuitConfig",
    "MatryoshkaConfig",
    "PursuitConfig",
    "SAEConfig",
    "SAEOutput",
    "TopKConfig",
    "TrainOutput",
    "VanillaConfig",
    "make_sae",
    "register_sae",
    "sae_class",
]
