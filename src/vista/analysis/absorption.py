"""``absorption``: feature absorption (SAEBench) on hierarchical vision labels.

A hierarchy groups a label's classes into parent classes (digit -> parity or "has a loop"; FairFace
age bins -> child / adult / senior). For each parent class: a balanced logistic probe on the raw
per-image activations gives the concept's direction ``w``; the "main" latents are the top latents
of k-sparse probing (k grows while the held-out F1 gains more than 0.03, at most 10). On held-out
images the probe gets right, a latent *absorbs* the concept when it is active, is not a main latent
and its decoder row points along ``w`` (cosine >= 0.1):

- ``absorption_fraction``: the projection onto ``w`` of up to three absorbing latents over that of
  the absorbing and main latents together, averaged over those images;
- ``full_absorption``: share of those images where every main latent is silent and one latent with
  cosine >= 0.025 supplies at least 40% of the activation's projection onto ``w``;
- ``num_split_features``: the number of main latents.
Lower is better for all three (SAEBench's JSON convention; its plots show 1 - x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.latent_effects import fit_direction
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result, Skip
from vista.analysis.sparse_probing import balanced_task
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context

LOOPS = ["0", "6", "8", "9"]
DEFAULT_HIERARCHIES: list[dict[str, Any]] = [
    {
        "label": "digit",
        "name": "parity",
        "groups": {"even": ["0", "2", "4", "6", "8"], "odd": ["1", "3", "5", "7", "9"]},
    },
    {
        "label": "digit",
        "name": "loop",
        "groups": {"loop": LOOPS, "no_loop": ["1", "2", "3", "4", "5", "7"]},
    },
    {
        "label": "age",
        "name": "coarse_age",
        "groups": {
            "child": ["0-2", "3-9", "10-19"],
            "adult": ["20-29", "30-39", "40-49"],
            "senior": ["50-59", "60-69", "70+"],
        },
    },
]


@dataclass
class AbsorptionConfig:
    hierarchies: list[Any] = field(default_factory=lambda: [dict(h) for h in DEFAULT_HIERARCHIES])
    """``{label, name, groups: {parent: [child class names]}}``; those whose label is absent are skipped."""
    max_k: int = 10
    f1_gain: float = 0.03
    max_images: int = 4000


def parent_labels(
    y: np.ndarray, names: list[str], groups: dict[str, list[str]]
) -> np.ndarray | None:
    """Parent class per image (-1 for a child in no group); None if a child name is unknown."""
    lookup = {n: i for i, n in enumerate(names)}
    out = np.full(len(y), -1)
    for g, (_, children) in enumerate(groups.items()):
        if any(c not in lookup for c in children):
            return None
        out[np.isin(y, [lookup[c] for c in children])] = g
    return out


def main_latents(
    codes: Any, t: np.ndarray, tr: np.ndarray, te: np.ndarray, cfg: AbsorptionConfig
) -> np.ndarray:
    """k-sparse probing: the top-k latents by mean difference, k grown while F1 gains > f1_gain."""
    from sklearn.metrics import f1_score

    diff = np.asarray(codes[tr][t[tr]].mean(axis=0) - codes[tr][~t[tr]].mean(axis=0)).ravel()
    order = np.argsort(-diff, kind="stable")
    best, k = -1.0, 1
    for k_try in range(1, cfg.max_k + 1):
        cols = np.sort(order[:k_try])
        x_tr, x_te = _dense(codes[tr][:, cols]), _dense(codes[te][:, cols])
        model, _ = fit_direction(x_tr, t[tr])
        score = float(f1_score(t[te], model.predict(x_te), zero_division=0))
        if score - best <= cfg.f1_gain and k_try > 1:
            break
        best, k = score, k_try
    return order[:k]


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def absorption_task(
    ctx: Context, parent: np.ndarray, g: int, cfg: AbsorptionConfig, label: str
) -> dict[str, float]:
    enc = ctx.encoded
    tr_all, te_all = ctx.train_test(label)
    rng = ctx.rng("absorption", label, g)
    tr = balanced_task(tr_all, parent, g, rng, cfg.max_images)
    te = balanced_task(te_all, parent, g, rng, cfg.max_images)
    t = parent == g
    probe, w = fit_direction(enc.pooled_raw[tr], t[tr])
    w_unit = w / max(float(np.linalg.norm(w)), 1e-12)
    main = main_latents(enc.codes, t, tr, te, cfg)
    w_dec = ctx.sae.W_dec.detach().cpu().double().numpy()
    cos = (w_dec / np.maximum(np.linalg.norm(w_dec, axis=1, keepdims=True), 1e-12)) @ w_unit
    tp = te[(probe.predict(enc.pooled_raw[te]) == 1) & t[te]]
    c = enc.codes[tp]
    c = np.asarray(c.toarray() if hasattr(c, "toarray") else c, dtype=np.float64)
    proj = c * (w_dec @ w_unit)[None, :]  # each latent's contribution along w
    main_proj = proj[:, main].sum(axis=1)
    others = np.ones(c.shape[1], dtype=bool)
    others[main] = False
    absorbing = np.where((c > 0) & others[None, :] & (cos[None, :] >= 0.1), proj, 0.0)
    abs_proj = np.sort(absorbing, axis=1)[:, ::-1][:, :3].clip(min=0).sum(axis=1)
    denom = abs_proj + np.clip(main_proj, 0, None)
    fraction = np.where(denom > 0, abs_proj / np.where(denom > 0, denom, 1), 0.0)
    silent = (c[:, main] == 0).all(axis=1)
    act_proj = (
        enc.pooled_raw[tp].astype(np.float64) - ctx.sae.b_dec.detach().cpu().double().numpy()
    ) @ w_unit
    single = np.where((c > 0) & others[None, :] & (cos[None, :] >= 0.025), proj, 0.0).max(
        axis=1, initial=0.0
    )
    full = silent & (single >= 0.4 * np.maximum(act_proj, 1e-12))
    return {
        "absorption_fraction": float(fraction.mean()) if len(tp) else float("nan"),
        "full_absorption": float(full.mean()) if len(tp) else float("nan"),
        "num_split_features": float(len(main)),
        "n_true_positives": len(tp),
    }


OUT = Outputs("absorption")
FRACTION = OUT.scalar("mean_absorption_fraction_score", "lower", "mean absorption fraction")
OUT.scalar("mean_full_absorption_score", "lower", "mean full-absorption rate")
OUT.scalar("mean_num_split_features_score", "lower", "mean number of split features")
OUT.table("tasks", "per class: absorption numbers")


@register_analysis(
    "absorption",
    AbsorptionConfig,
    "Feature absorption on hierarchical labels (parity, loops, coarse age): lower is better.",
    needs_labels=1,
    order=170,
    outputs=OUT,
)
def run(ctx: Context, cfg: AbsorptionConfig) -> Result:
    usable = ctx.require_labels()
    r = Result("absorption")
    rows = []
    for h in cfg.hierarchies:
        label, name, groups = h.get("label"), h.get("name", "parent"), dict(h.get("groups", {}))
        if label not in usable:
            r.skipped[f"{label}->{name}"] = (
                f"label {label!r} is not in the store (or has one class)"
            )
            continue
        parent = parent_labels(ctx.labels[label], ctx.class_names[label], groups)
        if parent is None:
            r.skipped[f"{label}->{name}"] = f"its groups name classes that {label!r} does not have"
            continue
        for g, pname in enumerate(groups):
            rows.append(
                {
                    "hierarchy": f"{label}->{name}",
                    "parent": pname,
                    **absorption_task(ctx, parent, g, cfg, label),
                }
            )
    if not rows:
        raise Skip("no hierarchy applies to this store's labels (absorption.hierarchies)")
    r.tables["tasks"] = rows
    s = ctx.settings
    for key in ("absorption_fraction", "full_absorption", "num_split_features"):
        vals = np.array([row[key] for row in rows if np.isfinite(row[key])])
        r.add(
            f"mean_{key}_score",
            float(vals.mean()) if len(vals) else float("nan"),
            "lower",
            mean_ci(vals, s.n_boot, ctx.rng("absorption", key), s.confidence),
            len(vals),
        )
    r.headline = ["mean_absorption_fraction_score", "mean_full_absorption_score"]
    return r
