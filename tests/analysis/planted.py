"""Stores whose answer is known, and an identity SAE that passes them through unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tests.conftest import write_vista_store
from vista.saes import SAE, make_sae


def identity_sae(d: int, k: int | None = None) -> SAE:
    """A TopK SAE with identity encoder and decoder: its codes are the (non-negative) inputs."""
    sae = make_sae({"architecture": "topk", "d_model": d, "d_sae": d, "k": k or d})
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def planted_codes(
    n: int = 2400, d: int = 16, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Non-negative activations with two labels and known structure:

    - latent 0 fires only for the intersection a=1 and b=1 (a conjunction feature);
    - latent 1 fires for a=2 (a single-attribute feature), latent 2 for b=0;
    - latents 3.. are noise, independent of the labels.
    """
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, n), rng.integers(0, 2, n)
    x = np.abs(rng.normal(size=(n, d))) * (rng.random((n, d)) < 0.3)
    x[:, 0] = ((a == 1) & (b == 1)) * (1 + rng.random(n))
    x[:, 1] = (a == 2) * (1 + rng.random(n))
    x[:, 2] = (b == 0) * (1 + rng.random(n))
    return x.astype(np.float32), {"a": a, "b": b}


def planted_store(path: Path, n: int = 2400, d: int = 16, seed: int = 0) -> Path:
    x, labels = planted_codes(n, d, seed)
    names = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]}
    return write_vista_store(
        path, {"training": x, "validation": x}, {"training": labels, "validation": labels}, names
    )


class TinyNet(nn.Module):
    """8x8 digits -> 64 -> 16 ReLU units (``act``) -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(64, 16)
        self.act = nn.ReLU()
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc(self.flat(x))))


def classifier_store(tmp: Path) -> Path:
    """A TinyNet trained on sklearn's digits, its store at ``act`` (16-d, one token per image),
    written by ``extract`` (so it records the encoder and dataset ``splice`` rebuilds)."""
    from safetensors.torch import save_file
    from sklearn.datasets import load_digits

    from vista.sources.datasets import DatasetConfig
    from vista.sources.encoders import EncoderConfig
    from vista.sources.extract import extract

    torch.manual_seed(0)
    net = TinyNet()
    d = load_digits()
    x = torch.as_tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.as_tensor(d.target)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    save_file(net.state_dict(), str(tmp / "net.safetensors"))
    enc = EncoderConfig(
        name="module",
        target="tests.analysis.planted:TinyNet",
        path=str(tmp / "net.safetensors"),
        layer="act",
        channels=1,
        image_size=8,
        batch_size=512,
    )
    return extract(DatasetConfig(name="digits"), enc, tmp / "store.h5", dtype="float32")


def signed_identity_sae(d: int) -> SAE:
    """A TopK SAE whose reconstruction is exactly its input, negative values included: codes
    ``relu([x, -x])``, decoder ``[I; -I]``."""
    sae = make_sae({"architecture": "topk", "d_model": d, "d_sae": 2 * d, "k": 2 * d})
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def token_store(path: Path, d: int = 6, patches: int = 5) -> tuple[Path, np.ndarray]:
    """A ViT-like store of 60 images x (3 + ``patches``) tokens (CLS, 2 registers, the patches)
    of width ``d``:
    the CLS token away from the rest, small registers, patches of norm 1 but 12 of norm 20 (all
    at position 5). Float32, uncompressed, so the tests compute on the stored values."""
    from vista.store import SplitSpec, StoreWriter

    n, t = 60, 3 + patches
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, t, d)).astype(np.float32) * 0.3
    x[:, 0] += 2.0
    x[:, 1:3] *= 0.2
    x[:, 3:] /= np.linalg.norm(x[:, 3:], axis=2, keepdims=True)
    x[:12, 5] *= 20.0
    spec = SplitSpec(n_rows=n, d_model=d, n_tokens=t, labels={})
    attrs = {"encoder": "t", "layer": "x", "token_selection": "all", "prefix_tokens": 3,
             "register_tokens": 2}  # fmt: skip
    with StoreWriter(path, {"validation": spec}, attrs, compression=None, dtype="float32") as w:
        w.append("validation", x, {}, np.arange(n))
        w.finish()
    return path, x
