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
from vista.jsonio import umask_mode
from vista.saes.base import SAE
from vista.saes.interop import (
    SAELENS_KEYS,
    detect_and_read,
    from_saelens,
)
from vista.saes.registry import config_from_dict, make_sae

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
EXTRA_FILE = "vista_state.safetensors"
"""Tensors SAELens does not know (e.g. JumpReLU's pre-activation scale), kept apart so that
``sae_weights.safetensors`` loads strictly in SAELens."""


def save_sae(
    sae: SAE, directory: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` into ``directory`` atomically.

    Architectures SAELens has are written under its name and tensor names (BatchTopK and
    Matryoshka as the JumpReLU their threshold makes them), so ``SAE.load_from_disk`` gives the
    same encodings. Files are written under temporary names and renamed, weights first, so a
    reader never sees a config without its weights.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg = asdict(sae.cfg)
    export = sae.export_architecture()
    doc = {
        # SAELens-compatible keys.
        "architecture": export,
        "d_in": sae.d_model,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        **({"k": cfg["k"], "rescale_acts_by_decoder_norm": False} if export == "topk" else {}),
        **(
            {
                "max_iterations": cfg["k"],
                "residual_threshold": 0.0,
                "stop_on_duplicate_support": False,
            }
            if export == "matching_pursuit"
            else {}
        ),
        # vista's own: the full architecture config and the provenance.
        "vista": {"config": cfg, "metadata": metadata or {}},
    }
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sae.state_dict().items()
    }
    keys = SAELENS_KEYS.get(export)
    main = {k: v for k, v in tensors.items() if keys is None or k in keys}
    extra = {k: v for k, v in tensors.items() if k not in main}
    _atomic(out / WEIGHTS_FILE, lambda p: save_file(main, str(p)))
    if extra:
        _atomic(out / EXTRA_FILE, lambda p: save_file(extra, str(p)))
    else:
        (out / EXTRA_FILE).unlink(missing_ok=True)
    _atomic(out / CFG_FILE, lambda p: Path(p).write_text(json.dumps(doc, indent=2) + "\n"))
    return out


def load_sae(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SAE:
    """Load an SAE: a vista or SAELens directory, a dictionary_learning ``ae.pt`` (or its
    directory), an EleutherAI sparsify directory, or an original VISTA checkpoint file."""
    d = Path(path)
    if not d.exists():
        raise VistaError(
            f"There is no SAE at {str(d)!r}; point at the `sae` folder written by `vista train`."
        )
    foreign = detect_and_read(d)
    if foreign is not None:
        cfg_dict, state = foreign
        origin = str(d)
    else:
        cfg_path, w_path = d / CFG_FILE, d / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise VistaError(
                f"{str(d)!r} is not an SAE directory (it needs {CFG_FILE} and {WEIGHTS_FILE}, "
                "or is a dictionary_learning, sparsify or VISTA checkpoint); point at the `sae` "
                "folder written by `vista train`."
            )
        try:
            doc = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise VistaError(
                f"{str(cfg_path)!r} is not valid JSON ({e}); re-export the SAE."
            ) from None
        state = _read_tensors(w_path)
        if (d / EXTRA_FILE).is_file():
            state.update(_read_tensors(d / EXTRA_FILE))
        if "vista" in doc:
            cfg_dict = doc["vista"]["config"]
        else:
            cfg_dict, state = from_saelens(d, doc, state)
        origin = str(w_path)
    sae = make_sae(config_from_dict(cfg_dict))
    missing = set(sae.state_dict()) - set(state)
    if missing:
        raise VistaError(
            f"{origin!r} lacks tensors {sorted(missing)} needed by a "
            f"{cfg_dict['architecture']!r} SAE; re-export it."
        )
    try:
        sae.load_state_dict({k: state[k] for k in sae.state_dict()})
    except RuntimeError as e:
        raise VistaError(f"{origin!r} does not match its configuration: {e}") from None
    broken = sae.non_finite()
    if broken:
        raise VistaError(
            f"{origin!r} holds NaN or infinite values in {', '.join(sorted(broken))}; its results "
            "would be garbage: re-train or re-export the SAE."
        )
    return sae.to(device).eval()


def sae_digest(path: str | os.PathLike[str], edge: int = 4 << 20) -> str:
    """A digest of an SAE's files (a directory's files, or the one file), cheap at any size:
    each file's name, size, first and last ``edge`` bytes. Tells whether two paths hold the same
    SAE, wherever the directory was moved."""
    import hashlib

    p = Path(path)
    files = (
        sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        if p.is_dir()
        else [p]
    )
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}:".encode())
        with f.open("rb") as fh:
            h.update(fh.read(edge))
            if size > 2 * edge:
                fh.seek(size - edge)
                h.update(fh.read(edge))
    return h.hexdigest()[:16]


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise VistaError(
            f"{str(path)!r} is not a readable safetensors file ({e}); re-export the SAE."
        ) from None


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    doc = json.loads((Path(directory) / CFG_FILE).read_text())
    return dict(doc.get("vista", {}).get("metadata", {}))


def _atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, umask_mode())  # mkstemp makes 0600 files; outputs get the user's umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
