"""What a benchmark runs: the grid, the baselines, the analyses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BENCH_ANALYSES = (
    "health",
    "reconstruction",
    "recovery",
    "sparse_probing",
    "scr",
    "tpp",
    "absorption",
    "stability",
)
"""The benchmark's metrics (docs/benchmark.md); those the store cannot support are skipped."""


@dataclass
class GridConfig:
    """The SAEs of a benchmark: architectures x widths x sparsities x seeds."""

    architectures: list[str] = field(
        default_factory=lambda: [
            "topk",
            "batchtopk",
            "matryoshka",
            "mp",
            "vanilla",
            "gated",
            "jumprelu",
        ]
    )
    widths: list[int] = field(default_factory=lambda: [512])
    k: list[int] = field(default_factory=lambda: [8, 16, 32])
    """Sparsities of the TopK family and matching pursuit (codes per token)."""
    l1_coeff: list[float] = field(default_factory=lambda: [0.3, 0.1, 0.03])
    """Sparsities of vanilla (its L1 coefficient; gated uses 5x these)."""
    l0_coeff: list[float] = field(default_factory=lambda: [0.06, 0.02, 0.006])
    """Sparsities of jumprelu (its L0 coefficient)."""
    match_l0: bool = False
    """True: vanilla, gated and jumprelu train at ``sae.target_l0`` = each of ``k`` instead of the
    coefficient lists, so every architecture sits at the same L0s (docs/training.md)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    sae: dict[str, Any] = field(default_factory=lambda: {"dead_tokens": 5000, "k_aux": 64})
    """Settings given to every SAE of the grid that has them (e.g. AuxK's)."""
    extra: list[Any] = field(default_factory=list)
    """More SAEs, each a full config mapping (``{architecture: topk, d_sae: 1024, k: 4}``)."""
    baselines: list[str] = field(default_factory=lambda: ["pca", "kmeans", "nmf", "random"])
    """Dictionaries fitted to the store, one per width (k = the median of ``k``)."""
    fit_tokens: int = 20000
    """Tokens the baselines are fitted on."""
