"""The SAE inside the model: a forward hook that replaces a module's output by an edit of it,
on the tokens the SAE was trained on (the same selection as extraction, ``sources.hooks``).

An edit maps ``(n, d)`` float32 activations to ``(n, d)``; the hook writes the result back in the
output's own dtype and layout, so the rest of the model runs unchanged. Token selections that are
a subset of the output's positions (``patches``, ``cls``, ``registers``, ``no_registers``) are
edited in place and the other positions are left as they were; ``mean`` (one pooled vector per
image) cannot be put back into the model and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vista.errors import VistaError
from vista.sources.hooks import ForwardHook

Edit = Callable[[Tensor], Tensor]


def token_positions(t: int, tokens: str, prefix_tokens: int, registers: int) -> slice | list[int]:
    """Which of ``t`` sequence positions the selection ``tokens`` reads."""
    n_cls = prefix_tokens - registers
    if tokens == "all":
        return slice(None)
    if tokens == "patches":
        return slice(prefix_tokens, None)
    if tokens == "cls":
        return [0]
    if tokens == "registers":
        return list(range(n_cls, prefix_tokens))
    if tokens == "no_registers":
        return list(range(n_cls)) + list(range(prefix_tokens, t))
    raise VistaError(
        f"tokens={tokens!r}: the store holds one pooled vector per image, which cannot be put "
        "back into the model; extract with tokens=all, patches or cls to splice."
    )


class Splice(ForwardHook):
    """``with Splice(module, edit, ...)``: every forward of the model runs ``edit`` at ``module``."""

    def __init__(
        self,
        module: nn.Module,
        edit: Edit,
        d_model: int,
        tokens: str = "all",
        prefix_tokens: int = 0,
        registers: int = 0,
    ) -> None:
        self.module, self.edit, self.d_model = module, edit, d_model
        self.tokens, self.prefix, self.registers = tokens, prefix_tokens, registers
        token_positions(1, tokens, prefix_tokens, registers)  # refuse 'mean' before any work
        self._handle: Any = None

    def _apply(self, out: Tensor) -> Tensor:
        if out.ndim == 4:  # (B, C, H, W): H*W tokens of width C
            b, c, h, w = out.shape
            seq = out.flatten(2).transpose(1, 2)
            return self._apply(seq).transpose(1, 2).reshape(b, c, h, w)
        if out.shape[-1] != self.d_model:
            raise VistaError(
                f"The hooked layer outputs {out.shape[-1]}-d activations but the SAE reads "
                f"{self.d_model}-d ones; splice the SAE at the layer it was trained on."
            )
        if out.ndim == 2:
            return self.edit(out.float()).to(out.dtype)
        if out.ndim != 3:
            raise VistaError(f"Cannot splice into an output of shape {tuple(out.shape)}.")
        pos = token_positions(out.shape[1], self.tokens, self.prefix, self.registers)
        new = out.clone()
        sel = out[:, pos]
        flat = sel.reshape(-1, sel.shape[-1]).float()
        new[:, pos] = self.edit(flat).to(out.dtype).reshape(sel.shape)
        return new

    def _write(self, out: Tensor, inputs: tuple[Any, ...]) -> Tensor:
        """The edited output, written into ``out`` itself when no gradient flows through it and
        it is not one of the module's inputs (an identity, an in-place op): whatever else holds
        the output (a model recording its hidden states with its own hooks, as LLaVA's vision
        tower does for ``vision_feature_layer``) then reads the edit too."""
        new = self._apply(out)
        ptr = out.untyped_storage().data_ptr()
        shared = any(
            isinstance(t, Tensor) and t.untyped_storage().data_ptr() == ptr for t in inputs
        )
        if shared or (out.requires_grad and torch.is_grad_enabled()):
            return new
        with torch.no_grad():
            out.copy_(new)
        return out

    def _hook(self, _m: nn.Module, inp: Any, out: Any) -> Any:
        inputs = tuple(inp) if isinstance(inp, tuple) else (inp,)
        if isinstance(out, Tensor):
            return self._write(out, inputs)
        if isinstance(out, tuple):
            return (self._write(out[0], inputs), *out[1:])
        if hasattr(out, "last_hidden_state"):
            model_output: Any = out  # a transformers ModelOutput: attributes and dict keys
            model_output.last_hidden_state = self._write(model_output.last_hidden_state, inputs)
            if isinstance(out, dict) and "last_hidden_state" in out:
                out["last_hidden_state"] = model_output.last_hidden_state
            return out
        raise VistaError(f"Cannot splice into a module output of type {type(out).__name__}.")


# -- edits ------------------------------------------------------------------------------------------
def passthrough(sae: Any) -> Edit:
    """Encode and decode: the SAE's reconstruction in place of the activations."""

    def edit(x: Tensor) -> Tensor:
        return sae.decode(sae.encode(x))

    return edit


def scale(sae: Any, features: Tensor, alpha: float, keep_error: bool) -> Edit:
    """Multiply ``features`` in the codes by ``alpha`` (0 suppresses, < 1 attenuates, > 1
    amplifies) and decode; with ``keep_error`` the SAE's reconstruction error is added back, so
    only the features' change is applied: ``x + (alpha - 1) z_S W_dec[S]``."""
    w = sae.W_dec[features]

    def edit(x: Tensor) -> Tensor:
        z = sae.encode(x)
        change = (alpha - 1.0) * (z[:, features] @ w)
        if keep_error:
            return x + change
        return sae.decode(z) + change

    return edit


def suppress(sae: Any, features: Tensor, keep_error: bool) -> Edit:
    """Zero ``features`` in the codes and decode (``scale`` with alpha 0)."""
    return scale(sae, features, 0.0, keep_error)


def noise(sigma: float, seed: int) -> Edit:
    """Independent ``N(0, sigma^2)`` noise on every token and dimension (the noise control at the
    SAE's reconstruction-error scale); the generator is seeded once, so a run is reproducible."""
    gen = torch.Generator().manual_seed(seed)

    def edit(x: Tensor) -> Tensor:
        return x + sigma * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)

    return edit


def linear(matrix: Tensor) -> Edit:
    """``x V`` per token (S&P Top-K's projection ``V = I - alpha a a^T / ||a||^2``)."""

    def edit(x: Tensor) -> Tensor:
        return x @ matrix.to(x.device, x.dtype)

    return edit


def erase(eraser: Any) -> Edit:
    """A ``concept-erasure`` eraser applied to every token (fitted in float64)."""

    def edit(x: Tensor) -> Tensor:
        return eraser(x.detach().double().cpu()).to(x.device, x.dtype)

    return edit


def constant(value: Tensor) -> Edit:
    """Every token replaced by ``value`` (zeros: zero-ablation; the mean activation: mean-ablation)."""

    def edit(x: Tensor) -> Tensor:
        return value.to(x.dtype).expand_as(x).clone()

    return edit


@torch.no_grad()
def identity(x: Tensor) -> Tensor:
    return x
