"""Thumbnails of dataset images and per-token heatmap overlays, each written once, small."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class Thumbnails:
    """Writes ``img/<dataset index>.png`` on first request; ``None`` when images are unavailable.

    The dataset is rebuilt from the configuration the ``exemplars`` result records (the one
    extraction used); any failure to do so (a store from elsewhere, a dataset not on this machine)
    is reported once and the report shows text instead of images.
    """

    def __init__(self, dataset_cfg: dict[str, Any], out_dir: Path, size: int = 64) -> None:
        self.out = out_dir / "img"
        self.size = size
        self.dataset: Any = None
        self.why = ""
        self._done: dict[int, str] = {}
        try:
            from vista.sources.datasets import make_dataset
            from vista.sources.datasets.base import as_dataset_config

            cfg = {k: v for k, v in dataset_cfg.items() if k != "limit"}
            self.dataset = make_dataset(as_dataset_config(cfg))
        except Exception as e:  # any reason the images cannot be read: say it, keep going
            self.why = f"images of dataset {dataset_cfg.get('name', '?')!r} are unavailable ({e})"
            log.info("Report without thumbnails: %s.", self.why)

    def __call__(self, index: int) -> str | None:
        """Relative path of the thumbnail of dataset image ``index``."""
        if self.dataset is None or index < 0:
            return None
        if index not in self._done:
            try:
                img = as_uint8(np.asarray(self.dataset.load(np.array([index]))[0]))
            except Exception as e:
                log.info("Image %d could not be read: %s", index, e)
                return None
            self.out.mkdir(parents=True, exist_ok=True)
            name = f"{index}.png"
            save_png(resize(img, self.size), self.out / name)
            self._done[index] = f"img/{name}"
        return self._done[index]

    def array(self, index: int) -> np.ndarray | None:
        if self.dataset is None:
            return None
        return resize(as_uint8(np.asarray(self.dataset.load(np.array([index]))[0])), self.size)


def as_uint8(img: np.ndarray) -> np.ndarray:
    """Any image array (float in [0, 1] or uint8, grey or RGB) as uint8."""
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return img


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Longest side to ``size``: small images are enlarged by an integer factor (crisp digits)."""
    from PIL import Image

    h, w = img.shape[:2]
    if max(h, w) <= size // 2:
        f = size // max(h, w)
        return np.repeat(np.repeat(img, f, axis=0), f, axis=1)
    scale = size / max(h, w)
    pil = Image.fromarray(img).resize((max(1, round(w * scale)), max(1, round(h * scale))))
    return np.asarray(pil)


def save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(img).save(path, optimize=True)


def grid_side(n: int) -> int:
    """The side of the square grid ``n`` patch tokens form, or 0 when they form none."""
    side = round(np.sqrt(n))
    return side if side * side == n else 0


def heatmap_overlay(img: np.ndarray, tokens: np.ndarray, prefix: int, path: Path) -> bool:
    """Draw the patch tokens' activations (a square grid after ``prefix`` tokens) over ``img``.

    False when the tokens do not form a square grid (no overlay is possible)."""
    from PIL import Image

    patches = np.asarray(tokens[prefix:], dtype=np.float32)
    side = grid_side(len(patches))
    if side == 0:
        return False
    grid = patches.reshape(side, side)
    top = float(grid.max())
    heat = np.clip(grid / top, 0, 1) if top > 0 else np.zeros_like(grid)
    h, w = img.shape[:2]
    big = np.asarray(
        Image.fromarray((heat * 255).astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST)
    )
    rgb = img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)
    red = np.zeros_like(rgb)
    red[..., 0] = 255
    alpha = (big.astype(np.float32) / 255.0 * 0.6)[..., None]
    out = (rgb * (1 - alpha) + red * alpha).astype(np.uint8)
    save_png(out, path)
    return True
