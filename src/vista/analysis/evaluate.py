"""``vista evaluate``: one streaming pass over a store split, then pure metrics.

The pass keeps per-latent counts, float64 reconstruction statistics and the mean-pooled raw
activations and codes of each image (``N x d`` arrays: memory grows with images, never with
tokens). Alignment and probes run on the pooled arrays afterwards.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vista import __version__
from vista.analysis.alignment import feature_alignment
from vista.analysis.probes import ProbeConfig, probe_comparison
from vista.errors import VistaError
from vista.metrics.reconstruction import ReconstructionAccumulator
from vista.metrics.sparsity import SparsityAccumulator
from vista.saes import SAE
from vista.store import ActivationStore
from vista.store.stream import iter_row_blocks

log = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What the streaming pass gathered."""

    health: dict[str, Any]
    reconstruction: dict[str, Any]
    pooled_raw: np.ndarray
    """``(N, d_model)`` per-image mean of the activations."""
    pooled_codes: np.ndarray
    """``(N, d_sae)`` per-image mean of the SAE codes."""
    firing_counts: np.ndarray = field(repr=False)


@torch.no_grad()
def streaming_pass(
    sae: SAE,
    store_path: str | os.PathLike[str],
    split: str,
    batch_tokens: int = 16384,
    device: str = "cpu",
) -> PassResult:
    with ActivationStore(store_path) as st:
        info = st.split(split)
    if info.d_model != sae.d_model:
        raise VistaError(
            f"The SAE takes {sae.d_model}-d inputs but split {split!r} of {str(store_path)!r} holds "
            f"{info.d_model}-d activations; evaluate it on the store it was trained for."
        )
    sae = sae.to(device).eval()
    t = info.n_tokens
    rows_per_block = max(1, batch_tokens // t)
    sparsity = SparsityAccumulator(sae.d_sae)
    recon = ReconstructionAccumulator()
    pooled_raw = np.zeros((info.n_rows, info.d_model), dtype=np.float32)
    pooled_codes = np.zeros((info.n_rows, sae.d_sae), dtype=np.float32)
    for start, rows in iter_row_blocks(store_path, split, rows_per_block):
        n = len(rows)
        x = torch.from_numpy(np.asarray(rows, dtype=np.float32)).to(device).reshape(n * t, -1)
        if sae.encodes_instances:  # pursuit over each image's tokens together
            codes = sae.encode_instances(x.view(n, t, -1)).reshape(n * t, -1)
        else:
            codes = sae.encode(x)
        x_hat = sae.decode(codes)
        sparsity.update(codes, t)
        recon.update(x, x_hat)
        pooled_raw[start : start + n] = x.view(n, t, -1).mean(dim=1).cpu().numpy()
        pooled_codes[start : start + n] = codes.view(n, t, -1).mean(dim=1).cpu().numpy()
    return PassResult(
        health=sparsity.result(),
        reconstruction=recon.result(),
        pooled_raw=pooled_raw,
        pooled_codes=pooled_codes,
        firing_counts=sparsity.counts.copy(),
    )


def evaluate(
    sae: SAE,
    store_path: str | os.PathLike[str],
    *,
    split: str = "validation",
    labels: list[str] | None = None,
    batch_tokens: int = 16384,
    device: str = "cpu",
    probe: ProbeConfig | None = None,
    top_features: int = 20,
) -> tuple[dict[str, Any], PassResult]:
    """The ``evaluation_results.json`` document (VISTA schema + fvu/explained variance)."""
    probe = probe or ProbeConfig()
    t0 = time.perf_counter()
    with ActivationStore(store_path) as st:
        label_arrays = st.labels(split, labels or None)
        names = {k: st.class_names(split, k) for k in label_arrays}
    res = streaming_pass(sae, store_path, split, batch_tokens, device)
    log.info("Streaming pass over %s done in %.1fs.", split, time.perf_counter() - t0)
    alignment, probes = {}, {}
    for lname, y in label_arrays.items():
        alignment[lname] = feature_alignment(res.pooled_codes, y, names[lname], top_features)
        probes[lname] = probe_comparison(res.pooled_raw, res.pooled_codes, y, names[lname], probe)
    doc = {
        "sae_health": res.health,
        "reconstruction_quality": res.reconstruction,
        "feature_demographic_alignment": alignment,
        "probe_comparison": probes,
        "_metadata": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "vista_version": __version__,
            "store": str(Path(store_path).resolve()),
            "split": split,
            "labels": list(label_arrays),
            "architecture": sae.cfg.architecture,
            "d_model": sae.d_model,
            "d_sae": sae.d_sae,
            "probe": asdict(probe),
            "seconds": time.perf_counter() - t0,
        },
    }
    return doc, res
