"""The small MNIST CNN vista trains itself (the "oracle" of the concept-dynamics study, docs/originals.md §3.6).

conv(1->32, 3x3) -> ReLU -> maxpool 2 -> conv(32->64, 3x3) -> ReLU -> maxpool 2 -> fc1 (3136->128)
-> ReLU -> fc2 (128->10). Every step is a named module, so any of them can be hooked:
``fc1`` is the 128-d pre-ReLU layer the original SAEs were trained on, ``fc1_act`` its ReLU.
Any dataset trains it: images are turned grey and resized to 28x28.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from vista.sources.encoders.preprocess import ImagePreprocess
from vista.sources.encoders.trainable import TrainableArchitecture, register_trainable

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
LAYERS = ["conv1", "conv1_act", "pool1", "conv2", "conv2_act", "pool2", "fc1", "fc1_act", "fc2"]


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


def digits_preprocess(_: dict[str, Any] | None = None) -> ImagePreprocess:
    """Grey, 28x28, MNIST-normalised."""
    return ImagePreprocess(channels=1, size=28, mean=[MNIST_MEAN], std=[MNIST_STD])


register_trainable(
    "mnist_cnn",
    TrainableArchitecture(
        build=MnistCNN,
        preprocess=digits_preprocess,
        default_layer=lambda _: "fc1",
        blocks=lambda _: list(LAYERS),
    ),
)
