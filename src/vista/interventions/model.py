"""The encoder and images a store came from, rebuilt from the store's own attributes, and the
model's outputs with an edit spliced in at the store's layer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from vista.analysis.context import Skip
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


def rebuild(
    ctx: Context, encoder_path: str = "", dataset_root: str = "", device: str = "cpu"
) -> Model:
    """The encoder (at the layer and token selection the SAE was trained on) and the dataset."""
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
    dcfg = as_dataset_config(json.loads(str(a["dataset_config"])))
    if dataset_root:
        dcfg.root = dataset_root
    known = json.loads(str(a["encoder_config"])) if "encoder_config" in a else {"name": name}
    ecfg = EncoderConfig(**{**known, "path": path, "device": device, "layer": ""})
    try:
        enc = make_encoder(ecfg)
        layer, module = find_module(enc.model, str(a["layer"]))
        ds = make_dataset(dcfg)
    except VistaError as e:
        raise Skip(f"the store's encoder or dataset cannot be loaded here ({e})") from None
    return Model(enc, module, layer, str(a.get("token_selection", "all")), ds, torch.device(device))


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
    dtype = next(m.encoder.model.parameters()).dtype
    out = []
    for s in range(0, len(images), batch_size):
        x = m.encoder.preprocess(m.dataset.load(images[s : s + batch_size])).to(m.device, dtype)
        if edit is None:
            out.append(logits_of(m.encoder.run(x)))
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
            out.append(logits_of(m.encoder.run(x)))
    return torch.cat(out).cpu()
