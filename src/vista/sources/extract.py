"""Extraction: run an encoder over a labelled dataset and write its activations to a store."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vista.errors import VistaError
from vista.progress import Progress
from vista.sources.datasets import DatasetConfig, make_dataset
from vista.sources.datasets.base import as_dataset_config
from vista.sources.encoders import EncoderConfig, make_encoder
from vista.sources.hooks import capture_tokens, find_module
from vista.store import SplitSpec, StoreWriter

log = logging.getLogger(__name__)


def encoder_fingerprint(enc: Any) -> str:
    """A digest of the encoder's weights (names, shapes, dtypes and values; the first 2**20
    values of each tensor beyond that size) and of its preprocessing."""
    import hashlib

    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in sorted(enc.model.state_dict().items()):
            flat = t.detach().reshape(-1)[: 1 << 20].cpu()
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(
                flat.float().numpy().tobytes()
                if flat.is_floating_point()
                else flat.numpy().tobytes()
            )
    pre = enc.preprocess
    proc: Any = getattr(pre, "processor", None)
    if hasattr(proc, "to_json_string"):
        desc = proc.to_json_string()
    else:  # plain values only: an object's repr may hold its address, which changes every run
        fields = getattr(pre, "__dict__", {})
        desc = json.dumps(
            fields,
            sort_keys=True,
            default=lambda o: o.tolist() if hasattr(o, "tolist") else type(o).__name__,
        )
    h.update(desc.encode())
    return h.hexdigest()[:16]


def extract(
    dataset_cfg: DatasetConfig,
    encoder_cfg: EncoderConfig,
    out: str | os.PathLike[str],
    *,
    dtype: str = "float16",
    compression: str | None = "zstd",
    resume: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``out``: both store splits of the dataset through the encoder, with labels and indices.

    An interrupted extraction leaves ``out.partial``; calling again with the same arguments
    continues from the last written batch and yields the same file as an uninterrupted run.
    Holds ``out``'s lock: a second process writing the same file is refused.
    """
    from vista.lock import output_lock

    with output_lock(out, "extract"):
        return _extract(dataset_cfg, encoder_cfg, Path(out), dtype, compression, resume, overwrite)


def _extract(
    dataset_cfg: DatasetConfig,
    encoder_cfg: EncoderConfig,
    out: Path,
    dtype: str,
    compression: str | None,
    resume: bool,
    overwrite: bool,
) -> Path:
    if out.exists() and not overwrite:
        raise VistaError(f"{str(out)!r} already exists; delete it or pass overwrite=true.")
    ds = make_dataset(dataset_cfg)
    enc = make_encoder(encoder_cfg)
    layer_name, module = find_module(enc.model, enc.resolve_layer(str(encoder_cfg.layer)))
    device = torch.device(encoder_cfg.device)
    compute_dtype = getattr(torch, str(encoder_cfg.dtype))
    tokens = str(encoder_cfg.tokens)

    def run(indices: np.ndarray) -> np.ndarray:
        x = enc.preprocess(ds.load(indices)).to(device=device, dtype=compute_dtype)
        acts = capture_tokens(enc.run, module, x, tokens, enc.prefix_tokens, enc.registers)
        return acts.cpu().numpy()

    if not ds.store_splits:
        raise VistaError(f"Dataset {ds.name!r} does not say which images form the store splits.")
    split_indices = {s: ds.split_indices(parts) for s, parts in ds.store_splits.items()}
    probe = run(next(iter(split_indices.values()))[:1])
    n_tokens = probe.shape[1] if probe.ndim == 3 else None
    d_model = probe.shape[-1]
    specs = {
        s: SplitSpec(n_rows=len(idx), d_model=d_model, n_tokens=n_tokens, labels=ds.class_names)
        for s, idx in split_indices.items()
    }
    attrs = _store_attrs(ds, enc, dataset_cfg, encoder_cfg, layer_name, d_model)
    bs = int(encoder_cfg.batch_size)
    with StoreWriter(out, specs, attrs, dtype=dtype, compression=compression, resume=resume) as w:
        for split, idx in split_indices.items():
            _write_split(w, split, idx, run, ds.labels, bs)
        path = w.finish()
    log.info(
        "Wrote %s (%s, layer %s, tokens=%s, d_model=%d).",
        path,
        enc.name,
        layer_name,
        tokens,
        d_model,
    )
    return path


def _store_attrs(
    ds: Any,
    enc: Any,
    dataset_cfg: DatasetConfig,
    encoder_cfg: EncoderConfig,
    layer_name: str,
    d_model: int,
) -> dict[str, Any]:
    """What the store records about where its activations came from."""
    tokens = str(encoder_cfg.tokens)
    return {
        "model": enc.name,
        "encoder": enc.name,
        "encoder_path": str(encoder_cfg.path),
        # The whole encoder config, so `splice` can rebuild the model the store came from.
        "encoder_config": json.dumps(dataclasses.asdict(encoder_cfg)),
        # Weights and preprocessing: a resumed extraction must read through the same encoder.
        "encoder_fingerprint": encoder_fingerprint(enc),
        "layer": layer_name,
        "token_selection": tokens,
        "prefix_tokens": enc.prefix_tokens,
        "register_tokens": enc.registers,
        "d_model": d_model,
        "dataset": ds.name,
        "dataset_root": str(dataset_cfg.root),
        # The whole dataset config, so a report can draw the images of any row later.
        "dataset_config": json.dumps(dataclasses.asdict(as_dataset_config(dataset_cfg))),
        "store_splits": {k: list(v) for k, v in ds.store_splits.items()},
        "split": ds.split_info,
    }


def _write_split(
    w: StoreWriter,
    split: str,
    idx: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    labels: dict[str, np.ndarray],
    bs: int,
) -> None:
    """Encode and append the images ``idx`` of ``split``, from where an interrupted run stopped."""
    start = w.rows_written(split)
    if start:
        log.info("Resuming %s at image %d of %d.", split, start, len(idx))
    # Batches keep the boundaries of an uninterrupted run (a resumed run recomputes the
    # written head of its first batch), so resumed activations are bit-identical.
    with Progress(f"extract {split}", len(idx), start, log) as progress:
        for a in range(start - start % bs, len(idx), bs):
            batch = idx[a : a + bs]
            skip = max(start - a, 0)
            acts = run(batch)[skip:]
            batch = batch[skip:]
            w.append(split, acts, {k: v[batch] for k, v in labels.items()}, original_indices=batch)
            progress.update(len(batch))
