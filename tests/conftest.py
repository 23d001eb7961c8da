"""Shared fixtures: stores in vista's layout and in the exact original VISTA layout."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from tests import peers
from vista.store import SplitSpec, StoreWriter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# An analysis that writes an output it does not declare fails the test (vista.analysis.declared).
os.environ.setdefault("VISTA_STRICT_OUTPUTS", "1")


def pytest_sessionstart(session: pytest.Session) -> None:
    """``make test`` builds the peers' environments while the suite runs (tests/peers.py)."""
    if os.environ.get("VISTA_BUILD_PEERS"):
        peers.start_build()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Never leave the build running (a session that did not reach the interop tests)."""
    if peers._build is not None:
        peers._build.wait()


def write_original_vista_store(
    path: Path,
    splits: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]],
    batch: int = 8,
) -> Path:
    """Write a file exactly as the original VISTA extractor does (docs/originals.md §3.2).

    float16 ``/{split}/encoded`` chunked ``(min(batch, N), T, D)`` with hdf5plugin Zstd level 3,
    int64 labels chunked ``(min(4 * batch, N),)``, ``original_indices``, root attrs model/dataset,
    and nothing vista adds.
    """
    with h5py.File(path, "w") as f:
        f.attrs["model"] = "PaliGemma2Adapter"
        f.attrs["dataset"] = "fairface"
        for split, (enc, labels) in splits.items():
            n = len(enc)
            g = f.create_group(split)
            g.create_dataset(
                "encoded",
                data=enc.astype(np.float16),
                chunks=(min(batch, n), *enc.shape[1:]),
                **hdf5plugin.Zstd(clevel=3),
            )
            lg = g.create_group("labels")
            for name, y in labels.items():
                lg.create_dataset(
                    name,
                    data=y.astype(np.int64),
                    chunks=(min(4 * batch, n),),
                    **hdf5plugin.Zstd(clevel=3),
                )
            g.create_dataset("original_indices", data=np.arange(n, dtype=np.int64) * 3)
    return path


def write_vista_store(
    path: Path,
    acts: dict[str, np.ndarray],
    labels: dict[str, dict[str, np.ndarray]] | None = None,
    class_names: dict[str, list[str]] | None = None,
    compression: str | None = "zstd",
    dtype: str = "float16",
) -> Path:
    """Write a store with vista's writer in one append per split."""
    class_names = class_names or {}
    labels = labels or {s: {} for s in acts}
    specs = {
        s: SplitSpec(
            n_rows=len(a),
            d_model=a.shape[-1],
            n_tokens=a.shape[1] if a.ndim == 3 else None,
            labels={
                k: class_names.get(k, [str(i) for i in range(int(v.max()) + 1)])
                for k, v in labels[s].items()
            },
        )
        for s, a in acts.items()
    }
    with StoreWriter(
        path,
        specs,
        {"encoder": "test", "layer": "x", "token_selection": "all"},
        compression=compression,
        dtype=dtype,
    ) as w:
        for s, a in acts.items():
            w.append(s, a, labels[s], np.arange(len(a)))
        w.finish()
    return path


def sae_cfg(arch: str, d_model: int, d_sae: int, k: int = 4, **extra: object) -> dict:
    """A config mapping for ``arch``; ``k`` only where the architecture has one."""
    from dataclasses import fields

    from vista.saes import SAES

    cfg: dict = {"architecture": arch, "d_model": d_model, "d_sae": d_sae, **extra}
    if "k" in {f.name for f in fields(SAES[arch].config_class)}:
        cfg["k"] = k
    return cfg


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def labelled_store(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A small (N, D) store whose activations depend on a 3-class label."""
    d = 16
    centers = rng.normal(size=(3, d)) * 3
    out = {}
    labs = {}
    for s, n in (("training", 600), ("validation", 300)):
        y = rng.integers(0, 3, size=n)
        out[s] = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
        labs[s] = {"shape": y}
    return write_vista_store(
        tmp_path / "store.h5", out, labs, {"shape": ["circle", "square", "star"]}
    )
