"""Ground truth: every trainable architecture recovers the known dictionary of the synthetic store.

The documented configuration (docs/training.md): SyntheticConfig() defaults (d_model 64,
128 true directions, 5 active per token, firing probabilities spread 3x), d_sae 512, k 5 for the
TopK family and MP, lr 4e-3, 1.5M training tokens (5 epochs of a 300k-token store) in batches of 1024, default sparsity
coefficients. All SAEs train together on one pass of the store (the sweep path of `vista train`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import sae_cfg
from vista.saes import SAE_REGISTRY
from vista.saes.io import load_sae
from vista.sources.synthetic import (
    SyntheticConfig,
    SyntheticGenerator,
    recovery,
    write_synthetic_store,
)
from vista.store import ActivationStore
from vista.train.config import TrainConfig, TrainerConfig
from vista.train.fit import train_saes

TRAINABLE = sorted(a for a, c in SAE_REGISTRY.items() if c.trainable)


def test_generator_statistics_hierarchy_and_correlation() -> None:
    cfg = SyntheticConfig(children_per_parent=3, n_features=64, mean_active=4.0, seed=1)
    gen = SyntheticGenerator(cfg)
    _, codes, label = gen.sample(20000)
    on = codes > 0
    assert on.sum(1).mean() == pytest.approx(4.0, rel=0.05)
    children = np.nonzero(gen.parent >= 0)[0]
    assert not (on[:, children] & ~on[:, gen.parent[children]]).any(), "a child fired alone"
    np.testing.assert_allclose(np.linalg.norm(gen.directions, axis=1), 1.0, rtol=1e-5)
    assert set(np.unique(label)) <= set(range(cfg.n_groups + 1))

    def same_group_cofiring(corr: float) -> float:
        g = SyntheticGenerator(SyntheticConfig(correlation=corr, n_features=64, seed=2))
        f = (g.sample(20000)[1] > 0).astype(float)
        c = np.corrcoef(f.T)
        same = g.group[:, None] == g.group[None, :]
        np.fill_diagonal(same, False)
        return float(np.nanmean(c[same]))

    assert same_group_cofiring(0.6) > same_group_cofiring(0.0) + 0.05


def test_recovery_measure_by_hand() -> None:
    true = np.eye(3)
    learned = np.array([[1.0, 0.0, 0.0], [0.0, 0.8, 0.6], [0.0, 0.0, -1.0]])
    r = recovery(learned, true)
    # best cosines: 1, 0.8, 0.6 -> only the first above 0.9
    assert r["recovered"] == pytest.approx(1 / 3)
    assert r["mean_max_cosine"] == pytest.approx((1 + 0.8 + 0.6) / 3)


@pytest.mark.slow
def test_every_architecture_recovers_the_true_dictionary(tmp_path: Path) -> None:
    store = write_synthetic_store(tmp_path / "syn.h5", SyntheticConfig(n_train=300_000))
    true = ActivationStore(store).extra("true_directions")
    cfgs = [sae_cfg(a, 0, 512, k=5) for a in TRAINABLE]
    paths = train_saes(
        store,
        cfgs,
        TrainConfig(
            max_tokens=1_500_000,
            batch_size=1024,
            lr=4e-3,
            lr_warmup_steps=20,
            init_tokens=8192,
            checkpoint_every_steps=10**9,
        ),
        TrainerConfig(logger="none", progress_bar=False, accelerator="cpu"),
        tmp_path / "run",
    )
    results = {}
    for c, path in zip(cfgs, paths, strict=True):
        sae = load_sae(path)
        results[c["architecture"]] = recovery(sae.W_dec.detach().numpy(), true)["recovered"]
    assert all(r >= 0.9 for r in results.values()), results
