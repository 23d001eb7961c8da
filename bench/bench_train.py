"""Training throughput of vista against the peers, side by side, in one run.

Every contender trains on the same in-memory activations (``bench/peers/worker.py`` builds them
from a seed) in its own process and environment: vista and the plain-PyTorch references in
vista's .venv, each peer library in ``bench/.envs/<peer>`` (built by ``bench/peers/setup.sh``).
Rounds alternate the contenders so machine noise hits all of them; the report gives medians of
samples/s, ratios to the fastest peer and to the SAELens counterpart, the share of the FLOP limit
(sparse-aware FLOPs per sample against the fp32 GEMM rate measured in the same rounds) and the
peak memory added by the steps (from before the first one). ``--quality`` trains each contender for the same number of samples
and reports its FVU and L0, so speed is never bought with quality.

Run: ``make bench-train`` or ``.venv/bin/python bench/bench_train.py --shape A --rounds 3``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "bench" / "peers" / "worker.py"
ENVS = ROOT / "bench" / ".envs"
SHAPES = {
    "A": {"d": 512, "h": 4096, "k": 32, "batch": 4096},
    "B": {"d": 768, "h": 16384, "k": 64, "batch": 1024},
    "S": {"d": 64, "h": 512, "k": 8, "batch": 1024},
}
ENV_OF = {
    "saelens": "saelens",
    "sparsify": "sparsify",
    "overcomplete": "overcomplete",
    "dictlearn": "dictlearn",
}
TOPK = [
    "vista:topk",
    "vista_bf16:topk",
    "sparsify:topk",
    "saelens:topk",
    "overcomplete:topk",
    "dictlearn:topk",
    "plain:sparse",
    "plain:dense",
]
FAMILY = [
    "vista:batchtopk",
    "vista_bf16:batchtopk",
    "saelens:batchtopk",
    "vista:jumprelu",
    "vista_bf16:jumprelu",
    "saelens:jumprelu",
    "vista:matryoshka",
    "vista_bf16:matryoshka",
    "saelens:matryoshka",
]


def python_for(contender: str) -> str | None:
    lib = contender.split(":")[0]
    if lib not in ENV_OF:
        return sys.executable
    py = ENVS / ENV_OF[lib] / "bin" / "python"
    return str(py) if (ENVS / ENV_OF[lib] / ".ready").exists() else None


def run(contender: str, args: argparse.Namespace, extra: list[str]) -> dict | None:
    py = python_for(contender)
    if py is None:
        return None
    cmd = [py, str(WORKER), contender, "--shape", args.shape, "--steps", str(args.steps), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"  {contender} failed:\n{proc.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def flops_per_sample(s: dict, l0: float) -> float:
    """Sparse-aware FLOPs of one training sample with ``l0`` active latents (k for TopK, the
    measured mean for JumpReLU): the encoder GEMM (2 d h) plus 4 products over the active latents
    (decode, dW_dec, d-codes, the sparse dW_enc: 2 l0 d each)."""
    return 2 * s["d"] * s["h"] + 8 * l0 * s["d"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="A", choices=sorted(SHAPES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per contender and round")
    ap.add_argument("--only", default="", help="comma-separated contenders (default: all)")
    ap.add_argument("--family", action="store_true", help="also BatchTopK, JumpReLU, Matryoshka")
    ap.add_argument("--quality", type=int, default=0, help="steps of the equal-budget FVU check")
    ap.add_argument("--out", default="", help="write the markdown report here too")
    args = ap.parse_args()
    s = SHAPES[args.shape]
    contenders = args.only.split(",") if args.only else TOPK + (FAMILY if args.family else [])
    missing = [c for c in contenders if python_for(c) is None]
    if missing:
        print(f"Skipping {missing}: run bench/peers/setup.sh to build their environments.")
        contenders = [c for c in contenders if c not in missing]

    speed: dict[str, list[float]] = {c: [] for c in contenders}
    mem: dict[str, list[float]] = {c: [] for c in contenders}
    l0: dict[str, list[float]] = {c: [] for c in contenders}
    gemm: dict[str, list[float]] = {"gemm:fp32": []}
    if any(c.startswith("vista_bf16") for c in contenders):  # slow where bf16 GEMMs are slow
        gemm["gemm:bf16"] = []
    for r in range(args.rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for g in gemm:
            res = run(g, args, [])
            if res:
                gemm[g].append(res["flops"])
        for c in order:
            res = run(c, args, [])
            if res:
                speed[c].append(res["samples_per_s"])
                mem[c].append(res["peak_mb"])
                l0[c].append(res["l0"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    fvu: dict[str, tuple[float, float]] = {}
    if args.quality:
        for c in contenders:
            res = run(c, args, ["--quality-steps", str(args.quality)])
            if res:
                fvu[c] = (res["fvu"], res["l0"])

    med = {c: statistics.median(v) for c, v in speed.items() if v}
    fp32 = statistics.median(gemm["gemm:fp32"]) if gemm["gemm:fp32"] else float("nan")
    bf16 = statistics.median(gemm["gemm:bf16"]) if gemm.get("gemm:bf16") else float("nan")
    limit = fp32 / flops_per_sample(s, s["k"])
    ref = med.get("sparsify:topk")
    lines = [
        f"Shape {args.shape} (d_model {s['d']}, d_sae {s['h']}, k {s['k']}, batch {s['batch']}), "
        f"{args.rounds} rounds x {args.steps} timed steps, medians. fp32 GEMM {fp32 / 1e9:.0f} "
        f"GFLOP/s{f', bf16 {bf16 / 1e9:.0f} GFLOP/s' if bf16 == bf16 else ''}; "
        f"fp32 FLOP limit {limit / 1e3:.1f}k samples/s "
        f"at L0 = k (each contender's limit uses its own L0 during the timed steps).",
        "",
        "| contender | samples/s | vs sparsify | vs SAELens same arch | L0 | % of fp32 limit "
        "| peak MB/step |" + (" FVU | L0 after |" if fvu else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if fvu else ""),
    ]
    for c in contenders:
        if c not in med:
            continue
        arch = c.split(":")[1]
        sl = med.get(f"saelens:{arch}")
        row = (
            f"| {c} | {med[c]:,.0f} | {med[c] / ref:.2f} |"
            if ref
            else f"| {c} | {med[c]:,.0f} | - |"
        )
        row += f" {med[c] / sl:.2f} |" if sl and not c.startswith("saelens") else " - |"
        l0_c = statistics.median(l0[c])
        limit_c = fp32 / flops_per_sample(s, l0_c)
        row += f" {l0_c:,.0f} | {100 * med[c] / limit_c:.0f}% | {statistics.median(mem[c]):.0f} |"
        if fvu:
            row += f" {fvu[c][0]:.4f} | {fvu[c][1]:,.0f} |" if c in fvu else " - | - |"
        lines.append(row)
    if fvu:
        lines += [
            "",
            f"FVU and L0 after {args.quality * s['batch']:,} samples (lr 1e-3, same data).",
        ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
