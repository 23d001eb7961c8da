"""The architecture registry (the generic ``vista.registry.Registry``), filled where each class is
defined, and the strict conversion of a mapping to the architecture's own config."""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vista.errors import VistaError
from vista.registry import Registry
from vista.saes.base import SAE
from vista.saes.config import SAEConfig

SAES: Registry[type[SAE]] = Registry("SAE architecture", "vista.saes")
SAE_REGISTRY = SAES
register_sae = SAES.register


def sae_class(name: str) -> type[SAE]:
    return SAES.get_entry(name)


def check_keys(d: dict[str, Any], where: str = "") -> type[SAEConfig]:
    """The config class of ``d["architecture"]``, or a ``VistaError`` naming unknown keys."""
    arch = str(d.get("architecture", ""))
    cls = sae_class(arch).config_class
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise VistaError(
            f"{where + ': ' if where else ''}unknown option(s) {unknown} for the {arch} SAE; "
            f"its options are {sorted(names)}."
        )
    return cls


def sae_config(node: Any, where: str = "sae") -> SAEConfig:
    """A mapping or config -> the architecture's own config class, types and keys checked."""
    d = asdict(node) if is_dataclass(node) and not isinstance(node, type) else dict(node)
    cls = check_keys(d, where)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), d)
        out = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise VistaError(f"{where}: {str(e).strip().splitlines()[0].rstrip('.')}.") from None
    assert isinstance(out, SAEConfig)
    return out


SPARSITY_KEYS = (("k", "k"), ("target_l0", "L0-"), ("l1_coeff", "l1-"), ("l0_coeff", "l0-"))
"""The settings that set an SAE's sparsity, with their tag in its name, in order of precedence."""


def sae_name(cfg: SAEConfig | dict[str, Any]) -> str:
    """The one name of an SAE config: architecture, width, the setting that sets its sparsity,
    and for trained (not fitted) architectures the seed: ``topk_d512_k16_s0``,
    ``vanilla_d512_l1-0.1_s0``, ``jumprelu_d512_L0-8_s0``, ``pca_d512_k16``."""
    d = asdict(cfg) if isinstance(cfg, SAEConfig) else dict(cfg)
    arch = str(d["architecture"])
    parts = [arch, f"d{d['d_sae']}"]
    for key, tag in SPARSITY_KEYS:
        if d.get(key):  # a target_l0 of 0 means none
            parts.append(f"{tag}{d[key]:g}")
            break
    fitted = arch in SAES and getattr(SAES[arch], "fitted", False)
    if not fitted:
        parts.append(f"s{d.get('seed', 0)}")
    return "_".join(parts)


def config_from_dict(d: dict[str, Any]) -> SAEConfig:
    """The architecture's own config class from a mapping; an unknown key is an error."""
    return check_keys(d)(**d)


def base_fields(cfg: SAEConfig) -> dict[str, Any]:
    """The fields every architecture shares (to build another architecture on the same shape)."""
    shared = {f.name for f in fields(SAEConfig)}
    return {k: v for k, v in asdict(cfg).items() if k in shared}


def make_sae(cfg: SAEConfig | dict[str, Any]) -> SAE:
    """Build an SAE from its config (a dataclass, or a mapping checked by ``config_from_dict``)."""
    if not isinstance(cfg, SAEConfig):
        cfg = config_from_dict(dict(cfg))
    elif type(cfg) is not sae_class(cfg.architecture).config_class:
        cfg = config_from_dict(asdict(cfg))
    bad = cfg.problems()
    if bad:
        raise VistaError(f"Invalid SAE settings: {'; '.join(bad)}.")
    return sae_class(cfg.architecture)(cfg)
