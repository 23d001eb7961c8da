"""Every registered encoder builds, preprocesses and hooks; HF extraction equals output_hidden_states."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vista.errors import VistaError
from vista.sources.datasets import DatasetConfig
from vista.sources.encoders import ENCODER_REGISTRY, EncoderConfig, make_encoder
from vista.sources.encoders.mnist_cnn import MnistCNN, digits_preprocess
from vista.sources.encoders.preprocess import ImagePreprocess
from vista.sources.encoders.trainable import save_trained_encoder, trainable
from vista.sources.extract import extract
from vista.sources.hooks import capture_tokens, find_module
from vista.store import ActivationStore

transformers = pytest.importorskip("transformers")

TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
}


def tiny_hf(kind: str, root: Path, processor: bool = False) -> Path:
    """A randomly initialised vision model of ``kind`` saved with save_pretrained."""
    torch.manual_seed(0)
    t = transformers
    if kind == "clip":
        model = t.CLIPVisionModel(t.CLIPVisionConfig(**TINY, image_size=32, patch_size=8))
    elif kind == "dinov2":
        model = t.Dinov2Model(t.Dinov2Config(**TINY, image_size=32, patch_size=8))
    elif kind == "dinov2_registers":
        model = t.Dinov2WithRegistersModel(
            t.Dinov2WithRegistersConfig(**TINY, image_size=32, patch_size=8, num_register_tokens=4)
        )
    elif kind == "vit":
        model = t.ViTModel(t.ViTConfig(**TINY, image_size=32, patch_size=8))
    elif kind == "siglip":
        model = t.SiglipVisionModel(t.SiglipVisionConfig(**TINY, image_size=32, patch_size=8))
    elif kind == "resnet":
        model = t.ResNetModel(t.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]))
    elif kind == "convnext":
        model = t.ConvNextModel(t.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2))
    else:
        raise ValueError(kind)
    d = root / kind
    model.save_pretrained(d)
    if processor:
        t.CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ).save_pretrained(d)
    return d


def trained_dir(name: str, root: Path, options: dict) -> Path:
    arch = trainable(name)
    torch.manual_seed(0)
    model = arch.build(n_classes=3, **options)
    d = root / name
    save_trained_encoder(model, d, name, options, arch.preprocess(options), {"n_classes": 3})
    return d


def encoder_fixture(name: str, tmp: Path) -> dict:
    if name == "mnist_cnn":
        return {"path": str(trained_dir(name, tmp, {}))}
    if name == "alexnet_transformer":
        opts = {"n_layer": 2, "n_embd": 32, "n_head": 4, "width": 0.25, "image_size": 64}
        return {"path": str(trained_dir(name, tmp, opts))}
    if name == "hf":
        return {"path": str(tiny_hf("dinov2_registers", tmp))}
    if name == "module":
        return {
            "target": "vista.sources.encoders.mnist_cnn:MnistCNN",
            "kwargs": {"n_classes": 3},
            "layer": "fc1",
            "channels": 1,
            "image_size": 28,
        }
    if name == "mobilenet_v2":
        return {"image_size": 64}
    if name == "dinov2_small_offline":
        from tests.sources.test_dinov2_offline import tiny_dinov2_onnx

        return {"path": str(tiny_dinov2_onnx(tmp)), "image_size": 24}
    raise AssertionError(f"no fixture for encoder {name!r}: add one")


@pytest.mark.parametrize("name", sorted(ENCODER_REGISTRY))
def test_registered_encoder_contract(name: str, tmp_path: Path) -> None:
    cfg = EncoderConfig(name=name, **encoder_fixture(name, tmp_path))
    enc = make_encoder(cfg)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (30, 26, 3), dtype=np.uint8) for _ in range(2)]
    x = enc.preprocess(images)
    assert x.dtype == torch.float32 and x.shape[0] == 2
    layer, module = find_module(enc.model, enc.resolve_layer(cfg.layer))
    acts = capture_tokens(enc.run, module, x, "all", enc.prefix_tokens, enc.registers)
    assert acts.shape[0] == 2 and acts.ndim in (2, 3) and torch.isfinite(acts).all()
    if enc.blocks:
        assert enc.resolve_layer("-1") == enc.blocks[-1]
        with pytest.raises(VistaError, match="out of range"):
            enc.resolve_layer(str(len(enc.blocks)))


@pytest.mark.parametrize(
    ("kind", "prefix", "registers"),
    [("clip", 1, 0), ("dinov2", 1, 0), ("vit", 1, 0), ("dinov2_registers", 5, 4), ("siglip", 0, 0)],
)
def test_hf_token_layout_is_read_from_the_model(
    kind: str, prefix: int, registers: int, tmp_path: Path
) -> None:
    enc = make_encoder(EncoderConfig(name="hf", path=str(tiny_hf(kind, tmp_path))))
    assert (enc.prefix_tokens, enc.registers) == (prefix, registers)
    assert len(enc.blocks) == 3


@pytest.mark.parametrize(
    ("kind", "layer"),
    [
        ("clip", 1),
        ("dinov2", 2),
        ("vit", 0),
        ("dinov2_registers", -1),
        ("resnet", 1),
        ("convnext", 0),
    ],
)
def test_hf_extraction_equals_output_hidden_states(kind: str, layer: int, tmp_path: Path) -> None:
    """The store holds what the model returns as hidden_states[layer + 1], within fp16 rounding."""
    path = tiny_hf(kind, tmp_path, processor=kind == "clip")
    ds_cfg = DatasetConfig(name="digits", limit=12)
    out = extract(
        ds_cfg,
        EncoderConfig(name="hf", path=str(path), layer=str(layer), batch_size=5),
        tmp_path / "s.h5",
    )
    enc = make_encoder(EncoderConfig(name="hf", path=str(path)))
    from vista.sources.datasets import make_dataset

    ds = make_dataset(ds_cfg)
    model = transformers.AutoModel.from_pretrained(path).eval()
    with ActivationStore(out) as st:
        for split, parts in ds.store_splits.items():
            idx = ds.split_indices(parts)
            with torch.no_grad():
                hs = model(
                    pixel_values=enc.preprocess(ds.load(idx)), output_hidden_states=True
                ).hidden_states
            ref = hs[layer + 1 if layer >= 0 else layer]
            if ref.ndim == 4:
                ref = ref.flatten(2).transpose(1, 2)
            got = torch.as_tensor(st.read_rows(split, 0, len(idx)).astype(np.float32))
            torch.testing.assert_close(got, ref.float(), atol=2e-3, rtol=1e-3)
            assert np.array_equal(st.original_indices(split), idx)
        attrs = st.attrs
    assert attrs["encoder"] == "hf" and attrs["prefix_tokens"] == enc.prefix_tokens


def test_hf_token_selections_drop_cls_and_registers(tmp_path: Path) -> None:
    path = tiny_hf("dinov2_registers", tmp_path)
    enc = make_encoder(EncoderConfig(name="hf", path=str(path)))
    x = enc.preprocess(np.random.default_rng(0).random((2, 32, 32, 3)))
    _, block = find_module(enc.model, enc.resolve_layer("1"))
    full = capture_tokens(enc.run, block, x, "all", enc.prefix_tokens, enc.registers)
    assert full.shape[1] == 1 + 4 + 16

    def sel(t: str) -> torch.Tensor:
        return capture_tokens(enc.run, block, x, t, enc.prefix_tokens, enc.registers)

    torch.testing.assert_close(sel("patches"), full[:, 5:])
    torch.testing.assert_close(sel("cls"), full[:, 0])
    torch.testing.assert_close(sel("registers"), full[:, 1:5])
    torch.testing.assert_close(sel("no_registers"), torch.cat([full[:, :1], full[:, 5:]], 1))
    torch.testing.assert_close(sel("mean"), full[:, 5:].mean(1))


def test_hf_uses_the_models_own_image_processor(tmp_path: Path) -> None:
    path = tiny_hf("clip", tmp_path, processor=True)
    enc = make_encoder(EncoderConfig(name="hf", path=str(path)))
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    ref = transformers.CLIPImageProcessor.from_pretrained(path)(images=[img], return_tensors="pt")
    torch.testing.assert_close(enc.preprocess([img]), ref["pixel_values"])


def test_hf_missing_model_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(VistaError, match="local directory"):
        make_encoder(EncoderConfig(name="hf", path=str(tmp_path / "none")))


def test_mobilenet_v2_classifies_real_photos() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    enc = make_encoder(EncoderConfig(name="mobilenet_v2"))
    x = enc.preprocess([skimage_data.chelsea(), skimage_data.coffee()])
    with torch.no_grad():
        logits = enc.model(x)
    assert logits.argmax(1).tolist() == [285, 967]  # Egyptian cat, espresso
    assert len(enc.blocks) == 19
    _, stage = find_module(enc.model, enc.resolve_layer("6"))
    tokens = capture_tokens(enc.run, stage, x, "all")
    assert tokens.shape == (2, 28 * 28, 32)  # stage 6: stride 8, 32 channels, H*W tokens


def test_module_encoder_from_import_path_state_dict_and_saved_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MnistCNN(n_classes=3).eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save(model, tmp_path / "whole.pt")
    x = np.random.default_rng(0).random((3, 28, 28)).astype(np.float32)
    kw = {"layer": "fc1", "channels": 1, "mean": [0.1307], "std": [0.3081]}
    a = make_encoder(
        EncoderConfig(
            name="module",
            target="vista.sources.encoders.mnist_cnn:MnistCNN",
            kwargs={"n_classes": 3},
            path=str(tmp_path / "sd.pt"),
            **kw,
        )
    )
    b = make_encoder(
        EncoderConfig(name="module", path=str(tmp_path / "whole.pt"), trust_pickled_code=True, **kw)
    )
    ref = model.fc1(
        model.flatten(
            model.pool2(
                model.conv2_act(
                    model.conv2(model.pool1(model.conv1_act(model.conv1(digits_preprocess()(x)))))
                )
            )
        )
    )
    for enc in (a, b):
        _, m = find_module(enc.model, "fc1")
        torch.testing.assert_close(
            capture_tokens(enc.run, m, enc.preprocess(x), "all"), ref.detach()
        )
    with pytest.raises(VistaError, match="Cannot import"):
        make_encoder(EncoderConfig(name="module", target="no_such_pkg:Net"))


def test_preprocess_resizes_crops_and_normalises() -> None:
    p = ImagePreprocess(channels=3, size=4, crop_fraction=0.5, mean=[0.5] * 3, std=[0.25] * 3)
    img = np.zeros((8, 16), dtype=np.uint8)
    img[:, 6:10] = 255  # a bright vertical band in the middle
    x = p([img])
    # Shorter side 8 -> 8 (4 / 0.5); width 16 -> 16; the centre 4x4 crop is all band.
    assert x.shape == (1, 3, 4, 4)
    torch.testing.assert_close(x, torch.full((1, 3, 4, 4), (1.0 - 0.5) / 0.25))
    grey = ImagePreprocess(channels=1)(np.full((2, 5, 5, 3), 255, dtype=np.uint8))
    assert grey.shape == (2, 1, 5, 5) and float(grey.max()) == 1.0


def test_trained_encoder_records_its_preprocessing(tmp_path: Path) -> None:
    d = trained_dir(
        "alexnet_transformer",
        tmp_path,
        {"n_layer": 2, "n_embd": 32, "n_head": 4, "width": 0.25, "image_size": 64},
    )
    meta = json.loads((d / "encoder.json").read_text())
    assert meta["preprocess"]["size"] == 64 and meta["options"]["n_layer"] == 2
    enc = make_encoder(EncoderConfig(name="alexnet_transformer", path=str(d)))
    assert enc.resolve_layer("") == "transformer.blocks.1"
    with pytest.raises(VistaError, match="not 'mnist_cnn'"):
        make_encoder(EncoderConfig(name="mnist_cnn", path=str(d)))
