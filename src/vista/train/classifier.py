"""``vista train-encoder``: train one of vista's own encoders (MNIST CNN, AlexNet+Transformer) on any dataset."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from vista.errors import VistaError
from vista.sources.datasets import DatasetConfig, make_dataset
from vista.train.config import EncoderTrainingConfig, TrainerConfig

log = logging.getLogger(__name__)


class _Batches(IterableDataset):
    """Shuffled batches of a dataset's images, loaded and preprocessed batch by batch.

    Whole batches at once: per-sample DataLoader collation is the bottleneck for small images,
    and large images never need to be in memory all together.
    """

    def __init__(
        self,
        load: Callable[[np.ndarray], Tensor],
        indices: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int,
    ) -> None:
        super().__init__()
        self.load, self.indices, self.y = load, indices, y
        self.bs, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.indices) + self.bs - 1) // self.bs

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.shuffle:
            g = np.random.default_rng(self.seed * 100_003 + self.epoch)
            order = g.permutation(len(self.indices))
            self.epoch += 1
        else:
            order = np.arange(len(self.indices))
        for i in range(0, len(order), self.bs):
            idx = np.sort(self.indices[order[i : i + self.bs]])
            yield self.load(idx), torch.as_tensor(self.y[idx])


class ClassifierModule(pl.LightningModule):
    def __init__(self, model: nn.Module, cfg: EncoderTrainingConfig, steps: int) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.steps = steps

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        acc = (self.model(x).argmax(dim=1) == y).float().mean()
        self.log("val_acc", acc, prog_bar=True, on_epoch=True, batch_size=len(y))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.cfg.lr, total_steps=self.steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@torch.no_grad()
def accuracy(model: nn.Module, batches: _Batches) -> float:
    model.eval()
    hits = total = 0
    for x, y in batches:
        hits += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return hits / max(total, 1)


def train_encoder(
    dataset_cfg: DatasetConfig,
    cfg: EncoderTrainingConfig,
    out_dir: str | os.PathLike[str],
    trainer_cfg: TrainerConfig | None = None,
) -> dict[str, Any]:
    """Train the encoder on the dataset's ``train`` split, report ``val``/``test`` accuracy, save it."""
    from vista.sources.encoders.trainable import save_trained_encoder, trainable

    arch = trainable(str(cfg.architecture))
    options = dict(cfg.options or {})
    ds = make_dataset(dataset_cfg)
    label = _label(ds, str(cfg.label))
    n_classes = len(ds.class_names[label])
    preprocess = arch.preprocess(options)

    def load(idx: np.ndarray) -> Tensor:
        return preprocess(ds.load(idx))

    def batches(split: str, train: bool = False) -> _Batches:
        bs = int(cfg.batch_size) if train else max(int(cfg.batch_size), 256)
        return _Batches(load, ds.splits[split], ds.labels[label], bs, train, int(cfg.seed))

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        model = arch.build(n_classes=n_classes, **options)
    except TypeError as e:
        raise VistaError(
            f"Bad encoder_training options {options} for {cfg.architecture}: {e}."
        ) from None
    train_data = batches("train", train=True)
    steps = len(train_data) * cfg.epochs
    module = ClassifierModule(model, cfg, steps)
    val_loader = None
    if "val" in ds.splits:
        val_loader = torch.utils.data.DataLoader(batches("val"), batch_size=None)
    trainer = _trainer(trainer_cfg or TrainerConfig(), int(cfg.epochs), out_dir)
    trainer.fit(
        module,
        train_dataloaders=torch.utils.data.DataLoader(train_data, batch_size=None),
        val_dataloaders=val_loader,
    )
    model = model.cpu().eval()
    report: dict[str, Any] = {"dataset": ds.name, "label": label, "n_classes": n_classes}
    for split in ("train", "val", "test"):
        if split in ds.splits and len(ds.splits[split]):
            report[f"{split}_accuracy"] = accuracy(model, batches(split))
    meta = {
        "n_classes": n_classes,
        "class_names": ds.class_names[label],
        "training": dataclasses.asdict(cfg),
        **report,
    }
    save_trained_encoder(model, Path(out_dir), str(cfg.architecture), options, preprocess, meta)
    log.info(
        "Encoder saved to %s: test accuracy %.4f",
        out_dir,
        report.get("test_accuracy", report.get("val_accuracy", float("nan"))),
    )
    return meta


def _label(ds: Any, label: str) -> str:
    """The label to train on (the dataset's first when none is named), checked with the split."""
    label = label or next(iter(ds.labels))
    if label not in ds.labels:
        raise VistaError(f"Dataset {ds.name!r} has no label {label!r}; it has {sorted(ds.labels)}.")
    if "train" not in ds.splits:
        raise VistaError(f"Dataset {ds.name!r} has no 'train' split to train an encoder on.")
    return label


def _trainer(tc: TrainerConfig, epochs: int, out_dir: str | os.PathLike[str]) -> Any:
    """One device, no checkpoints or logger: the encoder trains in minutes and is saved whole."""
    from vista.progress import lightning_progress

    bar, lines = lightning_progress("train-encoder", tc.progress_bar)
    return tc.build(
        max_epochs=epochs,
        accelerator=tc.accelerator,
        devices=1,
        precision=tc.precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bar,
        callbacks=lines,
        num_sanity_val_steps=0,
        default_root_dir=str(out_dir),
    )
