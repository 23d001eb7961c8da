"""``vista train``: check the settings, build the stream, the module and the Lightning trainer; fit;
export the SAEs. The trainer (``trainer``), resuming (``resume``) and the export (``export``) are
their own modules."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

import torch

from vista.errors import Stopped, VistaError
from vista.saes.config import SAEConfig
from vista.saes.registry import config_from_dict, sae_name
from vista.store import ActivationStore, StreamConfig, TokenStream, store_fingerprint
from vista.train.allocator import keep_freed_memory
from vista.train.config import TrainConfig, TrainerConfig
from vista.train.data import TokenBatches
from vista.train.export import export_saes, run_record
from vista.train.launch import wait_for_ranks
from vista.train.module import SAETrainingModule, sweep_names
from vista.train.resume import resume_from
from vista.train.trainer import make_trainer, save_on_stop

log = logging.getLogger(__name__)


def train_saes(
    store: str | os.PathLike[str],
    sae_cfgs: list[SAEConfig] | list[dict[str, Any]],
    train_cfg: TrainConfig,
    trainer_cfg: TrainerConfig,
    out_dir: str | os.PathLike[str],
    export_dirs: list[Path] | None = None,
) -> list[Path]:
    """Train the SAEs of ``sae_cfgs`` together on one pass of ``store``; export each.

    One SAE is exported to ``out_dir/sae``; several to ``out_dir/sae/<name>``; ``export_dirs``
    (one per config) overrides both. Holds ``out_dir``'s lock: a second process training into
    the same directory is refused.
    """
    from vista.lock import output_lock

    with output_lock(out_dir, "train"):
        return _train_saes(store, sae_cfgs, train_cfg, trainer_cfg, out_dir, export_dirs)


def _train_saes(
    store: str | os.PathLike[str],
    sae_cfgs: list[SAEConfig] | list[dict[str, Any]],
    train_cfg: TrainConfig,
    trainer_cfg: TrainerConfig,
    out_dir: str | os.PathLike[str],
    export_dirs: list[Path] | None,
) -> list[Path]:
    tc = _resolved(train_cfg)
    keep_freed_memory()
    out = Path(out_dir)
    with ActivationStore(store) as st:
        d_model = st.split(tc.split).d_model
    cfgs = sae_dicts(sae_cfgs, d_model, tc)
    names = sweep_names(cfgs)
    if export_dirs is not None and len(export_dirs) != len(names):
        raise ValueError("export_dirs needs one directory per SAE config")
    stream_cfg = StreamConfig(
        split=tc.split,
        batch_size=tc.batch_size,
        shuffle=True,
        buffer_tokens=tc.buffer_tokens,
        buffer_gb=tc.buffer_gb,
        readers=tc.readers,
        seed=tc.seed,
        drop_last=True,  # every step sees a full batch; each epoch drops a different remainder
        dtype="stored",  # float16 to the device, cast there (training_step): the same values
    )
    trainer = make_trainer(trainer_cfg, out, tc)
    # train.batch_size is per device: with DDP a step consumes world_size batches.
    n_steps = math.ceil(tc.max_tokens / (tc.batch_size * trainer.world_size))
    trainer.fit_loop.epoch_loop.max_steps = n_steps
    fingerprint = store_fingerprint(store, tc.split)
    module = SAETrainingModule(cfgs, asdict(tc), n_steps, fingerprint)
    ckpt_path = resume_from(out, cfgs, tc, fingerprint)
    if ckpt_path is None:
        # Rank-independent: every DDP rank computes the same scale and b_dec from the same tokens.
        module.initialize_from_sample(_sample_tokens(store, stream_cfg, tc.init_tokens))
    module.data = TokenBatches(store, stream_cfg)
    t0 = time.perf_counter()
    try:
        _fit(trainer, module, out / "checkpoints" / "last.ckpt", ckpt_path, n_steps)
    finally:
        module.data.close()  # the stream's threads end here, whatever Lightning still holds
    if not trainer.is_global_zero:
        wait_for_ranks(trainer.strategy)
        return []
    record = run_record(store, module, trainer.global_step, tc, time.perf_counter() - t0)
    if export_dirs is not None:
        targets = [Path(d) for d in export_dirs]
    else:
        targets = [out / "sae" if len(names) == 1 else out / "sae" / n for n in names]
    paths = export_saes(store, module, names, targets, record, tc.split)
    wait_for_ranks(trainer.strategy)  # the job ends when all of its processes have
    return paths


def _resolved(tc: TrainConfig) -> TrainConfig:
    """The settings checked, with what the budget decides (batch size, warm-up) filled in."""
    bad = tc.problems()
    if bad:
        raise VistaError(f"Invalid training settings: {'; '.join(bad)}.")
    auto, tc = tc, tc.resolved()
    if tc.max_tokens < tc.batch_size:
        raise VistaError(
            f"train.max_tokens={tc.max_tokens} is less than one batch ({tc.batch_size} tokens): "
            "the SAE would take one partial step and stay untrained; give at least "
            f"{tc.batch_size} tokens or a smaller train.batch_size."
        )
    if (auto.batch_size, auto.lr_warmup_steps) != (tc.batch_size, tc.lr_warmup_steps):
        log.info(
            "From the budget of %d tokens: batch_size=%d, lr_warmup_steps=%d.",
            tc.max_tokens,
            tc.batch_size,
            tc.lr_warmup_steps,
        )
    return tc


def sae_dicts(
    sae_cfgs: list[SAEConfig] | list[dict[str, Any]], d_model: int, tc: TrainConfig
) -> list[dict[str, Any]]:
    """Each SAE's full config as a mapping: the store's width filled in, a dead-latent window
    from the budget, every config checked, no two the same."""
    cfgs: list[dict[str, Any]] = []
    for c in sae_cfgs:
        d = asdict(c) if isinstance(c, SAEConfig) else dict(c)
        if not d.get("d_model"):
            d["d_model"] = d_model
        elif int(d["d_model"]) != d_model:
            raise VistaError(
                f"sae.d_model={d['d_model']} but the store's activations have width {d_model}; "
                "set sae.d_model=0 to take the store's."
            )
        cfg = config_from_dict(d)
        if getattr(cfg, "dead_tokens", None) == 0:  # 0 = from the budget
            window = min(10_000_000, max(10 * tc.batch_size, tc.max_tokens // 10))
            cfg = replace(cast(Any, cfg), dead_tokens=window)  # an architecture with AuxK
        if cfg.problems():
            raise VistaError(f"Invalid SAE settings: {'; '.join(cfg.problems())}.")
        if asdict(cfg) in cfgs:
            raise VistaError(
                f"Two SAEs of the sweep have the same configuration ({sae_name(asdict(cfg))}); "
                "drop one, or give them different seeds."
            )
        cfgs.append(asdict(cfg))
    return cfgs


def _fit(trainer: Any, module: Any, last: Path, ckpt_path: str | None, n_steps: int) -> None:
    """``trainer.fit``; a SIGTERM saves ``last`` and becomes ``Stopped`` (never a clean exit)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    loader = torch.utils.data.DataLoader(module.data, batch_size=None, num_workers=0)
    saver = save_on_stop(last)
    trainer.callbacks.append(saver)
    try:
        # A resumed checkpoint is read with torch's restricted unpickler (tensors, plain data).
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:  # a SystemExit with code 0: it must not look like success
        raise Stopped(
            f"Stopped by SIGTERM after step {saver.step} of {n_steps}; nothing was exported and "
            f"a checkpoint is at {last}: run the same command with train.resume=true to continue."
        ) from None


def _sample_tokens(store: str | os.PathLike[str], cfg: StreamConfig, n: int) -> torch.Tensor:
    from dataclasses import replace

    stream = TokenStream(
        store, replace(cfg, rank=0, world_size=1, batch_size=min(n, 65536), drop_last=False)
    )
    got, parts = 0, []
    with contextlib.closing(stream.epoch(0)) as batches:  # its threads end before training starts
        for batch in batches:
            parts.append(torch.from_numpy(batch))
            got += len(batch)
            if got >= n:
                break
    return torch.cat(parts)[:n]
