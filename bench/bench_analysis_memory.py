"""Peak memory of the analyses' shared encode pass at users' scale: 1M images x 16,384 latents.

Writes a sharded synthetic store shard by shard (so writing never holds the split: sparse
combinations of a fixed dictionary plus noise, float16, CLS-like one token per image), then runs
the encode pass (`vista.analysis.encoding.encode_split`, what every `vista analyze` analysis
reads) of a TopK SAE of 16,384 latents at k=64 (L0 64) over it, and reports the process's peak
resident memory (`ru_maxrss`) beside the sizes of what the pass keeps. The SAE is randomly
initialised (memory does not depend on training: TopK fires exactly k latents per token).

Run: `.venv/bin/python bench/bench_analysis_memory.py [--images N --d-model D --d-sae S --k K]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def write_store(out: Path, n: int, d: int, shard_rows: int) -> Path:
    """A sharded store of ``n`` rows, written one shard at a time through `vista shard`'s path."""
    from vista.store import SplitSpec, StoreWriter
    from vista.store.sharded import shard_store

    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(4 * d, d)).astype(np.float32) / np.sqrt(d)
    parts = []
    for i, a in enumerate(range(0, n, shard_rows)):
        m = min(shard_rows, n - a)
        path = out.parent / f"part-{i}.h5"
        spec = {"training": SplitSpec(n_rows=m, d_model=d, n_tokens=None, labels={})}
        with StoreWriter(path, spec, {"encoder": "bench"}, compression=None) as w:
            for b in range(0, m, 65536):
                r = min(65536, m - b)
                idx = rng.integers(0, len(atoms), size=(r, 8))
                x = atoms[idx].sum(axis=1) + 0.1 * rng.normal(size=(r, d)).astype(np.float32)
                w.append("training", x.astype(np.float16), {}, np.arange(a + b, a + b + r))
            w.finish()
        parts.append(shard_store(path, out.parent / f"sh-{i}", compression=None))
        path.unlink()
    return _join(parts, out)


def _join(parts: list[Path], out: Path) -> Path:
    """One sharded store from several single-shard ones: the shards renamed, the row ranges shifted."""
    import json

    from vista.store.sharded import MANIFEST, shard_name

    out.mkdir()
    doc, start, entries = None, 0, []
    for i, p in enumerate(parts):
        d = json.loads((p / MANIFEST).read_text())
        e = d["splits"]["training"]["shards"][0]
        (p / e["file"]).rename(out / shard_name("training", i))
        n = e["stop"] - e["start"]
        entries.append({**e, "file": shard_name("training", i), "start": start, "stop": start + n})
        start += n
        doc = doc or d
        shutil.rmtree(p)
    assert doc is not None
    doc["splits"]["training"] = {**doc["splits"]["training"], "n_rows": start, "shards": entries}
    (out / MANIFEST).write_text(json.dumps(doc))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--shard-rows", type=int, default=250_000)
    a = ap.parse_args()
    import torch

    from vista.analysis.encoding import encode_split
    from vista.saes import make_sae

    tmp = Path(tempfile.mkdtemp())
    try:
        t0 = time.perf_counter()
        # Written in a child process, so this process's peak memory is the pass's alone.
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(
            target=write_store, args=(tmp / "store", a.images, a.d_model, a.shard_rows)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"writing the store failed (exit {child.exitcode})")
        store = tmp / "store"
        print(f"wrote {a.images} x {a.d_model} float16 in {time.perf_counter() - t0:.0f}s")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        torch.manual_seed(0)
        sae = make_sae({"architecture": "topk", "d_model": a.d_model, "d_sae": a.d_sae, "k": a.k})
        t0 = time.perf_counter()
        enc = encode_split(sae, store, "training")
        secs = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        codes = enc.codes
        if enc.sparse:
            nbytes, nnz, kind = (
                codes.data.nbytes + codes.indices.nbytes + codes.indptr.nbytes,
                codes.nnz,
                "CSR",
            )
        else:  # small enough for dense_codes_mb
            nbytes, nnz, kind = codes.nbytes, int(np.count_nonzero(codes)), "dense"
        print(f"encode pass: {secs:.0f}s, {a.images / secs:,.0f} images/s")
        print(f"peak resident memory: {peak:.2f} GiB (before the pass: {base:.2f} GiB)")
        print(f"kept: pooled activations {enc.pooled_raw.nbytes / 2**30:.2f} GiB, codes ({kind}, "
              f"{nnz:,} non-zeros) {nbytes / 2**30:.2f} GiB, per-image statistics "
              f"{4 * enc.image_l0.nbytes / 2**30:.3f} GiB; mean L0 {enc.image_l0.mean():.1f}")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
