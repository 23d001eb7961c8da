"""``vista train-encoder``: train a small encoder (the MNIST CNN) on a registered dataset."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from vista.errors import VistaError
from vista.sources.datasets import DatasetConfig, make_dataset

log = logging.getLogger(__name__)


@dataclass
class EncoderTrainingConfig:
    """How to train the encoder."""

    architecture: str = "mnist_cnn"
    """Which trainable encoder (mnist_cnn)."""
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    """Peak AdamW learning rate (one-cycle schedule)."""
    weight_decay: float = 1e-4
    seed: int = 0


class _Batches(IterableDataset):
    """Shuffled slices of in-memory tensors (per-sample DataLoader collation is the bottleneck here)."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool, seed: int) -> None:
        super().__init__()
        self.x, self.y, self.bs, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.x) + self.bs - 1) // self.bs

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(len(self.x), generator=g)
            self.epoch += 1
        else:
            order = torch.arange(len(self.x))
        for i in range(0, len(order), self.bs):
            idx = order[i : i + self.bs]
            yield self.x[idx], self.y[idx]


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
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 2000) -> float:
    model.eval()
    hits = sum(
        int((model(x[i : i + batch_size]).argmax(dim=1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return hits / max(len(x), 1)


def train_encoder(
    dataset_cfg: DatasetConfig | Any,
    cfg: EncoderTrainingConfig | Any,
    out_dir: str | os.PathLike[str],
    trainer_cfg: Any = None,
    label: str = "",
) -> dict[str, Any]:
    """Train the encoder on the dataset's ``train`` split, report ``val``/``test`` accuracy, save it."""
    from vista.sources.encoders.mnist_cnn import MnistCNN, preprocess_digits, save_mnist_cnn

    if cfg.architecture != "mnist_cnn":
        raise VistaError(f"Unknown trainable encoder {cfg.architecture!r}; available: mnist_cnn.")
    ds = make_dataset(dataset_cfg)
    label = label or next(iter(ds.labels))
    if label not in ds.labels:
        raise VistaError(f"Dataset {ds.name!r} has no label {label!r}; it has {sorted(ds.labels)}.")
    n_classes = len(ds.class_names[label])

    def tensors(split: str) -> tuple[Tensor, Tensor]:
        idx = ds.splits[split]
        return preprocess_digits(ds.load(idx)), torch.as_tensor(ds.labels[label][idx])

    if "train" not in ds.splits:
        raise VistaError(f"Dataset {ds.name!r} has no 'train' split to train an encoder on.")
    x_tr, y_tr = tensors("train")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = MnistCNN(n_classes=n_classes)
    train_data = _Batches(x_tr, y_tr, cfg.batch_size, True, cfg.seed)
    steps = len(train_data) * cfg.epochs
    module = ClassifierModule(model, cfg, steps)
    val_loader = None
    if "val" in ds.splits:
        x_va, y_va = tensors("val")
        val_loader = torch.utils.data.DataLoader(
            _Batches(x_va, y_va, 2000, False, 0), batch_size=None
        )
    tc = trainer_cfg or {}
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator=str(tc.get("accelerator", "auto")),
        devices=1,
        precision=str(tc.get("precision", "32-true")),  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bool(tc.get("progress_bar", True)),
        num_sanity_val_steps=0,
        default_root_dir=str(out_dir),
    )
    trainer.fit(
        module,
        train_dataloaders=torch.utils.data.DataLoader(train_data, batch_size=None),
        val_dataloaders=val_loader,
    )
    model = model.cpu().eval()
    report: dict[str, Any] = {"dataset": ds.name, "label": label, "n_classes": n_classes}
    for split in ("train", "val", "test"):
        if split in ds.splits and len(ds.splits[split]):
            x, y = tensors(split)
            report[f"{split}_accuracy"] = accuracy(model, x, y)
    meta = {
        "n_classes": n_classes,
        "width": 128,
        "class_names": ds.class_names[label],
        "training": {k: getattr(cfg, k) for k in EncoderTrainingConfig.__dataclass_fields__},
        **report,
    }
    save_mnist_cnn(model, Path(out_dir), meta)
    log.info(
        "Encoder saved to %s: test accuracy %.4f",
        out_dir,
        report.get("test_accuracy", float("nan")),
    )
    return meta
