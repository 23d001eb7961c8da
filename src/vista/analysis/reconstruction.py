"""``reconstruction``: how much of the activations the SAE keeps (VISTA's ``reconstruction_quality``).

FVU is measured against the per-dimension mean of the split in float64 (never against zero), and
its interval resamples images: per image the pass kept its squared error and its scatter about
its own mean, so the total variance of any resample is exact (``sum scatter_i + T ||mean_i - mu||^2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.uncertainty import mean_ci, ratio_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class ReconstructionConfig:
    """(No settings: the intervals follow ``eval.n_boot`` and ``eval.confidence``.)"""


def image_total_variance(pooled_raw: np.ndarray, scatter: np.ndarray, t: int) -> np.ndarray:
    """Per image, ``sum_t ||x_it - mu||^2`` about the mean ``mu`` of all images' tokens."""
    mean = pooled_raw.astype(np.float64).mean(axis=0)
    return scatter + t * ((pooled_raw.astype(np.float64) - mean) ** 2).sum(axis=1)


OUT = Outputs("reconstruction")
FVU = OUT.scalar("fvu", "lower", "fraction of variance unexplained")
OUT.scalar("mse", "lower", "mean squared error per element")
OUT.scalar("explained_variance", "higher", "1 - FVU")
OUT.scalar("cosine_similarity", "higher", "mean cosine of input and reconstruction")
OUT.scalar("l2_ratio", "none", "mean norm of reconstruction over input")
OUT.scalar("relative_reconstruction_bias", "none", "SAEBench's shrinkage measure")
OUT.scalar("saebench_mse", "lower", "SAEBench's MSE")
OUT.scalar("saebench_explained_variance", "higher", "SAEBench's explained variance")
OUT.array("image_fvu", "per image: FVU")
OUT.array("image_cosine", "per image: cosine")


@register_analysis(
    "reconstruction",
    ReconstructionConfig,
    "FVU, explained variance, cosine, shrinkage, with CIs.",
    order=20,
    outputs=OUT,
)
def run(ctx: Context, cfg: ReconstructionConfig) -> Result:
    enc, s = ctx.encoded, ctx.settings
    rec = enc.reconstruction
    r = Result("reconstruction")
    n = enc.n_images
    tv = image_total_variance(enc.pooled_raw, enc.image_scatter, enc.tokens_per_image)
    fvu_ci = ratio_ci(enc.image_sq_error, tv, s.n_boot, ctx.rng("recon", "fvu"), s.confidence)
    r.add("fvu", rec["fvu"], "lower", fvu_ci, n)
    r.add(
        "explained_variance", rec["explained_variance"], "higher", (1 - fvu_ci[1], 1 - fvu_ci[0]), n
    )
    cos_ci = mean_ci(enc.image_cosine, s.n_boot, ctx.rng("recon", "cos"), s.confidence)
    r.add("cosine_similarity", rec["cosine_similarity"], "higher", cos_ci, n)
    # the MSE per element: each image's squared error over its tokens x width, averaged
    per_element = enc.image_sq_error / (enc.tokens_per_image * enc.pooled_raw.shape[1])
    mse_ci = mean_ci(per_element, s.n_boot, ctx.rng("recon", "mse"), s.confidence)
    r.add("mse", rec["mse"], "lower", mse_ci, n)
    r.add("l2_ratio", rec["l2_ratio"], "none", n=n)
    r.add("relative_reconstruction_bias", rec["relative_reconstruction_bias"], "none", n=n)
    # SAEBench's definitions (per token, against the batch's mean; MSE over the batch's tokens),
    # for comparison with its tables: they depend on the batch (eval.batch_tokens here).
    why = (
        "SAEBench's definition, computed per batch of the pass as SAEBench computes it, to be "
        "compared with its tables; fvu, explained_variance and mse carry the intervals"
    )
    r.add("saebench_explained_variance", rec["saebench_explained_variance"], "higher", n=n,
          no_interval=why)  # fmt: skip
    r.add("saebench_mse", rec["saebench_mse"], "lower", n=n, no_interval=why)
    r.arrays["image_fvu"] = (enc.image_sq_error / np.maximum(tv, 1e-30)).astype(np.float32)
    r.arrays["image_cosine"] = enc.image_cosine.astype(np.float32)
    r.headline = ["fvu", "cosine_similarity"]
    r.files["evaluation_results.json#reconstruction_quality"] = rec
    return r
