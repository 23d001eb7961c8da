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

from vista.sources.encoders import (  # noqa: F401  isort: skip
    alexnet_transformer,
    hf,
    mnist_cnn,
    mobilenet,
    module,
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
