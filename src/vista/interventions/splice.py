"""``splice``: the SAE inside the encoder it was trained on (docs/originals.md §4.5-4.6 at the model level).

The store's encoder is rebuilt from the store's attributes, the SAE is spliced in at the store's
layer and token selection, and the model's classification head reads the held-out images (of the
label whose classes the head predicts): clean, with the SAE's reconstruction (passthrough), with
the layer zeroed and mean-ablated (the references of "loss recovered"), and with edits per token:

- the label's top-k features of every class suppressed, decoded and with the error kept, next to
  as many random features: the decomposition ``total = reconstruction_error + targeted +
  interaction`` of the model's accuracy;
- per class c, its own top-k features suppressed (error kept): the accuracy the class loses beyond
  what the other classes lose (``targeted_change = mean change on the others - change on c``;
  positive: the edit hits its class), against as many random features.

Loss recovered = ``(CE_ablated - CE_spliced) / (CE_ablated - CE_clean)``; KL is from the clean
model's predictive distribution to the spliced one's, per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result, Skip
from vista.analysis.sdf import SDFConfig
from vista.interventions import hooks
from vista.interventions.model import Model, forward, rebuild
from vista.interventions.scoring import effect
from vista.interventions.targets import class_features, random_features, round_robin
from vista.metrics.uncertainty import mean_ci, ratio_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class SpliceConfig:
    label: str = ""
    """The label the model's head predicts ('' = the first with as many classes as logits)."""
    k: int = 10
    """Top SDFs per class suppressed."""
    max_images: int = 2000
    """Held-out images run through the model (0 = all)."""
    batch_size: int = 256
    encoder_path: str = ""
    """Where the store's encoder is now, if it moved ('' = the path the store records)."""
    dataset_root: str = ""
    """Where the store's dataset is now, if it moved."""
    sdf: SDFConfig = field(default_factory=SDFConfig)


def _reads(logits: torch.Tensor, clean: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: correct, cross-entropy, KL(clean || this)."""
    logp, logq = F.log_softmax(clean, dim=1), F.log_softmax(logits, dim=1)
    return {
        "ok": (logits.argmax(dim=1) == y).double().numpy(),
        "ce": F.cross_entropy(logits, y, reduction="none").double().numpy(),
        "kl": (logp.exp() * (logp - logq)).sum(dim=1).double().numpy(),
    }


def _head_label(ctx: Context, cfg: SpliceConfig, width: int) -> str:
    if cfg.label:
        return ctx.pick_labels([cfg.label])[0]
    for name in ctx.require_labels():
        if len(ctx.class_names[name]) == width:
            return name
    raise Skip(f"no label has as many classes as the model's {width} logits; set splice.label")


def _conditions(
    ctx: Context, sae: Any, label: str, cfg: SpliceConfig
) -> tuple[dict[str, hooks.Edit], dict[int, np.ndarray], int]:
    """The edits run on every image, each class's top-k SDFs, and the size of their union."""
    per_class = class_features(ctx, label, cfg.sdf)
    union = round_robin([per_class[c][: cfg.k] for c in sorted(per_class)])
    rand = random_features(ctx, union, len(union), ctx.rng("splice", label), like=union)
    mean = torch.as_tensor(ctx.encoded.pooled_raw.mean(axis=0), dtype=torch.float32)
    t = torch.as_tensor
    edits = {
        "passthrough": hooks.passthrough(sae),
        "zero_ablation": hooks.constant(torch.zeros_like(mean)),
        "mean_ablation": hooks.constant(mean),
        "suppressed": hooks.suppress(sae, t(union), keep_error=False),
        "suppressed_kept": hooks.suppress(sae, t(union), keep_error=True),
        "random": hooks.suppress(sae, t(rand), keep_error=False),
        "random_kept": hooks.suppress(sae, t(rand), keep_error=True),
    }
    return edits, {c: f[: cfg.k] for c, f in per_class.items()}, len(union)


def _per_class(
    ctx: Context,
    m: Model,
    sae: Any,
    label: str,
    rows: np.ndarray,
    y: torch.Tensor,
    base: np.ndarray,
    per_class: dict[int, np.ndarray],
    cfg: SpliceConfig,
    r: Result,
) -> None:
    """Targeted change score per class, and the random control."""
    s, names = ctx.settings, ctx.class_names[label]
    scores: dict[str, list[float]] = {"sdf": [], "random": []}
    table = []
    for c, feats in sorted(per_class.items()):
        rand = random_features(ctx, feats, len(feats), ctx.rng("splice", c), like=feats)
        for kind, f in (("sdf", feats), ("random", rand)):
            edit = hooks.suppress(sae, torch.as_tensor(f), keep_error=True)
            ok = (forward(m, ctx, rows, edit, cfg.batch_size).argmax(1) == y).double().numpy()
            d = ok - base
            own = d[y.numpy() == c].mean() if (y.numpy() == c).any() else np.nan
            rest = d[y.numpy() != c].mean()
            scores[kind].append(rest - own)
            table.append({"class": names[c], "features": kind, "n_features": len(f),
                          "own_change": float(own), "other_change": float(rest)})  # fmt: skip
    r.tables["per_class"] = table
    for kind, v in scores.items():
        arr = np.asarray(v, dtype=np.float64)
        ci = mean_ci(arr, s.n_boot, ctx.rng("splice", kind), s.confidence)
        r.add(f"targeted_change/{kind}", float(np.nanmean(arr)), "none", ci, len(arr))


def _add_reads(
    r: Result, reads: dict[str, dict[str, np.ndarray]], base: np.ndarray, ctx: Context
) -> None:
    """Accuracy and cross-entropy of every condition; accuracy change and KL against clean."""
    s = ctx.settings
    for name, rd in reads.items():
        n = len(rd["ok"])
        r.add(
            f"{name}/accuracy",
            rd["ok"].mean(),
            "none",
            mean_ci(rd["ok"], s.n_boot, ctx.rng("splice", name), s.confidence),
            n,
        )
        r.add(f"{name}/cross_entropy", rd["ce"].mean(), "none", n=n)
        if name != "clean":
            e = effect(rd["ok"] - base, ctx, "splice", name)
            r.add(f"{name}/accuracy_change", e.value, "none", (e.low, e.high), e.n)
            r.add(
                f"{name}/kl",
                rd["kl"].mean(),
                "none",
                mean_ci(rd["kl"], s.n_boot, ctx.rng("kl", name), s.confidence),
                n,
            )


def _add_recovery(r: Result, reads: dict[str, dict[str, np.ndarray]], ctx: Context) -> None:
    """Loss recovered by the SAE's reconstruction, against zero and mean ablation."""
    s = ctx.settings
    ce = {k: v["ce"] for k, v in reads.items()}
    for ref in ("zero_ablation", "mean_ablation"):
        num, den = ce[ref] - ce["passthrough"], ce[ref] - ce["clean"]
        rec = float(num.sum() / den.sum()) if den.sum() else float("nan")
        ci = ratio_ci(num, den, s.n_boot, ctx.rng("recovered", ref), s.confidence)
        r.add(f"loss_recovered/{ref}", rec, "higher", ci, len(num))


def _add_decomposition(
    r: Result,
    reads: dict[str, dict[str, np.ndarray]],
    base: np.ndarray,
    ctx: Context,
    k: int,
    n_features: int,
) -> None:
    """The accuracy change of suppression split into reconstruction error, the targeted part,
    their interaction, and the random control."""
    ok = {k: v["ok"] for k, v in reads.items()}
    parts = {
        "total": ok["suppressed"] - base,
        "reconstruction_error": ok["passthrough"] - base,
        "targeted": ok["suppressed_kept"] - base,
        "interaction": ok["suppressed"] - ok["passthrough"] - ok["suppressed_kept"] + base,
        "random_targeted": ok["random_kept"] - base,
    }
    for part, d in parts.items():
        e = effect(d, ctx, "splice-decomposition", part)
        r.add(f"decomposition/{part}", e.value, "none", (e.low, e.high), e.n)
        r.tables.setdefault("decomposition", []).append(
            {"component": part, "k_per_class": k, "n_features": n_features, **e.row()}
        )


OUT = Outputs("splice")
OUT.scalar("{condition}/accuracy", "none", "the encoder's accuracy with the condition spliced in")
OUT.scalar("{condition}/cross_entropy", "none", "its cross-entropy")
OUT.scalar("{condition}/accuracy_change", "none", "accuracy change against clean")
OUT.scalar("{condition}/kl", "none", "KL divergence from the clean outputs")
OUT.scalar("loss_recovered/{reference}", "higher", "loss recovered against an ablation")
OUT.scalar("decomposition/{component}", "none", "a part of the suppression effect")
OUT.scalar("targeted_change/{features}", "none", "other-class minus own-class change")
OUT.table("decomposition", "the suppression effect split into its parts")
OUT.table("per_class", "per class and feature set: own and other change")


@register_analysis(
    "splice",
    SpliceConfig,
    "The SAE inside its encoder: accuracy, loss recovered, KL, and per-class suppression.",
    needs_labels=1,
    order=190,
    outputs=OUT,
)
def run(ctx: Context, cfg: SpliceConfig) -> Result:
    s, sae = ctx.settings, ctx.sae.eval()
    m = rebuild(ctx, cfg.encoder_path, cfg.dataset_root, s.device)
    width = forward(m, ctx, np.arange(1), None, 1).shape[1]
    label = _head_label(ctx, cfg, width)
    rows = ctx.train_test(label)[1]
    rows = rows[: cfg.max_images] if cfg.max_images else rows
    y = torch.as_tensor(ctx.labels[label][rows])
    clean = forward(m, ctx, rows, None, cfg.batch_size)
    r = Result("splice")
    r.metadata.update({"label": label, "layer": m.layer, "tokens": m.tokens, "n_images": len(rows)})
    edits, per_class, n_features = _conditions(ctx, sae, label, cfg)
    reads = {"clean": _reads(clean, clean, y)}
    for name, edit in edits.items():
        reads[name] = _reads(forward(m, ctx, rows, edit, cfg.batch_size), clean, y)
    base = reads["clean"]["ok"]
    _add_reads(r, reads, base, ctx)
    _add_recovery(r, reads, ctx)
    _add_decomposition(r, reads, base, ctx, cfg.k, n_features)
    _per_class(ctx, m, sae, label, rows, y, base, per_class, cfg, r)
    r.headline = ["clean/accuracy", "passthrough/accuracy", "loss_recovered/zero_ablation",
                  "passthrough/kl", "decomposition/targeted", "targeted_change/sdf"]  # fmt: skip
    return r
