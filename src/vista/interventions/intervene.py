"""``intervene``: suppress, scale, steer and erase a label's features in the stored embeddings, with
the controls that separate the targeted effect from the SAE's reconstruction error and from chance
(docs/originals.md §4.5, D17, D18). See ``vista.interventions`` for each mode and docs/interventions.md.

For every target label (each usable label in turn unless ``intervene.targets`` names some), every
attribute of the split is read by a fixed and a fresh probe before and after each edit; each effect
is a paired per-image contrast with a bootstrap interval and a permutation p-value. The headline is
the decomposition ``total = reconstruction_error + targeted + interaction`` of suppressing the
label's top-k features, next to the noise and random-feature controls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.probing import ProbeConfig
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.analysis.sdf import SDFConfig
from vista.interventions import erasure, steering
from vista.interventions.edits import Edits, contrasts
from vista.interventions.scoring import Effect, Scorer, effect
from vista.interventions.tables import decomposition_rows, effect_rows, legacy
from vista.interventions.targets import class_features, match_quality, ranked_features

if TYPE_CHECKING:
    from vista.analysis.context import Context

MODES = (
    "passthrough", "noise", "random", "suppression", "amplification", "attenuation",
    "steering", "sp_topk", "leace",
)  # fmt: skip


@dataclass
class InterveneConfig:
    modes: list[str] = field(default_factory=lambda: list(MODES))
    """Any of: passthrough, noise, random, suppression, amplification, attenuation, steering,
    sp_topk, leace. suppression brings its controls (passthrough, noise, random) along."""
    targets: list[str] = field(default_factory=list)
    """Labels whose features are edited, each in turn (empty = every usable label)."""
    select: str = "sdf"
    """How a label's features are ranked: sdf (importance-ranked SDFs) or variance."""
    ks: list[int] = field(default_factory=lambda: [10, 50])
    """Numbers of top features suppressed (capped at the label's selection)."""
    random_seeds: int = 3
    """Random feature sets per k in the random control (their effects are averaged per image)."""
    noise_std: float = 0.0
    """Noise control's standard deviation per token and dimension (0 = the SAE's measured
    reconstruction-error scale)."""
    amplify_alphas: list[float] = field(default_factory=lambda: [2.0, 5.0])
    attenuate_alphas: list[float] = field(default_factory=lambda: [0.5])
    scale_k: int = 0
    """Features scaled by amplification/attenuation (0 = the largest of ``ks``)."""
    steer_method: str = "mean"
    """mean (move features toward the target class's mean) or scale (VISTA's 1 -/+ alpha)."""
    steer_alphas: list[float] = field(default_factory=lambda: [0.5, 1.0])
    steer_k: int = 10
    """SDFs per class used for steering."""
    steer_max_pairs: int = 90
    """Ordered class pairs steered per label (drawn at random beyond this)."""
    keep_error: bool = True
    """Steering: put the SAE's reconstruction error back (only the edit changes the embedding)."""
    sp_ks: list[int] = field(default_factory=lambda: [16, 32, 64])
    sp_alphas: list[float] = field(default_factory=lambda: [0.5, 1.0])
    sp_selection: str = "variance"
    """S&P Top-K's latents: variance (top inter-class variance) or sdf (the ranked selection)."""
    fresh_reader: str = "lda"
    """The fresh reader retrained on each edit: lda (shrinkage LDA, one solve) or logistic (the
    fixed probe's logistic regression, refitted; VISTA's choice, about 30x slower)."""
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(max_iter=300))
    """The fixed probe (and the logistic fresh reader)."""
    sdf: SDFConfig = field(default_factory=SDFConfig)
    """How SDFs are found (select=sdf, steering)."""


def _needs(cfg: InterveneConfig) -> str:
    bad = [m for m in cfg.modes if m not in MODES]
    if bad:
        return f"unknown intervene.modes {bad} (choose from {', '.join(MODES)})"
    if cfg.select not in ("sdf", "variance") or cfg.sp_selection not in ("sdf", "variance"):
        return "intervene.select and intervene.sp_selection take sdf or variance"
    if cfg.fresh_reader not in ("lda", "logistic"):
        return f"unknown intervene.fresh_reader {cfg.fresh_reader!r} (lda or logistic)"
    if cfg.steer_method not in ("mean", "scale"):
        return f"unknown intervene.steer_method {cfg.steer_method!r} (mean or scale)"
    return ""


def _suppression(
    edits: Edits, t: str, ranked: np.ndarray, selected: np.ndarray, cfg: InterveneConfig, r: Result
) -> None:
    """Decomposition per k, with the controls; scalars, tables and VISTA's documents.
    ``selected``: every label's selection, which the random control never draws from."""
    docs: dict[str, dict[str, Any]] = {m: {} for m in ("suppression", "random")}
    o_p, c_p = edits.passthrough()
    o_n, c_n = edits.noise()
    for k in sorted({min(int(k), len(ranked)) for k in cfg.ks if int(k) > 0}):
        feats = ranked[:k]
        o_s, c_s = edits.scaled(feats, 0.0, False, f"{t}/top{k}")
        o_se, _ = edits.scaled(feats, 0.0, True, f"{t}/top{k}")
        o_r, c_r, sets = edits.randoms(selected, feats, cfg.random_seeds, False, t)
        o_re, _, _ = edits.randoms(selected, feats, cfg.random_seeds, True, t)
        outcomes = {"passthrough": o_p, "noise": o_n, "suppressed": o_s, "suppressed_kept": o_se,
                    "random": o_r, "random_kept": o_re}  # fmt: skip
        parts = contrasts(edits, outcomes, f"{t}/{k}")
        r.tables.setdefault(f"{t}/decomposition", []).extend(decomposition_rows(parts, t, k))
        for reader in ("fresh", "fixed"):
            for comp, per in parts.items():
                e = per[t][reader]
                r.add(f"{t}/k{k}/{reader}/{comp}", e.value, "none", (e.low, e.high), e.n)
            sel = selectivity(edits, outcomes["suppressed_kept"], t, reader, f"{t}/{k}")
            if sel is not None:
                r.add(f"{t}/k{k}/{reader}/selectivity", sel.value, "higher", (sel.low, sel.high),
                      sel.n)  # fmt: skip
        rows = effect_rows(edits, t, "suppression", o_s, c_s, k=k)
        rows_r = effect_rows(edits, t, "random", o_r, c_r, k=k)
        r.tables.setdefault(f"{t}/effects", []).extend(rows + rows_r)
        r.add(f"{t}/k{k}/cosine", float(c_s.mean()), "none", n=len(c_s))
        match = [match_quality(edits.ctx, feats, s) for s in sets]
        control = {
            "sets": [s.tolist() for s in sets],
            **{m: float(np.mean([q[m] for q in match])) for m in match[0]},
        }
        r.metadata.setdefault("random_control", {}).setdefault(t, {})[f"k={k}"] = control
        docs["suppression"][f"k={k}"] = {"features": feats.tolist(), **legacy(rows)}
        docs["random"][f"k={k}"] = {"seeds": cfg.random_seeds, **control, **legacy(rows_r)}
    last = list(docs["suppression"])[-1] if docs["suppression"] else ""
    if last:
        k = int(last.split("=")[1])
        r.headline += [f"{t}/k{k}/fresh/{c}" for c in ("total", "targeted")]
    for mode, outcome, cos in (("passthrough", o_p, c_p), ("noise", o_n, c_n)):
        rows = effect_rows(edits, t, mode, outcome, cos)
        r.tables.setdefault(f"{t}/effects", []).extend(rows)
        r.files[f"intervention_{mode}_results.json#{t}"] = legacy(rows)
    for mode, doc in docs.items():
        r.files[f"intervention_{mode}_results.json#{t}"] = doc


def selectivity(
    edits: Edits, kept: dict[str, dict[str, np.ndarray]], t: str, reader: str, key: str
) -> Effect | None:
    """The targeted effect on the other labels (their mean) minus that on ``t``, per image of
    the held-out part that carries every label, with its paired interval; None without another
    label or such an image."""
    attrs = edits.scorer.attrs
    if len(attrs) < 2:
        return None
    common = attrs[t].test
    for a in attrs.values():
        common = np.intersect1d(common, a.test)
    if not len(common):
        return None

    def targeted(a: str) -> np.ndarray:
        at = np.searchsorted(attrs[a].test, common)
        return (kept[a][reader] - edits.base(a, reader))[at]

    others = np.mean([targeted(a) for a in attrs if a != t], axis=0)
    return effect(others - targeted(t), edits.ctx, key, "selectivity", reader)


def _scaling(edits: Edits, t: str, ranked: np.ndarray, cfg: InterveneConfig, r: Result) -> None:
    """Dose-response of amplification and attenuation: decoded, and with the error kept."""
    k = min(cfg.scale_k or max(cfg.ks, default=10), len(ranked))
    feats = ranked[:k]
    for mode, alphas in (
        ("amplification", cfg.amplify_alphas),
        ("attenuation", cfg.attenuate_alphas),
    ):
        if mode not in cfg.modes:
            continue
        doc: dict[str, Any] = {}
        for alpha in alphas:
            for keep in (False, True):
                o, c = edits.scaled(feats, float(alpha), keep, f"{t}/top{k}")
                cond = f"{mode}{'_error_kept' if keep else ''}"
                rows = effect_rows(edits, t, cond, o, c, k=k, alpha=float(alpha))
                r.tables.setdefault(f"{t}/dose_response", []).extend(rows)
                doc[f"alpha={alpha}" + ("/error_kept" if keep else "")] = legacy(rows)
                e = next(x for x in rows if x["role"] == "target" and x["reader"] == "fixed")
                r.add(
                    f"{t}/{cond}/alpha{alpha}/fixed/delta",
                    e["delta"],
                    "none",
                    tuple(e["ci"]),
                    e["n"],
                )
        r.files[f"intervention_{mode}_results.json#{t}"] = {"k": k, **doc}


def _erasure(edits: Edits, t: str, ranked: np.ndarray, cfg: InterveneConfig, r: Result) -> None:
    """LEACE and S&P Top-K (with its random-axis control)."""
    if "leace" in cfg.modes:
        o, c = erasure.leace(edits, t)
        rows = effect_rows(edits, t, "leace", o, c)
        r.tables.setdefault(f"{t}/erasure", []).extend(rows)
        r.files[f"intervention_leace_results.json#{t}"] = legacy(rows)
        e = next(x for x in rows if x["role"] == "target" and x["reader"] == "fresh")
        r.add(f"{t}/leace/fresh/delta", e["delta"], "none", tuple(e["ci"]), e["n"])
        r.add(f"{t}/leace/fresh/acc_after", e["acc_after"], "none", n=e["n"])
    if "sp_topk" in cfg.modes:
        doc: dict[str, Any] = {}
        for k, alpha, o, c in erasure.sp_topk(edits, t, ranked, cfg.sp_ks, cfg.sp_alphas):
            cond = "sp_topk" if k else "sp_random_axis"
            rows = effect_rows(edits, t, cond, o, c, k=k, alpha=alpha)
            r.tables.setdefault(f"{t}/erasure", []).extend(rows)
            doc[f"k={k}/alpha={alpha}" if k else "random_axis"] = legacy(rows)
        r.files[f"intervention_sp_topk_results.json#{t}"] = doc


def _steering(edits: Edits, t: str, cfg: InterveneConfig, r: Result, rows: np.ndarray) -> None:
    per_class = class_features(edits.ctx, t, cfg.sdf, rows)
    selected = np.unique(np.concatenate([*per_class.values(), np.zeros(0, np.int64)]))
    res = steering.steer_label(edits, t, per_class, selected, cfg)
    r.tables[f"{t}/steering"] = res["rows"]
    r.tables[f"{t}/steering_summary"] = res["summary"]
    doc: dict[str, Any] = {"method": cfg.steer_method}
    for row in res["rows"]:
        key = f"{row['src']}->{row['tgt']}"
        doc.setdefault(f"alpha={row['alpha']}", {})[key] = {
            k: row[k]
            for k in (
                "steering_success_rate",
                "original_target_rate",
                "delta",
                "random_success_rate",
                "n",
            )
        }
    r.files[f"intervention_steering_results.json#{t}"] = doc
    for s in res["summary"]:
        a = s["alpha"]
        r.add(
            f"{t}/steering/alpha{a}/success_rate",
            s["success_rate"],
            "none",
            tuple(s["success_ci"]),
            s["n_pairs"],
        )
        r.add(
            f"{t}/steering/alpha{a}/delta", s["delta"], "none", tuple(s["delta_ci"]), s["n_pairs"]
        )
        r.add(
            f"{t}/steering/alpha{a}/random_delta",
            s["random_delta"],
            "none",
            tuple(s["random_delta_ci"]),
            s["n_pairs"],
        )


OUT = Outputs("intervene")
OUT.scalar("{label}/k{k}/{probe}/{component}", "none", "a part of the suppression effect")
OUT.scalar(
    "{label}/k{k}/{probe}/selectivity",
    "higher",
    "the targeted effect on the other labels minus that on the label (paired, per image)",
)
OUT.scalar("{label}/k{k}/cosine", "none", "cosine of edited and original embeddings")
OUT.scalar("{label}/{mode}/alpha{alpha}/fixed/delta", "none", "accuracy change of a scaled edit")
OUT.scalar("{label}/leace/fresh/delta", "none", "accuracy change after LEACE erasure")
OUT.scalar("{label}/leace/fresh/acc_after", "none", "accuracy after LEACE erasure")
OUT.scalar(
    "{label}/steering/alpha{alpha}/success_rate", "none", "steered images read as the target"
)
OUT.scalar("{label}/steering/alpha{alpha}/delta", "none", "target probability change")
OUT.scalar("{label}/steering/alpha{alpha}/random_delta", "none", "the same for random directions")
RANKED = OUT.array("{label}/ranked_features", "latents in targeting order")
DECOMPOSITION = OUT.table("{label}/decomposition", "the suppression effect split into its parts")
OUT.table("{label}/effects", "per k and probe: every effect with interval")
OUT.table("{label}/dose_response", "per alpha: the scaled edits")
ERASURE = OUT.table("{label}/erasure", "LEACE and S&P erasure rows")
OUT.table("{label}/steering", "per class pair and alpha: steering rows")
STEERING_SUMMARY = OUT.table("{label}/steering_summary", "per alpha: steering summary")


@register_analysis(
    "intervene",
    InterveneConfig,
    "Suppress, scale, steer and erase each label's features, with passthrough, noise and random controls.",
    needs_labels=1,
    needs=_needs,
    order=180,
    outputs=OUT,
)
def run(ctx: Context, cfg: InterveneConfig) -> Result:
    r = Result("intervene")
    labels = ctx.require_labels()
    targets = ctx.pick_labels(list(cfg.targets)) if cfg.targets else labels
    # One held-out part for every label of the call: what selects a target's features never
    # scores another label, and every effect of one edit is measured on the same images.
    parts = ctx.joint_train_test(labels)
    scorer = Scorer(ctx, ctx.encoded.pooled_raw.astype(np.float64), labels, cfg.probe,
                    cfg.fresh_reader, parts)  # fmt: skip
    edits = Edits.build(ctx, scorer, cfg.noise_std)
    r.metadata["noise_sigma"] = edits.sigma
    r.metadata["split"] = {"n_train": len(parts[0]), "n_held_out": len(parts[1])}
    modes = set(cfg.modes)
    top = max([int(k) for k in cfg.ks if int(k) > 0], default=0)
    ranking = {n: ranked_features(ctx, n, cfg.select, cfg.sdf, parts[0]) for n in labels}
    selected = np.unique(np.concatenate([ranking[n][0][:top] for n in labels]))
    for t in targets:
        ranked, how = ranking[t]
        r.metadata.setdefault("selection", {})[t] = {"how": how, "n_selected": len(ranked)}
        r.arrays[f"{t}/ranked_features"] = ranked.astype(np.int64)
        if modes & {"suppression", "random", "passthrough", "noise"}:
            _suppression(edits, t, ranked, selected, cfg, r)
        _scaling(edits, t, ranked, cfg, r)
        if "steering" in modes:
            _steering(edits, t, cfg, r, parts[0])
        sp_ranked = (
            ranked
            if cfg.sp_selection == "sdf"
            else ranked_features(ctx, t, "variance", cfg.sdf, parts[0])[0]
        )
        _erasure(edits, t, sp_ranked, cfg, r)
    return r
