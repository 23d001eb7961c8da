"""Hooks: finding modules, capturing outputs, selecting tokens."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vista.errors import VistaError
from vista.sources.encoders.mnist_cnn import MnistCNN
from vista.sources.hooks import capture_tokens, find_module, select_tokens


def test_find_module_by_path_and_glob() -> None:
    m = MnistCNN()
    assert find_module(m, "fc1")[1] is m.fc1
    assert find_module(m, "fc1_a*")[1] is m.fc1_act
    with pytest.raises(VistaError, match="matches 2 modules"):
        find_module(m, "conv?")
    with pytest.raises(VistaError, match="No module named 'nope'"):
        find_module(m, "nope")


def test_captured_activations_equal_the_module_output() -> None:
    torch.manual_seed(0)
    m = MnistCNN().eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        h = m.pool2(m.conv2_act(m.conv2(m.pool1(m.conv1_act(m.conv1(x))))))
        fc1 = m.fc1(m.flatten(h))
    torch.testing.assert_close(capture_tokens(m, m.fc1, x, "all"), fc1)
    conv = capture_tokens(m, m.conv2, x, "all")  # (B, C, H, W) -> (B, H*W, C)
    with torch.no_grad():
        ref = m.conv2(m.pool1(m.conv1_act(m.conv1(x))))
    torch.testing.assert_close(conv, ref.flatten(2).transpose(1, 2))
    assert conv.shape == (4, 14 * 14, 64)


def test_token_selections() -> None:
    out = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    torch.testing.assert_close(select_tokens(out, "cls", prefix_tokens=1), out[:, 0])
    torch.testing.assert_close(select_tokens(out, "mean"), out.mean(1))
    torch.testing.assert_close(select_tokens(out, "mean", prefix_tokens=1), out[:, 1:].mean(1))
    torch.testing.assert_close(select_tokens(out, "patches", prefix_tokens=1), out[:, 1:])
    with pytest.raises(VistaError, match="does not apply"):
        select_tokens(torch.zeros(2, 3), "cls")
    with pytest.raises(VistaError, match="no CLS token"):
        select_tokens(out, "cls")
    with pytest.raises(VistaError, match="no register tokens"):
        select_tokens(out, "registers", prefix_tokens=1)
    with pytest.raises(VistaError, match="Unknown token selection"):
        select_tokens(out, "pooled")


def test_hook_on_a_module_that_never_runs() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    net = Net()
    with pytest.raises(VistaError, match="did not run"):
        capture_tokens(net, net.unused, torch.zeros(1, 2), "all")
