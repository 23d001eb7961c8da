"""``vista report RUN_DIR``: one self-contained HTML report of a run's result files.

``RUN_DIR/report/index.html`` opens from disk with no server and no network: an overview (the
run's configuration, the headline numbers with their intervals, the analyses that ran and those
skipped with why, figures), a sortable, filterable table of features linking to one page per
feature (its top and quantile images, patch heatmaps for token stores, activation histogram, the
labels of its top images, its mean activation per class, its nearest features, its stability),
and a page per label (SDFs, best latents, necessity and sufficiency, reconstruction per class,
conjunction features). Everything is read from ``RUN_DIR/analyses``; only the thumbnails read the
dataset the store was extracted from. Templates escape every string (class names are data).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vista.analysis import exemplars, stability
from vista.analysis.declared import (
    ARCHITECTURE,
    CONFIDENCE,
    D_SAE,
    ENCODER,
    LAYER,
    N_IMAGES,
    SPLIT,
    STORE,
    Key,
)
from vista.analysis.result import read_results
from vista.errors import VistaError
from vista.reports.features import COLUMNS, FeatureData, feature_order, feature_rows
from vista.reports.images import Thumbnails, heatmap_overlay
from vista.reports.pages import feature_context, label_context

log = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    """What the report holds."""

    max_features: int = 0
    """Feature pages (and table rows) for at most this many alive features, ranked by their best
    AUC; 0 = every alive feature."""
    thumb_size: int = 64
    """Longest side of a thumbnail, in pixels."""
    top_images: int = 12
    """Top-activating images per feature page."""
    dataset_root: str = ""
    """Where the dataset's images are now, when they moved since extraction ('' = where the store
    says; a relative root the store recorded is also looked for beside the store)."""


def _env() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("vista.reports", "templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    return env


def num(value: Any, fmt: str = "%.3g") -> str:
    """``fmt % value``, or ``n/a`` for a missing or non-finite number (JSON has no NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return fmt % v if np.isfinite(v) else "n/a"


def write_report(run_dir: str | os.PathLike[str], cfg: ReportConfig | None = None) -> Path:
    """Write ``run_dir/report/`` and return the path of its ``index.html``.

    The results are files a person can edit: content that passes ``Result.read``'s checks but
    lacks what a section reads (a table without its columns, a number that is text) is one
    sentence naming the run and the fix; the trace still goes to ``run_dir/logs`` for a report.
    """
    try:
        return _write_report(run_dir, cfg)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        from vista.boundary import write_trace

        run = Path(run_dir)
        where = write_trace(e, run / "logs" / f"vista-report-content-{os.getpid()}.log")
        raise VistaError(
            f"The results under {str(run / 'analyses')!r} do not hold what the report reads "
            f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); they were edited or written "
            f"by another version of vista: run `vista analyze` into a new out_dir ({where})."
        ) from None
    finally:
        shutil.rmtree(Path(run_dir) / ".report.tmp", ignore_errors=True)


def _write_report(run_dir: str | os.PathLike[str], cfg: ReportConfig | None) -> Path:
    cfg = cfg or ReportConfig()
    run = Path(run_dir)
    if not run.is_dir():
        raise VistaError(
            f"The run directory {str(run)!r} does not exist; give the out_dir of `vista run` or "
            "`vista analyze`."
        )
    if (run / "bench_results.json").is_file() and not (run / "analyses").is_dir():
        return write_sweep_report(run)  # a `vista bench` directory
    results = read_results(run)
    if not results:
        raise VistaError(
            f"{str(run)!r} holds no analysis results (analyses/<name>/result.json); run "
            "`vista analyze` (or `vista run`) into it first."
        )
    t0 = time.perf_counter()
    out = run / "report"
    tmp = run / ".report.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "features").mkdir(parents=True)
    (tmp / "labels").mkdir()
    env, data = _env(), FeatureData(results)
    thumbs = Thumbnails(dataset_for_images(results, cfg), tmp, cfg.thumb_size)
    ids = feature_order(data, cfg.max_features)
    common = _common(run, data)
    plots = _plots(run, tmp, results)
    _write(
        env,
        "index.html.j2",
        tmp / "index.html",
        root="",
        **common,
        **_overview(run, results, plots),
        features=feature_rows(data, ids),
        columns=COLUMNS,
        images_note=thumbs.why,
        feature_note=f"{len(ids)} of {_n_alive(results)} alive features, ranked by best one-vs-rest AUC.",
        stability_measured=stability.STABILITY.of(results) is not None,
    )
    _write_pages(env, tmp, data, ids, thumbs, cfg, common, plots)
    shutil.copy(Path(__file__).parent / "templates" / "report.css", tmp / "report.css")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("Report of %d features written in %.1fs.", len(ids), time.perf_counter() - t0)
    return out / "index.html"


def dataset_for_images(results: dict[str, Any], cfg: ReportConfig) -> dict[str, Any]:
    """The dataset config the thumbnails load from: the store's record, its root replaced by
    ``report.dataset_root``, or (a relative root that does not resolve from here, as stores
    extracted before roots were recorded absolute hold) by the same path beside the store."""
    dataset = dict(exemplars.DATASET.of(results) or {})
    root = str(dataset.get("root") or "")
    if cfg.dataset_root:
        dataset["root"] = cfg.dataset_root
    elif root and not Path(root).is_absolute() and not Path(root).exists():
        store = STORE.of(results)
        beside = Path(str(store)).parent / root if store else None
        if beside is not None and beside.exists():
            dataset["root"] = str(beside)
    return dataset


def _write_pages(
    env: Any,
    tmp: Path,
    data: FeatureData,
    ids: Any,
    thumbs: Thumbnails,
    cfg: ReportConfig,
    common: dict[str, Any],
    plots: dict[str, list[Any]],
) -> None:
    """One page per listed feature and one per label."""
    pages = set(ids.tolist())
    for i in ids.tolist():
        ctx = feature_context(data, i, pages, thumbs, cfg, _maps(data, i, thumbs, tmp))
        _write(
            env,
            "feature.html.j2",
            tmp / "features" / f"{i}.html",
            root="../",
            **common,
            f=ctx,
            title=f"feature {i}",
        )
    for label in common["labels"]:
        ctx = label_context(data, label["name"], pages, plots)
        _write(
            env,
            "label.html.j2",
            tmp / "labels" / label["file"],
            root="../",
            **common,
            **ctx,
            title=f"label {label['name']}",
        )


def _write(env: Any, template: str, path: Path, **ctx: Any) -> None:
    path.write_text(env.get_template(template).render(**ctx), encoding="utf-8")


def _common(run: Path, data: FeatureData) -> dict[str, Any]:
    from vista import __version__

    return {
        "labels": [{"name": lab, "file": f"{i}.html"} for i, lab in enumerate(data.labels)],
        "version": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "run_dir": run.resolve().name,  # a report is shared: no path of the machine that made it
    }


def _shared(obj: Any, run: Path) -> Any:
    """``obj`` (a run's settings) with every absolute path shown as ``shown_path`` shows it."""
    if isinstance(obj, dict):
        return {k: _shared(v, run) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shared(v, run) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj):
        return shown_path(obj, run)
    return obj


def shown_path(value: Any, run: Path) -> str:
    """A path as a shared report shows it: relative to the run directory when inside it, else
    its name only (never an absolute path of the machine that made the report)."""
    text = str(value or "")
    if not text:
        return ""
    p = Path(text)
    try:
        return str(p.resolve().relative_to(run.resolve()))
    except (ValueError, OSError):
        return p.name


def _entries(index: dict[str, Any], key: str) -> dict[str, Any]:
    got = index.get(key, {})
    return got if isinstance(got, dict) else {}


def _overview(run: Path, results: dict[str, Any], plots: dict[str, list]) -> dict[str, Any]:
    from vista.analysis.runner import read_index
    from vista.jsonio import read_json_object

    index = read_index(run)
    config: Any = {}
    if (run / "run.json").is_file():
        fix = "delete it (the report then omits the run's settings) or run `vista run` again"
        config = read_json_object(run / "run.json", "a vista run record", fix).get("config", {})
    if not isinstance(config, dict):
        config = {}
    config = _shared(config, run)
    from vista.analysis.registry import run_order

    def meta(key: Key) -> Any:
        value = key.of(results)
        return "" if value is None else value

    headline = [
        {"analysis": n, "name": k, "scalar": results[n].scalars[k], "about": _about(n)}
        for n in run_order(list(results))
        for k in results[n].headline
        if k in results[n].scalars
    ]
    return {
        "title": f"vista report: {meta(ARCHITECTURE)} SAE, {meta(D_SAE)} latents",
        "subtitle": f"{meta(ENCODER)} {meta(LAYER)} · store {shown_path(meta(STORE), run)} "
        f"· split {meta(SPLIT)} · {meta(N_IMAGES)} images",
        "headline": headline,
        "confidence": f"{float(meta(CONFIDENCE) or 0.95):.0%}",
        "ran": [
            (n, v.get("seconds") if isinstance(v, dict) else None, _about(n))
            for n, v in _entries(index, "ran").items()
        ],
        "skipped": [(n, str(why)) for n, why in _entries(index, "skipped").items()],
        "plots": plots["overview"],
        "config": json.dumps(config or {k: r.config for k, r in results.items()}, indent=2),
    }


def _about(name: str) -> str:
    """What an analysis answers, in one line (its registered summary), so two that look alike
    (``probes``, ``probe``) say how they differ; '' for a name no longer registered."""
    from vista.analysis.registry import ANALYSES

    try:
        return str(ANALYSES.get_entry(name).summary)
    except VistaError:  # a result of an analysis this version no longer has
        return ""


def _n_alive(results: dict[str, Any]) -> int:
    n = exemplars.N_ALIVE.of(results)
    return int(n.value) if n is not None else 0


def _plots(run: Path, tmp: Path, results: dict[str, Any]) -> dict[str, list]:
    from vista.reports.plots import report_figures

    return report_figures(results, tmp / "plots")


def _maps(data: FeatureData, i: int, thumbs: Thumbnails, tmp: Path) -> list[dict[str, Any]]:
    """Heatmap overlays of feature ``i`` on its top images (token stores only)."""
    feats, maps = data.get(exemplars.MAP_FEATURES), data.get(exemplars.TOKEN_MAPS)
    if feats is None or maps is None or thumbs.dataset is None:
        return []
    where = np.flatnonzero(feats == i)
    if not len(where):
        return []
    rows, oi = data.get(exemplars.TOP_ROWS)[i], data.get(exemplars.ORIGINAL_INDICES)
    prefix = int(data.get(exemplars.PREFIX_TOKENS) or 0)
    out = []
    for j in range(maps.shape[1]):
        if rows[j] < 0:
            break
        img = thumbs.array(int(oi[rows[j]]))
        path = tmp / "maps" / f"{i}_{j}.png"
        path.parent.mkdir(exist_ok=True)
        if img is not None and heatmap_overlay(img, maps[where[0], j], prefix, path):
            out.append(
                {"src": f"../maps/{i}_{j}.png", "index": int(oi[rows[j]]), "size": img.shape[0]}
            )
    return out


def write_sweep_report(bench_dir: str | os.PathLike[str]) -> Path:
    """``bench_dir/report/index.html``: the merged table (sortable), the Pareto plots, the seed noise."""
    from vista.reports.pareto import headline_metrics, pareto_figures

    bench = Path(bench_dir)
    doc = json.loads((bench / "bench_results.json").read_text())
    rows = doc["rows"]
    out, tmp = bench / "report", bench / ".report.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    plots = [
        {"src": f"plots/{p.name}", "caption": p.stem.replace("pareto_", "L0 against ")}
        for p in pareto_figures(rows, tmp / "plots")
    ]
    columns = [
        {"key": "name", "title": "SAE", "type": "text"},
        {"key": "architecture", "title": "architecture", "type": "text"},
        {"key": "d_sae", "title": "latents", "type": "number"},
    ]
    for m in headline_metrics(rows):
        if any(m in r for r in rows):
            d = next((r.get(f"{m}_direction") for r in rows if m in r), "none")
            columns.append(
                {
                    "key": m,
                    "title": m + {"higher": " ↑", "lower": " ↓"}.get(d, ""),
                    "type": "number",
                }
            )
    _write(
        _env(),
        "sweep.html.j2",
        tmp / "index.html",
        root="",
        labels=[],
        rows=rows,
        columns=columns,
        plots=plots,
        variance=doc.get("reseed_variance", {}),
        store=str(doc.get("store") or bench),
        title=f"vista benchmark: {len(rows)} SAEs",
        **{k: v for k, v in _common(bench, FeatureData({})).items() if k != "labels"},
    )
    shutil.copy(Path(__file__).parent / "templates" / "report.css", tmp / "report.css")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out / "index.html"
