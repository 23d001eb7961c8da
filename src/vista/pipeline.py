"""``vista run``: the whole default job in one run directory.

out_dir/
  encoder/                  the encoder used (copied from the cache, or trained here)
  activations.h5            the activation store
  sae/                      cfg.json + sae_weights.safetensors
  checkpoints/, logs/       training state and metrics.csv
  evaluation_results.json
  plots/latent_firing_frequency.png
  run.json                  the resolved config and a summary
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vista.cache import cache_root
from vista.jsonio import write_json

log = logging.getLogger(__name__)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def ensure_encoder(cfg: DictConfig, out_dir: Path) -> Path:
    """Train the encoder, or copy a cached one trained with the same settings, into out_dir/encoder."""
    from vista.sources.encoders.trainable import is_trained_encoder
    from vista.train.classifier import train_encoder

    target = out_dir / "encoder"
    if cfg.encoder.path:
        return Path(cfg.encoder.path)
    if is_trained_encoder(target):
        return target
    spec = {
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "training": OmegaConf.to_container(cfg.encoder_training, resolve=True),
    }
    cached = (
        cache_root(cfg.cache_dir) / "encoders" / f"{cfg.encoder_training.architecture}-{_key(spec)}"
    )
    if not is_trained_encoder(cached):
        log.info(
            "Training the %s encoder (cached at %s).", cfg.encoder_training.architecture, cached
        )
        tmp = cached.with_name(cached.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        train_encoder(cfg.dataset, cfg.encoder_training, tmp, cfg.trainer)
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    else:
        log.info("Reusing the cached encoder %s.", cached)
    tmp_target = target.with_name("encoder.tmp")
    shutil.rmtree(tmp_target, ignore_errors=True)
    shutil.copytree(cached, tmp_target)
    tmp_target.rename(target)
    return target


def evaluate_into(sae_dir: Path, store: Path, out: Path, ev: Any) -> tuple[dict[str, Any], Path]:
    """Evaluate the SAE in ``sae_dir`` on ``store``; write the JSON and the firing plot into ``out``."""
    from vista.analysis.evaluate import evaluate
    from vista.analysis.probes import ProbeConfig
    from vista.reports.plots import firing_frequency_histogram
    from vista.saes.io import load_sae

    sae = load_sae(sae_dir, device=ev.device)
    if getattr(ev, "pursuit", ""):
        from vista.saes.pursuit import pursuit_encoder

        sae = pursuit_encoder(sae, ev.pursuit, k=int(ev.pursuit_k))
    doc, res = evaluate(
        sae,
        store,
        split=ev.split,
        labels=list(ev.labels) or None,
        batch_tokens=ev.batch_tokens,
        device=ev.device,
        probe=ProbeConfig(**OmegaConf.to_container(ev.probe, resolve=True)),  # type: ignore[arg-type]
        top_features=ev.top_features,
    )
    doc["_metadata"]["sae"] = str(Path(sae_dir).resolve())
    write_json(out / "evaluation_results.json", doc)
    plot = firing_frequency_histogram(
        res.firing_counts,
        res.health["total_tokens"],
        out / "plots" / "latent_firing_frequency.png",
        title=f"{sae.cfg.architecture} SAE, {sae.d_sae} latents ({ev.split})",
    )
    return doc, plot


def run(cfg: DictConfig) -> dict[str, Any]:
    from vista.reports.tables import evaluation_summary
    from vista.sources.extract import extract
    from vista.train.fit import train_saes

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder_dir = ensure_encoder(cfg, out)
    enc_meta = json.loads((encoder_dir / "encoder.json").read_text())

    store = out / "activations.h5"
    if store.exists():
        log.info("Reusing the activation store %s.", store)
    else:
        enc_cfg = OmegaConf.merge(
            cfg.encoder,
            {"path": str(encoder_dir), "name": enc_meta.get("architecture", "mnist_cnn")},
        )
        extract(cfg.dataset, enc_cfg, store)

    sae_dir = out / "sae"
    if not (sae_dir / "cfg.json").is_file():
        resume = (out / "checkpoints" / "last.ckpt").is_file()
        train_cfg = OmegaConf.merge(cfg.train, {"resume": resume})
        train_saes(store, [cfg.sae], train_cfg, cfg.trainer, out)
    else:
        log.info("Reusing the trained SAE %s.", sae_dir)

    doc, plot = evaluate_into(sae_dir, store, out, cfg.eval)
    summary = {
        "encoder_test_accuracy": enc_meta.get("test_accuracy"),
        "fvu": doc["reconstruction_quality"]["fvu"],
        "l0_mean": doc["sae_health"]["l0_mean"],
        "dead_feature_ratio": doc["sae_health"]["dead_feature_ratio"],
        "probe": {
            k: {"raw": v.get("raw_latent_accuracy"), "sae": v.get("sae_latent_accuracy")}
            for k, v in doc["probe_comparison"].items()
        },
    }
    write_json(
        out / "run.json",
        {
            "config": OmegaConf.to_container(cfg, resolve=True),
            "summary": summary,
            "plot": str(plot),
        },
    )
    table = evaluation_summary(doc)
    acc = enc_meta.get("test_accuracy")
    if acc is not None:
        table = f"encoder test accuracy: {acc:.4f}\n" + table
    print(table)
    print(f"results: {out / 'evaluation_results.json'}\nplot:    {plot}")
    return summary
