"""Linear probes: does a representation linearly encode a label?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ProbeConfig:
    """The logistic-regression probe (VISTA's settings, plus optional standardisation)."""

    C: float = 0.1
    """Inverse L2 regularisation strength."""
    max_iter: int = 1000
    test_size: float = 0.2
    seed: int = 42
    standardize: bool = True
    """Z-score features on the training split first: raw activations and SAE codes have different
    scales, and lbfgs converges reliably only on standardised inputs (VISTA used none)."""


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


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, cfg: ProbeConfig) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter, solver="lbfgs")
    model = make_pipeline(StandardScaler(), clf) if cfg.standardize else clf
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    return model


def probe_comparison(
    raw: np.ndarray,
    codes: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    cfg: ProbeConfig,
) -> dict[str, Any]:
    """Accuracy of the same probe on raw activations and on SAE codes, on the same split."""
    from sklearn.metrics import classification_report

    tr, te, stratified = split_indices(labels, cfg.test_size, cfg.seed)
    if len(np.unique(labels[tr])) < 2:
        return {"skipped": "fewer than two classes in the training split"}
    raw_model = fit_probe(raw[tr], labels[tr], cfg)
    sae_model = fit_probe(codes[tr], labels[tr], cfg)
    raw_acc = float((raw_model.predict(raw[te]) == labels[te]).mean())
    sae_pred = sae_model.predict(codes[te])
    sae_acc = float((sae_pred == labels[te]).mean())
    present = sorted(set(labels[te].tolist()) | set(sae_pred.tolist()))
    report = classification_report(
        labels[te],
        sae_pred,
        labels=present,
        target_names=[class_names[i] if i < len(class_names) else str(i) for i in present],
        output_dict=True,
        zero_division=0,
    )
    return {
        "raw_latent_accuracy": raw_acc,
        "sae_latent_accuracy": sae_acc,
        "delta": sae_acc - raw_acc,
        "per_class_report": report,
        "n_train": len(tr),
        "n_test": len(te),
        "stratified": stratified,
    }
