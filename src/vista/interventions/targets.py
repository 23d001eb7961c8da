"""Which latents an intervention edits: a label's features in importance order, and controls.

Features are chosen on the label's training part only (the held-out images score the edit). With
``select=sdf`` they are the label's SDFs (``sdf`` analysis), taken round-robin over its classes in
each class's importance order, so the first k cover every class and are the most selective ones,
never the k smallest indices (docs/originals.md D17). With ``select=variance`` they are the latents whose class
means vary most (``ablation``'s ranking). The random control draws the same number of latents among
those that fire on the split, other than the ones edited (a dead latent would make it no control).
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


def class_features(ctx: Context, label: str, sdf: SDFConfig) -> dict[int, np.ndarray]:
    """Class -> its SDFs in importance order, selected on the label's training part."""
    tr, _ = ctx.train_test(label)
    codes, y = ctx.encoded.codes, ctx.labels[label]
    found = find_sdfs(codes[tr], y[tr], len(ctx.class_names[label]), sdf)
    return {c: np.asarray(v["features"], dtype=np.int64) for c, v in found.items()}


def ranked_features(
    ctx: Context, label: str, select: str, sdf: SDFConfig
) -> tuple[np.ndarray, str]:
    """The label's latents in the order an intervention takes them, and how they were chosen."""
    if select == "sdf":
        per = class_features(ctx, label, sdf)
        feats = round_robin([per[c] for c in sorted(per)])
        if len(feats):
            return feats, "SDFs (training part), round-robin over classes in importance order"
    tr, _ = ctx.train_test(label)
    order = rank_by_variance(
        ctx.encoded.codes[tr], ctx.labels[label][tr], len(ctx.class_names[label])
    )
    alive = ctx.encoded.firing_counts[order] > 0
    how = "inter-class variance of class means (training part)"
    if select == "sdf":
        how += "; the label has no SDFs"
    return order[alive], how


def random_features(
    ctx: Context, exclude: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` latents that fire on the split and are not in ``exclude`` (fewer if too few)."""
    pool = np.setdiff1d(np.flatnonzero(ctx.encoded.firing_counts > 0), exclude)
    return np.sort(rng.choice(pool, size=min(k, len(pool)), replace=False)) if len(pool) else pool


def class_means(
    codes: Any, y: np.ndarray, rows: np.ndarray, c: int, feats: np.ndarray
) -> np.ndarray:
    """Mean code of ``feats`` over the ``rows`` of class ``c``."""
    from vista.interventions.ops import dense

    sel = rows[y[rows] == c]
    return dense(codes[sel], feats).mean(axis=0) if len(sel) else np.zeros(len(feats))
