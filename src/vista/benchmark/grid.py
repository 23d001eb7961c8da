"""The grid as named, checked SAE configs (every entry is validated before any training)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from vista.benchmark.config import TOPK_FAMILY, GridConfig
from vista.errors import VistaError
from vista.saes import SAES, SAEConfig
from vista.saes.registry import sae_config


def sae_name(cfg: SAEConfig) -> str:
    """``topk_d512_k16_s0``, ``vanilla_d512_l1-0.1_s0``, ``pca_d512_k16``."""
    d = asdict(cfg)
    parts = [cfg.architecture, f"d{cfg.d_sae}"]
    for key, tag in (("k", "k"), ("target_l0", "L0-"), ("l1_coeff", "l1-"), ("l0_coeff", "l0-")):
        if key in d and (key != "k" or cfg.architecture in (*TOPK_FAMILY, "pca", "nmf", "random")):
            if key == "target_l0" and not d[key]:
                continue
            parts.append(f"{tag}{d[key]:g}")
            break
    if not getattr(SAES[cfg.architecture], "fitted", False):
        parts.append(f"s{cfg.seed}")
    return "_".join(parts)


def _with_shared(arch: str, shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(SAES.get_entry(arch).config_class)}
    return {**{k: v for k, v in shared.items() if k in known}, **own, "architecture": arch}


def grid_configs(grid: GridConfig, d_model: int) -> list[SAEConfig]:
    """Every SAE of the grid, checked (unknown architectures and options name their entry)."""
    out: list[SAEConfig] = []
    for arch in grid.architectures:
        cls = SAES.get_entry(arch)
        if not cls.trainable:
            raise VistaError(
                f"bench.grid.architectures: {arch!r} is not trainable; put baselines in grid.baselines."
            )
        if arch in TOPK_FAMILY:
            sparsities: list[dict[str, Any]] = [{"k": k} for k in grid.k]
        elif grid.match_l0 and arch in ("vanilla", "gated", "jumprelu"):
            sparsities = [{"target_l0": float(k)} for k in grid.k]
        elif arch == "vanilla":
            sparsities = [{"l1_coeff": c} for c in grid.l1_coeff]
        elif arch == "gated":
            sparsities = [{"l1_coeff": 5 * c} for c in grid.l1_coeff]
        elif arch == "jumprelu":
            sparsities = [{"l0_coeff": c} for c in grid.l0_coeff]
        else:
            sparsities = [{}]
        for width in grid.widths:
            for sp in sparsities:
                for seed in grid.seeds:
                    own = {"d_model": d_model, "d_sae": width, "seed": seed, **sp}
                    out.append(
                        sae_config(_with_shared(arch, grid.sae, own), f"grid entry {arch} {own}")
                    )
    for i, e in enumerate(grid.extra):
        entry = dict(e)
        out.append(sae_config({**entry, "d_model": d_model}, f"bench.grid.extra entry {i}"))
    names = [sae_name(c) for c in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise VistaError(
            f"bench.grid gives two SAEs the same name {sorted(dup)}; remove the duplicates."
        )
    return out


def baseline_configs(grid: GridConfig, d_model: int) -> list[SAEConfig]:
    k = sorted(grid.k)[len(grid.k) // 2] if grid.k else 16
    out = []
    for base in grid.baselines:
        if not getattr(SAES.get_entry(base), "fitted", False):
            raise VistaError(
                f"bench.grid.baselines: {base!r} is not a baseline (pca, kmeans, nmf, random)."
            )
        for width in grid.widths:
            out.append(
                sae_config(
                    {"architecture": base, "d_model": d_model, "d_sae": width, "k": k},
                    f"baseline {base}",
                )
            )
    return out
