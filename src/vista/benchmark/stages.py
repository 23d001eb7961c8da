"""The benchmark's stages; each resumes where an interrupted run stopped.

out_dir/
  saes/<name>/            every SAE of the grid (trained in one pass) and every baseline (fitted)
  train/                  the training pass's checkpoints and logs
  results/<name>/         each SAE's analyses (analyses/<analysis>/result.json ...)
  bench_results.csv|json  the merged table, one row per SAE
  bench_metrics.json      the DVC metrics (per architecture, the headline metrics)
  plots/                  Pareto fronts
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from vista.analysis import stability
from vista.benchmark.config import BenchBase
from vista.benchmark.grid import baseline_configs, grid_configs
from vista.saes.registry import sae_name

log = logging.getLogger(__name__)


def _d_model(store: Any) -> int:
    from vista.store import ActivationStore

    with ActivationStore(store) as st:
        return st.d_model


def planned(job: BenchBase) -> tuple[list[Any], list[Any]]:
    """``(grid configs, baseline configs)``, all checked before any work."""
    from vista.errors import VistaError

    d = _d_model(job.store)
    cfgs, bases = grid_configs(job.grid, d), baseline_configs(job.grid, d)
    if not cfgs and not bases:
        g = job.grid
        raise VistaError(
            f"The benchmark grid is empty (grid.architectures={list(g.architectures)}, "
            f"grid.widths={list(g.widths)}, grid.seeds={list(g.seeds)}, grid.extra="
            f"{list(g.extra)}, grid.baselines={list(g.baselines)}): it names no SAE and no "
            "baseline; give at least one architecture, width and seed, or a baseline."
        )
    return cfgs, bases


def train_stage(job: BenchBase) -> list[Path]:
    """Train the grid in one pass over the store (resumable), then fit the baselines."""
    from vista.train.fit import train_saes

    out = Path(job.out_dir)
    cfgs, bases = planned(job)
    dirs = [out / "saes" / sae_name(c) for c in cfgs]
    todo = [(c, d) for c, d in zip(cfgs, dirs, strict=True) if not (d / "cfg.json").is_file()]
    if todo:
        resume = (out / "train" / "checkpoints" / "last.ckpt").is_file()
        if resume:
            todo = list(zip(cfgs, dirs, strict=True))  # the checkpoint holds the whole sweep
        log.info("Training %d SAEs on one pass over %s.", len(todo), job.store)
        train_saes(
            job.store,
            [c for c, _ in todo],
            replace(job.train, resume=resume),
            job.trainer,
            out / "train",
            export_dirs=[d for _, d in todo],
        )
    return dirs + fit_baselines(job, bases)


def fit_baselines(job: BenchBase, bases: list[Any]) -> list[Path]:
    import torch

    from vista.saes import make_sae
    from vista.saes.io import save_sae
    from vista.store import StreamConfig, TokenStream

    out = Path(job.out_dir) / "saes"
    paths, sample = [], None
    for cfg in bases:
        target = out / sae_name(cfg)
        paths.append(target)
        if (target / "cfg.json").is_file():
            continue
        if sample is None:
            stream = TokenStream(
                job.store,
                StreamConfig(
                    split=job.train.split,
                    batch_size=job.grid.fit_tokens,
                    shuffle=True,
                    seed=0,
                    drop_last=False,
                ),
            )
            with contextlib.closing(stream.epoch(0)) as batches:
                sample = torch.from_numpy(next(batches)).float()
        sae: Any = make_sae(cfg)  # a baseline: fitted, not trained
        sae.fit_(sample)
        save_sae(sae, target, {"fitted_tokens": len(sample), "baseline": True})
        log.info("Fitted the %s baseline (%d latents).", cfg.architecture, cfg.d_sae)
    return paths


def analyze_stage(job: BenchBase) -> list[Path]:
    """Every benchmark analysis on every SAE; SAEs whose analyses are all written are skipped."""
    import json

    from vista.analysis.runner import analyze, configs_of

    out = Path(job.out_dir)
    cfgs, bases = planned(job)
    names = [sae_name(c) for c in cfgs + bases]
    done = []
    for cfg, name in zip(cfgs + bases, names, strict=True):
        res = out / "results" / name
        index = res / "analyses" / "index.json"
        if index.is_file():
            doc = json.loads(index.read_text())
            if set(job.analysis) <= set(doc.get("ran", {})) | set(doc.get("skipped", {})):
                done.append(res)
                continue
        configs = configs_of(job)
        seeds = [
            n for c, n in zip(cfgs, names, strict=False) if n != name and _same_but_seed(c, cfg)
        ]
        name_ = stability.OUT.analysis
        configs[name_] = replace(configs[name_], saes=[str(out / "saes" / s) for s in seeds])
        log.info("Analysing %s.", name)
        analyze(
            out / "saes" / name,
            job.store,
            res,
            list(job.analysis),
            configs,
            job.eval,
            explicit=False,
        )
        done.append(res)
    return done


def _same_but_seed(a: Any, b: Any) -> bool:
    return type(a) is type(b) and replace(a, seed=0) == replace(b, seed=0)


def extract_stage(job: BenchBase) -> Path:
    from vista.sources.extract import extract

    if Path(job.store).is_file() or (Path(job.store) / "manifest.json").is_file():
        log.info("The store %s exists; extraction skipped.", job.store)
        return Path(job.store)
    return extract(job.dataset, job.encoder, job.store)


def merge_stage(job: BenchBase) -> Path:
    from vista.benchmark.table import merge
    from vista.errors import VistaError

    rows = merge(job.out_dir)
    if not rows:
        raise VistaError(
            f"{str(Path(job.out_dir) / 'results')!r} holds no SAE's results to merge; run "
            "`vista bench stage=analyze` (or stage=all) first."
        )
    log.info("Merged %d SAEs into %s.", len(rows), Path(job.out_dir) / "bench_results.csv")
    return Path(job.out_dir) / "bench_results.csv"


def plot_stage(job: BenchBase) -> list[Path]:
    import json

    from vista.reports.html import write_sweep_report
    from vista.reports.pareto import pareto_figures

    rows = json.loads((Path(job.out_dir) / "bench_results.json").read_text())["rows"]
    figures = pareto_figures(rows, Path(job.out_dir) / "plots")
    log.info("Report written to %s.", write_sweep_report(job.out_dir))
    return figures


STAGES = ("extract", "train", "analyze", "merge", "plot")


def run_bench(job: BenchBase) -> None:
    """``stage=all``: everything after extraction (the store must exist); or one stage."""
    from vista.errors import VistaError

    run = {
        "extract": extract_stage,
        "train": train_stage,
        "analyze": analyze_stage,
        "merge": merge_stage,
        "plot": plot_stage,
    }
    if job.stage == "all":
        planned(job)  # every grid entry checked before any work
        for stage in STAGES[1:]:
            run[stage](job)
    elif job.stage in run:
        run[job.stage](job)
    else:
        raise VistaError(f"Unknown bench stage {job.stage!r}; choose all or one of {list(STAGES)}.")
