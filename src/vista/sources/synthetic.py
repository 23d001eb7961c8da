"""A synthetic activation store with a known dictionary: the ground truth for SAE recovery.

Each token is a sparse non-negative superposition of unit directions plus a bias and noise:
``x = sum_i a_i d_i + b + noise``. Feature firing probabilities are log-uniform (rare and common
features), magnitudes are ``|N(1, sigma)|``. Optional structure, as in SAELens's synthetic suite:
- hierarchy: features come in parent/child trees; a child can fire only when its parent fires;
- correlation: features of a group share a Gaussian-copula factor, so they tend to co-fire.
The true directions are kept in the store at ``/extras/true_directions``; the label ``group``
is the group of the token's strongest feature, so probes and alignment have something to find.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vista.errors import VistaError
from vista.store.writer import SplitSpec, StoreWriter


@dataclass
class SyntheticConfig:
    """The generator's knobs (every field is recorded in the store's attributes)."""

    d_model: int = 64
    """Width of the activations."""
    n_features: int = 128
    """Number of true directions (may exceed d_model: superposition)."""
    mean_active: float = 5.0
    """Expected number of active features per token."""
    freq_spread: float = 3.0
    """Ratio of the most to the least frequent feature's firing probability (log-uniform)."""
    magnitude_std: float = 0.3
    """Active magnitudes are |N(1, magnitude_std)|."""
    noise_std: float = 0.01
    """Isotropic Gaussian noise per dimension."""
    bias_norm: float = 1.0
    """Norm of a constant offset (what b_dec must learn)."""
    children_per_parent: int = 0
    """0 = no hierarchy; else features form trees of one parent and this many children."""
    correlation: float = 0.0
    """Copula correlation of the firing of features within one group (0 = independent)."""
    n_groups: int = 8
    """Groups for the correlation and the ``group`` label."""
    n_train: int = 200_000
    n_validation: int = 20_000
    seed: int = 0


class SyntheticGenerator:
    """Draws tokens from one fixed random dictionary (deterministic under ``cfg.seed``)."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        if cfg.n_features < 1 or cfg.d_model < 1 or not 0 < cfg.mean_active <= cfg.n_features:
            raise VistaError(
                "synthetic needs d_model >= 1, n_features >= 1 and 0 < mean_active <= n_features."
            )
        if not 0 <= cfg.correlation < 1:
            raise VistaError(f"synthetic.correlation must be in [0, 1), got {cfg.correlation}.")
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        d = rng.standard_normal((cfg.n_features, cfg.d_model))
        self.directions = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
        b = rng.standard_normal(cfg.d_model)
        self.bias = (b / np.linalg.norm(b) * cfg.bias_norm).astype(np.float32)
        # Log-uniform firing probabilities, shuffled over features, scaled to the mean count.
        raw = np.exp(rng.uniform(0, math.log(cfg.freq_spread), cfg.n_features))
        rng.shuffle(raw)
        self.parent = np.full(cfg.n_features, -1)
        if cfg.children_per_parent > 0:
            tree = cfg.children_per_parent + 1
            for start in range(0, cfg.n_features - tree + 1, tree):
                self.parent[start + 1 : start + tree] = start
        self.group = np.arange(cfg.n_features) % cfg.n_groups
        self.p_fire = self._calibrate(raw)
        self._rng = rng

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Scale probabilities so the expected active count (children need parents) is right."""

        def expected(scale: float) -> tuple[float, np.ndarray]:
            p = np.clip(raw * scale, 0, 1)
            eff = p.copy()
            has = self.parent >= 0
            eff[has] = p[has] * p[self.parent[has]]
            return float(eff.sum()), p

        lo, hi = 0.0, 1.0
        while expected(hi)[0] < self.cfg.mean_active and hi < 1e9:
            hi *= 2
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if expected(mid)[0] < self.cfg.mean_active else (lo, mid)
        return expected(hi)[1]

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x (n, d_model) float32, codes (n, n_features) float32, group label (n,) int64)``."""
        cfg, rng = self.cfg, self._rng
        from scipy.special import ndtr

        if cfg.correlation > 0:
            shared = rng.standard_normal((n, cfg.n_groups))[:, self.group]
            own = rng.standard_normal((n, cfg.n_features))
            u = ndtr(math.sqrt(cfg.correlation) * shared + math.sqrt(1 - cfg.correlation) * own)
        else:
            u = rng.random((n, cfg.n_features))
        on = u < self.p_fire
        has = self.parent >= 0
        on[:, has] &= on[:, self.parent[has]]
        mags = np.abs(rng.normal(1.0, cfg.magnitude_std, (n, cfg.n_features)))
        codes = (on * mags).astype(np.float32)
        x = codes @ self.directions + self.bias
        x += rng.normal(0, cfg.noise_std, x.shape).astype(np.float32)
        strongest = codes.argmax(axis=1)
        label = np.where(codes.max(axis=1) > 0, self.group[strongest], cfg.n_groups)
        return x.astype(np.float32), codes, label.astype(np.int64)


def write_synthetic_store(
    path: str | os.PathLike[str], cfg: SyntheticConfig | None = None, block: int = 16384
) -> Path:
    """Write a store (training + validation splits, float32) from ``cfg``; returns its path."""
    cfg = cfg or SyntheticConfig()
    gen = SyntheticGenerator(cfg)
    names = [f"group_{g}" for g in range(cfg.n_groups)] + ["none"]
    specs = {
        "training": SplitSpec(cfg.n_train, cfg.d_model, None, {"group": names}),
        "validation": SplitSpec(cfg.n_validation, cfg.d_model, None, {"group": names}),
    }
    attrs = {
        "encoder": "synthetic",
        "layer": "ground_truth",
        "token_selection": "all",
        "dataset": "synthetic",
        "synthetic_config": asdict(cfg),
    }
    with StoreWriter(path, specs, attrs, dtype="float32", resume=False) as w:
        offset = 0
        for split, spec in specs.items():
            for start in range(0, spec.n_rows, block):
                n = min(block, spec.n_rows - start)
                x, _, label = gen.sample(n)
                w.append(split, x, {"group": label}, np.arange(offset + start, offset + start + n))
            offset += spec.n_rows
        w.write_extra("true_directions", gen.directions)
        w.write_extra("true_bias", gen.bias)
        w.write_extra("firing_probability", gen.p_fire.astype(np.float32))
        return w.finish()


def recovery(learned: np.ndarray, true: np.ndarray, threshold: float = 0.9) -> dict[str, float]:
    """How well unit rows ``learned (d_sae, d)`` recover ``true (n_features, d)``.

    ``recovered``: fraction of true directions whose best-matching learned row has cosine above
    ``threshold``; ``mean_max_cosine``: the mean of those best cosines (the PERF.md quality figure).
    """
    lrn = learned / np.maximum(np.linalg.norm(learned, axis=1, keepdims=True), 1e-12)
    tru = true / np.maximum(np.linalg.norm(true, axis=1, keepdims=True), 1e-12)
    best = (tru @ lrn.T).max(axis=1)
    return {"recovered": float((best > threshold).mean()), "mean_max_cosine": float(best.mean())}
