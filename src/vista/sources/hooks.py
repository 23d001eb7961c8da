"""Reading activations out of any module: find it by dotted path (globs allowed), capture, select tokens."""

from __future__ import annotations

import contextlib
import fnmatch
from types import TracebackType
from typing import Any, Self

import torch
from torch import Tensor, nn

from vista.errors import VistaError

TOKEN_SELECTIONS = ("all", "no_registers", "patches", "cls", "registers", "mean")


def find_module(model: nn.Module, path: str) -> tuple[str, nn.Module]:
    """The one submodule whose dotted name is ``path`` or matches it as a glob pattern; ``.`` is
    the model itself (its output)."""
    if path == ".":
        return ".", model
    modules = dict(model.named_modules())
    if path in modules and path:
        return path, modules[path]
    matches = [n for n in modules if n and fnmatch.fnmatchcase(n, path)]
    if len(matches) == 1:
        return matches[0], modules[matches[0]]
    names = [n for n in modules if n]
    shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
    if not matches:
        raise VistaError(f"No module named {path!r} in the encoder; modules are: {shown}.")
    raise VistaError(
        f"Module pattern {path!r} matches {len(matches)} modules ({', '.join(matches[:10])}); "
        "make it match exactly one."
    )


class _StopForward(Exception):  # noqa: N818  (control flow, not an error)
    pass


class ForwardHook:
    """``with hook:`` registers ``self._hook`` as a forward hook of ``self.module``, and removes it
    on exit. Subclasses define ``_hook(module, inputs, output)``."""

    module: nn.Module
    _handle: Any = None

    def _hook(self, _m: nn.Module, _inp: Any, out: Any) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class Capture(ForwardHook):
    """Record a module's output during a forward pass; optionally stop the pass right there.

    Stopping skips every layer after the hooked one, which is wasted work for extraction.
    """

    def __init__(self, module: nn.Module, stop: bool = True) -> None:
        self.module = module
        self.stop = stop
        self.output: Tensor | None = None
        self._handle: Any = None

    def _hook(self, _m: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, tuple | list):
            out = out[0]
        elif hasattr(out, "last_hidden_state") and not isinstance(out, Tensor):
            out = out.last_hidden_state
        self.output = out.detach()
        if self.stop:
            raise _StopForward

    def run(self, model: Any, *args: Any, **kwargs: Any) -> Tensor:
        """Call ``model`` (a module or any callable that runs it) and return the captured output."""
        self.output = None
        with contextlib.suppress(_StopForward):
            model(*args, **kwargs)
        if self.output is None:
            raise VistaError(
                "The hooked module did not run during the forward pass; pick another layer."
            )
        return self.output


def select_tokens(out: Tensor, tokens: str, prefix_tokens: int = 0, registers: int = 0) -> Tensor:
    """Turn a module output into ``(B, T, D)`` tokens or ``(B, D)`` vectors.

    ``(B, D)`` is one vector per image. ``(B, T, D)`` is a token sequence whose first
    ``prefix_tokens`` are the CLS token (if any) then ``registers`` register tokens. ``(B, C, H, W)``
    feature maps become ``H*W`` tokens of width ``C``.

    - ``all``: every token; ``no_registers``: CLS + patches; ``patches``: patches only;
    - ``cls``: the CLS token, ``(B, D)``; ``registers``: the register tokens;
    - ``mean``: the mean of the patch tokens, ``(B, D)``.
    """
    if tokens not in TOKEN_SELECTIONS:
        raise VistaError(
            f"Unknown token selection {tokens!r}; choose one of {list(TOKEN_SELECTIONS)}."
        )
    if out.ndim == 4:
        out = out.flatten(2).transpose(1, 2)
    if out.ndim == 2:
        if tokens not in ("all", "mean"):
            raise VistaError(
                f"The hooked module outputs one vector per image, so tokens={tokens!r} does not "
                "apply; use tokens=all."
            )
        return out
    if out.ndim != 3:
        raise VistaError(
            f"The hooked module outputs a tensor of shape {tuple(out.shape)}; vista reads (B, D), "
            "(B, T, D) or (B, C, H, W) outputs."
        )
    n_cls = prefix_tokens - registers
    if tokens == "all":
        return out
    if tokens == "cls":
        if n_cls < 1:
            raise VistaError(
                "This encoder has no CLS token at this layer; use tokens=mean or tokens=patches."
            )
        return out[:, 0]
    if tokens == "registers":
        if registers < 1:
            raise VistaError("This encoder has no register tokens; use tokens=all or patches.")
        return out[:, n_cls:prefix_tokens]
    if tokens == "no_registers":
        return torch.cat([out[:, :n_cls], out[:, prefix_tokens:]], dim=1) if registers else out
    if tokens == "mean":
        return out[:, prefix_tokens:].mean(dim=1)
    return out[:, prefix_tokens:]


@torch.no_grad()
def capture_tokens(
    run: Any,
    module: nn.Module,
    inputs: Tensor,
    tokens: str,
    prefix_tokens: int = 0,
    registers: int = 0,
) -> Tensor:
    """Run ``run(inputs)`` (a model call), stop at ``module``, return its selected tokens in float32."""
    with Capture(module, stop=True) as cap:
        out = cap.run(run, inputs)
    return select_tokens(out.float(), tokens, prefix_tokens, registers)
