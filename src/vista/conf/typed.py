"""The one place where Hydra's config nodes become typed dataclasses.

The CLI calls ``to_job`` once; everything below it (training, extraction, analyses) takes the
dataclasses, never an OmegaConf node. Unknown keys and wrong types are errors here, including in
the places Hydra cannot check (the ``sae`` node of ``vista run`` and the entries of ``sweep``).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vista.conf import bounds
from vista.errors import VistaError
from vista.saes import SAEConfig, sae_class
from vista.saes.registry import sae_config


def missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Required settings (``???``) that were not given, as dotted keys."""
    out = []
    for key in cfg:
        path = f"{prefix}{key!s}"
        if OmegaConf.is_missing(cfg, key):
            out.append(path)
        else:
            node = cfg._get_node(key)
            if isinstance(node, DictConfig) and not OmegaConf.is_missing(cfg, key):
                out.extend(missing_keys(node, f"{path}."))
    return out


def with_params_file(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the YAML file named by its ``params`` setting read over it (keys checked)."""
    path = cfg.get("params") if "params" in cfg else None
    if not path:
        return cfg
    from pathlib import Path

    p = Path(str(path))
    if not p.is_file():
        raise VistaError(f"params={path!r}: no such file; give the params.yaml of the pipeline.")
    import yaml

    try:
        doc = OmegaConf.load(p)
        if not isinstance(doc, DictConfig):
            raise VistaError(
                f"params={path!r} holds a YAML list or value, not a mapping of settings; give the "
                "params.yaml that `vista bench init` wrote."
            )
        keep = {k: cfg[k] for k in ("stage", "params") if k in cfg}
        return OmegaConf.merge(cfg, doc, keep)  # type: ignore[return-value]
    except (OmegaConfBaseException, yaml.YAMLError, UnicodeDecodeError) as e:
        # A python/object tag is refused by the safe loader: nothing in the file runs.
        raise VistaError(
            f"params={path!r} is not a valid settings file ({_short(e)}); give the params.yaml "
            "that `vista bench init` wrote (plain YAML: no tags)."
        ) from None


def to_job(cfg: DictConfig) -> Any:
    """The verb's job dataclass, with every nested config typed (SAE configs included)."""
    missing = missing_keys(cfg)
    if missing:
        raise VistaError(
            f"Missing required setting(s) {', '.join(missing)}: pass them as {missing[0]}=VALUE."
        )
    try:
        job: Any = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise VistaError(f"Invalid configuration: {_short(e)}.") from None
    names = {f.name for f in fields(job)}
    if "sae" in names and not isinstance(job.sae, str):
        job.sae = sae_config(job.sae, "sae")
    if "sweep" in names:
        base = asdict(job.sae)
        entries = job.sweep or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise VistaError(
                "sweep must be a list of mappings, e.g. 'sweep=[{k: 64}, {d_sae: 8192}]'."
            )
        job.sweep = [sweep_entry(base, e, f"sweep entry {i}") for i, e in enumerate(entries)]
    bad = bounds.problems(job)
    if bad:
        raise VistaError(f"Invalid settings: {'; '.join(bad)}.")
    return job


def sweep_entry(base: dict[str, Any], entry: dict[str, Any], where: str) -> SAEConfig:
    """``entry`` over ``base``: of the base, only the settings the entry's architecture has are
    kept (``{architecture: vanilla}`` over a TopK base drops ``k``); the entry's own keys are
    checked strictly."""
    arch = str(entry.get("architecture", base.get("architecture", "")))
    known = {f.name for f in fields(sae_class(arch).config_class)}
    return sae_config({**{k: v for k, v in base.items() if k in known}, **entry}, where)


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0].rstrip(".")
