"""`vista extract` against the bare forward pass of the same model on the same images, alternating.

Bare: the images already in memory, preprocessed the same way, through ``model(x)`` batch by
batch, outputs discarded -- what any extraction must at least do. vista: the whole
``extract()`` call: dataset loading, preprocessing, the hook (which stops the forward pass at the
hooked module), token selection, float16 conversion, zstd-compressed HDF5 writes with resumable
row counters, both splits. The ratio vista/bare of images per second is reported per case.
Three cases, all at the encoder's last block so the stop-early hook saves little:

- ``mobilenet_v2`` (bundled ImageNet weights) at 64 px, ``features.18`` (2x2 tokens of width 1280);
- a ViT built from a config (6 blocks, width 192, 64 px, patch 8 -> 65 tokens), last block;
- ``mobilenet_v2`` on the same images as 96 px PNG files in an image folder, which vista decodes
  as it goes (the bare pass gets them decoded), with ``workers=0`` (decoded between forward
  passes) and ``workers=2`` (decoded ahead by two DataLoader processes).

Run: `.venv/bin/python bench/bench_extract.py [--rounds 3] [--limit 2500]`.
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


def n_images(ds_cfg: DatasetConfig) -> int:
    ds = make_dataset(ds_cfg)
    return sum(len(ds.split_indices(p)) for p in ds.store_splits.values())


def setup_seconds(enc_cfg: EncoderConfig, ds_cfg: DatasetConfig) -> float:
    """What extract() does once before the first batch: open the dataset, load the encoder."""
    t0 = time.perf_counter()
    make_dataset(ds_cfg)
    make_encoder(enc_cfg)
    return time.perf_counter() - t0


def vista(enc_cfg: EncoderConfig, ds_cfg: DatasetConfig, out: Path, workers: int = -1) -> float:
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    extract(ds_cfg, enc_cfg, out, workers=workers)
    return time.perf_counter() - t0


def png_folder(ds_cfg: DatasetConfig, root: Path, side: int = 96) -> DatasetConfig:
    """The images of ``ds_cfg`` as RGB PNG files of ``side`` px, one folder per class."""
    from PIL import Image

    ds = make_dataset(ds_cfg)
    label = next(iter(ds.labels))
    for i in np.concatenate([ds.split_indices(p) for p in ds.store_splits.values()]):
        d = root / ds.class_names[label][ds.labels[label][i]].replace("/", "-")
        d.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(np.asarray(ds.load(np.array([i]))[0]).astype(np.uint8))
        im.convert("RGB").resize((side, side)).save(d / f"{i}.png")
    return DatasetConfig(name="imagefolder", root=str(root))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/extract.md")
    ap.add_argument("--limit", type=int, default=2500, help="images per split of Fashion-MNIST")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tmp = Path(tempfile.mkdtemp(prefix="vista-bench-extract-"))
    ds_cfg = DatasetConfig(name="fashion_mnist", limit=args.limit)
    n = n_images(ds_cfg)
    mnv2 = EncoderConfig(name="mobilenet_v2", image_size=64, layer="-1", batch_size=128)
    files = png_folder(ds_cfg, tmp / "png")
    cases = {
        "mobilenet_v2 64px features.18": (mnv2, ds_cfg, [-1]),
        "ViT 6x192 64px last block": (
            EncoderConfig(name="hf", path=str(tiny_vit(tmp)), layer="-1", batch_size=128),
            ds_cfg,
            [-1],
        ),
        "mobilenet_v2, 96px PNG files": (mnv2, files, [0, 2]),
    }
    rows = []
    for name, (enc_cfg, data, workers) in cases.items():
        b, setup = [], []
        v: dict[int, list[float]] = {w: [] for w in workers}
        bare(enc_cfg, data)  # warm-up (weights in cache, oneDNN kernels chosen)
        for _ in range(args.rounds):
            b.append(bare(enc_cfg, data))
            for w in workers:
                v[w].append(vista(enc_cfg, data, tmp / "s.h5", w))
            setup.append(setup_seconds(enc_cfg, data))
        mb, ts = statistics.median(b), statistics.median(setup)
        for w in workers:
            tv = statistics.median(v[w])
            mv, mv_run = n / tv, n / (tv - ts)
            case = name if w == -1 else f"{name}, workers={w}"
            rows.append((case, mb, mv, mv / mb, mv_run / mb, ts))
            print(
                f"{case}: bare {mb:.0f} img/s, vista extract {mv:.0f} img/s (ratio "
                f"{mv / mb:.3f}); without the one-time setup ({ts:.2f} s) {mv_run / mb:.3f}"
            )
    lines = [
        "# Extraction throughput: `vista extract` vs the bare forward pass",
        "",
        f"Fashion-MNIST ({n} images, both splits), {args.rounds} alternating rounds, medians. "
        "Command: `.venv/bin/python bench/bench_extract.py`. The setup is opening the dataset and "
        "loading the encoder, once per extraction.",
        "",
        "| case | bare forward img/s | vista extract img/s | vista / bare | vista / bare without setup | setup s |",
        "|---|---|---|---|---|---|",
        *[
            f"| {c} | {b:.0f} | {v:.0f} | {r:.3f} | {r2:.3f} | {ts:.2f} |"
            for c, b, v, r, r2, ts in rows
        ],
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))


if __name__ == "__main__":
    main()
