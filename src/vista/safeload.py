"""Reading files without running code from them.

A pickle can name any importable callable and have it called while loading (``os.system`` is the
classic payload). vista reads pickled files only through restricted unpicklers:

- PyTorch files (checkpoints, state dicts, legacy VISTA ``.pt``): ``torch.load(weights_only=True)``,
  torch's own unpickler that rebuilds tensors and plain containers only, plus OmegaConf's config
  containers (Hydra-era checkpoints keep their hyper-parameters in them; they hold data, not code).
- The MNIST-family dataset pickles: ``numpy_pickle``, which rebuilds numpy arrays and nothing else.

Anything else is refused with a sentence naming the file. Loading a whole pickled module
(``encoder=module`` with a saved module) is the one exception, and only with
``encoder.trust_pickled_code=true``, whose name says what it does.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import IO, Any

from vista.errors import VistaError

_REFUSAL = (
    "vista does not unpickle arbitrary objects, because unpickling can run code from the file"
)


def _omegaconf_globals() -> list[Any]:
    try:
        import typing
        from collections import defaultdict

        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode
    except ImportError:
        return []
    plain = [dict, list, tuple, set, int, float, str, bool]  # referenced as types, e.g. ref_type
    return [
        DictConfig,
        ListConfig,
        ContainerMetadata,
        Metadata,
        AnyNode,
        typing.Any,
        defaultdict,
        *plain,
    ]


def load_torch(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors, plain containers and OmegaConf configs."""
    import torch

    try:
        with torch.serialization.safe_globals(_omegaconf_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        what = next(
            (ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else ""
        )
        raise VistaError(
            f"{str(path)!r} holds Python objects beyond tensors and plain data ({what.strip()[:160]}); "
            f"{_REFUSAL}: save the weights with torch.save(model.state_dict()) or safetensors."
        ) from None


_NUMPY = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle: str -> bytes
}


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array part")


def numpy_pickle(f: IO[bytes] | gzip.GzipFile, path: str | Path, encoding: str = "latin1") -> Any:
    """One object from an open pickle: numpy arrays in tuples, lists and dicts, nothing else."""
    try:
        return _NumpyUnpickler(f, encoding=encoding).load()
    except pickle.UnpicklingError as e:
        raise VistaError(
            f"{str(path)!r} is not a pickle of numpy arrays ({e}); {_REFUSAL}."
        ) from None
