"""Inference-time pursuit encoders on a trained dictionary (seed 004: IHTP and MPSAE).

Neither is trained: ``from_dictionary`` copies ``W_dec`` and ``b_dec`` from any SAE and the codes
come from a pursuit on that dictionary. Codes are signed. With several tokens per image, IHTP
shares one support across the image's tokens (``encode_instances``); the evaluation reports the
per-token and the per-instance L0 separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vista.errors import VistaError
from vista.saes.base import SAE, TrainOutput
from vista.saes.config import SAEConfig
from vista.saes.mp import matching_pursuit
from vista.saes.registry import base_fields, config_from_dict, register_sae


@dataclass
class PursuitConfig(SAEConfig):
    """Inference-time pursuit encoders on a trained dictionary (``W_dec``, ``b_dec``)."""

    architecture: str = "ihtp"
    k: int = 8
    """ihtp: atoms per token before the union over an instance; mpsae: pursuit steps."""
    solver: str = "min_norm"
    """ihtp least squares: ``min_norm`` (pseudo-inverse, right when the support exceeds d_model)
    or ``ridge``."""
    ridge: float = 1e-3
    """Ridge strength, relative to the mean squared norm of the support atoms' Gram diagonal."""


class PursuitSAE(SAE):
    """A dictionary (``W_dec``, ``b_dec``) with a pursuit encoder; ``W_enc`` and ``b_enc`` unused."""

    config_class = PursuitConfig
    cfg: PursuitConfig
    signed_codes = True
    trainable = False

    def __init__(self, cfg: PursuitConfig) -> None:
        super().__init__(cfg)
        del self.W_enc
        del self.b_enc
        self.requires_grad_(False)
        if cfg.k < 1:
            raise VistaError(f"sae.k must be at least 1 for {cfg.architecture}, got {cfg.k}.")

    @classmethod
    def from_dictionary(cls, sae: SAE, **overrides: Any) -> PursuitSAE:
        """This encoder on ``sae``'s decoder (copied), e.g. ``IHTPSAE.from_dictionary(sae, k=5)``."""
        name = next(n for n, c in _PURSUITS.items() if c is cls)
        cfg = config_from_dict(
            {**base_fields(sae.cfg), **overrides, "architecture": name, "d_model": sae.d_model}
        )
        new = cls(cfg)  # type: ignore[arg-type]
        with torch.no_grad():
            new.W_dec.copy_(sae.W_dec)
            new.b_dec.copy_(sae.b_dec)
        return new.to(sae.W_dec.device).eval()

    def pre_acts(self, x: Tensor) -> Tensor:
        return (x - self.b_dec) @ self.W_dec.t()

    def training_forward(
        self, x: Tensor, dead_mask: Tensor | None = None, sparsity_scale: float | Tensor = 1.0
    ) -> TrainOutput:
        raise VistaError(
            f"{self.cfg.architecture} is an inference-time encoder: train a dictionary with another "
            "architecture, then evaluate it with eval.pursuit="
            f"{self.cfg.architecture}."
        )

    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        self.b_dec.div_(scale)


def _least_squares(atoms: Tensor, targets: Tensor, solver: str, ridge: float) -> Tensor:
    """Coefficients ``c`` minimising ``||c @ atoms - targets||`` for ``atoms (..., m, d)``.

    ``min_norm`` uses the pseudo-inverse: the least-squares solution of smallest norm, correct
    also when ``m > d`` or the atoms are dependent (docs/originals.md D40). ``ridge`` adds ``lambda I`` to the
    Gram matrix. Solved in float64.
    """
    a = atoms.double()
    y = targets.double()
    if solver == "min_norm":
        sol = y @ torch.linalg.pinv(a)
    elif solver == "ridge":
        gram = a @ a.transpose(-1, -2)
        lam = ridge * gram.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        sol = torch.linalg.solve(gram + lam[..., None] * eye, a @ y.transpose(-1, -2))
        sol = sol.transpose(-1, -2)
    else:
        raise VistaError(f"Unknown IHTP solver {solver!r}; use min_norm or ridge.")
    return sol.to(targets.dtype)


@register_sae("ihtp")
class IHTPSAE(PursuitSAE):
    """Instance hard-thresholding pursuit: the support is the union over an image's tokens of each
    token's top-``k`` atoms by ``|<x - b_dec, d_j>|``; every token's codes are the least-squares fit
    on that support. For a lone token (``encode``), the support is its own top ``k``."""

    encodes_instances = True

    def encode(self, x: Tensor) -> Tensor:
        xc = x - self.b_dec
        k = min(self.cfg.k, self.d_sae)
        idx = (xc @ self.W_dec.t()).abs().topk(k, dim=1).indices  # (n, k)
        coef = _least_squares(self.W_dec[idx], xc[:, None, :], self.cfg.solver, self.cfg.ridge)
        return x.new_zeros(x.shape[0], self.d_sae).scatter_(1, idx, coef[:, 0, :])

    def encode_instances(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        xc = x - self.b_dec
        k = min(self.cfg.k, self.d_sae)
        out = x.new_zeros(b, t, self.d_sae)
        idx = (xc @ self.W_dec.t()).abs().topk(k, dim=2).indices  # (b, t, k)
        for i in range(b):
            support = torch.unique(idx[i])
            coef = _least_squares(self.W_dec[support], xc[i], self.cfg.solver, self.cfg.ridge)
            out[i, :, support] = coef
        return out


@register_sae("mpsae")
class MPSAE(PursuitSAE):
    """``k`` steps of signed matching pursuit per token (argmax ``|c|``; atoms may repeat).

    Atoms are normalised for the pursuit and the codes rescaled, so decoding with the original
    ``W_dec`` reproduces the pursuit's reconstruction whatever the row norms.
    """

    def encode(self, x: Tensor) -> Tensor:
        norms = self.W_dec.norm(dim=1).clamp_min(1e-12)
        codes, _ = matching_pursuit(x - self.b_dec, self.W_dec / norms[:, None], self.cfg.k, True)
        return codes / norms


_PURSUITS: dict[str, type[PursuitSAE]] = {"ihtp": IHTPSAE, "mpsae": MPSAE}


def pursuit_encoder(sae: SAE, name: str, **overrides: Any) -> PursuitSAE:
    """``name`` (``ihtp`` or ``mpsae``) on ``sae``'s dictionary."""
    if name not in _PURSUITS:
        raise VistaError(f"Unknown pursuit encoder {name!r}; choose one of {sorted(_PURSUITS)}.")
    return _PURSUITS[name].from_dictionary(sae, **overrides)
