"""``scr``: spurious correlation removal (SAEBench), for a pair of vision labels.

For a target label A and a spurious label B, take A's two largest classes (a0, a1) and B's (b0, b1).
A probe for A trained where A and B coincide (only images of cells (a0, b0) and (a1, b1): the
biased set) leans on B too, so on balanced held-out images of all four cells it scores
``A_base``; a probe trained on balanced images of the four cells scores ``A_oracle``. The latents with
the largest effect on a probe for B (``latent_effects``) are zero-ablated ``n`` at a time and the
biased probe re-scored (``A_ablated``): ``SCR = (A_ablated - A_base) / (A_oracle - A_base)``, the
share of the gap to the oracle that removing B's latents closes (higher is better; 0 when the gap
is under 0.001, as in SAEBench, and the pair's ``defined`` is false). As in SAEBench the biased
probe is not refitted after the ablation, so an ablation that moves images off the probe's
training distribution (a latent with a large mean) can lower the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.latent_effects import ablate, accuracy, attribution, fit_direction
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result, Skip
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class SCRConfig:
    pairs: list[list[str]] = field(default_factory=list)
    """``[[target, spurious], ...]`` (empty = every ordered pair of usable labels)."""
    ns: list[int] = field(default_factory=lambda: [2, 5, 10, 20, 50, 100])
    min_cell: int = 20
    """Images each of the four cells needs in both parts."""


def _two_largest(y: np.ndarray, idx: np.ndarray) -> list[int]:
    """The two most frequent classes of ``y`` among the images ``idx``."""
    counts = np.bincount(y[idx][y[idx] >= 0])
    return [int(c) for c in np.argsort(-counts, kind="stable")[:2]]


def _take(idx: np.ndarray, keep: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    where = idx[keep]
    return np.sort(rng.choice(where, min(m, len(where)), replace=False))


def scr_pair(ctx: Context, a: str, b: str, cfg: SCRConfig) -> dict[str, Any]:
    enc = ctx.encoded
    ya, yb = ctx.labels[a], ctx.labels[b]
    both = np.flatnonzero((ya >= 0) & (yb >= 0))
    tr_all, te_all = ctx.train_test(a)
    tr_all, te_all = np.intersect1d(tr_all, both), np.intersect1d(te_all, both)
    (a0, a1), (b0, b1) = _two_largest(ya, both), _two_largest(yb, both)
    rng = ctx.rng("scr", a, b)
    cells = [(a0, b0), (a0, b1), (a1, b0), (a1, b1)]
    n_tr = min(int(((ya[tr_all] == i) & (yb[tr_all] == j)).sum()) for i, j in cells)
    n_te = min(int(((ya[te_all] == i) & (yb[te_all] == j)).sum()) for i, j in cells)
    if min(n_tr, n_te) < cfg.min_cell:
        raise ValueError(f"a cell of {a} x {b} has fewer than {cfg.min_cell} images in a part")
    pick = {
        split: [_take(idx, (ya[idx] == i) & (yb[idx] == j), m, rng) for i, j in cells]
        for split, idx, m in (("tr", tr_all, n_tr), ("te", te_all, n_te))
    }
    biased = np.concatenate([pick["tr"][0], pick["tr"][3]])
    balanced_tr, test = np.concatenate(pick["tr"]), np.concatenate(pick["te"])
    x, c, w_dec = enc.pooled_raw, enc.codes, ctx.sae.W_dec.detach().cpu().double().numpy()
    biased_probe, _ = fit_direction(x[biased], ya[biased] == a1)
    oracle, _ = fit_direction(x[balanced_tr], ya[balanced_tr] == a1)
    _, w_b = fit_direction(x[balanced_tr], yb[balanced_tr] == b1)
    scores = np.abs(attribution(c[balanced_tr], yb[balanced_tr] == b1, w_b, w_dec))
    base, top = (
        accuracy(biased_probe, x[test], ya[test] == a1),
        accuracy(oracle, x[test], ya[test] == a1),
    )
    out: dict[str, Any] = {
        "target": a,
        "spurious": b,
        "classes": [a0, a1, b0, b1],
        "a_base": base,
        "a_oracle": top,
        "defined": top - base >= 0.001,
        "scr": {},
    }
    for n in cfg.ns:
        latents = np.argsort(-scores, kind="stable")[: min(n, len(scores))]
        abl = accuracy(biased_probe, ablate(x[test], c[test], w_dec, latents), ya[test] == a1)
        out["scr"][n] = (abl - base) / (top - base) if top - base >= 0.001 else 0.0
    return out


OUT = Outputs("scr")
METRIC = OUT.scalar("scr_metric_threshold_{n}", "higher", "SCR with the top n latents ablated")
OUT.table("pairs", "per label pair: baseline, oracle and SCR")


@register_analysis(
    "scr",
    SCRConfig,
    "Spurious correlation removal: ablating a spurious label's latents unbiases a probe.",
    needs_labels=2,
    order=150,
    outputs=OUT,
)
def run(ctx: Context, cfg: SCRConfig) -> Result:
    usable = ctx.require_labels(2)
    pairs = [tuple(p) for p in cfg.pairs] or list(permutations(usable, 2))
    r = Result("scr")
    done = []
    for a, b in pairs:
        if a not in usable or b not in usable:
            r.skipped[f"{a}x{b}"] = "a label of the pair is missing or has one class"
            continue
        try:
            done.append(scr_pair(ctx, a, b, cfg))
        except ValueError as e:
            r.skipped[f"{a}x{b}"] = str(e)
    if not done:
        raise Skip("no pair of labels has four populated cells: " + "; ".join(r.skipped.values()))
    s = ctx.settings
    for n in cfg.ns:
        vals = np.array([d["scr"][n] for d in done])
        vals = vals[np.isfinite(vals)]
        r.add(
            f"scr_metric_threshold_{n}",
            float(vals.mean()) if len(vals) else float("nan"),
            "higher",
            mean_ci(vals, s.n_boot, ctx.rng("scr", n), s.confidence),
            len(vals),
        )
    r.tables["pairs"] = [
        {
            "target": d["target"],
            "spurious": d["spurious"],
            "a_base": d["a_base"],
            "a_oracle": d["a_oracle"],
            "defined": d["defined"],
            **{f"scr_{n}": v for n, v in d["scr"].items()},
        }
        for d in done
    ]
    r.headline = [f"scr_metric_threshold_{min(cfg.ns, key=lambda n: abs(n - 20))}"]
    return r
