"""One contender of the training-throughput benchmark, run in its own process (and environment).

Called by ``bench/bench_train.py``; prints one JSON line. Depends only on torch, numpy and the
contender's own library, so it runs inside each peer's benchmark environment (bench/.envs/*).

Every contender trains on the same in-memory activations: a seeded toy dictionary (PERF.md:
unit directions, a fixed number active per sample) generated identically in every process.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

SHAPES = {
    "A": {"d": 512, "h": 4096, "k": 32, "batch": 4096},
    "B": {"d": 768, "h": 16384, "k": 64, "batch": 1024},
    "S": {"d": 64, "h": 512, "k": 8, "batch": 1024},  # smoke test
}


def toy_batches(d: int, n: int, batch: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` batches of a sparse non-negative superposition of ``4 d`` unit directions."""
    rng = np.random.default_rng(seed)
    n_true, active = 4 * d, max(1, d // 25)
    dirs = rng.standard_normal((n_true, d)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    out = []
    for _ in range(n):
        idx = np.argsort(rng.random((batch, n_true)), axis=1)[:, :active]
        mags = rng.uniform(0.5, 1.5, (batch, active)).astype(np.float32)
        x = np.einsum("bk,bkd->bd", mags, dirs[idx])
        out.append(torch.from_numpy(x.astype(np.float32)))
    return out


# -- contenders: each returns a step function x -> (FVU, mean L0 per token) of that step -----------
Step = Callable[[torch.Tensor], tuple[float, float]]


def vista_step(arch: str, s: dict, lr: float, autocast: bool) -> Step:
    from dataclasses import fields

    from vista.saes import SAES, make_sae
    from vista.train.step import bare_step  # the operations `vista train` runs per batch

    extra = {"jumprelu": {"l0_coeff": 2e-3}}.get(arch, {})
    if "k" in {f.name for f in fields(SAES[arch].config_class)}:
        extra = {**extra, "k": s["k"]}
    sae = make_sae({"architecture": arch, "d_model": s["d"], "d_sae": s["h"], **extra})
    step = bare_step(sae, lr=lr, autocast=autocast)
    started = False

    def run(x: torch.Tensor) -> tuple[float, float]:
        nonlocal started
        if not started:  # as `vista train` does before its first step (b_dec, JumpReLU threshold)
            sae.init_from_data_(x)
            started = True
        out = step(x)
        return float(out.recon_loss), float(out.l0)

    return run


def plain_step(s: dict, lr: float, sparse: bool) -> Step:
    """The minimal plain-PyTorch TopK step (dense encoder backward; dense or embedding-bag decode)."""
    import torch.nn.functional as F

    d, h, k = s["d"], s["h"], s["k"]
    w_dec = torch.randn(h, d)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w_dec.requires_grad_(True)
    w_enc = w_dec.detach().t().clone().requires_grad_(True)
    b_enc = torch.zeros(h, requires_grad=True)
    b_dec = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([w_enc, b_enc, w_dec, b_dec], lr=lr)

    def step(x: torch.Tensor) -> tuple[float, float]:
        pre = torch.relu((x - b_dec) @ w_enc + b_enc)
        vals, idx = pre.topk(k, dim=1, sorted=False)
        if sparse:
            x_hat = F.embedding_bag(idx, w_dec, per_sample_weights=vals, mode="sum") + b_dec
        else:
            x_hat = torch.zeros_like(pre).scatter_(1, idx, vals) @ w_dec + b_dec
        fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        fvu.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            w_dec.div_(w_dec.norm(dim=1, keepdim=True))
        return float(fvu), float((vals > 0).sum(1).float().mean())

    return step


def saelens_step(arch: str, s: dict, lr: float) -> Step:
    import sae_lens
    from sae_lens.saes.sae import TrainStepInput

    d, h, k = s["d"], s["h"], s["k"]
    if arch == "topk":
        cfg = sae_lens.TopKTrainingSAEConfig(d_in=d, d_sae=h, k=k, device="cpu")
        sae = sae_lens.TopKTrainingSAE(cfg)
    elif arch == "batchtopk":
        cfg = sae_lens.BatchTopKTrainingSAEConfig(d_in=d, d_sae=h, k=k, device="cpu")
        sae = sae_lens.BatchTopKTrainingSAE(cfg)
    elif arch == "jumprelu":
        cfg = sae_lens.JumpReLUTrainingSAEConfig(d_in=d, d_sae=h, l0_coefficient=2e-3, device="cpu")
        sae = sae_lens.JumpReLUTrainingSAE(cfg)
    elif arch == "matryoshka":
        sizes = [h // 16, h // 8, h // 4, h // 2, h]
        cfg = sae_lens.MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=d, d_sae=h, k=k, matryoshka_widths=sizes, device="cpu"
        )
        sae = sae_lens.MatryoshkaBatchTopKTrainingSAE(cfg)
    else:
        raise SystemExit(f"no SAELens contender {arch}")
    coeffs = {
        name: c.value if hasattr(c, "value") else c for name, c in sae.get_coefficients().items()
    }
    dead = torch.zeros(h, dtype=torch.bool)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)

    def step(x: torch.Tensor) -> tuple[float, float]:
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients=coeffs,
                dead_neuron_mask=dead,
                n_training_steps=0,
                is_logging_step=False,
            )
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            fvu = (x - out.sae_out).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
            l0 = (out.feature_acts > 0).sum(1).float().mean()
        return float(fvu), float(l0)

    return step


def sparsify_step(s: dict, lr: float) -> Step:
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(s["d"], SparseCoderConfig(num_latents=s["h"], k=s["k"]), device="cpu")
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    dead = torch.zeros(s["h"], dtype=torch.bool)

    def step(x: torch.Tensor) -> tuple[float, float]:
        out = sae(x, dead_mask=dead)
        loss = out.fvu + (1 / 32) * out.auxk_loss
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()
        return float(out.fvu), float((out.latent_acts > 0).sum(1).float().mean())

    return step


def overcomplete_step(s: dict, lr: float) -> Step:
    import sys
    import types

    # overcomplete/__init__ imports its vision backbones (overcomplete.models), which need
    # torchvision; torchvision cannot be imported on these machines and the SAE does not use them.
    stub = types.ModuleType("overcomplete.models")
    for name in ("DinoV2", "SigLIP", "ViT", "ResNet", "ConvNeXt"):
        setattr(stub, name, None)
    sys.modules.setdefault("overcomplete.models", stub)
    from overcomplete.sae import TopKSAE

    sae = TopKSAE(s["d"], nb_concepts=s["h"], top_k=s["k"], device="cpu")
    opt = torch.optim.Adam(sae.parameters(), lr=lr)

    def step(x: torch.Tensor) -> tuple[float, float]:
        _, codes, x_hat = sae(x)
        loss = (x - x_hat).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
            return float(fvu), float((codes > 0).sum(1).float().mean())

    return step


def dictlearn_step(s: dict, lr: float, steps: int, measure: bool) -> Step:
    from dictionary_learning.trainers.top_k import TopKTrainer

    trainer = TopKTrainer(
        steps=steps,
        activation_dim=s["d"],
        dict_size=s["h"],
        k=s["k"],
        layer=0,
        lm_name="bench",
        lr=lr,
        warmup_steps=1,
        device="cpu",
    )
    state = {"i": 1}  # step 0 computes a geometric-median init; skip it like the others

    def step(x: torch.Tensor) -> tuple[float, float]:
        trainer.update(state["i"], x)
        state["i"] += 1
        if not measure:  # its update returns no reconstruction: measuring costs a forward pass
            return float("nan"), float(s["k"])
        with torch.no_grad():
            x_hat, codes = trainer.ae(x, output_features=True)
            fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
            return float(fvu), float((codes > 0).sum(1).float().mean())

    return step


def make(name: str, s: dict, lr: float, steps: int, measure: bool) -> Step:
    lib, _, arch = name.partition(":")
    if lib == "vista":
        return vista_step(arch, s, lr, autocast=False)
    if lib == "vista_bf16":
        return vista_step(arch, s, lr, autocast=True)
    if lib == "plain":
        return plain_step(s, lr, sparse=arch == "sparse")
    if lib == "saelens":
        return saelens_step(arch, s, lr)
    if lib == "sparsify":
        return sparsify_step(s, lr)
    if lib == "overcomplete":
        return overcomplete_step(s, lr)
    if lib == "dictlearn":
        return dictlearn_step(s, lr, steps, measure)
    raise SystemExit(f"unknown contender {name}")


def _mem_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def gemm_rate(s: dict, dtype: torch.dtype, reps: int) -> float:
    """FLOP/s of the encoder-shaped GEMM ``(batch, d) @ (d, h)``."""
    a = torch.randn(s["batch"], s["d"]).to(dtype)
    b = torch.randn(s["d"], s["h"]).to(dtype)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * s["batch"] * s["d"] * s["h"] / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("contender")
    ap.add_argument("--shape", default="A")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quality-steps", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    s = SHAPES[args.shape]
    if args.contender in ("gemm:fp32", "gemm:bf16"):
        dtype = torch.float32 if args.contender.endswith("fp32") else torch.bfloat16
        print(json.dumps({"contender": args.contender, "flops": gemm_rate(s, dtype, args.steps)}))
        return
    n_data = max(args.steps + args.warmup, 1)
    if args.quality_steps:
        n_data = args.quality_steps + 4
    data = toy_batches(s["d"], n_data, s["batch"])
    steps = max(args.steps + args.warmup, args.quality_steps)
    step = make(args.contender, s, args.lr, steps, measure=bool(args.quality_steps))
    result: dict = {"contender": args.contender, "shape": args.shape}
    if args.quality_steps:
        for x in data[: args.quality_steps]:
            step(x)
        # FVU on the next batches, measured by a forward-only step would change the model; the
        # last training batches' FVU (before their update) is the held-out figure.
        last = [step(x) for x in data[args.quality_steps :]]
        result["fvu"] = float(np.mean([f for f, _ in last]))
        result["l0"] = float(np.mean([l0 for _, l0 in last]))
        result["samples"] = args.quality_steps * s["batch"]
    else:
        # Peak memory counts from before the first step: what the warm-up steps allocate (and an
        # allocator may keep for later steps) is memory the training step needs.
        rss0 = _mem_kb("VmRSS:")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS counter
        for x in data[: args.warmup]:
            step(x)
        times, l0s = [], []
        for x in data[args.warmup : args.warmup + args.steps]:
            t0 = time.perf_counter()
            _, l0 = step(x)
            times.append(time.perf_counter() - t0)
            l0s.append(l0)
        result["samples_per_s"] = s["batch"] / float(np.median(times))
        result["peak_mb"] = (_mem_kb("VmHWM:") - rss0) / 1024
        result["l0"] = float(np.mean(l0s))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
