"""The values a setting can take: one set of rules, by field name and type, over every config a
verb's job holds, checked once before any work (``to_job``). A value outside them is refused with
the setting's name and its valid range, so no count runs for hours, goes negative or means
nothing (docs/errors.md, "Settings").

The rules, for every field of every nested config:

- a float is finite; a probability (``confidence``, ``alpha``, ``test_size``, ``val_fraction``)
  lies strictly between 0 and 1; a share or cosine (``UNIT``) lies in [0, 1];
- a repeat count (``REPEATS``: bootstrap replicates, permutations, random draws) lies between its
  floor and its ceiling, so none runs without end;
- a seed lies in [0, 2**32) (numpy's range);
- a ``device`` (and the trainer's ``accelerator``) names a device this machine has; a ``dtype``
  is a floating type (a store's: float16 or float32);
- any other integer is at least 1, unless its default is 0 or below (then 0 or -1 mean "auto",
  "all" or "off" and the default is the floor) or 0 is documented as "all" (``ZERO_MEANS_ALL``);
- an image normalisation has 1 or 3 channels and a mean and std of 1 value or one per channel;
- the lists of latent counts an analysis sweeps (``NON_EMPTY``) may not be empty, and the entries
  of any list of numbers follow the scalar rule.

A config with its own ``problems()`` (the SAE and training configs) applies its own rules, which
say more (``k`` at most ``d_sae``, Adam's betas below 1).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields, is_dataclass
from typing import Any

PROBABILITY = frozenset({"confidence", "alpha", "test_size", "val_fraction"})
"""Open interval (0, 1): a coverage, a level or a held-out share."""
UNIT = frozenset(
    {
        "quantiles",
        "null_quantile",
        "threshold",
        "min_freq",
        "coverage_tau",
        "dense_threshold",
        "rare_threshold",
        "min_gap",
        "min_eta_sq",
        "selective_auc",
        "lr_decay_fraction",
    }
)
"""Closed interval [0, 1]: shares, cosines, AUC and AP thresholds."""
REPEATS: dict[str, tuple[int, int]] = {
    "n_boot": (0, 100_000),
    "n_perm": (0, 100_000),
    "random_repeats": (1, 1_000),
    "random_seeds": (1, 1_000),
    "null_draws": (1, 1_000),
    "dead_null_draws": (1, 1_000),
    "n_pairs": (1, 10_000_000),
    "reseeds": (0, 100),
}
"""Repeat counts: (floor, ceiling). 0 bootstrap replicates means no intervals and 0 permutations
no p-values, 0 reseeds no stability analysis; the ceilings are far beyond any use (scipy's bootstrap defaults to 9,999)."""
ZERO_MEANS_ALL = frozenset({"max_images", "max_samples"})
"""Integer settings with a positive default where 0 is documented as "all"."""
NON_NEGATIVE = frozenset(
    {"noise_std", "min_activation", "dense_codes_mb", "weight_decay", "lr", "f1_gain", "C"}
)
"""Floats that may be 0 but not negative."""
NON_EMPTY = frozenset({"ks", "ns", "sp_ks"})
"""Lists an analysis sweeps over: empty, it has nothing to measure."""
SEED_LIMIT = 2**32
STORAGE_DTYPES = ("float16", "float32")
"""What a store's ``encoded`` dataset may hold (``dtype=`` of extract and encode)."""
COMPUTE_DTYPES = ("float32", "bfloat16", "float16", "float64")
"""What a model may compute in (``encoder.dtype``, ``generate.dtype``, ``judge``'s)."""


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def _int_problem(name: str, key: str, v: int, default: Any) -> str:
    if name == "seed" or name.endswith("_seed") or name == "seeds":
        if not 0 <= v < SEED_LIMIT:
            return f"{key}={v} must be between 0 and {SEED_LIMIT - 1} (a seed)"
        return ""
    if name in REPEATS:
        lo, hi = REPEATS[name]
        if not lo <= v <= hi:
            return f"{key}={v} must be between {lo} and {hi:,}"
        return ""
    if isinstance(default, int) and not isinstance(default, bool) and default <= 0:
        lo = default
    else:
        lo = 0 if name in ZERO_MEANS_ALL else 1
    if v < lo:
        return f"{key}={v} must be at least {lo}" + (" (0: all)" if name in ZERO_MEANS_ALL else "")
    return ""


def _float_problem(name: str, key: str, v: float) -> str:
    if not math.isfinite(v):
        return f"{key}={v} must be a finite number"
    if name in PROBABILITY and not 0.0 < v < 1.0:
        return f"{key}={v} must be strictly between 0 and 1"
    if name in UNIT and not 0.0 <= v <= 1.0:
        return f"{key}={v} must be between 0 and 1"
    if name in NON_NEGATIVE and v < 0:
        return f"{key}={v} must be zero or positive"
    if name == "buffer_gb" and v <= 0:
        return f"{key}={v} must be positive (GB of memory for the stream's shuffle windows)"
    if name == "shard_gb" and v < 0 and v != -1:
        return f"{key}={v} must be -1 (automatic), 0 (one file) or positive (GiB per shard)"
    return ""


def _str_problem(name: str, key: str, v: str) -> str:
    if name == "dtype":
        allowed = STORAGE_DTYPES if key == "dtype" else COMPUTE_DTYPES
        if v not in allowed:
            return f"{key}={v!r} is not one of {', '.join(allowed)}"
    if name == "device" or name == "accelerator":
        return _device_problem(key, v)
    return ""


def _device_problem(key: str, v: str) -> str:
    import torch

    if v in ("auto", "gpu", "tpu") and key.endswith("accelerator"):
        return ""
    try:
        kind = torch.device(v).type
    except (RuntimeError, ValueError):
        return f"{key}={v!r} is not a device (cpu, cuda, cuda:1, mps)"
    if kind == "cuda" and not torch.cuda.is_available():
        return f"{key}={v!r} asks for a GPU, but this machine has no CUDA device (use cpu)"
    if kind == "mps" and not torch.backends.mps.is_available():
        return f"{key}={v!r} asks for Apple's GPU, which this machine lacks (use cpu)"
    if kind not in ("cpu", "cuda", "mps"):
        return f"{key}={v!r} is not a device vista runs on (cpu, cuda, mps)"
    return ""


def _value_problems(name: str, key: str, v: Any, default: Any) -> list[str]:
    if isinstance(v, bool) or v is None:
        return []
    if isinstance(v, str):
        return [p for p in [_str_problem(name, key, v)] if p]
    if isinstance(v, int):
        return [p for p in [_int_problem(name, key, v, default)] if p]
    if isinstance(v, float):
        return [p for p in [_float_problem(name, key, v)] if p]
    if isinstance(v, (list, tuple)) and all(
        isinstance(e, (int, float)) and not isinstance(e, bool) for e in v
    ):
        if not v:
            if name in NON_EMPTY:
                return [f"{key}=[] must list at least one value (default: {list(default or [])})"]
            return []
        scalar = default[0] if isinstance(default, (list, tuple)) and default else None
        for e in v:
            got = _value_problems(name, key, e, scalar)
            if got:
                return [f"{got[0].replace(f'{key}={e}', f'{key}={list(v)}: {e}')}"]
    return []


def _normalisation_problems(obj: Any, prefix: str) -> list[str]:
    """An image normalisation (``channels``, ``mean``, ``std``) that cannot apply: 1 or 3 channels,
    a mean and a std of one value or one per channel."""
    names = {f.name for f in fields(obj)}
    if not {"channels", "mean", "std"} <= names:
        return []
    out = []
    c = obj.channels
    if c not in (1, 3):
        out.append(f"{prefix}channels={c} must be 1 (grey) or 3 (RGB)")
    for name in ("mean", "std"):
        v = list(getattr(obj, name))
        if len(v) not in (0, 1, c):
            out.append(f"{prefix}{name}={v} must hold 1 or {c} values (one per channel)")
    if any(x == 0 for x in obj.std):
        out.append(f"{prefix}std={list(obj.std)} must not hold 0")
    return out


def problems(obj: Any, prefix: str = "") -> list[str]:
    """Every setting of the config ``obj`` (and the configs it holds) outside its valid range,
    each as a phrase naming the setting with its dotted key."""
    if not is_dataclass(obj) or isinstance(obj, type):
        return []
    own = getattr(obj, "problems", None)
    if callable(own):
        return list(own())  # they name their settings (sae.k, train.lr) themselves
    out: list[str] = _normalisation_problems(obj, prefix)
    for f in fields(obj):
        v = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(v) and not isinstance(v, type):
            out.extend(problems(v, f"{key}."))
        elif isinstance(v, list) and v and all(is_dataclass(e) for e in v):
            continue  # sweep entries: their own rules apply when they are trained
        else:
            out.extend(_value_problems(f.name, key, v, _default(f)))
    return out
