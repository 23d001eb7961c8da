"""``ablation``: are the latents that vary most between classes necessary and sufficient for a
probe to read the label? (VISTA's ``ablation_study``, docs/originals.md §4.1, with a random control and CIs.)

Latents are ranked by the inter-class variance of their class means on the training part only.
For each k a fresh probe is trained without the top k (necessity) and on the top k alone
(sufficiency); the same is done with k random latents (the control), so a drop can be compared
with what removing k comparable latents costs: the control draws, for each top latent, one of the
latents nearest to it in firing rate on the training part, among latents that fire and are not in
the top k (a dead latent removes nothing, so a control of dead latents would flatter the top k).
Dropping a column and zeroing it train the same probe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.probing import ProbeConfig, fit_probe
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.alignment import class_means, inter_class_variance
from vista.metrics.sdf import class_firing_frequency
from vista.metrics.uncertainty import mean_ci, paired_permutation_pvalue

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class AblationConfig:
    ks: list[int] = field(default_factory=lambda: [10, 20, 50, 100])
    """Numbers of top latents removed / kept (VISTA's defaults)."""
    random_repeats: int = 1
    """Random latent sets per k for the control (their accuracies are averaged)."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)


def rank_by_variance(codes: Any, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Latents by descending inter-class variance of their class means (ties by index)."""
    means = class_means(codes, y, n_classes)
    present = ~np.isnan(means).any(axis=1)
    return np.argsort(-inter_class_variance(means[present]), kind="stable")


def firing_rates(codes: Any) -> np.ndarray:
    """Per latent, the share of images (rows of ``codes``) on which it is non-zero."""
    return class_firing_frequency(codes, np.zeros(codes.shape[0], dtype=np.int64), 1)[0]


def matched_random(
    rates: np.ndarray, targets: np.ndarray, rng: np.random.Generator, nearest: int = 5
) -> np.ndarray:
    """A random control set for ``targets``: for each target (in random order), one latent drawn
    uniformly from the ``nearest`` unused latents closest to it in log firing rate, among the
    latents that fire and are not targets. Where fewer such latents remain than targets, the
    set is as large as they allow."""
    pool = np.setdiff1d(np.flatnonzero(rates > 0), targets)
    pool = pool[np.argsort(rates[pool], kind="stable")]
    log_pool = np.log(rates[pool])
    free = np.ones(len(pool), bool)
    picked: list[int] = []
    for t in rng.permutation(targets):
        left = np.flatnonzero(free)
        if not len(left):
            break
        goal = np.log(max(rates[t], 1e-12))
        close = left[np.argsort(np.abs(log_pool[left] - goal), kind="stable")[:nearest]]
        j = int(rng.choice(close))
        free[j] = False
        picked.append(int(pool[j]))
    return np.array(sorted(picked), dtype=np.int64)


def _accuracy_ok(
    codes: Any, y: np.ndarray, tr: np.ndarray, te: np.ndarray, cols: np.ndarray, cfg: ProbeConfig
) -> np.ndarray:
    """Per test image, whether a probe on ``cols`` only classifies it right."""
    if len(cols) == 0:  # no features: the probe predicts the majority class
        major = np.bincount(y[tr]).argmax()
        return y[te] == major
    x = codes[:, np.sort(cols)]
    return fit_probe(x[tr], y[tr], cfg).predict(x[te]) == y[te]


def ablate_label(ctx: Context, label: str, cfg: AblationConfig) -> tuple[dict[str, Any], dict]:
    """The VISTA section for one label and the per-k statistics (with CIs and p-values)."""
    s = ctx.settings
    codes, y = ctx.encoded.codes, ctx.labels[label]
    tr, te = ctx.train_test(label)
    d = codes.shape[1]
    order = rank_by_variance(codes[tr], y[tr], len(ctx.class_names[label]))
    rng = ctx.rng("ablation", label)
    rates = firing_rates(codes[tr])  # on the training part, like the ranking
    base_ok = _accuracy_ok(codes, y, tr, te, np.arange(d), cfg.probe)
    section: dict[str, Any] = {"baseline_accuracy": float(base_ok.mean()), "ablations": {}}
    stats: dict[str, Any] = {
        "baseline": (base_ok.mean(), mean_ci(base_ok, s.n_boot, rng, s.confidence))
    }
    for k in sorted({min(int(k), d) for k in cfg.ks if int(k) > 0}):
        top = order[:k]
        without = _accuracy_ok(codes, y, tr, te, order[k:], cfg.probe)
        only = _accuracy_ok(codes, y, tr, te, top, cfg.probe)
        rand_without, rand_only = [], []
        for _ in range(max(1, cfg.random_repeats)):
            pick = matched_random(rates, top, rng)
            rest = np.setdiff1d(np.arange(d), pick)
            rand_without.append(_accuracy_ok(codes, y, tr, te, rest, cfg.probe))
            rand_only.append(_accuracy_ok(codes, y, tr, te, pick, cfg.probe))
        rw, ro = np.mean(rand_without, axis=0), np.mean(rand_only, axis=0)
        drop = base_ok.astype(float) - without
        section["ablations"][str(k)] = {
            "acc_without_top_k": float(without.mean()),
            "acc_only_top_k": float(only.mean()),
            "necessity_drop": float(drop.mean()),
            "sufficiency_retained": float(only.mean()),
            "sufficiency_ratio": float(only.mean() / max(base_ok.mean(), 1e-12)),
            "random_acc_without_k": float(rw.mean()),
            "random_acc_only_k": float(ro.mean()),
            "necessity_drop_vs_random_p": paired_permutation_pvalue(rw, without, s.n_perm, rng),
            "sufficiency_vs_random_p": paired_permutation_pvalue(only, ro, s.n_perm, rng),
            "random_k_drawn": len(pick),
            "top_k_mean_firing_rate": float(rates[top].mean()),
            "random_mean_firing_rate": float(rates[pick].mean()) if len(pick) else None,
        }
        stats[str(k)] = {
            "necessity_drop": (drop.mean(), mean_ci(drop, s.n_boot, rng, s.confidence)),
            "acc_only_top_k": (only.mean(), mean_ci(only, s.n_boot, rng, s.confidence)),
            "acc_without_top_k": (without.mean(), mean_ci(without, s.n_boot, rng, s.confidence)),
            "random_drop": (
                base_ok.mean() - rw.mean(),
                mean_ci(base_ok - rw, s.n_boot, rng, s.confidence),
            ),
            "random_acc_only_k": (ro.mean(), mean_ci(ro, s.n_boot, rng, s.confidence)),
        }
    section["ranking"] = "inter-class variance of class means on the training part"
    section["random_control"] = (
        "per top latent, one of the 5 latents nearest in log firing rate on the training part, "
        "drawn at random among latents that fire and are not in the top k"
    )
    section["n_test"] = len(te)
    return section, {"stats": stats, "order": order, "n": len(te)}


_DIRECTION = {
    "necessity_drop": "none",
    "acc_only_top_k": "higher",
    "acc_without_top_k": "none",
    "random_drop": "none",
    "random_acc_only_k": "none",
}


OUT = Outputs("ablation")
OUT.scalar("{label}/baseline_accuracy", "higher", "probe accuracy on all latents")
OUT.scalar("{label}/k{k}/acc_only_top_k", "higher", "accuracy on the top k latents only")
OUT.scalar("{label}/k{k}/acc_without_top_k", "none", "accuracy with the top k removed")
OUT.scalar("{label}/k{k}/necessity_drop", "none", "baseline minus accuracy without the top k")
OUT.scalar("{label}/k{k}/random_acc_only_k", "none", "accuracy on k random latents")
OUT.scalar("{label}/k{k}/random_drop", "none", "drop when k random latents are removed")
OUT.array("{label}/ranking", "latents by inter-class variance")
ROWS = OUT.table("{label}", "per k: the ablation numbers")


@register_analysis(
    "ablation",
    AblationConfig,
    "Necessity and sufficiency of the top-k latents per label, against random latents.",
    needs_labels=1,
    order=60,
    outputs=OUT,
)
def run(ctx: Context, cfg: AblationConfig) -> Result:
    r = Result("ablation")
    sections = {}
    for label in ctx.require_labels():
        sec, info = ablate_label(ctx, label, cfg)
        sections[label] = sec
        n = info["n"]
        value, ci = info["stats"]["baseline"]
        r.add(f"{label}/baseline_accuracy", value, "higher", ci, n)
        for k, per in info["stats"].items():
            if k == "baseline":
                continue
            for metric, (v, c) in per.items():
                r.add(f"{label}/k{k}/{metric}", v, _DIRECTION[metric], c, n)
        ks = sorted(int(k) for k in sec["ablations"])
        if ks:
            r.headline += [
                f"{label}/k{ks[-1]}/necessity_drop",
                f"{label}/k{ks[-1]}/random_drop",
                f"{label}/k{ks[0]}/acc_only_top_k",
            ]
        r.arrays[f"{label}/ranking"] = info["order"][: max(cfg.ks, default=0)].astype(np.int64)
        r.tables[label] = [{"k": int(k), **v} for k, v in sec["ablations"].items()]
    r.files["evaluation_results.json#ablation_study"] = sections
    return r
