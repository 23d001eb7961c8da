"""The template contexts of a feature page and a label page (plain dicts and lists)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vista.analysis import ablation, conjunction, exemplars, feature_auc, fidelity, health, sdf
from vista.analysis import stability as stability_
from vista.analysis.declared import config_of
from vista.analysis.exemplars import ExemplarsConfig
from vista.interventions import generate, intervene
from vista.interventions.intervene import InterveneConfig
from vista.reports.features import FeatureData


def _images(
    data: FeatureData, rows: np.ndarray, vals: np.ndarray, thumbs: Any, size: int
) -> list[dict]:
    """Thumbnails (or their absence) of split rows ``rows`` with activations ``vals``."""
    oi = data.get(exemplars.ORIGINAL_INDICES)
    return [
        {"src": _up(thumbs(int(oi[r]))), "index": int(oi[r]), "value": v, "label": "", "size": size}
        for r, v in zip(rows.tolist(), vals.tolist(), strict=True)
        if r >= 0
    ]


def _up(src: str | None) -> str | None:
    """A path relative to the report's root, seen from a page one folder down."""
    return None if src is None else f"../{src}"


def feature_context(
    data: FeatureData, i: int, pages: set[int], thumbs: Any, cfg: Any, maps: list[dict[str, Any]]
) -> dict[str, Any]:
    """Everything the feature page of latent ``i`` shows."""
    ex = exemplars.OUT.of(data.results)
    assert ex is not None  # a report needs the exemplars
    size, n_top = cfg.thumb_size, cfg.top_images
    top_rows, top_values = data.get(exemplars.TOP_ROWS), data.get(exemplars.TOP_VALUES)
    top = _images(data, top_rows[i][:n_top], top_values[i][:n_top], thumbs, size)
    best, where = data.best_auc()
    # The captions name the label the feature is about (its best AUC's), not the first label.
    about = where[i].split("=", 1)[0] if where else (data.labels[0] if data.labels else "")
    top_labels = data.get(exemplars.TOP_LABELS, label=about) if about else None
    if top_labels is not None:
        names = data.class_names(about)
        for t, c in zip(top, top_labels[i].tolist(), strict=False):
            t["label"] = f"{about}={names[c]}" if 0 <= c < len(names) else ""
    quants = config_of(ex, ExemplarsConfig).quantiles
    qrows, qvals = data.get(exemplars.QUANTILE_ROWS)[i], data.get(exemplars.QUANTILE_VALUES)[i]
    quantiles = [
        {
            "name": f"{q:g}",
            "images": _images(
                data, qrows[3 * k : 3 * k + 3], qvals[3 * k : 3 * k + 3], thumbs, size
            ),
        }
        for k, q in enumerate(quants)
    ]
    freq = data.get(health.FIRING_FREQUENCY)
    per_label = _per_label(data, i, data.sdf_membership().get(i, []), n_top)
    neighbours, cosines = data.get(exemplars.NEIGHBOURS), data.get(exemplars.NEIGHBOUR_COSINE)
    return {
        "id": i,
        "freq": f"{freq[i]:.3%}" if freq is not None else "an unknown share",
        "best": f"best AUC {best[i]:.3f} ({where[i]})" if best is not None else "no labels",
        "stability": _stability(data, i),
        "top": top,
        "maps": maps,
        "quantiles": quantiles,
        "hist": data.get(exemplars.HISTOGRAM)[i].tolist(),
        "hist_max": float(data.get(exemplars.HISTOGRAM_MAX)[i]),
        "per_label": per_label,
        "neighbours": [
            {"id": int(n), "cos": float(c), "page": int(n) in pages}
            for n, c in zip(neighbours[i], cosines[i], strict=True)
        ],
        "conjunctions": [c for c in data.get(conjunction.FEATURES) or [] if c["feature"] == i],
        "interventions": _feature_interventions(data, i),
    }


def _per_label(data: FeatureData, i: int, sdf: list[str], n_top: int) -> list[dict[str, Any]]:
    """Per label: the classes of latent ``i``'s ``n_top`` shown top images, its class means, best
    AUC and SDF classes."""
    per_label = []
    for label in data.labels:
        names = data.class_names(label)
        counts = _shown_counts(data, label, i, n_top, len(names))
        means = data.get(exemplars.CLASS_MEAN, label=label)
        found = data.best_class(label)
        per_label.append(
            {
                "name": label,
                "top_counts": [(n, int(c)) for n, c in zip(names, counts, strict=False)]
                if counts is not None
                else [],
                "means": [(n, float(m)) for n, m in zip(names, means[i], strict=False)]
                if means is not None
                else [],
                "auc": _best_text(found, i, names),
                "sdf": ", ".join(s.split("=", 1)[1] for s in sdf if s.startswith(label + "=")),
            }
        )
    return per_label


def _shown_counts(data: FeatureData, label: str, i: int, n_top: int, n_cls: int) -> Any:
    """How many of the top images the page shows fall in each class (the stored counts are over
    all ``exemplars.top_k`` top images, more than a page shows)."""
    top_labels, rows = data.get(exemplars.TOP_LABELS, label=label), data.get(exemplars.TOP_ROWS)
    if top_labels is None or rows is None:
        return None
    shown = top_labels[i][:n_top][rows[i][:n_top] >= 0]
    return np.bincount(shown[(shown >= 0) & (shown < n_cls)], minlength=n_cls)


def _best_text(found: Any, i: int, names: list[str]) -> str:
    """``0.815, fires for vertical`` (or ``against``): latent ``i``'s best class of a label."""
    if found is None:
        return ""
    cls, auc, against = found
    c = int(cls[i])
    name = names[c] if c < len(names) else str(c)
    return f"{float(auc[i]):.3f}, fires {'against' if against[i] else 'for'} {name}"


def _feature_interventions(data: FeatureData, i: int) -> str:
    """Which suppressions of ``intervene`` edited latent ``i`` (its rank among a label's features)."""
    res = intervene.OUT.of(data.results)
    if res is None:
        return "No intervention results in this run (vista analyze analysis=intervene)."
    ks = sorted(int(k) for k in config_of(res, InterveneConfig).ks)
    used = []
    for parts, ranked in intervene.RANKED.each(data.results):
        label = parts["label"]
        hit = np.flatnonzero(ranked == i)
        if hit.size:
            r = int(hit[0]) + 1
            within = [k for k in ks if r <= k]
            where = (
                f"suppressed in its top-{within[0]} and larger sets" if within else "not suppressed"
            )
            used.append(f"{label}: rank {r} of {len(ranked)} ({where})")
    return "; ".join(used) if used else "Not among the features any intervention edited."


def _stability(data: FeatureData, i: int) -> str:
    stab, stable = data.get(stability_.STABILITY), data.get(stability_.STABLE)
    if stab is None or stable is None:
        return "not measured (train other seeds: vista run reseeds=2, or stability.saes=[...])"
    return f"{'stable' if stable[i] else 'not stable'} (matched cosine {stab[i]:.3f})"


def label_context(
    data: FeatureData, label: str, pages: set[int], plots: dict[str, list]
) -> dict[str, Any]:
    """Everything the page of ``label`` shows."""
    sdf_rows = []
    if sdf.OUT.of(data.results) is not None:
        ids = data.get(sdf.RANKING, label=label)
        cls = data.get(sdf.RANKING_CLASS, label=label)
        ids, cls = (
            (np.zeros(0, int), np.zeros(0, int)) if ids is None or cls is None else (ids, cls)
        )
        names = data.class_names(label)
        for row in data.get(sdf.CLASSES, label=label) or []:
            c = names.index(row["class"]) if row["class"] in names else -1
            lo, hi = (row.get("ci") or [float("nan")] * 2)[:2]
            sdf_rows.append(
                {
                    "class": row["class"],
                    "n_sdfs": row["n_sdfs"],
                    "rate": row["mean_alignment_rate"],
                    "lo": lo if lo is not None else float("nan"),
                    "hi": hi if hi is not None else float("nan"),
                    "chance": row["chance"],
                    "lift": row["lift"] if row["lift"] is not None else float("nan"),
                    "first": [
                        int(f) for f, k in zip(ids, cls, strict=True) if k == c and int(f) in pages
                    ][:5],
                }
            )
    classes = []
    for row in data.get(feature_auc.CLASSES, label=label) or []:
        purity = next((v for k, v in row.items() if k.startswith("purity_at_")), float("nan"))
        classes.append({**row, "purity": purity, "page": row["best_latent"] in pages})
    return {
        **_label_interventions(data, label),
        **_label_generation(data, label),
        "name": label,
        "skipped": label_skips(data, label),
        "plots": [p for p in plots.get("labels", []) if p.get("label") == label],
        "sdf": sdf_rows,
        "classes": classes,
        "ablation": data.get(ablation.ROWS, label=label) or [],
        "fidelity": data.get(fidelity.ROWS, label=label) or [],
        "conjunctions": [
            c for c in data.get(conjunction.FEATURES) or [] if label in c["labels"].split("x")
        ],
    }


def label_skips(data: FeatureData, label: str) -> list[tuple[str, str]]:
    """``(analysis, why)`` for each analysis that ran but left ``label`` out, in run order."""
    from vista.analysis.registry import run_order

    return [
        (name, str(data.results[name].skipped[label]))
        for name in run_order(list(data.results))
        if label in data.results[name].skipped
    ]


_COMPONENTS = ("total", "reconstruction_error", "targeted", "interaction", "noise", "random_total",
               "random_targeted", "targeted_vs_random")  # fmt: skip


def _label_interventions(data: FeatureData, label: str) -> dict[str, Any]:
    """The decomposition at the largest k, the erasure comparison and the steering summary."""
    if intervene.OUT.of(data.results) is None:
        return {"decomposition": [], "erasure": [], "steering": []}
    rows = data.get(intervene.DECOMPOSITION, label=label) or []
    kmax = max((r["k"] for r in rows), default=0)
    decomp = sorted(
        (r for r in rows if r["k"] == kmax),
        key=lambda r: (r["reader"], _COMPONENTS.index(r["component"])),
    )
    erasure = [
        {**r, "lo": _plus(r["acc_before"], r["ci"][0]), "hi": _plus(r["acc_before"], r["ci"][1])}
        for r in data.get(intervene.ERASURE, label=label) or []
        if r["role"] == "target" and r.get("alpha", 1.0) == 1.0
    ]
    return {
        "decomposition": decomp,
        "decomposition_k": kmax,
        "erasure": erasure,
        "steering": data.get(intervene.STEERING_SUMMARY, label=label) or [],
    }


def _label_generation(data: FeatureData, label: str) -> dict[str, Any]:
    """What the VLM's captions say about the label under each mode (``generate``), and samples
    when the label was the edited target."""
    if generate.OUT.of(data.results) is None:
        return {"vlm_dcr": [], "vlm_samples": [], "vlm_modes": []}
    target = data.get(generate.TARGET) == label
    samples = (data.get(generate.SAMPLES) or [])[:8] if target else []
    modes = [k for k in (samples[0] if samples else {}) if k not in ("index", "prompt", "original")]
    return {
        "vlm_dcr": [r for r in data.get(generate.DCR) or [] if r["attribute"] == label],
        "vlm_vqa": [r for r in data.get(generate.VQA) or [] if r["attribute"] == label]
        if target
        else [],
        "vlm_target": data.get(generate.TARGET) or "",
        "vlm_samples": samples,
        "vlm_modes": modes,
    }


def _plus(a: float | None, b: float | None) -> float:
    return float("nan") if a is None or b is None else a + b
