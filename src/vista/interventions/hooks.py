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

    def _hook(self, _m: nn.Module, _inp: Any, out: Any) -> Any:
        if isinstance(out, Tensor):
            return self._apply(out)
        if isinstance(out, tuple):
            return (self._apply(out[0]), *out[1:])
        if hasattr(out, "last_hidden_state"):
            out.last_hidden_state = self._apply(out.last_hidden_state)
            if isinstance(out, dict) and "last_hidden_state" in out:
                out["last_hidden_state"] = out.last_hidden_state
            return out
        raise VistaError(f"Cannot splice into a module output of type {type(out).__name__}.")


# -- edits ------------------------------------------------------------------------------------------
def passthrough(sae: Any) -> Edit:
    """Encode and decode: the SAE's reconstruction in place of the activations."""

    def edit(x: Tensor) -> Tensor:
        return sae.decode(sae.encode(x))

    return edit


def suppress(sae: Any, features: Tensor, keep_error: bool) -> Edit:
    """Zero ``features`` in the codes and decode; with ``keep_error`` the SAE's reconstruction
    error is added back, so only the features' contribution is removed."""
    w = sae.W_dec[features]

    def edit(x: Tensor) -> Tensor:
        z = sae.encode(x)
        removed = z[:, features] @ w
        if keep_error:
            return x - removed
        return sae.decode(z) - removed

    return edit


def constant(value: Tensor) -> Edit:
    """Every token replaced by ``value`` (zeros: zero-ablation; the mean activation: mean-ablation)."""

    def edit(x: Tensor) -> Tensor:
        return value.to(x.dtype).expand_as(x).clone()

    return edit


@torch.no_grad()
def identity(x: Tensor) -> Tensor:
    return x
