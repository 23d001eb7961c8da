"""The SAE spliced into a model: bit-for-bit passthrough with an identity SAE, token positions,
refusals, and a trained classifier whose class features are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.analysis.planted import classifier_store, identity_sae
from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.registry import ANALYSES
from vista.analysis.runner import run_analyses
from vista.analysis.sdf import SDFConfig
from vista.errors import VistaError
from vista.interventions import hooks
from vista.interventions.model import forward, rebuild

FAST = AnalysisSettings(n_boot=100, n_perm=100)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return classifier_store(tmp_path_factory.mktemp("splice"))


def test_an_identity_passthrough_changes_nothing_bit_for_bit(classifier: Path) -> None:
    ctx = Context(identity_sae(16), classifier, FAST)
    m = rebuild(ctx)
    rows = np.arange(64)
    clean = forward(m, ctx, rows, None, 32)
    spliced = forward(m, ctx, rows, hooks.passthrough(ctx.sae), 32)
    assert torch.equal(clean, spliced)
    zeroed = forward(m, ctx, rows, hooks.constant(torch.zeros(16)), 32)
    assert not torch.equal(clean, zeroed)
    # ... and the hook is gone afterwards.
    assert torch.equal(forward(m, ctx, rows, None, 32), clean)


def test_splice_measures_loss_recovered_and_the_targeted_change_of_each_class(
    classifier: Path, tmp_path: Path
) -> None:
    ctx = Context(identity_sae(16), classifier, FAST)
    cfg = ANALYSES["splice"].config(k=2, sdf=SDFConfig(k1=8, k2=4, k3=2))
    r = run_analyses(ctx, ["splice"], {"splice": cfg}, tmp_path).results["splice"]
    assert r.metadata["label"] == "digit" and r.metadata["layer"] == "act"
    assert r.value("clean/accuracy") > 0.85
    assert r.value("passthrough/accuracy") == r.value("clean/accuracy")
    assert r.value("passthrough/kl") == pytest.approx(0.0, abs=1e-9)
    assert r.value("loss_recovered/zero_ablation") == pytest.approx(1.0)
    assert r.value("zero_ablation/accuracy") < 0.3
    # The identity SAE has no reconstruction error: targeted = total, no interaction.
    assert r.value("decomposition/reconstruction_error") == 0.0
    assert r.value("decomposition/interaction") == 0.0
    # Suppressing a class's own units hurts that class more than the others; random units less so.
    assert r.value("targeted_change/sdf") > r.value("targeted_change/random")
    assert r.scalars["targeted_change/sdf"].low > 0


def test_splice_edits_only_the_selected_token_positions() -> None:
    out = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    layer = nn.Identity()
    double = hooks.Splice(
        layer, lambda x: 2 * x, d_model=3, tokens="patches", prefix_tokens=2, registers=1
    )
    with double:
        got = layer(out)
    assert torch.equal(got[:, :2], out[:, :2]) and torch.equal(got[:, 2:], 2 * out[:, 2:])
    cls_only = hooks.Splice(
        layer, lambda x: 0 * x, d_model=3, tokens="cls", prefix_tokens=2, registers=1
    )
    with cls_only:
        got = layer(out)
    assert torch.equal(got[:, 0], torch.zeros(2, 3)) and torch.equal(got[:, 1:], out[:, 1:])
    maps = torch.randn(2, 3, 4, 4)  # (B, C, H, W): 16 tokens of width 3
    with hooks.Splice(layer, lambda x: x + 1, d_model=3):
        assert torch.allclose(layer(maps), maps + 1)


def test_splice_refuses_a_wrong_width_and_pooled_stores() -> None:
    layer = nn.Identity()
    with (
        pytest.raises(VistaError, match="outputs 5-d activations but the SAE reads 3-d"),
        hooks.Splice(layer, lambda x: x, d_model=3),
    ):
        layer(torch.zeros(2, 5))
    with pytest.raises(VistaError, match="pooled vector per image"):
        hooks.Splice(layer, lambda x: x, d_model=3, tokens="mean")


def test_splice_skips_with_the_reason_when_the_model_cannot_be_rebuilt(tmp_path: Path) -> None:
    from tests.analysis.planted import planted_store

    store = planted_store(tmp_path / "s.h5", n=300)  # written without encoder attributes
    ctx = Context(identity_sae(16), store, FAST)
    out = run_analyses(ctx, ["splice"], {}, tmp_path, explicit=False)  # as in analysis=all
    assert "cannot be rebuilt" in out.skipped["splice"]
    with pytest.raises(VistaError, match="Analysis 'splice' could not run: .*cannot be rebuilt"):
        run_analyses(ctx, ["splice"], {}, tmp_path)  # named explicitly: an error


def test_an_hf_classifier_is_spliced_with_its_own_head(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.analysis.planted import signed_identity_sae
    from tests.analysis.tiny_models import tiny_vit_classifier
    from tests.sources.fixtures import make_image_folder
    from vista.sources.datasets import DatasetConfig
    from vista.sources.encoders import EncoderConfig
    from vista.sources.extract import extract

    root = make_image_folder(tmp_path / "imgs", per_class=12, split_dirs=True)
    enc = EncoderConfig(name="hf", path=str(tiny_vit_classifier(tmp_path)), layer="0")
    store = extract(DatasetConfig(name="imagefolder", root=str(root)), enc, tmp_path / "s.h5")
    ctx = Context(signed_identity_sae(32), store, AnalysisSettings(n_boot=50, n_perm=50))
    m = rebuild(ctx)
    assert type(m.full).__name__ == "ViTForImageClassification"
    rows = np.arange(8)
    clean = forward(m, ctx, rows, None, 4)
    assert clean.shape == (8, 3)  # the checkpoint's own 3-class head
    assert torch.equal(forward(m, ctx, rows, hooks.passthrough(ctx.sae), 4), clean)
    assert not torch.equal(forward(m, ctx, rows, hooks.constant(torch.zeros(32)), 4), clean)
    cfg = ANALYSES["splice"].config(k=1, sdf=SDFConfig(k1=8, k2=4, k3=2))
    r = run_analyses(ctx, ["splice"], {"splice": cfg}, tmp_path / "o").results["splice"]
    assert (
        r.metadata["label"] == "class" and r.metadata["layer"] == m.layer.endswith(".0") * m.layer
    )
    assert r.value("passthrough/accuracy") == r.value("clean/accuracy")
    assert r.value("passthrough/kl") == pytest.approx(0.0, abs=1e-12)


def test_an_sae_trained_at_another_layer_is_refused(classifier: Path, tmp_path: Path) -> None:
    from vista.saes.io import save_sae

    save_sae(identity_sae(16), tmp_path / "sae", {"layer": "conv2", "token_selection": "all"})
    ctx = Context(identity_sae(16), classifier, FAST, sae_path=str(tmp_path / "sae"))
    with pytest.raises(
        VistaError, match="trained on the layer 'conv2' but the store was read at 'act'"
    ):
        rebuild(ctx)
