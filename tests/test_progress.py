"""Progress without a terminal: plain lines on standard output (first, every 30 s, last), no
carriage returns, with the numbers a person wants (step, tokens, FVU, L0, dead, ETA)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.train.test_train import _cfgs, _sparse_store
from vista.progress import Progress
from vista.train.fit import train_saes


def test_loops_print_the_first_and_last_update_and_one_per_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Progress("extract training", 10, interval=1e9) as p:
        for _ in range(10):
            p.update(1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("extract training: 1/10 images") and "ETA" in lines[0]
    assert lines[-1].startswith("extract training: 10/10 images") and len(lines) == 2
    with Progress("encode validation", 4, interval=0.0) as p:
        for _ in range(4):
            p.update(1)
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_training_prints_lines_with_its_metrics_when_not_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _sparse_store(tmp_path / "s.h5", n=1000)
    s, tc, trc = _cfgs(128 * 12)
    train_saes(store, [s], tc, replace(trc, progress_bar=True), tmp_path / "run")
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("train: step")]
    assert "\r" not in out and len(lines) >= 2
    assert lines[0].startswith("train: step 1/12 (8%)") and "ETA" in lines[0]
    assert lines[-1].startswith("train: step 12/12 (100%)")
    assert (
        "tokens" in lines[-1] and "fvu" in lines[-1] and "l0" in lines[-1] and "dead" in lines[-1]
    )
