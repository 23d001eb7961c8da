"""The encoder contract: a module, its preprocessing, where its blocks are, and a registry of builders."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor, nn

from vista.errors import VistaError
from vista.registry import Registry


@dataclass
class EncoderConfig:
    """Which encoder to read, where, and which tokens."""

    name: str = "mnist_cnn"
    """Registry name: mnist_cnn, alexnet_transformer (trained by vista), hf, module, mobilenet_v2,
    dinov2_small_offline."""
    path: str = ""
    """Weights: a `vista train-encoder` directory, a local HF model directory or hub id, or a
    state dict / saved module file (module)."""
    target: str = ""
    """module: import path of a constructor or module object, ``package.module:attr``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """module: keyword arguments of the constructor."""
    layer: str = ""
    """Where to read: a block index (``11``, ``-1``), a dotted module path (glob patterns allowed),
    or ``.`` for the model's output; '' = the encoder's default (its last block, or ``fc1`` for the
    MNIST CNN)."""
    tokens: str = "all"
    """all | no_registers | patches | cls | registers | mean (mean over the patch tokens)."""
    image_size: int = 0
    """Resize + centre-crop images to this side (0 = the encoder's own size)."""
    channels: int = 3
    """module: input channels (1 = grey, 3 = RGB)."""
    mean: list[float] = field(default_factory=list)
    """module: per-channel normalisation mean (empty = none)."""
    trust_pickled_code: bool = False
    """module: allow ``encoder.path`` to be a whole module saved with ``torch.save(model)``.
    Unpickling it runs code stored in the file; only for files you trust."""
    std: list[float] = field(default_factory=list)
    batch_size: int = 512
    """Images per forward pass."""
    device: str = "cpu"
    dtype: str = "float32"
    """Weights and compute dtype of the encoder: float32, bfloat16 or float16 (GPU)."""


@dataclass
class Encoder:
    """A loaded encoder, ready to hook."""

    name: str
    model: nn.Module
    preprocess: Callable[[np.ndarray | list[np.ndarray]], Tensor]
    """Images as stored by a dataset -> the model's input batch."""
    prefix_tokens: int = 0
    """CLS + register tokens in front of the patch tokens."""
    registers: int = 0
    """How many of the prefix tokens are register tokens (they follow the CLS token)."""
    meta: dict[str, Any] = field(default_factory=dict)
    blocks: list[str] = field(default_factory=list)
    """Module names, in order, that an integer ``encoder.layer`` indexes."""
    default_layer: str = "-1"
    forward: Callable[[nn.Module, Tensor], Any] | None = None
    """How to call the model on a batch (default ``model(x)``)."""

    def run(self, x: Tensor) -> Any:
        return self.forward(self.model, x) if self.forward else self.model(x)

    def resolve_layer(self, layer: str) -> str:
        """``encoder.layer`` -> a module path (or pattern): block indices go through ``blocks``."""
        layer = str(layer).strip() or self.default_layer
        if re.fullmatch(r"-?\d+", layer):
            if not self.blocks:
                raise VistaError(
                    f"The {self.name} encoder has no numbered blocks, so encoder.layer={layer} "
                    "does not apply; give a module path instead."
                )
            i = int(layer)
            if not -len(self.blocks) <= i < len(self.blocks):
                raise VistaError(
                    f"encoder.layer={i} is out of range: the {self.name} encoder has "
                    f"{len(self.blocks)} blocks (0..{len(self.blocks) - 1}, or -1 for the last)."
                )
            return self.blocks[i]
        return layer


ENCODERS: Registry[Callable[[EncoderConfig], Encoder]] = Registry(
    "encoder", "vista.sources.encoders"
)
ENCODER_REGISTRY = ENCODERS
register_encoder = ENCODERS.register


DTYPES = ("float32", "bfloat16", "float16")


def make_encoder(cfg: EncoderConfig | Any) -> Encoder:
    import torch

    build = ENCODERS.get_entry(cfg.name)
    if str(cfg.dtype) not in DTYPES:
        raise VistaError(f"Unknown encoder.dtype {cfg.dtype!r}; choose one of {list(DTYPES)}.")
    enc = build(cfg)
    enc.model.eval().to(device=cfg.device, dtype=getattr(torch, str(cfg.dtype)))
    return enc


def find_blocks(model: nn.Module, expected: int = 0) -> list[str]:
    """Names of a model's residual blocks or stages: the children of its main block list.

    The list is the ``ModuleList`` named like ``layers``/``layer``/``blocks``/``stages`` with
    ``expected`` children (when given), else the longest such list. Works across transformers
    versions, whose block paths differ (``encoder.layer.N``, ``layers.N``, ``encoder.stages.N``).
    """
    lists = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList | nn.Sequential)
        and name.split(".")[-1] in ("layers", "layer", "blocks", "block", "stages", "h", "features")
        and len(m) > 0
    ]
    if expected:
        exact = [(n, m) for n, m in lists if len(m) == expected]
        lists = exact or lists
    if not lists:
        return []
    name, m = max(lists, key=lambda nm: len(nm[1]))
    return [f"{name}.{i}" for i in range(len(m))]
