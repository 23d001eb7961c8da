"""Strict, atomic JSON: numpy scalars and arrays converted, NaN/inf written as null."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def umask_mode() -> int:
    """The mode a plain ``open`` would give a new file (0o666 minus the umask); ``mkstemp``
    creates 0600 files whatever the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` to ``path`` via a temporary file and a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def read_json_object(path: str | os.PathLike[str], what: str, fix: str) -> dict[str, Any]:
    """The JSON object in ``path``; a file that is not one (unreadable, not JSON, a list) is a
    ``VistaError`` naming ``what`` it should be and the ``fix``."""
    from vista.errors import VistaError

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VistaError(
            f"{str(path)!r} is not readable as {what} ({e.__class__.__name__}); {fix}."
        ) from None
    if not isinstance(doc, dict):
        raise VistaError(f"{str(path)!r} holds a JSON {type(doc).__name__}, not {what}; {fix}.")
    return doc
