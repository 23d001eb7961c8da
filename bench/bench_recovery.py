"""Recovery of a planted dictionary with the defaults (issue 12; the table in docs/training.md).

Writes a synthetic store (``SyntheticConfig``: ``--features`` true directions in ``--dims``
dimensions, 5 active per token), trains the architectures on one pass with only ``sae.d_sae``
(and ``sae.k`` = 5 for the TopK family and MP) given, and prints per SAE the fraction of true
directions recovered (best decoder row at cosine > 0.9), the mean best cosine, held-out FVU and L0.

Run: ``.venv/bin/python bench/bench_recovery.py --dims 48 --features 96 --d-sae 192
--budget 1.2e6 --seed 23 [--archs topk,gated] [--set 'gated:l1={"l1_coeff": 1.0}']``
(about a minute per million tokens for the seven architectures on 2 CPU cores). ``--set
NAME:TAG=JSON`` adds a variant of NAME with those settings (repeatable).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TOPK_LIKE = ("topk", "batchtopk", "matryoshka", "mp")


def main() -> None:
    from vista.saes import SAE_REGISTRY
    from vista.saes.io import load_sae
    from vista.saes.registry import config_from_dict
    from vista.sources.synthetic import SyntheticConfig, recovery, write_synthetic_store
    from vista.store import ActivationStore
    from vista.train.config import TrainConfig, TrainerConfig
    from vista.train.fit import train_saes

    trainable = [a for a, c in SAE_REGISTRY.items() if c.trainable]
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, default=48)
    ap.add_argument("--features", type=int, default=96)
    ap.add_argument("--d-sae", type=int, default=192)
    ap.add_argument("--store-tokens", type=float, default=120_000)
    ap.add_argument("--budget", type=float, default=1_200_000)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--archs", default=",".join(trainable))
    ap.add_argument("--set", action="append", default=[], metavar="NAME:TAG=JSON")
    args = ap.parse_args()

    runs: dict[str, dict] = {a: {"architecture": a} for a in args.archs.split(",")}
    for item in args.set:
        tag, _, settings = item.partition("=")
        runs[tag] = {"architecture": tag.split(":")[0], **json.loads(settings)}
    with tempfile.TemporaryDirectory() as tmp:
        store = write_synthetic_store(
            Path(tmp) / "planted.h5",
            SyntheticConfig(
                d_model=args.dims,
                n_features=args.features,
                n_train=int(args.store_tokens),
                seed=args.seed,
            ),
        )
        true = ActivationStore(store).extra("true_directions")
        cfgs = []
        for settings in runs.values():
            d = {"d_sae": args.d_sae, **({"k": 5} if settings["architecture"] in TOPK_LIKE else {})}
            cfgs.append(config_from_dict({**d, **settings}))
        t0 = time.perf_counter()
        paths = train_saes(
            store,
            cfgs,
            TrainConfig(max_tokens=int(args.budget)),
            TrainerConfig(logger="none", progress_bar=False),
            Path(tmp) / "run",
        )
        with ActivationStore(store) as st:
            x = torch.from_numpy(st.read_rows("validation", 0, 20000).astype(np.float32))
        print(
            f"{args.features} in {args.dims} dims, seed {args.seed}, d_sae {args.d_sae}, "
            f"{int(args.budget):,} tokens ({time.perf_counter() - t0:.0f} s)"
        )
        for tag, path in zip(runs, paths, strict=True):
            sae = load_sae(path)
            with torch.no_grad():
                z = sae.encode(x)
                err = (x.double() - sae.decode(z).double()).pow(2).sum()
            fvu = float(err / (x.double() - x.double().mean(0)).pow(2).sum())
            r = recovery(sae.W_dec.detach().numpy(), true)
            print(
                f"{tag:16s} recovered {r['recovered']:.3f}  mean best cosine "
                f"{r['mean_max_cosine']:.3f}  FVU {fvu:.4f}  L0 {float((z > 0).sum(1).float().mean()):.2f}"
            )


if __name__ == "__main__":
    main()
