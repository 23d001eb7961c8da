"""Configurations of the SAE architectures: plain dataclasses, typed, one docstring per field.

They double as Hydra structured configs (``vista.conf`` registers them in the ``sae`` group).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SAEConfig:
    """What every architecture has."""

    architecture: str = "topk"
    """Registry name of the architecture."""
    d_model: int = 0
    """Input width; 0 = take it from the activation store."""
    d_sae: int = 4096
    """Number of latents (dictionary size)."""
    enc_init_scale: float = 0.5
    """Encoder initialised as this times the transposed (unit-row) decoder. Below 1 (sparsify's
    nn.Linear init gives row norms of 1/sqrt(3)) reaches a lower FVU for the same samples:
    on the shape-A toy data after 246k samples, 0.637 at 1.0, 0.621 at 0.577, 0.619 at 0.3."""
    seed: int = 0
    """Seed of the weight initialisation."""

    def problems(self) -> list[str]:
        """Settings that cannot train or run, each as a phrase naming it (empty: none).

        The rules are by field name and type, so every architecture's config is covered: widths
        and ``k`` must be positive, ``k`` at most ``d_sae``, other counts and every coefficient
        non-negative and finite."""
        import math
        from dataclasses import fields

        out = []
        if self.d_sae <= 0:
            out.append(f"sae.d_sae={self.d_sae} must be positive")
        if self.d_model < 0:
            out.append(f"sae.d_model={self.d_model} must be positive (0: the store's width)")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                out.append(f"sae.{f.name}={v} must be finite")
            elif f.name == "k" and (v <= 0 or (self.d_sae > 0 and v > self.d_sae)):
                out.append(f"sae.k={v} must be between 1 and sae.d_sae={self.d_sae}")
            elif f.name not in ("d_sae", "d_model", "k") and v < 0:
                out.append(f"sae.{f.name}={v} must not be negative")
        return out


@dataclass
class PenaltyConfig(SAEConfig):
    """What the architectures with a sparsity penalty (vanilla, gated, JumpReLU) share: an
    optional target L0 that sets the penalty's strength for you."""

    target_l0: float = 0.0
    """0 = off: the coefficient stays as set. Otherwise the training run adapts the coefficient
    so that the mean L0 per token settles at this value (its setting is the starting point):
    every step multiplies it by ``exp(target_l0_rate * clip(log(L0_batch / target_l0), -1, 1))``.
    Compare architectures at equal L0 without a coefficient sweep (docs/training.md)."""
    target_l0_rate: float = 0.01
    """Step of the controller in log-coefficient units per training step: about 230 steps to
    change the coefficient tenfold while L0 is off by a factor e or more."""

    def problems(self) -> list[str]:
        out = super().problems()
        if self.target_l0 > self.d_sae > 0:
            out.append(f"sae.target_l0={self.target_l0} must be at most sae.d_sae={self.d_sae}")
        return out
