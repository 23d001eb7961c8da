"""Export and import: ``cfg.json`` + ``sae_weights.safetensors`` (the SAELens layout)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vista.errors import VistaError
from vista.saes.base import SAE
from vista.saes.registry import config_from_dict, make_sae

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


def save_sae(
    sae: SAE, directory: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` into ``directory`` atomically.

    Both files are written under temporary names and renamed, weights first, so a reader never
    sees a config without its weights.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg = asdict(sae.cfg)
    doc = {
        # SAELens-compatible keys.
        "architecture": cfg["architecture"],
        "d_in": sae.d_model,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        **({"k": cfg["k"]} if "k" in cfg else {}),
        # vista's own: the full architecture config and the provenance.
        "vista": {"config": cfg, "metadata": metadata or {}},
    }
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sae.state_dict().items()
    }
    _atomic(out / WEIGHTS_FILE, lambda p: save_file(tensors, str(p)))
    _atomic(out / CFG_FILE, lambda p: Path(p).write_text(json.dumps(doc, indent=2) + "\n"))
    return out


def load_sae(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> SAE:
    """Load an SAE written by ``save_sae``."""
    d = Path(directory)
    cfg_path, w_path = d / CFG_FILE, d / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise VistaError(
            f"{str(d)!r} is not an SAE directory (it needs {CFG_FILE} and {WEIGHTS_FILE}); "
            "point at the `sae` folder written by `vista train`."
        )
    try:
        doc = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise VistaError(f"{str(cfg_path)!r} is not valid JSON ({e}); re-export the SAE.") from None
    cfg_dict = doc.get("vista", {}).get("config") or {
        "architecture": doc.get("architecture"),
        "d_model": doc.get("d_in"),
        "d_sae": doc.get("d_sae"),
        **({"k": doc["k"]} if "k" in doc else {}),
    }
    sae = make_sae(config_from_dict(cfg_dict))
    state = load_file(str(w_path))
    missing = set(sae.state_dict()) - set(state)
    if missing:
        raise VistaError(
            f"{str(w_path)!r} lacks tensors {sorted(missing)} needed by a "
            f"{cfg_dict['architecture']!r} SAE; re-export it."
        )
    try:
        sae.load_state_dict({k: state[k] for k in sae.state_dict()})
    except RuntimeError as e:
        raise VistaError(f"{str(w_path)!r} does not match {str(cfg_path)!r}: {e}") from None
    return sae.to(device).eval()


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    doc = json.loads((Path(directory) / CFG_FILE).read_text())
    return dict(doc.get("vista", {}).get("metadata", {}))


def _atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
