"""Hugging Face ``transformers`` vision models: CLIP, SigLIP, DINOv2 (with registers), ViT, ResNet, ConvNeXt, ...

``encoder.path`` is a hub id (users with internet) or a local directory (``save_pretrained``
output or a downloaded snapshot). Composite models (CLIP, SigLIP, PaliGemma, ...) are reduced to
their vision tower. An integer ``encoder.layer`` is a block index whose output is the residual
stream, i.e. ``hidden_states[layer + 1]`` of ``output_hidden_states``. The CLS and register tokens
are counted from the model itself (sequence length minus patches), so ``tokens=patches`` and
``tokens=no_registers`` exclude exactly them. Images go through the model's own image processor
when the directory has one, else a resize to the configured size with ImageNet statistics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vista.errors import VistaError
from vista.sources.encoders.base import Encoder, EncoderConfig, find_blocks, register_encoder
from vista.sources.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess

log = logging.getLogger(__name__)
VISION_TOWERS = ("vision_model", "vision_tower", "visual")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise VistaError(
            "Hugging Face encoders need transformers; install them with `pip install 'vista-sae[hf]'`."
        ) from None
    return transformers


def vision_tower(model: nn.Module) -> nn.Module:
    for attr in VISION_TOWERS:
        tower = getattr(model, attr, None)
        if isinstance(tower, nn.Module):
            return tower
    return model


def vision_config(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config


def as_rgb_uint8(images: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """Dataset images -> a list of ``(H, W, 3)`` uint8 arrays (what image processors take)."""
    out = []
    for im in images:
        a = np.asarray(im)
        if a.dtype != np.uint8:
            a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=-1)
        elif a.shape[-1] == 1:
            a = np.repeat(a, 3, axis=-1)
        out.append(a[..., :3])
    return out


class ProcessorPreprocess:
    """The model's own image processor (the slow, PIL/numpy one: no torchvision needed)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, images: np.ndarray | list[np.ndarray]) -> Tensor:
        return self.processor(images=as_rgb_uint8(images), return_tensors="pt")["pixel_values"]


def _processor(path: str) -> Any | None:
    tf = _transformers()
    local = Path(path)
    configs = ("preprocessor_config.json", "processor_config.json")
    if local.is_dir() and not any((local / c).is_file() for c in configs):
        return None
    try:
        return tf.AutoImageProcessor.from_pretrained(path, use_fast=False)
    except (OSError, ValueError) as e:
        log.warning("No image processor for %s (%s); using a plain resize.", path, e)
        return None


@register_encoder("hf")
def build_hf(cfg: EncoderConfig) -> Encoder:
    tf = _transformers()
    if not cfg.path:
        raise VistaError(
            "encoder.path is not set; give a hub id (e.g. facebook/dinov2-small) or a local model "
            "directory."
        )
    try:
        model = tf.AutoModel.from_pretrained(str(cfg.path))
    except (OSError, ValueError) as e:
        raise VistaError(
            f"Could not load the model {str(cfg.path)!r} ({str(e).splitlines()[0]}); without "
            "network access, point encoder.path at a local directory written by save_pretrained."
        ) from None
    tower = vision_tower(model).eval()
    vcfg = vision_config(model.config)
    depth = getattr(vcfg, "num_hidden_layers", 0) or len(getattr(vcfg, "depths", []) or [])
    blocks = find_blocks(tower, expected=int(depth))
    if not blocks:
        raise VistaError(
            f"Could not find the blocks of {type(tower).__name__}; give encoder.layer as a module path."
        )
    processor = None if cfg.image_size else _processor(str(cfg.path))
    size = int(cfg.image_size) or int(getattr(vcfg, "image_size", 0) or 224)
    preprocess: Any
    if processor is not None:
        preprocess = ProcessorPreprocess(processor)
    else:
        mean = list(getattr(processor, "image_mean", None) or IMAGENET_MEAN)
        std = list(getattr(processor, "image_std", None) or IMAGENET_STD)
        preprocess = ImagePreprocess(channels=3, size=size, mean=mean, std=std)
    enc = Encoder(
        name="hf",
        model=tower,
        preprocess=preprocess,
        blocks=blocks,
        default_layer="-1",
        forward=lambda m, x: m(pixel_values=x),
        registers=int(getattr(vcfg, "num_register_tokens", 0) or 0),
        meta={"model": str(cfg.path), "model_type": str(getattr(vcfg, "model_type", ""))},
    )
    enc.prefix_tokens = _prefix_tokens(tower, vcfg, size)
    return enc


@torch.no_grad()
def _prefix_tokens(tower: nn.Module, vcfg: Any, size: int) -> int:
    """Tokens before the patches (CLS + registers): the embedding's length minus the patch count."""
    patch = int(getattr(vcfg, "patch_size", 0) or 0)
    if not patch:
        return 0
    out = tower(
        pixel_values=torch.zeros(1, int(getattr(vcfg, "num_channels", 3)), size, size),
        output_hidden_states=True,
    )
    first = out.hidden_states[0]
    if first.ndim != 3:
        return 0
    return max(0, int(first.shape[1]) - (size // patch) ** 2)
