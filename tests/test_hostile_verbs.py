"""Every verb, tried as a hostile or careless user would (issue 24): no verb writes over its own
inputs, every count and range setting is refused up front with its valid range, files of the
wrong shape are one sentence, and nothing ends in exit 3 or in garbage with exit 0."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.analysis.planted import identity_sae, planted_store
from tests.conftest import write_vista_store
from tests.test_cli_errors import in_process
from tests.test_security import Payload
from vista.conf import bounds
from vista.conf.schema import VERB_CONFIGS
from vista.errors import VistaError
from vista.saes.io import save_sae


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A labelled 16-d store ``s.h5`` (600 images, labels a and b) and an SAE ``sae/``."""
    planted_store(tmp_path / "s.h5", n=600)
    save_sae(identity_sae(16), tmp_path / "sae")
    return tmp_path


def _one_sentence(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


# -- no verb writes over its own inputs ----------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["encode", "sae=sae", "store=s.h5", "out=s.h5", "overwrite=true"], "is the input store="),
        # the derived pooled output of out=s.h5 is s.mean.h5: the store itself
        (["encode", "sae=sae", "store=s.mean.h5", "out=s.h5"], "mean-pooled output"),
        (["encode", "sae=sae", "store=s.h5", "out=sae/x.h5"], "lies inside the input sae="),
        (["encode", "sae=sae", "store=s.h5", "out=sae"], "is a directory"),
        (
            ["extract", "dataset=table", "dataset.root=s.h5", "out=s.h5", "overwrite=true"],
            "is the input dataset.root=",
        ),
        (["train", "store=sae/cfg.json", "out_dir=."], "which vista train writes"),
        (["train", "store=s.h5", "out_dir=s.h5"], "is a file, not a directory"),
        (["probe", "store=s.h5", "out_dir=s.h5"], "is a file, not a directory"),
        (["report", "s.h5"], "is a file, not a directory"),
        (
            ["analyze", "sae=o/analyses/sae", "store=s.h5", "out_dir=o"],
            "which vista analyze writes",
        ),
    ],
)
def test_no_verb_writes_over_its_inputs(
    inputs: Path, capsys, monkeypatch, args: list[str], sentence: str
) -> None:
    monkeypatch.chdir(inputs)
    shutil.copy(inputs / "s.h5", inputs / "s.mean.h5")
    (inputs / "o/analyses").mkdir(parents=True)
    shutil.copytree(inputs / "sae", inputs / "o/analyses/sae")
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    code, _, err = in_process(capsys, monkeypatch, *args)
    assert sentence in _one_sentence(code, err)
    after = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    assert after == before  # refused before any work: nothing written, nothing changed


def test_a_run_directory_holding_the_store_and_sae_is_still_an_out_dir(
    inputs: Path, capsys, monkeypatch
) -> None:
    """`vista run`'s layout: the store and the SAE inside the out_dir a later verb writes to."""
    monkeypatch.chdir(inputs)
    code, _, err = in_process(
        capsys, monkeypatch, "analyze", "sae=sae", "store=s.h5", "out_dir=.", "analysis=health"
    )
    assert code == 0, err
    assert (inputs / "analyses/health/result.json").is_file()


# -- settings: ranges checked before any work -------------------------------------------------------
@pytest.mark.parametrize("verb", sorted(VERB_CONFIGS))
def test_every_verbs_defaults_are_within_the_rules(verb: str) -> None:
    assert bounds.problems(VERB_CONFIGS[verb]()) == []


@pytest.mark.parametrize(
    ("setting", "sentence"),
    [
        ("eval.n_boot=-5", "eval.n_boot=-5 must be between 0 and 100,000"),
        ("eval.n_boot=1000000000", "must be between 0 and 100,000"),
        ("eval.n_perm=-1", "eval.n_perm=-1 must be between 0"),
        ("eval.confidence=1.5", "eval.confidence=1.5 must be strictly between 0 and 1"),
        ("eval.test_size=1.5", "eval.test_size=1.5 must be strictly between 0 and 1"),
        ("eval.seed=-1", "eval.seed=-1 must be between 0 and 4294967295"),
        ("eval.batch_tokens=0", "eval.batch_tokens=0 must be at least 1"),
        ("eval.device=nope", "eval.device='nope' is not a device"),
        ("ablation.ks=[0]", "ablation.ks=[0]: 0 must be at least 1"),
        ("intervene.ks=[]", "intervene.ks=[] must list at least one value"),
        ("exemplars.quantiles=[2.0]", "exemplars.quantiles=[2.0]: 2.0 must be between 0 and 1"),
        ("ablation.random_repeats=100000000", "must be between 1 and 1,000"),
        ("feature_auc.selective_auc=nan", "must be a finite number"),
        # beyond what the SAE and the store hold (known once they are open)
        ("ablation.ks=[5000]", "ablation.ks=[5000] exceeds the SAE's 16 latents (valid: 1 to 16)"),
        ("exemplars.top_k=100000", "exceeds the 600 images of split 'validation'"),
    ],
)
def test_a_setting_outside_its_range_is_refused_with_the_range(
    inputs: Path, capsys, monkeypatch, setting: str, sentence: str
) -> None:
    monkeypatch.chdir(inputs)
    code, _, err = in_process(
        capsys, monkeypatch, "analyze", "sae=sae", "store=s.h5", "out_dir=o", setting
    )
    assert sentence in _one_sentence(code, err)
    assert not (inputs / "o/analyses").exists()


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["encode", "sae=sae", "store=s.h5", "out=c.h5", "batch_images=0"], "at least 1"),
        (["encode", "sae=sae", "store=s.h5", "out=c.h5", "dtype=int8"], "not one of float16"),
        (["train", "store=s.h5", "out_dir=t", "trainer.accelerator=nope"], "is not a device"),
        (["train", "store=s.h5", "out_dir=t", "trainer.strategy=nope"], "cannot run here"),
        (["train", "store=s.h5", "out_dir=t", "trainer.devices=abc"], "cannot run here"),
        (["synthetic", "out=x.h5", "synthetic.seed=-3"], "synthetic.seed=-3 must be between"),
        (["judge", "out_dir=j", "n_boot=-1"], "n_boot=-1 must be between 0"),
        (["train", "store=s.h5", "out_dir=t", "train.max_tokens=100"], "less than one batch (256"),
        (["encode", "sae=sae", "store=s.h5", "out="], "out is empty"),
        (["analyze", "sae=sae", "store=s.h5", "out_dir="], "out_dir is empty"),
        (["extract", "out=x.h5", "encoder=module", "encoder.channels=7"], "must be 1 (grey) or 3"),
        (
            ["extract", "out=x.h5", "encoder=module", "encoder.mean=[1,2]"],
            "must hold 1 or 3 values",
        ),
        (["report", "nothere"], "The run directory 'nothere' does not exist"),
    ],
)
def test_other_verbs_refuse_settings_that_cannot_work(
    inputs: Path, capsys, monkeypatch, args: list[str], sentence: str
) -> None:
    monkeypatch.chdir(inputs)
    code, _, err = in_process(capsys, monkeypatch, *args)
    assert sentence in _one_sentence(code, err)
    assert not (inputs / "c.h5").exists() and not (inputs / "t/sae").exists()
    assert not (inputs / "analyses").exists()


def test_a_cuda_device_on_a_machine_without_one_is_refused() -> None:
    from vista.analysis.context import AnalysisSettings

    got = bounds.problems(AnalysisSettings(device="cuda"))
    if torch.cuda.is_available():
        assert got == []
    else:
        assert got == [
            "device='cuda' asks for a GPU, but this machine has no CUDA device (use cpu)"
        ]


def test_an_empty_bench_grid_is_refused(inputs: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(inputs)
    code, _, err = in_process(
        capsys, monkeypatch, "bench", "store=s.h5", "out_dir=b", "grid.architectures=[]",
        "grid.baselines=[]",
    )  # fmt: skip
    assert "The benchmark grid is empty" in _one_sentence(code, err)
    assert not (inputs / "b/saes").exists()


def test_a_params_file_with_a_python_tag_is_refused_and_runs_nothing(
    inputs: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(inputs)
    marker = inputs / "PWNED"
    (inputs / "p.yaml").write_text(f'grid: !!python/object/apply:os.system ["touch {marker}"]\n')
    code, _, err = in_process(capsys, monkeypatch, "bench", "params=p.yaml")
    assert "is not a valid settings file" in _one_sentence(code, err)
    assert not marker.exists()
    (inputs / "q.yaml").write_text("- 1\n- 2\n")
    code, _, err = in_process(capsys, monkeypatch, "bench", "params=q.yaml")
    assert "not a mapping of settings" in _one_sentence(code, err)


# -- garbage never exits 0 ---------------------------------------------------------------------
def test_extreme_activations_never_export_non_finite_weights(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from safetensors.numpy import load_file

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2048, 16)) * 1e30).astype(np.float32)
    store = write_vista_store(tmp_path / "huge.h5", {"training": x}, dtype="float32")
    for arch, extra in (("topk", ["sae.k=4"]), ("vanilla", [])):
        out = tmp_path / arch
        code, _, err = in_process(
            capsys, monkeypatch, "train", f"store={store}", f"out_dir={out}", f"sae={arch}",
            "sae.d_sae=32", "train.max_tokens=4096", "trainer.progress_bar=false", *extra,
        )  # fmt: skip
        if code == 0:
            weights = load_file(str(out / "sae/sae_weights.safetensors"))
            assert all(np.isfinite(v).all() for v in weights.values()), arch
        else:
            _one_sentence(code, err)
            assert not (out / "sae").exists()


def test_the_export_guard_covers_buffers_and_the_exported_weights() -> None:
    from vista.saes import make_sae
    from vista.train.export import check_finite as _check_finite

    sae = make_sae({"architecture": "batchtopk", "d_model": 4, "d_sae": 8, "k": 2})
    _check_finite(["ok"], [sae], "SAE {name} has non-finite {what}")
    with torch.no_grad():
        sae.b_dec.fill_(float("nan"))
    with pytest.raises(VistaError, match="SAE s has non-finite b_dec; nothing was exported"):
        _check_finite(["s"], [sae], "SAE {name} has non-finite {what}")
    buffers = [n for n, b in sae.named_buffers() if b.is_floating_point()]
    if buffers:  # BatchTopK's inference threshold is a buffer
        sae = make_sae({"architecture": "batchtopk", "d_model": 4, "d_sae": 8, "k": 2})
        getattr(sae, buffers[0]).fill_(float("inf"))
        with pytest.raises(VistaError, match=buffers[0]):
            _check_finite(["s"], [sae], "SAE {name} has non-finite {what}")


# -- one out_dir, one SAE and store ---------------------------------------------------------------
def test_analyses_of_another_sae_never_mix_into_an_out_dir(
    inputs: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(inputs)
    base = ["store=s.h5", "out_dir=o", "analysis=health"]
    assert in_process(capsys, monkeypatch, "analyze", "sae=sae", *base)[0] == 0
    held = (inputs / "o/analyses/health/result.json").read_bytes()
    other = identity_sae(16)
    with torch.no_grad():
        other.W_enc.mul_(2.0)
    save_sae(other, inputs / "sae_b")
    code, _, err = in_process(capsys, monkeypatch, "analyze", "sae=sae_b", *base)
    assert "holds the analyses of another SAE" in _one_sentence(code, err)
    assert (inputs / "o/analyses/health/result.json").read_bytes() == held
    shutil.copy(inputs / "s.h5", inputs / "t.h5")
    x = np.abs(np.random.default_rng(5).normal(size=(600, 16))).astype(np.float32)
    write_vista_store(inputs / "u.h5", {"validation": x})
    code, _, err = in_process(
        capsys, monkeypatch, "analyze", "sae=sae", "store=u.h5", "out_dir=o", "analysis=health"
    )
    assert "holds the analyses of another store" in _one_sentence(code, err)
    # The same SAE and store under other paths (copies, a moved run) are the same run.
    shutil.copytree(inputs / "sae", inputs / "sae_copy")
    code, _, err = in_process(
        capsys, monkeypatch, "analyze", "sae=sae_copy", "store=t.h5", "out_dir=o",
        "analysis=health",
    )  # fmt: skip
    assert code == 0, err


# -- files of the wrong shape ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vista.analysis.context import AnalysisSettings
    from vista.analysis.runner import analyze

    d = tmp_path_factory.mktemp("analysed")
    planted_store(d / "s.h5", n=600)
    save_sae(identity_sae(16), d / "sae")
    settings = AnalysisSettings(n_boot=20, n_perm=20)
    analyze(d / "sae", d / "s.h5", d / "run", ["health", "feature_auc", "exemplars"], {}, settings)
    return d / "run"


def _payload_npz(path: Path, marker: Path) -> None:
    np.savez(path, a=np.array([Payload(marker)], dtype=object))


@pytest.mark.parametrize(
    ("edit", "sentence"),
    [
        (
            lambda r, m: (r / "analyses/health/result.json").write_text("[]"),
            "is not a vista result",
        ),
        (
            lambda r, m: (r / "analyses/health/result.json").write_text('{"schema": 1'),
            "holds no readable result.json",
        ),
        (
            lambda r, m: _edit_json(
                r / "analyses/health/result.json", scalars={"x": {"value": "a"}}
            ),
            "does not have the shape vista writes",
        ),
        (
            lambda r, m: _edit_json(r / "analyses/health/result.json", tables={"t": [1, 2]}),
            "does not have the shape vista writes",
        ),
        (
            lambda r, m: _edit_json(
                r / "analyses/feature_auc/result.json",
                tables=_blank_rows(r / "analyses/feature_auc/result.json"),
            ),
            "do not hold what the report reads",
        ),
        (
            lambda r, m: (r / "analyses/feature_auc/arrays.npz").write_bytes(os.urandom(600)),
            "is not an archive of numeric arrays",
        ),
        (
            lambda r, m: _payload_npz(r / "analyses/feature_auc/arrays.npz", m),
            "is not an archive of numeric arrays",
        ),
        (lambda r, m: (r / "analyses/index.json").write_text("garbage"), "is not readable as"),
        (lambda r, m: (r / "analyses/index.json").write_text("[1, 2]"), "holds a JSON list"),
    ],
)
def test_report_refuses_results_of_the_wrong_shape_in_one_sentence(
    analysed: Path, tmp_path: Path, capsys, monkeypatch, edit, sentence: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(analysed, run)
    marker = tmp_path / "PWNED"
    edit(run, marker)
    code, _, err = in_process(capsys, monkeypatch, "report", str(run))
    assert sentence in _one_sentence(code, err)
    assert not marker.exists()
    assert not (run / "report").exists() and not (run / ".report.tmp").exists()


def _edit_json(path: Path, **changes: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def _blank_rows(path: Path) -> dict[str, list[dict[str, int]]]:
    """Label b's table with rows that lack every column the label page reads."""
    tables = json.loads(path.read_text())["tables"]
    return {k: [{"zz": 1}] if k.startswith("b/") else v for k, v in tables.items()}


# -- stores without labels ----------------------------------------------------------------------
def _identity_sae_on(
    store: Path, verb: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """``vista VERB`` of a 16-d identity SAE on ``store``, into ``out/`` beside it."""
    save_sae(identity_sae(16), store.parent / "sae")
    return in_process(
        capsys, monkeypatch, verb, f"sae={store.parent / 'sae'}", f"store={store}",
        f"out_dir={store.parent / 'out'}", "eval.n_boot=10", "eval.n_perm=10",
    )  # fmt: skip


def test_a_store_without_a_labels_group_computes_what_needs_none(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "bare.h5", "w") as f:  # an original file with `encoded` only
        for split in ("training", "validation"):
            f.create_dataset(f"{split}/encoded", data=rng.random((300, 16)).astype("f2"))
    code, out, err = _identity_sae_on(tmp_path / "bare.h5", "evaluate", capsys, monkeypatch)
    assert code == 0, err
    assert "FVU" in out and "skipped" in out


def test_probe_on_a_store_whose_labels_are_all_missing(tmp_path: Path, capsys, monkeypatch) -> None:
    x = np.random.default_rng(0).random((200, 8)).astype(np.float32)
    missing = {"a": np.full(200, -1)}
    store = write_vista_store(
        tmp_path / "m.h5", {"training": x, "validation": x},
        {"training": missing, "validation": missing}, {"a": ["p", "q"]},
    )  # fmt: skip
    code, _, err = in_process(
        capsys, monkeypatch, "probe", f"store={store}", f"out_dir={tmp_path / 'o'}"
    )
    assert "has no label the probe can learn: label 'a' has 0 class(es)" in _one_sentence(code, err)


# -- paths as typed ------------------------------------------------------------------------------
def test_a_path_with_non_ascii_characters_is_taken_as_typed(
    inputs: Path, capsys, monkeypatch
) -> None:
    from vista.cli import expand_shorthand

    assert expand_shorthand("train", "store=données/ünï.h5") == "store='données/ünï.h5'"
    assert expand_shorthand("train", "store='données/ünï.h5'") == "store='données/ünï.h5'"
    assert expand_shorthand("train", "store=plain.h5") == "store=plain.h5"
    (inputs / "données").mkdir()
    shutil.copy(inputs / "s.h5", inputs / "données/ünï.h5")
    monkeypatch.chdir(inputs)
    code, _, err = in_process(
        capsys, monkeypatch, "analyze", "sae=sae", "store=données/ünï.h5", "out_dir=sortie/é",
        "analysis=health",
    )  # fmt: skip
    assert code == 0, err
    assert (inputs / "sortie/é/analyses/health/result.json").is_file()


# -- a resumed store is byte-identical, wherever the kill struck -----------------------------------
_WRITER = """
import sys, os, signal
import numpy as np, h5py
import vista.store.writer as w
from vista.store import StoreWriter, SplitSpec
w._TARGET_CHUNK_BYTES = 4 * 16 * 2
kill_at = int(sys.argv[2])
calls = [0]
real_flush = h5py.File.flush
def flush(self):
    real_flush(self)
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no Python clean-up runs
if kill_at:
    h5py.File.flush = flush
rng = np.random.default_rng(0)
x, y = rng.normal(size=(120, 16)).astype("f4"), rng.integers(0, 3, 120)
specs = {s: SplitSpec(n_rows=n, d_model=16, labels={"a": ["x", "y", "z"]})
         for s, n in (("training", 90), ("validation", 30))}
with StoreWriter(sys.argv[1], specs, {"encoder": "t"}) as sw:
    for s, a, b in (("training", 0, 90), ("validation", 90, 120)):
        for i in range(a + sw.rows_written(s), b, 3):
            j = min(b, i + 3)
            sw.append(s, x[i:j], {"a": y[i:j]}, np.arange(i, j))
    sw.finish()
"""


@pytest.mark.parametrize("kill_at", [7, 12, 31, 50])
def test_a_store_resumed_after_a_kill_is_byte_identical(tmp_path: Path, kill_at: int) -> None:
    """SIGKILL at a flush: between a chunk's rows and its counter (odd) or after the counter
    (even), in either split. The resumed file equals the uninterrupted one byte for byte."""
    import subprocess
    import sys

    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    whole, resumed = tmp_path / "whole.h5", tmp_path / "resumed.h5"
    subprocess.run([sys.executable, str(script), str(whole), "0"], check=True)
    died = subprocess.run([sys.executable, str(script), str(resumed), str(kill_at)])
    assert died.returncode == -9 and (tmp_path / "resumed.h5.partial").exists()
    subprocess.run([sys.executable, str(script), str(resumed), "0"], check=True)
    assert resumed.read_bytes() == whole.read_bytes()


def test_the_bytes_of_a_store_do_not_depend_on_the_batch_sizes(tmp_path: Path) -> None:
    import vista.store.writer as w
    from vista.store import SplitSpec, StoreWriter

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 16)).astype("f4"), rng.integers(0, 3, 50)

    def write(path: Path, step: int) -> bytes:
        specs = {"training": SplitSpec(n_rows=50, d_model=16, labels={"a": ["x", "y", "z"]})}
        with StoreWriter(path, specs, {"encoder": "t"}) as sw:
            for i in range(0, 50, step):
                sw.append(
                    "training",
                    x[i : i + step],
                    {"a": y[i : i + step]},
                    np.arange(i, min(50, i + step)),
                )
            sw.finish()
        return path.read_bytes()

    old = w._TARGET_CHUNK_BYTES
    w._TARGET_CHUNK_BYTES = 4 * 16 * 2
    try:
        assert (
            write(tmp_path / "a.h5", 1)
            == write(tmp_path / "b.h5", 3)
            == write(tmp_path / "c.h5", 8)
        )
    finally:
        w._TARGET_CHUNK_BYTES = old


def test_the_rules_name_the_setting_for_library_callers() -> None:
    """``bounds.problems`` on a config built in Python (not through the CLI) names the field."""
    from vista.analysis.context import AnalysisSettings

    assert bounds.problems(replace(AnalysisSettings(), n_boot=-1)) == [
        "n_boot=-1 must be between 0 and 100,000"
    ]


def test_a_documented_zero_is_accepted_and_a_negative_count_is_not() -> None:
    """``reseeds=0`` is documented as "no stability analysis": the rules take it, and refuse -1."""
    from vista.conf.schema import RunJob

    assert bounds.problems(replace(RunJob(), reseeds=0)) == []
    assert bounds.problems(replace(RunJob(), reseeds=-1)) == [
        "reseeds=-1 must be between 0 and 100"
    ]


# -- more of the same classes ------------------------------------------------------------------
def test_an_sae_with_non_finite_weights_is_refused_when_read(
    inputs: Path, capsys, monkeypatch
) -> None:
    sae = identity_sae(16)
    with torch.no_grad():
        sae.W_enc[0, 0] = float("nan")
    save_sae(sae, inputs / "bad")
    code, _, err = in_process(
        capsys, monkeypatch, "analyze", f"sae={inputs / 'bad'}", f"store={inputs / 's.h5'}",
        f"out_dir={inputs / 'o'}", "analysis=health",
    )  # fmt: skip
    assert "holds NaN or infinite values in W_enc" in _one_sentence(code, err)


def test_a_label_with_one_image_of_a_class_is_skipped_not_a_crash(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Two classes, one of them a single image: no stratified split can put it in both parts."""
    rng = np.random.default_rng(0)
    y = {"a": np.array([0, 1] + [0] * 8)}
    x = rng.random((10, 16)).astype(np.float32)
    store = write_vista_store(
        tmp_path / "t.h5", {"training": x, "validation": x}, {"training": y, "validation": y},
        {"a": ["p", "q"]},
    )  # fmt: skip
    code, out, err = _identity_sae_on(store, "analyze", capsys, monkeypatch)
    assert code == 0, err
    assert "has 1 class(es) with two or more images" in out + err


def test_running_out_of_memory_is_the_users_problem_in_one_sentence(raising_out_of_memory) -> None:
    code, err = raising_out_of_memory
    assert code == 2 and "ran out of memory" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def raising_out_of_memory(tmp_path: Path, capsys, monkeypatch) -> tuple[int, str]:
    from vista import cli

    def boom(job: object) -> None:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 102400000000 bytes."
        )

    monkeypatch.setenv("VISTA_VERB", "")
    monkeypatch.setitem(cli.TASKS, "synthetic", boom)
    with pytest.raises(SystemExit) as e:
        cli.main(["synthetic", f"out={tmp_path / 's.h5'}"])
    return int(e.value.code), capsys.readouterr().err


def test_a_message_quoting_a_multi_line_report_is_one_line(capsys, monkeypatch) -> None:
    from vista.boundary import failure

    assert failure("x", VistaError("shapes differ:\n\tW_enc (3, 3)\n\tW_dec (3, 3)")) == 2
    assert capsys.readouterr().err == "vista x: error: shapes differ: W_enc (3, 3) W_dec (3, 3)\n"


def test_output_piped_into_a_reader_that_stops_is_not_a_bug(labelled_store: Path, tmp_path) -> None:
    """`vista info store | head -1`: the reader closed the pipe, so the next write fails with
    EPIPE. The command ends quietly (141, as a shell tool), with no message and no trace file."""
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before vista writes a byte
    try:
        r = subprocess.run(
            [sys.executable, "-m", "vista", "info", str(labelled_store)],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            text=True,
        )
    finally:
        os.close(write)
    assert r.returncode == 141 and r.stderr == "", r.stderr
    assert not (tmp_path / "logs").exists()
