"""Vision encoders, one registry."""

from vista.sources.encoders.base import (
    ENCODER_REGISTRY,
    ENCODERS,
    Encoder,
    EncoderConfig,
    find_blocks,
    make_encoder,
    register_encoder,
)

__all__ = [
    "ENCODERS",
    "ENCODER_REGISTRY",
    "Encoder",
    "EncoderConfig",
    "find_blocks",
    "make_encoder",
    "register_encoder",
]
