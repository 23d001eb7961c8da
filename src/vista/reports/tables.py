"""Plain-text summary tables for the terminal."""

from __future__ import annotations

from typing import Any


def format_table(rows: list[tuple[str, str]], title: str = "") -> str:
    width = max((len(k) for k, _ in rows), default=0)
    vwidth = max((len(v) for _, v in rows), default=0)
    line = "-" * (width + vwidth + 3)
    out = [title, line] if title else [line]
    out += [f"{k.ljust(width)} | {v}" for k, v in rows]
    out.append(line)
    return "\n".join(out)


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
    return format_table(rows, "vista evaluation")
