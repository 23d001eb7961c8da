"""Encoders vista trains itself (`vista train-encoder`), saved as ``encoder.safetensors`` + ``encoder.json``.

``encoder.json`` records the architecture, its constructor options, the class count and the
preprocessing, so `vista extract encoder=NAME encoder.path=DIR` rebuilds exactly what was trained.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from vista.errors import VistaError
from vista.registry import Registry
from vista.sources.encoders.base import Encoder, EncoderConfig, register_encoder
from vista.sources.encoders.preprocess import ImagePreprocess

WEIGHTS = "encoder.safetensors"
CONFIG = "encoder.json"


@dataclass(frozen=True)
class TrainableArchitecture:
    build: Callable[..., nn.Module]
    """``build(n_classes=..., **options)``."""
    preprocess: Callable[[dict[str, Any]], ImagePreprocess]
    """The preprocessing for given options (before training; then recorded in encoder.json)."""
    default_layer: Callable[[dict[str, Any]], str]
    blocks: Callable[[nn.Module], list[str]]
    """Module names that an integer ``encoder.layer`` indexes."""


TRAINABLE: Registry[TrainableArchitecture] = Registry("trainable encoder", "vista.sources.encoders")


def register_trainable(name: str, arch: TrainableArchitecture) -> None:
    """Register ``arch`` as a trainable architecture and as an encoder that loads it."""
    TRAINABLE.add(name, arch)

    @register_encoder(name)
    def _build(cfg: EncoderConfig) -> Encoder:
        return load_trained_encoder(cfg, expect=name)


def trainable(name: str) -> TrainableArchitecture:
    return TRAINABLE.get_entry(name)


def is_trained_encoder(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / WEIGHTS).is_file() and (d / CONFIG).is_file()


def save_trained_encoder(
    model: nn.Module,
    directory: str | Path,
    architecture: str,
    options: dict[str, Any],
    preprocess: ImagePreprocess,
    meta: dict[str, Any],
) -> None:
    """Write weights and config atomically (each file appears whole or not at all)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_c = d / (WEIGHTS + ".tmp"), d / (CONFIG + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_w))
    record = {
        "architecture": architecture,
        "options": options,
        "preprocess": preprocess.to_dict(),
        **meta,
    }
    tmp_c.write_text(json.dumps(record, indent=2) + "\n")
    tmp_w.replace(d / WEIGHTS)
    tmp_c.replace(d / CONFIG)


def load_trained_encoder(cfg: EncoderConfig | Any, expect: str = "") -> Encoder:
    from safetensors.torch import load_file

    if not cfg.path:
        raise VistaError(
            f"encoder.path is not set: the {expect or 'trained'} encoder needs trained weights; run "
            "`vista train-encoder out_dir=DIR` and pass encoder.path=DIR."
        )
    d = Path(cfg.path)
    if not is_trained_encoder(d):
        raise VistaError(
            f"No trained encoder in {str(d)!r} (it needs {WEIGHTS} and {CONFIG}); train one "
            f"with `vista train-encoder out_dir={d}` or fix encoder.path."
        )
    meta = json.loads((d / CONFIG).read_text())
    name = str(meta.get("architecture", ""))
    if expect and name != expect:
        raise VistaError(
            f"{str(d)!r} holds a {name!r} encoder, not {expect!r}; set encoder={name}."
        )
    arch = trainable(name)
    options = dict(meta.get("options", {}))
    model = arch.build(n_classes=int(meta.get("n_classes", 10)), **options)
    try:
        model.load_state_dict(load_file(str(d / WEIGHTS)))
    except (RuntimeError, OSError) as e:
        raise VistaError(
            f"The weights in {str(d / WEIGHTS)!r} do not fit the recorded {name} encoder "
            f"({str(e).splitlines()[0]}); retrain it."
        ) from None
    pre = (
        ImagePreprocess(**meta["preprocess"]) if "preprocess" in meta else arch.preprocess(options)
    )
    return Encoder(
        name=name,
        model=model,
        preprocess=pre,
        meta=meta,
        blocks=arch.blocks(model),
        default_layer=arch.default_layer(options),
    )
