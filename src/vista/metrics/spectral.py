"""Spectral summaries of a weight matrix (docs/originals.md §5.2): how many directions it really uses."""

from __future__ import annotations

import numpy as np

THRESHOLDS = (0.001, 0.01, 0.05, 0.1)


def spectral_summary(w: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, float]:
    """Stable rank ``||W||_F^2 / s_max^2``, effective rank ``exp(H(s / sum s))``, participation
    ratio ``(sum s)^2 / sum s^2``, counts of singular values above ``t * s_max``, the numerical
    rank, the condition number ``s_max / s_min`` (inf when ``s_min <= 1e-10``), the stable rank
    over the smaller dimension, the log-linear spectral decay and the spectral entropy (nats)."""
    s = np.linalg.svd(np.asarray(w, dtype=np.float64), compute_uv=False)
    s_max = float(s[0]) if len(s) else 0.0
    if s_max <= 0:
        return {"stable_rank": 0.0, "effective_rank": 0.0, "participation_ratio": 0.0, "rank": 0.0}
    p = s / s.sum()
    entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    rank = int(np.linalg.matrix_rank(np.asarray(w, dtype=np.float64)))
    stable = float((s**2).sum() / s_max**2)
    out = {
        "stable_rank": stable,
        "effective_rank": float(np.exp(entropy)),
        "participation_ratio": float(s.sum() ** 2 / (s**2).sum()),
        "rank": float(rank),
        "condition_number": float(s_max / s[-1]) if s[-1] > 1e-10 else float("inf"),
        "effective_dim_ratio": stable / min(w.shape),
        "utilization_ratio": stable / max(rank, 1),
        "spectral_entropy": entropy,
        "spectral_decay": float(-(np.log(s[-1]) - np.log(s[0])) / (len(s) - 1))
        if len(s) > 1 and s[-1] > 0
        else float("inf"),
    }
    for t in thresholds:
        out[f"rank_above_{t:g}"] = float((s >= t * s_max).sum())
    return out
