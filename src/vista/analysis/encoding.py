"""The one streaming encode pass every analysis of a call shares.

Each block of images is read once, encoded with the SAE's inference ``encode`` (side-effect free,
batch-independent), decoded through the non-zero codes only, and folded into:

- token-level accumulators (firing counts, float64 reconstruction statistics);
- per-image arrays: the mean over the image's tokens of the activations and of the codes, and
  four float64 numbers per image (squared reconstruction error, within-image scatter, mean
  cosine, mean L0) from which subgroup fidelity and its bootstrap are computed exactly later.

The pooled codes are kept dense when they fit in ``dense_codes_mb``, else as a CSR matrix, so
memory grows with images times active latents, never with tokens (docs/originals.md D9).
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
from vista.metrics.positions import PositionAccumulator
from vista.metrics.reconstruction import ReconstructionAccumulator, token_terms
from vista.metrics.sparsity import SparsityAccumulator
from vista.progress import Progress
from vista.saes import SAE, SparseCodes, ops
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
    positions: PositionAccumulator | None = None
    """Sums per token position (CLS, registers, each patch): the ``tokens`` analysis reads them."""

    @property
    def sparse(self) -> bool:
        return not isinstance(self.codes, np.ndarray)

    def dense_codes(self, columns: np.ndarray | None = None) -> np.ndarray:
        """The pooled codes (or some columns) as a dense float32 array."""
        c = self.codes if columns is None else self.codes[:, columns]
        return np.asarray(c.toarray() if hasattr(c, "toarray") else c, dtype=np.float32)


class _Pass:
    """The accumulators of one pass; ``fold`` adds a block of images."""

    def __init__(
        self, n_img: int, t: int, d_model: int, d_sae: int, dense: bool, first: int = 0
    ) -> None:
        self.t, self.d_sae, self.dense, self.first = t, d_sae, dense, first
        self.sparsity, self.recon = SparsityAccumulator(d_sae), ReconstructionAccumulator()
        self.positions = PositionAccumulator(t, d_model)
        self.pooled_raw = np.zeros((n_img, d_model), dtype=np.float32)
        self.csr_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.per_image = np.zeros((4, n_img), dtype=np.float64)

    def fold(self, start: int, x: Tensor, entries: SparseCodes, x_hat: Tensor) -> None:
        """Add a block: ``x (n*t, d)``, the codes' non-zero ``(rows, cols, vals)``, ``x_hat``."""
        n, t = x.shape[0] // self.t, self.t
        rows, cols, vals = entries
        self.sparsity.update_entries(rows, cols, n * t, t)
        x64 = x.double()
        sq, dot, xn, xhn = token_terms(x64, x_hat.double())
        self.recon.update_tokens(x64, sq, dot, xn, xhn)
        sl = slice(start - self.first, start - self.first + n)  # rows of this pass's range
        mean_x = x64.view(n, t, -1).mean(dim=1)
        self.pooled_raw[sl] = mean_x.float().cpu().numpy()
        scatter = (
            (x64.view(n, t, -1) - mean_x[:, None, :]).pow(2).sum(dim=(1, 2))
            if t > 1
            else torch.zeros(n, dtype=torch.float64)
        )
        cos = (dot / (xn * xhn).clamp_min(1e-12)).view(n, t).mean(dim=1)
        token_l0 = torch.bincount(rows, minlength=n * t).double()
        self.positions.update(x64, sq, token_l0, xn)
        l0 = token_l0.view(n, t).mean(dim=1)
        stats = torch.stack([sq.view(n, t).sum(dim=1), scatter.to(sq.device), cos, l0])
        self.per_image[:, sl] = stats.cpu().numpy()
        self.csr_parts.append(_pooled_rows(rows, cols, vals, n, t, self.d_sae))

    def state(self) -> dict[str, np.ndarray]:
        """What the pass gathered over its range of images, as named arrays (``merged``)."""
        parts = self.csr_parts or [
            (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
        ]
        out: dict[str, np.ndarray] = {
            "pooled_raw": self.pooled_raw,
            "per_image": self.per_image,
            "csr_counts": np.concatenate([p[0] for p in parts]),
            "csr_cols": np.concatenate([p[1] for p in parts]),
            "csr_vals": np.concatenate([p[2] for p in parts]),
        }
        out.update({f"sparsity.{k}": v for k, v in self.sparsity.state().items()})
        out.update({f"recon.{k}": v for k, v in self.recon.state().items()})
        out.update({f"positions.{k}": v for k, v in self.positions.state().items()})
        return out

    @classmethod
    def merged(cls, states: list[dict[str, np.ndarray]], t: int, dense: bool) -> _Pass:
        """The pass over consecutive ranges of images, from their ``state``s in order: the
        per-image arrays and codes concatenated, the accumulators merged."""
        d_sae = len(states[0]["sparsity.counts"])
        acc = cls(0, t, states[0]["pooled_raw"].shape[1], d_sae, dense)
        acc.pooled_raw = np.concatenate([s["pooled_raw"] for s in states])
        acc.per_image = np.concatenate([s["per_image"] for s in states], axis=1)
        acc.csr_parts = [(s["csr_counts"], s["csr_cols"], s["csr_vals"]) for s in states]
        for s in states:
            acc.sparsity.merge(SparsityAccumulator.from_state(_prefixed(s, "sparsity.")))
            acc.recon.merge(ReconstructionAccumulator.from_state(_prefixed(s, "recon.")))
            acc.positions.merge(PositionAccumulator.from_state(_prefixed(s, "positions.")))
        return acc

    def result(self, seconds: float) -> EncodedSplit:
        codes: Any = _stack_csr(self.csr_parts, self.d_sae)
        if self.dense:
            codes = codes.toarray()
        return EncodedSplit(
            n_images=self.per_image.shape[1],
            tokens_per_image=self.t,
            health=self.sparsity.result(),
            reconstruction=self.recon.result(),
            firing_counts=self.sparsity.counts.copy(),
            pooled_raw=self.pooled_raw,
            codes=codes,
            image_sq_error=self.per_image[0],
            image_scatter=self.per_image[1],
            image_cosine=self.per_image[2],
            image_l0=self.per_image[3],
            seconds=seconds,
            positions=self.positions,
        )


def encode_split(
    sae: SAE,
    store_path: str | os.PathLike[str],
    split: str,
    *,
    batch_tokens: int = 16384,
    device: str = "cpu",
    dense_codes_mb: float = 128.0,
) -> EncodedSplit:
    """Run the pass over ``split`` of the store (see the module docstring)."""
    t0 = time.perf_counter()
    plan = plan_pass(sae, store_path, split, batch_tokens, dense_codes_mb)
    acc = run_pass(sae, store_path, split, plan, 0, plan.n_images, device)
    return acc.result(time.perf_counter() - t0)


@dataclass(frozen=True)
class PassPlan:
    """How a split is read: its shape, the block of images encoded at once, dense or CSR codes."""

    n_images: int
    tokens_per_image: int
    d_model: int
    rows_per_block: int
    dense: bool


def plan_pass(
    sae: SAE,
    store_path: str | os.PathLike[str],
    split: str,
    batch_tokens: int,
    dense_codes_mb: float,
) -> PassPlan:
    """The split checked against the SAE, and how the pass reads it."""
    with ActivationStore(store_path) as st:
        info = st.split(split)
    if info.d_model != sae.d_model:
        raise VistaError(
            f"The SAE takes {sae.d_model}-d inputs but split {split!r} of {str(store_path)!r} holds "
            f"{info.d_model}-d activations; analyse it on the store it was trained for."
        )
    if info.n_rows == 0:
        raise VistaError(f"Split {split!r} of {str(store_path)!r} is empty; nothing to analyse.")
    t, n_img, d_sae = info.n_tokens, info.n_rows, sae.d_sae
    rows_per_block = max(1, min(batch_tokens, max(1, _MAX_BLOCK_BYTES // (4 * d_sae))) // t)
    dense = n_img * d_sae * 4 <= dense_codes_mb * 2**20
    return PassPlan(n_img, t, info.d_model, rows_per_block, dense)


@torch.no_grad()
def run_pass(
    sae: SAE,
    store_path: str | os.PathLike[str],
    split: str,
    plan: PassPlan,
    first: int,
    stop: int,
    device: str | torch.device,
) -> _Pass:
    """The pass over the images ``first:stop`` of the split (``first`` on a block boundary)."""
    sae = sae.to(device).eval()
    t = plan.tokens_per_image
    acc = _Pass(stop - first, t, plan.d_model, sae.d_sae, plan.dense, first)
    with Progress(f"encode {split}", stop - first, 0, log) as progress:
        blocks = iter_row_blocks(store_path, split, plan.rows_per_block, start=first, stop=stop)
        for start, rows in blocks:
            n = len(rows)
            x = torch.from_numpy(np.asarray(rows, dtype=np.float32)).to(device).reshape(n * t, -1)
            if not bool(torch.isfinite(x).all()):
                raise VistaError(
                    f"Split {split!r} of {str(store_path)!r} holds NaN or infinite activations in "
                    f"images {start}-{start + n}; re-extract the store."
                )
            if sae.encodes_instances:  # pursuit over each image's tokens together
                codes = sae.encode_instances(x.view(n, t, -1)).reshape(n * t, -1)
                at, cols = codes.nonzero(as_tuple=True)
                entries = SparseCodes(at, cols, codes[at, cols])
            else:
                entries = sae.encode_sparse(x)
            acc.fold(start, x, entries, _decode(sae, entries, n * t))
            progress.update(n)
    return acc


def merge_passes(
    states: list[dict[str, np.ndarray]], plan: PassPlan, seconds: float
) -> EncodedSplit:
    """The ``EncodedSplit`` of consecutive ranges of images from their passes' ``state()``s, in
    image order."""
    return _Pass.merged(states, plan.tokens_per_image, plan.dense).result(seconds)


def _prefixed(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _decode(sae: SAE, entries: SparseCodes, n_tokens: int) -> Tensor:
    """``x_hat`` through the non-zero codes only (an embedding bag)."""
    offsets = ops.offsets_from_rows(entries.rows, n_tokens)
    return ops.sparse_decode(entries.cols, entries.vals, sae.W_dec, offsets) + sae.b_dec


def _pooled_rows(
    rows: Tensor, cols: Tensor, vals: Tensor, n: int, t: int, d_sae: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts (row counts, columns, values) of the per-image mean of the codes."""
    if t > 1:  # sum each (image, latent) over the image's tokens, then divide by t
        key = torch.div(rows, t, rounding_mode="floor") * d_sae + cols
        uniq, inv = torch.unique(key, return_inverse=True)
        summed = torch.zeros(len(uniq), dtype=vals.dtype, device=vals.device).index_add_(
            0, inv, vals
        )
        rows, cols, vals = torch.div(uniq, d_sae, rounding_mode="floor"), uniq % d_sae, summed / t
        keep = vals != 0  # signed codes can cancel
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    counts = torch.bincount(rows, minlength=n).cpu().numpy()
    return counts, cols.cpu().numpy().astype(np.int32), vals.cpu().numpy().astype(np.float32)


def _stack_csr(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], d_sae: int) -> Any:
    from scipy import sparse

    counts = np.concatenate([p[0] for p in parts])
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    cols = np.concatenate([p[1] for p in parts])
    vals = np.concatenate([p[2] for p in parts])
    out = sparse.csr_matrix((vals, cols, indptr), shape=(len(counts), d_sae))
    out.sort_indices()
    return out


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
