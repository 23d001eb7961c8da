"""``dynamics``: the MNIST concept-dynamics metrics (SPEC 5.2-5.5), each next to the same metric
on a randomly initialised SAE of the same shape, so a number means something.

- Spectra of the encoder and decoder: stable rank, effective rank, participation ratio,
  thresholded ranks, condition number, spectral decay (metrics/spectral).
- Concept paths: the latents each image selects (top-k, percentile, std-threshold, absolute) and
  their overlap between classes, within classes and for random pairs (metrics/paths, seeded).
- Purity: the class make-up of each latent's strongest images; CSI, entropy and Gini purity, and
  Pure / Compositional / Distributed counts (metrics/purity).

The random control is the untrained SAE of the same config with the trained ``b_dec`` (and
BatchTopK threshold), encoded over the same split: a second pass, the only analysis that needs one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.paths import overlaps, select
from vista.metrics.purity import purity
from vista.metrics.spectral import spectral_summary

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class DynamicsConfig:
    paths: list[str] = field(
        default_factory=lambda: ["top_k:10", "top_k:20", "percentile:90", "std_threshold:1.5"]
    )
    """Concept-path selections, ``method:value``."""
    min_activation: float = 1e-5
    n_pairs: int = 10000
    """Random and within-class image pairs for the overlaps."""
    label: str = ""
    """Label for paths and purity ('' = the first usable label; none = spectra only)."""
    control: bool = True
    """Compare with a randomly initialised SAE of the same shape."""


def _weights(sae: Any) -> dict[str, np.ndarray]:
    out = {"decoder": sae.W_dec.detach().cpu().numpy()}
    if hasattr(sae, "W_enc"):
        out["encoder"] = sae.W_enc.detach().cpu().numpy()
    return out


def _needs(cfg: DynamicsConfig) -> str:
    for p in cfg.paths:
        method, _, value = p.partition(":")
        if method not in ("top_k", "percentile", "std_threshold", "absolute"):
            return f"unknown concept-path method {method!r} in dynamics.paths"
        try:
            float(value or 0)
        except ValueError:
            return f"dynamics.paths entry {p!r} needs a number after the colon"
    return ""


@register_analysis(
    "dynamics",
    DynamicsConfig,
    "Spectra of the weights, concept paths and latent purity, each against a random SAE.",
    needs=_needs,
)
def run(ctx: Context, cfg: DynamicsConfig) -> Result:
    r = Result("dynamics")
    models = {"trained": ctx.sae}
    if cfg.control:
        models["random"] = ctx.control_sae
    rows = []
    for kind, sae in models.items():
        for mat, w in _weights(sae).items():
            for metric, v in spectral_summary(w).items():
                name = f"{mat}/{metric}" + ("" if kind == "trained" else "/random")
                r.add(name, v, "none")
                rows.append({"model": kind, "matrix": mat, "metric": metric, "value": v})
    r.tables["spectra"] = rows
    usable = [k for k, why in ctx.usable_labels().items() if not why]
    label = cfg.label or (usable[0] if usable else "")
    if not label or label not in usable:
        r.skipped["paths_and_purity"] = "no usable label (dynamics.label)"
        return r
    y, n_cls = ctx.labels[label], len(ctx.class_names[label])
    codes = {"trained": ctx.encoded.codes}
    if cfg.control:
        codes["random"] = ctx.control.codes
    path_rows: list[dict[str, Any]] = []
    purity_rows: list[dict[str, Any]] = []
    for kind, c in codes.items():
        suffix = "" if kind == "trained" else "/random"
        for spec in cfg.paths:
            method, _, value = spec.partition(":")
            sel = select(c, method, float(value or 0), cfg.min_activation)
            ov = overlaps(sel, y, n_cls, cfg.n_pairs, ctx.rng("dynamics", kind, spec))
            path_rows.append({"model": kind, "path": spec, **ov})
            r.add(
                f"{label}/paths/{spec}/between_class_jaccard{suffix}",
                ov["between_class_jaccard"],
                "none",
            )
            r.add(
                f"{label}/paths/{spec}/within_class_jaccard{suffix}",
                ov["within_class_jaccard"],
                "none",
            )
        pur = purity(c, y, n_cls)
        alive = pur["support"] > 0
        counts = {
            k: int(((pur["kind"] == v) & alive).sum())
            for k, v in (("pure", 2), ("compositional", 1), ("distributed", 0))
        }
        purity_rows.append(
            {
                "model": kind,
                "mean_csi": float(pur["csi"][alive].mean()) if alive.any() else np.nan,
                "mean_entropy_purity": float(pur["entropy_purity"][alive].mean())
                if alive.any()
                else np.nan,
                "mean_gini": float(pur["gini"][alive].mean()) if alive.any() else np.nan,
                **counts,
            }
        )
        r.add(
            f"{label}/purity/mean_csi{suffix}",
            purity_rows[-1]["mean_csi"],
            "higher",
            n=int(alive.sum()),
        )
        for k, v in counts.items():
            r.add(f"{label}/purity/n_{k}{suffix}", v, "none", n=int(alive.sum()))
        if kind == "trained":
            r.arrays[f"{label}/csi"] = pur["csi"].astype(np.float32)
            r.arrays[f"{label}/purity_kind"] = pur["kind"].astype(np.int8)
    r.tables[f"{label}/paths"] = path_rows
    r.tables[f"{label}/purity"] = purity_rows
    r.headline = [
        k
        for k in (
            f"{label}/purity/mean_csi",
            f"{label}/purity/mean_csi/random",
            "decoder/stable_rank",
            "decoder/stable_rank/random",
        )
        if k in r.scalars
    ]
    return r
