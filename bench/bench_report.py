"""The report of a 16,384-latent SAE: build time and size, and the feature table in Chromium.

A store of MNIST pixels (784-d, one token per image; ``--images`` validation images), a randomly
initialised TopK SAE of ``--d-sae`` latents (k = 32, centred on the data as training starts, so
nearly every latent fires on some image), the analyses a report reads, then `vista report` with every alive feature (a page
each). In Debian's Chromium, headless, from file://: the time from load to the first rendered
page of the table, and each of sorting by a column, filtering by a label's class and searching a
feature number (the handler's own time, measured in the page with ``performance.now``), the
median of ``--repeats``.

Run: `.venv/bin/python bench/bench_report.py [--images 5000 --d-sae 16384 --repeats 5]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def build_run(run: Path, n_images: int, d_sae: int) -> Path:
    from vista.analysis.context import AnalysisSettings, Context
    from vista.analysis.registry import ANALYSES
    from vista.analysis.runner import run_analyses
    from vista.saes import make_sae
    from vista.saes.io import save_sae
    from vista.sources.datasets import DatasetConfig, make_dataset
    from vista.store import SplitSpec, StoreWriter

    ds = make_dataset(DatasetConfig(name="mnist"))
    idx = ds.split_indices(ds.store_splits["validation"])[:n_images]
    acts = ds.images[idx].reshape(len(idx), -1).astype(np.float32) / 255.0
    digit = ds.labels["digit"][idx]
    names = {"digit": ds.class_names["digit"], "parity": ["even", "odd"]}
    spec = {"validation": SplitSpec(len(idx), acts.shape[1], None, names)}
    attrs = {"encoder": "pixels", "layer": "input", "token_selection": "all", "dataset": "mnist",
             "dataset_config": json.dumps({"name": "mnist"})}  # fmt: skip
    run.mkdir(parents=True)
    with StoreWriter(run / "store.h5", spec, attrs, dtype="float32", resume=False) as w:
        w.append("validation", acts, {"digit": digit, "parity": digit % 2}, original_indices=idx)
        w.finish()
    sae = make_sae({"architecture": "topk", "d_model": acts.shape[1], "d_sae": d_sae, "k": 32,
                    "seed": 0})  # fmt: skip
    with torch.no_grad():  # centred on the data, as training starts: the latents share the images
        sae.b_dec.copy_(torch.from_numpy(acts.mean(axis=0)))
    save_sae(sae, run / "sae")
    ctx = Context(sae, run / "store.h5", AnalysisSettings(n_boot=100, n_perm=100),
                  sae_path=str(run / "sae"))  # fmt: skip
    names_ = ["health", "reconstruction", "alignment", "feature_auc", "sdf", "exemplars"]
    cfgs = {n: ANALYSES[n].config() for n in names_}
    cfgs["feature_auc"].control = False
    run_analyses(ctx, names_, cfgs, run)
    return run


def chromium(profile: Path) -> Any:
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1280,1600"):  # fmt: skip
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "")
    return webdriver.Chrome(options=opts, service=service)


TIMED = """
const t0 = performance.now();
%s
return [performance.now() - t0, document.querySelectorAll('#features tbody tr').length,
        document.getElementById('showing').textContent];
"""
ACTIONS = {
    "sort by best AUC": "document.querySelector(\"th[data-key='auc']\").click();",
    "filter: 'digit=7'": (
        "const f = document.getElementById('filter'); f.value = 'digit=7';"
        "f.dispatchEvent(new Event('input'));"
    ),
    "search feature 12345": (
        "const f = document.getElementById('filter'); f.value = '12345';"
        "f.dispatchEvent(new Event('input'));"
    ),
    "clear the search": (
        "const f = document.getElementById('filter'); f.value = '';"
        "f.dispatchEvent(new Event('input'));"
    ),
    "next page": "document.getElementById('next').click();",
}


def main() -> None:
    from vista.reports.html import ReportConfig, write_report

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vista-bench-report-"))
    try:
        t0 = time.perf_counter()
        run = build_run(tmp / "run", args.images, args.d_sae)
        analyses_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = write_report(run, ReportConfig())
        build_s = time.perf_counter() - t0
        pages = len(list((index.parent / "features").glob("*.html")))
        size = sum(p.stat().st_size for p in index.parent.rglob("*") if p.is_file())
        print(f"{args.d_sae} latents, {args.images} images: analyses {analyses_s:.0f} s, report "
              f"{build_s:.0f} s, {pages} feature pages, {size / 1e6:.0f} MB in all, index.html "
              f"{index.stat().st_size / 1e6:.1f} MB")  # fmt: skip
        b = chromium(tmp / "chrome")
        try:
            loads, times = [], {a: [] for a in ACTIONS}
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                b.get(index.resolve().as_uri())
                loads.append(time.perf_counter() - t0)
                for name, js in ACTIONS.items():
                    ms, rows, showing = b.execute_script(TIMED % js)
                    times[name].append(ms)
            print(f"| action | median ms ({args.repeats} repeats) | rows shown after |")
            print("|---|---:|---|")
            print(
                f"| load the page (whole navigation, Selenium) | {1000 * statistics.median(loads):.0f} | |"
            )
            for name, js in ACTIONS.items():
                ms, rows, showing = b.execute_script(TIMED % js)
                print(f"| {name} | {statistics.median(times[name]):.1f} | {rows}: {showing} |")
            errors = [e for e in b.get_log("browser") if e["level"] == "SEVERE"]
            print("console errors:", errors or "none")
        finally:
            b.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
