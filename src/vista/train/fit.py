"""``vista train``: build the stream, the module and the Lightning trainer; fit; export the SAEs."""

from __future__ import annotations

import copy
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from vista import __version__
from vista.errors import Stopped, VistaError
from vista.jsonio import umask_mode
from vista.saes.config import SAEConfig
from vista.saes.io import save_sae
from vista.saes.registry import config_from_dict
from vista.store import ActivationStore, StreamConfig, TokenStream, store_fingerprint
from vista.train.allocator import keep_freed_memory
from vista.train.config import TrainConfig, TrainerConfig
from vista.train.data import TokenBatches
from vista.train.module import SAETrainingModule, sae_name, sweep_names

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


def _save_on_stop(last: Path) -> Any:
    """A callback saving ``last`` when the run is stopped (SIGTERM from a scheduler, Ctrl-C),
    after the step in progress, so the run resumes exactly where it stopped."""
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    class SaveOnStop(pl.Callback):
        step = 0

        def on_exception(self, trainer: Any, module: Any, exc: BaseException) -> None:
            if isinstance(exc, (SIGTERMException, KeyboardInterrupt)):
                self.step = int(trainer.global_step)
                trainer.save_checkpoint(str(last), weights_only=False)  # the full state
                if trainer.is_global_zero:
                    log.info("stopped after step %d; checkpoint saved to %s", self.step, last)

    return SaveOnStop()


def _same_run(
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
    tc = train_cfg
    bad = tc.problems()
    if bad:
        raise VistaError(f"Invalid training settings: {'; '.join(bad)}.")
    auto = tc
    tc = tc.resolved()
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
    keep_freed_memory()
    out = Path(out_dir)
    with ActivationStore(store) as st:
        info = st.split(tc.split)
        store_attrs = st.attrs
    cfgs = []
    for c in sae_cfgs:
        d = asdict(c) if isinstance(c, SAEConfig) else dict(c)
        if not d.get("d_model"):
            d["d_model"] = info.d_model
        elif int(d["d_model"]) != info.d_model:
            raise VistaError(
                f"sae.d_model={d['d_model']} but the store's activations have width {info.d_model}; "
                "set sae.d_model=0 to take the store's."
            )
        cfg = config_from_dict(d)
        if getattr(cfg, "dead_tokens", None) == 0:  # 0 = from the budget
            window = min(10_000_000, max(10 * tc.batch_size, tc.max_tokens // 10))
            cfg = replace(cfg, dead_tokens=window)  # type: ignore[type-var]
        if cfg.problems():
            raise VistaError(f"Invalid SAE settings: {'; '.join(cfg.problems())}.")
        cfgs.append(asdict(cfg))
    for i, c in enumerate(cfgs):
        if c in cfgs[:i]:
            raise VistaError(
                f"Two SAEs of the sweep have the same configuration ({sae_name(c)}); "
                "drop one, or give them different seeds."
            )
    names = sweep_names(cfgs)

    stream_cfg = StreamConfig(
        split=tc.split,
        batch_size=tc.batch_size,
        shuffle=True,
        buffer_tokens=tc.buffer_tokens,
        seed=tc.seed,
        drop_last=True,  # every step sees a full batch; each epoch drops a different remainder
    )
    trainer = _make_trainer(trainer_cfg, out, tc)
    # train.batch_size is per device: with DDP a step consumes world_size batches.
    n_steps = math.ceil(tc.max_tokens / (tc.batch_size * trainer.world_size))
    trainer.fit_loop.epoch_loop.max_steps = n_steps
    fingerprint = store_fingerprint(store, tc.split)
    module = SAETrainingModule(cfgs, asdict(tc), n_steps, fingerprint)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt_path: str | None = None
    if tc.resume:
        if not last.is_file():
            raise VistaError(
                f"train.resume=true but there is no checkpoint at {last}; start without resume."
            )
        ckpt_path = str(last)
        _same_run(last, cfgs, tc, fingerprint)
    else:
        if last.is_file():
            raise VistaError(
                f"{out} already holds a training checkpoint; pass train.resume=true to continue it "
                "or choose another out_dir."
            )
        # Rank-independent: every DDP rank computes the same scale and b_dec from the same tokens.
        module.initialize_from_sample(_sample_tokens(store, stream_cfg, tc.init_tokens))
    data = TokenBatches(store, stream_cfg)
    module.data = data

    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=0)
    t0 = time.perf_counter()
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    saver = _save_on_stop(last)
    trainer.callbacks.append(saver)
    try:
        # A resumed checkpoint is read with torch's restricted unpickler (tensors, plain data).
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:  # a SystemExit with code 0: it must not look like success
        raise Stopped(
            f"Stopped by SIGTERM after step {saver.step} of {n_steps}; nothing was exported and "
            f"a checkpoint is at {last}: run the same command with train.resume=true to continue."
        ) from None
    elapsed = time.perf_counter() - t0
    if not trainer.is_global_zero:
        return []

    meta_common = {
        "vista_version": __version__,
        "store": str(Path(store).resolve()),
        "encoder": store_attrs.get("encoder", store_attrs.get("model", "")),
        "layer": store_attrs.get("layer", ""),
        "token_selection": store_attrs.get("token_selection", ""),
        "dataset": store_attrs.get("dataset", ""),
        "trained_tokens": int(module.tokens_seen),
        "steps": int(trainer.global_step),
        "input_scale_folded": float(module.input_scale),
        "train": asdict(tc),
        "train_seconds": elapsed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    paths = []
    if export_dirs is not None and len(export_dirs) != len(names):
        raise ValueError("export_dirs needs one directory per SAE config")
    sample = training_sample(store, tc.split)
    _check_finite(names, module.saes, "Training of SAE {name} ended with non-finite {what}")
    exports = []
    for i, (name, sae, tracker) in enumerate(zip(names, module.saes, module.trackers, strict=True)):
        exported = copy.deepcopy(sae).cpu().float()
        exported.canonicalize_()  # unit decoder rows (vanilla trains them free)
        exported.fold_input_scale_(float(module.input_scale))
        calibration = _after_training(exported, sample)
        if export_dirs is not None:
            target = Path(export_dirs[i])
        else:
            target = out / "sae" if len(names) == 1 else out / "sae" / name
        meta = {
            **meta_common,
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
        exports.append((name, exported, target, meta))
    # The exported weights too (the input scale folded in, the threshold calibrated): nothing
    # is written unless every SAE is finite.
    _check_finite(
        [e[0] for e in exports],
        [e[1] for e in exports],
        "The export of SAE {name} has non-finite {what}",
    )
    for name, exported, target, meta in exports:
        paths.append(save_sae(exported, target, meta))
        log.info("Exported %s to %s", name, target)
    return paths


def _check_finite(names: list[str], saes: list[Any], sentence: str) -> None:
    """Refuse to export when any parameter or buffer of an SAE is NaN or infinite."""
    for name, sae in zip(names, saes, strict=True):
        broken = sae.non_finite()
        if broken:
            raise VistaError(
                sentence.format(name=name, what=", ".join(broken)) + "; nothing was exported. "
                "Lower train.lr, or check the store for extreme or non-finite values."
            )


def _sample_tokens(store: str | os.PathLike[str], cfg: StreamConfig, n: int) -> torch.Tensor:
    from dataclasses import replace

    stream = TokenStream(
        store, replace(cfg, rank=0, world_size=1, batch_size=min(n, 65536), drop_last=False)
    )
    got, parts = 0, []
    for batch in stream.epoch(0):
        parts.append(torch.from_numpy(batch))
        got += len(batch)
        if got >= n:
            break
    return torch.cat(parts)[:n]


def _make_trainer(t: TrainerConfig, out: Path, tc: TrainConfig) -> Any:
    from lightning.pytorch.callbacks import ModelCheckpoint

    devices: Any = t.devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if t.precision not in ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"):
        raise VistaError(f"Unknown precision {t.precision!r}; use 32-true, bf16-mixed or 16-mixed.")
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=max(1, tc.checkpoint_every_steps),
        save_on_train_epoch_end=False,
    )
    from vista.progress import lightning_progress

    bar, lines = lightning_progress("train", t.progress_bar)
    return t.build(
        max_steps=1,  # set from the world size by the caller
        max_epochs=-1,
        accelerator=t.accelerator,
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        logger=_make_logger(t.logger, out),
        callbacks=[ckpt, *lines],
        plugins=[AtomicCheckpointIO()],
        gradient_clip_val=tc.grad_clip or None,
        log_every_n_steps=max(1, tc.log_every_steps),
        enable_progress_bar=bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        deterministic=t.deterministic,
        default_root_dir=str(out),
    )


def _make_logger(kind: str, out: Path) -> Any:
    from lightning.pytorch import loggers

    # One version directory per (re)start: a resumed run keeps the earlier run's curves.
    if kind == "csv":
        return loggers.CSVLogger(str(out), name="logs")
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(str(out), name="logs")
    if kind == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        return loggers.WandbLogger(project="vista", save_dir=str(out))
    if kind in ("none", "", "false"):
        return False
    raise VistaError(f"Unknown logger {kind!r}; use csv, tensorboard, wandb or none.")


class AtomicCheckpointIO:
    """Lightning checkpoint IO that writes to a temporary file and renames it into place.

    A run killed mid-save (SIGKILL) keeps the previous complete ``last.ckpt``.
    """

    def __new__(cls) -> Any:
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        class _Atomic(TorchCheckpointIO):
            def save_checkpoint(
                self, checkpoint: dict, path: Any, storage_options: Any = None
            ) -> None:
                path = Path(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                os.close(fd)
                try:
                    torch.save(checkpoint, tmp)
                    os.chmod(tmp, umask_mode())
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise

        return _Atomic()
