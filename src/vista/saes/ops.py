"""Operations shared by the architectures: initialisation, the unit-norm decoder, sparse decoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def normalize_rows_(w: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale each row of ``w`` (one decoder direction per latent) to unit L2 norm, in place."""
    w.div_(w.norm(dim=1, keepdim=True).clamp_min(eps))
    return w


@torch.no_grad()
def remove_parallel_grads_(w: Tensor, eps: float = 1e-8) -> None:
    """Drop the gradient component parallel to each (unit) decoder row.

    With unit-norm rows, a step along the row only changes its norm, which the renormalisation
    after the step undoes; removing it keeps Adam's moments for the useful, tangent direction
    (Bricken et al. 2023; OpenAI sparse_autoencoder).
    """
    if w.grad is None:
        return
    unit = w / w.norm(dim=1, keepdim=True).clamp_min(eps)
    parallel = (w.grad * unit).sum(dim=1, keepdim=True)
    w.grad.sub_(parallel * unit)


def sparse_decode(
    indices: Tensor, values: Tensor, w_dec: Tensor, offsets: Tensor | None = None
) -> Tensor:
    """``sum_j values_j * w_dec[indices_j]`` per token, touching only the selected decoder rows.

    ``indices``/``values`` are ``(n, k)`` (a fixed count per token) or flat with ``offsets``
    marking where each token's entries start (a variable count, as in BatchTopK).
    """
    return F.embedding_bag(indices, w_dec, offsets=offsets, per_sample_weights=values, mode="sum")


def topk_mask_dense(acts: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest entries of each row of ``acts`` (ties broken by torch.topk), zero the rest."""
    k = min(k, acts.shape[-1])
    vals, idx = acts.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(acts).scatter_(-1, idx, vals)


def batch_topk_dense(acts: Tensor, k: int) -> Tensor:
    """Keep the ``k * n_rows`` largest entries of the whole ``(n_rows, d)`` matrix, zero the rest."""
    flat = acts.flatten()
    n_keep = min(k * acts.shape[0], flat.numel())
    vals, idx = flat.topk(n_keep, sorted=False)
    return torch.zeros_like(flat).scatter_(0, idx, vals).view_as(acts)
