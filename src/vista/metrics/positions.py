"""What the encode pass keeps per token position (CLS, registers, each patch), in float64.

Per position ``p`` over the split's images: the sum of the squared reconstruction error, of
``||x||^2``, of ``x`` (a ``(T, d)`` array), of the active-latent count and of ``||x||``, and a
histogram of ``log2 ||x||`` (``NORM_EDGES``, 1/16 octave wide). Any group of positions (a token
type) then has its exact FVU against its own mean, ``SSE / (sum ||x||^2 - n ||mean||^2)``, its mean
L0 and norm, and its norm quantiles to within 1/32 of an octave (4.4%). Processes of a shared pass
add their states (``merge``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

NORM_EDGES = 2.0 ** np.arange(-16.0, 24.0 + 1 / 32, 1 / 16)
"""Histogram edges of the token norms: 2^-16 .. 2^24, 16 bins per octave."""
_SUMS = ("sq_error", "sq_norm", "l0", "norm")


@dataclass
class PositionAccumulator:
    """Sums per token position over images; ``result`` gives them per group of positions."""

    t: int
    d_model: int
    n_images: int = 0
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    x_sum: np.ndarray = field(init=False)
    norm_hist: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        for k in _SUMS:
            self.sums.setdefault(k, np.zeros(self.t))
        self.x_sum = np.zeros((self.t, self.d_model))
        self.norm_hist = np.zeros((self.t, len(NORM_EDGES) + 1), dtype=np.int64)

    def update(self, x64: Tensor, sq: Tensor, l0: Tensor, norm: Tensor) -> None:
        """A block of ``n`` images: ``x64 (n*t, d)`` float64, per token ``sq`` error, ``l0`` and
        ``norm`` (``||x||``, which the pass's ``token_terms`` already has)."""
        n = x64.shape[0] // self.t
        x = x64.view(n, self.t, -1)
        norm = norm.view(n, self.t)
        sq_norm = norm.pow(2)
        for k, v in zip(
            _SUMS, (sq.view(n, self.t), sq_norm, l0.view(n, self.t), norm), strict=True
        ):
            self.sums[k] += v.sum(dim=0).cpu().numpy()
        self.x_sum += x.sum(dim=0).cpu().numpy()
        edges = torch.as_tensor(NORM_EDGES, dtype=norm.dtype, device=norm.device)
        bins = torch.bucketize(norm, edges, right=True)  # 0 below the first edge
        offsets = torch.arange(self.t, device=norm.device) * (len(NORM_EDGES) + 1)
        flat = (bins + offsets).reshape(-1)
        counts = torch.bincount(flat, minlength=self.t * (len(NORM_EDGES) + 1))
        self.norm_hist += counts.view(self.t, -1).cpu().numpy()
        self.n_images += n

    def merge(self, other: PositionAccumulator) -> None:
        for k in _SUMS:
            self.sums[k] = self.sums[k] + other.sums[k]
        self.x_sum = self.x_sum + other.x_sum
        self.norm_hist = self.norm_hist + other.norm_hist
        self.n_images += other.n_images

    def state(self) -> dict[str, np.ndarray]:
        out = {f"sum_{k}": v for k, v in self.sums.items()}
        out.update(x_sum=self.x_sum, norm_hist=self.norm_hist, n_images=np.array(self.n_images))
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> PositionAccumulator:
        x_sum = np.asarray(state["x_sum"])
        acc = cls(t=x_sum.shape[0], d_model=x_sum.shape[1], n_images=int(state["n_images"]))
        acc.sums = {k: np.asarray(state[f"sum_{k}"], dtype=np.float64) for k in _SUMS}
        acc.x_sum = x_sum.astype(np.float64)
        acc.norm_hist = np.asarray(state["norm_hist"], dtype=np.int64)
        return acc

    def group(self, positions: np.ndarray) -> dict[str, float]:
        """FVU (against the group's own mean), mean L0 and norm, and norm quantiles of the
        tokens at ``positions``."""
        n = self.n_images * len(positions)
        if n == 0:
            return {}
        mean = self.x_sum[positions].sum(axis=0) / n
        total = float(self.sums["sq_norm"][positions].sum() - n * float(mean @ mean))
        hist = self.norm_hist[positions].sum(axis=0)
        return {
            "tokens": float(n),
            "fvu": float(self.sums["sq_error"][positions].sum()) / max(total, 1e-300),
            "l0": float(self.sums["l0"][positions].sum()) / n,
            "norm_mean": float(self.sums["norm"][positions].sum()) / n,
            "norm_median": norm_quantile(hist, 0.5),
        }

    def per_position(self) -> dict[str, np.ndarray]:
        """Per position: mean squared error, mean L0, mean norm (FVU needs a group's variance)."""
        n = max(self.n_images, 1)
        return {k: self.sums[k] / n for k in ("sq_error", "l0", "norm")}


def norm_quantile(hist: np.ndarray, q: float) -> float:
    """The ``q`` quantile of the norms counted in ``hist`` (bins of ``NORM_EDGES``), at the
    geometric middle of its bin."""
    total = int(hist.sum())
    if total == 0:
        return float("nan")
    i = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    lo = NORM_EDGES[max(i - 1, 0)]
    hi = NORM_EDGES[min(i, len(NORM_EDGES) - 1)]
    return float(np.sqrt(lo * hi))


def share_above(hist: np.ndarray, threshold: float) -> float:
    """The share of the counted norms in bins that lie wholly above ``threshold``."""
    total = int(hist.sum())
    if total == 0:
        return float("nan")
    first = int(np.searchsorted(NORM_EDGES, threshold, side="left")) + 1
    return float(hist[first:].sum()) / total
