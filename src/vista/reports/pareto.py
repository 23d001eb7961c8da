"""Pareto plots of a benchmark: L0 against each metric, a marker per architecture, a line per
architecture across its sparsities, the baselines drawn in, the front marked (seed 004's plots,
each at a metric key that exists: its D44 asked for SCR/TPP at threshold 1, which none has)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vista.reports.plots import _plt, _save

MARKERS = {
    "topk": "^",
    "batchtopk": "v",
    "matryoshka": "D",
    "mp": "p",
    "vanilla": "s",
    "gated": "d",
    "jumprelu": "X",
    "pca": "P",
    "kmeans": "*",
    "nmf": "h",
    "random": "x",
}
COLORS = {
    "TopK": "#2b6cb0",
    "L1": "#c05621",
    "L0": "#2f855a",
    "pursuit": "#6b46c1",
    "baseline": "#718096",
}


def front(points: list[tuple[float, float]], higher: bool) -> list[int]:
    """Indices of the points no other point beats on both (lower L0, better metric)."""

    def beats(q: tuple[float, float], p: tuple[float, float]) -> bool:
        return q != p and q[0] <= p[0] and (q[1] >= p[1] if higher else q[1] <= p[1])

    return [i for i, p in enumerate(points) if not any(beats(q, p) for q in points)]


def _seed_means(rows: list[dict[str, Any]], metric: str) -> list[tuple[float, float]]:
    """Per (width, sparsity): the mean L0 and metric over seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(
            (r["d_sae"], r.get("k"), r.get("l1_coeff"), r.get("l0_coeff"), r.get("target_l0")),
            [],
        ).append(r)
    return [
        (float(np.mean([r["l0"] for r in g])), float(np.mean([r[metric] for r in g])))
        for g in groups.values()
    ]


def headline_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """The benchmark's headline metrics present in ``rows``, in the merge's order: each row
    carries ``METRIC`` and ``METRIC_direction`` for every one it measured."""
    seen: dict[str, None] = {}
    for r in rows:
        seen.update((k.removesuffix("_direction"), None) for k in r if k.endswith("_direction"))
    return list(seen)


def pareto_figures(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    plt = _plt()
    made = []
    for metric in headline_metrics(rows):
        if metric == "l0":
            continue
        pts = [r for r in rows if metric in r and "l0" in r]
        if len(pts) < 2:
            continue
        higher = pts[0].get(f"{metric}_direction") == "higher"
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        for arch in sorted({r["architecture"] for r in pts}):
            mine = [r for r in pts if r["architecture"] == arch]
            color = COLORS.get(mine[0]["family"], "#333333")
            ax.scatter(
                [r["l0"] for r in mine],
                [r[metric] for r in mine],
                marker=MARKERS.get(arch, "o"),
                color=color,
                label=arch,
                alpha=0.9,
                s=28,
            )
            if not mine[0]["baseline"]:  # the line joins the seed means across sparsities
                line = sorted(_seed_means(mine, metric))
                ax.plot([p[0] for p in line], [p[1] for p in line], color=color, alpha=0.7)
        coords = [(r["l0"], r[metric]) for r in pts]
        best = sorted((coords[i] for i in front(coords, higher)), key=lambda c: c[0])
        ax.plot(
            [c[0] for c in best],
            [c[1] for c in best],
            color="black",
            linewidth=2.5,
            alpha=0.25,
            zorder=0,
            label="Pareto front",
        )
        ax.set_xscale("log")
        ax.set_xlabel("L0 (active latents per token)")
        ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
        ax.set_title(f"L0 against {metric}", fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        made.append(_save(fig, out / f"pareto_{metric}.png"))
    return made
