"""Sparse autoencoders: one file per architecture, one registry, one output contract."""

from vista.saes.base import SAE, SAEOutput, SparseCodes, TrainOutput
from vista.saes.config import SAEConfig
from vista.saes.registry import SAE_REGISTRY, SAES, make_sae, register_sae, sae_class

# Architectures register themselves on import; each config sits next to its class.
from vista.saes.baselines import BaselineConfig  # isort: skip
from vista.saes.batchtopk import BatchTopKConfig  # isort: skip
from vista.saes.gated import GatedConfig  # isort: skip
from vista.saes.jumprelu import JumpReLUConfig  # isort: skip
from vista.saes.matryoshka import MatryoshkaConfig  # isort: skip
from vista.saes.mp import MatchingPursuitConfig  # isort: skip
from vista.saes.pursuit import PursuitConfig  # isort: skip
from vista.saes.topk import TopKConfig  # isort: skip
from vista.saes.vanilla import VanillaConfig  # isort: skip

__all__ = [
    "SAE",
    "SAES",
    "SAE_REGISTRY",
    "BaselineConfig",
    "BatchTopKConfig",
    "GatedConfig",
    "JumpReLUConfig",
    "MatchingPursuitConfig",
    "MatryoshkaConfig",
    "PursuitConfig",
    "SAEConfig",
    "SAEOutput",
    "SparseCodes",
    "TopKConfig",
    "TrainOutput",
    "VanillaConfig",
    "make_sae",
    "register_sae",
    "sae_class",
]
