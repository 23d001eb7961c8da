"""``exemplars``: what each feature looks like — the evidence a feature page shows.

Per latent, from the per-image codes of the shared pass: its ``top_k`` highest-activating images,
images at several quantiles of its non-zero activations (how it looks when it fires weakly), a
histogram of those activations, the label make-up of its top images and its mean activation per
class, and its nearest latents by decoder cosine. For token stores, the per-token activation maps
of the top images of the features a report would open (``max_maps``, ranked by selectivity), read
back from the store for those images only. Row indices refer to the analysed split;
``original_indices`` maps them to the dataset, whose configuration is in the metadata, so a report
can draw thumbnails without opening the store or the SAE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.alignment import class_means, selectivity
from vista.metrics.sdf import column_major

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class ExemplarsConfig:
    top_k: int = 16
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
    """Quantiles of a latent's non-zero activations; three images are kept at each."""
    bins: int = 24
    neighbours: int = 6
    max_maps: int = 2000
    """Token stores: latents whose top images get per-token activation maps."""
    map_images: int = 8


def top_rows(csc: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(d_sae, k)`` rows and values of each column's largest non-zero entries (-1 padded)."""
    nnz = np.diff(csc.indptr)
    col = np.repeat(np.arange(csc.shape[1]), nnz)
    order = np.lexsort((csc.indices, -csc.data, col))
    pos = np.arange(len(order)) - np.repeat(csc.indptr[:-1], nnz)
    keep = pos < k
    rows = np.full((csc.shape[1], k), -1, dtype=np.int64)
    vals = np.zeros((csc.shape[1], k), dtype=np.float32)
    rows[col[keep], pos[keep]] = csc.indices[order][keep]
    vals[col[keep], pos[keep]] = csc.data[order][keep]
    return rows, vals


def quantile_rows(csc: Any, quantiles: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(d_sae, 3 * len(quantiles))``: at each quantile of a column's sorted non-zero values, the
    image there and its two neighbours (-1 where the latent fires too rarely)."""
    nnz = np.diff(csc.indptr)
    col = np.repeat(np.arange(csc.shape[1]), nnz)
    order = np.lexsort((csc.indices, csc.data, col))
    rows_sorted, vals_sorted = csc.indices[order], csc.data[order]
    out_r = np.full((csc.shape[1], 3 * len(quantiles)), -1, dtype=np.int64)
    out_v = np.zeros(out_r.shape, dtype=np.float32)
    for i, q in enumerate(quantiles):
        centre = np.round(q * (nnz - 1)).astype(np.int64)
        for j, off in enumerate((-1, 0, 1)):
            p = centre + off
            ok = (nnz > 0) & (p >= 0) & (p < nnz)
            at = csc.indptr[:-1][ok] + p[ok]
            out_r[ok, 3 * i + j], out_v[ok, 3 * i + j] = rows_sorted[at], vals_sorted[at]
    return out_r, out_v


def histograms(csc: Any, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column, counts of its non-zero values in ``bins`` equal bins over ``(0, max]``."""
    nnz = np.diff(csc.indptr)
    col = np.repeat(np.arange(csc.shape[1]), nnz)
    top = np.zeros(csc.shape[1], dtype=np.float64)
    has = nnz > 0
    top[has] = np.maximum.reduceat(np.abs(csc.data), csc.indptr[:-1][has])
    b = np.clip(
        (np.abs(csc.data) / np.maximum(top[col], 1e-30) * bins).astype(np.int64), 0, bins - 1
    )
    h = np.bincount(col * bins + b, minlength=csc.shape[1] * bins).reshape(-1, bins)
    return h.astype(np.int32), top.astype(np.float32)


def nearest(w_dec: np.ndarray, n: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Each latent's ``n`` nearest other latents by decoder cosine."""
    w = w_dec / np.maximum(np.linalg.norm(w_dec, axis=1, keepdims=True), 1e-12)
    n = min(n, len(w) - 1)
    idx = np.zeros((len(w), n), dtype=np.int64)
    cos = np.zeros((len(w), n), dtype=np.float32)
    for a in range(0, len(w), block):
        sim = w[a : a + block] @ w.T
        sim[np.arange(len(sim)), np.arange(a, a + len(sim))] = -np.inf
        part = np.argpartition(-sim, n - 1, axis=1)[:, :n] if n else np.zeros((len(sim), 0), int)
        vals = np.take_along_axis(sim, part, axis=1)
        o = np.argsort(-vals, axis=1, kind="stable")
        idx[a : a + len(sim)] = np.take_along_axis(part, o, axis=1)
        cos[a : a + len(sim)] = np.take_along_axis(vals, o, axis=1)
    return idx, cos


def token_maps(ctx: Context, feats: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(len(feats), k, T)`` float16 per-token codes of each feature on its top images, read back
    from the store one chunk window at a time (only windows holding a wanted image)."""
    import torch

    from vista.store import ActivationStore

    out = np.zeros((len(feats), rows.shape[1], ctx.info.n_tokens), dtype=np.float16)
    wanted = np.unique(rows[rows >= 0])
    step = max(1, ctx.info.chunk_rows)
    cols = torch.from_numpy(feats)
    with ActivationStore(ctx.store) as st, torch.no_grad():
        for a in np.unique(wanted // step) * step:
            block = np.asarray(st.read_rows(ctx.settings.split, int(a), int(a) + step), np.float32)
            here = wanted[(wanted >= a) & (wanted < a + len(block))]
            x = torch.from_numpy(block[here - a])
            codes = ctx.sae.encode(x.reshape(-1, x.shape[-1])).view(
                len(here), ctx.info.n_tokens, -1
            )
            c = codes[:, :, cols].numpy()  # (images, T, feats)
            for j, r in enumerate(here):
                fi, ki = np.nonzero(rows == r)
                out[fi, ki] = c[j][:, fi].T
    return out


OUT = Outputs("exemplars")
N_ALIVE = OUT.scalar("n_alive", "none", "latents that fire on the split")
TOP_ROWS = OUT.array("top_rows", "(latents, top_k): rows of the top-activating images")
TOP_VALUES = OUT.array("top_values", "(latents, top_k): their activations")
QUANTILE_ROWS = OUT.array("quantile_rows", "(latents, 3 x quantiles): images at each quantile")
QUANTILE_VALUES = OUT.array("quantile_values", "their activations")
HISTOGRAM = OUT.array("histogram", "(latents, bins): activation histogram")
HISTOGRAM_MAX = OUT.array("histogram_max", "per latent: the histogram's upper edge")
NEIGHBOURS = OUT.array("neighbours", "(latents, n): nearest latents by decoder cosine")
NEIGHBOUR_COSINE = OUT.array("neighbour_cosine", "their cosines")
ORIGINAL_INDICES = OUT.array("original_indices", "per row: the dataset index of its image")
CLASS_MEAN = OUT.array("{label}/class_mean", "(latents, classes): mean activation per class")
TOP_LABEL_COUNTS = OUT.array("{label}/top_label_counts", "(latents, classes): top images per class")
TOP_LABELS = OUT.array("{label}/top_labels", "(latents, top_k): the class of each top image")
REPORT_ORDER = OUT.array("report_order", "alive latents in report order")
MAP_FEATURES = OUT.array("map_features", "latents with token maps")
TOKEN_MAPS = OUT.array("token_maps", "(map latents, images, tokens): activation per token")
LABELS = OUT.meta("labels", "the labels analysed")
CLASS_NAMES = OUT.meta("{label}/class_names", "the label's class names")
DATASET = OUT.meta("dataset", "how to load the images of the rows")
PREFIX_TOKENS = OUT.meta("prefix_tokens", "non-patch tokens before the patches")


@register_analysis(
    "exemplars",
    ExemplarsConfig,
    "Per latent: top and quantile images, activation histogram, label make-up, nearest latents.",
    order=210,
    outputs=OUT,
)
def run(ctx: Context, cfg: ExemplarsConfig) -> Result:
    enc = ctx.encoded
    csc = column_major(enc.codes if hasattr(enc.codes, "tocsc") else _sparse(enc.codes))
    r = Result("exemplars")
    r.arrays["top_rows"], r.arrays["top_values"] = top_rows(csc, cfg.top_k)
    r.arrays["quantile_rows"], r.arrays["quantile_values"] = quantile_rows(csc, cfg.quantiles)
    r.arrays["histogram"], r.arrays["histogram_max"] = histograms(csc, cfg.bins)
    r.arrays["neighbours"], r.arrays["neighbour_cosine"] = nearest(
        ctx.sae.W_dec.detach().cpu().numpy(), cfg.neighbours
    )
    oi = ctx.original_indices
    r.arrays["original_indices"] = oi if oi is not None else np.arange(enc.n_images, dtype=np.int64)
    best_sel = np.zeros(csc.shape[1])
    for label in [k for k, why in ctx.usable_labels().items() if not why]:
        y, n_cls = ctx.labels[label], len(ctx.class_names[label])
        means = class_means(enc.codes, y, n_cls)
        r.arrays[f"{label}/class_mean"] = np.nan_to_num(means.T).astype(np.float32)
        top = r.arrays["top_rows"]
        lab = np.where(top >= 0, y[np.maximum(top, 0)], -1)
        counts = np.stack([(lab == c).sum(axis=1) for c in range(n_cls)], axis=1)
        r.arrays[f"{label}/top_label_counts"] = counts.astype(np.int32)
        r.arrays[f"{label}/top_labels"] = lab.astype(np.int16)
        best_sel = np.fmax(best_sel, np.nan_to_num(selectivity(means)))
        r.metadata[f"{label}/class_names"] = ctx.class_names[label]
    alive = np.diff(csc.indptr) > 0
    order = np.lexsort((-np.diff(csc.indptr), -best_sel))
    r.arrays["report_order"] = order[alive[order]].astype(np.int64)
    if ctx.info.has_token_axis and ctx.info.n_tokens > 1:
        feats = r.arrays["report_order"][: cfg.max_maps]
        r.arrays["map_features"] = feats
        r.arrays["token_maps"] = token_maps(
            ctx, feats, r.arrays["top_rows"][feats, : cfg.map_images]
        )
    r.metadata.update(
        dataset=_dataset_config(ctx.store_attrs),
        tokens_per_image=ctx.info.n_tokens,
        prefix_tokens=int(ctx.store_attrs.get("prefix_tokens", 0) or 0),
        token_selection=str(ctx.store_attrs.get("token_selection", "")),
        labels=[k for k, why in ctx.usable_labels().items() if not why],
    )
    r.add("n_alive", int(alive.sum()), "none", n=csc.shape[1])
    return r


def _sparse(codes: np.ndarray) -> Any:
    from scipy import sparse

    return sparse.csc_matrix(codes)


def _dataset_config(attrs: dict[str, Any]) -> dict[str, Any]:
    raw = attrs.get("dataset_config")
    if raw:
        return dict(json.loads(raw) if isinstance(raw, str) else raw)
    return {"name": str(attrs.get("dataset", "")), "root": str(attrs.get("dataset_root", ""))}
