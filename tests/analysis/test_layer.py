"""The analysis layer: every registered analysis runs and writes a readable result; the shared
pass is exact; bad input is one sentence; planted answers are found."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.analysis.planted import identity_sae, planted_store
from tests.conftest import write_vista_store
from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.encoding import encode_split
from vista.analysis.registry import ANALYSES, EVALUATE_PRESET
from vista.analysis.result import DIRECTIONS, Result, read_results
from vista.analysis.runner import resolve_names, run_analyses
from vista.errors import VistaError
from vista.saes import make_sae
from vista.saes.io import save_sae
from vista.store import ActivationStore

FAST = AnalysisSettings(n_boot=50, n_perm=50)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("planted")
    store = planted_store(tmp / "store.h5")
    sae = identity_sae(16)
    save_sae(sae, tmp / "sae")
    other = make_sae({"architecture": "topk", "d_model": 16, "d_sae": 16, "k": 4, "seed": 5})
    save_sae(other, tmp / "other")
    return store, tmp / "sae", tmp / "other"


def _configs(planted: tuple[Path, Path, Path]) -> dict:
    _, sae, other = planted
    cfgs = {name: spec.config() for name, spec in ANALYSES.items()}
    cfgs["stability"].saes = [str(other)]
    cfgs["compare"].other_sae = str(other)
    cfgs["probe"].epochs = 2
    cfgs["ablation"].ks = [1, 3]
    cfgs["generate"].modes = ["passthrough", "suppression"]
    cfgs["generate"].max_new_tokens = 4
    cfgs["absorption"].hierarchies = [
        {"label": "a", "name": "p", "groups": {"low": ["a0", "a1"], "high": ["a2"]}}
    ]
    return cfgs


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_every_analysis_runs_and_writes_a_result_that_reads_back(
    name: str, planted: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    store, sae_dir, _ = planted
    if name == "recovery":  # needs a store with a known dictionary
        from vista.sources.synthetic import SyntheticConfig, write_synthetic_store

        store = write_synthetic_store(
            tmp_path / "syn.h5", SyntheticConfig(d_model=16, n_train=100, n_validation=300)
        )
    sae = identity_sae(16)
    if name == "splice":  # needs a store written by extract from a classifier
        from tests.analysis.planted import classifier_store

        store, sae = classifier_store(tmp_path), identity_sae(16)
    if name == "generate":  # needs a store written by extract from a vision-language model
        pytest.importorskip("transformers")
        from tests.analysis.planted import signed_identity_sae
        from tests.analysis.tiny_models import vlm_store

        store, sae = vlm_store(tmp_path), signed_identity_sae(32)
    if name == "tokens":  # needs several tokens per image
        from tests.analysis.planted import token_store

        store, _ = token_store(tmp_path / "vit.h5", 16)
    ctx = Context(sae, store, FAST, sae_path=str(sae_dir))
    out = run_analyses(ctx, [name], _configs(planted), tmp_path)
    r = out.results[name]
    back = Result.read(tmp_path / "analyses" / name)
    assert back.name == name and set(back.scalars) == set(r.scalars) and r.scalars
    for key, s in back.scalars.items():
        assert s.direction in DIRECTIONS, key
        if s.low is not None and np.isfinite(s.value) and np.isfinite(s.low):
            assert s.low <= s.value + 1e-9 and s.value <= s.high + 1e-9, key
    assert set(back.arrays) == set(r.arrays)
    for k, v in r.arrays.items():
        np.testing.assert_array_equal(back.arrays[k], v)
    assert back.metadata["seconds"] >= 0 and back.metadata["versions"]["vista"]
    assert all(h in back.scalars for h in back.headline)
    index = json.loads((tmp_path / "analyses/index.json").read_text())
    assert name in index["ran"]


def test_all_runs_what_the_labels_allow_and_records_why_the_rest_was_skipped(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(300, 8))).astype(np.float32)
    y = rng.integers(0, 3, 300)
    store = write_vista_store(tmp_path / "s.h5", {"validation": x}, {"validation": {"only": y}})
    ctx = Context(identity_sae(8), store, FAST)
    names, explicit = resolve_names(["all"])
    cfgs = {"probe": ANALYSES["probe"].config(epochs=1)}
    out = run_analyses(ctx, names, cfgs, tmp_path / "out", explicit=explicit)
    assert set(out.skipped) == {
        "intersectional",
        "conjunction",
        "stability",
        "compare",
        "scr",
        "absorption",
        "recovery",
        "splice",  # the store records no encoder
        "generate",
        "tokens",  # one token per image
    }
    assert "2 label(s)" in out.skipped["intersectional"]
    index = json.loads((tmp_path / "out/analyses/index.json").read_text())
    assert set(index["skipped"]) == set(out.skipped) and "health" in index["ran"]
    assert set(read_results(tmp_path / "out")) == set(out.results)
    # Named explicitly, an analysis that cannot run is an error before any work.
    with pytest.raises(VistaError, match="intersectional.*needs 2 label"):
        run_analyses(ctx, ["health", "intersectional"], {}, tmp_path / "x", explicit=True)
    assert not (tmp_path / "x").exists()


def test_a_store_without_labels_gets_the_label_free_analyses(tmp_path: Path) -> None:
    x = np.abs(np.random.default_rng(0).normal(size=(200, 8))).astype(np.float32)
    store = write_vista_store(tmp_path / "s.h5", {"validation": x})
    ctx = Context(identity_sae(8), store, FAST)
    out = run_analyses(ctx, resolve_names(["all"])[0], {}, tmp_path / "o", explicit=False)
    assert {"health", "reconstruction", "dynamics"} <= set(out.results)
    assert {"probes", "ablation", "sdf", "feature_auc"} <= set(out.skipped)


def test_unknown_analysis_and_width_mismatch_are_one_sentence(
    planted: tuple[Path, Path, Path],
) -> None:
    store, _, _ = planted
    with pytest.raises(VistaError, match="Unknown analysis 'nope'; choose one of"):
        resolve_names(["nope"])
    with pytest.raises(VistaError, match="reads 8-d activations but split 'validation'"):
        Context(identity_sae(8), store, FAST)


@pytest.mark.parametrize("dense_mb", [512.0, 0.0])
def test_the_shared_pass_equals_direct_computation(dense_mb: float, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 5, 6)).astype(np.float32)  # 37 images of 5 tokens
    store = write_vista_store(tmp_path / "t.h5", {"validation": x})
    sae = make_sae({"architecture": "topk", "d_model": 6, "d_sae": 20, "k": 3, "seed": 1}).eval()
    enc = encode_split(sae, store, "validation", batch_tokens=40, dense_codes_mb=dense_mb)
    assert enc.sparse == (dense_mb == 0.0)
    with ActivationStore(store) as st:  # the stored (float16) values
        x = np.asarray(st.read_rows("validation", 0, 37), dtype=np.float32)
    flat = torch.from_numpy(x.reshape(-1, 6))
    with torch.no_grad():
        codes = sae.encode(flat)
        x_hat = sae.decode(codes)
    c = codes.numpy().reshape(37, 5, 20)
    np.testing.assert_allclose(enc.dense_codes(), c.mean(axis=1), rtol=1e-6, atol=1e-7)
    xh = x_hat.numpy().astype(np.float64).reshape(37, 5, 6)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(enc.image_sq_error, ((x64 - xh) ** 2).sum(axis=(1, 2)), rtol=1e-5)
    scatter = ((x64 - x64.mean(axis=1, keepdims=True)) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(enc.image_scatter, scatter, rtol=1e-9)
    np.testing.assert_allclose(enc.image_l0, (c != 0).sum(axis=2).mean(axis=1))
    fvu = ((x64 - xh) ** 2).sum() / ((x64.reshape(-1, 6) - x64.reshape(-1, 6).mean(0)) ** 2).sum()
    assert enc.reconstruction["fvu"] == pytest.approx(fvu, rel=1e-6)


def test_evaluate_preset_writes_the_vista_schema(
    planted: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    store, sae_dir, _ = planted
    ctx = Context(identity_sae(16), store, FAST, sae_path=str(sae_dir))
    cfgs = {"ablation": ANALYSES["ablation"].config(ks=[1, 2])}
    run_analyses(ctx, list(EVALUATE_PRESET), cfgs, tmp_path)
    doc = json.loads((tmp_path / "evaluation_results.json").read_text())
    assert set(doc) == {
        "sae_health",
        "reconstruction_quality",
        "feature_demographic_alignment",
        "ablation_study",
        "probe_comparison",
        "_metadata",
    }
    assert set(doc["ablation_study"]["a"]["ablations"]["1"]) >= {
        "acc_without_top_k",
        "acc_only_top_k",
        "necessity_drop",
        "sufficiency_retained",
    }
    assert set(doc["probe_comparison"]["b"]) >= {
        "raw_latent_accuracy",
        "sae_latent_accuracy",
        "delta",
        "per_class_report",
    }
    assert doc["reconstruction_quality"]["fvu"] == pytest.approx(0.0, abs=1e-9)  # the identity


def test_result_files_get_the_users_umask_and_hold_no_pickles(tmp_path: Path) -> None:
    import os
    import stat

    r = Result("x", arrays={"a": np.arange(3)}, files={"legacy.json": {"k": 1}})
    r.add("v", 0.5, "higher", (0.4, 0.6), 10)
    old = os.umask(0o027)
    try:
        d = r.write(tmp_path)
    finally:
        os.umask(old)
    for p in (d / "result.json", d / "arrays.npz", tmp_path / "legacy.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p
    with pytest.raises(ValueError, match="dtype object"):
        Result("y", arrays={"o": np.array([{}], dtype=object)}).write(tmp_path)
    back = Result.read(d)
    assert back.scalars["v"].low == 0.4 and back.scalars["v"].n == 10
