"""Which latents an intervention edits: a label's features in importance order, and controls.

Features are chosen on the label's training part only (the held-out images score the edit). With
``select=sdf`` they are the label's SDFs (``sdf`` analysis), taken round-robin over its classes in
each class's importance order, so the first k cover every class and are the most selective ones,
never the k smallest indices (docs/originals.md D17). With ``select=variance`` they are the latents whose class
means vary most (``ablation``'s ranking). The random control draws, for each edited latent, a
stand-in among the latents that fire on the split and belong to no label's selection (so it takes
no other label's features away), matched in firing rate and in the norm it removes (a dead or a
faint latent would make it no control).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.ablation import rank_by_variance
from vista.analysis.sdf import SDFConfig, find_sdfs

if TYPE_CHECKING:
    from vista.analysis.context import Context


def round_robin(per_class: list[np.ndarray]) -> np.ndarray:
    """Interleave the classes' lists (first of each, then second of each, ...), no repeats."""
    out: list[int] = []
    seen: set[int] = set()
    depth = max((len(f) for f in per_class), default=0)
    for i in range(depth):
        for feats in per_class:
            if i < len(feats) and int(feats[i]) not in seen:
                seen.add(int(feats[i]))
                out.append(int(feats[i]))
    return np.asarray(out, dtype=np.int64)


def class_features(
    ctx: Context, label: str, sdf: SDFConfig, rows: np.ndarray | None = None
) -> dict[int, np.ndarray]:
    """Class -> its SDFs in importance order, selected on the images ``rows`` that carry the
    label (default: the label's training part)."""
    tr = ctx.train_test(label)[0] if rows is None else rows[ctx.labels[label][rows] >= 0]
    codes, y = ctx.encoded.codes, ctx.labels[label]
    found = find_sdfs(codes[tr], y[tr], len(ctx.class_names[label]), sdf)
    return {c: np.asarray(v["features"], dtype=np.int64) for c, v in found.items()}


def ranked_features(
    ctx: Context, label: str, select: str, sdf: SDFConfig, rows: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """The label's latents in the order an intervention takes them, and how they were chosen
    (on ``rows``, as ``class_features``)."""
    if select == "sdf":
        per = class_features(ctx, label, sdf, rows)
        feats = round_robin([per[c] for c in sorted(per)])
        if len(feats):
            return feats, "SDFs (training part), round-robin over classes in importance order"
    tr = ctx.train_test(label)[0] if rows is None else rows[ctx.labels[label][rows] >= 0]
    order = rank_by_variance(
        ctx.encoded.codes[tr], ctx.labels[label][tr], len(ctx.class_names[label])
    )
    alive = ctx.encoded.firing_counts[order] > 0
    how = "inter-class variance of class means (training part)"
    if select == "sdf":
        how += "; the label has no SDFs"
    return order[alive], how


def latent_profile(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Per latent: its firing rate over the split's tokens, and the norm it removes from an
    image's embedding when zeroed, on average (mean |pooled code| x its decoder row's norm)."""
    enc = ctx.encoded
    rate = enc.firing_counts / max(1, enc.n_images * enc.tokens_per_image)
    mean_abs = np.asarray(abs(enc.codes).mean(axis=0), dtype=np.float64).ravel()
    w_norm = ctx.sae.W_dec.detach().double().norm(dim=1).cpu().numpy()
    return rate, mean_abs * w_norm


MATCH_WIDTH = 5
"""A targeted latent's random stand-in is drawn among this many nearest latents of the pool."""


def random_features(
    ctx: Context,
    exclude: np.ndarray,
    k: int,
    rng: np.random.Generator,
    like: np.ndarray | None = None,
) -> np.ndarray:
    """``k`` latents that fire on the split and are not in ``exclude`` (fewer if too few).

    With ``like`` (the targeted latents), one stand-in per targeted latent, matched in firing
    rate and in the norm it removes: each is drawn among the ``MATCH_WIDTH`` latents of the pool
    nearest to its target in (log rate, log removed norm), taking the targets in random order and
    never one latent twice. Otherwise ``k`` latents uniformly from the pool."""
    pool = np.setdiff1d(np.flatnonzero(ctx.encoded.firing_counts > 0), exclude)
    if not len(pool):
        return pool
    if like is None or not len(like):
        return np.sort(rng.choice(pool, size=min(k, len(pool)), replace=False))
    rate, removed = latent_profile(ctx)
    tiny = np.finfo(np.float64).tiny
    key = np.stack([np.log10(rate + tiny), np.log10(removed + tiny)], axis=1)
    key /= key[pool].std(axis=0).clip(min=1e-12)  # both coordinates on the pool's scale
    free = np.ones(len(pool), dtype=bool)
    chosen = []
    for f in rng.permutation(np.asarray(like)[: min(k, len(pool))]):
        cand = np.flatnonzero(free)
        dist = np.abs(key[pool[cand]] - key[f]).sum(axis=1)
        pick = cand[rng.choice(np.argsort(dist, kind="stable")[:MATCH_WIDTH])]
        free[pick] = False
        chosen.append(pool[pick])
    return np.sort(np.asarray(chosen, dtype=np.int64))


def match_quality(ctx: Context, targeted: np.ndarray, random: np.ndarray) -> dict[str, float]:
    """How a random set matches the targeted one: geometric-mean firing rate and total removed
    norm, random over targeted (1 = matched)."""
    rate, removed = latent_profile(ctx)
    tiny = np.finfo(np.float64).tiny

    def gmean(v: np.ndarray) -> float:
        return float(np.exp(np.log(v + tiny).mean())) if len(v) else float("nan")

    return {
        "rate_ratio": gmean(rate[random]) / max(gmean(rate[targeted]), tiny),
        "removed_norm_ratio": float(removed[random].sum() / max(removed[targeted].sum(), tiny)),
    }


def class_means(
    codes: Any, y: np.ndarray, rows: np.ndarray, c: int, feats: np.ndarray
) -> np.ndarray:
    """Mean code of ``feats`` over the ``rows`` of class ``c``."""
    from vista.interventions.ops import dense

    sel = rows[y[rows] == c]
    return dense(codes[sel], feats).mean(axis=0) if len(sel) else np.zeros(len(feats))
