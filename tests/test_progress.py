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


def test_a_batch_longer_than_the_interval_still_gets_a_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A ViT on CPU can take a minute per batch: a line comes every interval anyway, and none
    after the loop ends."""
    import time

    with Progress("extract training", 4, interval=0.05) as p:
        time.sleep(0.5)  # the first batch, slower than the interval
        p.update(2)
        time.sleep(0.5)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "extract training: 0/4 images (working; 0m00s since the start)"
    assert any(ln.startswith("extract training: 2/4 images (working;") for ln in out)
    assert all(
        "since the last batch" in ln
        for ln in out
        if ln.startswith("extract training: 2/4 images (w")
    )
    time.sleep(0.2)
    assert capsys.readouterr().out == ""  # the ticker stopped with the loop


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
