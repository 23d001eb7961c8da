"""The analysis registry: one file per analysis registers its config and its ``run``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista.registry import Registry

if TYPE_CHECKING:
    from vista.analysis.context import Context
    from vista.analysis.declared import Outputs
    from vista.analysis.result import Result


@dataclass(frozen=True)
class AnalysisSpec:
    """A registered analysis."""

    name: str
    config: type
    """Its config dataclass (``vista analyze NAME.field=value``)."""
    run: Callable[[Context, Any], Result]
    summary: str
    """What it answers, one line (``vista analyze --help`` and docs/analysis.md)."""
    needs_labels: int = 0
    """Labels with two or more classes it needs (checked before any work)."""
    needs: Callable[[Any], str] | None = None
    """Further precondition on its config alone: '' if met, else why not."""
    outputs: Outputs | None = None
    """What its results hold (``vista.analysis.declared``): readers go through these."""
    order: int = 1000
    """Where it runs and is listed among the others, lowest first (the cheap, headline ones first;
    one with none runs after all that have one)."""


ANALYSES: Registry[AnalysisSpec] = Registry("analysis", "vista.analysis", "vista.interventions")
EVALUATE_PRESET = ("health", "reconstruction", "alignment", "probes", "ablation")
"""What ``vista evaluate`` runs (and writes into ``evaluation_results.json``)."""


def register_analysis(
    name: str,
    config: type,
    summary: str,
    *,
    needs_labels: int = 0,
    needs: Callable[[Any], str] | None = None,
    order: int = 1000,
    outputs: Outputs | None = None,
) -> Callable[[Callable[[Context, Any], Result]], Callable[[Context, Any], Result]]:
    def deco(fn: Callable[[Context, Any], Result]) -> Callable[[Context, Any], Result]:
        ANALYSES.add(
            name, AnalysisSpec(name, config, fn, summary, needs_labels, needs, outputs, order)
        )
        return fn

    return deco


def run_order(names: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """``names`` in the order analyses run and are listed in (``order``, then name); names not
    registered come last."""
    return sorted(names, key=lambda n: (ANALYSES[n].order if n in ANALYSES else 10**9, n))
