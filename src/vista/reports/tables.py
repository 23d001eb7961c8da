"""Plain-text summary tables for the terminal, made from result files and documents only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vista.analysis.declared import CONFIDENCE
from vista.analysis.result import Result, Scalar
from vista.interventions import intervene


def format_table(rows: list[tuple[str, str]], title: str = "") -> str:
    width = max((len(k) for k, _ in rows), default=0)
    vwidth = max((len(v) for _, v in rows), default=0)
    line = "-" * (width + vwidth + 3)
    out = [title, line] if title else [line]
    out += [f"{k.ljust(width)} | {v}" for k, v in rows]
    out.append(line)
    return "\n".join(out)


def format_scalar(s: Scalar, digits: int = 4) -> str:
    """``0.9825 [0.9790, 0.9855] n=2000``; ``n/a`` for a missing value."""
    if s.value is None or not math.isfinite(s.value):
        return "n/a"
    text = f"{s.value:.{digits}f}"
    if s.low is not None and s.high is not None and math.isfinite(s.low):
        text += f" [{s.low:.{digits}f}, {s.high:.{digits}f}]"
    if s.n is not None:
        text += f" n={s.n}"
    if s.no_interval:
        text += " (no interval)"
    arrow = {"higher": " (higher better)", "lower": " (lower better)"}.get(s.direction, "")
    return text + arrow


def analysis_summary(results: dict[str, Result], skipped: dict[str, str] | None = None) -> str:
    """Each analysis's headline scalars with their intervals, then what was skipped and why."""
    rows: list[tuple[str, str]] = []
    for name, r in results.items():
        for key in r.headline:
            if key in r.scalars:
                rows.append((f"{name}: {key}", format_scalar(r.scalars[key])))
    for name, why in (skipped or {}).items():
        rows.append((f"{name}", f"skipped: {why}"))
    ci = CONFIDENCE.of(results) or 0.95
    return format_table(rows, f"vista analyses (intervals: {ci:.0%} percentile bootstrap)")


_PARTS = (
    ("noise", "noise control"),
    ("reconstruction_error", "passthrough (reconstruction error)"),
    ("random_targeted", "random features, error kept"),
    ("targeted", "targeted, error kept"),
    ("interaction", "interaction"),
    ("total", "total (targeted, decoded)"),
)


def decomposition_summary(results: Mapping[str, Result], reader: str = "fresh") -> str:
    """``intervene``'s decomposition per target label at its largest k: the change in held-out
    probe accuracy on the label, with interval and p-value, and the mean change on the others
    ('' when there is none)."""
    blocks = []
    for parts, table in sorted(intervene.DECOMPOSITION.each(results), key=lambda e: e[0]["label"]):
        t = parts["label"]
        rows = [r for r in table if r["reader"] == reader]
        kmax = max((r["k"] for r in rows), default=0)
        by = {r["component"]: r for r in rows if r["k"] == kmax}
        lines = []
        for comp, name in _PARTS:
            if comp in by:
                r = by[comp]
                lo, hi = (v if v is not None else float("nan") for v in r["ci"])
                lines.append(
                    (
                        name,
                        f"{r['target_delta']:+.4f} [{lo:+.4f}, {hi:+.4f}] p={r['p_value']:.3g}"
                        f" | other labels {r['non_target_delta']:+.4f}",
                    )
                )
        blocks.append(
            format_table(
                lines,
                f"intervene: suppressing the top {kmax} features of {t!r} "
                f"(change in {reader} probe accuracy on {t!r}, n={rows[0]['n'] if rows else 0})",
            )
        )
    return "\n".join(blocks)


def run_summary(results: dict[str, Result], encoder_accuracy: float | None) -> dict[str, Any]:
    """The headline numbers as a flat mapping (``run.json``'s summary)."""
    out: dict[str, Any] = {"encoder_test_accuracy": encoder_accuracy}
    for name, r in results.items():
        for key in r.headline:
            if key in r.scalars:
                out[f"{name}/{key}"] = r.scalars[key].to_json()
    return out


def evaluation_summary(doc: dict[str, Any]) -> str:
    """The headline numbers of an ``evaluation_results.json`` document."""
    h, r = doc["sae_health"], doc["reconstruction_quality"]
    rows = [
        ("latents", f"{h['num_features']}"),
        ("dead latents", f"{h['dead_feature_count']} ({h['dead_feature_ratio']:.1%})"),
        ("mean L0 per token", f"{h['l0_mean']:.2f}"),
        ("FVU", f"{r['fvu']:.4f}"),
        ("explained variance", f"{r['explained_variance']:.4f}"),
        ("cosine similarity", f"{r['cosine_similarity']:.4f}"),
    ]
    for label, p in doc.get("probe_comparison", {}).items():
        if "raw_latent_accuracy" in p:
            rows.append((f"probe {label}: raw", f"{p['raw_latent_accuracy']:.4f}"))
            rows.append((f"probe {label}: SAE codes", f"{p['sae_latent_accuracy']:.4f}"))
    for label, a in doc.get("feature_demographic_alignment", {}).items():
        sel = a.get("selectivity_mean")
        rows.append((f"selectivity {label} (mean)", "n/a" if sel is None else f"{sel:.3f}"))
    for name, why in doc.get("skipped", {}).items():
        rows.append((name, f"skipped: {why}"))
    for label, a in doc.get("ablation_study", {}).items():
        for k, v in a.get("ablations", {}).items():
            rows.append(
                (
                    f"ablation {label} top-{k}",
                    f"without {v['acc_without_top_k']:.4f}, only {v['acc_only_top_k']:.4f}",
                )
            )
    return format_table(rows, "vista evaluation")
