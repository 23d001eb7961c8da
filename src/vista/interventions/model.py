"""The encoder and images a store came from, rebuilt from the store's own attributes, and the
model's outputs with an edit spliced in at the store's layer.

A Hugging Face store keeps the path of the whole model it was read from; its vision tower was
hooked. ``head="classifier"`` reloads that model with its image-classification head when the
checkpoint has one (``*ForImageClassification``), ``head="generator"`` with its language model
(``AutoModelForImageTextToText``, e.g. PaliGemma 2, Qwen2-VL, LLaVA), and the hook goes to the
same module path inside that model's vision tower."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from vista.analysis.result import Skip
from vista.errors import VistaError
from vista.interventions.hooks import Edit, Splice

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class Model:
    """The store's encoder, hooked at the store's layer, and the dataset of its images."""

    encoder: Any
    module: Any
    layer: str
    tokens: str
    dataset: Any
    device: torch.device
    run: Callable[[Tensor], Any]
    """The model's forward on a preprocessed batch (its output: logits, or what the encoder gives)."""
    full: Any = None
    """The whole Hugging Face model (with its head) when one was loaded, else ``None``."""
    processor: Any = None
    """The Hugging Face processor (tokenizer and image processor) of a generator."""


HEADS = ("classifier", "generator")


def _hf_with_head(path: str, head: str, dtype: str = "float32") -> tuple[Any, Any, Any] | None:
    """``(model, vision tower, processor)`` of the checkpoint at ``path`` with its ``head``, or
    ``None`` when a classifier checkpoint has no classification head."""
    from vista.sources.encoders.hf import _transformers, vision_tower

    tf = _transformers()
    try:
        config = tf.AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise VistaError(f"Could not read the model config at {path!r} ({e}).") from None
    archs = list(getattr(config, "architectures", None) or [])
    torch_dtype = getattr(torch, dtype)
    try:
        if head == "classifier":
            if not any(a.endswith("ForImageClassification") for a in archs):
                return None
            full = tf.AutoModelForImageClassification.from_pretrained(path, dtype=torch_dtype)
            processor = None
        else:
            full = tf.AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype)
            processor = tf.AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        what = "an image classifier" if head == "classifier" else "a vision-language model"
        raise Skip(
            f"the store's model {path!r} does not load as {what} ({str(e).splitlines()[0]})"
        ) from None
    full.eval()
    for owner in (full, getattr(full, "model", None), full.base_model):
        tower = vision_tower(owner) if owner is not None else None
        if tower is not None and tower is not owner:
            return full, tower, processor
    return full, full.base_model, processor


def _same_site(ctx: Context) -> None:
    """Refuse an SAE trained at another layer or token selection than the store was read at."""
    from pathlib import Path

    from vista.saes.io import CFG_FILE, read_metadata

    cfg = Path(ctx.sae_path or "") / CFG_FILE
    try:
        meta = read_metadata(cfg.parent) if ctx.sae_path and cfg.is_file() else {}
    except (OSError, ValueError):
        meta = {}
    a = ctx.store_attrs
    for key, what in (("layer", "layer"), ("token_selection", "token selection")):
        trained, stored = str(meta.get(key) or ""), str(a.get(key) or "")
        if trained and stored and trained != stored:
            raise VistaError(
                f"The SAE was trained on the {what} {trained!r} but the store was read at "
                f"{stored!r}; splice it with a store extracted at {what} {trained!r}."
            )


def rebuild(
    ctx: Context,
    encoder_path: str = "",
    dataset_root: str = "",
    device: str = "cpu",
    head: str = "classifier",
    dtype: str = "float32",
) -> Model:
    """The encoder (at the layer and token selection the SAE was trained on), with its
    classification head or its language model (``head``), and the dataset."""
    from vista.sources.datasets import make_dataset
    from vista.sources.datasets.base import as_dataset_config
    from vista.sources.encoders import EncoderConfig, make_encoder
    from vista.sources.hooks import find_module

    a = ctx.store_attrs
    name, path = str(a.get("encoder", "")), encoder_path or str(a.get("encoder_path", ""))
    if not name or "dataset_config" not in a or "layer" not in a:
        raise Skip(
            "the store does not record its encoder, layer and dataset (it was not written by "
            "vista extract), so the model cannot be rebuilt"
        )
    _same_site(ctx)
    dcfg = as_dataset_config(json.loads(str(a["dataset_config"])))
    if dataset_root:
        dcfg.root = dataset_root
    known = json.loads(str(a["encoder_config"])) if "encoder_config" in a else {"name": name}
    ecfg = EncoderConfig(**{**known, "path": path, "device": device, "layer": ""})
    try:
        if head == "generator" and name != "hf":
            raise Skip(f"the store's encoder ({name}) has no language model to generate text")
        enc, full, processor = None, None, None
        if head != "generator":  # a generator reads images through its own processor
            enc = make_encoder(ecfg)
            tower = enc.model
        loaded = _hf_with_head(path, head, dtype) if name == "hf" else None
        if loaded is not None:
            full, tower, processor = loaded
        layer, module = find_module(tower, str(a["layer"]))
        ds = make_dataset(dcfg)
    except VistaError as e:
        raise Skip(f"the store's encoder or dataset cannot be loaded here ({e})") from None
    if full is not None:
        full.to(device)

        def run(x: Tensor) -> Any:
            return full(pixel_values=x)
    else:
        run = enc.run  # type: ignore[union-attr]
    tokens = str(a.get("token_selection", "all"))
    return Model(enc, module, layer, tokens, ds, torch.device(device), run, full, processor)


def logits_of(out: Any) -> Tensor:
    """The classification logits of a model output (a tensor or an output with ``logits``)."""
    if hasattr(out, "logits") and isinstance(out.logits, Tensor):
        out = out.logits
    if isinstance(out, Tensor) and out.ndim == 2:
        return out.float()
    raise Skip("the encoder's output is not classification logits (no classification head)")


@torch.no_grad()
def forward(m: Model, ctx: Context, rows: np.ndarray, edit: Edit | None, batch_size: int) -> Tensor:
    """Logits of the split's images ``rows``, with ``edit`` spliced in (``None``: the clean model)."""
    a = ctx.store_attrs
    images = ctx.original_indices[rows] if ctx.original_indices is not None else rows
    dtype = next((m.full if m.full is not None else m.encoder.model).parameters()).dtype
    out = []
    for s in range(0, len(images), batch_size):
        x = m.encoder.preprocess(m.dataset.load(images[s : s + batch_size])).to(m.device, dtype)
        if edit is None:
            out.append(logits_of(m.run(x)))
            continue
        splice = Splice(
            m.module,
            edit,
            ctx.sae.d_model,
            m.tokens,
            int(a.get("prefix_tokens", 0)),
            int(a.get("register_tokens", 0)),
        )
        with splice:
            out.append(logits_of(m.run(x)))
    return torch.cat(out).cpu()
