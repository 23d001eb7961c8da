"""Small run directories with real images: sklearn's 8x8 digits, their pixels as activations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.analysis.planted import identity_sae
from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.registry import ANALYSES
from vista.analysis.runner import resolve_names, run_analyses
from vista.saes.io import save_sae
from vista.sources.datasets import DatasetConfig, make_dataset
from vista.store import SplitSpec, StoreWriter

XSS = "<script>alert(1)</script>"


LONG = "a" * 300
"""A class name of 300 characters without a space."""


def digits_run(run: Path, tokens: bool = False, xss: bool = False, long_name: bool = False) -> Path:
    """``run/`` with a store of the digits' pixels (64-d, or 16 tokens of 2x2 pixels), an
    identity SAE over them, and every analysis that applies, as ``vista run`` leaves it."""
    ds = make_dataset(DatasetConfig(name="digits"))
    idx = ds.split_indices(ds.store_splits["validation"])
    img = ds.images[idx].astype(np.float32) / 16.0  # (N, 8, 8)
    if tokens:  # a 4x4 grid of 2x2 patches
        acts = img.reshape(-1, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(-1, 16, 4)
    else:
        acts = img.reshape(len(img), 64)
    digit = ds.labels["digit"][idx]
    parity = digit % 2
    names = {
        "digit": ds.class_names["digit"],
        "parity": [XSS, "odd & 'quoted'"]
        if xss
        else [LONG, "odd"]
        if long_name
        else ["even", "odd"],
    }
    spec = {"validation": SplitSpec(len(idx), acts.shape[-1], 16 if tokens else None, names)}
    attrs = {
        "encoder": "pixels",
        "layer": "input",
        "token_selection": "patches" if tokens else "all",
        "dataset": "digits",
        "dataset_config": json.dumps({"name": "digits"}),
    }
    store = run / "activations.h5"
    run.mkdir(parents=True, exist_ok=True)
    with StoreWriter(store, spec, attrs, dtype="float32", resume=False) as w:
        w.append("validation", acts, {"digit": digit, "parity": parity}, original_indices=idx)
        w.finish()
    sae = identity_sae(acts.shape[-1])
    save_sae(sae, run / "sae")
    ctx = Context(sae, store, AnalysisSettings(n_boot=50, n_perm=50), sae_path=str(run / "sae"))
    cfgs = {name: spec.config() for name, spec in ANALYSES.items()}
    cfgs["probe"].epochs = 1
    cfgs["ablation"].ks = sorted({2, min(8, sae.d_sae)})  # a k beyond the width is refused
    names_, _ = resolve_names(["all"])
    run_analyses(ctx, names_, cfgs, run, explicit=False)
    return run
