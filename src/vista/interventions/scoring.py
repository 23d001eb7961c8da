"""How an edited embedding is scored: per attribute, two readers of the held-out images.

- ``fixed``: the probe trained on the original embeddings reads the edited ones (what a frozen
  downstream head would see);
- ``fresh``: a linear classifier retrained on the edited training images (is the attribute still
  linearly readable at all? the reader LEACE's guarantee is about). By default linear discriminant
  analysis with Ledoit-Wolf shrinkage (``PooledLDA``: one solve, no iterations, so the dozens of
  refits per target cost seconds); ``fresh_reader=logistic`` refits the fixed probe's logistic regression instead.

Each reader gives a per-image 0/1 correctness on the same held-out images as the original, so
every effect is a paired per-image contrast: its mean, a bootstrap interval over images and a
paired sign-flip permutation p-value (docs/originals.md D18).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.probing import ProbeConfig, fit_logistic, fit_probe
from vista.interventions.ops import cosine_rows
from vista.metrics.uncertainty import draws_mean_ci, mean_ci, paired_permutation_pvalue

if TYPE_CHECKING:
    from vista.analysis.context import Context

READERS = ("fixed", "fresh")


@dataclass
class Attribute:
    """One label read by probes: its split, its fixed probe and the original correctness."""

    name: str
    y: np.ndarray
    train: np.ndarray
    test: np.ndarray
    probe: Any
    base: dict[str, np.ndarray]
    """Reader -> per-held-out-image correctness on the original embeddings."""


def warm_probe(x_train: np.ndarray, y_train: np.ndarray, start: Any, cfg: ProbeConfig) -> Any:
    """The fresh probe: the same standardised, L2-regularised logistic regression as ``start``
    (a fitted ``fit_probe`` pipeline), refitted on ``x_train`` from ``start``'s solution carried
    into the new standardisation. The objective is convex, so the optimum is the one a cold
    start reaches; the warm start only saves iterations (edits move embeddings a little)."""
    old_scaler, old = start[0], start[-1]
    per_unit = old.coef_ / old_scaler.scale_  # weights on the raw embedding

    def carried(scaler: Any) -> tuple[np.ndarray, np.ndarray]:
        return per_unit * scaler.scale_, old.intercept_ + per_unit @ (
            scaler.mean_ - old_scaler.mean_
        )

    return fit_logistic(x_train, y_train, C=cfg.C, max_iter=cfg.max_iter, center=True, init=carried)


class PooledLDA:
    """Linear discriminant analysis on the pooled within-class covariance (what sklearn's
    ``LinearDiscriminantAnalysis(solver="lsqr")`` fits), shrunk by one Ledoit-Wolf estimate on
    the standardised within-class residuals instead of one per class: the same classifier family
    at a fraction of the cost, for the dozens of refits an intervention needs."""

    def __init__(self, shrink: bool = True) -> None:
        self.shrink = shrink

    def fit(self, x: np.ndarray, y: np.ndarray) -> PooledLDA:
        from sklearn.covariance import ledoit_wolf

        self.classes_, inv = np.unique(y, return_inverse=True)
        x = np.asarray(x, dtype=np.float64)
        counts = np.bincount(inv)
        means = np.zeros((len(self.classes_), x.shape[1]))
        np.add.at(means, inv, x)
        means /= counts[:, None]
        resid = x - means[inv]
        if self.shrink:
            scale = resid.std(axis=0)
            scale[scale <= 0] = 1.0
            cov = ledoit_wolf(resid / scale, assume_centered=True)[0] * np.outer(scale, scale)
        else:
            cov = resid.T @ resid / len(x)
        self.coef_ = np.linalg.lstsq(cov, means.T, rcond=None)[0].T
        self.intercept_ = -0.5 * np.einsum("ij,ij->i", means, self.coef_) + np.log(counts / len(x))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = np.asarray(x, dtype=np.float64) @ self.coef_.T + self.intercept_
        return self.classes_[scores.argmax(axis=1)]


def lda(x_train: np.ndarray, y_train: np.ndarray) -> PooledLDA:
    return PooledLDA().fit(x_train, y_train)


class Scorer:
    """Probes every attribute of the context on the original embeddings once, then scores edits."""

    def __init__(
        self,
        ctx: Context,
        x0: np.ndarray,
        labels: list[str],
        cfg: ProbeConfig,
        fresh_reader: str = "lda",
        parts: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``parts``: one train/held-out split for every attribute (``Context.joint_train_test``),
        each attribute taking the images that carry it; by default each label's own split."""
        self.ctx, self.x0, self.fresh_reader = ctx, x0, fresh_reader
        self.cfg = replace(cfg, standardize=True)
        self.attrs: dict[str, Attribute] = {}
        for name in labels:
            y = ctx.labels[name]
            if parts is None:
                tr, te = ctx.train_test(name)
            else:
                tr, te = (p[y[p] >= 0] for p in parts)
            probe = fit_probe(x0[tr], y[tr], self.cfg)
            a = Attribute(name, y, tr, te, probe, {})
            a.base = {"fixed": self._ok(probe, x0, a), "fresh": self._ok(self._fresh(x0, a), x0, a)}
            self.attrs[name] = a

    @staticmethod
    def _ok(model: Any, x: np.ndarray, a: Attribute) -> np.ndarray:
        return (model.predict(x[a.test]) == a.y[a.test]).astype(np.float64)

    def _fresh(self, x: np.ndarray, a: Attribute) -> Any:
        if self.fresh_reader == "logistic":
            return warm_probe(x[a.train], a.y[a.train], a.probe, self.cfg)
        return lda(x[a.train], a.y[a.train])

    def score(self, x: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Attribute -> reader -> per-held-out-image correctness (float 0/1) on embeddings ``x``."""
        out = {}
        for name, a in self.attrs.items():
            fresh = self._ok(self._fresh(x, a), x, a)
            out[name] = {"fixed": self._ok(a.probe, x, a), "fresh": fresh}
        return out

    def cosine(self, x: np.ndarray) -> np.ndarray:
        return cosine_rows(self.x0.astype(np.float64), x)


@dataclass
class Effect:
    """A paired per-image contrast: mean, interval, p-value against no effect, sample size."""

    value: float
    low: float
    high: float
    p: float
    n: int

    def row(self) -> dict[str, Any]:
        return {"delta": self.value, "ci": [self.low, self.high], "p_value": self.p, "n": self.n}


def effect(diff: np.ndarray, ctx: Context, *key: str | int) -> Effect:
    """Mean of ``diff`` with its bootstrap interval and the permutation p-value of mean 0.

    ``diff`` is per image ``(n,)``, or per random draw and image ``(draws, n)`` (a control
    averaged over random feature sets): then the interval resamples the draws and the images,
    and the sign-flip test runs on each image's mean over the draws."""
    s = ctx.settings
    rng = ctx.rng("intervene", *key)
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim == 1:
        return paired_effect(d, s.n_boot, s.n_perm, s.confidence, rng)
    per_image = d.mean(axis=0)
    if per_image.size == 0:
        return Effect(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    lo, hi = draws_mean_ci(d, s.n_boot, rng, s.confidence)
    p = paired_permutation_pvalue(per_image, np.zeros_like(per_image), s.n_perm, rng)
    return Effect(float(per_image.mean()), lo, hi, p, int(per_image.size))


def paired_effect(
    diff: np.ndarray, n_boot: int, n_perm: int, confidence: float, rng: np.random.Generator
) -> Effect:
    """``effect`` without an analysis context: the seeds and replicate counts given."""
    d = np.asarray(diff, dtype=np.float64)
    if d.size == 0:
        return Effect(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    lo, hi = mean_ci(d, n_boot, rng, confidence)
    p = paired_permutation_pvalue(d, np.zeros_like(d), n_perm, rng)
    return Effect(float(d.mean()), lo, hi, p, int(d.size))


def mean_effect(effects: list[Effect]) -> float:
    vals = [e.value for e in effects if np.isfinite(e.value)]
    return float(np.mean(vals)) if vals else float("nan")
