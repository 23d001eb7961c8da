"""What the report says about each feature, assembled from the result files only."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vista.analysis import alignment, exemplars, feature_auc, health, sdf, stability
from vista.analysis.declared import Key
from vista.analysis.result import Result


@dataclass
class FeatureData:
    """The per-feature arrays of every result, gathered once."""

    results: dict[str, Result]
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    """Per-latent arrays over the whole SAE, computed once per report (every page reads them)."""

    def get(self, key: Key, **parts: object) -> Any:
        """The value of a declared output (``feature_auc.AUC_TEST``, label=...), or None."""
        return key.of(self.results, **parts)

    @property
    def labels(self) -> list[str]:
        return list(self.get(exemplars.LABELS) or [])

    def class_names(self, label: str) -> list[str]:
        return list(self.get(exemplars.CLASS_NAMES, label=label) or [])

    def best_class(self, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Per latent: the class of its best (sign-corrected) test AUC, that AUC, and whether the
        latent fires against the class (its mean there below the other classes'). Among classes
        tied at the best AUC (the two classes of a two-class label always are) the one the latent
        fires for, with the higher class mean, is named."""
        if ("best_class", label) not in self._memo:
            self._memo["best_class", label] = self._best_class(label)
        return self._memo["best_class", label]

    def _best_class(self, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        auc = self.get(feature_auc.AUC_TEST, label=label)
        if auc is None:
            return None
        means = self.get(exemplars.CLASS_MEAN, label=label)
        rows = np.arange(len(auc))
        if means is None or means.shape != auc.shape:
            cls = auc.argmax(axis=1)
            return cls, auc[rows, cls], np.zeros(len(auc), dtype=bool)
        tied = np.isclose(auc, auc.max(axis=1, keepdims=True), rtol=0.0, atol=1e-9)
        cls = np.where(tied, means, -np.inf).argmax(axis=1)
        own = means[rows, cls]
        rest = (means.sum(axis=1) - own) / max(means.shape[1] - 1, 1)
        return cls, auc[rows, cls], own < rest

    def best_auc(self) -> tuple[np.ndarray | None, list[str]]:
        """Per latent, its best test AUC over every label and class, and where it is reached
        (``label=class``, with "(against)" when the latent fires less on that class)."""
        if "best_auc" not in self._memo:
            self._memo["best_auc"] = self._best_auc()
        return self._memo["best_auc"]

    def _best_auc(self) -> tuple[np.ndarray | None, list[str]]:
        best, where = None, []
        for label in self.labels:
            found = self.best_class(label)
            if found is None:
                continue
            names = self.class_names(label)
            arg, val, against = found
            text = [
                f"{label}={names[a] if a < len(names) else a}" + (" (against)" if low else "")
                for a, low in zip(arg.tolist(), against.tolist(), strict=True)
            ]
            if best is None:
                best, where = val.copy(), text
            else:
                better = val > best
                best = np.where(better, val, best)
                where = [t if b else w for t, b, w in zip(text, better, where, strict=True)]
        return best, where

    def sdf_membership(self) -> dict[int, list[str]]:
        """Latent -> the classes it is an SDF of (``label=class``)."""
        if "sdf_membership" not in self._memo:
            self._memo["sdf_membership"] = self._sdf_membership()
        return self._memo["sdf_membership"]

    def _sdf_membership(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for label in self.labels:
            ids, cls = self.get(sdf.RANKING, label=label), self.get(sdf.RANKING_CLASS, label=label)
            if ids is None or cls is None:
                continue
            names = self.class_names(label)
            for i, c in zip(ids.tolist(), cls.tolist(), strict=True):
                out.setdefault(i, []).append(f"{label}={names[c] if c < len(names) else c}")
        return out


def feature_order(data: FeatureData, max_features: int) -> np.ndarray:
    """The latents that get pages: alive ones, by best AUC (then the exemplars' order); at most
    ``max_features`` of them (0: all)."""
    order = data.get(exemplars.REPORT_ORDER)
    if order is None:
        return np.zeros(0, dtype=np.int64)
    best, _ = data.best_auc()
    if best is not None:
        order = order[np.argsort(-best[order], kind="stable")]
    return order[:max_features] if max_features > 0 else order


COLUMNS = [
    {"key": "id", "title": "feature", "type": "number"},
    {"key": "freq", "title": "firing frequency", "type": "number"},
    {"key": "auc", "title": "best AUC", "type": "number"},
    {"key": "best", "title": "best class", "type": "text"},
    {"key": "selectivity", "title": "selectivity", "type": "number"},
    {"key": "specificity", "title": "subgroup specificity", "type": "number"},
    {"key": "stability", "title": "stability", "type": "number"},
    {"key": "sdf", "title": "SDF of", "type": "text"},
]


def feature_rows(data: FeatureData, ids: np.ndarray) -> list[dict[str, Any]]:
    """One table row per feature (strings, formatted)."""
    freq = data.get(health.FIRING_FREQUENCY)
    best, where = data.best_auc()
    stab, stable = data.get(stability.STABILITY), data.get(stability.STABLE)
    sel = [
        a
        for a in (data.get(alignment.SELECTIVITY, label=lab) for lab in data.labels)
        if a is not None
    ]
    sel_best = None
    if sel:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # latents below the support floor
            sel_best = np.nanmax(np.vstack(sel), axis=0)
    spec = specificity(data)
    members = data.sdf_membership()
    rows = []
    for i in ids.tolist():
        rows.append(
            {
                "id": i,
                "freq": f"{freq[i]:.4g}" if freq is not None else "",
                "auc": f"{best[i]:.3f}" if best is not None else "",
                "best": where[i] if where else "",
                "selectivity": f"{sel_best[i]:.3f}"
                if sel_best is not None and np.isfinite(sel_best[i])
                else "",
                "specificity": f"{spec[i]:.3f}" if spec is not None else "",
                "stability": f"{stab[i]:.3f}" if stab is not None else "",
                "stable": ("yes" if stable[i] else "no") if stable is not None else "not measured",
                "sdf": ", ".join(members.get(i, [])),
            }
        )
    return rows


def specificity(data: FeatureData) -> np.ndarray | None:
    """Per latent, the largest share of its summed class means held by one class of one label
    (1: it fires for one subgroup only)."""
    out = None
    for label in data.labels:
        m = data.get(exemplars.CLASS_MEAN, label=label)
        if m is None:
            continue
        share = np.abs(m).max(axis=1) / np.maximum(np.abs(m).sum(axis=1), 1e-30)
        out = share if out is None else np.maximum(out, share)
    return out
