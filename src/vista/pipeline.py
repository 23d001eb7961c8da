"""``vista run``: the thin default job in one run directory (everything else is a verb).

out_dir/
  encoder/                  the encoder used (copied from the cache, or trained here)
  activations.h5            the activation store
  sae/                      cfg.json + sae_weights.safetensors
  reseeds/seedN/            the same SAE trained with other seeds (for the stability analysis)
  checkpoints/, logs/       training state and metrics.csv
  analyses/<name>/          one result per analysis (result.json + arrays.npz), index.json
  evaluation_results.json   the VISTA evaluation schema (and the seeds' other files beside it)
  plots/                    figures drawn from the result files
  report/index.html         the browsable report (vista report)
  run.json                  the resolved config and a summary
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from vista.cache import cache_root
from vista.jsonio import write_json

if TYPE_CHECKING:
    from vista.analysis.runner import AnalysisJob
    from vista.conf.schema import RunBase

log = logging.getLogger(__name__)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def ensure_encoder(job: RunBase, out_dir: Path) -> Path:
    """Train the encoder, or copy a cached one trained with the same settings, into out_dir/encoder."""
    from vista.sources.encoders.trainable import is_trained_encoder
    from vista.train.classifier import train_encoder

    target = out_dir / "encoder"
    if job.encoder.path:
        return Path(job.encoder.path)
    if is_trained_encoder(target):
        return target
    spec = {"dataset": asdict(job.dataset), "training": asdict(job.encoder_training)}
    arch = job.encoder_training.architecture
    cached = cache_root(job.cache_dir) / "encoders" / f"{arch}-{_key(spec)}"
    if not is_trained_encoder(cached):
        log.info("Training the %s encoder (cached at %s).", arch, cached)
        tmp = cached.with_name(cached.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        train_encoder(job.dataset, job.encoder_training, tmp, job.trainer)
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    else:
        log.info("Reusing the cached encoder %s.", cached)
    tmp_target = target.with_name("encoder.tmp")
    shutil.rmtree(tmp_target, ignore_errors=True)
    shutil.copytree(cached, tmp_target)
    tmp_target.rename(target)
    return target


def analyze_into(
    sae_dir: Any,
    store: Any,
    out: Any,
    job: AnalysisJob,
    explicit: bool | None = None,
    ranks: Any = None,
) -> Any:
    """Run the job's analyses and draw the plots that read their results (with ``ranks`` of
    several processes, the first does; see ``runner.analyze``)."""
    from vista.analysis.runner import analyze, configs_of
    from vista.reports.plots import plots_from_results

    outcome = analyze(sae_dir, store, out, list(job.analysis), configs_of(job), job.eval,
                      explicit=explicit, ranks=ranks)  # fmt: skip
    if ranks is None or ranks.rank == 0:
        plots_from_results(out)
    return outcome


def evaluate_into(
    sae_dir: Any, store: Any, out: Any, job: AnalysisJob, ranks: Any = None
) -> dict[str, Any]:
    """The ``evaluate`` preset; returns the ``evaluation_results.json`` document (empty in a
    process other than the first). What cannot run on the store (the label sections of a store
    without labels) is skipped, and the document's ``skipped`` section says which and why."""
    outcome = analyze_into(sae_dir, store, out, job, explicit=False, ranks=ranks)
    if ranks is not None and ranks.rank:
        return {}
    doc = json.loads((Path(out) / "evaluation_results.json").read_text())
    return {**doc, "skipped": dict(outcome.skipped)} if outcome.skipped else doc


def run(job: RunBase) -> dict[str, Any]:
    from vista.reports.tables import analysis_summary, decomposition_summary, run_summary
    from vista.sources.extract import extract
    from vista.train.fit import train_saes

    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder_dir = ensure_encoder(job, out)
    enc_meta = json.loads((encoder_dir / "encoder.json").read_text())

    store = out / "activations.h5"
    if store.exists():
        log.info("Reusing the activation store %s.", store)
    else:
        name = enc_meta.get("architecture", "mnist_cnn")
        extract(job.dataset, replace(job.encoder, path=str(encoder_dir), name=name), store)

    sae_dir = out / "sae"
    seeds = [replace(job.sae, seed=int(job.sae.seed) + i) for i in range(1, int(job.reseeds) + 1)]
    reseed_dirs = [out / "reseeds" / f"seed{s.seed}" for s in seeds]
    if not (sae_dir / "cfg.json").is_file():
        resume = (out / "checkpoints" / "last.ckpt").is_file()
        train_saes(
            store,
            [job.sae, *seeds],
            replace(job.train, resume=resume),
            job.trainer,
            out,
            export_dirs=[sae_dir, *reseed_dirs],
        )
    else:
        log.info("Reusing the trained SAE %s.", sae_dir)
    stability = getattr(job, "stability")  # noqa: B009  (an analysis config, from the registry)
    if reseed_dirs and not stability.saes and all((d / "cfg.json").is_file() for d in reseed_dirs):
        saes = [str(d) for d in reseed_dirs]
        job = replace(cast(Any, job), stability=replace(stability, saes=saes))

    outcome = analyze_into(sae_dir, store, out, job)
    summary = run_summary(outcome.results, enc_meta.get("test_accuracy"))
    write_json(
        out / "run.json",
        {"config": asdict(job), "summary": summary, "skipped": outcome.skipped},
    )
    acc = enc_meta.get("test_accuracy")
    head = f"encoder test accuracy: {acc:.4f}\n" if acc is not None else ""
    print(head + analysis_summary(outcome.results, outcome.skipped))
    decomposition = decomposition_summary(outcome.results)
    if decomposition:
        print(decomposition)
    print(f"results: {out / 'analyses'} (and {out / 'evaluation_results.json'})")
    from vista.reports.html import write_report

    print(f"report:  {write_report(out, job.report)} (open it in a browser; no server needed)")
    return summary
