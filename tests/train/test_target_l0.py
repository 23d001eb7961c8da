"""The target-L0 option: the sparsity coefficient of vanilla, gated and JumpReLU adapts until the
mean L0 per token is the one asked for."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import sae_cfg
from vista.errors import VistaError
from vista.saes import make_sae
from vista.saes.io import load_sae, read_metadata
from vista.saes.registry import sae_name
from vista.sources.synthetic import SyntheticConfig, write_synthetic_store
from vista.store import ActivationStore
from vista.train.config import TrainConfig, TrainerConfig
from vista.train.fit import train_saes
from vista.train.module import SAETrainingModule

PENALISED = ("vanilla", "gated", "jumprelu")


def test_the_controller_step_by_hand() -> None:
    """gain += rate * clip(log((L0 + 1e-3) / target), -1, 1), per SAE; none without a target."""
    cfgs = [
        sae_cfg("vanilla", 8, 32, target_l0=4.0, target_l0_rate=0.1),
        sae_cfg("jumprelu", 8, 32, target_l0=4.0),
        sae_cfg("topk", 8, 32, k=4),
    ]
    module = SAETrainingModule(cfgs, {}, n_steps=10)
    outs = [SimpleNamespace(l0=torch.tensor(v)) for v in (6.0, 400.0, 9.0)]
    module._steer_to_target_l0(outs, sync=False)
    expected = [0.1 * math.log(6.001 / 4), 0.01 * 1.0, 0.0]  # the second is clipped at 1
    np.testing.assert_allclose(module.sparsity_gain.numpy(), expected, rtol=1e-6)
    assert module.sparsity_factor(0) == pytest.approx(math.exp(expected[0]), rel=1e-6)
    module._steer_to_target_l0([SimpleNamespace(l0=torch.tensor(1.0))] * 3, sync=False)
    assert module.sparsity_gain[1] == pytest.approx(0.01 - 0.01 * 1.0, abs=1e-7)
    assert module.sparsity_gain[2] == 0.0


def test_the_coefficient_factor_reaches_the_loss() -> None:
    """A factor of 2 on the coefficient doubles the sparsity term and nothing else."""
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    for arch in PENALISED:
        sae = make_sae(sae_cfg(arch, 8, 32))
        one, two = sae.training_forward(x, None, 1.0), sae.training_forward(x, None, 2.0)
        assert float(two.sparsity_loss) == pytest.approx(2 * float(one.sparsity_loss), rel=1e-6)
        assert float(two.recon_loss) == pytest.approx(float(one.recon_loss), rel=1e-6)


def test_a_target_beyond_the_width_is_refused() -> None:
    with pytest.raises(VistaError, match=r"sae.target_l0=40.0 must be at most sae.d_sae=32"):
        make_sae(sae_cfg("vanilla", 8, 32, target_l0=40.0))
    with pytest.raises(VistaError, match=r"sae.target_l0_rate=-0.1 must not be negative"):
        make_sae(sae_cfg("gated", 8, 32, target_l0=4.0, target_l0_rate=-0.1))
    assert sae_name(sae_cfg("jumprelu", 8, 32, target_l0=6.0)) == "jumprelu_d32_L0-6_s0"


@pytest.mark.slow
def test_each_penalised_architecture_settles_at_the_target_l0(tmp_path: Path) -> None:
    """Each from its default coefficient, with a different target each: held-out L0 lands within
    20% of the target, where the default coefficients land 2-4x away."""
    store = write_synthetic_store(
        tmp_path / "syn.h5",
        SyntheticConfig(d_model=16, n_features=32, mean_active=3, n_train=30_000, seed=5),
    )
    targets = {"vanilla": 5.0, "gated": 2.5, "jumprelu": 4.0}
    cfgs = [sae_cfg(a, 0, 64, target_l0=t) for a, t in targets.items()]
    paths = train_saes(
        store,
        [*cfgs, *(sae_cfg(a, 0, 64) for a in targets)],
        TrainConfig(max_tokens=300_000, batch_size=256, init_tokens=8192),
        TrainerConfig(logger="none", progress_bar=False, accelerator="cpu"),
        tmp_path / "run",
    )
    with ActivationStore(store) as st:
        x = torch.from_numpy(st.read_rows("validation", 0, 5000).astype(np.float32))

    def l0_of(path: Path) -> float:
        with torch.no_grad():
            return float((load_sae(path).encode(x) > 0).float().sum(1).mean())

    got = {a: l0_of(p) for a, p in zip(targets, paths, strict=False)}
    free = {a: l0_of(p) for a, p in zip(targets, paths[len(targets) :], strict=True)}
    for arch, target in targets.items():
        assert abs(got[arch] - target) <= 0.2 * target, (got, free)
        meta = read_metadata(paths[list(targets).index(arch)])
        coeff = "l0_coeff" if arch == "jumprelu" else "l1_coeff"
        assert meta[f"{coeff}_at_end"] > 0
    assert any(abs(free[a] - t) > 0.5 * t for a, t in targets.items()), free
