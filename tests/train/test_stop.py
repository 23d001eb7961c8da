"""SIGTERM (what job schedulers send) saves a resumable checkpoint, exports nothing and exits
non-zero; the resumed run ends exactly where an uninterrupted one ends."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.train.test_train import _cfgs, _sparse_store
from vista.errors import Stopped
from vista.saes.io import load_sae
from vista.train.fit import train_saes
from vista.train.module import SAETrainingModule


def test_sigterm_checkpoints_exits_non_zero_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _sparse_store(tmp_path / "s.h5", n=2000)
    s, tc, trc = _cfgs(128 * 30)
    (ref,) = train_saes(store, [s], tc, trc, tmp_path / "ref")

    def term_at_step_13(self, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == 13:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(SAETrainingModule, "on_train_batch_end", term_at_step_13, raising=False)
    with pytest.raises(Stopped, match="Stopped by SIGTERM after step 13 of 30") as e:
        train_saes(store, [s], tc, trc, tmp_path / "run")
    monkeypatch.undo()
    assert e.value.exit_code == 143
    assert not (tmp_path / "run/sae").exists()
    ck = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert ck["global_step"] == 13
    (path,) = train_saes(store, [s], replace(tc, resume=True), trc, tmp_path / "run")
    a, b = load_sae(ref), load_sae(path)
    for name, p in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[name], p, rtol=0, atol=1e-6, msg=name)
