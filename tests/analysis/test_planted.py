"""Analyses against independent references and on planted data where the answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.analysis.planted import identity_sae, planted_store
from tests.conftest import write_vista_store
from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.registry import ANALYSES
from vista.analysis.runner import run_analyses
from vista.saes import make_sae
from vista.saes.io import save_sae

S = AnalysisSettings(n_boot=200, n_perm=200)


def _run(ctx: Context, name: str, out: Path, **cfg: object):
    return run_analyses(ctx, [name], {name: ANALYSES[name].config(**cfg)}, out).results[name]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Context:
    return Context(identity_sae(16), planted_store(tmp_path_factory.mktemp("p") / "s.h5"), S)


def test_feature_auc_equals_the_seeds_balanced_logistic_auc(ctx: Context, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    r = _run(ctx, "feature_auc", tmp_path)
    codes, y = ctx.encoded.dense_codes(), ctx.labels["a"]
    tr, te = ctx.train_test("a")
    for j in range(8):  # the seed's per-feature loop (docs/originals.md §5.1) on a slice
        sc = StandardScaler().fit(codes[tr, j : j + 1])
        for c in range(3):
            clf = LogisticRegression(class_weight="balanced", max_iter=1000)
            clf.fit(sc.transform(codes[tr, j : j + 1]), y[tr] == c)
            p_te = clf.predict_proba(sc.transform(codes[te, j : j + 1]))[:, 1]
            p_tr = clf.predict_proba(sc.transform(codes[tr, j : j + 1]))[:, 1]
            assert r.arrays["a/auc_test"][j, c] == pytest.approx(
                roc_auc_score(y[te] == c, p_te), abs=1e-6
            )
            assert r.arrays["a/auc_train"][j, c] == pytest.approx(
                roc_auc_score(y[tr] == c, p_tr), abs=1e-6
            )
    assert r.arrays["a/best_class"][1] == 2 and r.arrays["a/auc_test"][1, 2] == pytest.approx(1.0)


def test_sdf_puts_the_planted_latent_first_with_full_alignment(
    ctx: Context, tmp_path: Path
) -> None:
    r = _run(ctx, "sdf", tmp_path)
    rows = {row["class"]: row for row in r.tables["a/classes"]}
    assert rows["a2"]["n_sdfs"] >= 1
    doc = r.files  # original files are moved out by the runner; read them back instead
    import json

    legacy = json.loads((tmp_path / "sdf_results.json").read_text())["a"]
    assert legacy["sdfs"]["2"][0] == 1 and legacy["alignment"]["2"]["alignment_rates"][0] == 1.0
    assert r.arrays["a/ranking"][0] == 1 and "sdfs_a.npz" in doc


def test_ablation_finds_the_necessary_latent_and_random_latents_cost_nothing(
    ctx: Context, tmp_path: Path
) -> None:
    r = _run(ctx, "ablation", tmp_path, ks=[2])
    drop, rand = r.scalars["a/k2/necessity_drop"], r.scalars["a/k2/random_drop"]
    assert drop.value > 0.25 and drop.low > 0.2  # a=2 (latent 1) and a=1&b=1 (latent 0) gone
    assert abs(rand.value) < 0.05
    table = r.tables["a"][0]
    assert table["necessity_drop_vs_random_p"] < 0.01
    assert table["acc_only_top_k"] > table["random_acc_only_k"] + 0.2


def test_conjunction_finds_the_planted_latent_and_only_it(ctx: Context, tmp_path: Path) -> None:
    conj = _run(ctx, "conjunction", tmp_path).tables["conjunction_features"]
    assert conj[0]["feature"] == 0 and conj[0]["cell"] == "a1_b1" and conj[0]["gap"] > 0.9
    assert {row["feature"] for row in conj} == {0}  # latents 1 and 2 are single-attribute


def test_intersectional_flags_the_interaction_of_the_planted_latent(
    ctx: Context, tmp_path: Path
) -> None:
    r = _run(ctx, "intersectional", tmp_path)
    feats = list(r.arrays["intersectional_features"])
    p = r.arrays["anova_p_corrected"][:, feats.index(0)]
    assert p.min() < 1e-6  # latent 0's a:b interaction
    syn = r.arrays["synergy"]
    assert feats[int(np.argmax(syn))] == 0
    assert r.scalars["n_subgroups"].value == 6


def test_fidelity_names_the_group_the_sae_fails(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, d = 1200, 12
    g = rng.integers(0, 2, n)
    x = np.zeros((n, d), dtype=np.float32)
    for i in range(n):  # group 1: six active coordinates; group 0: two
        on = rng.choice(d, 6 if g[i] else 2, replace=False)
        x[i, on] = 1 + rng.random(len(on))
    store = write_vista_store(
        tmp_path / "f.h5", {"validation": x}, {"validation": {"g": g}}, {"g": ["few", "many"]}
    )
    ctx = Context(identity_sae(d, k=2), store, S)  # keeps two coordinates: exact for group 0
    r = _run(ctx, "fidelity", tmp_path)
    rows = {row["group"]: row for row in r.tables["g"]}
    assert rows["few"]["nmse"] == pytest.approx(0.0, abs=1e-6)
    assert r.metadata["g/worst_group"] == "many" and r.scalars["g/nmse_spread_p_value"].value < 0.01
    spread, best = r.scalars["g/nmse_spread"], r.scalars["g/best_group_nmse"]
    assert spread.low <= spread.value <= spread.high and spread.low > 0  # groups resampled apart
    assert best.value == pytest.approx(0.0, abs=1e-6) and best.n == rows["few"]["n"]
    with torch.no_grad():  # the group's own FVU by hand
        xs = torch.from_numpy(np.asarray(ctx.encoded.pooled_raw, dtype=np.float32))
        xh = identity_sae(d, k=2).decode(identity_sae(d, k=2).encode(xs)).double().numpy()
    m = g == 1
    xm = xs.double().numpy()[m]
    assert rows["many"]["fvu"] == pytest.approx(
        ((xm - xh[m]) ** 2).sum() / ((xm - xm.mean(0)) ** 2).sum(), rel=1e-5
    )
    assert rows["many"]["fvu_ci"][0] <= rows["many"]["fvu"] <= rows["many"]["fvu_ci"][1]


def test_a_random_sae_on_unrelated_labels_scores_at_chance(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    y = rng.integers(0, 4, 3000)  # independent of x
    store = write_vista_store(tmp_path / "c.h5", {"validation": x}, {"validation": {"y": y}})
    sae = make_sae({"architecture": "topk", "d_model": 16, "d_sae": 64, "k": 8, "seed": 1})
    ctx = Context(sae, store, S)
    probes = _run(ctx, "probes", tmp_path).scalars["y/sae_accuracy"]
    assert probes.low < 0.25 + 0.02 and probes.high > 0.25 - 0.05
    auc = _run(ctx, "feature_auc", tmp_path).scalars["y/fraction_selective"]
    assert auc.value == 0.0
    sdf = _run(ctx, "sdf", tmp_path)
    rate = sdf.scalars["y/mean_alignment_rate"]
    assert rate.low <= sdf.scalars["y/mean_chance_rate"].value + 0.02
    drop = _run(ctx, "ablation", tmp_path, ks=[4]).scalars["y/k4/necessity_drop"]
    assert drop.low < 0.0 < drop.high + 0.01


def test_stability_is_one_for_a_permuted_copy_and_null_level_for_a_stranger(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "s.h5")
    sae = make_sae({"architecture": "topk", "d_model": 16, "d_sae": 48, "k": 4, "seed": 0})
    twin = make_sae({"architecture": "topk", "d_model": 16, "d_sae": 48, "k": 4, "seed": 0})
    with torch.no_grad():
        twin.W_dec.copy_(sae.W_dec[torch.randperm(48, generator=torch.Generator().manual_seed(0))])
    stranger = make_sae({"architecture": "topk", "d_model": 16, "d_sae": 48, "k": 4, "seed": 9})
    save_sae(twin, tmp_path / "twin")
    save_sae(stranger, tmp_path / "stranger")
    ctx = Context(sae, store, S)
    same = _run(ctx, "stability", tmp_path / "a", saes=[str(tmp_path / "twin")], null="isotropic")
    assert same.scalars["mean_stability"].value == pytest.approx(1.0)
    assert same.scalars["fraction_stable"].value == 1.0
    other = _run(
        ctx, "stability", tmp_path / "b", saes=[str(tmp_path / "stranger")], null="isotropic"
    )
    assert other.scalars["fraction_stable"].value < 0.1
    assert abs(other.scalars["mean_stability"].value - other.scalars["null_mean"].value) < 0.1


def test_compare_an_sae_with_itself(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "s.h5")
    sae = make_sae({"architecture": "topk", "d_model": 16, "d_sae": 32, "k": 4, "seed": 2})
    save_sae(sae, tmp_path / "sae")
    ctx = Context(sae, store, S)
    r = _run(ctx, "compare", tmp_path, other_sae=str(tmp_path / "sae"), top_latents=5)
    assert r.scalars["cka_codes"].value == pytest.approx(1.0)
    assert r.scalars["fraction_shared"].value == 1.0
    assert r.scalars["a/mean_cos_principal_angle"].value == pytest.approx(1.0)
    assert r.scalars["a/sdf_overlap"].value == pytest.approx(1.0)


def test_the_lightning_probe_reads_planted_labels_with_partial_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1500
    a, b = rng.integers(0, 3, n), rng.integers(0, 2, n)
    x = (
        np.eye(3)[a] @ rng.normal(size=(3, 10)) * 2
        + np.eye(2)[b] @ rng.normal(size=(2, 10)) * 2
        + rng.normal(size=(n, 10))
    ).astype(np.float32)
    b_partial = b.copy()
    b_partial[::3] = -1  # a third of the images lack b
    store = write_vista_store(
        tmp_path / "p.h5",
        {"validation": x},
        {"validation": {"a": a, "b": b_partial}},
        {"a": ["0", "1", "2"], "b": ["0", "1"]},
    )
    sae = make_sae({"architecture": "topk", "d_model": 10, "d_sae": 40, "k": 10, "seed": 0})
    ctx = Context(sae, store, S)
    r = _run(ctx, "probe", tmp_path, epochs=30, lr=1e-2, inputs=["raw"])
    from sklearn.linear_model import LogisticRegression

    n_val = round(n * 0.2)
    perm = np.random.default_rng(42).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    ref = LogisticRegression(max_iter=1000).fit(ctx.encoded.pooled_raw[train], a[train])
    ref_acc = ref.score(ctx.encoded.pooled_raw[val], a[val])
    assert r.scalars["a/raw_accuracy"].value == pytest.approx(ref_acc, abs=0.04)
    assert r.scalars["b/raw_accuracy"].n == int((b_partial[val] >= 0).sum())
    assert r.scalars["b/raw_accuracy"].value > 0.85


def test_the_random_control_of_ablation_fires_like_the_targets() -> None:
    """Hand-built firing rates: the control never takes a dead latent or a target, and each
    target's stand-in is among the latents nearest to it in firing rate."""
    from scipy import sparse

    from vista.analysis.ablation import firing_rates, matched_random

    codes = np.zeros((100, 12))
    for j, n in enumerate([0, 0, 0, 1, 2, 5, 10, 20, 40, 60, 80, 100]):  # latents 0-2 are dead
        codes[:n, j] = 1.0
    rates = firing_rates(codes)
    np.testing.assert_allclose(rates, [0, 0, 0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(firing_rates(sparse.csr_matrix(codes)), rates)
    rng = np.random.default_rng(0)
    for _ in range(50):
        pick = matched_random(rates, np.array([10, 11]), rng, nearest=2)
        assert set(pick.tolist()) <= {7, 8, 9} and len(pick) == 2  # never 0-2, never 10-11
        pick = matched_random(rates, np.array([3]), rng, nearest=1)
        assert pick.tolist() == [4]  # the closest in log rate to 0.01 is 0.02
    # more targets than latents that fire outside them: as many as there are
    assert len(matched_random(rates, np.arange(3, 11), rng)) == 1


def test_feature_auc_chooses_on_the_training_part_and_scores_on_the_test_part() -> None:
    """By hand: the best class is the training argmax, its test AUC is reported, and the top-n
    latents are those best on the training part."""
    from vista.analysis.feature_auc import FeatureAUCConfig, summary

    auc_train = np.array([[0.9, 0.6], [0.55, 0.7], [0.8, 0.5]])
    auc_test = np.array([[0.6, 0.95], [0.5, 0.65], [0.75, 0.9]])
    sm = summary(auc_test, auc_train, FeatureAUCConfig(top_n=2, selective_auc=0.7))
    # classes chosen on train: 0, 1, 0 -> their test AUCs 0.6, 0.65, 0.75 (not the test maxima)
    assert sm["mean_best_auc_test"] == pytest.approx((0.6 + 0.65 + 0.75) / 3)
    assert sm["mean_best_auc_train"] == pytest.approx((0.9 + 0.7 + 0.8) / 3)
    assert sm["fraction_selective"] == pytest.approx(1 / 3)  # only 0.75 > 0.7
    assert sm["top_2_auc_test_mean"] == pytest.approx((0.6 + 0.75) / 2)  # latents 0 and 2
    assert sm["digit_coverage"] == 2 and sm["redundancy_score"] == 2


def test_feature_auc_on_a_null_label_reads_chance() -> None:
    """A label independent of the codes: choosing each latent's class on the training part gives
    a mean test AUC whose interval holds 0.5; choosing it on the test AUCs (the seed's rule) reads
    above chance, by the expected maximum of the classes' noise."""
    from vista.analysis.feature_auc import signed_auc
    from vista.metrics.uncertainty import mean_ci

    rng = np.random.default_rng(3)
    codes = np.maximum(rng.normal(size=(1200, 300)), 0)  # non-negative, half zeros
    y = rng.integers(0, 5, size=1200)
    tr, te = np.arange(800), np.arange(800, 1200)
    auc_tr = signed_auc(codes[tr], y[tr], codes[tr], y[tr], 5)
    auc_te = signed_auc(codes[tr], y[tr], codes[te], y[te], 5)
    chosen = auc_te[np.arange(300), auc_tr.argmax(axis=1)]
    lo, hi = mean_ci(chosen, 2000, rng, 0.95)
    assert lo < 0.5 < hi
    on_test = auc_te.max(axis=1).mean()
    assert on_test > hi + 0.01  # the seed's rule: biased upwards


def test_trait_metrics_come_with_their_chance_values() -> None:
    """On a null label, map and coverage sit at their permutation chance values (the class
    prevalence, not 0); a latent that is the class indicator reads far above its chance."""
    from vista.analysis.feature_auc import FeatureAUCConfig, _trait_rows, trait_chance, trait_ci
    from vista.metrics.ranking import average_precision_one_vs_rest

    rng = np.random.default_rng(4)
    cfg = FeatureAUCConfig(coverage_tau=0.3)
    y = rng.integers(0, 3, size=900)
    tr, te = np.arange(600), np.arange(600, 900)
    codes = np.maximum(rng.normal(size=(900, 40)), 0)
    rows = _trait_rows(
        codes[te],
        y[te],
        average_precision_one_vs_rest(codes[tr], y[tr], 3),
        average_precision_one_vs_rest(codes[te], y[te], 3),
        ["a", "b", "c"],
        cfg,
    )
    null = trait_chance(codes[te], y[te], rows, 3, cfg, 1000, rng)
    observed = np.mean([row["test_ap"] for row in rows])
    prevalence = np.bincount(y[te], minlength=3) / len(te)
    assert null["map_chance"] == pytest.approx(prevalence.mean(), abs=0.03)
    assert abs(observed - null["map_chance"]) < 0.05
    # the interval over test images holds the observed map and, on a null label, its chance
    ci = trait_ci(codes[te], y[te], rows, 3, cfg, 500, rng, 0.95)
    assert ci["map"][0] < observed < ci["map"][1]
    assert ci["map"][0] < null["map_chance"] < ci["map"][1]
    assert null["coverage_at_tau_chance"] > 0.5  # every prevalence is near 1/3, above tau 0.3
    planted = np.eye(3)[y]  # latent c is the indicator of class c
    rows = _trait_rows(planted[te], y[te], np.eye(3), np.eye(3), ["a", "b", "c"], cfg)
    assert all(row["test_ap"] == 1.0 for row in rows)
    null = trait_chance(planted[te], y[te], rows, 3, cfg, 1000, rng)
    assert null["map_chance"] == pytest.approx(prevalence.mean(), abs=0.03)
    assert null["mean_purity_at_k_chance"] < 0.5
    ci = trait_ci(planted[te], y[te], rows, 3, cfg, 200, rng, 0.95)
    assert ci["map"] == (1.0, 1.0) and ci["mean_purity_at_k"] == (
        1.0,
        1.0,
    )  # perfect in every resample


def test_intersectional_selects_on_one_part_and_tests_on_the_other_with_no_false_positive(
    tmp_path: Path,
) -> None:
    """Two null labels (independent of the activations): every latent it flags as intersectional
    would be a false positive. Candidates are chosen on the selecting part and tested on the
    rest, so none is flagged, and no image does both."""
    rng = np.random.default_rng(1)
    n, d = 3000, 48
    x = (np.abs(rng.normal(size=(n, d))) * (rng.random((n, d)) < 0.3)).astype(np.float32)
    labels = {"a": rng.integers(0, 3, n), "b": rng.integers(0, 2, n)}
    store = write_vista_store(tmp_path / "null.h5", {"validation": x}, {"validation": labels},
                              {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]})  # fmt: skip
    ctx = Context(identity_sae(d), store, S)
    r = _run(ctx, "intersectional", tmp_path)
    assert r.scalars["anova_n_tested"].value == d  # every latent was a candidate: not vacuous
    assert r.scalars["anova_fraction_intersectional"].value == 0.0
    syn = r.scalars["mean_synergy"]
    assert syn.low <= 0.0 <= syn.high or abs(syn.value) < 0.01
    m = r.metadata
    assert m["n_selecting"] + m["n_tested"] == n and m["n_tested"] == pytest.approx(0.2 * n, abs=2)


def test_feature_auc_scores_a_random_sae_of_the_same_shape_beside_the_sae(
    ctx: Context, tmp_path: Path
) -> None:
    """Issue 29: every headline of feature_auc has its random-SAE control beside it (``_random``):
    the numbers of the same analysis run on the context's random SAE."""
    r = _run(ctx, "feature_auc", tmp_path / "with")
    alone = Context(ctx.control_sae, ctx.store, S)
    ref = _run(alone, "feature_auc", tmp_path / "ref", control=False)
    assert not [k for k in ref.scalars if k.endswith("_random")]
    for label in ("a", "b"):
        for key in ("fraction_selective", "mean_best_auc_test", "top_10_auc_test_mean", "map",
                    "coverage_at_tau", "mean_purity_at_k", "digit_coverage"):  # fmt: skip
            got, want = r.scalars[f"{label}/{key}_random"], ref.scalars[f"{label}/{key}"]
            assert got.value == pytest.approx(want.value, abs=1e-12) and got.n == want.n, key
            assert got.direction == "none"
        assert f"{label}/fraction_selective_random" in r.headline
    # the control matters here: an untrained dictionary mixes the planted coordinates into every
    # latent, so its mean best AUC exceeds the identity SAE's (13 of whose 16 latents are noise)
    assert r.value("a/mean_best_auc_test_random") > r.value("a/mean_best_auc_test")
