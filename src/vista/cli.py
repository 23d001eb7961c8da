"""The ``vista`` command: one verb per pipeline step, Hydra overrides for everything else."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista import __version__
from vista.boundary import check_overrides, failure
from vista.conf import schema
from vista.errors import VistaError

if TYPE_CHECKING:
    from vista.conf import schema

USAGE = """usage: vista VERB [key=value ...] [--help] [--cfg job] [-m]

Sparse autoencoders on vision-encoder activations.

verbs:
  run            the whole default job: train-encoder -> extract -> train -> analyze all
  train-encoder  train mnist_cnn or alexnet_transformer (encoder=NAME dataset=NAME out_dir=DIR)
  extract        encoder activations + labels -> HDF5 store (dataset=NAME encoder=NAME
                 encoder.path=... encoder.layer=INT|MODULE encoder.tokens=... out=FILE.h5
                 [shard_gb=-1|0|X: automatic, one file, shards of X GiB])
  train          train SAE(s) on a store (store=FILE.h5 sae=topk|batchtopk|... out_dir=DIR)
  encode         an SAE's codes as stores, per token and mean/max per image (sae= store= out=)
  shard          a store as a directory of shards, read by every verb as store=DIR
                 (store=FILE.h5 out=DIR [shard_gb=2] [compression=zstd|lz4|none])
  unshard        a sharded store as one file, exactly (store=DIR out=FILE.h5)
  analyze        any analyses of an SAE on a store (sae=DIR store=FILE.h5 analysis=[a,b]|all out_dir=DIR)
  probe          the multi-task linear probe on a store (store=FILE.h5 [sae=DIR] out_dir=DIR)
  report         RUN_DIR/report/index.html from a run's results (vista report RUN_DIR)
  bench          a grid of SAEs, baselines, every benchmark metric, merged table, Pareto plots
                 (store=FILE.h5 out_dir=DIR; `vista bench init DIR` writes a DVC pipeline)
  evaluate       the preset health, reconstruction, alignment, probes, ablation
                 -> evaluation_results.json (sae=DIR/sae store=FILE.h5 out_dir=DIR)
  intervene      suppress, scale, steer, erase each label's features, with controls and the
                 decomposition (sae=DIR store=FILE.h5 out_dir=DIR [modes=a,b] [targets=label])
  splice         the SAE inside the encoder the store came from: accuracy, loss recovered, KL,
                 per-class suppression (sae=DIR store=FILE.h5 out_dir=DIR)
  generate       a vision-language model's captions or VQA answers with the SAE in its vision
                 tower and a label's features edited: DCR, VQA accuracy, causal effect
                 (sae=DIR store=FILE.h5 out_dir=DIR [task=caption|vqa] [modes=a,b] [target=label])
  judge          a local causal LM judges caption files: LLM-DCR, pairwise preference
                 (model_path=DIR files=a.json,b.json out_dir=DIR [mode=binary|pairwise])
  synthetic      a store with a known dictionary, the ground truth (out=FILE.h5 synthetic.*=...)
  info           describe a store (file or sharded directory) or an SAE directory (vista info PATH)

`vista VERB --help` shows the verb's configuration. Results land in the out_dir of each verb.
"""

# Lightning's DDP launcher re-runs this program without the verb; it finds it here.
_VERB_ENV = "VISTA_VERB"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after setup)."""

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _setup_logging() -> None:
    import warnings

    # Lightning's advice about multi-worker loading and its own pytree deprecation, which say
    # nothing about a vista run.
    warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    root = logging.getLogger()
    if not any(getattr(h, "_vista", False) for h in root.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        h._vista = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.INFO)
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- tasks: each takes the verb's typed job (vista.conf.typed.to_job) -------------------------------
def task_train(job: schema.TrainJob) -> None:
    from vista.store import ActivationStore

    with ActivationStore(job.store):  # a missing or corrupt store fails before Lightning loads
        pass
    from vista.train.fit import train_saes

    paths = train_saes(job.store, [job.sae, *job.sweep], job.train, job.trainer, job.out_dir)
    for p in paths:
        print(f"SAE written to {p}")


def task_analyze(job: schema.AnalysesJob) -> None:
    from vista.analysis.runner import analyze, configs_of
    from vista.reports.tables import analysis_summary, decomposition_summary
    from vista.train.launch import launch

    ranks = launch(job.trainer)
    outcome = analyze(job.sae, job.store, job.out_dir, list(job.analysis), configs_of(job),
                      job.eval, ranks=ranks)  # fmt: skip
    ranks.wait()
    if ranks.rank:
        return
    print(analysis_summary(outcome.results, outcome.skipped))
    decomposition = decomposition_summary(outcome.results)
    if decomposition:
        print(decomposition)
    print(f"results: {Path(job.out_dir) / 'analyses'}")


def one_analysis_task(name: str, files: str = "") -> Callable[[Any], None]:
    """The task of a verb that runs the registered analysis ``name`` alone (its job from
    ``schema.OneAnalysisJob``); ``files`` names the seeds' files it also writes."""

    def task(job: schema.OneAnalysisJob) -> None:
        from vista.analysis.runner import analyze
        from vista.reports.tables import analysis_summary, decomposition_summary

        outcome = analyze(
            job.sae, job.store, job.out_dir, [name], {name: getattr(job, name)}, job.eval
        )
        # intervene's decomposition table says more than its headline numbers
        print(
            decomposition_summary(outcome.results)
            or analysis_summary(outcome.results, outcome.skipped)
        )
        also = f" and {job.out_dir}/{files}" if files else ""
        print(f"results: {Path(job.out_dir) / 'analyses' / name}{also}")

    return task


def task_judge(job: schema.JudgeJob) -> None:
    from vista.interventions.judge import run_judge
    from vista.reports.tables import analysis_summary

    result = run_judge(job, job.out_dir)
    print(analysis_summary({"judge": result}))
    print(f"results: {Path(job.out_dir) / 'analyses' / 'judge'}")


def task_probe(job: schema.ProbeJob) -> None:
    from vista.analysis.probe import probe_store
    from vista.reports.tables import analysis_summary

    result = probe_store(job)
    print(analysis_summary({"probe": result}))
    print(f"results: {Path(job.out_dir) / 'analyses' / 'probe'}")


def task_report(job: schema.ReportJob) -> None:
    from vista.reports.html import write_report

    print(f"report written to {write_report(job.run_dir, job.report)}")


def task_bench(job: schema.BenchBase) -> None:
    from vista.benchmark.stages import run_bench

    if job.stage == "init":
        from vista.benchmark.dvc import init

        print(f"DVC pipeline written to {init(job, job.out_dir)} (dvc init; dvc repro)")
        return
    run_bench(job)
    out = Path(job.out_dir)
    if job.stage in ("all", "merge", "plot") and (out / "bench_results.csv").is_file():
        print(f"results: {out / 'bench_results.csv'} (and .json); plots: {out / 'plots'}")


def task_evaluate(job: schema.AnalysesJob) -> None:
    from vista.pipeline import evaluate_into
    from vista.reports.tables import evaluation_summary
    from vista.train.launch import launch

    ranks = launch(job.trainer)
    doc = evaluate_into(job.sae, job.store, job.out_dir, job, ranks=ranks)
    ranks.wait()
    if ranks.rank:
        return
    print(evaluation_summary(doc))
    print(f"results: {Path(job.out_dir) / 'evaluation_results.json'}")


def task_extract(job: schema.ExtractJob) -> None:
    from vista.lock import output_lock
    from vista.sources.extract import check_out
    from vista.train.launch import launch

    compression = _compression(job.compression)
    # The lock is taken before any process starts: a second run is refused.
    with output_lock(job.out, "extract", beside=True):
        check_out(Path(job.out), job.overwrite, float(job.shard_gb))
        ranks = launch(job.trainer, float(job.shard_gb))
        path = _extract_with(job, compression, ranks)
    if ranks.rank == 0:
        print(f"store written to {path}")


def _extract_with(job: schema.ExtractJob, compression: str | None, ranks: Any) -> Path:
    from vista.sources.extract import extract

    return extract(
        job.dataset,
        job.encoder,
        job.out,
        dtype=job.dtype,
        compression=compression,
        resume=job.resume,
        overwrite=job.overwrite,
        shard_gb=float(job.shard_gb),
        ranks=ranks,
        workers=int(job.workers),
    )


def _compression(value: str) -> str | None:
    return None if str(value).lower() in ("none", "null", "") else str(value)


def task_shard(job: schema.ShardJob) -> None:
    from vista.store import shard_store

    if not job.shard_gb > 0:
        raise VistaError(f"shard_gb={job.shard_gb} must be above 0 (GiB of activations per shard).")
    out = shard_store(
        job.store,
        job.out,
        shard_bytes=int(job.shard_gb * 1024**3),
        compression=_compression(job.compression),
    )
    print(f"sharded store written to {out}")


def task_unshard(job: schema.UnshardJob) -> None:
    from vista.store import merge_store

    out = merge_store(job.store, job.out, compression=_compression(job.compression))
    print(f"store written to {out}")


def task_encode(job: schema.EncodeJob) -> None:
    from vista.analysis.codes import encode_store

    compression = _compression(job.compression)
    paths = encode_store(
        job.sae,
        job.store,
        job.out,
        batch_images=int(job.batch_images),
        device=job.device,
        dtype=job.dtype,
        compression=compression,
        resume=job.resume,
        overwrite=job.overwrite,
    )
    print("codes written to " + ", ".join(str(p) for p in paths.values()))


def task_train_encoder(job: schema.TrainEncoderJob) -> None:
    from vista.train.classifier import train_encoder

    meta = train_encoder(job.dataset, job.encoder, job.out_dir, job.trainer)
    print(
        f"encoder written to {job.out_dir}: test accuracy {meta.get('test_accuracy', float('nan')):.4f}"
    )


def task_synthetic(job: schema.SyntheticJob) -> None:
    from vista.sources.synthetic import write_synthetic_store

    if Path(job.out).exists() and not job.overwrite:
        raise VistaError(f"{job.out!r} already exists; delete it or pass overwrite=true.")
    path = write_synthetic_store(job.out, job.synthetic)
    print(
        f"synthetic store written to {path} ({job.synthetic.n_features} true directions in "
        f"{job.synthetic.d_model} dims)"
    )


def task_run(job: schema.RunBase) -> None:
    from vista.pipeline import run

    run(job)


TASKS: dict[str, Callable[[Any], None]] = {
    "run": task_run,
    "train-encoder": task_train_encoder,
    "extract": task_extract,
    "encode": task_encode,
    "shard": task_shard,
    "unshard": task_unshard,
    "train": task_train,
    "analyze": task_analyze,
    "probe": task_probe,
    "report": task_report,
    "bench": task_bench,
    "evaluate": task_evaluate,
    "intervene": one_analysis_task("intervene", "intervention_*_results.json"),
    "splice": one_analysis_task("splice"),
    "generate": one_analysis_task("generate", "causal_*.json"),
    "judge": task_judge,
    "synthetic": task_synthetic,
}


def info(paths: list[str]) -> None:
    """Print what a store or an SAE directory holds."""
    import json

    from vista.store import ActivationStore

    if not paths:
        raise VistaError(
            "vista info needs a path: a store (.h5, or a sharded store's directory) or an SAE "
            "directory."
        )
    for p in paths:
        if Path(p).is_dir() and not (Path(p) / "manifest.json").is_file():
            cfg = Path(p) / "cfg.json"
            if not cfg.is_file():
                raise VistaError(
                    f"{p!r} is a directory without cfg.json; it is not an SAE directory."
                )
            print(json.dumps(json.loads(cfg.read_text()), indent=2))
            continue
        with ActivationStore(p) as st:
            shards = getattr(st, "manifest", {}).get("splits", {})
            kind = (
                f", sharded: {sum(len(s['shards']) for s in shards.values())} shards"
                if shards
                else ""
            )
            print(f"{p}: store format {st.format_version}{kind}")
            for k, v in st.attrs.items():
                print(f"  {k}: {v}")
            for s in st.splits.values():
                shape = (
                    f"({s.n_rows}, {s.n_tokens}, {s.d_model})"
                    if s.has_token_axis
                    else f"({s.n_rows}, {s.d_model})"
                )
                print(f"  /{s.name}/encoded {shape}, labels: {', '.join(s.label_names) or 'none'}")
                for lab in s.label_names:
                    print(f"    {lab}: {st.class_names(s.name, lab)}")


# -- dispatch ---------------------------------------------------------------------------------------
# `dataset=NAME` / `encoder=NAME` pick a registry entry (the groups are dataclasses, not Hydra
# config groups, so the bare key is rewritten to the field that holds the name).
SHORTHANDS: dict[str, dict[str, str]] = {
    "extract": {"dataset": "dataset.name", "encoder": "encoder.name"},
    "train-encoder": {"dataset": "dataset.name", "encoder": "encoder.architecture"},
    "run": {"dataset": "dataset.name"},
    "intervene": {"modes": "intervene.modes", "targets": "intervene.targets"},
    "generate": {"modes": "generate.modes", "task": "generate.task", "target": "generate.target"},
}


_LIST_KEYS = {
    "analysis": ("analyze", "evaluate", "run", "bench"),
    "modes": ("intervene", "generate"),
    "files": ("judge",),
    "attributes": ("judge",),
    "targets": ("intervene",),
}
"""List settings that also take a bare ``a`` or ``a,b`` (``analysis=sdf`` = ``analysis=[sdf]``)."""


_VALUE_FLAGS = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
}
"""Hydra flags whose next argument is their value, not an override."""


def expand_shorthand(verb: str, arg: str, previous: str = "") -> str:
    positional = "=" not in arg and not arg.startswith("-") and previous not in _VALUE_FLAGS
    if verb == "report" and positional:
        return f"run_dir={arg}"  # vista report RUN_DIR
    if verb == "bench" and positional:
        return "stage=init" if arg == "init" else f"out_dir={arg}"  # vista bench init DIR
    key, sep, value = arg.partition("=")
    if sep and verb in _LIST_KEYS.get(key, ()) and value and not value.startswith("["):
        value = f"[{value}]"
        arg = f"{key}={value}"
    target = SHORTHANDS.get(verb, {}).get(key)
    arg = f"{target}={value}" if sep and target and not value.startswith("{") else arg
    return quote_non_ascii(arg)


def quote_non_ascii(arg: str) -> str:
    """``store=données/ünï.h5`` -> ``store='données/ünï.h5'``: Hydra's grammar takes non-ASCII
    characters in quoted values only, so a plain value with them is quoted for the user (one
    that is quoted already, a list or a mapping is left as typed)."""
    key, sep, value = arg.partition("=")
    if not sep or not value or value.isascii() or value[0] in "'\"[{" or "'" in value:
        return arg
    return f"{key}='{value}'"


def run_verb(verb: str, args: list[str]) -> None:
    import hydra

    from vista.conf import register_verb

    config_name = register_verb(verb)
    task = TASKS[verb]

    def entry(cfg: Any) -> None:
        from vista.conf.typed import to_job, with_params_file
        from vista.lock import output_lock, output_of
        from vista.outputs import check_outputs

        _setup_logging()
        try:
            job = to_job(with_params_file(cfg))
            check_outputs(verb, job)
            out = output_of(job)
            if out:
                with output_lock(out, verb):
                    task(job)
            else:
                task(job)
        except BaseException as e:  # the one boundary: a sentence and an exit code, never a trace
            sys.exit(failure(verb, e, str(cfg.get("out_dir", "") or "")))

    defaults = [
        "hydra.run.dir=.",
        "hydra.output_subdir=null",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        "hydra/help=vista",
    ]
    if not any(a in ("--help", "-h", "--cfg", "-c", "--info", "-i") for a in args):
        expanded = [
            expand_shorthand(verb, a, args[i - 1] if i else "")
            for i, a in enumerate(args)
            if not a.startswith("-") and (not i or args[i - 1] not in _VALUE_FLAGS)
        ]
        stray = [a for a in expanded if "=" not in a]
        if stray:
            raise VistaError(
                f"{stray[0]!r} is not a setting (key=value); a value with spaces must be quoted "
                "whole, e.g. store='/data/my store.h5'."
            )
        check_overrides(verb, config_name, expanded)
    saved = sys.argv
    # argparse wants flags before the overrides: `vista train -m sae=a,b` and `... sae=a,b -m` both work.
    flags = [a for a in args if a in ("-m", "--multirun")]
    kept = [a for a in args if a not in ("-m", "--multirun")]
    rest = [expand_shorthand(verb, a, kept[i - 1] if i else "") for i, a in enumerate(kept)]
    sys.argv = [saved[0] if saved else "vista", *flags, *defaults, *rest]
    os.environ[_VERB_ENV] = verb
    try:
        hydra.main(version_base=None, config_path="conf", config_name=config_name)(entry)()
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in TASKS and args[0] != "info" and os.environ.get(_VERB_ENV) in TASKS:
        # A DDP worker started by Lightning: same arguments, minus the verb.
        args = [os.environ[_VERB_ENV], *[a for a in args if not a.startswith("hydra/")]]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if args[0] == "--version":
        print(f"vista {__version__}")
        return
    verb, rest = args[0], args[1:]
    try:
        if verb == "info":
            info(rest)
            return
        if verb not in TASKS:
            raise VistaError(f"Unknown verb {verb!r}; run `vista --help` for the list.")
        run_verb(verb, rest)
    except BaseException as e:
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        sys.exit(failure(verb, e))


if __name__ == "__main__":
    main()
