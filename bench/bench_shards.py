"""Sharded stores by codec: the rate of writing shards and of streaming them, side by side.

One float16 store of random activations (the worst case for a compressor) is sharded with each
codec (none, lz4, zstd); each sharded store is then read several ways in alternating rounds so that
machine noise hits all of them: vista's token stream (shuffled, float16 batches as training reads
them, or float32; 1 or 2 reading threads; the default 1M-token window, which holds this whole
store, so nothing overlaps the first read, and 131k-token windows, 8 of them, the steady state of
a store larger than its window), the analyses' encode-pass reader (`iter_row_blocks`, 1
or 2 threads), h5py's `read_rows` over the shards in order, and the raw limit: numpy reading the
uncompressed shards' bytes from the page cache (`np.fromfile` of each shard: no HDF5, no
decompression, no cast).
Reported as GB/s of float16 activations and as a ratio to the raw read.

Run: `.venv/bin/python bench/bench_shards.py [--images N --tokens T --d-model D --rounds R]`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vista.store import ActivationStore, SplitSpec, StoreWriter, StreamConfig, TokenStream
from vista.store.sharded import MANIFEST, shard_store
from vista.store.stream import iter_row_blocks


def make_store(path: Path, n: int, t: int, d: int) -> Path:
    rng = np.random.default_rng(0)
    spec = {"training": SplitSpec(n_rows=n, d_model=d, n_tokens=t)}
    with StoreWriter(path, spec, {"encoder": "bench"}, compression=None) as w:
        for a in range(0, n, 256):
            m = min(256, n - a)
            acts = rng.normal(size=(m, t, d)).astype(np.float16)
            w.append("training", acts, {}, np.arange(a, a + m))
        w.finish()
    return path


def stream(path: Path, dtype: str = "float32", readers: int = 2, window: int = 1048576) -> int:
    cfg = StreamConfig(
        batch_size=4096, dtype=dtype, readers=readers, buffer_tokens=window, drop_last=False
    )
    return sum(b.size for b in TokenStream(path, cfg).epoch(0))


def rows(path: Path) -> int:
    n = 0
    with ActivationStore(path) as st:
        total = st.split("training").n_rows
        for a in range(0, total, 512):
            n += st.read_rows("training", a, min(a + 512, total)).size
    return n


def analysis_pass(path: Path, readers: int) -> int:
    """The encode pass's reader (`iter_row_blocks`), 16,384 tokens per block as analyses read."""
    with ActivationStore(path) as st:
        t = st.split("training").n_tokens
    blocks = iter_row_blocks(path, "training", max(1, 16384 // t), readers=readers)
    return sum(r.size for _, r in blocks)


READERS = {
    "raw bytes (numpy)": lambda p: raw(p),
    "raw bytes into one reused buffer": lambda p: raw_into(p),
    "`read_rows` (h5py, one thread)": rows,
    "token stream, float16 batches, 1 reader": lambda p: stream(p, "stored", 1),
    "token stream, float16 batches, 2 readers (what `vista train` reads)": lambda p: stream(
        p, "stored", 2
    ),
    "token stream, float16, 2 readers, 131k-token windows": lambda p: stream(
        p, "stored", 2, 131072
    ),
    "token stream, float32 batches, 2 readers": lambda p: stream(p, "float32", 2),
    "analysis pass, 1 reader": lambda p: analysis_pass(p, 1),
    "analysis pass, 2 readers": lambda p: analysis_pass(p, 2),
}


def raw(path: Path) -> int:
    return sum(np.fromfile(f, dtype=np.uint8).size // 2 for f in sorted(path.glob("*.h5")))


_REUSED: dict[str, np.ndarray] = {}


def raw_into(path: Path) -> int:
    """The bytes read into one reused buffer: a memcpy from the page cache, no page faults."""
    n = 0
    for f in sorted(path.glob("*.h5")):
        size = f.stat().st_size
        if _REUSED.get("buf") is None or _REUSED["buf"].size < size:
            _REUSED["buf"] = np.empty(size, np.uint8)
        with open(f, "rb", buffering=0) as fh:
            n += fh.readinto(memoryview(_REUSED["buf"])[:size]) // 2
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=16000)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--shard-mb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        run(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(a: argparse.Namespace, tmp: Path) -> None:
    src = make_store(tmp / "src.h5", a.images, a.tokens, a.d_model)
    gb = a.images * a.tokens * a.d_model * 2 / 1e9
    print(
        f"store: {a.images} x {a.tokens} x {a.d_model} float16 = {gb:.2f} GB, shards of {a.shard_mb} MB"
    )
    stores, write = {}, {}
    for codec in ("none", "lz4", "zstd"):
        t0 = time.perf_counter()
        stores[codec] = shard_store(src, tmp / codec, shard_bytes=a.shard_mb * 2**20,
                                    compression=None if codec == "none" else codec)  # fmt: skip
        write[codec] = gb / (time.perf_counter() - t0)
    times: dict[tuple[str, str], list[float]] = {}
    readers = dict(READERS)
    for _ in range(a.rounds):
        for codec, path in stores.items():
            for name, fn in readers.items():
                t0 = time.perf_counter()
                fn(path)
                times.setdefault((codec, name), []).append(time.perf_counter() - t0)
    base = statistics.median(times[("none", "raw bytes (numpy)")])
    print("| codec | on disk (GB) | write (GB/s) | reader | read (GB/s) | vs raw read of `none` |")
    print("|---|---|---|---|---|---|")
    for codec, path in stores.items():
        disk = sum(f.stat().st_size for f in path.iterdir() if f.name != MANIFEST) / 1e9
        for name in readers:
            t = statistics.median(times[(codec, name)])
            print(
                f"| {codec} | {disk:.2f} | {write[codec]:.2f} | {name} | {gb / t:.2f} | {base / t:.2f} |"
            )


if __name__ == "__main__":
    main()
