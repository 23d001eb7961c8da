"""The configs of the verbs (shown by ``vista VERB --help``).

Groups are built from the registries: ``sae=NAME`` offers every trainable architecture of
``vista.saes.SAES``, and every analysis of ``vista.analysis.registry.ANALYSES`` contributes its
config as a field named after it (``vista analyze sdf.k1=100``). Nothing here is a hand-kept list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from omegaconf import MISSING

from vista.analysis.context import AnalysisSettings
from vista.analysis.probe import ProbeJob
from vista.analysis.registry import ANALYSES, EVALUATE_PRESET
from vista.benchmark.config import BenchBase
from vista.interventions.generate import GenerateConfig
from vista.interventions.intervene import InterveneConfig
from vista.interventions.judge import JudgeConfig
from vista.interventions.splice import SpliceConfig
from vista.reports.html import ReportConfig
from vista.saes import SAES
from vista.sources.datasets.base import DatasetConfig
from vista.sources.encoders.base import EncoderConfig
from vista.sources.synthetic import SyntheticConfig
from vista.train.config import EncoderTrainingConfig, TrainConfig, TrainerConfig


def sae_group() -> dict[str, type]:
    """``sae=NAME`` choices: the trainable architectures and their configs."""
    return {name: cls.config_class for name, cls in SAES.items() if cls.trainable}


def analysis_fields(default: tuple[str, ...] | None = None) -> list[tuple[str, Any, Any]]:
    """One config field per registered analysis (``NAME.setting=value``), made from the registry
    so that a new analysis file is a new setting of every analysing verb; ``default`` replaces
    the base class's list of analyses to run."""
    out: list[tuple[str, Any, Any]] = []
    if default is not None:
        out.append(("analysis", list[str], field(default_factory=lambda: list(default))))
    for name, spec in ANALYSES.items():
        out.append((name, spec.config, field(default_factory=spec.config)))
    return out


@dataclass
class SAEInputs:
    """What a verb about one trained SAE reads and where it writes."""

    sae: str = MISSING
    """The SAE: a directory or file in any format vista reads (vista, SAELens, sparsify, ...)."""
    store: str = MISSING
    """The activation store it is measured on."""
    out_dir: str = MISSING
    """Where the results go (OUT/analyses/<name>/)."""


@dataclass
class AnalysesJob(SAEInputs):
    """The typed part of ``vista analyze`` and ``vista evaluate``; the per-analysis configs are
    added from the registry (``analysis_fields``) and read with ``runner.configs_of``."""

    analysis: list[str] = field(default_factory=lambda: ["all"])
    """The analyses to run (``all``, or names)."""
    eval: AnalysisSettings = field(default_factory=AnalysisSettings)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """trainer.devices / trainer.num_nodes: the shared encode pass split across processes through
    Lightning, each on its own device; the first then runs the analyses."""


@dataclass
class TrainJob:
    """vista train: train SAE(s) on an activation store; export cfg.json + sae_weights.safetensors."""

    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sae": "topk"}])
    store: str = MISSING
    """Activation store (HDF5) to train on."""
    out_dir: str = MISSING
    """Run directory: sae/, checkpoints/, logs/."""
    sae: Any = MISSING
    sweep: list[Any] = field(default_factory=list)
    """More SAEs trained on the same pass over the store, each given as overrides of ``sae``,
    e.g. ``'sweep=[{k: 64}, {architecture: jumprelu}, {d_sae: 16384}]'``."""
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


AnalyzeJob = make_dataclass("AnalyzeJob", analysis_fields(), bases=(AnalysesJob,))
AnalyzeJob.__doc__ = (
    "vista analyze: run analyses of an SAE on a store split (analysis=[a,b] or all); each writes "
    "OUT/analyses/<name>/result.json + arrays.npz, and the seeds' files in their original schemas."
)
EvaluateJob = make_dataclass("EvaluateJob", analysis_fields(EVALUATE_PRESET), bases=(AnalysesJob,))
EvaluateJob.__doc__ = (
    "vista evaluate: the analyses " + ", ".join(EVALUATE_PRESET) + " of an SAE on a store split; "
    "writes evaluation_results.json (VISTA schema) and OUT/analyses/."
)


@dataclass
class OneAnalysisJob(SAEInputs):
    """The typed part of a verb that runs one registered analysis (intervene, splice, generate);
    each adds the analysis's own config under its name."""

    eval: AnalysisSettings = field(default_factory=AnalysisSettings)


@dataclass
class InterveneJob(OneAnalysisJob):
    """vista intervene: suppress, scale, steer and erase each label's features in the stored
    embeddings (modes=[...], targets=[...]), with the passthrough, noise and random-feature
    controls; writes OUT/analyses/intervene/ and intervention_<mode>_results.json."""

    intervene: InterveneConfig = field(default_factory=InterveneConfig)


@dataclass
class SpliceJob(OneAnalysisJob):
    """vista splice: the SAE inside the encoder the store came from (rebuilt from the store), at
    its layer and tokens: accuracy, loss recovered, KL, and suppression per class, with
    controls; writes OUT/analyses/splice/."""

    splice: SpliceConfig = field(default_factory=SpliceConfig)


@dataclass
class GenerateJob(OneAnalysisJob):
    """vista generate: a vision-language model's captions (task=caption) or answers (task=vqa),
    clean and with the SAE spliced into its vision tower and the target label's features
    edited (modes=[...]); keyword DCR, VQA accuracy and the causal effect with intervals;
    writes OUT/analyses/generate/, causal_<task>_<target>_<mode>.json and their eval_ files."""

    generate: GenerateConfig = field(default_factory=GenerateConfig)


@dataclass
class JudgeJob(JudgeConfig):
    """vista judge: a local causal LM judges caption files (model_path=DIR files=[a.json,b.json]
    mode=binary|pairwise): LLM-DCR per attribute next to keyword DCR, or which caption of each
    pair describes the attribute more explicitly; writes OUT/analyses/judge/."""

    out_dir: str = MISSING


@dataclass
class ReportJob:
    """vista report RUN_DIR: RUN_DIR/report/index.html, from the run's result files (opens from
    disk, no server)."""

    run_dir: str = MISSING
    """A directory holding analyses/ (written by vista run or vista analyze)."""
    report: ReportConfig = field(default_factory=ReportConfig)


@dataclass
class ExtractJob:
    """vista extract: run an encoder over a labelled dataset into an activation store."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    out: str = MISSING
    """Output store file (.h5)."""
    dtype: str = "float16"
    """Storage dtype of the activations."""
    compression: str = "zstd"
    """zstd (as the original VISTA files), gzip or none."""
    resume: bool = True
    """Continue an interrupted extraction of the same file."""
    overwrite: bool = False
    shard_gb: float = -1.0
    """-1 (automatic): one file up to 16 GiB of activations on one process, else shards of 2 GiB.
    0: one file. Above 0: ``out`` is a sharded store (a directory of shards of about this many
    GiB of activations, docs/storage.md); an interrupted run keeps its finished shards."""
    workers: int = -1
    """Processes that load and preprocess images ahead of the forward pass (DataLoader workers,
    pinned memory on a GPU). 0: loaded in the extracting process. -1 (automatic): 0
    on the CPU (the forward pass uses every core), else the machine's cores shared among its
    processes, at most 8 each. The stored activations do not depend on it."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """trainer.devices / trainer.num_nodes: extraction on several processes through Lightning,
    each writing its own shards (shard_gb automatic or above 0)."""


@dataclass
class ShardJob:
    """vista shard: a store as a directory of shards (manifest.json + one complete store file per
    row range), the same rows, labels and records exactly; every verb reads it as store=DIR."""

    store: str = MISSING
    """The store file to shard."""
    out: str = MISSING
    """The directory to write (refused if it exists)."""
    shard_gb: float = 2.0
    """Activation bytes per shard, in GiB (docs/storage.md: what to choose)."""
    compression: str = "zstd"
    """zstd, lz4, gzip or none."""


@dataclass
class UnshardJob:
    """vista unshard: a sharded store as one store file, exactly (the inverse of vista shard)."""

    store: str = MISSING
    """The sharded store's directory."""
    out: str = MISSING
    """The store file to write (refused if it exists)."""
    compression: str = "zstd"
    """zstd, lz4, gzip or none."""


@dataclass
class EncodeJob:
    """vista encode: an SAE's codes for every token of a store (OUT) and per image (OUT.mean.h5, OUT.max.h5)."""

    sae: str = MISSING
    """SAE directory or file (any format `vista evaluate` reads)."""
    store: str = MISSING
    """Activation store to encode."""
    out: str = MISSING
    """Token-level codes store (.h5); the pooled stores are written beside it."""
    batch_images: int = 256
    """Images encoded per step."""
    device: str = "cpu"
    dtype: str = "float16"
    """Storage dtype of the codes."""
    compression: str = "zstd"
    resume: bool = True
    overwrite: bool = False


@dataclass
class TrainEncoderJob:
    """vista train-encoder: train one of vista's own encoders (mnist_cnn, alexnet_transformer) on a dataset."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    encoder: EncoderTrainingConfig = field(default_factory=EncoderTrainingConfig)
    out_dir: str = MISSING
    """Where encoder.safetensors + encoder.json go."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass
class RunBase:
    defaults: list[Any] = field(default_factory=lambda: [{"sae": "batchtopk"}, "_self_"])
    out_dir: str = "runs/default"
    """The run directory."""
    cache_dir: str = ""
    """Where trained encoders are cached ('' = $VISTA_CACHE or ~/.cache/vista)."""
    # MNIST digits with two measured, intersecting attributes (Morpho-MNIST stroke thickness and
    # slant, three quantile bins each): every analysis, the intersectional ones included, has
    # real labels to work on offline.
    dataset: DatasetConfig = field(
        default_factory=lambda: DatasetConfig(
            name="morpho_mnist", labels=["digit", "thickness", "slant"]
        )
    )
    encoder_training: EncoderTrainingConfig = field(default_factory=EncoderTrainingConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # Merged over the selected architecture's defaults; sized for the 128-d MNIST layer (60k
    # images): a 4x dictionary, and a dead window of 5 batches so AuxK keeps rare latents useful.
    sae: Any = field(
        default_factory=lambda: {"d_sae": 512, "k": 16, "dead_tokens": 5000, "k_aux": 64}
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_tokens=2_000_000,
            batch_size=1024,
            lr=2e-3,
            lr_warmup_steps=50,
            init_tokens=16384,
            checkpoint_every_steps=1000,
        )
    )
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    reseeds: int = 2
    """More SAEs of the same config with the next seeds, trained in the same pass and exported
    to reseeds/; the stability analysis matches the SAE against them (0 = no stability)."""
    analysis: list[str] = field(default_factory=lambda: ["all"])
    """The analyses to run (``all``, or names)."""
    eval: AnalysisSettings = field(default_factory=AnalysisSettings)


RunJob = make_dataclass("RunJob", analysis_fields(), bases=(RunBase,))
RunJob.__doc__ = "vista run: train-encoder (or reuse a cached one) -> extract -> train SAE -> analyze (all) -> report."


BenchJob = make_dataclass("BenchJob", analysis_fields(), bases=(BenchBase,))
BenchJob.__doc__ = (
    "vista bench: a grid of SAEs (architectures x widths x sparsities x seeds) trained on one pass "
    "over the store, baseline dictionaries, the benchmark metrics on each, one merged table "
    "(bench_results.csv/json) and Pareto plots. `vista bench init DIR` writes a DVC pipeline."
)


@dataclass
class SyntheticJob:
    """vista synthetic: write a store with a known dictionary (the ground truth for SAE recovery)."""

    out: str = MISSING
    """Output store file (.h5); the true directions are kept at /extras/true_directions."""
    overwrite: bool = False
    """Replace an existing file at ``out`` (as extract and encode, refused by default)."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


VERB_CONFIGS: dict[str, type] = {
    "synthetic": SyntheticJob,
    "train": TrainJob,
    "analyze": AnalyzeJob,
    "probe": ProbeJob,
    "report": ReportJob,
    "bench": BenchJob,
    "evaluate": EvaluateJob,
    "intervene": InterveneJob,
    "splice": SpliceJob,
    "generate": GenerateJob,
    "judge": JudgeJob,
    "extract": ExtractJob,
    "encode": EncodeJob,
    "shard": ShardJob,
    "unshard": UnshardJob,
    "train-encoder": TrainEncoderJob,
    "run": RunJob,
}
_USES_SAE_GROUP = {"train", "run"}
_registered: list[tuple[str, str]] = []


def register_verb(verb: str, help_header: str = "") -> str:
    """Register the verb's configs (and only those) in Hydra's ConfigStore; return its name."""
    from hydra.conf import HelpConf
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, name in _registered:  # forget the previous verb's tree (tests run several verbs)
        node = cs.repo
        for part in group.split("/") if group else []:
            node = node.get(part, {})
        node.pop(f"{name}.yaml", None)
    _registered.clear()

    config_name = f"vista_{verb.replace('-', '_')}"
    cs.store(name=config_name, node=VERB_CONFIGS[verb])
    _registered.append(("", config_name))
    if verb in _USES_SAE_GROUP:
        for name, cls in sae_group().items():
            cs.store(group="sae", name=name, node=cls)
            _registered.append(("sae", name))
    elif "sae" in cs.repo:
        del cs.repo["sae"]
    cs.store(
        group="hydra/help",
        name="vista",
        node=HelpConf(
            app_name=f"vista {verb}",
            header=help_header or (VERB_CONFIGS[verb].__doc__ or ""),
            footer="Override any field with key=value (e.g. train.max_tokens=1000000); "
            "-m runs a sweep over comma-separated values.",
            template=(
                "${hydra.help.header}\n\n== Config groups ==\n$APP_CONFIG_GROUPS\n"
                "== Configuration (defaults) ==\n$CONFIG\n${hydra.help.footer}\n"
            ),
        ),
    )
    return config_name
