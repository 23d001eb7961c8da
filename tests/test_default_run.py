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
    # Every analysis ran on the digits and their measured thickness and slant, but compare
    # (which needs a second SAE); the headline results carry intervals.
    index = json.loads((tmp_path / "run/analyses/index.json").read_text())
    skipped = {"compare", "recovery", "generate", "tokens"}  # tokens: one vector per image
    assert set(index["skipped"]) == skipped and len(index["ran"]) == 20
    assert set(doc["probe_comparison"]) == {"digit", "thickness", "slant"}
    summary = run["summary"]
    assert summary["probes/digit/sae_accuracy"]["ci"][0] >= 0.94
    # the top-100 latents for the digit are necessary, 100 random ones are not
    assert summary["ablation/digit/k100/necessity_drop"]["value"] > 0.1
    assert summary["ablation/digit/k100/random_drop"]["value"] < 0.05
    # SDFs are aligned well above chance on held-out images
    sdf = summary["sdf/digit/mean_alignment_rate"]
    assert sdf["ci"][0] > 2 * summary["sdf/digit/mean_chance_rate"]["value"]
    assert summary["stability/mean_stability"]["value"] > summary["stability/null_mean"]["value"]
    # Interventions: removing the top SDFs of a label costs more than removing random features;
    # the SAE spliced into the CNN keeps nearly all of its loss.
    for label in ("digit", "thickness", "slant"):
        targeted = summary[f"intervene/{label}/k50/fresh/targeted"]
        assert targeted["ci"][1] < 0, label
    assert summary["splice/loss_recovered/zero_ablation"]["value"] > 0.95
    assert summary["splice/targeted_change/sdf"]["ci"][0] > 0
    assert "vista analyses" in r.stdout and "stability: mean_stability" in r.stdout
    # The report: every alive feature gets a page, and the whole report stays small.
    report = tmp_path / "run/report"
    assert (report / "index.html").is_file() and len(
        list((report / "features").glob("*.html"))
    ) > 400
    assert sum(p.stat().st_size for p in report.rglob("*") if p.is_file()) < 50 * 2**20
