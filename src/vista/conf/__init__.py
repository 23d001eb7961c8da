"""Hydra structured configs: one typed config per verb, registered in the ConfigStore on demand.

Each verb has its own config tree (``vista evaluate sae=DIR`` takes a path where ``vista train
sae=topk`` selects an architecture), so only the running verb's configs are registered.
"""

from vista.conf.schema import VERB_CONFIGS, register_verb

__all__ = ["VERB_CONFIGS", "register_verb"]
