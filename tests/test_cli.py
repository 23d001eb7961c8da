"""The `vista` command end to end, as a user runs it (a subprocess per call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_original_vista_store


def vista(
    *args: str, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    e = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vista", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=e,
        timeout=900,
    )


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from vista.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().out


def test_every_verb_config_composes_and_has_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every verb of the registry of verb configs (in one process: Hydra is re-entered per verb)."""
    from vista.conf.schema import VERB_CONFIGS

    monkeypatch.setenv("VISTA_VERB", "")  # run_verb sets it for DDP workers; restored after

    for verb in VERB_CONFIGS:
        code, out = _in_process(capsys, verb, "--cfg", "job")
        assert code == 0 and ("out" in out or "run_dir" in out or "files" in out), verb
        code, out = _in_process(capsys, verb, "--help")
        assert code == 0 and f"vista {verb}" in out and "== Configuration" in out, verb


def test_top_level_help_lists_the_verbs() -> None:
    r = vista("--help")
    assert r.returncode == 0
    for verb in (
        "run",
        "train-encoder",
        "extract",
        "train",
        "analyze",
        "probe",
        "report",
        "evaluate",
        "synthetic",
        "intervene",
        "splice",
        "generate",
        "judge",
        "info",
    ):
        assert f"  {verb}" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "store=/nonexistent/x.h5", "out_dir=/tmp/vista-never"], "does not exist"),
        (["train", "out_dir=/tmp/vista-never"], "Missing required setting"),
        (
            ["evaluate", "sae=/nonexistent", "store=/x.h5", "out_dir=/tmp/vista-never"],
            "There is no SAE at",
        ),
        (["frobnicate"], "Unknown verb"),
        (["report", "/tmp/vista-never-a-run"], "does not exist; give the out_dir"),
    ],
)
def test_bad_input_is_one_clear_sentence_without_traceback(args: list[str], message: str) -> None:
    r = vista(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if "error:" in ln]) == 1


def test_original_vista_layout_trains_and_evaluates_without_conversion(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    d, t = 12, 6
    splits = {}
    for split, n in (("training", 160), ("validation", 80)):
        race = rng.integers(0, 7, size=n)
        gender = rng.integers(0, 2, size=n)
        base = rng.normal(size=(7, d))[race][:, None, :] + rng.normal(size=(n, t, d)) * 0.5
        splits[split] = (base.astype(np.float32), {"race": race, "gender": gender})
    store = write_original_vista_store(tmp_path / "ve_latent_fairface.hdf5", splits)
    r = vista(
        "train",
        f"store={store}",
        "sae=topk",
        "sae.d_sae=48",
        "sae.k=4",
        "train.max_tokens=30000",
        "train.lr_warmup_steps=10",
        "train.batch_size=128",
        "train.init_tokens=512",
        f"out_dir={tmp_path / 'run'}",
        "trainer.progress_bar=false",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run/sae/cfg.json").is_file() and (
        tmp_path / "run/sae/sae_weights.safetensors"
    ).is_file()
    r = vista(
        "evaluate", f"sae={tmp_path / 'run/sae'}", f"store={store}", f"out_dir={tmp_path / 'eval'}"
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "eval/evaluation_results.json").read_text())
    assert set(doc["probe_comparison"]) == {"race", "gender"}
    assert doc["sae_health"]["total_tokens"] == 80 * t and doc["sae_health"]["num_samples"] == 80
    assert set(doc["feature_demographic_alignment"]["gender"]["mean_per_class_top_features"]) == {
        "Male",
        "Female",
    }
    assert 0 <= doc["reconstruction_quality"]["fvu"] < 1


def test_vista_run_end_to_end_on_a_small_slice(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "run",
        f"out_dir={out}",
        f"cache_dir={tmp_path / 'cache'}",
        "dataset.limit=3000",
        "encoder_training.epochs=3",
        "train.max_tokens=60000",
        "train.batch_size=256",
        "train.init_tokens=2048",
        "sae.d_sae=128",
        "sae.k=8",
        "reseeds=1",
        "probe.epochs=2",
        "ablation.ks=[5,10]",
        "intervene.modes=[suppression,leace]",
        "intervene.ks=[10]",
        "splice.max_images=300",
        "trainer.progress_bar=false",
    ]
    r = vista(*args)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "evaluation_results.json").read_text())
    # The VISTA schema (docs/originals.md §4.2) plus fvu / explained variance.
    assert set(doc) >= {
        "sae_health",
        "reconstruction_quality",
        "feature_demographic_alignment",
        "probe_comparison",
    }
    h, rq = doc["sae_health"], doc["reconstruction_quality"]
    assert h["num_features"] == 128 and h["num_samples"] == 3000 and h["total_tokens"] == 3000
    assert set(h["activation_frequency_percentiles"]) == {"0", "25", "50", "75", "90", "99", "100"}
    assert rq["explained_variance"] == pytest.approx(1 - rq["fvu"])
    assert rq["fvu"] < 0.5 and h["l0_mean"] <= 8.5
    p = doc["probe_comparison"]["digit"]
    assert p["raw_latent_accuracy"] > 0.8 and p["sae_latent_accuracy"] > 0.6
    assert len(doc["feature_demographic_alignment"]["digit"]["top_variant_features"]) == 20
    assert (out / "plots/latent_firing_frequency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sae/cfg.json").is_file() and (out / "activations.h5").is_file()
    assert "vista analyses" in r.stdout and "reconstruction: fvu" in r.stdout
    assert f"report:  {out / 'report/index.html'}" in r.stdout
    assert len(list((out / "report/features").glob("*.html"))) > 10
    index = json.loads((out / "analyses/index.json").read_text())
    from vista.analysis.registry import ANALYSES

    assert set(index["ran"]) | set(index["skipped"]) == set(ANALYSES)
    assert set(index["skipped"]) == {"compare", "recovery", "generate", "tokens"}
    assert "splice: loss_recovered/zero_ablation" in r.stdout
    # The decomposition table is printed, and the seeds' intervention files are written.
    assert "passthrough (reconstruction error)" in r.stdout and "random features" in r.stdout
    assert "k=" in json.dumps(
        json.loads((out / "intervention_suppression_results.json").read_text())
    )
    assert (out / "reseeds/seed1/cfg.json").is_file() and (
        out / "intersectional_results.json"
    ).is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["encoder_test_accuracy"] > 0.8
    # A second run reuses the cached encoder (its key is the dataset and the encoder's training,
    # so the SAE and analysis settings may differ: kept small here).
    small = [a for a in args[2:] if not a.startswith("reseeds=")] + [
        "reseeds=0",
        "analysis=[health]",
    ]
    r2 = vista(*args[:1], f"out_dir={tmp_path / 'run2'}", *small)
    assert r2.returncode == 0, r2.stderr
    assert "Reusing the cached encoder" in r2.stderr


def test_info_describes_a_store(labelled_store: Path) -> None:
    r = vista("info", str(labelled_store))
    assert r.returncode == 0, r.stderr
    assert (
        "/validation/encoded (300, 16)" in r.stdout and "['circle', 'square', 'star']" in r.stdout
    )


def test_synthetic_store_sweep_training_and_pursuit_evaluation(tmp_path: Path) -> None:
    store = tmp_path / "syn.h5"
    r = vista(
        "synthetic",
        f"out={store}",
        "synthetic.n_train=20000",
        "synthetic.n_validation=2000",
        "synthetic.d_model=16",
        "synthetic.n_features=32",
    )
    assert r.returncode == 0, r.stderr
    r = vista(
        "train",
        f"store={store}",
        "sae=topk",
        "sae.d_sae=64",
        "sae.k=4",
        "sweep=[{k: 8}, {architecture: vanilla}, {architecture: matryoshka, group_sizes: [16, 48]}]",
        "train.max_tokens=20000",
        "train.batch_size=512",
        "trainer.logger=none",
        "trainer.progress_bar=false",
        f"out_dir={tmp_path / 'run'}",
    )
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "run" / "sae").iterdir())
    assert names == [
        "matryoshka_d64_k4_s0",
        "topk_d64_k4_s0",
        "topk_d64_k8_s0",
        "vanilla_d64_l1-0.1_s0",
    ]
    r = vista(
        "evaluate",
        f"sae={tmp_path / 'run' / 'sae' / 'topk_d64_k8_s0'}",
        f"store={store}",
        "eval.pursuit=ihtp",
        "eval.pursuit_k=3",
        f"out_dir={tmp_path / 'ev'}",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "ev" / "evaluation_results.json").read_text())
    assert doc["_metadata"]["architecture"] == "ihtp"
    health = doc["sae_health"]
    # one token per row: the instance support is the token's own 3 atoms
    assert health["l0_mean"] == pytest.approx(3.0) and health[
        "l0_per_instance_mean"
    ] == pytest.approx(3.0)
    assert doc["reconstruction_quality"]["fvu"] < 1.0


def test_hydra_multirun_trains_one_sae_per_job(tmp_path: Path) -> None:
    store = tmp_path / "syn.h5"
    assert (
        vista(
            "synthetic", f"out={store}", "synthetic.n_train=4000", "synthetic.d_model=16"
        ).returncode
        == 0
    )
    r = vista(
        "train",
        "-m",
        f"store={store}",
        "sae=topk,jumprelu",
        "sae.d_sae=32",
        "train.max_tokens=4096",
        "train.batch_size=512",
        "trainer.logger=none",
        "trainer.progress_bar=false",
        f"out_dir={tmp_path}/runs/${{sae.architecture}}",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs/topk/sae/cfg.json").is_file()
    assert (tmp_path / "runs/jumprelu/sae/cfg.json").is_file()


def test_analyze_runs_a_subset_all_and_refuses_what_cannot_run(tmp_path: Path) -> None:
    from tests.analysis.planted import identity_sae, planted_store
    from vista.saes.io import save_sae

    store = planted_store(tmp_path / "s.h5", n=600)
    save_sae(identity_sae(16), tmp_path / "sae")
    common = [f"sae={tmp_path / 'sae'}", f"store={store}", "eval.n_boot=50", "eval.n_perm=50"]
    r = vista("analyze", *common, "analysis=sdf,fidelity", f"out_dir={tmp_path / 'a'}")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (tmp_path / "a/analyses").iterdir()} == {
        "sdf",
        "fidelity",
        "index.json",
    }
    assert (tmp_path / "a/sdf_results.json").is_file() and "sdf: a/mean_alignment_rate" in r.stdout
    r = vista("analyze", *common, "analysis=compare", f"out_dir={tmp_path / 'b'}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        "Analysis 'compare' cannot run: it needs the SAE to compare with: compare.other_sae=DIR."
        in r.stderr
    )
    r = vista(
        "analyze", *common, "probe.epochs=1", "ablation.ks=[1,2]", f"out_dir={tmp_path / 'c'}"
    )
    assert r.returncode == 0, r.stderr
    index = json.loads((tmp_path / "c/analyses/index.json").read_text())
    assert set(index["skipped"]) == {
        "stability",
        "compare",
        "recovery",
        "scr",
        "absorption",
        "splice",  # the planted store records no encoder to splice into
        "generate",
        "tokens",  # one token per image
    }
    assert len(index["ran"]) == 16
    r = vista("analyze", *common, "sdf.nope=1", f"out_dir={tmp_path / 'd'}")
    assert r.returncode != 0 and "nope" in r.stderr


def test_probe_verb_trains_on_a_store_and_scores_its_validation_split(
    labelled_store: Path, tmp_path: Path
) -> None:
    r = vista(
        "probe",
        f"store={labelled_store}",
        f"out_dir={tmp_path / 'p'}",
        "probe.epochs=5",
        "probe.lr=0.01",
        "eval.n_boot=50",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "p/analyses/probe/result.json").read_text())
    acc = doc["scalars"]["shape/raw_accuracy"]
    assert acc["value"] > 0.9 and acc["n"] == 300 and len(acc["ci"]) == 2


def test_analyze_bad_input_is_one_sentence_with_exit_2(tmp_path: Path) -> None:
    from tests.analysis.planted import identity_sae
    from tests.conftest import write_vista_store
    from vista.saes.io import save_sae

    x = np.abs(np.random.default_rng(0).normal(size=(100, 8))).astype(np.float32)
    store = write_vista_store(tmp_path / "nolabels.h5", {"validation": x})
    save_sae(identity_sae(8), tmp_path / "sae8")
    save_sae(identity_sae(16), tmp_path / "sae16")
    cases = [
        (
            ["analysis=probes", f"sae={tmp_path / 'sae8'}"],
            "needs 1 label(s) with at least two classes",
        ),
        (["analysis=health", f"sae={tmp_path / 'sae16'}"], "reads 16-d activations but split"),
        (["analysis=nope", f"sae={tmp_path / 'sae8'}"], "Unknown analysis 'nope'"),
        (
            ["analysis=health", "eval.labels=[race]", f"sae={tmp_path / 'sae8'}"],
            "Label(s) ['race'] not found",
        ),
    ]
    for args, message in cases:
        r = vista("analyze", f"store={store}", f"out_dir={tmp_path / 'o'}", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_intervene_prints_the_decomposition_and_takes_bare_modes_and_targets(
    tmp_path: Path,
) -> None:
    from tests.analysis.planted import identity_sae, planted_store
    from vista.saes.io import save_sae

    store = planted_store(tmp_path / "s.h5", n=600)
    save_sae(identity_sae(16), tmp_path / "sae")
    common = [f"sae={tmp_path / 'sae'}", f"store={store}", "eval.n_boot=50", "eval.n_perm=50"]
    r = vista("intervene", *common, "modes=suppression,leace", "targets=a", f"out_dir={tmp_path}/o")
    assert r.returncode == 0, r.stderr
    assert "suppressing the top" in r.stdout and "targeted, error kept" in r.stdout
    assert (tmp_path / "o/intervention_leace_results.json").is_file()
    assert not (tmp_path / "o/intervention_steering_results.json").exists()
    r = vista("intervene", *common, "modes=erase_all", f"out_dir={tmp_path}/p")
    assert (
        r.returncode == 2 and "Traceback" not in r.stderr and "unknown intervene.modes" in r.stderr
    )
    r = vista("intervene", *common, "targets=age", f"out_dir={tmp_path}/q")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "'age'" in r.stderr
