"""How an edit changed what a vision-language model says (``generate``): keyword detection rates
per label and class, VQA accuracy per question and the causal effect, each a paired difference
with its interval, and BERTScore of edited against original captions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.result import Result
from vista.interventions import text
from vista.interventions.scoring import effect
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


def caption_effects(
    ctx: Context,
    target: str,
    y: dict[str, np.ndarray],
    orig: list[str],
    mod: list[str],
    mode: str,
    r: Result,
) -> dict[str, Any]:
    """Per label, the keyword detection rate of the original and the edited captions and their
    paired difference; per class of ``target``, the same. Scalars and tables go into ``r``; the
    return value is the ``caption_metrics`` section of the original ``eval_`` file."""
    s = ctx.settings
    doc: dict[str, Any] = {}
    for label in ctx.require_labels():
        words = text.keywords(label, ctx.class_names[label])
        h0, h1 = text.hits(orig, words), text.hits(mod, words)
        e = effect(h1.astype(float) - h0, ctx, "generate", mode, label)
        r.add(f"{mode}/{label}/dcr_original", h0.mean(), "none", n=len(h0))
        r.add(f"{mode}/{label}/dcr_modified", h1.mean(), "none", n=len(h1))
        r.add(f"{mode}/{label}/dcr_delta", e.value, "none", (e.low, e.high), e.n)
        row = {
            "mode": mode,
            "attribute": label,
            "dcr_original": float(h0.mean()),
            "dcr_modified": float(h1.mean()),
            **e.row(),
        }
        r.tables.setdefault("dcr", []).append(row)
        doc[label] = {
            "dcr_original": row["dcr_original"],
            "dcr_modified": row["dcr_modified"],
            "dcr_delta": e.value,
            "ci": [e.low, e.high],
            "p_value": e.p,
        }
    words = text.keywords(target, ctx.class_names[target])
    h0, h1 = text.hits(orig, words), text.hits(mod, words)
    for c, name in enumerate(ctx.class_names[target]):
        sel = y[target] == c
        if sel.any():
            d = h1[sel].astype(float) - h0[sel]
            lo, hi = mean_ci(d, s.n_boot, ctx.rng("generate", mode, c), s.confidence)
            r.tables.setdefault("dcr_per_class", []).append(
                {
                    "mode": mode,
                    "class": name,
                    "dcr_original": float(h0[sel].mean()),
                    "dcr_modified": float(h1[sel].mean()),
                    "delta": float(d.mean()),
                    "ci": [lo, hi],
                    "n": int(sel.sum()),
                }
            )
    return {"caption_metrics": doc}


def vqa_effects(
    ctx: Context,
    y: dict[str, np.ndarray],
    prompts: list[tuple[str, str, str]],
    orig: dict[str, list[str]],
    mod: dict[str, list[str]],
    mode: str,
    r: Result,
) -> dict[str, Any]:
    """Per question, the accuracy of the original and the edited answers and their paired
    difference; the causal effect (demographic minus control questions, per image) into ``r``."""
    per_q: dict[str, Any] = {}
    demo: list[np.ndarray] = []
    ctrl: list[np.ndarray] = []
    for key, kind, _ in prompts:
        if kind == "control":
            a0, a1 = text.answered(orig[key]), text.answered(mod[key])
        else:
            syn = text.synonyms(kind, ctx.class_names[kind])
            a0, a1 = text.correct(orig[key], y[kind], syn), text.correct(mod[key], y[kind], syn)
        d = a1.astype(float) - a0
        (ctrl if kind == "control" else demo).append(d)
        e = effect(d, ctx, "generate-vqa", mode, key)
        per_q[key] = {
            "type": "control" if kind == "control" else "demographic",
            "attribute": kind,
            "acc_original": float(a0.mean()),
            "acc_modified": float(a1.mean()),
            "delta": e.value,
            "ci": [e.low, e.high],
            "p_value": e.p,
            "n": e.n,
        }
        r.tables.setdefault("vqa", []).append({"mode": mode, "question": key, **per_q[key]})
    aggregate: dict[str, Any] = {}
    if demo and ctrl:
        per_image = np.mean(demo, axis=0) - np.mean(ctrl, axis=0)
        e = effect(per_image, ctx, "generate-causal", mode)
        r.add(f"{mode}/causal_effect", e.value, "none", (e.low, e.high), e.n)
        aggregate = {
            "causal_effect": e.value,
            "ci": [e.low, e.high],
            "p_value": e.p,
            "mean_delta_demographic": float(np.mean(demo)),
            "mean_delta_control": float(np.mean(ctrl)),
        }
    return {"vqa_metrics": per_q, "aggregate": aggregate}


def bertscore(candidates: list[str], references: list[str], model: str) -> dict[str, float]:
    """BERTScore of ``candidates`` against ``references`` with a local model (bert-score)."""
    from vista.errors import VistaError

    try:
        from bert_score import score
    except ImportError:
        raise VistaError(
            "BERTScore needs the bert-score package (pip install bert-score)"
        ) from None
    p, rec, f1 = score(
        candidates, references, model_type=model, num_layers=None, lang="en", verbose=False
    )
    return {
        "precision": float(p.mean()),
        "recall": float(rec.mean()),
        "f1": float(f1.mean()),
        "f1_std": float(f1.std()),
    }
