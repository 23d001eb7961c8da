"""Reconstruction metrics: pure functions and a streaming float64 accumulator.

Explained variance is measured against the per-dimension mean of the data (SAELens #659/#665,
saev's normalized-MSE note), never against zero, and accumulated in float64 with Chan et al.'s
pairwise update so one pass over any number of tokens is exact to float64 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


def fvu(x: Tensor, x_hat: Tensor) -> float:
    """Fraction of variance unexplained: ``sum ||x - x_hat||^2 / sum ||x - mean_d(x)||^2``."""
    x64, xh64 = x.detach().double(), x_hat.detach().double()
    ss_res = (x64 - xh64).pow(2).sum()
    ss_tot = (x64 - x64.mean(dim=0, keepdim=True)).pow(2).sum()
    return float(ss_res / ss_tot)


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    return 1.0 - fvu(x, x_hat)


def mean_cosine(x: Tensor, x_hat: Tensor, eps: float = 1e-12) -> float:
    """Mean over tokens of cos(x, x_hat)."""
    x64, xh64 = x.detach().double(), x_hat.detach().double()
    cos = (x64 * xh64).sum(-1) / (x64.norm(dim=-1) * xh64.norm(dim=-1)).clamp_min(eps)
    return float(cos.mean())


def token_terms(x64: Tensor, xh64: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per token, in float64: ``||x - x_hat||^2``, ``<x, x_hat>``, ``||x||``, ``||x_hat||``."""
    return (
        (x64 - xh64).pow(2).sum(-1),
        (x64 * xh64).sum(-1),
        x64.norm(dim=-1),
        xh64.norm(dim=-1),
    )


_SUMS = (
    "ss_res",
    "cos_sum",
    "norm_ratio_sum",
    "sq_norm_hat",
    "dot",
    "sb_ev_sum",
    "sb_ev_n",
    "sb_mse_sum",
)
"""The accumulator's plain sums (merged by adding)."""


@dataclass
class ReconstructionAccumulator:
    """Sufficient statistics of (x, x_hat) pairs over a stream of batches, in float64."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    """Per-dimension sum of squared deviations from the running mean."""
    ss_res: float = 0.0
    cos_sum: float = 0.0
    norm_ratio_sum: float = 0.0
    sq_norm_hat: float = 0.0
    dot: float = 0.0
    sb_ev_sum: float = 0.0
    """SAEBench's explained variance, summed over tokens: ``1 - ||x - x_hat||^2 / ||x - mean_batch||^2``
    per token, the mean taken over the token's own batch."""
    sb_ev_n: int = 0
    sb_mse_sum: float = 0.0
    """SAEBench's MSE, summed over tokens: ``||x - x_hat||^2 / (tokens in the batch)`` per token."""
    _eps: float = field(default=1e-12, repr=False)

    @torch.no_grad()
    def update(self, x: Tensor, x_hat: Tensor) -> None:
        x64 = x.detach().double()
        self.update_tokens(x64, *token_terms(x64, x_hat.detach().double()))

    @torch.no_grad()
    def update_tokens(
        self, x64: Tensor, sq_err: Tensor, dot: Tensor, xn: Tensor, xhn: Tensor
    ) -> None:
        """``update`` from float64 ``x`` and the per-token terms of ``token_terms``."""
        nb = x64.shape[0]
        if nb == 0:
            return
        mean_b = x64.mean(dim=0)
        m2_b = (x64 - mean_b).pow(2).sum(dim=0)
        self._fold_moments(nb, mean_b.cpu().numpy(), m2_b.cpu().numpy())
        tss = (x64 - mean_b).pow(2).sum(dim=-1)
        ok = tss > 0  # SAEBench divides regardless; a token equal to its batch's mean is left out
        self.sb_ev_sum += float((1.0 - sq_err[ok] / tss[ok]).sum())
        self.sb_ev_n += int(ok.sum())
        self.sb_mse_sum += float(sq_err.sum()) / nb
        self.ss_res += float(sq_err.sum())
        self.cos_sum += float((dot / (xn * xhn).clamp_min(self._eps)).sum())
        self.norm_ratio_sum += float((xhn / xn.clamp_min(self._eps)).sum())
        self.sq_norm_hat += float(xhn.pow(2).sum())
        self.dot += float(dot.sum())

    def _fold_moments(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        """Chan et al.'s pairwise update of the running mean and scatter by a batch's."""
        if self.mean is None or self.m2 is None:
            self.mean, self.m2 = mean_b.copy(), m2_b.copy()
        else:
            n = self.n + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / n)
            self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n += n_b

    def merge(self, other: ReconstructionAccumulator) -> None:
        """Add what ``other`` accumulated over other tokens (exact to float64 rounding: the
        moments combine pairwise, the sums add)."""
        if other.n == 0 or other.mean is None or other.m2 is None:
            return
        self._fold_moments(other.n, other.mean, other.m2)
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def state(self) -> dict[str, np.ndarray]:
        """Everything accumulated, as arrays (``from_state`` rebuilds it)."""
        d = 0 if self.mean is None else len(self.mean)
        return {
            "n": np.array(self.n, dtype=np.int64),
            "mean": np.zeros(d) if self.mean is None else self.mean,
            "m2": np.zeros(d) if self.m2 is None else self.m2,
            "sums": np.array([float(getattr(self, k)) for k in _SUMS], dtype=np.float64),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> ReconstructionAccumulator:
        acc = cls(n=int(state["n"]))
        if acc.n:
            acc.mean, acc.m2 = np.asarray(state["mean"]), np.asarray(state["m2"])
        for name, v in zip(_SUMS, np.asarray(state["sums"]).tolist(), strict=True):
            setattr(acc, name, int(v) if name == "sb_ev_n" else float(v))
        return acc

    def result(self) -> dict[str, float]:
        if self.n == 0 or self.m2 is None:
            raise ValueError("No tokens were accumulated.")
        d = len(self.m2)
        ss_tot = float(self.m2.sum())
        fvu_ = self.ss_res / ss_tot if ss_tot > 0 else float("nan")
        return {
            "mse": self.ss_res / (self.n * d),
            "cosine_similarity": self.cos_sum / self.n,
            "fvu": fvu_,
            "explained_variance": 1.0 - fvu_,
            "l2_ratio": self.norm_ratio_sum / self.n,
            "relative_reconstruction_bias": self.sq_norm_hat / self.dot
            if self.dot
            else float("nan"),
            "total_variance_per_token": ss_tot / self.n,
            "saebench_explained_variance": self.sb_ev_sum / self.sb_ev_n
            if self.sb_ev_n
            else float("nan"),
            "saebench_mse": self.sb_mse_sum / self.n,
        }
