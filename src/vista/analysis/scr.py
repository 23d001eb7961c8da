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

Both directions of a pair share one sample and one biased probe (on the biased set the two labels
coincide). ``definition=saebench`` (the default) counts one direction per pair, as SAEBench's
``get_scr_plotting_dict`` (``scr_and_tpp/main.py:339-400``): the one whose target the biased probe
reads worse on balanced data, i.e. the label it does *not* lean on, with the other label's latents
ablated (the first named on a tie, where SAEBench reports neither). ``definition=vista`` averages
every direction (every ordered pair). A pair with a cell under ``min_cell`` images is skipped,
named with the reason in the result's ``skipped``; a direction whose gap is under 0.001 counts 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.latent_effects import ablate, accuracy, attribution, fit_direction
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result, Skip
from vista.errors import VistaError
from vista.metrics.uncertainty import mean_ci

DEFINITIONS = ("saebench", "vista")

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class SCRConfig:
    pairs: list[list[str]] = field(default_factory=list)
    """``[[target, spurious], ...]`` (empty = every pair of usable labels). Both directions of a
    pair are measured on one sample; ``saebench`` counts the one SAEBench picks, ``vista`` the
    named directions (every ordered pair when empty)."""
    ns: list[int] = field(default_factory=lambda: [2, 5, 10, 20, 50, 100])
    min_cell: int = 20
    """Images each of the four cells needs in both parts."""
    definition: str = "saebench"
    """``saebench``: one direction per pair, SAEBench's; ``vista``: every ordered pair averaged."""


def _two_largest(y: np.ndarray, idx: np.ndarray) -> list[int]:
    """The two most frequent classes of ``y`` among the images ``idx``."""
    counts = np.bincount(y[idx][y[idx] >= 0])
    return [int(c) for c in np.argsort(-counts, kind="stable")[:2]]


def _take(idx: np.ndarray, keep: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    where = idx[keep]
    return np.sort(rng.choice(where, min(m, len(where)), replace=False))


def _sample(ctx: Context, a: str, b: str, cfg: SCRConfig) -> dict[str, Any]:
    """One sample for the pair, used by both directions: the four cells of the two largest
    classes of each label, equal in number, in a training and a held-out part (split
    stratified by both labels); the biased set is the cells (a0, b0) and (a1, b1)."""
    ya, yb = ctx.labels[a], ctx.labels[b]
    both = np.flatnonzero((ya >= 0) & (yb >= 0))
    tr_all, te_all = ctx.joint_train_test([a, b])
    tr_all, te_all = np.intersect1d(tr_all, both), np.intersect1d(te_all, both)
    (a0, a1), (b0, b1) = _two_largest(ya, both), _two_largest(yb, both)
    rng = ctx.rng("scr", *sorted((a, b)))
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
    x = ctx.encoded.pooled_raw
    # On the biased set a1 and b1 coincide: one probe, read against either label (SAEBench's
    # "male_professor / female_nurse" probe).
    probe, _ = fit_direction(x[biased], ya[biased] == a1)
    return {
        "first": {a: a1, b: b1},
        "classes": {a: [a0, a1], b: [b0, b1]},
        "balanced": np.concatenate(pick["tr"]),
        "test": np.concatenate(pick["te"]),
        "biased_probe": probe,
    }


def scr_direction(
    ctx: Context, sample: dict[str, Any], a: str, b: str, cfg: SCRConfig
) -> dict[str, Any]:
    """The biased probe read as a probe for ``a``, with ``b``'s top latents ablated."""
    enc = ctx.encoded
    ya, yb = ctx.labels[a], ctx.labels[b]
    a1, b1 = sample["first"][a], sample["first"][b]
    bal, test, biased_probe = sample["balanced"], sample["test"], sample["biased_probe"]
    x, c, w_dec = enc.pooled_raw, enc.codes, ctx.sae.W_dec.detach().cpu().double().numpy()
    oracle, _ = fit_direction(x[bal], ya[bal] == a1)
    _, w_b = fit_direction(x[bal], yb[bal] == b1)
    scores = np.abs(attribution(c[bal], yb[bal] == b1, w_b, w_dec))
    base = accuracy(biased_probe, x[test], ya[test] == a1)
    top = accuracy(oracle, x[test], ya[test] == a1)
    out: dict[str, Any] = {
        "target": a,
        "spurious": b,
        "classes": sample["classes"][a] + sample["classes"][b],
        "a_base": base,
        "a_oracle": top,
        "defined": top - base >= 0.001,
        "scr": {},
    }
    for n in cfg.ns:
        latents = np.argsort(-scores, kind="stable")[: min(n, len(scores))]
        abl = accuracy(biased_probe, ablate(x[test], c[test], w_dec, latents), ya[test] == a1)
        # SAEBench (scr_and_tpp/main.py:381): a gap under 0.001 scores 0
        out["scr"][n] = (abl - base) / (top - base) if top - base >= 0.001 else 0.0
    return out


def scr_pair(ctx: Context, a: str, b: str, cfg: SCRConfig) -> list[dict[str, Any]]:
    """Both directions of the pair on one sample; ``selected`` marks SAEBench's: the one whose
    target the biased probe reads worse (it leans on the other label), the first on a tie."""
    sample = _sample(ctx, a, b, cfg)
    rows = [scr_direction(ctx, sample, a, b, cfg), scr_direction(ctx, sample, b, a, cfg)]
    pick = 0 if rows[0]["a_base"] <= rows[1]["a_base"] else 1
    for i, row in enumerate(rows):
        row["selected"] = i == pick
    return rows


def _pairs(cfg: SCRConfig, usable: list[str]) -> list[tuple[str, str]]:
    """The pairs to sample: each unordered pair once (as first named)."""
    wanted = [tuple(p) for p in cfg.pairs] or list(combinations(usable, 2))
    seen: set[frozenset[str]] = set()
    out = []
    for a, b in wanted:
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            out.append((a, b))
    return out


def _counted(rows: list[dict[str, Any]], cfg: SCRConfig) -> list[dict[str, Any]]:
    """The directions the metric averages: SAEBench's one per pair, or (``vista``) every
    ordered pair, or the ordered pairs named in ``pairs``."""
    if cfg.definition == "saebench":
        return [r for r in rows if r["selected"]]
    if cfg.pairs:
        named = {tuple(p) for p in cfg.pairs}
        return [r for r in rows if (r["target"], r["spurious"]) in named]
    return rows


OUT = Outputs("scr")
METRIC = OUT.scalar("scr_metric_threshold_{n}", "higher", "SCR with the top n latents ablated")
OUT.table("pairs", "per direction of each label pair: baseline, oracle, SCR, selected, counted")
OUT.meta("definition", "saebench or vista")


@register_analysis(
    "scr",
    SCRConfig,
    "Spurious correlation removal: ablating a spurious label's latents unbiases a probe.",
    needs_labels=2,
    order=150,
    outputs=OUT,
)
def run(ctx: Context, cfg: SCRConfig) -> Result:
    if cfg.definition not in DEFINITIONS:
        raise VistaError(f"scr.definition={cfg.definition!r} is not one of {list(DEFINITIONS)}.")
    usable = ctx.require_labels(2)
    r = Result("scr")
    r.metadata["definition"] = cfg.definition
    rows: list[dict[str, Any]] = []
    for a, b in _pairs(cfg, usable):
        if a not in usable or b not in usable:
            r.skipped[f"{a}x{b}"] = "a label of the pair is missing or has one class"
            continue
        try:
            rows += scr_pair(ctx, a, b, cfg)
        except ValueError as e:
            r.skipped[f"{a}x{b}"] = str(e)
    if not rows:
        raise Skip("no pair of labels has four populated cells: " + "; ".join(r.skipped.values()))
    s, counted = ctx.settings, _counted(rows, cfg)
    for n in cfg.ns:
        vals = np.array([d["scr"][n] for d in counted])
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
            "selected": d["selected"],
            "counted": any(d is c for c in counted),
            **{f"scr_{n}": v for n, v in d["scr"].items()},
        }
        for d in rows
    ]
    r.headline = [f"scr_metric_threshold_{min(cfg.ns, key=lambda n: abs(n - 20))}"]
    return r
