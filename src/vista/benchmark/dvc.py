"""``vista bench init DIR``: a DVC pipeline (``dvc.yaml`` + ``params.yaml``) of the benchmark.

Stages extract -> train -> analyze -> merge -> plot, each running ``vista bench stage=NAME
params=params.yaml`` with the parameters it reads declared, so ``dvc repro`` after a change reruns
only the stages that parameter reaches; ``bench/bench_metrics.json`` is a DVC metrics file
(``dvc metrics show`` / ``diff``), and ``dvc exp run -S grid.k=[4,8]`` sweeps.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from vista.benchmark.config import BenchBase

STORE = "activations.h5"
OUT = "bench"


def params_of(job: BenchBase) -> dict[str, Any]:
    """The job as the params file: every setting but the stage and the params file itself."""
    doc = {k: v for k, v in asdict(job).items() if k not in ("stage", "params", "defaults")}
    doc["store"], doc["out_dir"] = STORE, OUT
    return doc


def pipeline(analysis_params: list[str]) -> dict[str, Any]:
    cmd = "vista bench stage={} params=params.yaml"
    return {
        "stages": {
            "extract": {
                "cmd": cmd.format("extract"),
                "params": ["dataset", "encoder"],
                "outs": [STORE],
            },
            "train": {
                "cmd": cmd.format("train"),
                "deps": [STORE],
                "params": ["grid", "train", "trainer"],
                "outs": [f"{OUT}/saes", f"{OUT}/train"],
            },
            "analyze": {
                "cmd": cmd.format("analyze"),
                "deps": [STORE, f"{OUT}/saes"],
                "params": ["analysis", "eval", *analysis_params],
                "outs": [f"{OUT}/results"],
            },
            "merge": {
                "cmd": cmd.format("merge"),
                "deps": [f"{OUT}/results"],
                "outs": [f"{OUT}/bench_results.csv", f"{OUT}/bench_results.json"],
                "metrics": [{f"{OUT}/bench_metrics.json": {"cache": False}}],
            },
            "plot": {
                "cmd": cmd.format("plot"),
                "deps": [f"{OUT}/bench_results.json"],
                "outs": [f"{OUT}/plots"],
            },
        }
    }


def init(job: BenchBase, directory: str | Path) -> Path:
    """Write ``directory/dvc.yaml`` and ``directory/params.yaml`` (refusing to overwrite them)."""
    import yaml

    from vista.analysis.registry import ANALYSES
    from vista.errors import VistaError

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        if (d / name).exists():
            raise VistaError(f"{d / name} already exists; remove it or choose another directory.")
    analysis_params = [n for n in job.analysis if n in ANALYSES]
    (d / "params.yaml").write_text(yaml.safe_dump(params_of(job), sort_keys=False))
    (d / "dvc.yaml").write_text(yaml.safe_dump(pipeline(analysis_params), sort_keys=False))
    return d / "dvc.yaml"
