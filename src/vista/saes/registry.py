"""The architecture registry: a dict plus a decorator, filled where each class is defined."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any, TypeVar

from vista.saes.base import SAE
from vista.saes.config import SAEConfig

SAE_REGISTRY: dict[str, type[SAE]] = {}
T = TypeVar("T", bound=type[SAE])


def register_sae(name: str) -> Callable[[T], T]:
    def deco(cls: T) -> T:
        if name in SAE_REGISTRY:
            raise ValueError(f"SAE architecture {name!r} is registered twice.")
        SAE_REGISTRY[name] = cls
        return cls

    return deco


def sae_class(name: str) -> type[SAE]:
    _ensure_loaded()
    if name not in SAE_REGISTRY:
        from vista.errors import VistaError

        raise VistaError(
            f"Unknown SAE architecture {name!r}; choose one of {sorted(SAE_REGISTRY)}."
        )
    return SAE_REGISTRY[name]


def config_from_dict(d: dict[str, Any]) -> SAEConfig:
    """The architecture's own config class from a mapping (unknown keys are ignored)."""
    cls = sae_class(str(d.get("architecture", ""))).config_class
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def make_sae(cfg: SAEConfig | dict[str, Any]) -> SAE:
    """Build an SAE from its config (a dataclass or a mapping such as a Hydra DictConfig)."""
    if not isinstance(cfg, SAEConfig):
        cfg = config_from_dict(dict(cfg))
    else:
        cfg = config_from_dict(asdict(cfg))
    return sae_class(cfg.architecture)(cfg)


def _ensure_loaded() -> None:
    # Importing the package registers every architecture.
    import vista.saes  # noqa: F401
