"""Any PyTorch module: built from an import path, or loaded whole from a file.

- ``encoder.target=package.module:make_model`` (a class, a function returning a module, or a
  module object) with ``encoder.kwargs``; ``encoder.path`` then optionally names a state dict
  (``.safetensors``, or a ``torch.save`` dict, possibly under ``state_dict``/``model_state_dict``).
- ``encoder.path=model.pt`` alone: a module saved whole with ``torch.save(model)``. Unpickling runs
  code, so only load files you trust.

``encoder.layer`` is a dotted module path (glob patterns allowed) or, when the model has a block
list (``layers``/``blocks``/``stages``...), a block index. Preprocessing: ``encoder.channels``,
``encoder.image_size``, ``encoder.mean``/``encoder.std``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vista.errors import VistaError
from vista.safeload import load_torch
from vista.sources.encoders.base import Encoder, EncoderConfig, find_blocks, register_encoder
from vista.sources.encoders.preprocess import ImagePreprocess


def import_object(target: str) -> Any:
    """``package.module:attr.sub`` or ``package.module.attr`` -> the object."""
    if ":" in target:
        mod_name, _, attr = target.partition(":")
    else:
        mod_name, _, attr = target.rpartition(".")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise VistaError(
            f"Cannot import {mod_name!r} for encoder.target={target!r} ({e})."
        ) from None
    for part in attr.split(".") if attr else []:
        if not hasattr(obj, part):
            raise VistaError(f"{mod_name!r} has no attribute {attr!r} (encoder.target={target!r}).")
        obj = getattr(obj, part)
    return obj


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = load_torch(path)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise VistaError(
            f"{str(path)!r} holds no state dict; save `model.state_dict()` or the module."
        )
    return obj


@register_encoder("module")
def build_module(cfg: EncoderConfig) -> Encoder:
    path = Path(cfg.path) if cfg.path else None
    if path is not None and not path.is_file():
        raise VistaError(f"encoder.path {str(path)!r} does not exist.")
    if cfg.target:
        obj = import_object(str(cfg.target))
        model = obj if isinstance(obj, nn.Module) else obj(**dict(cfg.kwargs))
        if not isinstance(model, nn.Module):
            raise VistaError(
                f"encoder.target={cfg.target!r} gave a {type(model).__name__}, not a torch module."
            )
        if path is not None:
            try:
                model.load_state_dict(read_state_dict(path))
            except RuntimeError as e:
                raise VistaError(
                    f"The state dict {str(path)!r} does not fit {cfg.target} ({str(e).splitlines()[0]})."
                ) from None
    elif path is not None:
        if not cfg.trust_pickled_code:
            raise VistaError(
                f"encoder.path {str(path)!r} without encoder.target is a whole pickled module, and "
                "loading one runs code stored in the file; give encoder.target=package.module:Class "
                "with a state dict, or set encoder.trust_pickled_code=true if you trust the file."
            )
        model = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(model, nn.Module):
            raise VistaError(
                f"{str(path)!r} holds a {type(model).__name__}, not a module saved with "
                "torch.save(model); for a state dict also give encoder.target."
            )
    else:
        raise VistaError(
            "The module encoder needs encoder.target=package.module:constructor or "
            "encoder.path=saved_module.pt."
        )
    blocks = find_blocks(model)
    return Encoder(
        name="module",
        model=model,
        preprocess=ImagePreprocess(
            channels=int(cfg.channels),
            size=int(cfg.image_size),
            mean=list(cfg.mean),
            std=list(cfg.std),
        ),
        blocks=blocks,
        default_layer=blocks[-1] if blocks else ".",
        meta={"target": str(cfg.target), "path": str(cfg.path)},
    )
