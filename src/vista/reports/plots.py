"""Figures, drawn from result files only (never from a store or an SAE)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vista.analysis.result import read_results


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    _plt().close(fig)
    tmp.replace(out)
    return out


def firing_frequency_histogram(
    counts: np.ndarray, n_tokens: int, path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Histogram of log10 latent firing frequency (fraction of tokens), dead latents annotated."""
    plt = _plt()
    freqs = counts.astype(np.float64) / max(n_tokens, 1)
    alive = freqs[freqs > 0]
    dead = int((freqs == 0).sum())
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    low = min(-6.0, float(np.floor(np.log10(alive.min())))) if alive.size else -6.0
    edges = np.linspace(low, 0.0, 41)
    ax.hist(np.log10(alive) if alive.size else [], bins=edges, color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("log10 firing frequency (fraction of tokens)")
    ax.set_ylabel("latents")
    ax.set_title(title or "SAE latent firing frequency")
    ax.text(
        0.02,
        0.95,
        f"{len(freqs)} latents, {dead} dead ({dead / max(len(freqs), 1):.1%}), {n_tokens} tokens",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


def plots_from_results(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Every figure the results under ``out_dir/analyses`` allow, into ``out_dir/plots``."""
    out = Path(out_dir)
    results = read_results(out)
    made = []
    health = results.get("health")
    if health is not None and "firing_counts" in health.arrays:
        meta = health.metadata
        made.append(
            firing_frequency_histogram(
                health.arrays["firing_counts"],
                int(meta.get("total_tokens", 0)),
                out / "plots" / "latent_firing_frequency.png",
                title=f"{meta.get('architecture', '')} SAE, {meta.get('d_sae', '')} latents "
                f"({meta.get('split', '')})",
            )
        )
    return made
