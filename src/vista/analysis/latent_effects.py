"""What removing latents does to a linear probe on the activations (shared by ``scr`` and ``tpp``).

A probe ``p(x) = sigmoid(w . (x - mu) / sigma + b)`` is fitted on the per-image activations. Zero-
ablating latents ``S`` of an image changes its activations by ``-sum_{j in S} c_j W_dec[j]`` (the
SAE's reconstruction error is kept, as SAEBench does: only the latents' contribution is removed),
and a latent's effect on the probe is ``(mean code on positives - on negatives) * (w / sigma) .
W_dec[j]`` (SAEBench's attribution for SCR and TPP).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vista.analysis.probing import fit_logistic


def fit_direction(x: np.ndarray, t: np.ndarray, c: float = 1.0) -> tuple[Any, np.ndarray]:
    """A standardised logistic probe of boolean target ``t`` and its weight in activation units."""
    model = fit_logistic(x, t, C=c, max_iter=300, tol=1e-3, solver="auto", center=True)
    scaler, clf = model[0], model[1]
    return model, clf.coef_[0] / np.where(scaler.scale_ > 0, scaler.scale_, 1.0)


def attribution(codes: Any, t: np.ndarray, w_raw: np.ndarray, w_dec: np.ndarray) -> np.ndarray:
    """``(d_sae,)`` effect of each latent on the probe: mean-code difference times the probe's
    weight along the latent's decoder row."""
    diff = np.asarray(codes[t].mean(axis=0) - codes[~t].mean(axis=0), dtype=np.float64).ravel()
    return diff * (w_dec @ w_raw)


def ablate(raw: np.ndarray, codes: Any, w_dec: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """Per-image activations with the contribution of ``latents`` removed (error term kept)."""
    if len(latents) == 0:
        return raw
    c = codes[:, latents]
    c = np.asarray(c.toarray() if hasattr(c, "toarray") else c, dtype=np.float64)
    return raw - c @ w_dec[latents]


def accuracy(model: Any, x: np.ndarray, t: np.ndarray) -> float:
    return float((model.predict(x) == t).mean()) if len(t) else float("nan")
