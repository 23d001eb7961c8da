"""Sparse autoencoders: one file per architecture, one registry, one output contract."""

from vista.saes.base import SAE, SAEOutput, TrainOutput
from vista.saes.config import BatchTopKConfig, SAEConfig, TopKConfig
from vista.saes.registry import SAE_REGISTRY, make_sae, register_sae, sae_class

# Architectures register themselves on import.
from vista.saes import batchtopk, topk  # noqa: F401  isort: skip

__all__ = [
    "SAE",
    "SAE_REGISTRY",
    "BatchTopKConfig",
    "SAEConfig",
    "SAEOutput",
    "TopKConfig",
    "TrainOutput",
    "make_sae",
    "register_sae",
    "sae_class",
]
