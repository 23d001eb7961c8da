"""Seed 002's AlexNet + Transformer classifier (docs/originals.md §3.7), trainable by `vista train-encoder`.

AlexNet-style features (conv 11/4 -> ReLU -> BN -> maxpool; conv 5 (2 groups) -> ReLU -> BN ->
maxpool; conv 3; conv 3 (2 groups); conv 3 (2 groups) -> maxpool) -> adaptive average pool to a
``grid`` x ``grid`` map -> ``grid**2`` tokens of width ``n_embd`` -> pre-LN transformer blocks
(bidirectional attention, 4x ReLU MLP) -> final LN -> flatten -> linear head.

Unlike the original, the tokens get learned positional embeddings (the original had none, so its
attention could not tell the 36 grid cells apart). ``transformer.blocks.N`` outputs the residual
stream that seed 002 hooked (block 6 of 16). ``width`` scales the convolution channels, so small
versions train on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vista.errors import VistaError
from vista.sources.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from vista.sources.encoders.trainable import TrainableArchitecture, register_trainable


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head}).")
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.ReLU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_head, d // self.n_head).unbind(2)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = x + F.dropout(
            self.proj(a.transpose(1, 2).reshape(b, t, d)), self.dropout, self.training
        )
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    def __init__(
        self, n_tokens: int, n_embd: int, n_layer: int, n_head: int, dropout: float
    ) -> None:
        super().__init__()
        self.pos_emb = nn.Parameter(torch.zeros(1, n_tokens, n_embd))
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_emb
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)


class AlexNetTransformer(nn.Module):
    def __init__(
        self,
        n_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        n_embd: int = 256,
        n_layer: int = 16,
        n_head: int = 16,
        grid: int = 6,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        c1, c2, c3 = (max(2, round(c * width) // 2 * 2) for c in (96, 256, 384))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(c1),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(c2),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c3, 3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, n_embd, 3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.transformer = Transformer(grid * grid, n_embd, n_layer, n_head, dropout)
        self.head = nn.Linear(grid * grid * n_embd, n_classes)
        for m in self.transformer.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.transformer.pos_emb, std=0.02)

    def tokens(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(2).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.transformer(self.tokens(x)).flatten(1))


def alexnet_preprocess(options: dict[str, Any]) -> ImagePreprocess:
    """Resize 256 -> centre crop 224 (scaled to ``image_size``), ImageNet normalisation."""
    c = int(options.get("in_channels", 3))
    return ImagePreprocess(
        channels=c,
        size=int(options.get("image_size", 224)),
        crop_fraction=0.875,
        mean=IMAGENET_MEAN if c == 3 else [0.5],
        std=IMAGENET_STD if c == 3 else [0.5],
    )


def _build(n_classes: int = 10, image_size: int = 224, **options: Any) -> AlexNetTransformer:
    if image_size < 64:
        raise VistaError(
            f"alexnet_transformer needs images of at least 64 px (its three max-pools), got "
            f"image_size={image_size}; raise encoder.options.image_size."
        )
    return AlexNetTransformer(n_classes=n_classes, **options)


def _blocks(model: Any) -> Any:
    """The transformer's block list (``model.transformer.blocks``)."""
    return model.transformer.blocks


register_trainable(
    "alexnet_transformer",
    TrainableArchitecture(
        build=_build,
        preprocess=alexnet_preprocess,
        default_layer=lambda o: str(min(6, int(o.get("n_layer", 16)) - 1)),
        blocks=lambda m: [f"transformer.blocks.{i}" for i in range(len(_blocks(m)))],
    ),
)
