"""Distributed training on CPU: `vista train trainer.devices=2 trainer.strategy=ddp` (gloo).

Two processes with half the per-device batch see the same tokens per step as one process (the
stream shards the store's blocks across ranks without overlap, tested in tests/store), so they
must end at the same model up to the order the data arrives in: the same validation FVU and the
same recovered ground-truth directions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vista.saes.io import load_sae, read_metadata
from vista.sources.synthetic import recovery
from vista.store import ActivationStore


def _vista(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vista", *args], capture_output=True, text=True, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path: Path) -> None:
    store = tmp_path / "syn.h5"
    _vista(
        "synthetic",
        f"out={store}",
        "synthetic.n_train=100000",
        "synthetic.n_validation=4000",
        cwd=tmp_path,
    )
    common = [
        "train",
        f"store={store}",
        "sae=topk",
        "sae.d_sae=256",
        "sae.k=5",
        "train.max_tokens=600000",
        "train.lr=4e-3",
        "train.lr_warmup_steps=10",
        "trainer.logger=csv",
        "trainer.progress_bar=false",
        "trainer.accelerator=cpu",
    ]
    _vista(*common, "train.batch_size=1024", f"out_dir={tmp_path / 'one'}", cwd=tmp_path)
    _vista(
        *common,
        "train.batch_size=512",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        f"out_dir={tmp_path / 'ddp'}",
        cwd=tmp_path,
    )
    with ActivationStore(store) as st:
        true = st.extra("true_directions")
        x = torch.from_numpy(st.read_rows("validation", 0, 4000))
    results = {}
    for name in ("one", "ddp"):
        meta = read_metadata(tmp_path / name / "sae")
        assert meta["trained_tokens"] == 586 * 1024  # ceil(600000 / 1024) steps of 1024 tokens
        sae = load_sae(tmp_path / name / "sae")
        with torch.no_grad():
            x_hat = sae(x).x_hat
        fvu = float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        results[name] = (
            fvu,
            recovery(sae.W_dec.detach().numpy(), true)["recovered"],
            meta["steps"],
        )
    (fvu1, rec1, steps1), (fvu2, rec2, steps2) = results["one"], results["ddp"]
    assert steps1 == steps2  # the same number of optimiser steps over the same tokens
    assert abs(fvu1 - fvu2) <= 0.1 * fvu1, results
    assert rec1 >= 0.9 and rec2 >= 0.9, results
    assert np.isfinite(fvu2)


@pytest.mark.slow
def test_ddp_on_a_sharded_store_equals_ddp_on_its_file(tmp_path: Path) -> None:
    """Two gloo processes training on the sharded copy of a store read the same blocks as on the
    file, so they end at the same SAE, exactly."""
    store = tmp_path / "syn.h5"
    _vista("synthetic", f"out={store}", "synthetic.n_train=20000", "synthetic.n_validation=1000",
           cwd=tmp_path)  # fmt: skip
    _vista("shard", f"store={store}", f"out={tmp_path / 'syn.shards'}", "shard_gb=0.0005",
           cwd=tmp_path)  # fmt: skip
    with ActivationStore(tmp_path / "syn.shards") as st:
        assert len(st.manifest["splits"]["training"]["shards"]) > 2
    for name in ("syn.h5", "syn.shards"):
        _vista("train", f"store={tmp_path / name}", "sae=topk", "sae.d_sae=64", "sae.k=4",
               "train.max_tokens=40000", "train.batch_size=512", "trainer.logger=none",
               "trainer.progress_bar=false", "trainer.accelerator=cpu", "trainer.devices=2",
               "trainer.strategy=ddp", f"out_dir={tmp_path / ('run_' + name)}", cwd=tmp_path)  # fmt: skip
    a = load_sae(tmp_path / "run_syn.h5" / "sae").state_dict()
    b = load_sae(tmp_path / "run_syn.shards" / "sae").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
