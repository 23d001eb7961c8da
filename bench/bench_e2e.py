"""`vista train` end to end (HDF5 store on disk -> shuffled stream -> Lightning) against the bare
training step on the same tokens held in memory, alternating in one run.

The bare step is the same SAE, optimiser and decoder constraint `vista train` uses, fed float32
tensors from RAM; end to end adds reading and decompressing the store, the shuffle buffer, the
input scaling, Lightning, logging and checkpointing. Throughput is the median of the
steady-state tokens/s (CSV logs, first interval dropped) for `vista train`, and of per-step
times for the bare step. Run: `.venv/bin/python bench/bench_e2e.py [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vista.saes import TopKConfig, make_sae
from vista.store import SplitSpec, StoreWriter
from vista.train.config import TrainConfig, TrainerConfig
from vista.train.fit import train_saes
from vista.train.step import bare_step


def make_store(path: Path, n_tokens: int, d: int) -> None:
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((4 * d, d)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    spec = {"training": SplitSpec(n_rows=n_tokens, d_model=d)}
    with StoreWriter(path, spec, {"encoder": "bench"}) as w:
        for a in range(0, n_tokens, 8192):
            n = min(8192, n_tokens - a)
            codes = (rng.random((n, 4 * d)) < 0.01) * rng.uniform(0.5, 1.5, (n, 4 * d))
            w.append("training", (codes @ dirs).astype(np.float32), {}, np.arange(a, a + n))
        w.finish()


def bare(store: Path, sae_cfg: TopKConfig, batch: int, steps: int) -> float:
    from vista.store import ActivationStore

    with ActivationStore(store) as st:
        x_all = torch.from_numpy(
            st.read_rows("training", 0, batch * (steps + 2)).astype(np.float32)
        )
    step = bare_step(make_sae(sae_cfg))
    times = []
    for i in range(steps + 2):
        x = x_all[i * batch : (i + 1) * batch]
        t0 = time.perf_counter()
        step(x)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def end_to_end(store: Path, sae_cfg: TopKConfig, batch: int, steps: int, work: Path) -> float:
    out = work / f"run{time.time_ns()}"
    tc = TrainConfig(
        max_tokens=batch * steps,
        batch_size=batch,
        lr=1e-3,
        lr_warmup_steps=1,
        init_tokens=batch,
        log_every_steps=2,
        checkpoint_every_steps=10**9,
    )
    train_saes(store, [sae_cfg], tc, TrainerConfig(accelerator="cpu", progress_bar=False), out)
    with open(next(out.glob("logs/version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    rates = [float(r["tokens_per_s"]) for r in rows if r.get("tokens_per_s")]
    shutil.rmtree(out, ignore_errors=True)
    return statistics.median(rates[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    sae_cfg = TopKConfig(d_model=args.d_model, d_sae=args.d_sae, k=args.k)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = work / "bench.h5"
        make_store(store, args.batch * (args.steps + 8), args.d_model)
        b, e = [], []
        for r in range(args.rounds):
            b.append(bare(store, sae_cfg, args.batch, args.steps))
            e.append(end_to_end(store, sae_cfg, args.batch, args.steps, work))
            print(f"round {r + 1}: bare {b[-1]:,.0f} tok/s, vista train {e[-1]:,.0f} tok/s")
    mb, me = statistics.median(b), statistics.median(e)
    print(
        f"\nTopK d_model {args.d_model}, d_sae {args.d_sae}, k {args.k}, batch {args.batch}: "
        f"bare step {mb:,.0f} tok/s, vista train from the store {me:,.0f} tok/s, ratio {me / mb:.2f}"
    )


if __name__ == "__main__":
    main()
