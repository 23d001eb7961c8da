"""``probes``: does a linear probe read each label as well from the SAE codes as from the raw
activations? (VISTA's post-hoc ``probe_comparison``, with intervals and a paired test.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.probing import ProbeConfig, fit_probe, split_indices
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.uncertainty import macro_f1_ci, mean_ci, paired_permutation_pvalue

if TYPE_CHECKING:
    from vista.analysis.context import Context


def probe_comparison(
    raw: Any,
    codes: Any,
    labels: np.ndarray,
    class_names: list[str],
    cfg: ProbeConfig,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """``(VISTA section, raw predictions (n_test,), SAE predictions (n_test,))`` on the same
    split."""
    from sklearn.metrics import classification_report, f1_score

    if split is None:
        tr, te, stratified = split_indices(labels, 0.2, 42)
    else:
        (tr, te), stratified = split, True
    raw_pred = fit_probe(raw[tr], labels[tr], cfg).predict(raw[te])
    sae_pred = fit_probe(codes[tr], labels[tr], cfg).predict(codes[te])
    raw_ok, sae_ok = raw_pred == labels[te], sae_pred == labels[te]
    present = sorted(set(labels[te].tolist()) | set(sae_pred.tolist()))
    report = classification_report(
        labels[te],
        sae_pred,
        labels=present,
        target_names=[class_names[i] if i < len(class_names) else str(i) for i in present],
        output_dict=True,
        zero_division=0,
    )
    section = {
        "raw_latent_accuracy": float(raw_ok.mean()),
        "sae_latent_accuracy": float(sae_ok.mean()),
        "delta": float(sae_ok.mean() - raw_ok.mean()),
        "raw_macro_f1": float(f1_score(labels[te], raw_pred, average="macro", zero_division=0)),
        "sae_macro_f1": float(f1_score(labels[te], sae_pred, average="macro", zero_division=0)),
        "per_class_report": report,
        "n_train": len(tr),
        "n_test": len(te),
        "stratified": stratified,
    }
    return section, raw_pred, sae_pred


OUT = Outputs("probes")
ACCURACY = OUT.scalar("{label}/{codes}_accuracy", "higher", "probe accuracy on raw or sae inputs")
OUT.scalar("{label}/{codes}_macro_f1", "higher", "probe macro F1 on raw or sae inputs")
OUT.scalar("{label}/delta", "higher", "SAE minus raw accuracy")
OUT.scalar("{label}/delta_p_value", "none", "paired permutation p-value of the delta")


@register_analysis(
    "probes",
    ProbeConfig,
    "Logistic probes on raw activations vs SAE codes per label: accuracy, CIs, paired test.",
    needs_labels=1,
    order=50,
    outputs=OUT,
)
def run(ctx: Context, cfg: ProbeConfig) -> Result:
    enc, s = ctx.encoded, ctx.settings
    r = Result("probes")
    sections = {}
    for label in ctx.require_labels():
        y = ctx.labels[label]
        tr, te = ctx.train_test(label)
        sec, raw_pred, sae_pred = probe_comparison(
            enc.pooled_raw, enc.codes, y, ctx.class_names[label], cfg, (tr, te)
        )
        raw_ok, sae_ok = raw_pred == y[te], sae_pred == y[te]
        n = len(te)
        rng = ctx.rng("probes", label)
        raw_ci = mean_ci(raw_ok, s.n_boot, rng, s.confidence)
        sae_ci = mean_ci(sae_ok, s.n_boot, rng, s.confidence)
        d_ci = mean_ci(sae_ok.astype(float) - raw_ok, s.n_boot, rng, s.confidence)
        p = paired_permutation_pvalue(sae_ok, raw_ok, s.n_perm, rng)
        sec.update(raw_accuracy_ci=raw_ci, sae_accuracy_ci=sae_ci, delta_ci=d_ci, delta_p_value=p)
        sections[label] = sec
        r.add(f"{label}/raw_accuracy", sec["raw_latent_accuracy"], "higher", raw_ci, n)
        r.add(f"{label}/sae_accuracy", sec["sae_latent_accuracy"], "higher", sae_ci, n)
        r.add(f"{label}/delta", sec["delta"], "higher", d_ci, n)
        r.add(f"{label}/delta_p_value", p, "none", n=n)
        r.headline += [f"{label}/raw_accuracy", f"{label}/sae_accuracy", f"{label}/delta_p_value"]
        for inp, pred in (("sae", sae_pred), ("raw", raw_pred)):
            f1_ci = macro_f1_ci(y[te], pred, s.n_boot, rng, s.confidence)
            r.add(f"{label}/{inp}_macro_f1", sec[f"{inp}_macro_f1"], "higher", f1_ci, n)
    r.files["evaluation_results.json#probe_comparison"] = sections
    return r
