"""Extraction: run an encoder over a labelled dataset and write its activations to a store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from vista.sources.loader import BatchImages, resolve_workers, run_batches
from vista.store import SplitSpec, StoreWriter
from vista.store.sharded import DEFAULT_SHARD_BYTES
from vista.store.writer import chunk_rows_for

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
    shard_gb: float = -1.0,
    ranks: Ranks | None = None,
    workers: int = -1,
) -> Path:
    """Write ``out``: both store splits of the dataset through the encoder, with labels and indices.

    An interrupted extraction leaves ``out.partial``; calling again with the same arguments
    continues from the last written batch and yields the same file as an uninterrupted run.
    With ``shard_gb`` above 0, ``out`` is a sharded store (a directory, docs/storage.md) of shards
    of about that many GiB; an interrupted run keeps its finished shards and resumes the one it
    was writing. With ``ranks`` of several processes (``vista.train.launch``, through Lightning),
    each writes a contiguous share of the shards, and the first writes the manifest once all are
    done. Images are loaded ahead of the forward pass by ``workers`` processes (0: in this one;
    -1: automatic, ``vista.sources.loader.resolve_workers``). Holds ``out``'s lock: a second
    extraction writing the same output is refused.
    """
    from vista.lock import output_lock

    with output_lock(out, "extract", beside=True):
        return _extract(
            dataset_cfg,
            encoder_cfg,
            Path(out),
            dtype,
            compression,
            resume,
            overwrite,
            shard_gb,
            ranks,
            workers,
        )


def _extract(
    dataset_cfg: DatasetConfig,
    encoder_cfg: EncoderConfig,
    out: Path,
    dtype: str,
    compression: str | None,
    resume: bool,
    overwrite: bool,
    shard_gb: float = -1.0,
    ranks: Ranks | None = None,
    workers: int = -1,
) -> Path:
    ranks = ranks or Ranks()
    if ranks.world == 1:
        check_out(out, overwrite, shard_gb)
    ds = make_dataset(dataset_cfg)
    enc = make_encoder(encoder_cfg)
    device = torch.device(encoder_cfg.device) if ranks.device is None else ranks.device
    feed, layer_name = _feed(
        ds, enc, encoder_cfg, device, resolve_workers(workers, device, ranks.local)
    )
    tokens = str(encoder_cfg.tokens)
    if not ds.store_splits:
        raise VistaError(f"Dataset {ds.name!r} does not say which images form the store splits.")
    split_indices = {s: ds.split_indices(parts) for s, parts in ds.store_splits.items()}
    probe = feed.run(next(iter(split_indices.values()))[:1])
    n_tokens = probe.shape[1] if probe.ndim == 3 else None
    d_model = probe.shape[-1]
    specs = {
        s: SplitSpec(n_rows=len(idx), d_model=d_model, n_tokens=n_tokens, labels=ds.class_names)
        for s, idx in split_indices.items()
    }
    attrs = _store_attrs(ds, enc, dataset_cfg, encoder_cfg, layer_name, d_model)
    bs = int(encoder_cfg.batch_size)
    row_bytes = (n_tokens or 1) * d_model * np.dtype(dtype).itemsize
    total = sum(len(idx) for idx in split_indices.values()) * row_bytes
    shard_gb = resolve_shard_gb(shard_gb, total, ranks.world)
    if shard_gb > 0:
        if out.is_file() and overwrite:
            out.unlink()  # a one-file store replaced by a sharded one
        if ranks.rank == 0:
            log.info("%.1f GB of activations: writing a sharded store into %s/ (shards of %g GiB).",
                     total / 1e9, out, shard_gb)  # fmt: skip
        writing = (dtype, compression, resume, int(shard_gb * 1024**3))
        path = _write_shards(out, split_indices, specs, attrs, feed, ds.labels, bs, writing, ranks)
    else:
        with StoreWriter(out, specs, attrs, dtype=dtype, compression=compression,
                         resume=resume) as w:  # fmt: skip
            for split, idx in split_indices.items():
                _write_split(w, split, idx, feed, ds.labels, bs)
            path = w.finish()
    ranks.wait()
    if ranks.rank == 0:
        log.info("Wrote %s (%s, layer %s, tokens=%s, d_model=%d).", path, enc.name, layer_name,
                 tokens, d_model)  # fmt: skip
    return path


AUTO_SHARD_GB = 16.0
"""With ``shard_gb=-1`` (the default), a store of more activation bytes than this (GiB) is
written as shards; a smaller one as one file."""
AUTO_SHARD_SIZE_GB = DEFAULT_SHARD_BYTES / 1024**3
"""The shard size ``shard_gb=-1`` chooses: ``vista shard``'s default, 2 GiB."""


def resolve_shard_gb(shard_gb: float, total_bytes: int, world: int) -> float:
    """The shard size to write (0: one file). ``shard_gb`` -1 is automatic: shards of
    ``AUTO_SHARD_SIZE_GB`` on several processes or above ``AUTO_SHARD_GB``, else one file."""
    if shard_gb >= 0:
        return shard_gb
    if world > 1 or total_bytes > AUTO_SHARD_GB * 1024**3:
        return AUTO_SHARD_SIZE_GB
    return 0.0


def check_out(out: Path, overwrite: bool, shard_gb: float) -> None:
    """Refuse an existing output (unless ``overwrite``); a sharded output without its manifest is
    an interrupted run, continued (``shard_gb`` 0: one file; above 0: shards; -1: either)."""
    from vista.lock import lock_path
    from vista.store.sharded import MANIFEST

    if shard_gb > 0 and out.is_file():
        raise VistaError(f"{str(out)!r} is a file; with shard_gb, out is the directory to write.")
    if shard_gb != 0 and out.is_dir() and not (out / MANIFEST).is_file():
        return  # an interrupted sharded extraction: its finished shards are kept
    if out.is_dir() and all(p.name == lock_path(out).name for p in out.iterdir()):
        return  # only the output lock this run holds
    if out.exists() and not overwrite:
        raise VistaError(f"{str(out)!r} already exists; delete it or pass overwrite=true.")
    if out.is_dir() and overwrite:
        if not (out / MANIFEST).is_file():
            raise VistaError(f"{str(out)!r} is a directory, not a store; choose another out.")
        shutil.rmtree(out)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one extraction (one, unless
    ``vista.train.launch`` started several through Lightning)."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    device: torch.device | None = None
    wait: Callable[[], None] = lambda: None
    """In the process that started the others: wait until they have exited (``wait_for_ranks``)."""
    local: int = 1
    """Processes of the extraction on this machine (they share its cores for loading images)."""


def _shard_plan(
    split_indices: dict[str, np.ndarray],
    specs: dict[str, SplitSpec],
    dtype: str,
    shard_bytes: int,
    bs: int,
) -> list[tuple[str, int, int, int]]:
    """``(split, i, start, stop)`` of every shard, in order. Whole batches per shard: each shard
    then runs the batches of a one-file extraction, so its activations are bit-identical to that
    file's (an encoder's numerics depend on the batch)."""
    from vista.store import sharded

    plan = []
    for split, idx in split_indices.items():
        spec = specs[split]
        step = sharded.rows_per_shard(
            spec.n_tokens or 1, spec.d_model, np.dtype(dtype).itemsize, shard_bytes
        )
        step = max(bs, step // bs * bs)
        plan += [
            (split, i, a, min(a + step, len(idx))) for i, a in enumerate(range(0, len(idx), step))
        ]
    return plan


def _write_shards(
    out: Path,
    split_indices: dict[str, np.ndarray],
    specs: dict[str, SplitSpec],
    attrs: dict[str, Any],
    feed: Feed,
    labels: dict[str, np.ndarray],
    bs: int,
    writing: tuple[str, str | None, bool, int],
    ranks: Ranks,
) -> Path:
    """``out`` as a sharded store, this process's contiguous share of the shards; a finished shard
    is kept, the one being written resumed; the first process writes the manifest once all are done."""
    from vista.jsonio import write_json
    from vista.store import sharded

    dtype, compression, resume, shard_bytes = writing
    out.mkdir(parents=True, exist_ok=True)
    spec0 = next(iter(specs.values()))
    n_tokens = spec0.n_tokens or 1
    doc = sharded.manifest_base(attrs, spec0.labels, spec0.d_model, n_tokens, dtype, compression)
    ident = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    plan = _shard_plan(split_indices, specs, dtype, shard_bytes, bs)
    ids = [hashlib.sha256(f"{ident}/{s}/{a}/{b}".encode()).hexdigest()[:32] for s, _, a, b in plan]
    lo, hi = ranks.rank * len(plan) // ranks.world, (ranks.rank + 1) * len(plan) // ranks.world
    for (split, i, a, b), sid in list(zip(plan, ids, strict=True))[lo:hi]:
        name = sharded.shard_name(split, i)
        if (out / name).is_file():
            _check_shard(out / name, sid, attrs)
        else:
            shard_attrs = {**attrs, sharded.SHARD_ID_ATTR: sid}
            with StoreWriter(out / name, {split: replace(specs[split], n_rows=b - a)}, shard_attrs,
                             dtype=dtype, compression=compression, resume=resume) as w:  # fmt: skip
                _write_split(w, split, split_indices[split][a:b], feed, labels, bs)
                w.finish()
        # Each process hashes its own shards, as it finishes them, into a sidecar; the first
        # process then only collects them (it never re-reads the store).
        sharded.entry_sidecar(out, name, split, a, b, sid)
    ranks.barrier()
    if ranks.rank:
        return out
    for split, idx in split_indices.items():
        entries = [sharded.entry_sidecar(out, sharded.shard_name(s, i), s, a, b, sid)
                   for (s, i, a, b), sid in zip(plan, ids, strict=True) if s == split]  # fmt: skip
        # The reading unit of a single-file store of the split: the stream plans the same blocks.
        chunk = chunk_rows_for(len(idx), n_tokens * specs[split].d_model * np.dtype(dtype).itemsize)
        doc["splits"][split] = {"n_rows": len(idx), "chunk_rows": chunk, "shards": entries}
    write_json(out / sharded.MANIFEST, doc)
    for sidecar in out.glob(f"*{sharded.SIDECAR}"):
        sidecar.unlink()
    return out


def _check_shard(path: Path, sid: str, attrs: dict[str, Any]) -> None:
    """A finished shard of an interrupted run must be this extraction's."""
    from vista.store import ActivationStore
    from vista.store.sharded import SHARD_ID_ATTR

    with ActivationStore(path) as st:
        then = st.attrs
    if str(then.get(SHARD_ID_ATTR, "")) == sid:
        return
    differs = [k for k in ("encoder_fingerprint", "encoder_config", "dataset_config", "layer",
                           "token_selection") if str(then.get(k)) != str(attrs.get(k))]  # fmt: skip
    what = f"its {differs[0]} differs" if differs else "its settings or rows differ"
    raise VistaError(
        f"{str(path)!r} is a shard of another extraction ({what}); rerun the command that wrote "
        f"it to finish that store, or choose another out."
    )


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
    root = str(dataset_cfg.root)
    if root and Path(root).exists():  # a path (not a hub name): kept absolute, for a later report
        root = str(Path(root).resolve())
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
        "dataset_root": root,
        # The whole dataset config, so a report can draw the images of any row later.
        "dataset_config": json.dumps(
            dataclasses.asdict(replace(as_dataset_config(dataset_cfg), root=root))
        ),
        "store_splits": {k: list(v) for k, v in ds.store_splits.items()},
        "split": ds.split_info,
    }


@dataclass(frozen=True)
class Feed:
    """How images become activations: loaded and preprocessed (ahead, by ``workers`` processes,
    when above 0), then ``forward`` on ``device``."""

    load: Callable[[np.ndarray], Any]
    preprocess: Callable[[Any], torch.Tensor]
    forward: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    workers: int

    def run(self, indices: np.ndarray) -> np.ndarray:
        """The activations of the images ``indices``, here and now (no loading ahead)."""
        return self.forward(self.preprocess(self.load(indices))).cpu().numpy()


def _feed(
    ds: Any, enc: Any, encoder_cfg: EncoderConfig, device: torch.device, workers: int
) -> tuple[Feed, str]:
    """The encoder on ``device``, hooked at ``encoder.layer``, as a ``Feed``; and the layer's
    module name."""
    layer_name, module = find_module(enc.model, enc.resolve_layer(str(encoder_cfg.layer)))
    enc.model.to(device)
    compute_dtype = getattr(torch, str(encoder_cfg.dtype))
    tokens = str(encoder_cfg.tokens)

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=device, dtype=compute_dtype)
        return capture_tokens(enc.run, module, x, tokens, enc.prefix_tokens, enc.registers)

    return Feed(ds.load, enc.preprocess, forward, device, workers), layer_name


def _write_split(
    w: StoreWriter,
    split: str,
    idx: np.ndarray,
    feed: Feed,
    labels: dict[str, np.ndarray],
    bs: int,
) -> None:
    """Encode and append the images ``idx`` of ``split``, from where an interrupted run stopped."""
    start = w.rows_written(split)
    if start:
        log.info("Resuming %s at image %d of %d.", split, start, len(idx))
    # Batches keep the boundaries of an uninterrupted run (a resumed run recomputes the
    # written head of its first batch), so resumed activations are bit-identical.
    firsts = range(start - start % bs, len(idx), bs)
    batches = [idx[a : a + bs] for a in firsts]
    with Progress(f"extract {split}", len(idx), start, log) as progress:

        def append(i: int, acts: np.ndarray) -> None:
            skip = max(start - firsts[i], 0)
            rows = batches[i][skip:]
            w.append(split, acts[skip:], {k: v[rows] for k, v in labels.items()},
                     original_indices=rows)  # fmt: skip
            progress.update(len(rows))

        images = BatchImages(batches, feed.load, feed.preprocess)
        run_batches(images, feed.forward, append, device=feed.device, workers=feed.workers)
