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
    # g -= (<g, w> / <w, w>) w, row by row, without temporaries the size of w (the row dots as
    # a batched matmul: 3x faster on CPU than linalg.vecdot, which multiplies then sums).
    dots = torch.einsum("ij,ij->i", w.grad, w)
    coef = dots / torch.linalg.vector_norm(w, dim=1).square().clamp_min(eps * eps)
    w.grad.addcmul_(w, coef.unsqueeze(1), value=-1.0)


def sparse_decode(
    indices: Tensor, values: Tensor, w_dec: Tensor, offsets: Tensor | None = None
) -> Tensor:
    """``sum_j values_j * w_dec[indices_j]`` per token, touching only the selected decoder rows.

    ``indices``/``values`` are ``(n, k)`` (a fixed count per token) or flat with ``offsets``
    marking where each token's entries start (a variable count, as in BatchTopK).
    """
    return F.embedding_bag(indices, w_dec, offsets=offsets, per_sample_weights=values, mode="sum")


def offsets_from_rows(rows: Tensor, n: int) -> Tensor:
    """Start of each of ``n`` tokens' entries in a flat list sorted by token (``rows``), the
    ``offsets`` of ``sparse_decode``; tokens without entries get an empty bag."""
    counts = torch.bincount(rows, minlength=n)
    return torch.cumsum(counts, 0) - counts


def grouped_topk(x: Tensor, k: int, group: int = 8) -> tuple[Tensor, Tensor]:
    """Exact ``(values, indices)`` of the ``k`` largest entries of each row of 2-D ``x``, unsorted.

    About 1.5x faster than ``torch.topk`` on CPU when ``k`` is small against the row width. Split
    each row into ``m = width / group`` strided groups (``j, j + m, j + 2m, ...``) and take the
    ``k`` groups with the largest maxima; call ``T`` the smallest of those maxima. Those ``k``
    groups hold ``k`` entries ``>= T``, so the row's ``k``-th largest value is ``>= T`` and every
    top-``k`` entry lies in a group whose maximum is ``>= T``: one of the ``k`` chosen groups.
    The top-``k`` of their ``k * group`` entries is therefore exact (up to the order of ties).
    """
    n, h = x.shape
    if group < 2 or h % group or k * group >= h:
        return x.topk(k, dim=1, sorted=False)
    m = h // group
    gmax = x.view(n, group, m).amax(dim=1)  # (n, m): strided groups reduce contiguously
    _, gi = gmax.topk(k, dim=1, sorted=False)
    cols = (gi.unsqueeze(2) + torch.arange(group, device=x.device) * m).view(n, k * group)
    vals, j = x.gather(1, cols).topk(k, dim=1, sorted=False)
    return vals, cols.gather(1, j)


def batch_topk_flat(
    x: Tensor, n_keep: int, group: int = 8, stride: int = 61
) -> tuple[Tensor, Tensor]:
    """Exact ``(values, positions)`` of the ``n_keep`` largest entries of 2-D ``x``, read flat,
    with the positions ascending (row-major: each token's entries come together).

    ``torch.topk`` over millions of entries with ``n_keep`` in the hundreds of thousands is slow
    on CPU and returns them unordered. Instead: from every ``stride``-th entry (a prime, so every
    column is sampled) estimate a threshold ``tau`` a little below the ``n_keep``-th largest
    value; keep the strided groups of ``group`` entries of a row (``j, j + m, ...``, as in
    ``grouped_topk``) whose maximum reaches ``tau`` and, in them, the entries that do. If they are
    at least ``n_keep``, the exact cut ``T`` is their ``kthvalue`` and the selection is every
    entry above ``T`` plus the lowest-placed entries equal to it; if the estimate was too high,
    retry with a lower one (at worst every entry is a candidate). Deterministic for given ``x``.
    """
    n, h = x.shape
    total = n * h
    flat = x.reshape(-1)
    if n_keep >= total:
        return flat.clone(), torch.arange(total, device=x.device)
    if n_keep <= 0:
        return flat[:0].clone(), torch.zeros(0, dtype=torch.long, device=x.device)
    if group < 2 or h % group:
        group = 1
    m = h // group
    # strided groups reduce contiguously; ungrouped, each entry is its own maximum (no copy)
    gmax = x.reshape(n, group, m).amax(dim=1).view(-1) if group > 1 else flat
    # group (r, j) holds the positions r h + j + i m, i < group
    spread = torch.arange(group, device=x.device) * m
    sample = flat[::stride]
    want = int(n_keep * len(sample) / total * 1.1) + 16
    while True:
        # at worst (want past the sample) every entry is a candidate
        top = sample.topk(want, sorted=False).values if want < len(sample) else flat
        tau = top.min()
        g = (gmax >= tau).nonzero().squeeze(1)
        base = torch.div(g, m, rounding_mode="floor") * h + g % m
        pos = (base.unsqueeze(1) + spread).view(-1)
        vals = flat[pos]
        keep = vals >= tau
        pos, vals = pos[keep], vals[keep]
        if len(vals) >= n_keep:
            break
        want *= 2
    pos, order = pos.sort()
    vals = vals[order]
    cut = vals.kthvalue(len(vals) - n_keep + 1).values
    above = vals > cut
    at = vals == cut
    need = n_keep - int(above.sum())
    sel = above | (at & (at.cumsum(0) <= need))
    return vals[sel], pos[sel]


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


def _sparse_encoder_grads(
    needs: tuple[bool, ...], xc: Tensor, w_enc: Tensor, idx: Tensor, rows: Tensor, dz: Tensor
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(dW_enc, db_enc, db_dec)`` from the pre-activation gradient ``dz`` given only at the
    entries ``(rows, idx)``: ``dW_enc = xc^T G`` as a CSR sparse-dense product (``G^T`` stored
    latent-major), the bias gradients as column sums. ``needs`` = (b_dec, W_enc, b_enc)."""
    h = w_enc.shape[1]
    col_sum = torch.zeros(h, dtype=dz.dtype, device=dz.device).index_add_(0, idx, dz)
    grad_w = None
    if needs[1]:
        order = idx.argsort()
        counts = torch.bincount(idx, minlength=h)
        crow = torch.zeros(h + 1, dtype=torch.long, device=dz.device)
        crow[1:] = torch.cumsum(counts, 0)
        gt = torch.sparse_csr_tensor(
            crow, rows[order], dz[order], (h, xc.shape[0]), check_invariants=False
        )
        grad_w = (gt @ xc).t().to(w_enc.dtype)  # latent-major, the layout W_enc is stored in
    grad_bdec = -(w_enc.to(dz.dtype) @ col_sum) if needs[0] else None
    return grad_w, (col_sum if needs[2] else None), grad_bdec


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
            # positions come sorted: embedding_bag wants each token's entries together
            vals, flat = batch_topk_flat(pre, k * n)
            rows = torch.div(flat, h, rounding_mode="floor")
            idx = flat - rows * h
            offsets = offsets_from_rows(rows, n)
        else:
            kk = min(k, h)
            vals, idx2 = grouped_topk(pre, kk)
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
        g = torch.where(vals > 0, g_vals, torch.zeros_like(g_vals)).to(xc.dtype)
        grad_w, grad_benc, grad_bdec = _sparse_encoder_grads(
            ctx.needs_input_grad[1:4], xc, w_enc, idx, rows, g
        )
        grad_x = None
        if ctx.needs_input_grad[0]:  # d/dx = G W_enc^T (x rarely needs a gradient)
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


def _threshold_grad(
    theta: Tensor, eps: Tensor, window_g: Tensor, window_count: Tensor, g_l0: Tensor | None, n: int
) -> Tensor:
    """``d loss / d theta`` of both JumpReLU estimators (paper eq. 11-12, rectangle kernel):
    ``-theta / eps * window_g`` from the reconstruction (``window_g``: the codes' gradient summed
    over each latent's in-window entries) and ``-window_count / (eps n)`` per unit of mean L0."""
    grad = -(theta / eps) * window_g
    return grad if g_l0 is None else grad - g_l0 * window_count / (eps * n)


class _SparseJumpReLU(torch.autograd.Function):
    """JumpReLU training forward with a sparse backward (paper eq. 11-12, rectangle kernel).

    Works on the entries ``E`` that are active (``z > theta``) or inside the kernel window
    (``|z - theta| < eps / 2``), i.e. ``near = z > theta - eps / 2``; all others get no gradient
    from either estimator. ``xc = x - b_dec``, the pre-activations ``z`` and ``near`` come from
    ``jumprelu_train``, computed without autograd. Returns flat ``(indices, values, offsets)``
    over ``E`` (inactive window entries carry value 0, so the decoder's backward delivers their
    gradient too) and the mean L0, differentiable in ``theta``. The backward: ``dz = g 1[z >
    theta]`` on ``E`` (the encoder gradient as a CSR product, as in ``_SparseEncode``) and
    ``_threshold_grad``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        b_dec: Tensor,
        w_enc: Tensor,
        b_enc: Tensor,
        theta: Tensor,
        eps: Tensor,
        xc: Tensor,
        z: Tensor,
        near: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n = z.shape[0]
        rows, idx = torch.nonzero(near, as_tuple=True)  # grouped by token
        z_e = z[rows, idx]
        th = theta[idx]
        on = z_e > th
        in_win = (z_e - th).abs() < eps / 2
        vals = torch.where(on, z_e, torch.zeros_like(z_e)).to(xc.dtype)
        offsets = offsets_from_rows(rows, n)
        l0 = on.sum().to(torch.float32) / n
        win_count = torch.bincount(idx[in_win], minlength=z.shape[1]).to(torch.float32)
        ctx.save_for_backward(xc, w_enc, idx, rows, on, in_win, theta, eps, win_count)
        ctx.n = n
        ctx.mark_non_differentiable(idx, offsets)
        return idx, vals, offsets, l0

    @staticmethod
    def backward(
        ctx: Any, _g_idx: Tensor, g_vals: Tensor, _g_off: Tensor, g_l0: Tensor
    ) -> tuple[Tensor | None, ...]:
        xc, w_enc, idx, rows, on, in_win, theta, eps, win_count = ctx.saved_tensors
        h = w_enc.shape[1]
        g = g_vals.to(torch.float32)
        dz = torch.where(on, g, torch.zeros_like(g)).to(xc.dtype)
        grad_w, grad_benc, grad_bdec = _sparse_encoder_grads(
            ctx.needs_input_grad[0:3], xc, w_enc, idx, rows, dz
        )
        grad_theta = None
        if ctx.needs_input_grad[3]:
            g_win = torch.where(in_win, g, torch.zeros_like(g))
            window_g = torch.zeros(h, dtype=torch.float32, device=g.device).index_add_(
                0, idx, g_win
            )
            grad_theta = _threshold_grad(theta, eps, window_g, win_count, g_l0, ctx.n)
        return grad_bdec, grad_w, grad_benc, grad_theta, None, None, None, None


class _DenseJumpReLU(torch.autograd.Function):
    """The same estimators as ``_SparseJumpReLU`` on dense ``(n, d_sae)`` codes: for the early
    steps of training, when a large share of the latents fire and sparse bookkeeping costs more
    than the GEMMs it saves. Returns the codes ``z 1[z > theta]`` and the mean L0."""

    @staticmethod
    def forward(
        ctx: Any,
        b_dec: Tensor,
        w_enc: Tensor,
        b_enc: Tensor,
        theta: Tensor,
        eps: Tensor,
        xc: Tensor,
        z: Tensor,
    ) -> tuple[Tensor, Tensor]:
        n = z.shape[0]
        on = z > theta
        in_win = (z - theta).abs() < eps / 2
        f = (z * on).to(xc.dtype)
        l0 = on.sum().to(torch.float32) / n
        ctx.save_for_backward(xc, w_enc, on, in_win, theta, eps)
        ctx.n = n
        return f, l0

    @staticmethod
    def backward(ctx: Any, g_f: Tensor, g_l0: Tensor) -> tuple[Tensor | None, ...]:
        xc, w_enc, on, in_win, theta, eps = ctx.saved_tensors
        g = g_f.to(torch.float32)
        dz = (g * on).to(xc.dtype)
        col_sum = dz.sum(0)
        need_bdec, need_w, need_benc = ctx.needs_input_grad[0:3]
        grad_w = (dz.t() @ xc).t().to(w_enc.dtype) if need_w else None  # latent-major
        grad_bdec = -(w_enc.to(dz.dtype) @ col_sum) if need_bdec else None
        grad_theta = None
        if ctx.needs_input_grad[3]:
            window_count = in_win.sum(0).to(torch.float32)
            grad_theta = _threshold_grad(theta, eps, (g * in_win).sum(0), window_count, g_l0, ctx.n)
        return grad_bdec, grad_w, (col_sum if need_benc else None), grad_theta, None, None, None


DENSE_JUMPRELU_ABOVE = 0.05
"""Share of (token, latent) entries active or in the kernel window above which JumpReLU trains
through dense codes rather than sparse ones."""


def jumprelu_train(
    x: Tensor, b_dec: Tensor, w_enc: Tensor, b_enc: Tensor, theta: Tensor, eps: Tensor
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
    """JumpReLU codes of ``(x - b_dec) W_enc + b_enc`` for training, plus the mean L0.

    Returns ``(codes, None, None, l0)`` with dense ``(n, d_sae)`` codes when more than
    ``DENSE_JUMPRELU_ABOVE`` of the entries are active or in the kernel window, else the flat
    ``(indices, values, offsets, l0)`` of ``sparse_decode``. The choice depends only on this
    batch, so a resumed run makes the same choices as an uninterrupted one. The encoder GEMM runs
    once, here; the autograd functions deliver its gradients themselves.
    """
    with torch.no_grad():
        xc = x - b_dec
        z = torch.addmm(b_enc, xc, w_enc).float()
        near = z > theta - eps / 2
        share = near.sum().item() / max(near.numel(), 1)
    if share > DENSE_JUMPRELU_ABOVE:
        f, l0 = _DenseJumpReLU.apply(b_dec, w_enc, b_enc, theta, eps, xc, z)
        return f, None, None, l0
    return _SparseJumpReLU.apply(b_dec, w_enc, b_enc, theta, eps, xc, z, near)
