"""Resuming ``vista train``: a checkpoint continues only the run that wrote it (the same SAEs, the
same schedule, the same data, by the store's fingerprint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vista.errors import VistaError
from vista.train.config import TrainConfig


def resume_from(
    out: Path, cfgs: list[dict[str, Any]], tc: TrainConfig, fingerprint: str
) -> str | None:
    """The checkpoint to resume (``train.resume=true``), or None for a fresh run; refused when it
    is missing, when a fresh run would overwrite one, or when it belongs to another run."""
    last = out / "checkpoints" / "last.ckpt"
    if tc.resume:
        if not last.is_file():
            raise VistaError(
                f"train.resume=true but there is no checkpoint at {last}; start without resume."
            )
        same_run(last, cfgs, tc, fingerprint)
        return str(last)
    if last.is_file():
        raise VistaError(
            f"{out} already holds a training checkpoint; pass train.resume=true to continue it "
            "or choose another out_dir."
        )
    return None


def same_run(
    last: Path, cfgs: list[dict[str, Any]], tc: TrainConfig, fingerprint: str = ""
) -> None:
    """Refuse to resume a checkpoint written for other SAEs or another schedule: the result
    would be neither run."""
    from vista.safeload import load_torch

    hp = dict(load_torch(last).get("hyper_parameters") or {})
    then = [dict(c) for c in hp.get("sae_cfgs") or []]
    if then and then != cfgs:
        for i, (a, b) in enumerate(zip(then, cfgs, strict=False)):
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if diff:
                k = diff[0]
                raise VistaError(
                    f"{last} was written for SAE {i} with {k}={a.get(k)!r}, not {b.get(k)!r}; "
                    "resume with the same settings or start in another out_dir."
                )
        raise VistaError(
            f"{last} was written for {len(then)} SAE(s), not {len(cfgs)}; resume with the same "
            "sweep or start in another out_dir."
        )
    then_store = str(hp.get("store_fingerprint") or "")
    if then_store and fingerprint and then_store != fingerprint:
        raise VistaError(
            f"{last} was written while training on other data (store fingerprint {then_store}, "
            f"this store's is {fingerprint}); resume with the store it started on, or start in "
            "another out_dir."
        )
    old = dict(hp.get("train_cfg") or {})
    for k in TrainConfig.RESUME_KEYS:
        if k in old and old[k] != getattr(tc, k):
            raise VistaError(
                f"{last} was written with train.{k}={old[k]!r}, not {getattr(tc, k)!r}; resume "
                "with the same settings or start in another out_dir."
            )
