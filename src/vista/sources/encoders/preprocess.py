"""Images as datasets hold them -> a model's input batch, with PIL-free torch ops.

Datasets hand over one ``(N, H, W[, C])`` array (uint8 in [0, 255] or float in [0, 1]) or a list
of ``(H, W[, C])`` arrays of any size. ``ImagePreprocess`` converts channels, resizes the shorter
side, centre-crops, and normalises; its settings are plain data so trained encoders record them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vista.errors import VistaError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _to_float(x: Tensor) -> Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


@dataclass
class ImagePreprocess:
    """``channels`` (1 = grey, 3 = RGB), then resize + centre crop to ``size`` (0 = keep), then normalise."""

    channels: int = 3
    size: int = 0
    """Output side length (0 = keep the images' own size; they must then all share it)."""
    crop_fraction: float = 1.0
    """The crop's share of the resized shorter side (0.875 = resize to 256, crop 224)."""
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def batch(self, images: np.ndarray | list[np.ndarray]) -> Tensor:
        """``(N, channels, size, size)`` float32."""
        if isinstance(images, np.ndarray) and images.dtype != object:
            x = self._channels_first(_to_float(torch.as_tensor(images)))
            return self._normalise(self._resize(x))
        items = [
            self._channels_first(_to_float(torch.from_numpy(np.array(im)))[None]) for im in images
        ]
        if not self.size:
            shapes = {tuple(t.shape[-2:]) for t in items}
            if len(shapes) > 1:
                raise VistaError(
                    f"The images have different sizes {sorted(shapes)[:3]}...; set encoder.image_size "
                    "so they are resized to one."
                )
        return self._normalise(torch.cat([self._resize(t) for t in items]))

    __call__ = batch

    def _channels_first(self, x: Tensor) -> Tensor:
        if x.ndim == 3:  # (N, H, W) grey
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)[:, :3]
        elif x.ndim != 4:
            raise VistaError(
                f"Images must be (N, H, W) or (N, H, W, C) arrays, got shape {tuple(x.shape)}."
            )
        c = x.shape[1]
        if self.channels == c:
            return x
        if self.channels == 1:
            return x.mean(dim=1, keepdim=True)
        if c == 1:
            return x.expand(-1, self.channels, -1, -1)
        raise VistaError(f"Cannot turn {c}-channel images into {self.channels} channels.")

    def _resize(self, x: Tensor) -> Tensor:
        if not self.size:
            return x
        h, w = x.shape[-2:]
        if h == w == self.size:
            return x
        short = round(self.size / self.crop_fraction)
        nh, nw = (
            (short, max(short, round(w * short / h)))
            if h <= w
            else (max(short, round(h * short / w)), short)
        )
        if (nh, nw) != (h, w):
            x = F.interpolate(
                x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True
            )
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        return x[..., top : top + self.size, left : left + self.size]

    def _normalise(self, x: Tensor) -> Tensor:
        if self.mean:
            mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std or [1.0] * len(self.mean), dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x.contiguous()
