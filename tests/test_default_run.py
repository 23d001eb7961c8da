"""The main job on its built-in default (full MNIST) reaches the foundation issue's targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import vista


@pytest.mark.slow
def test_default_run_reaches_the_targets(tmp_path: Path) -> None:
    r = vista("run", f"out_dir={tmp_path / 'run'}", "trainer.progress_bar=false")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "run/evaluation_results.json").read_text())
    probe = doc["probe_comparison"]["digit"]
    health, recon = doc["sae_health"], doc["reconstruction_quality"]
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["summary"]["encoder_test_accuracy"] >= 0.98
    assert probe["raw_latent_accuracy"] >= 0.97
    assert probe["sae_latent_accuracy"] >= 0.95
    assert health["l0_mean"] <= 32
    assert recon["fvu"] <= 0.15
    assert health["dead_feature_ratio"] <= 0.10
    assert health["num_samples"] == 10_000  # the whole MNIST test set
