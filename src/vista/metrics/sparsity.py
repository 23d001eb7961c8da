"""Sparsity and latent-health metrics: L0, firing counts and frequencies, dead and dense latents."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

PERCENTILES = (0, 25, 50, 75, 90, 99, 100)


def l0_per_token(codes: Tensor) -> Tensor:
    """Number of non-zero latents of each token: ``(n, d_sae) -> (n,)``."""
    return (codes != 0).sum(dim=-1)


def firing_frequencies(counts: np.ndarray, n_tokens: int) -> np.ndarray:
    """Fraction of tokens on which each latent fired."""
    return counts.astype(np.float64) / max(n_tokens, 1)


def frequency_histogram(freqs: np.ndarray, bins: int = 40, low: float = -7.0) -> dict[str, list]:
    """Histogram of log10 firing frequency over alive latents, plus the dead count.

    The range is ``[low, 0]``; frequencies below ``10**low`` land in the first bin.
    """
    alive = freqs[freqs > 0]
    edges = np.linspace(low, 0.0, bins + 1)
    counts, _ = np.histogram(np.clip(np.log10(alive), low, 0.0), bins=edges)
    return {
        "log10_bin_edges": edges.round(6).tolist(),
        "counts": counts.tolist(),
        "dead": int((freqs == 0).sum()),
    }


@dataclass
class SparsityAccumulator:
    """Per-latent firing counts over tokens, each image's mean per-token L0, and its instance L0
    (latents active on at least one of its tokens; equal to the per-token L0 for one token)."""

    d_sae: int
    counts: np.ndarray = field(init=False)
    n_tokens: int = 0
    image_l0: list[np.ndarray] = field(default_factory=list)
    instance_l0: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.d_sae, dtype=np.int64)

    @torch.no_grad()
    def update(self, codes: Tensor, tokens_per_image: int) -> None:
        active = codes != 0
        self.counts += active.sum(dim=0).cpu().numpy().astype(np.int64)
        self.n_tokens += codes.shape[0]
        per_token = active.sum(dim=-1).double()
        self.image_l0.append(per_token.view(-1, tokens_per_image).mean(dim=1).cpu().numpy())
        union = active.view(-1, tokens_per_image, self.d_sae).any(dim=1).sum(dim=-1)
        self.instance_l0.append(union.cpu().numpy().astype(np.float64))

    @torch.no_grad()
    def update_entries(
        self, rows: Tensor, cols: Tensor, n_tokens: int, tokens_per_image: int
    ) -> None:
        """``update`` from the non-zero entries ``(rows, cols)`` of ``n_tokens`` tokens' codes,
        without a pass over the dense codes."""
        self.counts += torch.bincount(cols, minlength=self.d_sae).cpu().numpy().astype(np.int64)
        self.n_tokens += n_tokens
        per_token = torch.bincount(rows, minlength=n_tokens).double()
        self.image_l0.append(per_token.view(-1, tokens_per_image).mean(dim=1).cpu().numpy())
        if tokens_per_image == 1:
            union = per_token
        else:
            image = torch.div(rows, tokens_per_image, rounding_mode="floor")
            pairs = torch.unique(image * self.d_sae + cols)
            union = torch.bincount(
                torch.div(pairs, self.d_sae, rounding_mode="floor"),
                minlength=n_tokens // tokens_per_image,
            ).double()
        self.instance_l0.append(union.cpu().numpy())

    def merge(self, other: SparsityAccumulator) -> None:
        """Add what ``other`` accumulated over the images after this one's."""
        self.counts += other.counts
        self.n_tokens += other.n_tokens
        self.image_l0 += other.image_l0
        self.instance_l0 += other.instance_l0

    def state(self) -> dict[str, np.ndarray]:
        """Everything accumulated, as arrays (``from_state`` rebuilds it)."""
        return {
            "counts": self.counts,
            "n_tokens": np.array(self.n_tokens, dtype=np.int64),
            "image_l0": np.concatenate(self.image_l0) if self.image_l0 else np.zeros(0),
            "instance_l0": np.concatenate(self.instance_l0) if self.instance_l0 else np.zeros(0),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> SparsityAccumulator:
        acc = cls(len(state["counts"]), n_tokens=int(state["n_tokens"]))
        acc.counts = np.asarray(state["counts"], dtype=np.int64).copy()
        acc.image_l0 = [np.asarray(state["image_l0"], dtype=np.float64)]
        acc.instance_l0 = [np.asarray(state["instance_l0"], dtype=np.float64)]
        return acc

    def result(self, dense_threshold: float = 1e-1, rare_threshold: float = 1e-5) -> dict:
        l0 = np.concatenate(self.image_l0) if self.image_l0 else np.zeros(0)
        inst = np.concatenate(self.instance_l0) if self.instance_l0 else np.zeros(0)
        freqs = firing_frequencies(self.counts, self.n_tokens)
        dead = int((self.counts == 0).sum())
        return {
            "num_features": self.d_sae,
            "num_samples": len(l0),
            "total_tokens": self.n_tokens,
            "dead_feature_count": dead,
            "dead_feature_ratio": dead / self.d_sae,
            "l0_mean": float(l0.mean()) if len(l0) else 0.0,
            "l0_std": float(l0.std()) if len(l0) else 0.0,
            "l0_median": float(np.median(l0)) if len(l0) else 0.0,
            "l0_per_instance_mean": float(inst.mean()) if len(inst) else 0.0,
            # Raw token counts, as the original VISTA schema has them.
            "activation_frequency_percentiles": {
                str(p): float(np.percentile(self.counts, p)) for p in PERCENTILES
            },
            "firing_frequency_percentiles": {
                str(p): float(np.percentile(freqs, p)) for p in PERCENTILES
            },
            "dense_feature_count": int((freqs > dense_threshold).sum()),
            "rare_feature_count": int(((freqs > 0) & (freqs < rare_threshold)).sum()),
            "thresholds": {"dense": dense_threshold, "rare": rare_threshold},
            "firing_frequency_histogram": frequency_histogram(freqs),
        }
