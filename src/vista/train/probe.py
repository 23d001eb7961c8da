"""The seeds' multi-task linear probe (docs/originals.md §2) as a Lightning module.

One linear head per label on a shared input (no hidden layer, no shared trunk); token inputs are
mean-pooled; the loss is the unweighted sum of the heads' cross-entropies over the labels an image
has (``-1`` = missing, partial labels allowed). Logged as the seeds do: ``train/{label}_loss``,
``train/loss``, ``train/grad_norm`` (global L2 norm of the gradients), ``val/{label}_loss``,
``val/loss``, and per epoch ``val/{label}_acc`` (micro) and ``val/{label}_f1`` (macro).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vista.train.config import MultiTaskProbeConfig


class MultiTaskProbe(pl.LightningModule):
    def __init__(
        self, input_dim: int, n_classes: dict[str, int], lr: float = 1e-3, weight_decay: float = 0.0
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.heads = nn.ModuleDict({k: nn.Linear(input_dim, c) for k, c in n_classes.items()})
        self._val: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.ndim == 3:
            x = x.mean(dim=1)
        return {k: h(x) for k, h in self.heads.items()}

    def _losses(
        self, batch: tuple[Tensor, dict[str, Tensor]]
    ) -> tuple[Tensor, dict[str, Tensor], dict]:
        x, labels = batch
        logits = self(x)
        losses = {}
        for k, y in labels.items():
            if bool((y >= 0).any()):
                losses[k] = F.cross_entropy(logits[k], y, ignore_index=-1)
        total = (
            torch.stack(list(losses.values())).sum()
            if losses
            else logits[next(iter(logits))].sum() * 0
        )
        return total, losses, logits

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        total, losses, _ = self._losses(batch)
        for k, v in losses.items():
            self.log(f"train/{k}_loss", v)
        self.log("train/loss", total, prog_bar=True)
        return total

    def on_after_backward(self) -> None:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads:
            self.log(
                "train/grad_norm", torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
            )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        total, losses, logits = self._losses(batch)
        for k, v in losses.items():
            self.log(f"val/{k}_loss", v)
        self.log("val/loss", total)
        for k, y in batch[1].items():
            self._val.setdefault(k, []).append(
                (logits[k].argmax(-1).cpu().numpy(), y.cpu().numpy())
            )

    def on_validation_epoch_end(self) -> None:
        from sklearn.metrics import f1_score

        for k, parts in self._val.items():
            pred = np.concatenate([p for p, _ in parts])
            true = np.concatenate([t for _, t in parts])
            ok = true >= 0
            if ok.any():
                self.log(f"val/{k}_acc", float((pred[ok] == true[ok]).mean()))
                self.log(
                    f"val/{k}_f1",
                    float(f1_score(true[ok], pred[ok], average="macro", zero_division=0)),
                )
        self._val.clear()

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


class ArrayBatches(torch.utils.data.IterableDataset):
    """Batches of rows of a dense array or scipy-sparse matrix (densified per batch), with labels."""

    def __init__(
        self,
        x: Any,
        labels: dict[str, np.ndarray],
        rows: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int,
        mean: np.ndarray | None,
        std: np.ndarray | None,
    ) -> None:
        self.x, self.labels, self.rows = x, labels, rows
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        rows = self.rows
        if self.shuffle:
            rows = np.random.default_rng([self.seed, self.epoch]).permutation(rows)
            self.epoch += 1
        for a in range(0, len(rows), self.batch_size):
            idx = np.sort(rows[a : a + self.batch_size])
            xb = self.x[idx]
            xb = np.asarray(xb.toarray() if hasattr(xb, "toarray") else xb, dtype=np.float32)
            if self.mean is not None and self.std is not None:
                xb = (xb - self.mean) / self.std
            yield (
                torch.from_numpy(xb),
                {k: torch.from_numpy(v[idx]) for k, v in self.labels.items()},
            )


def column_stats(x: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (1 where constant) of the columns over ``rows``."""
    sub = x[rows]
    mean = np.asarray(sub.mean(axis=0), dtype=np.float64).ravel()
    sq = (
        sub.multiply(sub).mean(axis=0)
        if hasattr(sub, "multiply")
        else (np.asarray(sub, np.float64) ** 2).mean(axis=0)
    )
    std = np.sqrt(np.maximum(np.asarray(sq).ravel() - mean**2, 0))
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def fit_multitask_probe(
    x: Any,
    labels: dict[str, np.ndarray],
    n_classes: dict[str, int],
    train: np.ndarray,
    val: np.ndarray,
    cfg: MultiTaskProbeConfig,
    trainer_cfg: Any,
    log_dir: Any = None,
) -> dict[str, np.ndarray]:
    """Train on rows ``train``; return each label's predictions for rows ``val``."""
    pl.seed_everything(cfg.seed, verbose=False)
    mean, std = column_stats(x, train) if cfg.standardize else (None, None)
    model = MultiTaskProbe(x.shape[1], n_classes, cfg.lr, cfg.weight_decay)
    loaders = [
        torch.utils.data.DataLoader(
            ArrayBatches(x, labels, r, cfg.batch_size, sh, cfg.seed, mean, std), batch_size=None
        )
        for r, sh in ((train, True), (val, False))
    ]
    from lightning.pytorch import loggers

    from vista.progress import lightning_progress

    bar, lines = lightning_progress("probe", trainer_cfg.progress_bar)
    trainer = trainer_cfg.build(
        max_epochs=cfg.epochs,
        accelerator=trainer_cfg.accelerator,
        devices=1,
        precision=trainer_cfg.precision,
        logger=loggers.CSVLogger(str(log_dir), name="probe_logs") if log_dir else False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bar,
        callbacks=lines,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )
    trainer.fit(model, train_dataloaders=loaders[0], val_dataloaders=loaders[1])
    model.eval()
    preds: dict[str, list[np.ndarray]] = {k: [] for k in n_classes}
    with torch.no_grad():
        for xb, _ in loaders[1]:
            for k, v in model(xb).items():
                preds[k].append(v.argmax(-1).numpy())
    return {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in preds.items()}
