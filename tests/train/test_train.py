"""Training: learning happens, dead tracking, and an interrupted run resumes to the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import sae_cfg, write_vista_store
from vista.errors import VistaError
from vista.saes import TopKConfig
from vista.saes.io import load_sae, read_metadata
from vista.train.config import TrainConfig, TrainerConfig
from vista.train.fit import train_saes
from vista.train.module import SAETrainingModule, lr_factor
from vista.train.step import DeadLatentTracker


def _sparse_store(path: Path, n: int = 4000, d: int = 16, n_dirs: int = 32, seed: int = 0) -> Path:
    """Sparse non-negative combinations of a few unit directions (scaled, offset)."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n_dirs, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    coef = rng.exponential(size=(n, n_dirs)) * (rng.random((n, n_dirs)) < 3 / n_dirs)
    x = (coef @ dirs * 5.0 + 2.0).astype(np.float32)
    return write_vista_store(path, {"training": x, "validation": x[:500]})


def _cfgs(max_tokens: int, **train: object) -> tuple[TopKConfig, TrainConfig, TrainerConfig]:
    return (
        TopKConfig(d_sae=64, k=4, dead_tokens=2000, k_aux=16),
        TrainConfig(
            max_tokens=max_tokens,
            batch_size=128,
            lr=3e-3,
            lr_warmup_steps=5,
            init_tokens=1024,
            checkpoint_every_steps=10,
            log_every_steps=5,
            buffer_tokens=1024,
            **train,  # type: ignore[arg-type]
        ),
        TrainerConfig(accelerator="cpu", progress_bar=False, logger="csv"),
    )


def test_training_reduces_fvu_and_exports_folded_weights(tmp_path: Path) -> None:
    store = _sparse_store(tmp_path / "s.h5")
    sae_cfg, tc, trc = _cfgs(60_000)
    (path,) = train_saes(store, [sae_cfg], tc, trc, tmp_path / "run")
    sae = load_sae(path)
    meta = read_metadata(path)
    assert meta["trained_tokens"] == 469 * 128 and meta["steps"] == 469  # full batches only
    from vista.metrics.reconstruction import fvu
    from vista.store import ActivationStore

    with ActivationStore(store) as st:
        x = torch.from_numpy(st.read_rows("validation", 0, 500).astype(np.float32))
    assert fvu(x, sae(x).x_hat) < 0.2  # raw (unscaled) inputs: the input scale is folded in
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    assert (tmp_path / "run/logs/version_0/metrics.csv").is_file()


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    tmp_path: Path, monkeypatch
) -> None:
    store = _sparse_store(tmp_path / "s.h5")
    sae_cfg, tc, trc = _cfgs(128 * 40)
    (ref_path,) = train_saes(store, [sae_cfg], tc, trc, tmp_path / "ref")

    class Killed(Exception):
        pass

    def die_at_step_25(self, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == 25:
            raise Killed

    monkeypatch.setattr(SAETrainingModule, "on_train_batch_end", die_at_step_25, raising=False)
    with pytest.raises(Killed):
        train_saes(store, [sae_cfg], tc, trc, tmp_path / "run")
    monkeypatch.undo()
    assert (tmp_path / "run/checkpoints/last.ckpt").is_file()
    assert not (tmp_path / "run/sae").exists()
    with pytest.raises(VistaError, match="train.resume=true"):
        train_saes(store, [sae_cfg], tc, trc, tmp_path / "run")
    (path,) = train_saes(
        store, [sae_cfg], TrainConfig(**{**tc.__dict__, "resume": True}), trc, tmp_path / "run"
    )
    assert (
        tmp_path / "run/logs/version_0/metrics.csv"
    ).is_file()  # the first attempt's curves stay
    assert (tmp_path / "run/logs/version_1/metrics.csv").is_file()
    ref, got = load_sae(ref_path), load_sae(path)
    assert read_metadata(path)["trained_tokens"] == read_metadata(ref_path)["trained_tokens"]
    for name, tensor in ref.state_dict().items():
        torch.testing.assert_close(got.state_dict()[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_dead_tracker_counts_tokens_since_firing() -> None:
    t = DeadLatentTracker(d_sae=3, dead_tokens=100)
    t.update(torch.tensor([True, False, False]), 60)
    t.update(torch.tensor([False, True, False]), 50)
    assert t.tokens_since_fired.tolist() == [50, 0, 110]
    assert t.dead_mask().tolist() == [False, False, True]


def test_lr_schedule_warms_up_holds_and_decays() -> None:
    assert lr_factor(0, 100, 10, 0.2) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.2) == pytest.approx(1.0)
    assert lr_factor(50, 100, 10, 0.2) == 1.0
    assert lr_factor(90, 100, 10, 0.2) == pytest.approx(0.5)


def test_default_learning_rate_scales_with_width_and_architecture() -> None:
    """0 = 2e-4 / sqrt(d_sae / 2**14) (sparsify's rule), doubled for MP; a set rate is used as is."""
    cfgs = [sae_cfg("topk", 8, 256), sae_cfg("mp", 8, 1024)]
    module = SAETrainingModule(cfgs, {"max_tokens": 1000}, n_steps=10)
    opt = module.configure_optimizers()["optimizer"]
    lrs = [g["initial_lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([2e-4 * 8, 2 * 2e-4 * 4])
    module = SAETrainingModule(cfgs, {"max_tokens": 1000, "lr": 3e-3}, n_steps=10)
    opt = module.configure_optimizers()["optimizer"]
    assert [g["initial_lr"] for g in opt.param_groups] == [3e-3, 3e-3]


def test_a_wrong_d_model_is_explained(tmp_path: Path) -> None:
    store = _sparse_store(tmp_path / "s.h5", n=200)
    sae_cfg, tc, trc = _cfgs(1000)
    sae_cfg.d_model = 99
    with pytest.raises(VistaError, match="width 16"):
        train_saes(store, [sae_cfg], tc, trc, tmp_path / "run")


def test_the_same_seed_gives_the_same_model_and_a_sweep_trains_each_variant(tmp_path: Path) -> None:
    store = _sparse_store(tmp_path / "s.h5")
    _, tc, trc = _cfgs(20_000, sparsity_warmup_steps=20, b_dec_init="geometric_median")
    sweep = [
        {"architecture": "topk", "d_sae": 64, "k": 4},
        {"architecture": "jumprelu", "d_sae": 64},
        {"architecture": "vanilla", "d_sae": 64},
        {"architecture": "gated", "d_sae": 64},
    ]
    first = train_saes(store, sweep, tc, trc, tmp_path / "a")
    second = train_saes(store, sweep, tc, trc, tmp_path / "b")
    assert [p.name for p in first] == [
        "topk_d64_k4_s0",
        "jumprelu_d64_l0-0.02_s0",
        "vanilla_d64_l1-0.1_s0",
        "gated_d64_l1-1_s0",
    ]
    for p, q in zip(first, second, strict=True):
        a, b = load_sae(p), load_sae(q)
        for (name, t), (_, u) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(t, u), (p.name, name)
        torch.testing.assert_close(a.W_dec.norm(dim=1), torch.ones(64))  # canonical on export


@pytest.mark.parametrize(
    "arch", ["topk", "batchtopk", "matryoshka", "jumprelu", "gated", "vanilla", "mp"]
)
def test_bf16_autocast_training_step_is_finite_and_keeps_fp32_state(arch: str) -> None:
    from vista.saes import make_sae

    sae = make_sae(sae_cfg(arch, 16, 64)).train()
    x = torch.randn(256, 16)
    sae.init_from_data_(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sae.training_forward(x, torch.zeros(64, dtype=torch.bool))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in sae.named_parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_tensorboard_and_offline_wandb_logging(logger: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    store = _sparse_store(tmp_path / "s.h5", n=1000)
    sae_cfg, tc, _ = _cfgs(4000)
    trc = TrainerConfig(accelerator="cpu", progress_bar=False, logger=logger)
    train_saes(store, [sae_cfg], tc, trc, tmp_path / "run")
    if logger == "tensorboard":
        assert list((tmp_path / "run" / "logs").glob("version_0/events.out.tfevents.*"))
    else:
        runs = list((tmp_path / "run").glob("wandb/offline-run-*"))
        assert runs and list(runs[0].glob("*.wandb"))


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    store = _sparse_store(tmp_path / "s.h5", n=20000)
    args = [
        sys.executable,
        "-m",
        "vista",
        "train",
        f"store={store}",
        "sae=jumprelu",
        "sae.d_sae=64",
        "train.max_tokens=300000",
        "train.batch_size=128",
        "train.lr=3e-3",
        "train.checkpoint_every_steps=200",
        "trainer.progress_bar=false",
    ]
    ref = subprocess.run([*args, f"out_dir={tmp_path / 'ref'}"], capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "run"
    proc = subprocess.Popen([*args, f"out_dir={run}"], stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 600
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # let it train on past the checkpoint
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "sae").exists()
    resumed = subprocess.run(
        [*args, f"out_dir={run}", "train.resume=true"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_sae(tmp_path / "ref" / "sae"), load_sae(run / "sae")
    assert (
        read_metadata(run / "sae")["trained_tokens"]
        == read_metadata(tmp_path / "ref" / "sae")["trained_tokens"]
    )
    for name, tensor in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_batchtopk_inference_l0_is_k_after_a_short_run_and_dead_is_counted_as_evaluation_does(
    tmp_path: Path,
) -> None:
    from vista.saes import BatchTopKConfig
    from vista.store import ActivationStore

    store = _sparse_store(tmp_path / "s.h5", n=4000)
    _, tc, trc = _cfgs(128 * 300)
    cfg = BatchTopKConfig(d_sae=64, k=4, dead_tokens=10_000_000, k_aux=16)  # window > the run
    (path,) = train_saes(store, [cfg], tc, trc, tmp_path / "run")
    sae, meta = load_sae(path), read_metadata(path)
    with ActivationStore(store) as st:
        x = torch.from_numpy(st.read_rows("validation", 0, 500).astype(np.float32))
    codes = sae.encode(x)
    assert float((codes > 0).sum(1).float().mean()) == pytest.approx(4.0, rel=0.1)
    assert meta["l0_on_sample"] == pytest.approx(4.0, rel=0.02)
    never = float(((codes > 0).sum(0) == 0).float().mean())
    # dead_at_end counts latents that never fire on a training sample, as evaluation does on its
    # split; the AuxK tracker's window (10M tokens) never closed in this 38k-token run.
    assert meta["dead_in_window"] == 0.0
    assert meta["dead_at_end"] == pytest.approx(never, abs=0.1)


def test_sweep_names_tell_apart_configs_the_short_name_does_not(tmp_path: Path) -> None:
    from vista.train.module import sweep_names

    a = {"architecture": "matryoshka", "d_sae": 64, "k": 4, "group_sizes": [16, 16, 32]}
    b = {**a, "group_sizes": [32, 32]}
    names = sweep_names([a, b, {"architecture": "topk", "d_sae": 64, "k": 4}])
    assert names[2] == "topk_d64_k4_s0"
    assert names[0].startswith("matryoshka_d64_k4_s0_") and names[1].startswith(
        "matryoshka_d64_k4_s0_"
    )
    assert names[0] != names[1] and sweep_names([b, a])[::-1] == names[:2]
    store = _sparse_store(tmp_path / "s.h5", n=512)
    sae, tc, trc = _cfgs(512)
    with pytest.raises(VistaError, match=r"same configuration \(topk_d64_k4_s0\).*different seeds"):
        train_saes(store, [sae, sae], tc, trc, tmp_path / "run")
