"""``health``: which latents fire, how often, and how many per token (VISTA's ``sae_health``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.sparsity import firing_frequencies, frequency_histogram
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class HealthConfig:
    """Thresholds of the latent-health counts."""

    dense_threshold: float = 0.1
    """A latent firing on more than this fraction of tokens is dense."""
    rare_threshold: float = 1e-5
    """A latent firing on fewer than this fraction of tokens (but some) is rare."""


OUT = Outputs("health")
DEAD_COUNT = OUT.scalar("dead_count", "lower", "latents that never fire on the split")
DEAD_FRACTION = OUT.scalar("dead_fraction", "lower", "share of latents that never fire")
OUT.scalar("dense_fraction", "lower", "share firing on more than dense_threshold of tokens")
OUT.scalar("rare_fraction", "lower", "share firing on fewer than rare_threshold of tokens")
L0_MEAN = OUT.scalar("l0_mean", "none", "mean active latents per token")
OUT.scalar("l0_per_instance_mean", "none", "mean active latents per image (pursuit encoders)")
FIRING_COUNTS = OUT.array("firing_counts", "per latent: tokens it fires on")
FIRING_FREQUENCY = OUT.array("firing_frequency", "per latent: share of tokens it fires on")
OUT.array("image_l0", "per image: active latents")
TOTAL_TOKENS = OUT.meta("total_tokens", "tokens of the split")


WHY_DEAD = (
    "a count over every token of the split (dead: fired on none): it describes the SAE on these "
    "images; resampling them can only add dead latents, so a bootstrap interval would be "
    "one-sided and biased"
)
WHY_FREQUENCY = (
    "firing frequencies over every token of the split against a fixed threshold: a description "
    "of the SAE on these images, as SAELens and SAEBench report it"
)


@register_analysis(
    "health",
    HealthConfig,
    "Dead, dense and rare latents; L0 per token and image.",
    order=10,
    outputs=OUT,
)
def run(ctx: Context, cfg: HealthConfig) -> Result:
    enc, s = ctx.encoded, ctx.settings
    counts = enc.firing_counts
    n_tokens = int(enc.health["total_tokens"])
    freqs = firing_frequencies(counts, n_tokens)
    d_sae = len(counts)
    dead = int((counts == 0).sum())
    dense = int((freqs > cfg.dense_threshold).sum())
    rare = int(((freqs > 0) & (freqs < cfg.rare_threshold)).sum())
    health = {
        **enc.health,
        "dense_feature_count": dense,
        "rare_feature_count": rare,
        "thresholds": {"dense": cfg.dense_threshold, "rare": cfg.rare_threshold},
        "firing_frequency_histogram": frequency_histogram(freqs),
    }
    r = Result("health")
    n_img = enc.n_images
    r.add("dead_fraction", dead / d_sae, "lower", n=d_sae, no_interval=WHY_DEAD)
    r.add("dense_fraction", dense / d_sae, "lower", n=d_sae, no_interval=WHY_FREQUENCY)
    r.add("rare_fraction", rare / d_sae, "lower", n=d_sae, no_interval=WHY_FREQUENCY)
    ci = mean_ci(enc.image_l0, s.n_boot, ctx.rng("health", "l0"), s.confidence)
    r.add("l0_mean", float(enc.image_l0.mean()), "none", ci, n_img)
    r.add("l0_per_instance_mean", health["l0_per_instance_mean"], "none", n=n_img)
    r.add("dead_count", dead, "lower", n=d_sae, no_interval=WHY_DEAD)
    r.arrays["firing_counts"] = counts
    r.arrays["firing_frequency"] = freqs.astype(np.float32)
    r.arrays["image_l0"] = enc.image_l0.astype(np.float32)
    r.metadata["total_tokens"] = n_tokens
    r.headline = ["dead_fraction", "l0_mean"]
    r.files["evaluation_results.json#sae_health"] = health
    return r
