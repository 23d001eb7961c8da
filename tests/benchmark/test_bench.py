"""`vista bench` end to end, its resume, its checks, and its DVC pipeline run by the real dvc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import vista

TINY = [
    "grid.architectures=[topk,vanilla]",
    "grid.widths=[96]",
    "grid.k=[4,8]",
    "grid.l1_coeff=[0.3,0.1]",
    "grid.seeds=[0,1]",
    "grid.baselines=[pca,kmeans,random]",
    "train.max_tokens=40000",
    "train.batch_size=256",
    "eval.n_boot=50",
    "eval.n_perm=50",
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("d") / "digits.h5"
    r = vista(
        "extract",
        "dataset=digits",
        "encoder=module",
        "encoder.target=torch.nn:Flatten",
        "encoder.channels=1",
        f"out={store}",
    )
    assert r.returncode == 0, r.stderr
    return store


def test_bench_trains_fits_analyses_merges_plots_and_resumes(digits: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    r = vista("bench", f"store={digits}", f"out_dir={out}", *TINY)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "bench_results.json").read_text())
    names = sorted(row["name"] for row in doc["rows"])
    assert len(names) == 8 + 3 and "topk_d96_k4_s1" in names and "pca_d96_k8" in names
    row = next(r for r in doc["rows"] if r["name"] == "topk_d96_k4_s0")
    assert row["l0"] <= 4.01 and 0 < row["fvu"] < 1 and row["fvu_direction"] == "lower"
    assert "stability/mean_stability" in row["metrics"]  # its seed-1 twin was there
    assert "separates" in doc["reseed_variance"]["fvu"]
    header = (out / "bench_results.csv").read_text().splitlines()[0].split(",")
    assert {"name", "architecture", "l0", "fvu", "reconstruction/fvu/ci_low"} <= set(header)
    assert (out / "plots/pareto_fvu.png").read_bytes()[:4] == b"\x89PNG"
    assert "pareto_fvu.png" in (out / "report/index.html").read_text()  # the sweep page
    # A second run finds everything done: nothing is trained or analysed again.
    r2 = vista("bench", f"store={digits}", f"out_dir={out}", *TINY)
    assert r2.returncode == 0 and "Training" not in r2.stderr and "Analysing" not in r2.stderr


def test_a_bad_grid_entry_fails_before_any_training(digits: Path, tmp_path: Path) -> None:
    r = vista(
        "bench",
        f"store={digits}",
        f"out_dir={tmp_path / 'b'}",
        *TINY,
        "grid.extra=[{architecture: topk, kk: 3}]",
    )
    assert r.returncode == 2 and "bench.grid.extra entry 0: unknown option(s) ['kk']" in r.stderr
    assert not (tmp_path / "b" / "train").exists()


@pytest.mark.slow
def test_dvc_repro_reruns_only_the_stages_a_param_reaches(tmp_path: Path) -> None:
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None:
        pytest.skip("dvc is not installed in this environment (pip install -e .[dev])")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
    }

    def sh(*cmd: str) -> subprocess.CompletedProcess:
        p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    sh("git", "init", "-q")
    sh(dvc, "init", "-q")
    r = vista(
        "bench",
        "init",
        str(tmp_path),
        "dataset.name=digits",
        "encoder.name=module",
        "encoder.target=torch.nn:Flatten",
        "encoder.channels=1",
        *TINY,
    )
    assert r.returncode == 0, r.stderr
    first = sh(dvc, "repro").stdout
    for stage in ("extract", "train", "analyze", "merge", "plot"):
        assert f"Running stage '{stage}'" in first
    assert (tmp_path / "bench/bench_results.csv").is_file() and (tmp_path / "bench/plots").is_dir()
    metrics = sh(dvc, "metrics", "show", "--json").stdout
    assert "topk" in metrics and "fvu" in metrics
    import yaml

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert params["tpp"]["ns"][0] == 2
    params["tpp"]["ns"][0] = 3  # a setting only the analyze stage reads
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = sh(dvc, "repro").stdout
    for stage in ("extract", "train"):
        assert f"Stage '{stage}' didn't change, skipping" in second
    for stage in ("analyze", "merge", "plot"):
        assert f"Running stage '{stage}'" in second


def test_match_l0_puts_the_penalised_architectures_at_the_k_of_the_topk_family() -> None:
    from vista.benchmark.config import GridConfig
    from vista.benchmark.grid import grid_configs
    from vista.saes.registry import sae_name

    grid = GridConfig(architectures=["topk", "vanilla", "jumprelu"], k=[4, 8], match_l0=True)
    names = [sae_name(c) for c in grid_configs(grid, d_model=16)]
    assert names == [
        "topk_d512_k4_s0",
        "topk_d512_k8_s0",
        "vanilla_d512_L0-4_s0",
        "vanilla_d512_L0-8_s0",
        "jumprelu_d512_L0-4_s0",
        "jumprelu_d512_L0-8_s0",
    ]
    plain = [sae_name(c) for c in grid_configs(GridConfig(architectures=["vanilla"]), 16)]
    assert plain == ["vanilla_d512_l1-0.3_s0", "vanilla_d512_l1-0.1_s0", "vanilla_d512_l1-0.03_s0"]
