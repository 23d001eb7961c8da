"""Selective-demographic-feature (SDF) discovery: which latents stand for one class of a label.

Two definitions, both pure functions of the per-image codes ``(N, d_sae)`` (dense or scipy-sparse)
and the labels:

- ``three_stage``: the VISTA code's filter (docs/originals.md §4.3): per class, the ``k1`` latents that fire on
  the largest share of the class's images, of those the ``k2`` with the largest class-mean
  activation, of those the ``k3`` whose top-``k_top`` images have the lowest activation-weighted
  label entropy. The result is ordered by that entropy (most class-pure first), so truncating to
  the first k keeps the most important SDFs, not the smallest indices (docs/originals.md D17).
- ``paper_variant``: the paper's description (docs/originals.md D16): latents firing on more than
  ``min_freq`` of the class's images, whose largest class mean is this class, ranked by the ratio
  of the largest to the smallest class mean, kept when the entropy of their class-mean profile is
  below the median of the candidates; aligned when a Kruskal-Wallis test across classes is
  significant after Bonferroni correction and this class has the highest mean rank.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vista.metrics.alignment import class_means, class_sums


def columns(codes: Any, cols: np.ndarray) -> np.ndarray:
    """``(N, len(cols))`` dense float64 copy of some columns of dense or sparse codes."""
    c = codes[:, cols]
    return np.asarray(c.toarray() if hasattr(c, "toarray") else c, dtype=np.float64)


def class_firing_frequency(codes: Any, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, d_sae)`` share of each class's images on which each latent is non-zero."""
    active = (codes != 0).astype(np.float64) if hasattr(codes, "toarray") else (codes != 0)
    sums = class_sums(active, labels, n_classes)
    n = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / n[:, None]


def column_major(codes: Any) -> Any:
    """Codes in the layout column selections are fast in (CSC for sparse codes)."""
    return codes.tocsc() if hasattr(codes, "tocsc") else codes


def top_samples(codes: Any, cols: np.ndarray, k_top: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, values)``, each ``(len(cols), k)``: each column's ``k_top`` largest values and
    their rows, ties (and zeros) by lower row first, as a stable descending sort gives them."""
    n = codes.shape[0]
    k = min(k_top, n)
    if not hasattr(codes, "tocsc"):
        vals = np.asarray(codes[:, cols], dtype=np.float64)
        top = np.argsort(-vals, axis=0, kind="stable")[:k]
        return top.T, np.take_along_axis(vals, top, axis=0).T
    sub = column_major(codes)[:, cols]
    sub.eliminate_zeros()
    nnz = np.diff(sub.indptr)
    col = np.repeat(np.arange(len(cols)), nnz)
    order = np.lexsort((sub.indices, -sub.data, col))
    rows, vals = sub.indices[order], sub.data[order].astype(np.float64)
    start = np.concatenate([[0], np.cumsum(nnz)[:-1]])
    n_pos = np.bincount(col[sub.data > 0], minlength=len(cols))
    idx = np.zeros((len(cols), k), dtype=np.int64)
    out = np.zeros((len(cols), k))
    for j in range(len(cols)):  # positives, then zeros by row, then negatives
        s, p = start[j], min(int(n_pos[j]), k)
        idx[j, :p], out[j, :p] = rows[s : s + p], vals[s : s + p]
        if p < k:
            taken, r = set(rows[s : s + nnz[j]].tolist()), 0
            zeros: list[int] = []
            while len(zeros) < k - p and r < n:  # at most k + nnz steps
                if r not in taken:
                    zeros.append(r)
                r += 1
            idx[j, p : p + len(zeros)] = zeros
            q = p + len(zeros)
            if q < k:
                idx[j, q:], out[j, q:] = rows[s + p : s + p + k - q], vals[s + p : s + p + k - q]
    return idx, out


def weighted_label_distribution(
    top: np.ndarray, a: np.ndarray, labels: np.ndarray, n_classes: int
) -> np.ndarray:
    """``(F, C)`` label distribution of each feature's top samples ``top (F, k)`` with values
    ``a (F, k)``, each sample weighted by its activation (VISTA: ``p_l = sum a / (sum a + 1e-9)``)."""
    lab = labels[top]  # (F, k)
    mass = np.zeros((len(top), n_classes))
    np.add.at(mass, (np.repeat(np.arange(len(top)), top.shape[1]), lab.ravel()), a.ravel())
    return mass / (mass.sum(axis=1, keepdims=True) + 1e-9)


def entropy_nats(p: np.ndarray) -> np.ndarray:
    """VISTA's ``-sum p log(p + 1e-9)`` per row."""
    return -(p * np.log(p + 1e-9)).sum(axis=1)


def three_stage(
    codes: Any,
    labels: np.ndarray,
    n_classes: int,
    k1: int = 200,
    k2: int = 100,
    k3: int = 50,
    k_top: int = 20,
    own_class: bool = True,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Class -> ``(SDF ids ordered by entropy, their entropies)`` (VISTA's pipeline).

    ``own_class``: a stage-3 candidate must have the class as the mode of its top images' label
    distribution. VISTA's filter (``own_class=False``) keeps any low-entropy latent, so a latent
    pure for another class can become this class's SDF."""
    codes = column_major(codes)
    freq = class_firing_frequency(codes, labels, n_classes)
    means = class_means(codes, labels, n_classes)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in range(n_classes):
        if not np.isfinite(freq[c]).all():
            continue
        stage1 = np.argsort(-freq[c], kind="stable")[:k1]
        stage2 = stage1[np.argsort(-means[c, stage1], kind="stable")[:k2]]
        dist = weighted_label_distribution(*top_samples(codes, stage2, k_top), labels, n_classes)
        ent = entropy_nats(dist)
        keep = np.lexsort((-means[c, stage2], ent))
        if own_class:
            keep = keep[dist[keep].argmax(axis=1) == c]
        keep = keep[:k3]
        out[c] = (stage2[keep], ent[keep])
    return out


def alignment_hits(
    codes: Any, features: np.ndarray, labels: np.ndarray, target: int, k_top: int
) -> np.ndarray:
    """``(len(features), k_top)`` bool: is each of a feature's top images of class ``target``."""
    if len(features) == 0:
        return np.zeros((0, k_top), dtype=bool)
    top, _ = top_samples(codes, features, k_top)
    return labels[top] == target


def paper_variant(
    codes: Any,
    labels: np.ndarray,
    n_classes: int,
    min_freq: float = 0.1,
    k2: int = 100,
    alpha: float = 0.05,
) -> dict[int, dict[str, np.ndarray]]:
    """Class -> ``{features, ratio, entropy, kw_p, aligned}`` (the paper's SDF definition)."""
    from scipy.stats import kruskal, rankdata

    freq = class_firing_frequency(codes, labels, n_classes)
    means = class_means(codes, labels, n_classes)
    present = np.isfinite(means).all(axis=1)
    m = np.abs(means[present])
    best_class = np.flatnonzero(present)[m.argmax(axis=0)]
    ratio = m.max(axis=0) / np.maximum(m.min(axis=0), 1e-6 * max(float(m.max()), 1e-30))
    prof = m / np.maximum(m.sum(axis=0, keepdims=True), 1e-30)
    ent = -(prof * np.log(prof + 1e-12)).sum(axis=0)
    out = {}
    for c in np.flatnonzero(present):
        cand = np.flatnonzero((freq[c] > min_freq) & (best_class == c))
        cand = cand[np.argsort(-ratio[cand], kind="stable")[:k2]]
        if len(cand):
            cand = cand[ent[cand] <= np.median(ent[cand])]
        vals = columns(codes, cand)
        groups = [labels == g for g in np.flatnonzero(present)]
        p = np.ones(len(cand))
        top_is_c = np.zeros(len(cand), dtype=bool)
        for i in range(len(cand)):
            v = vals[:, i]
            if np.ptp(v) > 0:
                p[i] = kruskal(*[v[g] for g in groups]).pvalue
                ranks = rankdata(v)
                top_is_c[i] = int(np.argmax([ranks[g].mean() for g in groups])) == int(
                    np.flatnonzero(np.flatnonzero(present) == c)[0]
                )
        p_corr = np.minimum(p * max(len(cand), 1), 1.0)
        out[int(c)] = {
            "features": cand,
            "ratio": ratio[cand],
            "entropy": ent[cand],
            "kw_p": p_corr,
            "aligned": (p_corr < alpha) & top_is_c,
        }
    return out
