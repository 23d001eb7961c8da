"""Feature-concept alignment of pooled SAE codes (VISTA's ``feature_demographic_alignment``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vista.metrics.alignment import class_means, inter_class_variance, selectivity


def feature_alignment(
    codes: np.ndarray, labels: np.ndarray, class_names: list[str], top_n: int = 20
) -> dict[str, Any]:
    """Which latents separate the classes of one label, and how selective they are."""
    n_classes = max(len(class_names), int(labels.max(initial=-1)) + 1)
    means = class_means(codes, labels, n_classes)
    present = ~np.isnan(means).any(axis=1)
    var = inter_class_variance(means[present])
    order = np.argsort(-var, kind="stable")[:top_n]
    sel = selectivity(means[present])
    finite = sel[np.isfinite(sel)]
    name = [class_names[i] if i < len(class_names) else str(i) for i in range(n_classes)]
    return {
        "top_variant_features": order.tolist(),
        "top_variant_scores": var[order].tolist(),
        "selectivity_mean": float(finite.mean()) if finite.size else float("nan"),
        "selectivity_max": float(finite.max()) if finite.size else float("nan"),
        "selectivity_definition": "(mu_top - mu_rest) / (mu_top + mu_rest) over |class means|, in [0, 1]",
        "n_scored_features": int(finite.size),
        "mean_per_class_top_features": {
            name[c]: means[c, order].tolist() for c in range(n_classes) if present[c]
        },
    }
