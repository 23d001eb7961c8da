"""Interventions: the ops against hand-computed values, the pooled edit against a per-token edit,
LEACE against the concept-erasure package's guarantee, and planted stores whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.analysis.planted import identity_sae
from tests.conftest import write_vista_store
from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.registry import ANALYSES
from vista.analysis.runner import run_analyses
from vista.analysis.sdf import SDFConfig
from vista.errors import VistaError
from vista.interventions import ops
from vista.saes import make_sae

FAST = AnalysisSettings(n_boot=200, n_perm=200)


def _planted(path: Path, n: int = 1500, d: int = 10, seed: int = 0) -> Path:
    """Label ``a`` (3 classes) lives in latents 0-2 alone (one per class), label ``b`` (2 classes)
    in latent 3 alone; latents 4.. are label-free noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, n), rng.integers(0, 2, n)
    x = np.abs(rng.normal(size=(n, d))) * 0.3
    x[:, :4] = 0
    x[np.arange(n), a] = 1 + rng.random(n)
    x[:, 3] = (b == 1) * (1 + rng.random(n))
    x = x.astype(np.float32)
    labels = {"a": a, "b": b}
    return write_vista_store(
        path,
        {"training": x, "validation": x},
        {"training": labels, "validation": labels},
        {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]},
    )


def _run(ctx: Context, out: Path, **cfg: object):  # type: ignore[no-untyped-def]
    conf = ANALYSES["intervene"].config(**cfg)
    return run_analyses(ctx, ["intervene"], {"intervene": conf}, out).results["intervene"]


# -- ops -----------------------------------------------------------------------------------------
def test_projection_removes_alpha_of_the_axis_and_keeps_its_complement() -> None:
    a = np.array([3.0, 4.0, 0.0])
    v = ops.projection(a, 0.3)
    np.testing.assert_allclose(a @ v, 0.7 * a)  # 1 - alpha of the axis stays
    np.testing.assert_allclose(np.array([4.0, -3.0, 2.0]) @ v, [4.0, -3.0, 2.0])
    np.testing.assert_allclose(ops.projection(np.zeros(3), 1.0), np.eye(3))
    x = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose((x @ ops.projection(a, 1.0)) @ a, 0.0, atol=1e-12)


def test_sp_axis_is_the_encoder_columns_weighted_by_the_probe() -> None:
    w_enc = np.arange(12, dtype=float).reshape(3, 4)
    feats = np.array([1, 3])
    np.testing.assert_allclose(
        ops.sp_axis(w_enc, feats, np.array([[2.0, -1.0]])), w_enc[:, 1] * 2 - w_enc[:, 3]
    )
    multi = np.array([[1.0, -2.0], [-3.0, 0.0]])  # mean |coef| per feature: 2, 1
    np.testing.assert_allclose(ops.sp_axis(w_enc, feats, multi), 2 * w_enc[:, 1] + w_enc[:, 3])


def test_scaling_features_equals_decoding_the_edited_codes() -> None:
    rng = np.random.default_rng(1)
    codes, w_dec, b_dec = rng.random((6, 5)), rng.normal(size=(5, 3)), rng.normal(size=3)
    x_hat = ops.decode(codes, w_dec, b_dec)
    for alpha in (0.0, 0.5, 3.0):
        edited = codes.copy()
        edited[:, [1, 4]] *= alpha
        got = ops.scale_features(x_hat, codes, w_dec, np.array([1, 4]), alpha)
        np.testing.assert_allclose(got, edited @ w_dec + b_dec)


def test_the_pooled_edit_is_the_mean_of_the_per_token_edits(tmp_path: Path) -> None:
    """Editing an image's mean codes and decoding = editing each token's codes, decoding, pooling."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4, 8)).astype(np.float32)
    y = {"c": rng.integers(0, 2, 40)}
    store = write_vista_store(
        tmp_path / "t.h5", {"validation": x}, {"validation": y}, {"c": ["p", "q"]}
    )
    sae = make_sae({"architecture": "topk", "d_model": 8, "d_sae": 16, "k": 3, "seed": 1}).eval()
    ctx = Context(sae, store, FAST)
    enc = ctx.encoded
    w_dec, b_dec = sae.W_dec.detach().double().numpy(), sae.b_dec.detach().double().numpy()
    feats = np.array([0, 5, 9])
    pooled = ops.scale_features(ops.decode(enc.codes, w_dec, b_dec), enc.codes, w_dec, feats, 0.0)
    with torch.no_grad():
        stored = x.astype(np.float16).astype(np.float32)  # the store keeps float16
        z = sae.encode(torch.from_numpy(stored.reshape(-1, 8))).double().numpy()
    z[:, feats] = 0
    per_token = (z @ w_dec + b_dec).reshape(40, 4, 8).mean(axis=1)
    np.testing.assert_allclose(pooled, per_token, atol=1e-5)


def test_gaussian_noise_has_the_pooled_scale_and_error_scale_is_per_element() -> None:
    rng = np.random.default_rng(3)
    noisy = ops.gaussian_noise(np.zeros((20000, 4)), 2.0, 4, rng)
    assert abs(noisy.std() - 1.0) < 0.02  # 2 / sqrt(4 tokens)
    assert ops.error_scale(np.array([8.0, 10.0]), 3, 3) == pytest.approx(np.sqrt(18 / 9))


# -- planted stores ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _planted(tmp_path_factory.mktemp("iv") / "s.h5")


def test_suppressing_the_planted_features_removes_the_concept_and_random_ones_do_not(
    planted: Path, tmp_path: Path
) -> None:
    ctx = Context(identity_sae(10), planted, FAST)
    r = _run(ctx, tmp_path, targets=["a"], select="variance", ks=[3], modes=["suppression"])
    assert set(r.arrays["a/ranked_features"][:3]) == {0, 1, 2}
    base = ctx.labels["a"]
    chance = np.bincount(base).max() / len(base)
    total = r.scalars["a/k3/fresh/total"]
    # Accuracy falls from ~1 to about chance; the interval excludes 0.
    assert total.value == pytest.approx(chance - 1.0, abs=0.08) and total.high < -0.3
    assert abs(r.value("a/k3/fresh/random_total")) < 0.03
    assert r.scalars["a/k3/fresh/targeted_vs_random"].high < -0.3
    # The identity SAE reconstructs exactly: no reconstruction-error effect, no interaction.
    assert r.value("a/k3/fresh/reconstruction_error") == 0.0
    assert r.value("a/k3/fresh/interaction") == 0.0
    assert r.value("a/k3/fresh/selectivity") > 0.5  # b, read from latent 3, is untouched
    rows = [
        x
        for x in r.tables["a/decomposition"]
        if x["component"] == "total" and x["reader"] == "fresh"
    ]
    assert rows[0]["p_value"] < 0.01 and rows[0]["non_target_delta"] == pytest.approx(0.0, abs=0.02)
    doc = json.loads((tmp_path / "intervention_suppression_results.json").read_text())
    sec = doc["a"]["k=3"]
    assert set(sec["features"]) == {0, 1, 2} and "a" in sec["target"] and "b" in sec["non_target"]
    assert sec["target"]["a"]["delta"] == pytest.approx(total.value)


def test_the_decomposition_adds_up_per_image_with_a_lossy_sae(
    planted: Path, tmp_path: Path
) -> None:
    ctx = Context(identity_sae(10, k=3), planted, FAST)  # drops all but the 3 largest inputs
    r = _run(ctx, tmp_path, targets=["b"], select="variance", ks=[1], random_seeds=1,
             modes=["suppression"])  # fmt: skip
    for reader in ("fresh", "fixed"):
        v = {
            c: r.value(f"b/k1/{reader}/{c}")
            for c in ("total", "reconstruction_error", "targeted", "interaction")
        }
        assert v["total"] == pytest.approx(
            v["reconstruction_error"] + v["targeted"] + v["interaction"], abs=1e-12
        )
    assert r.metadata["noise_sigma"] > 0


def test_leace_leaves_no_linear_probe_above_chance(planted: Path, tmp_path: Path) -> None:
    """The concept-erasure package's guarantee, on held-out images: a retrained probe on the
    erased embeddings does no better than predicting the majority class."""
    ctx = Context(identity_sae(10), planted, FAST)
    r = _run(ctx, tmp_path, targets=["a"], modes=["leace"])
    y = ctx.labels["a"][ctx.train_test("a")[1]]
    majority = np.bincount(y).max() / len(y)
    assert r.value("a/leace/fresh/acc_after") <= majority + 0.04
    row = next(x for x in r.tables["a/erasure"] if x["attribute"] == "b" and x["reader"] == "fresh")
    assert row["acc_after"] > 0.95  # b lives in another latent: not erased
    assert 0.5 < row["cosine"] < 1.0


def test_sp_topk_projects_out_the_probe_axis_and_the_random_axis_is_a_control(
    planted: Path, tmp_path: Path
) -> None:
    ctx = Context(identity_sae(10), planted, FAST)
    r = _run(ctx, tmp_path, targets=["b"], modes=["sp_topk"], sp_ks=[1], sp_alphas=[1.0])
    rows = {(x["condition"], x["attribute"], x["reader"]): x for x in r.tables["b/erasure"]}
    # b lives on latent 3 alone: projecting out W_enc[:, 3] erases it, a random axis does not.
    assert rows[("sp_topk", "b", "fresh")]["acc_after"] < 0.6
    assert rows[("sp_random_axis", "b", "fresh")]["acc_after"] > 0.95
    assert rows[("sp_topk", "a", "fresh")]["acc_after"] > 0.95


def test_steering_moves_images_to_the_target_class_and_random_features_do_not(
    planted: Path, tmp_path: Path
) -> None:
    ctx = Context(identity_sae(10), planted, FAST)
    r = _run(ctx, tmp_path, targets=["a"], modes=["steering"], steer_alphas=[0.0, 1.0],
             steer_k=1, sdf=SDFConfig(k1=3, k2=2, k3=1))  # fmt: skip
    summary = {s["alpha"]: s for s in r.tables["a/steering_summary"]}
    assert summary[0.0]["delta"] == pytest.approx(0.0, abs=1e-12)
    assert summary[1.0]["success_rate"] > 0.9 and summary[1.0]["n_pairs"] == 6
    assert abs(summary[1.0]["random_delta"]) < 0.1


def test_amplification_and_attenuation_write_a_dose_response(planted: Path, tmp_path: Path) -> None:
    ctx = Context(identity_sae(10), planted, FAST)
    r = _run(ctx, tmp_path, targets=["a"], select="variance", ks=[3],
             modes=["amplification", "attenuation"], attenuate_alphas=[0.0, 1.0])  # fmt: skip
    rows = r.tables["a/dose_response"]
    one = [x for x in rows if x["alpha"] == 1.0 and x["reader"] == "fixed"]
    assert one and all(x["delta"] == 0.0 for x in one)  # alpha 1 changes nothing
    zero = next(
        x for x in rows if x["alpha"] == 0.0 and x["attribute"] == "a" and x["reader"] == "fresh"
    )
    assert zero["acc_after"] < 0.5  # alpha 0 is suppression
    doc = json.loads((tmp_path / "intervention_amplification_results.json").read_text())
    assert {"alpha=2.0", "alpha=5.0", "alpha=2.0/error_kept"} <= set(doc["a"])


def test_bad_intervention_settings_are_refused_naming_the_setting(
    planted: Path, tmp_path: Path
) -> None:
    ctx = Context(identity_sae(10), planted, FAST)
    with pytest.raises(VistaError, match="unknown intervene.modes"):
        _run(ctx, tmp_path, modes=["erase_everything"])
    with pytest.raises(VistaError, match="not in split"):
        _run(ctx, tmp_path, targets=["age"])


def test_the_warm_started_logistic_reader_reaches_the_cold_fit() -> None:
    """The convex objective has one optimum: refitting from the old probe lands where sklearn's
    cold fit does."""
    from vista.analysis.probing import ProbeConfig, fit_probe
    from vista.interventions.scoring import warm_probe

    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 600)
    x = rng.normal(size=(600, 6)) + np.eye(3, 6)[y] * 1.5
    cfg = ProbeConfig(max_iter=2000)
    start = fit_probe(x, y, cfg)
    edited = x * np.array([1.0, 0.2, 1.0, 3.0, 1.0, 1.0]) + 0.5
    warm, cold = warm_probe(edited, y, start, cfg), fit_probe(edited, y, cfg)
    np.testing.assert_allclose(warm[-1].coef_, cold[-1].coef_, atol=2e-3)
    assert (warm.predict(edited) == cold.predict(edited)).mean() > 0.99


def test_the_logistic_fresh_reader_also_falls_to_chance_after_leace(
    planted: Path, tmp_path: Path
) -> None:
    ctx = Context(identity_sae(10), planted, FAST)
    r = _run(ctx, tmp_path, targets=["b"], modes=["leace"], fresh_reader="logistic")
    y = ctx.labels["b"][ctx.train_test("b")[1]]
    assert r.value("b/leace/fresh/acc_after") <= np.bincount(y).max() / len(y) + 0.04


def test_the_pooled_lda_reader_is_sklearns_lda_and_shrinks_like_ledoit_wolf() -> None:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from vista.interventions.scoring import PooledLDA

    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 800)
    x = rng.normal(size=(800, 6)) @ rng.normal(size=(6, 6)) + np.eye(4, 6)[y] * 2
    ours = PooledLDA(shrink=False).fit(x, y)
    ref = LinearDiscriminantAnalysis(solver="lsqr").fit(x, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8)
    assert (ours.predict(x) == ref.predict(x)).all()
    shrunk = PooledLDA().fit(x, y)  # close to sklearn's per-class Ledoit-Wolf average
    auto = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y)
    assert (shrunk.predict(x) == auto.predict(x)).mean() > 0.98


def _graded_store(path: Path, n: int = 2000, seed: int = 0) -> Path:
    """Label ``a`` in latents 0-2 (one per class, firing on a third of the images), label ``b`` in
    latent 3; latents 4-39 are label-free with firing rates from 2% to 95% and magnitudes from
    0.2 to 3, in unrelated orders: a random control has latents of every kind to choose from."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, n), rng.integers(0, 2, n)
    x = np.zeros((n, 40))
    x[np.arange(n), a] = 1 + rng.random(n)
    x[:, 3] = (b == 1) * (1 + rng.random(n))
    rates, sizes = np.linspace(0.02, 0.95, 36), rng.permutation(np.linspace(0.2, 3.0, 36))
    for j, (p, m) in enumerate(zip(rates, sizes, strict=True)):
        x[:, 4 + j] = (rng.random(n) < p) * m * (0.5 + rng.random(n))
    labels = {"a": a, "b": b}
    return write_vista_store(path, {"validation": x.astype(np.float32)}, {"validation": labels},
                             {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]})  # fmt: skip


def test_the_random_control_takes_no_labels_features_and_is_matched(tmp_path: Path) -> None:
    """Issue 29: the random stand-ins come from latents in no label's selection (so they remove
    none of b's features) and match the targeted latents in firing rate and removed norm."""
    from vista.interventions.targets import latent_profile, random_features, ranked_features

    ctx = Context(identity_sae(40), _graded_store(tmp_path / "g.h5"), FAST)
    r = _run(ctx, tmp_path, targets=["a"], select="variance", ks=[3], random_seeds=4,
             modes=["suppression"])  # fmt: skip
    control = r.metadata["random_control"]["a"]["k=3"]
    parts = ctx.joint_train_test(["a", "b"])
    selected = set(ranked_features(ctx, "a", "variance", SDFConfig(), parts[0])[0][:3]) | set(
        ranked_features(ctx, "b", "variance", SDFConfig(), parts[0])[0][:3]
    )
    assert {0, 1, 2, 3} <= selected
    assert len(control["sets"]) == 4
    assert all(len(s) == 3 and not set(s) & selected for s in control["sets"])
    assert 0.7 < control["rate_ratio"] < 1.4 and 0.6 < control["removed_norm_ratio"] < 1.6
    # drawn uniformly from the same pool, the sets match far worse
    rate, removed = latent_profile(ctx)
    pool_draws = [random_features(ctx, np.array(sorted(selected)), 3, np.random.default_rng(s))
                  for s in range(50)]  # fmt: skip
    ratios = [removed[s].sum() / removed[[0, 1, 2]].sum() for s in pool_draws]
    assert np.mean([abs(np.log(q)) for q in ratios]) > abs(np.log(control["removed_norm_ratio"]))
    # b lives in latent 3, which no stand-in removes: the control leaves b alone
    rows = [x for x in r.tables["a/decomposition"] if x["component"] == "random_total"]
    assert all(abs(x["non_target_delta"]) < 0.02 for x in rows)


def test_the_random_controls_interval_holds_the_spread_over_random_sets() -> None:
    """Two random sets with opposite effects on every image: averaging the sets first reads as a
    sure zero; resampling the sets as well gives the interval their spread deserves."""
    from vista.metrics.uncertainty import draws_mean_ci, mean_ci

    n = 200
    d = np.stack([np.full(n, 0.5), np.full(n, -0.5)])  # (sets, images)
    rng = np.random.default_rng(0)
    assert mean_ci(d.mean(axis=0), 500, rng) == (0.0, 0.0)
    lo, hi = draws_mean_ci(d, 2000, rng)
    assert lo == pytest.approx(-0.5) and hi == pytest.approx(0.5)  # one set drawn twice: +-0.5
    same = np.stack([np.arange(n) % 2, np.arange(n) % 2]).astype(float)  # identical sets
    lo2, hi2 = draws_mean_ci(same, 2000, np.random.default_rng(1))
    lo1, hi1 = mean_ci(same[0], 2000, np.random.default_rng(1))
    assert hi2 - lo2 == pytest.approx(hi1 - lo1, rel=0.2)  # only the images' spread remains


def test_one_held_out_part_serves_every_label_and_selectivity_is_paired(tmp_path: Path) -> None:
    """Issue 29: the images that select a target's features score no label; every label is read
    on the same held-out images; selectivity is a paired per-image contrast with its interval."""
    ctx = Context(identity_sae(40), _graded_store(tmp_path / "g.h5"), FAST)
    tr, te = ctx.joint_train_test(["a", "b"])
    assert not np.intersect1d(tr, te).size and len(tr) + len(te) == ctx.info.n_rows
    assert len(te) == pytest.approx(0.2 * ctx.info.n_rows, abs=2)
    r = _run(ctx, tmp_path, targets=["a"], select="variance", ks=[3], random_seeds=2,
             modes=["suppression"])  # fmt: skip
    assert r.metadata["split"] == {"n_train": len(tr), "n_held_out": len(te)}
    for reader in ("fresh", "fixed"):
        sel = r.scalars[f"a/k3/{reader}/selectivity"]
        assert sel.n == len(te) and sel.low <= sel.value <= sel.high
        targeted_a = r.value(f"a/k3/{reader}/targeted")
        rows = [x for x in r.tables["a/decomposition"]
                if x["component"] == "targeted" and x["reader"] == reader]  # fmt: skip
        # the paired mean equals the difference of the two labels' means on the same images
        assert sel.value == pytest.approx(rows[0]["non_target_delta"] - targeted_a, abs=1e-12)
        assert sel.low > 0.3  # a's accuracy falls, b's does not
