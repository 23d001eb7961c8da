"""``tokens``: the SAE and the activations per token type (CLS, registers, patches) of a ViT store.

A ViT's tokens are not alike: the CLS token, the register tokens and the patch tokens have
different norms and statistics, and some patch tokens of large ViTs carry norms many times the
others (high-norm "artifact" tokens, Darcet et al. 2024, "Vision Transformers Need Registers").
An SAE trained on all of them can reconstruct one type well and another badly, which a single FVU
hides. From the sums the shared pass keeps per token position (``vista.metrics.positions``), per
type: FVU against the type's own mean, mean L0, mean and median token norm; for the patches, the
share of high-norm tokens (above ``high_norm_factor`` x their median norm); per position, the
mean squared error, L0 and norm (``(T,)`` arrays the report draws on the patch grid).

The token types come from the store's ``token_selection``, ``prefix_tokens`` and
``register_tokens`` (CLS first, then the registers, then the patches, as extraction stores
them). A store of one token per image (``tokens=cls`` or ``mean``, a CNN's pooled output) has
nothing to split: the analysis is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result, Skip
from vista.metrics.positions import share_above

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class TokensConfig:
    high_norm_factor: float = 4.0
    """A patch token whose norm exceeds this many times the patches' median norm counts as
    high-norm (the outliers Darcet et al. report sit near 10x)."""


OUT = Outputs("tokens")
OUT.scalar("{type}/fvu", "lower", "FVU of this token type, against its own mean")
OUT.scalar("{type}/l0", "none", "mean active latents per token of this type")
OUT.scalar("{type}/norm_mean", "none", "mean norm of the activations of this type")
OUT.scalar("{type}/norm_median", "none", "median norm (to 1/32 octave)")
OUT.scalar("{type}/tokens", "none", "tokens of this type in the split")
OUT.scalar("patches/high_norm_share", "none", "share of patch tokens above the high-norm line")
POSITION_SQ_ERROR = OUT.array(
    "position_sq_error", "per token position: mean squared reconstruction error"
)
POSITION_L0 = OUT.array("position_l0", "per token position: mean active latents")
POSITION_NORM = OUT.array("position_norm", "per token position: mean activation norm")
TYPES = OUT.meta("types", "token positions of each type: [first, stop)")
OUT.meta("high_norm_threshold", "the norm above which a patch token is high-norm")

WHY_TYPE = (
    "a ratio over every token of one type in the split, from sums the pass keeps per token "
    "position (not per image); reconstruction's fvu carries the per-image interval"
)


def token_types(t: int, attrs: dict) -> dict[str, list[int]]:
    """Positions of each token type in a store of ``t`` tokens per image."""
    selection = str(attrs.get("token_selection", "") or "")
    prefix = int(attrs.get("prefix_tokens", 0) or 0)
    registers = int(attrs.get("register_tokens", 0) or 0)
    cls = max(prefix - registers, 0)
    if selection == "all" and 0 < prefix < t:
        types = {"cls": list(range(cls)), "registers": list(range(cls, prefix))}
        types["patches"] = list(range(prefix, t))
    elif selection == "no_registers" and 0 < cls < t:
        types = {"cls": list(range(cls)), "patches": list(range(cls, t))}
    elif selection == "registers":
        types = {"registers": list(range(t))}
    else:  # patches, or a layout without the attributes (the original VISTA files): all alike
        types = {"patches": list(range(t))}
    return {k: v for k, v in types.items() if v}


@register_analysis(
    "tokens",
    TokensConfig,
    "FVU, L0 and norms per token type (CLS, registers, patches); high-norm patch tokens.",
    order=25,
    outputs=OUT,
)
def run(ctx: Context, cfg: TokensConfig) -> Result:
    enc = ctx.encoded
    t = enc.tokens_per_image
    if t < 2 or enc.positions is None:
        raise Skip("the store holds one token per image: there are no token types to compare")
    pos = enc.positions
    types = token_types(t, ctx.store_attrs)
    r = Result("tokens")
    for name, where in types.items():
        g = pos.group(np.asarray(where))
        n = int(g["tokens"])
        r.add(f"{name}/fvu", g["fvu"], "lower", n=n, no_interval=WHY_TYPE)
        for key in ("l0", "norm_mean", "norm_median", "tokens"):
            r.add(f"{name}/{key}", g[key], "none", n=n)
    if "patches" in types:
        hist = pos.norm_hist[np.asarray(types["patches"])].sum(axis=0)
        line = cfg.high_norm_factor * float(r.scalars["patches/norm_median"].value)
        r.add("patches/high_norm_share", share_above(hist, line), "none", n=int(hist.sum()))
        r.metadata["high_norm_threshold"] = line
    per = pos.per_position()
    r.arrays["position_sq_error"] = per["sq_error"].astype(np.float32)
    r.arrays["position_l0"] = per["l0"].astype(np.float32)
    r.arrays["position_norm"] = per["norm"].astype(np.float32)
    r.metadata["types"] = {k: [v[0], v[-1] + 1] for k, v in types.items()}
    r.headline = [f"{k}/fvu" for k in types]
    return r
