"""The analysis layer's speed and memory (issue 11's targets), in one run.

- ``pass``: the shared encode pass against a bare ``sae.encode`` over the same store, alternating
  rounds; the ratio of throughputs (target >= 0.90).
- ``auc``: ``feature_auc`` on 16,384 latents x 10 classes x 10,000 images (target < 30 s).
- ``anova``: the batched type-II ANOVA of 1,000 latents on three factors (target < 60 s).
- ``memory``: peak RSS of ``analysis=all`` on a FairFace-sized split (86k images, 16,384 latents,
  L0 64, FairFace's 9 x 2 x 7 labels), in a fresh process (target < 4 GB).
- ``default``: ``vista analyze analysis=all`` on the default run's directory (``make run`` first;
  target < 5 minutes).
- ``intervene``: ``vista intervene`` (every mode, every label as target) on the default run
  (issue 13's target < 2 minutes); ``intervene-logistic`` adds the same with the logistic fresh
  reader, for the ratio.

Run: ``.venv/bin/python bench/bench_analysis.py [--only pass,auc,...] [--out FILE.md]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_store(path: Path, n: int, d: int, labels: dict[str, int], seed: int = 0) -> Path:
    """One vector per image, with label-dependent means so analyses have something to find."""
    from vista.store import SplitSpec, StoreWriter

    rng = np.random.default_rng(seed)
    names = {k: [f"{k}{i}" for i in range(c)] for k, c in labels.items()}
    centres = {k: rng.normal(size=(c, d)) for k, c in labels.items()}
    spec = {"validation": SplitSpec(n, d, None, names)}
    with StoreWriter(path, spec, {"encoder": "bench"}, resume=False) as w:
        for a in range(0, n, 8192):
            m = min(8192, n - a)
            ys = {k: rng.integers(0, c, m) for k, c in labels.items()}
            x = rng.normal(size=(m, d)) + sum(centres[k][y] for k, y in ys.items())
            w.append("validation", x.astype(np.float32), ys, np.arange(a, a + m))
        w.finish()
    return path


def random_sae(d: int, h: int, k: int, path: Path | None = None):  # type: ignore[no-untyped-def]
    from vista.saes import make_sae
    from vista.saes.io import save_sae

    sae = make_sae({"architecture": "topk", "d_model": d, "d_sae": h, "k": k, "seed": 0}).eval()
    if path is not None:
        save_sae(sae, path)
    return sae


def _batchtopk_like(sae, store: Path):  # type: ignore[no-untyped-def]
    """The same weights as a BatchTopK SAE whose inference threshold gives L0 ~ k."""
    from vista.saes import make_sae
    from vista.store.stream import iter_row_blocks

    b = make_sae({"architecture": "batchtopk", "d_model": sae.d_model, "d_sae": sae.d_sae, "k": 64})
    b.load_state_dict({**b.state_dict(), **sae.state_dict()}, strict=False)
    x = torch.from_numpy(
        np.asarray(next(iter(iter_row_blocks(store, "validation", 1024)))[1], np.float32)
    )
    with torch.no_grad():
        pre = b.pre_acts(x)
        b.threshold.fill_(float(pre.flatten().kthvalue(pre.numel() - 64 * len(x)).values))
    return b.eval()


def bench_pass(work: Path, rounds: int) -> list[str]:
    from vista.analysis.encoding import encode_split
    from vista.store.stream import iter_row_blocks

    n = 20_000
    store = make_store(work / "pass.h5", n, 768, {"y": 10})
    topk = random_sae(768, 16384, 64)
    lines = [
        "| SAE | bare `sae.encode` (images/s) | shared pass (images/s) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, sae in (("TopK", topk), ("BatchTopK (threshold)", _batchtopk_like(topk, store))):
        # The same blocks as the pass reads (dense codes of a block capped at 256 MB), so the
        # two differ only in what is done with the codes.
        rows = max(1, min(16384, (256 * 2**20) // (4 * sae.d_sae)))

        @torch.no_grad()
        def bare(sae=sae, rows=rows) -> float:  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            for _, block in iter_row_blocks(store, "validation", rows):
                sae.encode(torch.from_numpy(np.asarray(block, dtype=np.float32)))
            return n / (time.perf_counter() - t0)

        def shared(sae=sae) -> float:  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            encode_split(sae, store, "validation", batch_tokens=16384)
            return n / (time.perf_counter() - t0)

        b, s = [], []
        for _ in range(rounds):
            b.append(bare())
            s.append(shared())
        mb, ms = statistics.median(b), statistics.median(s)
        lines.append(f"| {name} | {mb:,.0f} | {ms:,.0f} | {ms / mb:.2f} |")
    return [
        *lines,
        "",
        f"{n:,} images x 768-d (a ViT-B width), 16,384 latents, L0 64, float16 zstd store, "
        f"{rounds} alternating rounds, the same blocks for both. The pass also finds the codes' "
        "non-zero entries (TopK straight from its top-k, `encode_sparse`; others by a scan of the "
        "dense codes), decodes through them, and keeps float64 reconstruction and per-image "
        "statistics and the CSR per-image codes.",
    ]


def bench_auc(work: Path) -> list[str]:
    from vista.analysis.context import AnalysisSettings, Context
    from vista.analysis.runner import run_analyses

    store = make_store(work / "auc.h5", 10_000, 256, {"y": 10})
    ctx = Context(random_sae(256, 16384, 64), store, AnalysisSettings(n_boot=1000))
    t0 = time.perf_counter()
    _ = ctx.encoded
    t_pass = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_analyses(ctx, ["feature_auc"], {}, work / "auc_out")
    t = time.perf_counter() - t0
    return [
        f"`feature_auc`, 16,384 latents x 10 classes x 10,000 images (L0 64, CSR: "
        f"{ctx.encoded.sparse}): **{t:.1f} s** (the shared pass before it: {t_pass:.1f} s)."
    ]


def bench_anova() -> list[str]:
    from vista.metrics.anova import factorial_anova

    rng = np.random.default_rng(0)
    n = 13_000
    f = {
        "age": rng.integers(0, 9, n),
        "gender": rng.integers(0, 2, n),
        "race": rng.integers(0, 7, n),
    }
    y = np.abs(rng.normal(size=(n, 1000))) * (rng.random((n, 1000)) < 0.1)
    t0 = time.perf_counter()
    factorial_anova(y, f)
    t = time.perf_counter() - t0
    return [
        f"Type-II ANOVA `age*gender*race` (9 x 2 x 7) of 1,000 latents over 13,000 images: "
        f"**{t:.1f} s** (statsmodels: one OLS per latent)."
    ]


MEMORY_CHILD = """
import json, resource, sys, time
from vista.analysis.runner import analyze
from vista.analysis.context import AnalysisSettings
from vista.analysis.registry import ANALYSES
sae, store, out = sys.argv[1:4]
cfgs = {n: s.config() for n, s in ANALYSES.items()}
cfgs["ablation"].ks = [100]
cfgs["probe"].epochs = 1
t0 = time.perf_counter()
o = analyze(sae, store, out, ["all"], cfgs, AnalysisSettings(n_boot=200, n_perm=200))
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t0, "ran": sorted(o.results),
                  "skipped": sorted(o.skipped)}))
"""


def bench_memory(work: Path) -> list[str]:
    store = make_store(work / "fairface_like.h5", 86_744, 1152, {"age": 9, "gender": 2, "race": 7})
    random_sae(1152, 16384, 64, work / "sae16k")
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            MEMORY_CHILD,
            str(work / "sae16k"),
            str(store),
            str(work / "mem_out"),
        ],
        capture_output=True,
        text=True,
    )
    if p.returncode:
        return [f"memory benchmark failed: {p.stderr[-2000:]}"]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return [
        f"`analysis=all` on a FairFace-sized split (86,744 images, 1152-d, TopK 16,384 latents k 64, "
        f"labels age 9 x gender 2 x race 7; ablation k=100 only, 1 probe epoch, 200 bootstrap "
        f"replicates): peak RSS **{r['peak_mb']:,.0f} MB**, {r['seconds']:.0f} s. Ran: "
        f"{', '.join(r['ran'])}; skipped: {', '.join(r['skipped'])}."
    ]


def _vista(verb: str, *args: str) -> tuple[float, Path, str]:
    """Run ``vista VERB`` on the default run into a fresh directory: (seconds, out_dir, error)."""
    run = ROOT / "runs" / "default"
    out = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    p = subprocess.run(
        [
            str(ROOT / ".venv/bin/vista"),
            verb,
            f"sae={run / 'sae'}",
            f"store={run / 'activations.h5'}",
            f"out_dir={out}",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - t0, out, p.stderr[-1000:] if p.returncode else ""


def bench_default() -> list[str]:
    run = ROOT / "runs" / "default"
    if not (run / "sae" / "cfg.json").is_file():
        return ["default run: no runs/default (run `make run` first)."]
    t, out, err = _vista(
        "analyze", f"stability.saes=[{run / 'reseeds/seed1'},{run / 'reseeds/seed2'}]"
    )
    if err:
        return [f"default run analysis failed: {err}"]
    idx = json.loads((out / "analyses/index.json").read_text())
    per = ", ".join(f"{k} {v['seconds']:.1f}" for k, v in idx["ran"].items())
    return [
        f"`vista analyze analysis=all` on runs/default (MNIST test set, 512 latents): **{t:.0f} s** "
        f"wall, including start-up. Per analysis (s): {per}."
    ]


def _intervene(reader: str) -> tuple[float, str]:
    wall, out, err = _vista("intervene", f"intervene.fresh_reader={reader}")
    if err:
        return float("nan"), err
    idx = json.loads((out / "analyses/index.json").read_text())
    return wall, f"{idx['ran']['intervene']['seconds']:.1f}"


def bench_intervene(logistic: bool) -> list[str]:
    if not (ROOT / "runs/default/sae/cfg.json").is_file():
        return ["intervene: no runs/default (run `make run` first)."]
    wall, inner = _intervene("lda")
    lines = [
        f"`vista intervene` (all 9 modes, targets digit, thickness and slant, 3 labels read) on "
        f"runs/default: **{wall:.0f} s** wall including start-up (the analysis {inner} s)."
    ]
    if logistic:
        wall_l, inner_l = _intervene("logistic")
        lines.append(
            f"With `intervene.fresh_reader=logistic`: {wall_l:.0f} s wall (the analysis {inner_l} "
            f"s); ratio logistic / lda = {wall_l / wall:.1f}."
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="pass,auc,anova,memory,default")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lines = [f"## Analyses ({time.strftime('%Y-%m-%d')}, `bench/bench_analysis.py`)", ""]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for part in args.only.split(","):
            t0 = time.perf_counter()
            if part == "pass":
                lines += bench_pass(work, args.rounds)
            elif part == "auc":
                lines += bench_auc(work)
            elif part == "anova":
                lines += bench_anova()
            elif part == "memory":
                lines += bench_memory(work)
            elif part == "default":
                lines += bench_default()
            elif part in ("intervene", "intervene-logistic"):
                lines += bench_intervene(part == "intervene-logistic")
            lines.append("")
            print(f"[{part}] {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    _ = resource


if __name__ == "__main__":
    main()
