"""Interventions as pure functions of arrays (docs/originals.md §4.5).

Everything here acts on per-image embeddings. An SAE intervention edits codes and decodes; both
steps are affine in the codes and mean pooling is linear, so editing the per-image mean codes and
decoding gives exactly the mean over the image's tokens of the per-token edit: no second pass over
the store is needed. Erasures (S&P Top-K, LEACE) are affine maps of the embedding and commute with
mean pooling too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def dense(codes: Any, columns: np.ndarray) -> np.ndarray:
    """``codes[:, columns]`` as float64, from a dense array or a CSR matrix."""
    c = codes[:, columns]
    return np.asarray(c.toarray() if hasattr(c, "toarray") else c, dtype=np.float64)


def decode(codes: Any, w_dec: np.ndarray, b_dec: np.ndarray) -> np.ndarray:
    """``codes W_dec + b_dec`` (the SAE's decoder) for dense or CSR codes, float64."""
    out = codes @ w_dec
    return np.asarray(out, dtype=np.float64) + b_dec


def scale_features(
    x_hat: np.ndarray, codes: Any, w_dec: np.ndarray, features: np.ndarray, alpha: float
) -> np.ndarray:
    """The decoding of ``codes`` with ``features`` multiplied by ``alpha`` (0 suppresses, < 1
    attenuates, > 1 amplifies), from the unedited decoding ``x_hat``:
    ``x_hat + (alpha - 1) codes[:, S] W_dec[S]``."""
    if len(features) == 0 or alpha == 1.0:
        return x_hat
    return x_hat + (alpha - 1.0) * (dense(codes, features) @ w_dec[features])


def set_features(
    x_hat: np.ndarray, codes: Any, w_dec: np.ndarray, features: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """The decoding with ``features`` clamped to ``values`` (one per feature, or per row)."""
    if len(features) == 0:
        return x_hat
    return (
        x_hat
        + (np.broadcast_to(values, (x_hat.shape[0], len(features))) - dense(codes, features))
        @ w_dec[features]
    )


def keep_error(edited: np.ndarray, x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """``edited + (x - x_hat)``: the edit alone, the SAE's reconstruction error put back."""
    return edited + (x - x_hat)


def gaussian_noise(
    x: np.ndarray, sigma: float, tokens_per_image: int, rng: np.random.Generator
) -> np.ndarray:
    """``x`` plus the mean over ``tokens_per_image`` tokens of independent ``N(0, sigma^2)`` noise
    per token and dimension (so the per-image noise has standard deviation ``sigma / sqrt(t)``)."""
    scale = sigma / np.sqrt(max(1, tokens_per_image))
    return x + rng.normal(0.0, scale, size=x.shape)


def error_scale(sq_error: np.ndarray, n_tokens: int, d_model: int) -> float:
    """The SAE's reconstruction error as one standard deviation per token and dimension:
    ``sqrt(sum ||x - x_hat||^2 / (tokens * d))``."""
    return float(np.sqrt(np.sum(sq_error) / max(1, n_tokens * d_model)))


def projection(axis: np.ndarray, alpha: float) -> np.ndarray:
    """``V = I - alpha a a^T / ||a||^2`` (the identity when ``||a||^2 < 1e-12``)."""
    a = np.asarray(axis, dtype=np.float64)
    v = np.eye(len(a))
    norm2 = float(a @ a)
    if norm2 < 1e-12:
        return v
    return v - alpha * np.outer(a, a) / norm2


def sp_axis(w_enc: np.ndarray, features: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """S&P Top-K's control axis in input space: ``a = W_enc[:, S] w``, with ``w`` the probe's
    coefficients on the selected codes (one row: binary; several: mean absolute value per
    feature, as the original does)."""
    c = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    w = c[0] if c.shape[0] == 1 else np.abs(c).mean(axis=0)
    return np.asarray(w_enc[:, features], dtype=np.float64) @ w


def leace(x_fit: np.ndarray, y_fit: np.ndarray, n_classes: int) -> Any:
    """The ``concept-erasure`` package's LEACE eraser for labels ``y_fit`` (fitted on ``x_fit``);
    call it on a float tensor."""
    import warnings

    import torch

    with warnings.catch_warnings():  # the package scripts a helper with torch.jit (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        from concept_erasure import LeaceEraser

    z = np.eye(n_classes)[y_fit] if n_classes > 2 else y_fit[:, None].astype(np.float64)
    return LeaceEraser.fit(torch.as_tensor(x_fit, dtype=torch.float64), torch.as_tensor(z))


def erase(eraser: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return eraser(torch.as_tensor(x, dtype=torch.float64)).numpy()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity (0 for a zero row)."""
    num = np.einsum("ij,ij->i", a, b)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
