"""``intersectional``: features of intersections of attributes (docs/originals.md §4.4), and conjunction features.

- Composite subgroups: every combination of the labels with at least ``min_subgroup_size`` images
  (named ``20-29_Female_Black``); smaller ones are excluded.
- One split for the whole analysis (``sdf.held_out``, the default): the images of the subgroups,
  stratified by subgroup, into a selecting part and a scoring part (``eval.test_size``). Every
  set is chosen on the selecting part, by one rule; every test runs on the other images.
- Intersectional SDFs: the SDF filter on the composite labels; ``novel`` = those that are no
  single attribute's SDF (chosen on the same images).
- ANOVA (type II, full factorial) of each candidate's activation on the labels, on the images
  that did not select it: it is
  ``intersectional`` when an interaction term has a Bonferroni p < ``alpha`` and partial eta^2 >
  ``min_eta_sq``, else ``main_effect_only``. All candidates in one batched fit (metrics/anova).
- MI decomposition: binned MI with each label, each pair and the composite; synergy = MI(all) -
  max MI(single).
- Conjunction features, latents that fire for one cell of a pair of labels but for neither
  attribute alone, are their own analysis (``conjunction``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result, Skip
from vista.analysis.sdf import SDFConfig, find_sdfs
from vista.metrics.anova import factorial_anova
from vista.metrics.information import binned_mutual_information, combine_labels
from vista.metrics.sdf import alignment_hits, column_major
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class IntersectionalConfig:
    labels: list[str] = field(default_factory=list)
    """Labels to intersect (empty = every usable label)."""
    min_subgroup_size: int = 30
    """Composite subgroups need at least this many images."""
    sdf: SDFConfig = field(default_factory=SDFConfig)
    anova: bool = True
    alpha: float = 0.05
    min_eta_sq: float = 0.01
    mi: bool = True
    n_bins: int = 20


def composite(
    ctx: Context, names: list[str], min_size: int
) -> tuple[np.ndarray, dict[int, dict[str, str]]]:
    """Subgroup id per image (-1 = excluded) in order of first appearance, and each subgroup's
    class per label."""
    ys = [ctx.labels[n] for n in names]
    joint = combine_labels(*ys)
    ids = np.full(len(joint), -1)
    mapping: dict[int, dict[str, str]] = {}
    valid, first = np.unique(joint[joint >= 0], return_index=True)
    counts = np.bincount(np.searchsorted(valid, joint[joint >= 0]), minlength=len(valid))
    pos = np.flatnonzero(joint >= 0)
    for v in valid[np.argsort(first)]:
        if counts[np.searchsorted(valid, v)] < min_size:
            continue
        new = len(mapping)
        ids[joint == v] = new
        i = pos[first[np.searchsorted(valid, v)]]
        mapping[new] = {n: ctx.class_names[n][y[i]] for n, y in zip(names, ys, strict=True)}
    return ids, mapping


def held_out_parts(
    ctx: Context, ids: np.ndarray, cfg: IntersectionalConfig
) -> tuple[np.ndarray, np.ndarray]:
    """One split for the whole analysis: the images of the composite subgroups, stratified by
    subgroup into a part that selects (every SDF set, and the ANOVA and MI candidates) and a part
    that scores them (alignment rates, ANOVA, MI). With ``sdf.held_out=false``, the seed's rule:
    every image does both."""
    from vista.analysis.probing import split_indices

    keep = np.flatnonzero(ids >= 0)
    if not cfg.sdf.held_out:
        return keep, keep
    tr, te, _ = split_indices(ids[keep], ctx.settings.test_size, ctx.settings.split_seed)
    return keep[tr], keep[te]


def subgroup_sdfs(
    ctx: Context,
    ids: np.ndarray,
    n_groups: int,
    cfg: IntersectionalConfig,
    parts: tuple[np.ndarray, np.ndarray],
) -> tuple[dict[int, np.ndarray], dict[str, Any]]:
    """SDFs of the composite subgroups, chosen on the selecting part, and their alignment rates
    on the scoring part."""
    codes = ctx.encoded.codes
    select, score = parts
    found = find_sdfs(codes[select], ids[select], n_groups, cfg.sdf)
    sdfs = {c: v["features"] for c, v in found.items()}
    align = {}
    for c, feats in sdfs.items():
        hits = alignment_hits(codes[score], feats, ids[score], c, cfg.sdf.k_top)
        rates = hits.mean(axis=1) if len(feats) else np.zeros(0)
        align[str(c)] = {
            "feature_indices": feats.tolist(),
            "alignment_rates": rates.tolist(),
            "mean_alignment_rate": float(rates.mean()) if len(rates) else float("nan"),
        }
    return sdfs, align


def single_attribute_sdfs(
    ctx: Context, names: list[str], cfg: IntersectionalConfig, select: np.ndarray
) -> set[int]:
    """Each label's SDFs, chosen on the same images as the subgroups' (``novel`` compares two
    sets chosen by one rule)."""
    codes, out = ctx.encoded.codes, set()
    for n in names:
        found = find_sdfs(codes[select], ctx.labels[n][select], len(ctx.class_names[n]), cfg.sdf)
        for v in found.values():
            out.update(v["features"].tolist())
    return out


OUT = Outputs("intersectional")
for _key in ("n_subgroups", "n_excluded_images", "n_intersectional_features",
             "n_single_attribute_features", "n_novel_intersectional", "anova_n_tested",
             "anova_n_intersectional", "anova_fraction_intersectional", "max_synergy",
             "mean_synergy", "n_synergistic_gt_001"):  # fmt: skip
    OUT.scalar(_key, "none")
OUT.table("subgroups", "the subgroups and their image counts")
OUT.array("novel_features", "latents selective for a subgroup and for no single attribute")
FEATURES = OUT.array("intersectional_features", "latents selective for a subgroup")
OUT.array("anova_p_corrected", "(latents, terms): corrected p-values of the interaction terms")
ETA = OUT.array("anova_partial_eta_sq", "(latents, terms): partial eta-squared")
TERMS = OUT.meta("anova_terms", "the ANOVA's interaction terms, in column order")
OUT.meta("n_selecting", "images that chose the SDF sets and the candidates")
OUT.meta("n_scoring", "subgroup images that scored the alignment rates (held out from selecting)")
OUT.meta("n_tested", "images of the ANOVA and MI tests (every labelled image not selecting)")
OUT.array("mi/{term}", "per latent: mutual information with the attribute or their product")
OUT.array("synergy", "per latent: MI of the product minus the attributes' MIs")


@register_analysis(
    "intersectional",
    IntersectionalConfig,
    "Intersections of labels: subgroup SDFs, novel features, ANOVA interactions, MI synergy.",
    needs_labels=2,
    order=90,
    outputs=OUT,
)
def run(ctx: Context, cfg: IntersectionalConfig) -> Result:
    names = ctx.pick_labels(cfg.labels, 2)
    r = Result("intersectional")
    ids, mapping = composite(ctx, names, cfg.min_subgroup_size)
    if len(mapping) < 2:
        raise Skip(
            f"fewer than two subgroups of {' x '.join(names)} have {cfg.min_subgroup_size} images; "
            "lower intersectional.min_subgroup_size or analyse a larger split"
        )
    r.add("n_subgroups", len(mapping), "none")
    r.add("n_excluded_images", int((ids < 0).sum()), "none")
    readable = {k: "_".join(v.values()) for k, v in mapping.items()}
    r.tables["subgroups"] = [
        {"id": k, "name": readable[k], **mapping[k], "n": int((ids == k).sum())} for k in mapping
    ]
    select, score = held_out_parts(ctx, ids, cfg)
    int_sdfs, align = subgroup_sdfs(ctx, ids, len(mapping), cfg, (select, score))
    int_union = np.unique(np.concatenate(list(int_sdfs.values()) or [np.zeros(0, int)]))
    single = single_attribute_sdfs(ctx, names, cfg, select)
    novel = np.array(sorted(set(int_union.tolist()) - single), dtype=np.int64)
    r.add("n_intersectional_features", len(int_union), "none")
    r.add("n_single_attribute_features", len(single), "none")
    r.add("n_novel_intersectional", len(novel), "none")
    r.arrays["novel_features"] = novel
    r.arrays["intersectional_features"] = int_union.astype(np.int64)
    doc: dict[str, Any] = {
        "intersectional_sdfs": {str(c): f.tolist() for c, f in int_sdfs.items()},
        "intersectional_alignment": align,
        "class_mapping": {str(k): v for k, v in mapping.items()},
        "class_names": {str(k): v for k, v in readable.items()},
        "comparison": {
            "n_intersectional_features": len(int_union),
            "n_single_attribute_features": len(single),
            "n_novel_intersectional": len(novel),
            "novel_feature_indices": novel.tolist(),
        },
        "params": {**asdict(cfg), "labels": names},
    }
    tested = _tested(ctx, names, select, cfg)
    r.metadata.update(n_selecting=len(select), n_scoring=len(score), n_tested=len(tested))
    if len(int_union):
        doc.update(_tests(r, ctx, names, tested, int_union, cfg))
    r.headline = [
        h
        for h in ("n_novel_intersectional", "anova_fraction_intersectional", "mean_synergy")
        if h in r.scalars
    ]
    r.files["intersectional_results.json"] = doc
    r.files["sdfs_intersectional.npz"] = {str(c): f for c, f in int_sdfs.items()}
    return r


def _tested(
    ctx: Context, names: list[str], select: np.ndarray, cfg: IntersectionalConfig
) -> np.ndarray:
    """The images that test the candidates: every image carrying all the labels that did not
    select them (those of subgroups too small to select from included)."""
    every = np.flatnonzero(np.all([ctx.labels[n] >= 0 for n in names], axis=0))
    return np.setdiff1d(every, select) if cfg.sdf.held_out else every


def _tests(
    r: Result,
    ctx: Context,
    names: list[str],
    tested: np.ndarray,
    feats: np.ndarray,
    cfg: IntersectionalConfig,
) -> dict[str, Any]:
    """The ANOVA and the MI decomposition of the candidates ``feats`` on the images ``tested``."""
    values = column_major(ctx.encoded.codes[tested])[:, feats]  # stays sparse if sparse
    factors = {n: ctx.labels[n][tested] for n in names}
    doc: dict[str, Any] = {}
    if cfg.anova:
        doc.update(_anova(r, values, factors, feats, cfg))
    if cfg.mi:
        doc.update(_mutual_information(r, values, factors, feats, cfg, ctx))
    return doc


def _anova(
    r: Result,
    values: Any,
    factors: dict[str, np.ndarray],
    feats: np.ndarray,
    cfg: IntersectionalConfig,
) -> dict[str, Any]:
    terms, _, df_resid = factorial_anova(values, factors)
    inter = [t for t in terms if ":" in t.name]
    p_corr = np.minimum(np.stack([t.p for t in inter]) * len(feats), 1.0)  # (terms, F)
    eta = np.stack([t.partial_eta_sq for t in inter])
    hit = ((p_corr < cfg.alpha) & (eta > cfg.min_eta_sq)).any(axis=0)
    r.add("anova_n_tested", len(feats), "none")
    r.add("anova_n_intersectional", int(hit.sum()), "none")
    r.add("anova_fraction_intersectional", float(hit.mean()), "none", n=len(feats))
    r.arrays["anova_p_corrected"] = p_corr.astype(np.float32)
    r.arrays["anova_partial_eta_sq"] = eta.astype(np.float32)
    r.metadata["anova_terms"] = [t.name for t in inter]
    rows = {
        str(int(f)): {
            "classification": "intersectional" if h else "main_effect_only",
            **{
                t.name: {"p_corrected": float(p_corr[i, j]), "partial_eta_sq": float(eta[i, j])}
                for i, t in enumerate(inter)
            },
        }
        for j, (f, h) in enumerate(zip(feats, hit, strict=True))
    }
    summary = {
        "n_tested": len(feats),
        "n_intersectional": int(hit.sum()),
        "n_main_effect_only": int((~hit).sum()),
        "df_resid": df_resid,
    }
    return {"anova_interaction": rows, "anova_summary": summary}


def _mutual_information(
    r: Result,
    values: Any,
    labels: dict[str, np.ndarray],
    feats: np.ndarray,
    cfg: IntersectionalConfig,
    ctx: Context,
) -> dict[str, Any]:
    names = list(labels)
    sets = {n: labels[n] for n in names}
    for a, b in combinations(names, 2):
        sets[f"{a}x{b}"] = combine_labels(labels[a], labels[b])
    sets["all"] = combine_labels(*labels.values())
    mi = {k: binned_mutual_information(values, y, cfg.n_bins) for k, y in sets.items()}
    synergy = mi["all"] - np.max([mi[n] for n in names], axis=0)
    s = ctx.settings
    ci = mean_ci(synergy, s.n_boot, ctx.rng("intersectional", "synergy"), s.confidence)
    r.add("mean_synergy", float(synergy.mean()), "none", ci, len(feats))
    r.add("max_synergy", float(synergy.max()), "none", n=len(feats))
    r.add("n_synergistic_gt_001", int((synergy > 0.01).sum()), "none", n=len(feats))
    for k, v in mi.items():
        r.arrays[f"mi/{k}"] = v.astype(np.float32)
    r.arrays["synergy"] = synergy.astype(np.float32)
    per = {
        str(int(f)): {**{k: float(v[j]) for k, v in mi.items()}, "synergy": float(synergy[j])}
        for j, f in enumerate(feats)
    }
    summary = {
        "n_features": len(feats),
        "mean_synergy": float(synergy.mean()),
        "max_synergy": float(synergy.max()),
        "n_synergistic_gt_001": int((synergy > 0.01).sum()),
    }
    return {"mi_decomposition": per, "mi_summary": summary}
