"""Store streaming throughput: vista's shuffled token stream vs bare chunked h5py reads.

Both read the same on-disk store in the same rounds, alternating, so machine noise hits both; the
report gives medians and the ratio. Run: `.venv/bin/python bench/bench_stream.py [--tokens N]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from vista.store import SplitSpec, StoreWriter, StreamConfig, TokenStream


def make_store(path: Path, n_images: int, n_tokens: int, d_model: int) -> None:
    rng = np.random.default_rng(0)
    spec = {"training": SplitSpec(n_rows=n_images, d_model=d_model, n_tokens=n_tokens)}
    with StoreWriter(path, spec, {"encoder": "bench"}) as w:
        for a in range(0, n_images, 256):
            n = min(256, n_images - a)
            w.append(
                "training",
                rng.normal(size=(n, n_tokens, d_model)).astype(np.float32),
                {},
                np.arange(a, a + n),
            )
        w.finish()


def bare_read(path: Path, batch: int) -> int:
    """Chunk-aligned sequential reads, flattened and cast to float32: the floor of any reader."""
    n = 0
    with h5py.File(path, "r") as f:
        ds = f["training/encoded"]
        step = ds.chunks[0] * max(1, 16384 // (ds.chunks[0] * ds.shape[1]))
        for a in range(0, ds.shape[0], step):
            x = ds[a : a + step].reshape(-1, ds.shape[-1]).astype(np.float32)
            for i in range(0, len(x) - batch + 1, batch):
                n += len(x[i : i + batch])
    return n


def vista_stream(path: Path, batch: int, shuffle: bool) -> int:
    cfg = StreamConfig(batch_size=batch, shuffle=shuffle, buffer_tokens=262144, drop_last=True)
    return sum(len(b) for b in TokenStream(path, cfg).epoch(0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5"
        make_store(path, args.images, args.tokens, args.d_model)
        contenders = {
            "bare h5py chunked read": lambda: bare_read(path, args.batch),
            "vista stream, sequential": lambda: vista_stream(path, args.batch, False),
            "vista stream, shuffled": lambda: vista_stream(path, args.batch, True),
        }
        times: dict[str, list[float]] = {k: [] for k in contenders}
        counts: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                t0 = time.perf_counter()
                counts[name] = fn()
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["bare h5py chunked read"])
    total = args.images * args.tokens
    print(
        f"store: {args.images} images x {args.tokens} tokens x {args.d_model} (float16, zstd), batch {args.batch}"
    )
    print("| reader | tokens/s (median) | ratio to bare read |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"| {name} | {counts[name] / med:,.0f} | {base / med * counts[name] / counts['bare h5py chunked read']:.2f} |"
        )
    print(f"({total:,} tokens per epoch, {args.rounds} alternating rounds)")


if __name__ == "__main__":
    main()
