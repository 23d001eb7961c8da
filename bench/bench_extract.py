"""`vista extract` against the bare forward pass of the same model on the same images, alternating.

Bare: the images already in memory, preprocessed the same way, through ``model(x)`` batch by
batch, outputs discarded -- what any extraction must at least do. vista: the whole
``extract()`` call: dataset loading, preprocessing, the hook (which stops the forward pass at the
hooked module), token selection, float16 conversion, zstd-compressed HDF5 writes with resumable
row counters, both splits. The ratio vista/bare of images per second is reported per case.
Two cases, both at the encoder's last block so the stop-early hook saves little:

- ``mobilenet_v2`` (bundled ImageNet weights) at 64 px, ``features.18`` (4x4x1280 tokens);
- a ViT built from a config (6 blocks, width 192, 64 px, patch 8 -> 65 tokens), last block.

Run: `.venv/bin/python bench/bench_extract.py [--rounds 3] [--images 1797]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vista.sources.datasets import DatasetConfig, make_dataset
from vista.sources.encoders import EncoderConfig, make_encoder
from vista.sources.extract import extract


def tiny_vit(root: Path) -> Path:
    import transformers as t

    torch.manual_seed(0)
    cfg = t.ViTConfig(
        hidden_size=192,
        intermediate_size=768,
        num_hidden_layers=6,
        num_attention_heads=3,
        image_size=64,
        patch_size=8,
    )
    d = root / "vit"
    t.ViTModel(cfg).save_pretrained(d)
    return d


@torch.no_grad()
def bare(enc_cfg: EncoderConfig, ds_cfg: DatasetConfig) -> float:
    ds = make_dataset(ds_cfg)
    enc = make_encoder(enc_cfg)
    idx = np.concatenate([ds.split_indices(p) for p in ds.store_splits.values()])
    images = ds.load(idx)
    bs = enc_cfg.batch_size
    t0 = time.perf_counter()
    for a in range(0, len(idx), bs):
        enc.run(enc.preprocess(images[a : a + bs]))
    return len(idx) / (time.perf_counter() - t0)


def vista(enc_cfg: EncoderConfig, ds_cfg: DatasetConfig, out: Path) -> float:
    n = len(make_dataset(ds_cfg).images)
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    extract(ds_cfg, enc_cfg, out)
    dt = time.perf_counter() - t0
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/extract.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tmp = Path(tempfile.mkdtemp(prefix="vista-bench-extract-"))
    ds_cfg = DatasetConfig(name="digits")
    cases = {
        "mobilenet_v2 64px features.18": EncoderConfig(
            name="mobilenet_v2", image_size=64, layer="-1", batch_size=128
        ),
        "ViT 6x192 64px last block": EncoderConfig(
            name="hf", path=str(tiny_vit(tmp)), layer="-1", batch_size=128
        ),
    }
    rows = []
    for name, enc_cfg in cases.items():
        b, v = [], []
        bare(enc_cfg, ds_cfg)  # warm-up (weights in cache, oneDNN kernels chosen)
        for _ in range(args.rounds):
            b.append(bare(enc_cfg, ds_cfg))
            v.append(vista(enc_cfg, ds_cfg, tmp / "s.h5"))
        mb, mv = statistics.median(b), statistics.median(v)
        rows.append((name, mb, mv, mv / mb))
        print(f"{name}: bare {mb:.0f} img/s, vista extract {mv:.0f} img/s, ratio {mv / mb:.3f}")
    lines = [
        "# Extraction throughput: `vista extract` vs the bare forward pass",
        "",
        f"UCI digits (1,797 images, both splits), {args.rounds} alternating rounds, medians. "
        "Command: `.venv/bin/python bench/bench_extract.py`.",
        "",
        "| case | bare forward img/s | vista extract img/s | vista / bare |",
        "|---|---|---|---|",
        *[f"| {n} | {b:.0f} | {v:.0f} | {r:.3f} |" for n, b, v, r in rows],
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))


if __name__ == "__main__":
    main()
