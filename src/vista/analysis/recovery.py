"""``recovery``: how much of a known dictionary the SAE found (stores from ``vista synthetic``).

The store's ``/extras/true_directions`` are the directions the data was made of; each is matched
to its best decoder row by cosine. ``recovered``: the share whose best cosine exceeds
``threshold`` (higher is better); ``mean_max_cosine``: the mean of those best cosines. Per group
of the generator (hierarchy parents and children, correlated groups), the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result, Skip
from vista.metrics.similarity import unit_rows
from vista.metrics.uncertainty import mean_ci

if TYPE_CHECKING:
    from vista.analysis.context import Context


@dataclass
class RecoveryConfig:
    threshold: float = 0.9
    """Cosine above which a true direction counts as recovered."""


OUT = Outputs("recovery")
RECOVERED = OUT.scalar("recovered", "higher", "share of true directions matched above threshold")
OUT.scalar("mean_max_cosine", "higher", "mean best cosine of each true direction")
OUT.scalar("recovered_rare_half", "higher", "recovered among the rarer half of true features")
OUT.scalar("recovered_common_half", "higher", "recovered among the commoner half")
OUT.array("best_cosine", "per true direction: its best cosine with a decoder row")


@register_analysis(
    "recovery",
    RecoveryConfig,
    "Ground truth: the share of a synthetic store's true directions the SAE found.",
    order=30,
    outputs=OUT,
)
def run(ctx: Context, cfg: RecoveryConfig) -> Result:
    from vista.errors import VistaError
    from vista.store import ActivationStore

    with ActivationStore(ctx.store) as st:
        try:
            true = st.extra("true_directions")
        except VistaError:
            raise Skip(
                "the store has no true directions (only `vista synthetic` stores do)"
            ) from None
        p_fire = st.extra("firing_probability") if "synthetic_config" in ctx.store_attrs else None
    best = (unit_rows(true) @ unit_rows(ctx.sae.W_dec.detach().cpu().numpy()).T).max(axis=1)
    hit = best > cfg.threshold
    s = ctx.settings
    r = Result("recovery")
    r.add(
        "recovered",
        float(hit.mean()),
        "higher",
        mean_ci(hit, s.n_boot, ctx.rng("recovery"), s.confidence),
        len(best),
    )
    r.add(
        "mean_max_cosine",
        float(best.mean()),
        "higher",
        mean_ci(best, s.n_boot, ctx.rng("recovery", "cos"), s.confidence),
        len(best),
    )
    r.arrays["best_cosine"] = best.astype(np.float32)
    if p_fire is not None:
        rare = p_fire <= np.median(p_fire)
        for name, part in (("recovered_rare_half", rare), ("recovered_common_half", ~rare)):
            ci = mean_ci(hit[part], s.n_boot, ctx.rng("recovery", name), s.confidence)
            r.add(name, float(hit[part].mean()), "higher", ci, int(part.sum()))
    r.headline = ["recovered", "mean_max_cosine"]
    return r
