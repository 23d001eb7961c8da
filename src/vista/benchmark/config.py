"""What a benchmark runs: the grid, the baselines, the analyses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vista.analysis.context import AnalysisSettings
from vista.sources.datasets.base import DatasetConfig
from vista.sources.encoders.base import EncoderConfig
from vista.train.config import TrainConfig, TrainerConfig

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


@dataclass
class BenchBase:
    """The typed part of ``vista bench``; the per-analysis configs are added from the registry
    (``conf.schema.analysis_fields``)."""

    store: str = "activations.h5"
    """The activation store the grid is trained and evaluated on."""
    out_dir: str = "bench"
    """Where the SAEs, results, table and plots go (`vista bench init DIR`: the pipeline's folder)."""
    stage: str = "all"
    """all (train -> analyze -> merge -> plot; the store must exist) or one of extract, train,
    analyze, merge, plot (the stages of the DVC pipeline of `vista bench init`)."""
    params: str = ""
    """A YAML file of settings (the DVC pipeline's params.yaml) read over these."""
    grid: GridConfig = field(default_factory=GridConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """stage=extract: the images."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """stage=extract: the encoder."""
    # Half the default run's 2M tokens: the 21-SAE grid then trains in about 15 minutes on 2 cores.
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_tokens=1_000_000,
            batch_size=1024,
            lr=2e-3,
            lr_warmup_steps=50,
            init_tokens=16384,
            checkpoint_every_steps=500,
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(logger="csv", progress_bar=False)
    )
    analysis: list[str] = field(default_factory=lambda: list(BENCH_ANALYSES))
    """The benchmark's metrics (docs/benchmark.md)."""
    eval: AnalysisSettings = field(default_factory=AnalysisSettings)
