"""The template contexts of a feature page and a label page (plain dicts and lists)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vista.reports.features import FeatureData


def _images(
    data: FeatureData, rows: np.ndarray, vals: np.ndarray, thumbs: Any, size: int
) -> list[dict]:
    """Thumbnails (or their absence) of split rows ``rows`` with activations ``vals``."""
    oi = data.results["exemplars"].arrays["original_indices"]
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
    ex = data.results["exemplars"]
    a = ex.arrays
    size = cfg.thumb_size
    top = _images(
        data, a["top_rows"][i][: cfg.top_images], a["top_values"][i][: cfg.top_images], thumbs, size
    )
    first = data.labels[0] if data.labels else ""
    if first and f"{first}/top_labels" in a:
        names = data.class_names(first)
        for t, c in zip(top, a[f"{first}/top_labels"][i].tolist(), strict=False):
            t["label"] = names[c] if 0 <= c < len(names) else ""
    quants = ex.config.get("quantiles", [])
    qrows, qvals = a["quantile_rows"][i], a["quantile_values"][i]
    quantiles = [
        {
            "name": f"{q:g}",
            "images": _images(
                data, qrows[3 * k : 3 * k + 3], qvals[3 * k : 3 * k + 3], thumbs, size
            ),
        }
        for k, q in enumerate(quants)
    ]
    freq = data.get("health", "firing_frequency")
    best, where = data.best_auc()
    sdf = data.sdf_membership().get(i, [])
    per_label = _per_label(data, i, sdf)
    conj = data.results.get("conjunction")
    return {
        "id": i,
        "freq": f"{freq[i]:.3%}" if freq is not None else "an unknown share",
        "best": f"best AUC {best[i]:.3f} ({where[i]})" if best is not None else "no labels",
        "stability": _stability(data, i),
        "top": top,
        "maps": maps,
        "quantiles": quantiles,
        "hist": a["histogram"][i].tolist(),
        "hist_max": float(a["histogram_max"][i]),
        "per_label": per_label,
        "neighbours": [
            {"id": int(n), "cos": float(c), "page": int(n) in pages}
            for n, c in zip(a["neighbours"][i], a["neighbour_cosine"][i], strict=True)
        ],
        "conjunctions": [
            c
            for c in (conj.tables.get("conjunction_features", []) if conj else [])
            if c["feature"] == i
        ],
        "interventions": _feature_interventions(data, i),
    }


def _per_label(data: FeatureData, i: int, sdf: list[str]) -> list[dict[str, Any]]:
    """Per label: latent ``i``'s top-image class counts, class means, best AUC and SDF classes."""
    a = data.results["exemplars"].arrays
    per_label = []
    for label in data.labels:
        names = data.class_names(label)
        counts = a.get(f"{label}/top_label_counts")
        means = a.get(f"{label}/class_mean")
        auc = data.get("feature_auc", f"{label}/auc_test")
        per_label.append(
            {
                "name": label,
                "top_counts": [(n, int(c)) for n, c in zip(names, counts[i], strict=False)]
                if counts is not None
                else [],
                "means": [(n, float(m)) for n, m in zip(names, means[i], strict=False)]
                if means is not None
                else [],
                "auc": f"{auc[i].max():.3f} for {names[int(auc[i].argmax())]}"
                if auc is not None
                else "",
                "sdf": ", ".join(s.split("=", 1)[1] for s in sdf if s.startswith(label + "=")),
            }
        )
    return per_label


def _feature_interventions(data: FeatureData, i: int) -> str:
    """Which suppressions of ``intervene`` edited latent ``i`` (its rank among a label's features)."""
    res = data.results.get("intervene")
    if res is None:
        return "No intervention results in this run (vista analyze analysis=intervene)."
    ks = sorted(int(k) for k in res.config.get("ks", []))
    used = []
    for key, ranked in res.arrays.items():
        if not key.endswith("/ranked_features"):
            continue
        label = key.rsplit("/", 1)[0]
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
    stab, stable = data.get("stability", "stability"), data.get("stability", "stable")
    if stab is None or stable is None:
        return "not measured (train other seeds: vista run reseeds=2, or stability.saes=[...])"
    return f"{'stable' if stable[i] else 'not stable'} (matched cosine {stab[i]:.3f})"


def label_context(
    data: FeatureData, label: str, pages: set[int], plots: dict[str, list]
) -> dict[str, Any]:
    """Everything the page of ``label`` shows."""
    sdf_res = data.results.get("sdf")
    sdf_rows = []
    if sdf_res is not None:
        ids = sdf_res.arrays.get(f"{label}/ranking", np.zeros(0, int))
        cls = sdf_res.arrays.get(f"{label}/ranking_class", np.zeros(0, int))
        names = data.class_names(label)
        for row in sdf_res.tables.get(f"{label}/classes", []):
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
    auc = data.results.get("feature_auc")
    classes = []
    for row in auc.tables.get(f"{label}/classes", []) if auc else []:
        purity = next((v for k, v in row.items() if k.startswith("purity_at_")), float("nan"))
        classes.append({**row, "purity": purity, "page": row["best_latent"] in pages})
    abl = data.results.get("ablation")
    fid = data.results.get("fidelity")
    conj = data.results.get("conjunction")
    return {
        **_label_interventions(data, label),
        **_label_generation(data, label),
        "name": label,
        "plots": [p for p in plots.get("labels", []) if p.get("label") == label],
        "sdf": sdf_rows,
        "classes": classes,
        "ablation": abl.tables.get(label, []) if abl else [],
        "fidelity": fid.tables.get(label, []) if fid else [],
        "conjunctions": [
            c
            for c in (conj.tables.get("conjunction_features", []) if conj else [])
            if label in c["labels"].split("x")
        ],
    }


_COMPONENTS = ("total", "reconstruction_error", "targeted", "interaction", "noise", "random_total",
               "random_targeted", "targeted_vs_random")  # fmt: skip


def _label_interventions(data: FeatureData, label: str) -> dict[str, Any]:
    """The decomposition at the largest k, the erasure comparison and the steering summary."""
    res = data.results.get("intervene")
    if res is None:
        return {"decomposition": [], "erasure": [], "steering": []}
    rows = res.tables.get(f"{label}/decomposition", [])
    kmax = max((r["k"] for r in rows), default=0)
    decomp = sorted(
        (r for r in rows if r["k"] == kmax),
        key=lambda r: (r["reader"], _COMPONENTS.index(r["component"])),
    )
    erasure = [
        {**r, "lo": _plus(r["acc_before"], r["ci"][0]), "hi": _plus(r["acc_before"], r["ci"][1])}
        for r in res.tables.get(f"{label}/erasure", [])
        if r["role"] == "target" and r.get("alpha", 1.0) == 1.0
    ]
    return {
        "decomposition": decomp,
        "decomposition_k": kmax,
        "erasure": erasure,
        "steering": res.tables.get(f"{label}/steering_summary", []),
    }


def _label_generation(data: FeatureData, label: str) -> dict[str, Any]:
    """What the VLM's captions say about the label under each mode (``generate``), and samples
    when the label was the edited target."""
    res = data.results.get("generate")
    if res is None:
        return {"vlm_dcr": [], "vlm_samples": [], "vlm_modes": []}
    target = res.metadata.get("target") == label
    samples = res.tables.get("samples", [])[:8] if target else []
    modes = [k for k in (samples[0] if samples else {}) if k not in ("index", "prompt", "original")]
    return {
        "vlm_dcr": [r for r in res.tables.get("dcr", []) if r["attribute"] == label],
        "vlm_vqa": [r for r in res.tables.get("vqa", []) if r["attribute"] == label]
        if target
        else [],
        "vlm_target": res.metadata.get("target", ""),
        "vlm_samples": samples,
        "vlm_modes": modes,
    }


def _plus(a: float | None, b: float | None) -> float:
    return float("nan") if a is None or b is None else a + b
