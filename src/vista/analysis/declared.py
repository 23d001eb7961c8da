"""What each analysis writes, declared next to its config: the scalars (with their direction), the
arrays, the tables and the metadata of its ``Result``, by name pattern.

Readers (the report, the plots, the benchmark's table) never spell a result key as a string: they
hold the ``Key`` an analysis declares (``reconstruction.FVU``, ``feature_auc.AUC_TEST``) and read
through it, so a renamed key fails where it is read, at import, instead of silently emptying a
report section. The runner checks every result against its analysis's declarations (a key written
but not declared, or a scalar whose direction differs from the declared one); the test suite makes
that check an error.

A pattern is the key with its variable parts in braces: ``{label}/auc_test``,
``{label}/k{k}/{probe}/targeted``. A variable part matches any text without a ``/``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from vista.analysis.result import Result

log = logging.getLogger(__name__)

Kind = Literal["scalar", "array", "table", "metadata"]
C = TypeVar("C")
STRICT_ENV = "VISTA_STRICT_OUTPUTS"
"""Set to 1 (the test suite does), a result that breaks its declarations is an error; otherwise a
warning in the log (a user's run keeps its results)."""


@dataclass(frozen=True)
class Key:
    """One declared output of one analysis."""

    analysis: str
    kind: Kind
    pattern: str
    doc: str = ""
    direction: str = "none"
    """Scalars only: ``higher`` or ``lower`` is better, or ``none``."""

    @cached_property
    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.pattern)
        out = []
        for i, part in enumerate(parts):
            out.append(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)")
        return re.compile("".join(out))

    @property
    def fields(self) -> list[str]:
        """The variable parts of the pattern, in order."""
        return re.findall(r"\{(\w+)\}", self.pattern)

    def name(self, **parts: object) -> str:
        """The key with its variable parts filled in: ``AUC_TEST.name(label="digit")``."""
        missing = [f for f in self.fields if f not in parts]
        if missing:
            raise KeyError(f"{self.analysis}/{self.pattern} needs {missing}")
        return self.pattern.format(**{k: v for k, v in parts.items() if k in self.fields})

    def matches(self, key: str) -> bool:
        return self.regex.fullmatch(key) is not None

    def _store(self, result: Result) -> Mapping[str, Any]:
        stores: dict[str, Mapping[str, Any]] = {
            "scalar": result.scalars,
            "array": result.arrays,
            "table": result.tables,
            "metadata": result.metadata,
        }
        return stores[self.kind]

    def of(self, results: Mapping[str, Result], **parts: object) -> Any:
        """The value under this key in its analysis's result, or None when either is absent
        (a key of ``COMMON``, which every result carries, is read from the first result)."""
        if not self.analysis:
            return next(
                (v for r in results.values() if (v := self.read(r, **parts)) is not None), None
            )
        result = results.get(self.analysis)
        return None if result is None else self.read(result, **parts)

    def read(self, result: Result, **parts: object) -> Any:
        """The value under this key in ``result`` (this analysis's), or None when absent."""
        return self._store(result).get(self.name(**parts))

    def matching(self, results: Mapping[str, Result], **fixed: object) -> dict[str, Any]:
        """Every key of the result this pattern matches with the ``fixed`` parts: ``key -> value``."""
        result = results.get(self.analysis)
        if result is None:
            return {}
        out = {}
        for key, value in self._store(result).items():
            m = self.regex.fullmatch(key)
            if m and all(m.group(f) == str(v) for f, v in fixed.items()):
                out[key] = value
        return out

    def each(
        self, results: Mapping[str, Result], **fixed: object
    ) -> list[tuple[dict[str, str], Any]]:
        """Every key the pattern matches with the ``fixed`` parts: ``(its parts, value)``."""
        out = []
        for key, value in self.matching(results, **fixed).items():
            m = self.regex.fullmatch(key)
            assert m is not None
            out.append((m.groupdict(), value))
        return out


def config_of(result: Result, cls: type[C]) -> C:
    """The analysis's config as its dataclass, from the settings the result records (a field
    the record lacks takes its default): readers use the fields, not string keys."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in result.config.items() if k in known})


@dataclass
class Outputs:
    """The declarations of one analysis."""

    analysis: str
    keys: list[Key] = field(default_factory=list)

    def _add(self, kind: Kind, pattern: str, doc: str, direction: str = "none") -> Key:
        key = Key(self.analysis, kind, pattern, doc, direction)
        if any(k.kind == kind and k.pattern == pattern for k in self.keys):
            raise ValueError(f"{self.analysis}: {kind} {pattern!r} is declared twice")
        self.keys.append(key)
        return key

    def scalar(self, pattern: str, direction: str, doc: str = "") -> Key:
        return self._add("scalar", pattern, doc, direction)

    def array(self, pattern: str, doc: str = "") -> Key:
        return self._add("array", pattern, doc)

    def table(self, pattern: str, doc: str = "") -> Key:
        return self._add("table", pattern, doc)

    def meta(self, pattern: str, doc: str = "") -> Key:
        return self._add("metadata", pattern, doc)

    def of(self, results: Mapping[str, Result]) -> Result | None:
        """This analysis's result among ``results``, or None."""
        return results.get(self.analysis)

    def undeclared(self, result: Result) -> list[str]:
        """What ``result`` holds that no declaration covers, or holds with another direction."""
        out = []
        stores: list[tuple[Kind, Mapping[str, Any]]] = [
            ("scalar", result.scalars),
            ("array", result.arrays),
            ("table", result.tables),
        ]
        for kind, store in stores:
            # The most specific declaration wins: ``{label}/k{k}/{probe}/selectivity`` over
            # ``{label}/k{k}/{probe}/{component}``.
            declared = sorted((k for k in self.keys if k.kind == kind), key=lambda k: len(k.fields))
            for name in store:
                hit = next((k for k in declared if k.matches(name)), None)
                if hit is None:
                    out.append(f"{kind} {name!r}")
                elif kind == "scalar" and hit.direction != result.scalars[name].direction:
                    out.append(
                        f"scalar {name!r} has direction {result.scalars[name].direction!r}, "
                        f"declared {hit.direction!r}"
                    )
        return out

    @staticmethod
    def unbounded(result: Result) -> list[str]:
        """Scalars with a direction (a score a reader compares) that carry neither an interval
        with its ``n`` nor a reason for having none."""
        out = []
        for name, s in result.scalars.items():
            if s.direction == "none" or s.no_interval or not math.isfinite(s.value):
                continue
            if s.low is None or s.high is None:
                out.append(f"scalar {name!r} has a direction but no interval and no reason")
            elif s.n is None:
                out.append(f"scalar {name!r} has an interval but no n")
        return out

    def check(self, result: Result) -> None:
        """Warn (or, with ``VISTA_STRICT_OUTPUTS=1``, raise) when ``result`` breaks these
        declarations, or holds a score with no interval and no reason."""
        bad = self.undeclared(result) + self.unbounded(result)
        if not bad:
            return
        message = (
            f"analysis {self.analysis!r} wrote outputs that break its contract: {'; '.join(bad)}"
        )
        if os.environ.get(STRICT_ENV) == "1":
            raise AssertionError(message)
        log.warning("%s.", message)


COMMON = Outputs("")
"""Metadata every result of ``vista analyze`` carries (``Context.metadata`` and the runner)."""
ARCHITECTURE = COMMON.meta("architecture", "the SAE's architecture")
D_SAE = COMMON.meta("d_sae", "the SAE's width")
ENCODER = COMMON.meta("encoder", "the encoder the store came from")
LAYER = COMMON.meta("layer", "its layer")
STORE = COMMON.meta("store", "the store analysed")
SPLIT = COMMON.meta("split", "the split analysed")
N_IMAGES = COMMON.meta("n_images", "images of the split")
CONFIDENCE = COMMON.meta("confidence", "the confidence level of the intervals")
SECONDS = COMMON.meta("seconds", "how long the analysis ran")
for _name in ("d_model", "labels", "n_boot", "sae", "seed", "tokens_per_image", "versions"):
    COMMON.meta(_name)
