"""SAE edits of one split and their effects: passthrough, noise, suppression of a label's
features, the same number of random features, and scaling (attenuation, amplification).

The decomposition of a suppression's effect on a probe's per-image correctness ``ok``:

- ``total = ok(S) - ok(x)``: encode, zero the features, decode (the SAE in the model);
- ``reconstruction_error = ok(x_hat) - ok(x)``: encode-decode alone (passthrough);
- ``targeted = ok(S + (x - x_hat)) - ok(x)``: the edit with the SAE's error put back;
- ``interaction = total - reconstruction_error - targeted``.

The four add up exactly per image, so their intervals are over the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vista.interventions import ops
from vista.interventions.scoring import READERS, Effect, Scorer, effect
from vista.interventions.targets import random_features

if TYPE_CHECKING:
    from vista.analysis.context import Context

Outcome = dict[str, dict[str, np.ndarray]]
"""Attribute -> reader -> per-held-out-image correctness."""


@dataclass
class Edits:
    """The split's embeddings, the SAE's decoder and the scorer every edit shares."""

    ctx: Context
    scorer: Scorer
    x0: np.ndarray
    x_hat: np.ndarray
    w_dec: np.ndarray
    sigma: float
    cache: dict[str, tuple[Outcome, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def build(cls, ctx: Context, scorer: Scorer, noise_std: float) -> Edits:
        enc, sae = ctx.encoded, ctx.sae
        w_dec = sae.W_dec.detach().cpu().double().numpy()
        b_dec = sae.b_dec.detach().cpu().double().numpy()
        x0 = enc.pooled_raw.astype(np.float64)
        n_tokens = enc.n_images * enc.tokens_per_image
        sigma = noise_std or ops.error_scale(enc.image_sq_error, n_tokens, x0.shape[1])
        x_hat = ops.decode(enc.codes, w_dec, b_dec)
        return cls(ctx, scorer, x0, x_hat, w_dec, sigma)

    def run(self, key: str, x: np.ndarray) -> tuple[Outcome, np.ndarray]:
        """Score embeddings ``x`` once per ``key``: the outcome and the per-image cosine."""
        if key not in self.cache:
            self.cache[key] = (self.scorer.score(x), self.scorer.cosine(x))
        return self.cache[key]

    def passthrough(self) -> tuple[Outcome, np.ndarray]:
        return self.run("passthrough", self.x_hat)

    def noise(self) -> tuple[Outcome, np.ndarray]:
        rng = self.ctx.rng("intervene", "noise")
        x = ops.gaussian_noise(self.x0, self.sigma, self.ctx.encoded.tokens_per_image, rng)
        return self.run("noise", x)

    def scaled(
        self, feats: np.ndarray, alpha: float, keep: bool, key: str
    ) -> tuple[Outcome, np.ndarray]:
        """Features ``feats`` times ``alpha``, decoded; with the error put back if ``keep``."""
        name = f"{key}/alpha={alpha}/{'kept' if keep else 'decoded'}"
        if name in self.cache:
            return self.cache[name]
        x = ops.scale_features(self.x_hat, self.ctx.encoded.codes, self.w_dec, feats, alpha)
        return self.run(name, ops.keep_error(x, self.x0, self.x_hat) if keep else x)

    def randoms(
        self, exclude: np.ndarray, targeted: np.ndarray, seeds: int, keep: bool, key: str
    ) -> tuple[Outcome, np.ndarray, list[np.ndarray]]:
        """Suppression of random stand-ins for ``targeted`` (matched in firing rate and removed
        norm, none in ``exclude``), one set per seed: the outcome per seed (``(seeds, n)`` per
        attribute and reader, so intervals can resample the sets), the per-image cosine
        averaged over the sets, and the sets."""
        k = len(targeted)
        outs, coss, sets = [], [], []
        for s in range(max(1, seeds)):
            rng = self.ctx.rng("random", key, k, s)
            feats = random_features(self.ctx, exclude, k, rng, like=targeted)
            o, c = self.scaled(feats, 0.0, keep, f"{key}/random{k}/seed{s}")
            outs.append(o)
            coss.append(c)
            sets.append(feats)
        stacked = {a: {r: np.stack([o[a][r] for o in outs]) for r in READERS} for a in outs[0]}
        return stacked, np.mean(coss, axis=0), sets

    def base(self, attr: str, reader: str) -> np.ndarray:
        return self.scorer.attrs[attr].base[reader]


def contrasts(
    edits: Edits, outcomes: dict[str, Outcome], key: str
) -> dict[str, dict[str, dict[str, Effect]]]:
    """Component -> attribute -> reader -> effect, for a suppression's decomposition.

    ``outcomes`` holds ``passthrough``, ``noise``, ``suppressed``, ``suppressed_kept``,
    ``random``, ``random_kept`` (the random ones per drawn set: their effects' intervals hold the
    spread over the sets)."""
    o = outcomes
    parts: dict[str, Any] = {
        "total": lambda a, r: o["suppressed"][a][r] - edits.base(a, r),
        "reconstruction_error": lambda a, r: o["passthrough"][a][r] - edits.base(a, r),
        "targeted": lambda a, r: o["suppressed_kept"][a][r] - edits.base(a, r),
        "interaction": lambda a, r: (
            o["suppressed"][a][r]
            - o["passthrough"][a][r]
            - o["suppressed_kept"][a][r]
            + edits.base(a, r)
        ),
        "noise": lambda a, r: o["noise"][a][r] - edits.base(a, r),
        "random_total": lambda a, r: o["random"][a][r] - edits.base(a, r),
        "random_targeted": lambda a, r: o["random_kept"][a][r] - edits.base(a, r),
        "targeted_vs_random": lambda a, r: o["suppressed_kept"][a][r] - o["random_kept"][a][r],
    }
    return {
        part: {
            a: {r: effect(fn(a, r), edits.ctx, key, part, a, r) for r in READERS}
            for a in edits.scorer.attrs
        }
        for part, fn in parts.items()
    }
