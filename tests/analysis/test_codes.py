"""`vista encode`: codes per token and pooled per image, as stores every verb reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from tests.conftest import write_vista_store
from vista.saes.io import load_sae, save_sae
from vista.saes.registry import make_sae
from vista.store import ActivationStore


def test_encode_writes_token_and_pooled_code_stores(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    acts = {
        s: rng.normal(size=(n, 5, 16)).astype(np.float32)
        for s, n in (("training", 12), ("validation", 7))
    }
    labels = {s: {"colour": rng.integers(0, 3, len(a))} for s, a in acts.items()}
    store = write_vista_store(tmp_path / "acts.h5", acts, labels, {"colour": ["r", "g", "b"]})
    torch.manual_seed(0)
    sae = make_sae({"architecture": "topk", "d_model": 16, "d_sae": 64, "k": 4})
    save_sae(sae, tmp_path / "sae")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vista",
            "encode",
            f"sae={tmp_path / 'sae'}",
            f"store={store}",
            f"out={tmp_path / 'codes.h5'}",
            "batch_images=5",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    sae = load_sae(tmp_path / "sae")
    with ActivationStore(store) as src:
        for s in ("training", "validation"):
            x = torch.as_tensor(src.read_rows(s, 0, len(acts[s])).astype(np.float32))
            with torch.no_grad():
                codes = sae.encode(x.reshape(-1, 16)).reshape(len(x), 5, 64)
            with (
                ActivationStore(tmp_path / "codes.h5") as c,
                ActivationStore(tmp_path / "codes.mean.h5") as mean,
                ActivationStore(tmp_path / "codes.max.h5") as mx,
            ):
                n = len(x)
                assert c.split(s).n_tokens == 5 and c.d_model == 64
                np.testing.assert_allclose(
                    c.read_rows(s, 0, n), codes.numpy(), rtol=1e-3, atol=1e-3
                )
                np.testing.assert_allclose(
                    mean.read_rows(s, 0, n), codes.mean(1).numpy(), rtol=1e-3, atol=1e-3
                )
                np.testing.assert_allclose(
                    mx.read_rows(s, 0, n), codes.amax(1).numpy(), rtol=1e-3, atol=1e-3
                )
                for st in (c, mean, mx):
                    assert np.array_equal(st.labels(s)["colour"], labels[s]["colour"])
                    assert st.class_names(s, "colour") == ["r", "g", "b"]
                    assert np.array_equal(st.original_indices(s), src.original_indices(s))
                assert mean.attrs["pooling"] == "mean" and c.attrs["sae_architecture"] == "topk"
