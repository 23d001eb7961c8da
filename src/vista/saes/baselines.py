"""Baseline dictionaries of the same size as an SAE, fitted to data instead of trained: PCA,
k-means, NMF and a random dictionary (saev's and SAEBench's baselines).

Each is an inference-only SAE (``fitted``: ``fit_(x)`` on a sample, then ``encode``/``decode`` like
any SAE), so every analysis and benchmark metric applies to it unchanged:

- ``pca``: the top principal directions (rows beyond ``d_model`` are zero: PCA has no more);
  codes are the coefficients, signed, the ``k`` largest in magnitude kept;
- ``kmeans``: unit rows toward the centroids of the centred data; one code per token, the
  nearest centroid's norm (the reconstruction is that centroid);
- ``nmf``: non-negative factors of the data shifted to be non-negative; codes by multiplicative
  updates, the ``k`` largest kept;
- ``random``: random unit rows; TopK of the projections (a trained SAE must beat it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from vista.saes import ops
from vista.saes.base import SAE
from vista.saes.config import SAEConfig
from vista.saes.registry import register_sae


@dataclass
class BaselineConfig(SAEConfig):
    """A dictionary fitted to data (``pca``, ``kmeans``, ``nmf``, ``random``)."""

    architecture: str = "pca"
    k: int = 32
    """Codes kept per token (k-means keeps one)."""


class FittedDictionary(SAE):
    """The shared part: unit decoder rows, no training, ``fit_`` from a sample of tokens."""

    config_class = BaselineConfig
    cfg: BaselineConfig
    trainable = False
    fitted: ClassVar[bool] = True

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__(cfg)
        self.requires_grad_(False)

    @torch.no_grad()
    def fit_(self, x: Tensor) -> None:
        raise NotImplementedError

    def training_forward(
        self, x: Tensor, dead_mask: Tensor | None = None, sparsity_scale: float | Tensor = 1.0
    ) -> Any:
        from vista.errors import VistaError

        raise VistaError(
            f"{self.cfg.architecture} is an inference-time encoder fitted to data (fit_), not trained; "
            "choose a trainable architecture."
        )

    def _topk_abs(self, coef: Tensor) -> Tensor:
        k = min(self.cfg.k, coef.shape[-1])
        _, idx = coef.abs().topk(k, dim=-1, sorted=False)
        return torch.zeros_like(coef).scatter_(-1, idx, coef.gather(-1, idx))


@register_sae("pca")
class PCADictionary(FittedDictionary):
    signed_codes = True

    @torch.no_grad()
    def fit_(self, x: Tensor) -> None:
        x = x.double()
        self.b_dec.copy_(x.mean(dim=0).float())
        _, _, v = torch.linalg.svd(x - x.mean(dim=0), full_matrices=False)
        n = min(self.d_sae, v.shape[0])
        # Rows past the principal directions keep their random unit vectors but no encoder
        # column: they never fire (PCA has d_model directions at most).
        self.W_dec[:n] = v[:n].float()
        self.W_enc.zero_()
        self.W_enc[:, :n] = v[:n].float().t()

    def encode(self, x: Tensor) -> Tensor:
        return self._topk_abs((x - self.b_dec) @ self.W_enc)


@register_sae("kmeans")
class KMeansDictionary(FittedDictionary):
    @torch.no_grad()
    def fit_(self, x: Tensor) -> None:
        from sklearn.cluster import MiniBatchKMeans

        self.b_dec.copy_(x.mean(dim=0))
        xc = (x - x.mean(dim=0)).double().numpy()
        km = MiniBatchKMeans(self.d_sae, random_state=self.cfg.seed, n_init=3).fit(xc)
        c = torch.from_numpy(km.cluster_centers_).float()
        self.W_dec.copy_(c / c.norm(dim=1, keepdim=True).clamp_min(1e-12))
        self.b_enc.copy_(c.norm(dim=1))  # each centroid's norm: its code
        self.W_enc.copy_(c.t())

    def encode(self, x: Tensor) -> Tensor:
        centroids = self.W_dec * self.b_enc[:, None]
        d2 = torch.cdist(x - self.b_dec, centroids)
        j = d2.argmin(dim=1, keepdim=True)
        return torch.zeros(x.shape[0], self.d_sae, dtype=x.dtype, device=x.device).scatter_(
            1, j, self.b_enc[j.squeeze(1)].unsqueeze(1).to(x.dtype)
        )


@register_sae("nmf")
class NMFDictionary(FittedDictionary):
    iterations: ClassVar[int] = 100

    @torch.no_grad()
    def fit_(self, x: Tensor) -> None:
        from sklearn.decomposition import NMF

        self.b_dec.copy_(x.min(dim=0).values)
        xs = (x - self.b_dec).clamp_min(0).double().numpy()
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        init = "nndsvda" if self.d_sae <= min(xs.shape) else "random"  # overcomplete: random
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            nmf = NMF(self.d_sae, init=init, solver="mu", max_iter=100, random_state=self.cfg.seed)
            nmf.fit(xs)
        h = torch.from_numpy(nmf.components_).float()
        self.W_dec.copy_(h / h.norm(dim=1, keepdim=True).clamp_min(1e-12))
        self.W_enc.copy_(self.W_dec.t())

    def encode(self, x: Tensor) -> Tensor:
        # Non-negative codes by multiplicative updates (Lee & Seung) on the shifted input.
        xs = (x - self.b_dec).clamp_min(0)
        w = self.W_dec
        gram = w @ w.t()
        num = xs @ w.t()
        c = num.clamp_min(1e-8)
        for _ in range(self.iterations):
            c = c * num / (c @ gram).clamp_min(1e-12)
        # The dense code is near exact but not sparse: keep its k largest atoms and refit their
        # coefficients by least squares on that support (clipped at 0, a one-step NNLS).
        k = min(self.cfg.k, c.shape[-1])
        idx = c.topk(k, dim=-1).indices  # (n, k)
        atoms = w[idx]  # (n, k, d)
        g = atoms @ atoms.transpose(1, 2) + 1e-6 * torch.eye(k, dtype=w.dtype, device=w.device)
        rhs = (atoms @ xs.unsqueeze(-1)).squeeze(-1)
        coef = torch.linalg.solve(g, rhs).clamp_min(0)
        return torch.zeros_like(c).scatter_(-1, idx, coef)


@register_sae("random")
class RandomDictionary(FittedDictionary):
    @torch.no_grad()
    def fit_(self, x: Tensor) -> None:
        self.b_dec.copy_(x.mean(dim=0))  # the random rows from __init__ stay

    def encode(self, x: Tensor) -> Tensor:
        return ops.topk_mask_dense(torch.relu((x - self.b_dec) @ self.W_dec.t()), self.cfg.k)
