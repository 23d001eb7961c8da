"""Exporting trained SAEs: the input scale folded in, unit decoder rows, a BatchTopK threshold
calibrated, dead latents measured on a sample of the training tokens, and nothing written unless
every SAE is finite."""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vista import __version__
from vista.errors import VistaError
from vista.saes.io import save_sae
from vista.store import ActivationStore
from vista.train.config import TrainConfig

log = logging.getLogger(__name__)


def training_sample(store: str | os.PathLike[str], split: str, tokens: int = 16384) -> torch.Tensor:
    """About ``tokens`` tokens of the split, in 16 blocks spread over it, as float32 rows."""
    import numpy as np

    with ActivationStore(store) as st:
        info = st.split(split)
        rows = max(1, tokens // info.n_tokens)
        block = max(1, rows // 16)
        starts = np.unique(np.linspace(0, max(0, info.n_rows - block), 16).astype(int))
        parts = [st.read_rows(split, int(s), int(s) + block) for s in starts]
    x = np.concatenate(parts).reshape(-1, info.d_model).astype(np.float32)
    return torch.from_numpy(x)


@torch.no_grad()
def _after_training(sae: Any, sample: torch.Tensor) -> dict[str, Any]:
    """Calibrate a BatchTopK-family inference threshold on the sample (mean L0 = k there), and
    measure on it what evaluation measures: the latents that never fire, the mean L0."""
    out: dict[str, Any] = {"calibration_tokens": int(sample.shape[0])}
    if hasattr(sae, "calibrate_threshold_"):
        out["inference_threshold"] = sae.calibrate_threshold_(sample)
    fires = torch.zeros(sae.d_sae, dtype=torch.bool)
    l0 = 0.0
    for s in range(0, sample.shape[0], 4096):
        codes = sae.encode(sample[s : s + 4096])
        fires |= (codes > 0).any(dim=0).cpu()
        l0 += float((codes > 0).sum())
    out["dead_on_sample"] = float((~fires).float().mean())
    out["l0_on_sample"] = l0 / max(1, sample.shape[0])
    return out


def check_finite(names: list[str], saes: list[Any], sentence: str) -> None:
    """Refuse to export when any parameter or buffer of an SAE is NaN or infinite."""
    for name, sae in zip(names, saes, strict=True):
        broken = sae.non_finite()
        if broken:
            raise VistaError(
                sentence.format(name=name, what=", ".join(broken)) + "; nothing was exported. "
                "Lower train.lr, or check the store for extreme or non-finite values."
            )


def run_record(
    store: str | os.PathLike[str], module: Any, steps: int, tc: TrainConfig, seconds: float
) -> dict[str, Any]:
    """What every exported SAE of one run records about the run."""
    with ActivationStore(store) as st:
        attrs = st.attrs
    return {
        "vista_version": __version__,
        "store": str(Path(store).resolve()),
        "encoder": attrs.get("encoder", attrs.get("model", "")),
        "layer": attrs.get("layer", ""),
        "token_selection": attrs.get("token_selection", ""),
        "dataset": attrs.get("dataset", ""),
        "trained_tokens": int(module.tokens_seen),
        "steps": int(steps),
        "input_scale_folded": float(module.input_scale),
        "train": asdict(tc),
        "train_seconds": seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def export_saes(
    store: str | os.PathLike[str],
    module: Any,
    names: list[str],
    targets: list[Path],
    record: dict[str, Any],
    split: str,
) -> list[Path]:
    """Export each SAE of the trained ``module`` to its target directory; refused, with nothing
    written, when any SAE (trained or exported) holds a non-finite value."""
    sample = training_sample(store, split)
    check_finite(names, list(module.saes), "Training of SAE {name} ended with non-finite {what}")
    exports = []
    for i, (name, sae, tracker) in enumerate(zip(names, module.saes, module.trackers, strict=True)):
        exported = copy.deepcopy(sae).cpu().float()
        exported.canonicalize_()  # unit decoder rows (vanilla trains them free)
        exported.fold_input_scale_(float(module.input_scale))
        calibration = _after_training(exported, sample)
        meta = {
            **record,
            "name": name,
            # Dead as evaluation counts it (never fires on the sample of training tokens), and
            # as the AuxK tracker saw it (no firing within its window of the run).
            "dead_at_end": calibration.pop("dead_on_sample"),
            "dead_in_window": float(tracker.dead_mask().float().mean()),
            **calibration,
        }
        if getattr(sae.cfg, "target_l0", 0.0):
            coeff = "l1_coeff" if hasattr(sae.cfg, "l1_coeff") else "l0_coeff"
            meta[f"{coeff}_at_end"] = getattr(sae.cfg, coeff) * module.sparsity_factor(i)
        exports.append((name, exported, meta))
    # The exported weights too (the input scale folded in, the threshold calibrated): nothing
    # is written unless every SAE is finite.
    check_finite(
        [e[0] for e in exports],
        [e[1] for e in exports],
        "The export of SAE {name} has non-finite {what}",
    )
    paths = []
    for (name, exported, meta), target in zip(exports, targets, strict=True):
        paths.append(save_sae(exported, target, meta))
        log.info("Exported %s to %s", name, target)
    return paths
