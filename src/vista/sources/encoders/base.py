"""The encoder contract: a module, its preprocessing, and a registry of builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from torch import Tensor, nn

from vista.errors import VistaError


@dataclass
class EncoderConfig:
    """Which encoder to read, where, and which tokens."""

    name: str = "mnist_cnn"
    """Registry name of the encoder."""
    path: str = ""
    """Weights: a directory written by `vista train-encoder`, a local model directory or a hub id."""
    layer: str = "fc1"
    """Where to read: a dotted module path (glob patterns allowed)."""
    tokens: str = "all"
    """Token selection: all | patches | cls | mean."""
    batch_size: int = 512
    """Images per forward pass."""
    device: str = "cpu"


@dataclass
class Encoder:
    """A loaded encoder, ready to hook."""

    name: str
    model: nn.Module
    preprocess: Callable[[np.ndarray], Tensor]
    """Images as stored by a dataset -> the model's input batch."""
    prefix_tokens: int = 0
    """CLS + register tokens in front of the patch tokens (for tokens=patches)."""
    meta: dict[str, Any] = field(default_factory=dict)


ENCODER_REGISTRY: dict[str, Callable[[EncoderConfig], Encoder]] = {}
F = TypeVar("F", bound=Callable[[EncoderConfig], Encoder])


def register_encoder(name: str) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        if name in ENCODER_REGISTRY:
            raise ValueError(f"Encoder {name!r} is registered twice.")
        ENCODER_REGISTRY[name] = fn
        return fn

    return deco


def make_encoder(cfg: EncoderConfig | Any) -> Encoder:
    import vista.sources.encoders  # noqa: F401  (registers the bundled encoders)

    if cfg.name not in ENCODER_REGISTRY:
        raise VistaError(f"Unknown encoder {cfg.name!r}; choose one of {sorted(ENCODER_REGISTRY)}.")
    enc = ENCODER_REGISTRY[cfg.name](cfg)
    enc.model.eval().to(cfg.device)
    return enc
