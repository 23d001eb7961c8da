"""Operations shared by the architectures: initialisation, the unit-norm decoder, sparse decoding."""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

# The CSR product in the sparse backward is stable for what it is used for here.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


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


@torch.no_grad()
def geometric_median(x: Tensor, n_iter: int = 100, tol: float = 1e-7) -> Tensor:
    """The point minimising the summed Euclidean distance to the rows of ``x`` (Weiszfeld).

    Computed in float64; robust to outlier tokens in a way the mean is not.
    """
    pts = x.detach().to(torch.float64)
    median = pts.mean(dim=0)
    for _ in range(n_iter):
        dist = (pts - median).norm(dim=1).clamp_min(1e-12)
        w = 1.0 / dist
        new = (w[:, None] * pts).sum(0) / w.sum()
        shift = float((new - median).norm())
        median = new
        if shift <= tol * max(1.0, float(median.norm())):
            break
    return median.to(x.dtype)


class _SparseEncode(torch.autograd.Function):
    """``ReLU`` of the selected entries of ``(x - b_dec) W_enc + b_enc``, with a sparse backward.

    The forward is one dense GEMM plus a top-k. The backward touches only the selected entries
    (as EleutherAI sparsify does): ``dW_enc = (x - b_dec)^T G`` with ``G`` the sparse gradient of
    the pre-activations, computed as a CSR sparse-dense product; ``db_enc`` and ``db_dec`` are
    column sums. No dense ``(n, d_sae)`` gradient is ever formed.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, b_dec: Tensor, w_enc: Tensor, b_enc: Tensor, k: int, batch: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        xc = x - b_dec
        # Under autocast (bf16/fp16) this GEMM runs in low precision; the backward stays fp32.
        pre = torch.addmm(b_enc, xc, w_enc)
        n, h = pre.shape
        if batch:
            n_keep = min(k * n, pre.numel())
            vals, flat = pre.flatten().topk(n_keep, sorted=False)
            flat, order = flat.sort()  # embedding_bag wants each token's entries together
            vals = vals[order]
            rows = torch.div(flat, h, rounding_mode="floor")
            idx = flat - rows * h
            counts = torch.bincount(rows, minlength=n)
            offsets = torch.cumsum(counts, 0) - counts
        else:
            kk = min(k, h)
            vals, idx2 = pre.topk(kk, dim=1, sorted=False)
            idx = idx2.flatten()
            vals = vals.flatten()
            rows = torch.arange(n, device=x.device).repeat_interleave(kk)
            offsets = torch.arange(0, n * kk, kk, device=x.device)
        vals = torch.relu(vals).to(x.dtype)
        ctx.save_for_backward(xc, w_enc, idx, rows, vals)
        ctx.mark_non_differentiable(idx, offsets)
        return idx, vals, offsets

    @staticmethod
    def backward(
        ctx: Any, _g_idx: Tensor, g_vals: Tensor, _g_off: Tensor
    ) -> tuple[Tensor | None, ...]:
        xc, w_enc, idx, rows, vals = ctx.saved_tensors
        h = w_enc.shape[1]
        g = torch.where(vals > 0, g_vals, torch.zeros_like(g_vals)).to(xc.dtype)
        col_sum = torch.zeros(h, dtype=g.dtype, device=g.device).index_add_(0, idx, g)
        grad_w = grad_benc = grad_bdec = grad_x = None
        if ctx.needs_input_grad[2]:
            # G^T as CSR (latents x tokens): entries sorted by latent.
            order = idx.argsort()
            counts = torch.bincount(idx, minlength=h)
            crow = torch.zeros(h + 1, dtype=torch.long, device=g.device)
            crow[1:] = torch.cumsum(counts, 0)
            gt = torch.sparse_csr_tensor(
                crow, rows[order], g[order], (h, xc.shape[0]), check_invariants=False
            )
            grad_w = (gt @ xc).t().contiguous().to(w_enc.dtype)
        if ctx.needs_input_grad[3]:
            grad_benc = col_sum
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[0]:
            # d/dxc = G W_enc^T; the b_dec part is its negated column sum.
            if ctx.needs_input_grad[1]:
                grad_bdec = -(w_enc.to(g.dtype) @ col_sum)
            if ctx.needs_input_grad[0]:
                grad_x = torch.zeros_like(xc).index_add_(
                    0, rows, g[:, None] * w_enc.t()[idx].to(g.dtype)
                )
        return grad_x, grad_bdec, grad_w, grad_benc, None, None


def sparse_encode(
    x: Tensor, b_dec: Tensor, w_enc: Tensor, b_enc: Tensor, k: int, batch: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """TopK (``batch=False``: ``k`` per token) or BatchTopK (``k * n`` over the batch) selection of
    ``ReLU((x - b_dec) W_enc + b_enc)``: flat ``(indices, values, offsets)`` for ``sparse_decode``.

    Differentiable in ``x``, ``b_dec``, ``w_enc`` and ``b_enc`` with a sparse backward.
    """
    return _SparseEncode.apply(x, b_dec, w_enc, b_enc, k, batch)
