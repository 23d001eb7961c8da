"""Sharded stores by codec: the rate of writing shards and of streaming them, side by side.

One float16 store of random activations (the worst case for a compressor) is sharded with each
codec (none, lz4, zstd); each sharded store is then read three ways in alternating rounds so that
machine noise hits all of them: vista's token stream (shuffled, float32 batches, as training reads),
`read_rows` over the shards in order, and the raw limit: numpy reading the uncompressed shards'
bytes from the page cache (`np.fromfile` of each shard: no HDF5, no decompression, no cast).
Reported as GB/s of float16 activations and as a ratio to the raw read.

Run: `.venv/bin/python bench/bench_shards.py [--images N --tokens T --d-model D --rounds R]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vista.store import ActivationStore, SplitSpec, StoreWriter, StreamConfig, TokenStream
from vista.store.sharded import MANIFEST, shard_store


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


def stream(path: Path, dtype: str = "float32") -> int:
    cfg = StreamConfig(
        batch_size=4096, shuffle=True, buffer_tokens=262144, drop_last=False, dtype=dtype
    )
    return sum(b.size for b in TokenStream(path, cfg).epoch(0))


def stream_stored(path: Path) -> int:
    return stream(path, "stored")


def rows(path: Path) -> int:
    n = 0
    with ActivationStore(path) as st:
        total = st.split("training").n_rows
        for a in range(0, total, 512):
            n += st.read_rows("training", a, min(a + 512, total)).size
    return n


def raw(path: Path) -> int:
    return sum(np.fromfile(f, dtype=np.uint8).size // 2 for f in sorted(path.glob("*.h5")))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--shard-mb", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
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
    readers = {"raw bytes (numpy)": raw, "read_rows": rows, "token stream": stream,
               "token stream, float16 batches": stream_stored}  # fmt: skip
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
