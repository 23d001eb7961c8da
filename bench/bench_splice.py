"""A spliced forward pass against the plain forward pass and the SAE's own encode/decode.

Issue 13's target: the forward with the SAE spliced in (passthrough) costs at most 1.3x the plain
forward plus the SAE's encode and decode of the same activations. The three are timed on the same
preprocessed batches, in alternating rounds (medians), so the ratio is free of the machine's load
drift:

    overhead = (spliced - sae) / plain          (target <= 1.3)

Run: ``.venv/bin/python bench/bench_splice.py [--run runs/default] [--images 4096] [--rounds 5]``
(``make run`` first: it uses the default run's encoder, store and SAE).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    from vista.analysis.context import AnalysisSettings, Context
    from vista.interventions import hooks
    from vista.interventions.model import rebuild
    from vista.saes.io import load_sae
    from vista.sources.hooks import Capture

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(ROOT / "runs" / "default"))
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "sae" / "cfg.json").is_file():
        sys.exit(f"no SAE in {run}: run `make run` first")
    sae = load_sae(run / "sae").eval()
    ctx = Context(sae, run / "activations.h5", AnalysisSettings())
    m = rebuild(ctx)
    idx = ctx.original_indices[: args.images]
    batches = [
        m.encoder.preprocess(m.dataset.load(idx[s : s + args.batch]))
        for s in range(0, len(idx), args.batch)
    ]
    with torch.no_grad(), Capture(m.module, stop=False) as cap:
        acts = []
        for x in batches:
            m.encoder.run(x)
            assert cap.output is not None
            acts.append(cap.output.float().reshape(-1, sae.d_model))
    edit = hooks.passthrough(sae)

    @torch.no_grad()
    def plain() -> None:
        for x in batches:
            m.encoder.run(x)

    @torch.no_grad()
    def spliced() -> None:
        with hooks.Splice(m.module, edit, sae.d_model, m.tokens):
            for x in batches:
                m.encoder.run(x)

    @torch.no_grad()
    def sae_only() -> None:
        for a in acts:
            sae.decode(sae.encode(a))

    times: dict[str, list[float]] = {"plain": [], "spliced": [], "sae": []}
    fns = {"plain": plain, "spliced": spliced, "sae": sae_only}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(idx)
    print(f"## Spliced forward ({time.strftime('%Y-%m-%d')}, `bench/bench_splice.py`)\n")
    print(f"{m.encoder.name} at {m.layer} ({sae.d_model}-d), SAE {sae.cfg.architecture} "
          f"{sae.d_sae} latents, {n} images in batches of {args.batch}, {args.rounds} rounds.\n")  # fmt: skip
    print("| pass | ms per 1,000 images |\n|---|---:|")
    for k in ("plain", "sae", "spliced"):
        print(f"| {k} | {1000 * med[k] / n * 1000:.1f} |")
    overhead = (med["spliced"] - med["sae"]) / med["plain"]
    print(f"\n(spliced - SAE) / plain = **{overhead:.2f}** (target <= 1.3); "
          f"spliced / (plain + SAE) = {med['spliced'] / (med['plain'] + med['sae']):.2f}.")  # fmt: skip
    np.testing.assert_array_less(0, med["plain"])


if __name__ == "__main__":
    main()
