"""The CLI's one boundary: every failure is one sentence and an exit code (2: the user's input,
130: an interrupt, 3: a bug, whose trace goes to a log file the sentence names)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_vista_store
from tests.test_cli import vista
from tests.test_security import Payload
from vista import cli
from vista.errors import VistaError


@pytest.fixture
def raising(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run ``vista synthetic`` in process with its task replaced by one raising ``exc``."""
    monkeypatch.setenv("VISTA_VERB", "")

    def run(exc: BaseException, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        def boom(job: object) -> None:
            raise exc

        monkeypatch.setitem(cli.TASKS, "synthetic", boom)
        with pytest.raises(SystemExit) as e:
            cli.main(["synthetic", f"out={tmp_path / 's.h5'}"])
        return int(e.value.code), capsys.readouterr().err

    return run


@pytest.mark.parametrize(
    ("exc", "code", "sentence"),
    [
        (
            FileNotFoundError(errno.ENOENT, "No such file", "/data/x.h5"),
            2,
            "'/data/x.h5' does not exist",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "/data/y"), 2, "permission denied"),
        (OSError(errno.ENOSPC, "No space left on device", "/data/z"), 2, "the disk is full"),
        (KeyboardInterrupt(), 130, "interrupted; run the same command again to resume"),
    ],
)
def test_expected_failures_are_one_sentence(raising, capsys, exc, code, sentence) -> None:
    got, err = raising(exc, capsys)
    assert got == code and sentence in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unexpected_failure_says_it_is_a_bug_and_where_the_trace_is(
    raising, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    got, err = raising(KeyError("W_enc"), capsys)
    assert got == 3 and "internal error: KeyError" in err and "this is a bug in vista" in err
    log = Path(err.split("the trace is in ")[1].split(" (")[0])
    assert log.is_file() and "Traceback" in log.read_text() and "KeyError" in log.read_text()


def in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """``vista ARGS`` in this process (the same code path as the command, without its start-up)."""
    monkeypatch.setenv("VISTA_VERB", "")
    try:
        cli.main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_settings_that_do_not_parse_or_do_not_exist(capsys, monkeypatch, tmp_path: Path) -> None:
    o = f"out_dir={tmp_path / 'o'}"
    code, _, err = in_process(capsys, monkeypatch, "train", "store=/tmp/a[1.h5", o)
    assert code == 2 and "does not parse; quote a value" in err
    code, _, err = in_process(capsys, monkeypatch, "train", "store=/tmp/a", "b.h5", o)
    assert code == 2 and "'b.h5' is not a setting (key=value)" in err
    code, _, err = in_process(capsys, monkeypatch, "train", "store=/x.h5", o, "sae.k=abc")
    assert code == 2 and "'abc' of type 'str' could not be converted to Integer" in err
    code, _, err = in_process(capsys, monkeypatch, "train", "store=/x.h5", o, "train.nope=1")
    assert code == 2 and "There is no setting 'train.nope'" in err
    assert "Traceback" not in err


def test_a_resume_checkpoint_with_a_payload_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = write_vista_store(tmp_path / "s.h5", {"training": rng.normal(size=(256, 8))})
    (tmp_path / "run/checkpoints").mkdir(parents=True)
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": Payload(marker)}, tmp_path / "run/checkpoints/last.ckpt")
    r = vista(
        "train",
        f"store={store}",
        f"out_dir={tmp_path / 'run'}",
        "train.resume=true",
        "train.max_tokens=512",
        "sae.d_sae=16",
        "sae.k=2",
        "trainer.progress_bar=false",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "will not unpickle" in r.stderr or "does not unpickle" in r.stderr
    assert not marker.exists() and not os.path.exists(tmp_path / "run/sae")


def test_evaluate_on_a_store_without_labels_computes_the_rest_and_says_what_it_skipped(
    capsys, monkeypatch, tmp_path: Path
) -> None:
    from tests.analysis.planted import identity_sae
    from vista.saes.io import save_sae

    x = np.abs(np.random.default_rng(0).normal(size=(300, 8))).astype(np.float32)
    store = write_vista_store(tmp_path / "s.h5", {"training": x, "validation": x})
    save_sae(identity_sae(8), tmp_path / "sae")
    code, out, err = in_process(
        capsys,
        monkeypatch,
        "evaluate",
        f"sae={tmp_path / 'sae'}",
        f"store={store}",
        f"out_dir={tmp_path / 'ev'}",
        "eval.n_boot=20",
        "eval.n_perm=20",
    )
    assert code == 0, err
    assert "FVU" in out and "probes             | skipped: it needs 1 label(s)" in out
    doc = json.loads((tmp_path / "ev/evaluation_results.json").read_text())
    assert doc["reconstruction_quality"]["fvu"] == pytest.approx(0.0, abs=1e-6)
    assert "probe_comparison" not in doc


def _hold_lock(target: Path, verb: str):  # type: ignore[no-untyped-def]
    """Another process holding ``target``'s lock until the returned process is killed."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from vista.lock import output_lock\n"
        f"with output_lock({str(target)!r}, {verb!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_of_the_same_output_is_refused_naming_the_holder(
    capsys, monkeypatch, tmp_path: Path
) -> None:
    from vista.sources.datasets import DatasetConfig
    from vista.sources.encoders import EncoderConfig
    from vista.sources.extract import extract
    from vista.train.config import TrainConfig, TrainerConfig
    from vista.train.fit import train_saes

    store = write_vista_store(tmp_path / "s.h5", {"training": np.ones((64, 8), np.float32)})
    holder = _hold_lock(tmp_path / "run", "train")
    try:
        code, _, err = in_process(
            capsys,
            monkeypatch,
            "train",
            f"store={store}",
            f"out_dir={tmp_path / 'run'}",
            "train.max_tokens=64",
        )
        assert code == 2 and "is being written by another vista process" in err
        assert f"vista train, pid {holder.pid}" in err
        # A Python caller of the library is refused the same way.
        with pytest.raises(VistaError, match="is being written by another vista process"):
            train_saes(
                store,
                [{"architecture": "topk", "d_sae": 8, "k": 2}],
                TrainConfig(max_tokens=64),
                TrainerConfig(logger="none"),
                tmp_path / "run",
            )
    finally:
        holder.kill()
        holder.wait()
    holder = _hold_lock(tmp_path / "x.h5", "extract")
    try:  # the lock comes before anything is read
        with pytest.raises(VistaError, match="is being written by another vista process"):
            extract(DatasetConfig(name="mnist"), EncoderConfig(), tmp_path / "x.h5")
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    from vista.lock import output_lock

    with output_lock(tmp_path / "run", "train"), output_lock(tmp_path / "run", "train"):
        assert (tmp_path / "run/.vista.lock").exists()
    assert not (tmp_path / "run/.vista.lock").exists()  # released and removed on exit
