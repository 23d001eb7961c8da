"""``feature_auc``: how well each latent alone detects each class (docs/originals.md §5.1), plus saev's
trait-discovery metrics (average precision, Purity@k, Coverage@tau).

The seed fits, for every (latent, class), a balanced one-feature logistic regression on the
training part and reports its AUC. Such a model ranks samples by the latent itself when its
coefficient is positive and reversed when negative, and the coefficient's sign is the sign of the
difference of the class means on the training part (balanced weights make the intercept-only
optimum 1/2, and the log-likelihood is concave). So the same numbers come from ranks alone, for
all latents at once: ``AUC`` if the class mean exceeds the rest's on the training part, ``1 - AUC``
if it is below, 0.5 if equal (a constant latent), and 0.5 where the seed's fit fails (a class
absent from a part).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result
from vista.metrics.alignment import class_sums
from vista.metrics.ranking import auc_one_vs_rest, average_precision_one_vs_rest, purity_at_k
from vista.metrics.uncertainty import mean_ci, percentile_interval
from vista.progress import heartbeat

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class FeatureAUCConfig:
    selective_auc: float = 0.85
    """A latent is selective when the test AUC of its best class (chosen on the training part)
    exceeds this (the seed's threshold)."""
    top_n: int = 10
    """``top_n_auc_test_mean``: mean test AUC of the n latents best on the training part."""
    purity_k: int = 16
    """Purity@k: precision of the k highest-activating test images (saev)."""
    coverage_tau: float = 0.3
    """Coverage@tau: share of classes whose best latent reaches this test AP (saev)."""
    control: bool = True
    """Score a randomly initialised SAE of the same shape the same way (``..._random``), the
    level the headline numbers reach by chance through an untrained dictionary."""


def signed_auc(
    codes_tr: Any, y_tr: np.ndarray, codes: Any, y: np.ndarray, n_classes: int
) -> np.ndarray:
    """``(d_sae, C)`` AUC of the seed's balanced 1-D logistic probe fitted on ``(codes_tr, y_tr)``,
    evaluated on ``(codes, y)``."""
    sums = class_sums(codes_tr, y_tr, n_classes)  # (C, F)
    n_c = np.bincount(y_tr, minlength=n_classes).astype(np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = sums / n_c - (sums.sum(axis=0) - sums) / (len(y_tr) - n_c)
    auc = auc_one_vs_rest(codes, y, n_classes)
    out = np.where(diff.T > 0, auc, np.where(diff.T < 0, 1.0 - auc, 0.5))
    return np.where(np.isfinite(out), out, 0.5)


def best_classes(auc_train: np.ndarray) -> np.ndarray:
    """Each latent's best class, chosen on the training part (its highest training AUC): the
    test AUC of that choice is then an unbiased score (choosing on the test AUCs and reporting
    them, as the seed did, reads above 0.5 on a label independent of the codes)."""
    return auc_train.argmax(axis=1)


def summary(auc_test: np.ndarray, auc_train: np.ndarray, cfg: FeatureAUCConfig) -> dict[str, Any]:
    """The seed's per-SAE summary of the per-latent best classes, each class and the top-n latents
    chosen on the training part and scored on the test part."""
    best = best_classes(auc_train)
    best_test = auc_test[np.arange(len(best)), best]
    best_train = auc_train[np.arange(len(best)), best]
    counts = np.bincount(best, minlength=auc_test.shape[1])
    p = counts / max(counts.sum(), 1)
    top = best_test[np.argsort(-best_train, kind="stable")[: cfg.top_n]]
    return {
        "total_neurons": len(best),
        "digit_coverage": int((counts > 0).sum()),
        "redundancy_score": int(counts.max(initial=0)),
        "fraction_selective": float((best_test > cfg.selective_auc).mean()),
        "mean_best_auc_test": float(best_test.mean()),
        "mean_best_auc_train": float(best_train.mean()),
        "mean_overfitting": float((best_train - best_test).mean()),
        f"top_{cfg.top_n}_auc_test_mean": float(top.mean()) if len(top) else float("nan"),
        "entropy_best_class_assignments": float(-(p * np.log(p + 1e-6)).sum()),
    }


OUT = Outputs("feature_auc")
OUT.scalar(
    "{label}/fraction_selective", "higher", "share of latents with best AUC above selective_auc"
)
OUT.scalar(
    "{label}/mean_best_auc_test", "higher", "mean test AUC of each latent's best training class"
)
for _key in (
    "digit_coverage",
    "redundancy_score",
    "mean_overfitting",
    "entropy_best_class_assignments",
):
    OUT.scalar("{label}/" + _key, "none", "the seed's summary of the same name")
OUT.scalar("{label}/top_{n}_auc_test_mean", "none", "mean best AUC of the top n latents")
OUT.scalar("{label}/map", "higher", "mean average precision of each class's best latent")
OUT.scalar(
    "{label}/coverage_at_tau", "higher", "share of classes whose best latent's AP passes tau"
)
OUT.scalar(
    "{label}/mean_purity_at_k", "higher", "mean purity of each class's best latent's top images"
)
OUT.scalar("{label}/map_chance", "none", "map with the test labels permuted (its chance value)")
OUT.scalar(
    "{label}/coverage_at_tau_chance", "none", "coverage_at_tau with the test labels permuted"
)
OUT.scalar(
    "{label}/mean_purity_at_k_chance", "none", "mean_purity_at_k with the test labels permuted"
)
for _key in ("fraction_selective", "mean_best_auc_test", "digit_coverage", "redundancy_score",
             "mean_overfitting", "entropy_best_class_assignments", "top_{n}_auc_test_mean", "map",
             "coverage_at_tau", "mean_purity_at_k"):  # fmt: skip
    OUT.scalar("{label}/" + _key + "_random", "none", "the same for a random SAE of the same shape")
CLASSES = OUT.table("{label}/classes", "per class: its best latent, AP and purity")
AUC_TEST = OUT.array("{label}/auc_test", "(latents, classes): one-vs-rest test AUC")
OUT.array("{label}/auc_train", "(latents, classes): one-vs-rest training AUC")
OUT.array("{label}/ap_test", "(latents, classes): test average precision")
OUT.array("{label}/best_class", "per latent: the class of its best training AUC")


@register_analysis(
    "feature_auc",
    FeatureAUCConfig,
    "Per latent and class: one-vs-rest AUC (train/test) and AP; selectivity, coverage, Purity@k.",
    needs_labels=1,
    order=70,
    outputs=OUT,
)
def run(ctx: Context, cfg: FeatureAUCConfig) -> Result:
    r = Result("feature_auc")
    for label in ctx.require_labels():
        _score_label(r, ctx, label, ctx.encoded.codes, cfg)
        if cfg.control:
            _score_label(r, ctx, label, ctx.control.codes, cfg, RANDOM)
        r.headline += [f"{label}/fraction_selective", f"{label}/map"]
        if cfg.control:
            r.headline.append(f"{label}/fraction_selective{RANDOM}")
    return r


RANDOM = "_random"
"""The suffix of the random-SAE control's numbers."""


def _score_label(
    r: Result, ctx: Context, label: str, codes: Any, cfg: FeatureAUCConfig, suffix: str = ""
) -> None:
    """The label's numbers for ``codes`` (the SAE's, or with ``suffix`` the control's: its
    scalars only, no direction, no chance values)."""
    s = ctx.settings
    y, n_cls = ctx.labels[label], len(ctx.class_names[label])
    tr, te = ctx.train_test(label)
    auc_tr = signed_auc(codes[tr], y[tr], codes[tr], y[tr], n_cls)
    auc_te = signed_auc(codes[tr], y[tr], codes[te], y[te], n_cls)
    sm = summary(auc_te, auc_tr, cfg)
    sm["test_size"] = len(te)
    best_te = auc_te[np.arange(len(auc_te)), best_classes(auc_tr)]
    rng = ctx.rng("feature_auc", label, *([suffix] if suffix else []))
    direction = "none" if suffix else "higher"
    sel_ci = mean_ci(best_te > cfg.selective_auc, s.n_boot, rng, s.confidence)
    r.add(f"{label}/fraction_selective{suffix}", sm["fraction_selective"], direction, sel_ci,
          len(best_te))  # fmt: skip
    auc_ci = mean_ci(best_te, s.n_boot, rng, s.confidence)
    r.add(f"{label}/mean_best_auc_test{suffix}", sm["mean_best_auc_test"], direction, auc_ci,
          len(best_te))  # fmt: skip
    for key in ("digit_coverage", "redundancy_score", "mean_overfitting",
                "entropy_best_class_assignments", f"top_{cfg.top_n}_auc_test_mean"):  # fmt: skip
        r.add(f"{label}/{key}{suffix}", sm[key], "none", n=len(best_te))
    ap_tr = average_precision_one_vs_rest(codes[tr], y[tr], n_cls)
    ap_te = average_precision_one_vs_rest(codes[te], y[te], n_cls)
    rows = _trait_rows(codes[te], y[te], ap_tr, ap_te, ctx.class_names[label], cfg)
    aps = np.array([row["test_ap"] for row in rows if np.isfinite(row["test_ap"])])
    cis: dict[str, tuple[float, float] | None] = {}
    if not suffix:  # the control's numbers are a reference level, not scores: no interval
        trait_rng = ctx.rng("feature_auc", label, "traits")
        cis.update(trait_ci(codes[te], y[te], rows, n_cls, cfg, s.n_boot, trait_rng, s.confidence))
    r.add(f"{label}/map{suffix}", float(aps.mean()) if aps.size else float("nan"), direction,
          cis.get("map"), len(te))  # fmt: skip
    cov = float((aps >= cfg.coverage_tau).mean()) if aps.size else float("nan")
    r.add(f"{label}/coverage_at_tau{suffix}", cov, direction, cis.get("coverage_at_tau"), len(te))
    pur = [row[f"purity_at_{cfg.purity_k}"] for row in rows]
    r.add(f"{label}/mean_purity_at_k{suffix}", float(np.nanmean(pur)), direction,
          cis.get("mean_purity_at_k"), len(te))  # fmt: skip
    if suffix:
        return
    null_rng = ctx.rng("feature_auc", label, "chance")
    for key, value in trait_chance(codes[te], y[te], rows, n_cls, cfg, s.n_perm, null_rng).items():
        r.add(f"{label}/{key}", value, "none", n=len(rows))
    r.tables[f"{label}/classes"] = rows
    r.arrays[f"{label}/auc_test"] = auc_te.astype(np.float32)
    r.arrays[f"{label}/auc_train"] = auc_tr.astype(np.float32)
    r.arrays[f"{label}/ap_test"] = ap_te.astype(np.float32)
    r.arrays[f"{label}/best_class"] = best_classes(auc_tr).astype(np.int32)
    r.metadata[f"{label}/summary"] = sm
    r.files["regression_results.json#" + label] = {"sae_summary": sm}


def _trait_values(
    dense: np.ndarray, y: np.ndarray, classes: list[int], n_classes: int, cfg: FeatureAUCConfig
) -> tuple[float, float, float]:
    """``map``, ``coverage_at_tau`` and ``mean_purity_at_k`` of the latents ``dense[:, i]``
    chosen for ``classes[i]``, on the images ``(dense, y)``."""
    ap = average_precision_one_vs_rest(dense, y, n_classes)[np.arange(len(classes)), classes]
    ok = ap[np.isfinite(ap)]
    pur = [purity_at_k(dense[:, i], y, c, cfg.purity_k) for i, c in enumerate(classes)]
    return (
        float(ok.mean()) if ok.size else float("nan"),
        float((ok >= cfg.coverage_tau).mean()) if ok.size else float("nan"),
        float(np.nanmean(pur)),
    )


def _chosen(codes_te: Any, rows: list[dict[str, Any]]) -> tuple[np.ndarray, list[int]]:
    """Each class's latent (chosen on the training part) as dense test columns, and the classes."""
    cols = np.array([row["best_latent"] for row in rows])
    x = codes_te[:, cols]
    dense = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    return dense, [int(row["class_index"]) for row in rows]


TRAIT_BOOT = 500
"""At most this many bootstrap replicates behind the trait metrics' intervals (each recomputes
every class's AP and purity)."""


def trait_ci(
    codes_te: Any,
    y_te: np.ndarray,
    rows: list[dict[str, Any]],
    n_classes: int,
    cfg: FeatureAUCConfig,
    n_boot: int,
    rng: np.random.Generator,
    confidence: float,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of ``map``, ``coverage_at_tau`` and ``mean_purity_at_k`` over
    resamples of the test images, each class keeping its latent (chosen on the training part)."""
    draws = min(max(n_boot, 0), TRAIT_BOOT)
    if not rows or draws == 0:
        return {}
    dense, classes = _chosen(codes_te, rows)
    reps = []
    for b in range(draws):
        heartbeat("feature_auc trait intervals", b, draws)
        i = rng.integers(0, len(y_te), len(y_te))
        reps.append(_trait_values(dense[i], y_te[i], classes, n_classes, cfg))
    arr = np.array(reps)
    names = ("map", "coverage_at_tau", "mean_purity_at_k")
    return {n: percentile_interval(arr[:, j], confidence) for j, n in enumerate(names)}


NULL_DRAWS = 200
"""Label permutations behind the trait metrics' chance values (fewer where ``n_perm`` is lower)."""


def trait_chance(
    codes_te: Any,
    y_te: np.ndarray,
    rows: list[dict[str, Any]],
    n_classes: int,
    cfg: FeatureAUCConfig,
    n_perm: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """The chance values of ``map``, ``coverage_at_tau`` and ``mean_purity_at_k``: their means
    over permutations of the test labels, with each class's latent kept (chosen on the training
    part, so the permutation breaks only the test association). A random score's AP is about the
    class prevalence, so ``map`` alone says little where classes are common."""
    draws = min(max(n_perm, 0), NULL_DRAWS)
    if not rows or draws == 0:
        return {}
    dense, classes = _chosen(codes_te, rows)
    null = np.array([_trait_values(dense, rng.permutation(y_te), classes, n_classes, cfg)
                     for _ in range(draws)])  # fmt: skip
    return {
        "map_chance": float(np.nanmean(null[:, 0])),
        "coverage_at_tau_chance": float(np.nanmean(null[:, 1])),
        "mean_purity_at_k_chance": float(np.nanmean(null[:, 2])),
    }


def _trait_rows(
    codes_te: Any,
    y_te: np.ndarray,
    ap_tr: np.ndarray,
    ap_te: np.ndarray,
    names: list[str],
    cfg: FeatureAUCConfig,
) -> list[dict[str, Any]]:
    """Per class: the latent with the best training AP, its test AP and Purity@k (saev)."""
    rows = []
    for c, name in enumerate(names):
        col = ap_tr[:, c]
        if not np.isfinite(col).any():
            continue
        j = int(np.nanargmax(col))
        scores = (
            np.asarray(codes_te[:, j].toarray()).ravel()
            if hasattr(codes_te, "toarray")
            else codes_te[:, j]
        )
        rows.append(
            {
                "class": name,
                "class_index": c,
                "best_latent": j,
                "train_ap": float(col[j]),
                "test_ap": float(ap_te[j, c]),
                f"purity_at_{cfg.purity_k}": purity_at_k(scores, y_te, c, cfg.purity_k),
            }
        )
    return rows
