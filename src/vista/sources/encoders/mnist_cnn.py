"""The small MNIST CNN vista trains itself (the "oracle" of the concept-dynamics study, SPEC 3.6).

conv(1->32, 3x3) -> ReLU -> maxpool 2 -> conv(32->64, 3x3) -> ReLU -> maxpool 2 -> fc1 (3136->128)
-> ReLU -> fc2 (128->10). Every step is a named module, so any of them can be hooked:
``fc1`` is the 128-d pre-ReLU layer the original SAEs were trained on, ``fc1_act`` its ReLU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vista.errors import VistaError
from vista.sources.encoders.base import Encoder, EncoderConfig, register_encoder

WEIGHTS = "encoder.safetensors"
CONFIG = "encoder.json"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class MnistCNN(nn.Module):
    def __init__(self, n_classes: int = 10, width: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv1_act = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv2_act = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 7 * 7, width)
        self.fc1_act = nn.ReLU()
        self.fc2 = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.conv1_act(self.conv1(x)))
        x = self.pool2(self.conv2_act(self.conv2(x)))
        return self.fc2(self.fc1_act(self.fc1(self.flatten(x))))


def preprocess_digits(images: np.ndarray) -> Tensor:
    """``(n, 28, 28)`` images (uint8 or float in [0, 1]) -> normalised ``(n, 1, 28, 28)`` float32."""
    x = torch.as_tensor(np.asarray(images))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.mean(dim=-1)
    if x.ndim != 3:
        raise VistaError(
            f"The MNIST CNN takes (n, 28, 28) grey images, got shape {tuple(x.shape)}."
        )
    return ((x - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def save_mnist_cnn(model: MnistCNN, directory: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_c = directory / (WEIGHTS + ".tmp"), directory / (CONFIG + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_w))
    tmp_c.write_text(json.dumps({"architecture": "mnist_cnn", **meta}, indent=2) + "\n")
    tmp_w.replace(directory / WEIGHTS)
    tmp_c.replace(directory / CONFIG)


def load_mnist_cnn(directory: str | Path) -> tuple[MnistCNN, dict[str, Any]]:
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / WEIGHTS).is_file() or not (d / CONFIG).is_file():
        raise VistaError(
            f"No trained MNIST CNN in {str(d)!r} (it needs {WEIGHTS} and {CONFIG}); train one "
            f"with `vista train-encoder out_dir={d}` or set encoder.path."
        )
    meta = json.loads((d / CONFIG).read_text())
    model = MnistCNN(n_classes=int(meta.get("n_classes", 10)), width=int(meta.get("width", 128)))
    model.load_state_dict(load_file(str(d / WEIGHTS)))
    return model, meta


@register_encoder("mnist_cnn")
def build_mnist_cnn(cfg: EncoderConfig) -> Encoder:
    if not cfg.path:
        raise VistaError(
            "encoder.path is not set: the MNIST CNN needs trained weights; run "
            "`vista train-encoder out_dir=DIR` and pass encoder.path=DIR."
        )
    model, meta = load_mnist_cnn(cfg.path)
    return Encoder(name="mnist_cnn", model=model, preprocess=preprocess_digits, meta=meta)
