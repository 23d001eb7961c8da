"""Do the budget-derived training defaults fit stores of every size? (issue 12)

On synthetic stores of 10^4 to 10^7 training tokens (vista's SyntheticConfig: 64 dims, 128 true
directions), each trainable architecture is trained with the defaults (``train.batch_size=0``,
``train.lr_warmup_steps=-1``, ``sae.dead_tokens=0``) and with a small sweep of batch sizes
(256, 1024, 4096); the table gives each one's held-out FVU, the ratio of the default's FVU to
the best found, and each held-out L0. The SAEs of one batch size train together on one pass
(the sweep path of ``vista train``), so every configuration sees the same data.

Run: ``.venv/bin/python bench/bench_defaults.py [--sizes 1e4,1e5,1e6,1e7] [--archs a,b]
[--budget-cap N] [--target-l0 L] [--out DIR]`` (about an hour on 2 CPU cores for all seven
architectures); results go to DIR/defaults.json and the table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ARCHS = {
    "topk": {"architecture": "topk", "k": 8},
    "batchtopk": {"architecture": "batchtopk", "k": 8},
    "matryoshka": {"architecture": "matryoshka", "k": 8},
    "mp": {"architecture": "mp", "k": 8},
    "vanilla": {"architecture": "vanilla"},
    "gated": {"architecture": "gated"},
    "jumprelu": {"architecture": "jumprelu"},
}
SWEEP = (256, 1024, 4096)


def budget(n_tokens: int, cap: int = 1_000_000) -> int:
    """20 epochs of a small store, at most ``cap`` tokens (a CPU-sized budget)."""
    return int(min(20 * n_tokens, cap))


def fvu_on(sae_dir: Path, x: torch.Tensor) -> tuple[float, float]:
    """Held-out FVU and mean L0 of the SAE in ``sae_dir``."""
    from vista.saes.io import load_sae

    sae = load_sae(sae_dir)
    with torch.no_grad():
        z = sae.encode(x)
        xh = sae.decode(z).double()
    x64 = x.double()
    fvu = float(((x64 - xh) ** 2).sum() / ((x64 - x64.mean(0)) ** 2).sum())
    return fvu, float((z != 0).sum(1).double().mean())


def main() -> None:
    from vista.saes.registry import config_from_dict
    from vista.sources.synthetic import SyntheticConfig, write_synthetic_store
    from vista.store import ActivationStore
    from vista.train.config import TrainConfig, TrainerConfig
    from vista.train.fit import train_saes

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1e4,1e5,1e6,1e7")
    ap.add_argument("--out", default="/tmp/vista_bench_defaults")
    ap.add_argument("--budget-cap", type=int, default=1_000_000)
    ap.add_argument("--archs", default=",".join(ARCHS), help="comma-separated subset of ARCHS")
    ap.add_argument(
        "--target-l0",
        type=float,
        default=0.0,
        help="train vanilla, gated and jumprelu at this target L0 (sae.target_l0), so their FVUs "
        "at different batch sizes are at one L0",
    )
    args = ap.parse_args()
    archs = {a: dict(ARCHS[a]) for a in args.archs.split(",")}
    for a in ("vanilla", "gated", "jumprelu"):
        if a in archs and args.target_l0:
            archs[a]["target_l0"] = args.target_l0
    tag = f"_l0_{args.target_l0:g}" if args.target_l0 else ""  # runs at a target L0 kept apart
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in [int(float(s)) for s in args.sizes.split(",")]:
        store = out / f"syn_{size}.h5"
        if not store.exists():
            write_synthetic_store(store, SyntheticConfig(n_train=size, n_validation=20_000))
        with ActivationStore(store) as st:
            x = torch.from_numpy(st.read_rows("validation", 0, 20_000).astype(np.float32))
        tc = TrainConfig(max_tokens=budget(size, args.budget_cap), init_tokens=min(65536, size))
        auto = tc.resolved()
        cfgs = [config_from_dict({**a, "d_sae": 512}) for a in archs.values()]
        result: dict[str, dict[str, float]] = {a: {} for a in archs}
        l0s: dict[str, dict[str, float]] = {a: {} for a in archs}
        for batch in sorted({*SWEEP, auto.batch_size}):
            run = out / f"run_{size}_{tc.max_tokens}_{batch}_{'-'.join(archs)}{tag}"
            t0 = time.perf_counter()
            if not (run / "done").exists():
                train_saes(
                    store,
                    cfgs,
                    replace(tc, batch_size=batch),
                    TrainerConfig(progress_bar=False, logger="none"),
                    run,
                    export_dirs=[run / a for a in archs],
                )
                (run / "done").write_text("")
            for a in archs:
                result[a][str(batch)], l0s[a][str(batch)] = fvu_on(run / a, x)
            print(f"size {size}, batch {batch}: {time.perf_counter() - t0:.0f} s", flush=True)
        for a, fv in result.items():
            best = min(fv.values())
            rows.append(
                {
                    "tokens": size,
                    "budget": tc.max_tokens,
                    "arch": a,
                    "default_batch": auto.batch_size,
                    "fvu": fv,
                    "l0": l0s[a],
                    "default_fvu": fv[str(auto.batch_size)],
                    "ratio": fv[str(auto.batch_size)] / best,
                }
            )
    (out / "defaults.json").write_text(json.dumps(rows, indent=2))
    print(
        "| store tokens | budget | arch | default batch | FVU by batch (256 / 1024 / 4096 / default) "
        "| default / best | L0 by batch |"
    )
    print("|---:|---:|---|---:|---|---:|---|")
    for r in rows:
        fv = r["fvu"]
        cells = " / ".join(f"{fv[str(b)]:.4f}" for b in SWEEP)
        print(
            f"| {r['tokens']:,} | {r['budget']:,} | {r['arch']} | {r['default_batch']} | "
            f"{cells} / {r['default_fvu']:.4f} | {r['ratio']:.2f} | "
            + " / ".join(f"{r['l0'][str(b)]:.1f}" for b in SWEEP)
            + " |"
        )


if __name__ == "__main__":
    main()
