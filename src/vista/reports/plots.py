"""Figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def firing_frequency_histogram(
    counts: np.ndarray, n_tokens: int, path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Histogram of log10 latent firing frequency (fraction of tokens), dead latents annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
