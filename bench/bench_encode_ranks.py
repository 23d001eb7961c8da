"""The analyses' shared encode pass on one process against the same pass split over two.

A sharded synthetic store (CLS-like, one token per image, float16, uncompressed shards: written as
`bench_analysis_memory.py` writes its store) through a randomly initialised TopK SAE, analysed by
`vista analyze analysis=[health]` (the pass and one cheap analysis) with `trainer.devices=1` and
with `trainer.devices=2 trainer.strategy=ddp` (two CPU processes over gloo), in alternating
rounds; wall time of the whole command (interpreter start and Lightning's launch included) and
the pass's own time from its log line.

Run: `.venv/bin/python bench/bench_encode_ranks.py [--images N --d-model D --d-sae S --rounds R]`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from bench_analysis_memory import write_store

    from vista.saes import make_sae
    from vista.saes.io import save_sae

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=400_000)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vista-bench-ranks-"))
    try:
        store = write_store(tmp / "store", args.images, args.d_model, args.images // 4)
        sae = make_sae({"architecture": "topk", "d_model": args.d_model, "d_sae": args.d_sae,
                        "k": args.k, "seed": 0})  # fmt: skip
        save_sae(sae, tmp / "sae")
        cmd = [sys.executable, "-m", "vista", "analyze", f"sae={tmp / 'sae'}", f"store={store}",
               "analysis=[health]", "eval.split=training", "eval.n_boot=0", "trainer.accelerator=cpu"]  # fmt: skip
        cases = {
            "1 process": [],
            "2 processes (gloo)": ["trainer.devices=2", "trainer.strategy=ddp"],
        }
        wall: dict[str, list[float]] = {c: [] for c in cases}
        encode: dict[str, list[float]] = {c: [] for c in cases}
        for r in range(args.rounds):
            for case, extra in cases.items():
                out = tmp / f"out-{r}-{len(extra)}"
                t0 = time.perf_counter()
                p = subprocess.run([*cmd, *extra, f"out_dir={out}"], capture_output=True, text=True)
                wall[case].append(time.perf_counter() - t0)
                assert p.returncode == 0, p.stderr[-2000:]
                m = re.search(r"Encoded \d+ images of training in ([\d.]+)s", p.stderr)
                encode[case].append(float(m.group(1)) if m else float("nan"))
                shutil.rmtree(out)
        base_e = statistics.median(encode["1 process"])
        print(f"{args.images:,} images x {args.d_model}, TopK {args.d_sae} k={args.k}, "
              f"{args.rounds} rounds, medians")  # fmt: skip
        print("| case | command s | pass s | pass images/s | pass speed-up |")
        print("|---|---:|---:|---:|---:|")
        for case in cases:
            w, e = statistics.median(wall[case]), statistics.median(encode[case])
            print(f"| {case} | {w:.1f} | {e:.1f} | {args.images / e:,.0f} | {base_e / e:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
