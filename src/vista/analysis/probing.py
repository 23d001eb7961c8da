"""Linear probes and the train/test split every analysis shares.

``fit_logistic`` is the one place vista builds a logistic regression: the probes, the ablation and
intervention scorers, sparse probing, latent effects and the S&P erasure all go through it, with
their settings named at the call.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vista.analysis.result import Skip


@dataclass
class ProbeConfig:
    """The logistic-regression probe (VISTA's settings, plus optional standardisation).

    The train/test split is the context's (``eval.test_size``, ``eval.split_seed``)."""

    C: float = 0.1
    """Inverse L2 regularisation strength."""
    max_iter: int = 1000
    standardize: bool = True
    """Z-score features on the training split first: raw activations and SAE codes have different
    scales, and lbfgs converges reliably only on standardised inputs (VISTA used none). Sparse
    codes are scaled without centring."""


def split_indices(
    labels: np.ndarray, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Stratified train/test split of sample indices; unstratified if a class has < 2 samples."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    counts = np.bincount(labels)
    stratified = bool(counts[counts > 0].min() >= 2) if len(counts) else False
    tr, te = train_test_split(
        idx, test_size=test_size, random_state=seed, stratify=labels if stratified else None
    )
    return np.sort(tr), np.sort(te), stratified


def fit_probe(x_train: Any, y_train: np.ndarray, cfg: ProbeConfig) -> Any:
    """A fitted sklearn logistic regression (in a pipeline with a scaler when standardising)."""
    if len(np.unique(y_train)) < 2:
        raise Skip(
            f"its training images hold one class only ({len(y_train)} images); a probe needs two "
            "(a larger split or eval.test_size nearer 0.2 gives it more)"
        )
    return fit_logistic(
        x_train, y_train, C=cfg.C, max_iter=cfg.max_iter, standardize=cfg.standardize
    )


def fit_logistic(
    x: Any,
    y: np.ndarray,
    *,
    C: float,
    max_iter: int,
    tol: float = 1e-4,
    solver: str = "lbfgs",
    standardize: bool = True,
    center: bool | None = None,
    init: Callable[[Any], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Any:
    """A fitted L2 logistic regression of ``y`` on ``x``, in a pipeline behind a ``StandardScaler``
    when ``standardize`` (centred unless ``x`` is sparse or ``center`` is False).

    ``solver="auto"`` takes Newton steps on small dense problems (at most 256 features, a handful
    of iterations) and lbfgs otherwise: the same convex optimum either way. ``init`` maps the fitted
    scaler to a starting ``(coef, intercept)`` (a warm start; the optimum is unchanged)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sparse = hasattr(x, "toarray")
    if solver == "auto":
        solver = "lbfgs" if sparse or x.shape[1] > 256 else "newton-cholesky"
    clf = LogisticRegression(
        C=C, max_iter=max_iter, tol=tol, solver=solver, warm_start=init is not None
    )
    scaler = None
    if standardize:
        scaler = StandardScaler(with_mean=(not sparse) if center is None else center).fit(x)
        x = scaler.transform(x)
        if init is not None:
            clf.coef_, clf.intercept_ = init(scaler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf if scaler is None else make_pipeline(scaler, clf)
