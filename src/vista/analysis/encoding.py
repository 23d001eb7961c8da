"""The one streaming encode pass every analysis of a call shares.

Each block of images is read once, encoded with the SAE's inference ``encode`` (side-effect free,
batch-independent), decoded through the non-zero codes only, and folded into:

- token-level accumulators (firing counts, float64 reconstruction statistics);
- per-image arrays: the mean over the image's tokens of the activations and of the codes, and
  four float64 numbers per image (squared reconstruction error, within-image scatter, mean
  cosine, mean L0) from which subgroup fidelity and its bootstrap are computed exactly later.

The pooled codes are kept dense when they fit in ``dense_codes_mb``, else as a CSR matrix, so
memory grows with images times active latents, never with tokens (SPEC D9).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vista.errors import VistaError
from vista.metrics.reconstruction import ReconstructionAccumulator
from vista.metrics.sparsity import SparsityAccumulator
from vista.progress import Progress
from vista.saes import SAE, ops
from vista.store import ActivationStore
from vista.store.stream import iter_row_blocks

log = logging.getLogger(__name__)
_MAX_BLOCK_BYTES = 256 * 2**20
"""Dense codes of one block stay under this (so 16k latents never need GBs per block)."""


@dataclass
class EncodedSplit:
    """What the pass gathered over one store split."""

    n_images: int
    tokens_per_image: int
    health: dict[str, Any]
    reconstruction: dict[str, Any]
    firing_counts: np.ndarray
    """``(d_sae,)`` tokens on which each latent was non-zero."""
    pooled_raw: np.ndarray
    """``(N, d_model)`` float32 per-image mean of the activations."""
    codes: Any
    """``(N, d_sae)`` float32 per-image mean of the codes: ``np.ndarray`` or ``scipy.sparse.csr_matrix``."""
    image_sq_error: np.ndarray
    """``(N,)`` float64 sum over the image's tokens of ``||x - x_hat||^2``."""
    image_scatter: np.ndarray
    """``(N,)`` float64 sum over the image's tokens of ``||x - mean_tokens(x)||^2``."""
    image_cosine: np.ndarray
    """``(N,)`` mean over the image's tokens of ``cos(x, x_hat)``."""
    image_l0: np.ndarray
    """``(N,)`` mean over the image's tokens of the number of active latents."""
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def sparse(self) -> bool:
        return not isinstance(self.codes, np.ndarray)

    def dense_codes(self, columns: np.ndarray | None = None) -> np.ndarray:
        """The pooled codes (or some columns) as a dense float32 array."""
        c = self.codes if columns is None else self.codes[:, columns]
        return np.asarray(c.toarray() if hasattr(c, "toarray") else c, dtype=np.float32)


@torch.no_grad()
def encode_split(
    sae: SAE,
    store_path: str | os.PathLike[str],
    split: str,
    *,
    batch_tokens: int = 16384,
    device: str = "cpu",
    dense_codes_mb: float = 512.0,
) -> EncodedSplit:
    """Run the pass over ``split`` of the store (see the module docstring)."""
    t0 = time.perf_counter()
    with ActivationStore(store_path) as st:
        info = st.split(split)
    if info.d_model != sae.d_model:
        raise VistaError(
            f"The SAE takes {sae.d_model}-d inputs but split {split!r} of {str(store_path)!r} holds "
            f"{info.d_model}-d activations; analyse it on the store it was trained for."
        )
    if info.n_rows == 0:
        raise VistaError(f"Split {split!r} of {str(store_path)!r} is empty; nothing to analyse.")
    sae = sae.to(device).eval()
    t, n_img, d_sae = info.n_tokens, info.n_rows, sae.d_sae
    cap = max(1, _MAX_BLOCK_BYTES // (4 * d_sae))
    rows_per_block = max(1, min(batch_tokens, cap) // t)
    dense = n_img * d_sae * 4 <= dense_codes_mb * 2**20
    sparsity, recon = SparsityAccumulator(d_sae), ReconstructionAccumulator()
    pooled_raw = np.zeros((n_img, info.d_model), dtype=np.float32)
    codes_dense = np.zeros((n_img, d_sae), dtype=np.float32) if dense else None
    csr_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    per_image = np.zeros((4, n_img), dtype=np.float64)
    with Progress(f"encode {split}", n_img, 0, log) as progress:
        for start, rows in iter_row_blocks(store_path, split, rows_per_block):
            n = len(rows)
            x = torch.from_numpy(np.asarray(rows, dtype=np.float32)).to(device).reshape(n * t, -1)
            if not bool(torch.isfinite(x).all()):
                raise VistaError(
                    f"Split {split!r} of {str(store_path)!r} holds NaN or infinite activations in "
                    f"images {start}-{start + n}; re-extract the store."
                )
            if sae.encodes_instances:  # pursuit over each image's tokens together
                codes = sae.encode_instances(x.view(n, t, -1)).reshape(n * t, -1)
            else:
                codes = sae.encode(x)
            x_hat, pooled = _decode_and_pool(sae, codes, n, t)
            sparsity.update(codes, t)
            recon.update(x, x_hat)
            sl = slice(start, start + n)
            xv = x.view(n, t, -1)
            mean_x = xv.mean(dim=1)
            pooled_raw[sl] = mean_x.cpu().numpy()
            per_image[:, sl] = _image_stats(xv, x_hat.view(n, t, -1), mean_x, codes, n, t)
            if codes_dense is not None:
                codes_dense[sl] = pooled.cpu().numpy()
            else:
                csr_parts.append(_csr_rows(pooled))
            progress.update(n)
    out_codes: Any = codes_dense if codes_dense is not None else _stack_csr(csr_parts, d_sae)
    return EncodedSplit(
        n_images=n_img,
        tokens_per_image=t,
        health=sparsity.result(),
        reconstruction=recon.result(),
        firing_counts=sparsity.counts.copy(),
        pooled_raw=pooled_raw,
        codes=out_codes,
        image_sq_error=per_image[0],
        image_scatter=per_image[1],
        image_cosine=per_image[2],
        image_l0=per_image[3],
        seconds=time.perf_counter() - t0,
    )


def _decode_and_pool(sae: SAE, codes: Tensor, n: int, t: int) -> tuple[Tensor, Tensor]:
    """``x_hat`` through the non-zero codes only (an embedding bag), and the per-image mean codes."""
    rows, cols = codes.nonzero(as_tuple=True)
    vals = codes[rows, cols]
    if rows.numel() * 4 < codes.numel():
        offsets = ops.offsets_from_rows(rows, codes.shape[0])
        x_hat = ops.sparse_decode(cols, vals, sae.W_dec, offsets) + sae.b_dec
    else:
        x_hat = sae.decode(codes)
    pooled = codes.view(n, t, -1).mean(dim=1) if t > 1 else codes
    return x_hat, pooled


def _image_stats(
    x: Tensor, x_hat: Tensor, mean_x: Tensor, codes: Tensor, n: int, t: int
) -> np.ndarray:
    """``(4, n)`` float64: squared error, within-image scatter, mean cosine, mean L0 per image."""
    x64, xh64 = x.double(), x_hat.double()
    sq_err = (x64 - xh64).pow(2).sum(dim=(1, 2))
    scatter = (x64 - mean_x.double()[:, None, :]).pow(2).sum(dim=(1, 2))
    cos = (x64 * xh64).sum(-1) / (x64.norm(dim=-1) * xh64.norm(dim=-1)).clamp_min(1e-12)
    l0 = (codes != 0).sum(dim=-1).double().view(n, t)
    return torch.stack([sq_err, scatter, cos.mean(dim=1), l0.mean(dim=1)]).cpu().numpy()


def _csr_rows(pooled: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nz = pooled != 0
    counts = nz.sum(dim=1).cpu().numpy()
    cols = nz.nonzero(as_tuple=True)[1].cpu().numpy().astype(np.int32)
    return counts, cols, pooled[nz].cpu().numpy().astype(np.float32)


def _stack_csr(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], d_sae: int) -> Any:
    from scipy import sparse

    counts = np.concatenate([p[0] for p in parts])
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    cols = np.concatenate([p[1] for p in parts])
    vals = np.concatenate([p[2] for p in parts])
    return sparse.csr_matrix((vals, cols, indptr), shape=(len(counts), d_sae))


def pooled_activations(
    store_path: str | os.PathLike[str], split: str, batch_tokens: int = 16384
) -> np.ndarray:
    """``(N, D)`` float32 per-image mean of a split's activations (no SAE involved)."""
    with ActivationStore(store_path) as st:
        info = st.split(split)
    out = np.zeros((info.n_rows, info.d_model), dtype=np.float32)
    rows_per_block = max(1, batch_tokens // info.n_tokens)
    for start, rows in iter_row_blocks(store_path, split, rows_per_block):
        a = np.asarray(rows, dtype=np.float32)
        if not np.isfinite(a).all():
            raise VistaError(
                f"Split {split!r} of {str(store_path)!r} holds NaN or infinite activations near "
                f"image {start}; re-extract the store."
            )
        out[start : start + len(a)] = a.mean(axis=1) if a.ndim == 3 else a
    return out
