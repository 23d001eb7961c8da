"""Invalid settings are refused before any work, a resumed run must be the same run, and a run
that diverges exports nothing: each a sentence naming the setting."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_vista_store
from tests.train.test_train import _cfgs, _sparse_store
from vista import cli
from vista.errors import VistaError
from vista.saes import TopKConfig, make_sae
from vista.train.fit import train_saes


@pytest.mark.parametrize(
    ("sae", "train", "message"),
    [
        ({"k": 0}, {}, "sae.k=0 must be between 1 and sae.d_sae=64"),
        ({"k": 65}, {}, "sae.k=65 must be between 1 and sae.d_sae=64"),
        ({"d_sae": 0}, {}, "sae.d_sae=0 must be positive"),
        ({"k_aux": -1}, {}, "sae.k_aux=-1 must not be negative"),
        ({}, {"batch_size": -1}, "train.batch_size=-1 must be positive (0: from the budget)"),
        ({}, {"max_tokens": -5}, "train.max_tokens=-5 must be positive"),
        ({}, {"lr": -1e-3}, "train.lr=-0.001 must be zero or positive"),
        ({}, {"beta1": 1.0}, "train.beta1=1.0 must be in [0, 1)"),
    ],
)
def test_invalid_settings_are_refused_before_any_work(
    tmp_path: Path, sae: dict, train: dict, message: str
) -> None:
    store = write_vista_store(tmp_path / "s.h5", {"training": np.ones((64, 16), np.float32)})
    s, tc, trc = _cfgs(1024)
    with pytest.raises(VistaError, match=re.escape(message)):
        train_saes(store, [replace(s, **sae)], replace(tc, **train), trc, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_every_architecture_checks_its_config() -> None:
    with pytest.raises(VistaError, match="sae.d_sae=-3 must be positive"):
        make_sae({"architecture": "jumprelu", "d_model": 4, "d_sae": -3})
    with pytest.raises(VistaError, match="must be finite"):
        make_sae({"architecture": "vanilla", "d_model": 4, "d_sae": 8, "l1_coeff": float("nan")})


def test_resume_refuses_other_sae_settings_or_another_schedule(tmp_path: Path) -> None:
    store = _sparse_store(tmp_path / "s.h5", n=1000)
    s, tc, trc = _cfgs(128 * 12)
    train_saes(store, [s], tc, trc, tmp_path / "run")
    resume = replace(tc, resume=True)
    with pytest.raises(VistaError, match="written for SAE 0 with k=4, not 8"):
        train_saes(store, [replace(s, k=8)], resume, trc, tmp_path / "run")
    with pytest.raises(VistaError, match="written with train.max_tokens=1536, not 3072"):
        train_saes(store, [s], replace(resume, max_tokens=3072), trc, tmp_path / "run")
    with pytest.raises(VistaError, match="written for 1 SAE"):
        train_saes(store, [s, replace(s, seed=1)], resume, trc, tmp_path / "run")
    other = _sparse_store(tmp_path / "other.h5", n=1000, seed=5)
    with pytest.raises(VistaError, match="while training on other data"):
        train_saes(other, [s], resume, trc, tmp_path / "run")


def test_a_diverging_run_exports_nothing(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32) * 1e30
    store = write_vista_store(tmp_path / "s.h5", {"training": x}, dtype="float32")
    s, tc, trc = _cfgs(128 * 20, normalize_inputs=False)
    with pytest.raises(VistaError, match="non-finite|diverged"):
        train_saes(store, [TopKConfig(d_sae=32, k=4)], tc, trc, tmp_path / "run")
    assert not (tmp_path / "run/sae").exists()


def test_synthetic_refuses_to_overwrite_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISTA_VERB", "")
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    with pytest.raises(SystemExit) as e:
        cli.main(["synthetic", f"out={out}"])
    assert (
        e.value.code == 2
        and "already exists; delete it or pass overwrite=true" in capsys.readouterr().err
    )
    assert out.read_bytes() == b"precious"
