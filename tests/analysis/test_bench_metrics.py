"""SAEBench-style metrics on planted stores where the answer is known, and against sklearn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.analysis.planted import identity_sae, planted_store
from tests.conftest import write_vista_store
from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.registry import ANALYSES
from vista.analysis.runner import run_analyses
from vista.saes.io import load_sae, save_sae
from vista.sources.synthetic import SyntheticConfig, write_synthetic_store

S = AnalysisSettings(n_boot=100, n_perm=100)


def _run(ctx: Context, name: str, out: Path, **cfg: object):
    return run_analyses(ctx, [name], {name: ANALYSES[name].config(**cfg)}, out).results[name]


def _store(
    tmp: Path, x: np.ndarray, labels: dict[str, np.ndarray], names: dict | None = None
) -> Path:
    x = x.astype(np.float32)
    return write_vista_store(tmp / "s.h5", {"validation": x}, {"validation": labels}, names)


def test_sparse_probing_reads_the_planted_latent_with_one_latent(tmp_path: Path) -> None:
    ctx = Context(identity_sae(16), planted_store(tmp_path / "p.h5"), S)
    r = _run(ctx, "sparse_probing", tmp_path, ks=[1, 2])
    task = next(t for t in r.tables["tasks"] if t["label"] == "a" and t["class"] == "a2")
    assert task["top_1"] == pytest.approx(1.0) and task["raw"] > 0.97
    b0 = next(t for t in r.tables["tasks"] if t["label"] == "b" and t["class"] == "b0")
    assert b0["top_1"] > 0.97  # latent 2 fires for b=0 only


def test_tpp_ablating_a_class_latent_hurts_only_its_probe(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, c = 2000, 4
    y = rng.integers(0, c, n)
    x = np.abs(rng.normal(size=(n, 8))) * 0.05
    x[np.arange(n), y] += 1.0 + rng.random(n)  # latent j fires for class j
    ctx = Context(identity_sae(8), _store(tmp_path, x, {"y": y}), S)
    r = _run(ctx, "tpp", tmp_path, ns=[1])
    (row,) = r.tables["y"]
    # Each class's probe falls from ~1 to chance (0.5) without its latent; the others keep theirs.
    assert row["intended"] == pytest.approx(0.5, abs=0.05)
    assert abs(row["unintended"]) < 0.02
    assert r.scalars["y/tpp_threshold_1_total_metric"].value == pytest.approx(0.5, abs=0.06)


def _signed_sae() -> object:
    """6-d SAE whose latents 1 and 2 hold +x1 and -x1 (b's two values), the rest the identity."""
    import torch

    sae = identity_sae(6)
    with torch.no_grad():
        sae.W_enc[:, 2] = 0.0
        sae.W_enc[1, 2] = -1.0
        sae.W_dec[2] = 0.0
        sae.W_dec[2, 1] = -1.0
    return sae


def test_scr_removing_the_spurious_latents_closes_the_gap_to_the_oracle(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 6000
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    x = np.abs(rng.normal(size=(n, 6))) * 0.05
    x[:, 0] = a * (1 + 0.1 * rng.random(n))  # the target
    x[:, 1] = np.where(b == 1, 1.5, -1.5) + 0.05 * rng.normal(size=n)  # the stronger spurious label
    ctx = Context(_signed_sae(), _store(tmp_path, x, {"a": a, "b": b}), S)
    r = _run(ctx, "scr", tmp_path, pairs=[["a", "b"]], ns=[1, 2])
    row, other = r.tables["pairs"]  # both directions, on one sample
    assert (row["target"], other["target"]) == ("a", "b")
    # The biased probe leans on b (base near chance on balanced data); removing both of b's
    # latents leaves b at the midpoint, so the biased probe reads a alone: the whole gap closes.
    assert row["a_base"] < 0.8 and row["a_oracle"] > 0.99 and row["defined"]
    assert row["scr_2"] == pytest.approx(1.0, abs=0.05)
    assert row["scr_1"] < 0.7  # one side of b alone does not
    # SAEBench counts the direction whose target the biased probe reads worse: a's
    assert other["a_base"] > row["a_base"] and row["selected"] and not other["selected"]
    assert r.scalars["scr_metric_threshold_2"].value == row["scr_2"]
    assert r.scalars["scr_metric_threshold_2"].n == 1
    both = _run(
        ctx, "scr", tmp_path / "v", pairs=[["a", "b"], ["b", "a"]], ns=[2], definition="vista"
    )
    mean = (row["scr_2"] + other["scr_2"]) / 2
    assert both.scalars["scr_metric_threshold_2"].value == pytest.approx(mean)


def _saebench_scr_metric(dirs: dict[int, tuple[float, float, float]]) -> float | None:
    """Transcribed from SAEBench 0.6.0, sae_bench/evals/scr_and_tpp/main.py:358-398
    (``get_scr_plotting_dict``) for one threshold: ``dirs[d] = (original_acc, clean_acc,
    changed_acc)``, direction 1 ablating the spurious label's latents and reading the target."""
    out = None
    for d in (1, 2):
        original, clean, changed = dirs[d]
        score = 0 if (clean - original) < 0.001 else (changed - original) / (clean - original)
        if (dirs[1][0] < dirs[2][0] and d == 1) or (dirs[1][0] > dirs[2][0] and d == 2):
            out = score
    return out


def test_scr_counts_the_direction_saebench_counts(tmp_path: Path) -> None:
    from vista.analysis.scr import SCRConfig, scr_pair

    rng = np.random.default_rng(4)
    n = 6000
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    x = np.abs(rng.normal(size=(n, 6))) * 0.05
    x[:, 0] = a * (1 + 0.3 * rng.random(n)) + 0.2 * rng.normal(size=n)
    x[:, 1] = np.where(b == 1, 1.0, -1.0) + 0.4 * rng.normal(size=n)
    ctx = Context(_signed_sae(), _store(tmp_path, x, {"a": a, "b": b}), S)
    cfg = SCRConfig(ns=[1, 2])
    rows = scr_pair(ctx, "a", "b", cfg)
    for k in (1, 2):
        dirs = {}
        for d, row in ((1, rows[0]), (2, rows[1])):
            changed = row["a_base"] + row["scr"][k] * (row["a_oracle"] - row["a_base"])
            dirs[d] = (row["a_base"], row["a_oracle"], changed)
        want = _saebench_scr_metric(dirs)
        got = next(r["scr"][k] for r in rows if r["selected"])
        assert want is not None and got == pytest.approx(want, abs=1e-12)


def _dictionary_sae(w_dec: np.ndarray) -> object:
    """An SAE whose codes are exactly the coefficients of x on the (invertible) dictionary."""
    import torch

    sae = identity_sae(len(w_dec))
    with torch.no_grad():
        sae.W_dec.copy_(torch.from_numpy(w_dec).float())
        sae.W_enc.copy_(torch.linalg.inv(torch.from_numpy(w_dec).double()).float())
    return sae


def test_absorption_finds_a_child_absorbed_by_its_own_latent(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 8000
    y = rng.choice(4, n, p=[0.475, 0.025, 0.25, 0.25])  # children c0, c1 -> parent "low"
    names = {"y": ["c0", "c1", "c2", "c3"]}
    hier = [{"label": "y", "name": "p", "groups": {"low": ["c0", "c1"], "high": ["c2", "c3"]}}]
    w_dec = np.eye(8)
    w_dec[3] = np.array([1, 0, 0, 1, 0, 0, 0, 0]) / np.sqrt(2)  # c1's latent: "low" plus its own

    def ctx(absorbed: bool, where: Path) -> Context:
        codes = np.zeros((n, 8))
        codes[:, 5:] = np.abs(rng.normal(size=(n, 3))) * (rng.random((n, 3)) < 0.3)  # unrelated
        codes[:, 0] += np.where(absorbed, y == 0, np.isin(y, [0, 1])) * (1 + rng.random(n))
        if absorbed:  # c1 fires its own latent instead of the parent latent
            codes[:, 3] += (y == 1) * (1 + rng.random(n))
        codes[:, 4] += np.isin(y, [2, 3]) * (1 + rng.random(n))
        where.mkdir()
        return Context(_dictionary_sae(w_dec), _store(where, codes @ w_dec, {"y": y}, names), S)

    absorbed = _run(ctx(True, tmp_path / "a"), "absorption", tmp_path / "ra", hierarchies=hier)
    control = _run(ctx(False, tmp_path / "c"), "absorption", tmp_path / "rc", hierarchies=hier)
    low_a = next(t for t in absorbed.tables["tasks"] if t["parent"] == "low")
    low_c = next(t for t in control.tables["tasks"] if t["parent"] == "low")
    # c1 is too rare for k-sparse probing to add its latent; its images are the absorbed ones.
    share = (y == 1).sum() / np.isin(y, [0, 1]).sum()
    assert low_a["num_split_features"] == 1
    assert low_a["full_absorption"] == pytest.approx(share, abs=0.02)
    assert low_a["absorption_fraction"] == pytest.approx(share, abs=0.02)
    assert low_c["full_absorption"] == 0.0 and low_c["absorption_fraction"] < 0.005


def test_recovery_counts_the_true_directions_found(tmp_path: Path) -> None:
    store = write_synthetic_store(
        tmp_path / "syn.h5",
        SyntheticConfig(d_model=16, n_features=24, n_train=200, n_validation=500),
    )
    from vista.store import ActivationStore

    true = ActivationStore(store).extra("true_directions")
    sae = identity_sae(16)
    perfect = load_sae(save_sae(sae, tmp_path / "sae"))
    import torch

    from vista.saes import make_sae

    oracle = make_sae({"architecture": "topk", "d_model": 16, "d_sae": 24, "k": 5})
    with torch.no_grad():
        oracle.W_dec.copy_(torch.from_numpy(true))
    r = _run(Context(oracle, store, S), "recovery", tmp_path / "o")
    assert r.scalars["recovered"].value == 1.0 and r.scalars[
        "mean_max_cosine"
    ].value == pytest.approx(1.0)
    r = _run(Context(perfect, store, S), "recovery", tmp_path / "i")
    assert r.scalars["recovered"].value < 0.5  # the standard basis is not the true dictionary


# -- sparse_probing: SAEBench's definition ---------------------------------------------------------
def _saebench_top_k_mask(acts: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Transcribed from SAEBench 0.6.0, sae_bench/evals/sparse_probing/probe_training.py:92-109
    (``get_top_k_mean_diff_mask``; POSITIVE_CLASS_LABEL = 1): True marks the dropped latents."""
    pos = acts[labels == 1].mean(axis=0)
    neg = acts[labels == 0].mean(axis=0)
    top = np.argsort(-np.abs(pos - neg), kind="stable")[:k]
    mask = np.ones(acts.shape[1], dtype=bool)
    mask[top] = False
    return mask


def test_sparse_probing_negatives_are_spread_over_the_other_classes() -> None:
    from vista.analysis.sparse_probing import spread_task

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 100)
    task = spread_task(np.arange(500), y, 0, rng, limit=10_000)
    # prepare_probe_data (probe_training.py:24-89): ceil(100 / 4) = 25 of each other class
    assert np.bincount(y[task], minlength=5).tolist() == [100, 25, 25, 25, 25]
    # a small class gives what it has; the positives follow the negatives down
    y2 = np.concatenate([np.zeros(100), np.ones(10), np.full(200, 2), np.full(200, 3)]).astype(int)
    task = spread_task(np.arange(len(y2)), y2, 0, rng, limit=10_000)
    counts = np.bincount(y2[task], minlength=4)
    assert counts[0] == counts[1:].sum() == 10 + 34 + 34 and counts[1] == 10


def test_sparse_probing_ranks_by_the_absolute_difference_as_saebench_does() -> None:
    from vista.analysis.sparse_probing import top_k_latents

    rng = np.random.default_rng(1)
    codes = np.abs(rng.normal(size=(400, 30)))
    target = rng.random(400) < 0.5
    codes[target, 3] += 2.0  # fires more on positives
    codes[target, 7] -= 1.5  # fires less on positives: SAEBench keeps it, the signed rank does not
    for k in (1, 2, 5, 12):
        want = np.flatnonzero(~_saebench_top_k_mask(codes, target.astype(int), k))
        np.testing.assert_array_equal(top_k_latents(codes, target, k, absolute=True), want)
    assert 7 in top_k_latents(codes, target, 2, absolute=True)
    assert 7 not in top_k_latents(codes, target, 2, absolute=False)


def test_sparse_probing_top_k_accuracy_is_saebenchs_unscaled_sklearn_probe() -> None:
    from sklearn.linear_model import LogisticRegression

    from vista.analysis.sparse_probing import SparseProbingConfig, spread_task, task_scores

    rng = np.random.default_rng(2)
    n, d = 900, 12
    y = rng.integers(0, 3, n)
    codes = np.abs(rng.normal(size=(n, d))) * 0.3
    codes[np.arange(n), y] += rng.random(n) * 3  # noisy class latents, on a large scale
    codes *= 50.0  # unscaled inputs: a standardised probe would fit another model
    raw = rng.normal(size=(n, 5))
    split = (np.arange(600), np.arange(600, n))
    cfg = SparseProbingConfig(ks=[1, 3])
    got = task_scores(codes, raw, y, 1, cfg, np.random.default_rng(7), split)
    r = np.random.default_rng(7)  # the same draws, by hand
    tr, te = spread_task(split[0], y, 1, r, 4000), spread_task(split[1], y, 1, r, 1000)
    for k in (1, 3):
        keep = ~_saebench_top_k_mask(codes[tr], (y[tr] == 1).astype(int), k)
        # train_sklearn_probe (probe_training.py:135-184): penalty l2, C=1, max_iter=1000
        probe = LogisticRegression(C=1.0, max_iter=1000)  # L2 is the default
        probe.fit(codes[tr][:, keep], y[tr] == 1)
        want = probe.score(codes[te][:, keep], y[te] == 1)
        assert got[f"top_{k}"] == pytest.approx(want, abs=1e-12), k
    assert got["n_test"] == len(te)


def test_sparse_probing_refuses_an_unknown_definition(tmp_path: Path) -> None:
    from vista.errors import VistaError

    ctx = Context(identity_sae(16), planted_store(tmp_path / "p.h5"), S)
    with pytest.raises(VistaError, match="definition='sae' is not one of"):
        _run(ctx, "sparse_probing", tmp_path, definition="sae")
