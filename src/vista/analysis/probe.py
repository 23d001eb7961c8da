"""``probe``: the seeds' multi-task linear probe (one head per label, docs/originals.md §2) trained with
Lightning on the raw activations and on the SAE codes, side by side: did the SAE keep the labels?

In ``vista analyze`` it trains on 80% of the analysed split's images and scores the other 20%
(seeded); ``vista probe`` trains on a store's training split and scores its validation split, on
the activations of any store (raw, or the pooled codes of ``vista encode``) or, given an SAE, on
both. Accuracy and macro-F1 per label with bootstrap intervals over the scored images, and a
paired permutation test of the SAE-minus-raw difference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import MISSING

from vista.analysis.context import AnalysisSettings
from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.uncertainty import macro_f1_ci, mean_ci, paired_permutation_pvalue
from vista.train.config import MultiTaskProbeConfig, TrainerConfig

if TYPE_CHECKING:
    from vista.analysis.context import Context

log = logging.getLogger(__name__)


@dataclass
class ProbeTrainingConfig(MultiTaskProbeConfig):
    inputs: list[str] = field(default_factory=lambda: ["raw", "sae"])
    """What to train on: raw (the activations), sae (the codes)."""
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(accelerator="cpu", progress_bar=False)
    )


def _needs(cfg: ProbeTrainingConfig) -> str:
    bad = [i for i in cfg.inputs if i not in ("raw", "sae")]
    return f"unknown probe.inputs {bad} (raw, sae)" if bad or not cfg.inputs else ""


def score(
    r: Result,
    preds: dict[str, dict[str, np.ndarray]],
    y_val: dict[str, np.ndarray],
    names: dict[str, list[str]],
    s: Any,
    rng_for: Any,
) -> dict[str, Any]:
    """Add accuracy / macro-F1 (with CIs) per input and label, and the SAE-raw test; return a
    JSON summary."""
    from sklearn.metrics import f1_score

    doc: dict[str, Any] = {}
    for label, y in y_val.items():
        ok = y >= 0
        correct = {}
        for inp, p in preds.items():
            c = p[label][ok] == y[ok]
            correct[inp] = c
            ci = mean_ci(c, s.n_boot, rng_for(label, inp), s.confidence)
            f1 = float(f1_score(y[ok], p[label][ok], average="macro", zero_division=0))
            r.add(f"{label}/{inp}_accuracy", float(c.mean()), "higher", ci, int(ok.sum()))
            f1_ci = macro_f1_ci(y[ok], p[label][ok], s.n_boot, rng_for(label, inp, "f1"),
                                s.confidence)  # fmt: skip
            r.add(f"{label}/{inp}_macro_f1", f1, "higher", f1_ci, int(ok.sum()))
            doc.setdefault(label, {})[inp] = {
                "accuracy": float(c.mean()),
                "accuracy_ci": list(ci),
                "macro_f1": f1,
            }
        if "raw" in correct and "sae" in correct:
            d = correct["sae"].astype(float) - correct["raw"]
            r.add(
                f"{label}/delta",
                float(d.mean()),
                "higher",
                mean_ci(d, s.n_boot, rng_for(label, "d"), s.confidence),
                len(d),
            )
            p_value = paired_permutation_pvalue(
                correct["sae"], correct["raw"], s.n_perm, rng_for(label, "p")
            )
            r.add(f"{label}/delta_p_value", p_value, "none", n=len(d))
            doc[label]["delta"], doc[label]["delta_p_value"] = float(d.mean()), p_value
        r.headline += [f"{label}/{i}_accuracy" for i in preds] + (
            [f"{label}/delta_p_value"] if "raw" in preds and "sae" in preds else []
        )
        doc.setdefault(label, {})["class_names"] = names[label]
    return doc


OUT = Outputs("probe")
OUT.scalar("{label}/{codes}_accuracy", "higher", "probe accuracy on raw or sae inputs")
OUT.scalar("{label}/{codes}_macro_f1", "higher", "probe macro F1 on raw or sae inputs")
OUT.scalar("{label}/delta", "higher", "SAE minus raw accuracy")
OUT.scalar("{label}/delta_p_value", "none", "paired permutation p-value of the delta")


@register_analysis(
    "probe",
    ProbeTrainingConfig,
    "The seeds' multi-task linear probe (Lightning), raw activations vs SAE codes, with CIs.",
    needs_labels=1,
    needs=_needs,
    order=130,
    outputs=OUT,
)
def run(ctx: Context, cfg: ProbeTrainingConfig) -> Result:
    from vista.train.probe import fit_multitask_probe

    labels = {k: ctx.labels[k] for k in ctx.require_labels()}
    n = ctx.encoded.n_images
    perm = np.random.default_rng(ctx.settings.split_seed).permutation(n)
    n_val = max(1, round(n * ctx.settings.test_size))
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    sources = {"raw": ctx.encoded.pooled_raw, "sae": ctx.encoded.codes}
    n_classes = {k: len(ctx.class_names[k]) for k in labels}
    preds = {}
    for inp in cfg.inputs:
        log.info("probe: training the multi-task probe on %s (%d images)", inp, len(train))
        preds[inp] = fit_multitask_probe(
            sources[inp], labels, n_classes, train, val, cfg, cfg.trainer
        )
    r = Result("probe")
    doc = score(
        r,
        preds,
        {k: v[val] for k, v in labels.items()},
        ctx.class_names,
        ctx.settings,
        lambda *k: ctx.rng("probe", *k),
    )
    r.metadata.update(n_train=len(train), n_val=len(val))
    r.files["probe_results.json"] = doc
    return r


def probe_store(job: ProbeJob) -> Result:
    """``vista probe``: train on the store's ``train_split``, score its ``val_split``."""
    from vista.errors import VistaError
    from vista.metrics.uncertainty import rng_for
    from vista.store import ActivationStore
    from vista.train.probe import fit_multitask_probe

    s, cfg = job.eval, job.probe
    with ActivationStore(job.store) as st:
        wanted = list(s.labels) or list(st.split(job.val_split).label_names)
        ys = {sp: st.labels(sp, wanted) for sp in (job.train_split, job.val_split)}
        names = {k: st.class_names(job.val_split, k) for k in wanted}
    if not wanted:
        raise VistaError(
            f"{job.store!r} has no labels to probe; extract it from a labelled dataset."
        )
    why = {k: _unusable(k, ys[job.train_split][k], ys[job.val_split][k], job) for k in wanted}
    if all(why.values()):
        raise VistaError(
            f"{job.store!r} has no label the probe can learn: {'; '.join(why.values())}; "
            "probe a store whose images carry the labels (-1 marks an image without one)."
        )
    wanted = [k for k in wanted if not why[k]]
    names = {k: names[k] for k in wanted}
    feats = _features(job)
    n_tr = len(feats["raw"][0])
    labels = {k: np.concatenate([ys[job.train_split][k], ys[job.val_split][k]]) for k in wanted}
    train, val = np.arange(n_tr), n_tr + np.arange(len(feats["raw"][1]))
    n_classes = {k: len(v) for k, v in names.items()}
    preds = {}
    for inp, parts in feats.items():
        if inp not in cfg.inputs and job.sae:
            continue
        x = _stack(parts)
        preds[inp] = fit_multitask_probe(
            x, labels, n_classes, train, val, cfg, cfg.trainer, job.out_dir
        )
    r = Result("probe")
    r.files["probe_results.json"] = score(
        r,
        preds,
        {k: v[val] for k, v in labels.items()},
        names,
        s,
        lambda *k: rng_for(s.seed, "probe", *k),
    )
    from dataclasses import asdict

    r.config = asdict(cfg)
    r.skipped.update({k: v for k, v in why.items() if v})
    r.metadata.update(store=str(job.store), sae=job.sae, n_train=len(train), n_val=len(val))
    r.metadata.update(train_split=job.train_split, val_split=job.val_split)
    OUT.check(r)
    r.write(job.out_dir)
    return r


def _features(job: ProbeJob) -> dict[str, list[Any]]:
    """Per input (``raw``, and ``sae`` when an SAE is given), the pooled features of the train
    and the validation split."""
    from vista.analysis.encoding import encode_split, pooled_activations

    s = job.eval
    feats: dict[str, list[Any]] = {}
    for sp in (job.train_split, job.val_split):
        if job.sae:
            from vista.saes.io import load_sae

            enc = encode_split(
                load_sae(job.sae), job.store, sp, batch_tokens=s.batch_tokens, device=s.device
            )
            feats.setdefault("raw", []).append(enc.pooled_raw)
            feats.setdefault("sae", []).append(enc.codes)
        else:
            feats.setdefault("raw", []).append(pooled_activations(job.store, sp, s.batch_tokens))
    return feats


def _unusable(name: str, y_train: np.ndarray, y_val: np.ndarray, job: ProbeJob) -> str:
    """Why label ``name`` cannot be probed ('' = it can): two classes among the labelled
    training images and one labelled validation image at least."""
    classes = np.unique(y_train[y_train >= 0])
    if len(classes) < 2:
        return f"label {name!r} has {len(classes)} class(es) among the labelled images of {job.train_split!r}"
    if not (y_val >= 0).any():
        return f"label {name!r} has no labelled image in {job.val_split!r}"
    return ""


def _stack(parts: list[Any]) -> Any:
    if any(hasattr(p, "toarray") for p in parts):
        from scipy import sparse

        return sparse.vstack([sparse.csr_matrix(p) for p in parts]).tocsr()
    return np.concatenate(parts)


@dataclass
class ProbeJob:
    """vista probe: the multi-task linear probe (one head per label) trained on a store's training
    split and scored on its validation split: on the store's activations (raw, or the pooled
    codes of `vista encode`), or given sae=DIR on the raw activations and the SAE codes."""

    store: str = MISSING
    out_dir: str = MISSING
    sae: str = ""
    """Optional SAE: train on its codes too, side by side with the raw activations."""
    train_split: str = "training"
    val_split: str = "validation"
    probe: ProbeTrainingConfig = field(default_factory=ProbeTrainingConfig)
    eval: AnalysisSettings = field(default_factory=AnalysisSettings)
