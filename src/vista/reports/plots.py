"""Figures, drawn from result files only (never from a store or an SAE)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vista.analysis import ablation, exemplars, fidelity, health, intersectional, probes, tokens
from vista.analysis.declared import ARCHITECTURE, D_SAE, SPLIT
from vista.analysis.result import read_results
from vista.reports.images import grid_side


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    _plt().close(fig)
    tmp.replace(out)
    return out


def firing_frequency_histogram(
    counts: np.ndarray, n_tokens: int, path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Histogram of log10 latent firing frequency (fraction of tokens), dead latents annotated."""
    plt = _plt()
    freqs = counts.astype(np.float64) / max(n_tokens, 1)
    alive = freqs[freqs > 0]
    dead = int((freqs == 0).sum())
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    low = min(-6.0, float(np.floor(np.log10(alive.min())))) if alive.size else -6.0
    edges = np.linspace(low, 0.0, 41)
    ax.hist(np.log10(alive) if alive.size else [], bins=edges, color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("log10 firing frequency (fraction of tokens)")
    ax.set_ylabel("latents")
    ax.set_title(title or "SAE latent firing frequency")
    ax.text(
        0.02,
        0.95,
        f"{len(freqs)} latents, {dead} dead ({dead / max(len(freqs), 1):.1%}), {n_tokens} tokens",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


def plots_from_results(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Every figure the results under ``out_dir/analyses`` allow, into ``out_dir/plots``."""
    out = Path(out_dir)
    results = read_results(out)
    made = []
    counts = health.FIRING_COUNTS.of(results)
    if counts is not None:
        made.append(
            firing_frequency_histogram(
                counts,
                int(health.TOTAL_TOKENS.of(results) or 0),
                out / "plots" / "latent_firing_frequency.png",
                title=f"{ARCHITECTURE.of(results) or ''} SAE, {D_SAE.of(results) or ''} latents "
                f"({SPLIT.of(results) or ''})",
            )
        )
    return made


def probes_figure(results: dict[str, Any], path: Path) -> Path | None:
    """Raw vs SAE probe accuracy per label, with the intervals."""
    labels = sorted({parts["label"] for parts, _ in probes.ACCURACY.each(results, codes="raw")})
    if not labels:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(labels), 3.4), dpi=110)
    x = np.arange(len(labels))
    for off, kind, color in ((-0.18, "raw", "#9aa7b8"), (0.18, "sae", "#3b6ea8")):
        s = [probes.ACCURACY.of(results, label=lab, codes=kind) for lab in labels]
        err = [
            [v.value - (v.low if v.low is not None else v.value) for v in s],
            [(v.high if v.high is not None else v.value) - v.value for v in s],
        ]
        ax.bar(
            x + off,
            [v.value for v in s],
            0.36,
            yerr=err,
            capsize=3,
            color=color,
            label="raw activations" if kind == "raw" else "SAE codes",
        )
    ax.set_xticks(x, [short(lab, 16) for lab in labels])
    ax.set_ylabel("probe accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Does a linear probe read the label from the codes?", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def short(name: str, n: int = 24) -> str:
    """``name`` cut to ``n`` characters with an ellipsis, so a long class or group name cannot
    push a plot's bars aside (the pages show names in full)."""
    name = str(name)
    return name if len(name) <= n else name[: n - 1] + "…"


def ablation_figure(rows: list[dict[str, Any]], label: str, path: Path) -> Path | None:
    """Accuracy without / with only the top-k latents, and the random-k control, against k."""
    if not rows:
        return None
    plt = _plt()
    k = [row["k"] for row in rows]
    fig, ax = plt.subplots(figsize=(4.8, 3.3), dpi=110)
    ax.plot(
        k, [row["acc_without_top_k"] for row in rows], "o-", color="#b5443b", label="without top k"
    )
    ax.plot(k, [row["acc_only_top_k"] for row in rows], "o-", color="#3b6ea8", label="only top k")
    ax.plot(
        k,
        [row["random_acc_without_k"] for row in rows],
        "o--",
        color="#e2a49e",
        label="without k random",
    )
    ax.plot(
        k, [row["random_acc_only_k"] for row in rows], "o--", color="#9db7d8", label="only k random"
    )
    ax.set_xscale("log")
    ax.set_xlabel("k latents")
    ax.set_ylabel("probe accuracy")
    ax.set_title(f"{short(label)}: necessity and sufficiency", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def fidelity_figure(rows: list[dict[str, Any]], label: str, path: Path) -> Path | None:
    """NMSE per group with intervals (whom the SAE fails)."""
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 0.8 + 0.28 * len(rows)), dpi=110)
    y = np.arange(len(rows))
    v = np.array([row["nmse"] for row in rows])
    lo = np.array([row["nmse_ci"][0] for row in rows])
    hi = np.array([row["nmse_ci"][1] for row in rows])
    ax.barh(y, v, xerr=[v - lo, hi - v], color="#3b6ea8", capsize=2)
    ax.set_yticks(y, [short(str(row["group"])) for row in rows], fontsize=7)
    ax.set_xlabel("NMSE (error / the split's variance per token)")
    ax.set_title(f"{short(label)}: reconstruction per group", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def anova_figure(results: dict[str, Any], path: Path, top: int = 40) -> Path | None:
    """Partial eta^2 of the interaction terms for the candidates with the largest."""
    eta = intersectional.ETA.of(results)
    feats = intersectional.FEATURES.of(results)
    if eta is None or feats is None or eta.size == 0:
        return None
    plt = _plt()
    order = np.argsort(-eta.max(axis=0))[:top]
    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.3 * eta.shape[0]), dpi=110)
    im = ax.imshow(eta[:, order], aspect="auto", cmap="Blues")
    ax.set_yticks(
        range(eta.shape[0]), [short(t) for t in intersectional.TERMS.of(results) or []], fontsize=8
    )
    ax.set_xticks(range(len(order)), [str(int(f)) for f in feats[order]], fontsize=6, rotation=90)
    ax.set_xlabel("latent")
    ax.set_title("Interaction effects (partial eta squared), strongest latents", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return _save(fig, path)


def tokens_figure(results: dict[str, Any], path: Path) -> Path | None:
    """The patch grid: mean activation norm, squared reconstruction error and L0 per position."""
    types = tokens.TYPES.of(results) or {}
    if "patches" not in types:
        return None
    first, stop = types["patches"]
    side = grid_side(stop - first)
    if side < 2:
        return None
    plt = _plt()
    panels = (
        (tokens.POSITION_NORM, "mean norm"),
        (tokens.POSITION_SQ_ERROR, "mean squared error"),
        (tokens.POSITION_L0, "mean L0"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.3), dpi=110)
    for ax, (key, title) in zip(axes, panels, strict=True):
        grid = np.asarray(key.of(results))[first:stop].reshape(side, side)
        im = ax.imshow(grid, cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("Patch tokens by position (tokens analysis)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def report_figures(results: dict[str, Any], out: Path) -> dict[str, list[dict[str, Any]]]:
    """The report's figures: ``overview`` and per-``labels`` lists of ``{src, caption[, label]}``."""
    figs: dict[str, list[dict[str, Any]]] = {"overview": [], "labels": []}
    counts = health.FIRING_COUNTS.of(results)
    if counts is not None:
        firing_frequency_histogram(
            counts, int(health.TOTAL_TOKENS.of(results) or 0), out / "firing_frequency.png"
        )
        figs["overview"].append(
            {"src": "plots/firing_frequency.png", "caption": "latent firing frequency"}
        )
    if probes_figure(results, out / "probes.png"):
        figs["overview"].append(
            {"src": "plots/probes.png", "caption": "probes: raw activations vs SAE codes"}
        )
    if tokens_figure(results, out / "tokens.png"):
        figs["overview"].append(
            {"src": "plots/tokens.png", "caption": "patch tokens: norm, error and L0 by position"}
        )
    if anova_figure(results, out / "anova.png"):
        figs["overview"].append(
            {"src": "plots/anova.png", "caption": "intersectional: interaction effects"}
        )
    for i, label in enumerate(exemplars.LABELS.of(results) or []):
        rows = ablation.ROWS.of(results, label=label)
        if rows is not None and ablation_figure(rows, label, out / f"a{i}.png"):
            figs["labels"].append({"src": f"plots/a{i}.png", "caption": "ablation", "label": label})
        rows = fidelity.ROWS.of(results, label=label)
        if rows is not None and fidelity_figure(rows, label, out / f"f{i}.png"):
            figs["labels"].append({"src": f"plots/f{i}.png", "caption": "fidelity", "label": label})
    return figs
