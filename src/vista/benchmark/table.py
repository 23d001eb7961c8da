"""The merged benchmark table: one row per SAE, every metric with its interval and direction,
and which metrics separate the architectures beyond their seed noise."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from vista.analysis import (
    absorption,
    health,
    reconstruction,
    recovery,
    scr,
    sparse_probing,
    stability,
    tpp,
)
from vista.analysis.declared import STORE, Key
from vista.analysis.result import read_results
from vista.jsonio import write_json

FAMILIES = {
    "topk": "TopK",
    "batchtopk": "TopK",
    "matryoshka": "TopK",
    "mp": "pursuit",
    "vanilla": "L1",
    "gated": "L1",
    "jumprelu": "L0",
    "pca": "baseline",
    "kmeans": "baseline",
    "nmf": "baseline",
    "random": "baseline",
}
HEADLINE: dict[str, tuple[Key, dict[str, object]]] = {
    "fvu": (reconstruction.FVU, {}),
    "l0": (health.L0_MEAN, {}),
    "dead_fraction": (health.DEAD_FRACTION, {}),
    "sparse_probing_top_1": (sparse_probing.TOP_K, {"k": 1}),
    "sparse_probing_top_5": (sparse_probing.TOP_K, {"k": 5}),
    "scr_20": (scr.METRIC, {"n": 20}),
    "tpp_10": (tpp.TOTAL, {"n": 10}),
    "absorption_fraction": (absorption.FRACTION, {}),
    "stability": (stability.STABILITY_MEAN, {}),
    "recovered": (recovery.RECOVERED, {}),
}
"""Short names of the metrics plotted and tracked by DVC: a declared scalar with the parts fixed;
a part left open (TPP's label) averages the scalars it matches."""


def row_of(name: str, results: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """One SAE's row: its config and every scalar ``analysis/scalar`` with interval."""
    arch = cfg.get("architecture", "")
    row: dict[str, Any] = {
        "name": name,
        "architecture": arch,
        "family": FAMILIES.get(arch, arch),
        "d_sae": cfg.get("d_sae"),
        "k": cfg.get("k"),
        "l1_coeff": cfg.get("l1_coeff"),
        "l0_coeff": cfg.get("l0_coeff"),
        "target_l0": cfg.get("target_l0") or None,
        "seed": cfg.get("seed"),
        "baseline": FAMILIES.get(arch) == "baseline",
        "metrics": {},
    }
    for analysis, r in results.items():
        for key, s in r.scalars.items():
            row["metrics"][f"{analysis}/{key}"] = s.to_json()
    for short, (key, fixed) in HEADLINE.items():
        vals = list(key.matching(results, **fixed).values())
        if vals:
            row[short] = float(np.mean([s.value for s in vals]))
            row[f"{short}_direction"] = vals[0].direction
            if len(vals) == 1 and vals[0].low is not None:
                row[f"{short}_ci"] = [vals[0].low, vals[0].high]
    return row


def merge(out_dir: str | Path) -> list[dict[str, Any]]:
    """Read every SAE's results; write ``bench_results.csv``, ``.json`` and ``bench_metrics.json``."""
    import json

    out = Path(out_dir)
    rows = []
    for res in sorted((out / "results").iterdir()) if (out / "results").is_dir() else []:
        cfg_file = out / "saes" / res.name / "cfg.json"
        cfg = (
            json.loads(cfg_file.read_text()).get("vista", {}).get("config", {})
            if cfg_file.is_file()
            else {}
        )
        rows.append(row_of(res.name, read_results(res), cfg))
    variance = reseed_variance(rows)
    store = ""
    for d in sorted((out / "results").glob("*"))[:1]:
        store = str(STORE.of(read_results(d)) or "")
    write_json(
        out / "bench_results.json", {"store": store, "rows": rows, "reseed_variance": variance}
    )
    _write_csv(out / "bench_results.csv", rows)
    write_json(out / "bench_metrics.json", dvc_metrics(rows))
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = [k for k in rows[0] if k != "metrics"] if rows else []
    metric_keys = sorted({m for r in rows for m in r["metrics"]})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        keys
        + metric_keys
        + [f"{m}/ci_low" for m in metric_keys]
        + [f"{m}/ci_high" for m in metric_keys]
    )
    for r in rows:
        ms = r["metrics"]
        w.writerow(
            [_cell(r.get(k)) for k in keys]
            + [_cell(ms.get(m, {}).get("value")) for m in metric_keys]
            + [_cell((ms.get(m, {}).get("ci") or [None, None])[0]) for m in metric_keys]
            + [_cell((ms.get(m, {}).get("ci") or [None, None])[1]) for m in metric_keys]
        )
    tmp = path.with_suffix(".csv.tmp")  # written whole, then renamed
    tmp.write_text(buf.getvalue())
    tmp.replace(path)


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return "" if v is None else v


def dvc_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per architecture, the mean of each headline metric over its SAEs (``dvc metrics show``)."""
    out: dict[str, Any] = {}
    for arch in sorted({r["architecture"] for r in rows}):
        mine = [r for r in rows if r["architecture"] == arch]
        out[arch] = {
            k: float(np.mean([r[k] for r in mine if k in r]))
            for k in HEADLINE
            if any(k in r for r in mine)
        }
    return out


def reseed_variance(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """For each headline metric: the seed noise (pooled within-config std) against the spread of the
    architectures' means; ``separates`` is false when the spread is under twice the noise."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if not r["baseline"]:
            groups.setdefault(re.sub(r"_s\d+$", "", r["name"]), []).append(r)
    multi = {k: g for k, g in groups.items() if len(g) > 1}
    if not multi:
        return {
            "note": "one seed per configuration: train several (bench.grid.seeds) to measure seed noise"
        }
    out: dict[str, Any] = {}
    for metric in HEADLINE:
        within = [
            np.var([r[metric] for r in g], ddof=1)
            for g in multi.values()
            if all(metric in r for r in g)
        ]
        arch_means: dict[str, list[float]] = {}
        for g in multi.values():
            if all(metric in r for r in g):
                arch_means.setdefault(g[0]["architecture"], []).append(
                    float(np.mean([r[metric] for r in g]))
                )
        if not within or len(arch_means) < 2:
            continue
        noise = float(np.sqrt(np.mean(within)))
        spread = float(np.std([np.mean(v) for v in arch_means.values()]))
        out[metric] = {
            "seed_std": noise,
            "architecture_spread": spread,
            "separates": spread > 2 * noise,
        }
    return out
