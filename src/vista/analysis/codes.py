"""SAE latent datasets (``vista encode``): an SAE's codes for every token of a store, and per image.

Seeds 000/001 wrote these with a ``data`` dataset that no reader could open (docs/originals.md §3.4, D14). vista
writes three ordinary activation stores instead, so every verb reads them as they are:

- ``OUT`` (e.g. ``codes.h5``): ``/{split}/encoded`` = the codes of every token, ``(N, T, d_sae)``
  (or ``(N, d_sae)`` for one vector per image);
- ``OUT`` with ``.mean.h5`` / ``.max.h5``: the codes mean- and max-pooled over each image's tokens,
  ``(N, d_sae)`` (pooled in float32 before storage).

Labels, class names, ``original_indices`` and the source's attributes are copied. Like
extraction, an interrupted run resumes where it stopped (``resume=true``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vista.errors import VistaError
from vista.progress import Progress
from vista.saes.io import load_sae
from vista.store import ActivationStore, SplitSpec, StoreWriter, layout

log = logging.getLogger(__name__)
POOLINGS = ("mean", "max")


def pooled_path(out: str | os.PathLike[str], pooling: str) -> Path:
    """``codes.h5`` -> ``codes.mean.h5`` / ``codes.max.h5``."""
    p = Path(out)
    return p.with_name(f"{p.stem}.{pooling}{p.suffix or '.h5'}")


@torch.no_grad()
def encode_store(
    sae_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    batch_images: int = 256,
    device: str = "cpu",
    dtype: str = "float16",
    compression: str | None = "zstd",
    resume: bool = True,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write the token-level codes store and its mean/max-pooled stores; return their paths."""
    paths = {"tokens": Path(out), **{p: pooled_path(out, p) for p in POOLINGS}}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise VistaError(f"{existing[0]!r} already exists; delete it or pass overwrite=true.")
    sae = load_sae(sae_dir, device=device).eval()
    with ActivationStore(store) as src:
        if src.d_model != sae.d_model:
            raise VistaError(
                f"The SAE reads {sae.d_model}-d activations but {str(store)!r} holds "
                f"{src.d_model}-d ones; pair the SAE with the store it was trained for."
            )
        splits = src.splits
        writers = _writers(src, sae, store, sae_dir, paths, dtype, compression, resume)
        try:
            for split, info in splits.items():
                _encode_split(src, split, info.has_token_axis, sae, writers, batch_images, device)
            for w in writers.values():
                w.finish()
        finally:
            for w in writers.values():
                w.close()
    log.info("Wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def _writers(
    src: ActivationStore,
    sae: Any,
    store: str | os.PathLike[str],
    sae_dir: str | os.PathLike[str],
    paths: dict[str, Path],
    dtype: str,
    compression: str | None,
    resume: bool,
) -> dict[str, StoreWriter]:
    """One writer per output: the token-level codes and each pooling, with the source's labels."""
    splits = src.splits
    labels = {s: {n: src.class_names(s, n) for n in info.label_names} for s, info in splits.items()}
    base_attrs = {k: v for k, v in src.attrs.items() if k != layout.FORMAT_ATTR}
    common = {
        **base_attrs,
        "d_model": sae.d_sae,
        "source_store": str(store),
        "sae": str(sae_dir),
        "sae_architecture": sae.cfg.architecture,
        "codes": "sae",
    }

    def specs(tokens: bool) -> dict[str, SplitSpec]:
        return {
            s: SplitSpec(
                n_rows=info.n_rows,
                d_model=sae.d_sae,
                n_tokens=info.n_tokens if (tokens and info.has_token_axis) else None,
                labels=labels[s],
            )
            for s, info in splits.items()
        }

    return {
        "tokens": StoreWriter(
            paths["tokens"],
            specs(True),
            {**common, "pooling": "none"},
            dtype=dtype,
            compression=compression,
            resume=resume,
        ),
        **{
            p: StoreWriter(
                paths[p],
                specs(False),
                {**common, "pooling": p, "token_selection": p},
                dtype=dtype,
                compression=compression,
                resume=resume,
            )
            for p in POOLINGS
        },
    }


def _encode_split(
    src: ActivationStore,
    split: str,
    has_tokens: bool,
    sae: Any,
    writers: dict[str, StoreWriter],
    batch_images: int,
    device: str,
) -> None:
    n = src.split(split).n_rows
    labels = src.labels(split)
    idx = src.original_indices(split)
    if idx is None:
        idx = np.arange(n, dtype=np.int64)
    start = min(w.rows_written(split) for w in writers.values())
    if start:
        log.info("Resuming %s at image %d of %d.", split, start, n)
    with Progress(f"encode {split}", n, start, log) as progress:
        for a in range(start, n, batch_images):
            b = min(a + batch_images, n)
            x = torch.as_tensor(
                np.asarray(src.read_rows(split, a, b), dtype=np.float32), device=device
            )
            if not torch.isfinite(x).all():
                raise VistaError(
                    f"Split {split!r} of {str(src.path)!r} holds NaN or infinite activations in rows "
                    f"{a}-{b}; re-extract the store."
                )
            flat = x.reshape(-1, x.shape[-1])
            codes = sae.encode(flat).float().reshape(*x.shape[:-1], -1)
            per_image = codes if has_tokens else codes[:, None]
            out = {
                "tokens": codes,
                "mean": per_image.mean(dim=1),
                "max": per_image.amax(dim=1),
            }
            for name, w in writers.items():
                done = w.rows_written(split)
                if done >= b:
                    continue
                lo = done - a
                w.append(
                    split,
                    out[name][lo:].cpu().numpy(),
                    {k: v[done:b] for k, v in labels.items()},
                    original_indices=idx[done:b],
                )
            progress.update(b - a)
