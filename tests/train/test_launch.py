"""The process that started a job's other processes waits for them at its end (``wait_for_ranks``):
real child processes stand in for Lightning's launched ranks."""

from __future__ import annotations

import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest

from vista.errors import VistaError
from vista.train.launch import wait_for_ranks


def _strategy(*codes: str) -> SimpleNamespace:
    procs = [subprocess.Popen([sys.executable, "-c", code]) for code in codes]
    return SimpleNamespace(launcher=SimpleNamespace(procs=procs))


def test_the_job_waits_for_every_process_and_fails_with_a_failed_one() -> None:
    strategy = _strategy("import time; time.sleep(1)", "pass")
    wait_for_ranks(strategy)
    assert [p.returncode for p in strategy.launcher.procs] == [0, 0]  # both waited for
    failing = _strategy("pass", "raise SystemExit(3)")
    with pytest.raises(VistaError, match=r"process 2 \(pid \d+\) exited with code 3") as e:
        wait_for_ranks(failing)
    assert "\n" not in str(e.value)


def test_a_process_hung_after_the_job_is_stopped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy = _strategy("import time; time.sleep(600)")
    with caplog.at_level(logging.WARNING):
        wait_for_ranks(strategy, grace_s=0.5)
    assert strategy.launcher.procs[0].returncode is not None  # stopped, not left behind
    assert "had not exited 0.5 s after the end of the job; stopped it" in caplog.text


@pytest.mark.parametrize("strategy", [None, SimpleNamespace(), SimpleNamespace(launcher=None)])
def test_one_process_or_a_worker_has_nothing_to_wait_for(strategy: object) -> None:
    wait_for_ranks(strategy)
