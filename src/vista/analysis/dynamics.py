"""``dynamics``: the MNIST concept-dynamics metrics (docs/originals.md §5.2-5.5), each next to the same metric
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

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.paths import overlaps, select
from vista.metrics.purity import purity
from vista.metrics.spectral import spectral_summary
from vista.metrics.uncertainty import mean_ci

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


def spectra(r: Result, models: dict[str, Any]) -> None:
    rows = []
    for kind, sae in models.items():
        for mat, w in _weights(sae).items():
            for metric, v in spectral_summary(w).items():
                r.add(f"{mat}/{metric}" + ("" if kind == "trained" else "/random"), v, "none")
                rows.append({"model": kind, "matrix": mat, "metric": metric, "value": v})
    r.tables["spectra"] = rows


def paths(r: Result, ctx: Context, cfg: DynamicsConfig, label: str, kind: str, codes: Any) -> None:
    y, n_cls = ctx.labels[label], len(ctx.class_names[label])
    suffix = "" if kind == "trained" else "/random"
    for spec in cfg.paths:
        method, _, value = spec.partition(":")
        sel = select(codes, method, float(value or 0), cfg.min_activation)
        ov = overlaps(sel, y, n_cls, cfg.n_pairs, ctx.rng("dynamics", kind, spec))
        r.tables.setdefault(f"{label}/paths", []).append({"model": kind, "path": spec, **ov})
        for key in ("between_class_jaccard", "within_class_jaccard", "random_pair_jaccard"):
            r.add(f"{label}/paths/{spec}/{key}{suffix}", ov[key], "none")


def purities(r: Result, ctx: Context, label: str, kind: str, codes: Any) -> None:
    pur = purity(codes, ctx.labels[label], len(ctx.class_names[label]))
    alive = pur["support"] > 0
    suffix = "" if kind == "trained" else "/random"
    counts = {
        k: int(((pur["kind"] == v) & alive).sum())
        for k, v in (("pure", 2), ("compositional", 1), ("distributed", 0))
    }
    means = {
        f"mean_{k}": float(pur[k][alive].mean()) if alive.any() else np.nan
        for k in ("csi", "entropy_purity", "gini")
    }
    r.tables.setdefault(f"{label}/purity", []).append({"model": kind, **means, **counts})
    s = ctx.settings
    csi_ci = mean_ci(pur["csi"][alive], s.n_boot, ctx.rng("dynamics", label, kind), s.confidence)
    r.add(f"{label}/purity/mean_csi{suffix}", means["mean_csi"], "higher", csi_ci,
          int(alive.sum()))  # fmt: skip
    for k, v in counts.items():
        r.add(f"{label}/purity/n_{k}{suffix}", v, "none", n=int(alive.sum()))
    if kind == "trained":
        r.arrays[f"{label}/csi"] = pur["csi"].astype(np.float32)
        r.arrays[f"{label}/purity_kind"] = pur["kind"].astype(np.int8)


OUT = Outputs("dynamics")
for _control in ("", "/random"):
    OUT.scalar("{matrix}/{metric}" + _control, "none", "a spectral measure of W_enc or W_dec")
    OUT.scalar("{label}/paths/{rule}/{metric}" + _control, "none", "activation-path overlap")
    OUT.scalar("{label}/purity/mean_csi" + _control, "higher", "mean class-specificity index")
    OUT.scalar("{label}/purity/n_{kind}" + _control, "none", "latents of each purity kind")
OUT.table("spectra", "the spectral measures, trained and random")
OUT.table("{label}/paths", "path overlaps per rule")
OUT.table("{label}/purity", "purity counts, trained and random")
OUT.array("{label}/csi", "per latent: class-specificity index")
OUT.array("{label}/purity_kind", "per latent: pure, compositional or distributed")


@register_analysis(
    "dynamics",
    DynamicsConfig,
    "Spectra of the weights, concept paths and latent purity, each against a random SAE.",
    needs=_needs,
    order=120,
    outputs=OUT,
)
def run(ctx: Context, cfg: DynamicsConfig) -> Result:
    r = Result("dynamics")
    spectra(r, {"trained": ctx.sae, **({"random": ctx.control_sae} if cfg.control else {})})
    r.headline = ["decoder/stable_rank"] + (["decoder/stable_rank/random"] if cfg.control else [])
    usable = [k for k, why in ctx.usable_labels().items() if not why]
    label = cfg.label or (usable[0] if usable else "")
    if not label or label not in usable:
        r.skipped["paths_and_purity"] = "no usable label (dynamics.label)"
        legacy(r, "")
        return r
    codes = {"trained": ctx.encoded.codes}
    if cfg.control:
        codes["random"] = ctx.control.codes
    for kind, c in codes.items():
        paths(r, ctx, cfg, label, kind, c)
        purities(r, ctx, label, kind, c)
    r.headline = [
        f"{label}/purity/mean_csi",
        *([f"{label}/purity/mean_csi/random"] if cfg.control else []),
        *r.headline,
    ]
    legacy(r, label)
    return r


def legacy(r: Result, label: str) -> None:
    """The seed's result files (docs/originals.md §5.2-5.4, pickles there) as JSON, trained and random side by
    side: ``stable_rank_results.json``, ``concept_paths.json``, ``purity_results.json``."""
    spectra_doc: dict[str, Any] = {}
    for row in r.tables["spectra"]:
        model = spectra_doc.setdefault(row["model"], {})
        model.setdefault(row["matrix"], {})[row["metric"]] = row["value"]
    r.files["stable_rank_results.json"] = spectra_doc
    r.files["concept_paths.json"] = {"label": label, "paths": r.tables.get(f"{label}/paths", [])}
    r.files["purity_results.json"] = {
        "label": label,
        "summary": r.tables.get(f"{label}/purity", []),
    }
