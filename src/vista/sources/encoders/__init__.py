"""Vision encoders, one registry."""

from vista.sources.encoders.base import (
    ENCODER_REGISTRY,
    Encoder,
    EncoderConfig,
    make_encoder,
    register_encoder,
)

from vista.sources.encoders import mnist_cnn  # noqa: F401  isort: skip

__all__ = ["ENCODER_REGISTRY", "Encoder", "EncoderConfig", "make_encoder", "register_encoder"]
