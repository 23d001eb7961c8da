"""The grid as named, checked SAE configs (every entry is validated before any training)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from vista.benchmark.config import GridConfig
from vista.errors import VistaError
from vista.saes import SAES, SAEConfig
from vista.saes.registry import sae_config, sae_name


def _with_shared(arch: str, shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(SAES.get_entry(arch).config_class)}
    return {**{k: v for k, v in shared.items() if k in known}, **own, "architecture": arch}


def _sparsities(cls: Any, grid: GridConfig) -> list[dict[str, Any]]:
    """The sparsity settings the grid sweeps for an architecture, read from its config's fields:
    ``k`` (codes per token) from ``grid.k``; with ``grid.match_l0``, ``target_l0`` at each of
    ``grid.k``; else ``l1_coeff`` (times the class's ``penalty_scale``) or ``l0_coeff``."""
    known = {f.name for f in fields(cls.config_class)}
    if "k" in known:
        return [{"k": k} for k in grid.k]
    if grid.match_l0 and "target_l0" in known:
        return [{"target_l0": float(k)} for k in grid.k]
    if "l1_coeff" in known:
        return [{"l1_coeff": cls.penalty_scale * c} for c in grid.l1_coeff]
    if "l0_coeff" in known:
        return [{"l0_coeff": c} for c in grid.l0_coeff]
    return [{}]


def grid_configs(grid: GridConfig, d_model: int) -> list[SAEConfig]:
    """Every SAE of the grid, checked (unknown architectures and options name their entry)."""
    out: list[SAEConfig] = []
    for arch in grid.architectures:
        cls = SAES.get_entry(arch)
        if not cls.trainable:
            raise VistaError(
                f"bench.grid.architectures: {arch!r} is not trainable; put baselines in grid.baselines."
            )
        sparsities = _sparsities(cls, grid)
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
            fitted = sorted(n for n, c in SAES.items() if getattr(c, "fitted", False))
            raise VistaError(
                f"bench.grid.baselines: {base!r} is not a baseline ({', '.join(fitted)})."
            )
        for width in grid.widths:
            out.append(
                sae_config(
                    {"architecture": base, "d_model": d_model, "d_sae": width, "k": k},
                    f"baseline {base}",
                )
            )
    return out
