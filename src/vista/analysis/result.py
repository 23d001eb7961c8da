"""The one result type every analysis returns, and its files.

``OUT/analyses/<name>/result.json`` holds the name, the config, the scalars (each with its
direction, confidence interval and sample size), the tables, what was skipped and why, and the
metadata; ``arrays.npz`` holds the per-feature arrays. Reports and plots read these files only:
they never open a store or an SAE. Documents in the seeds' original schemas (``sdf_results.json``,
``intersectional_results.json``, ...) are written beside them, in ``OUT``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vista.errors import VistaError
from vista.jsonio import jsonable, umask_mode, write_json

SCHEMA = "vista.result/1"
DIRECTIONS = ("higher", "lower", "none")


class Skip(Exception):  # noqa: N818  (a control-flow signal, not an error)
    """Raised by an analysis that cannot run on this input; the message is the reason."""


@dataclass(frozen=True)
class Scalar:
    """One number of a result."""

    value: float
    direction: str = "none"
    """``higher`` or ``lower`` is better, or ``none`` (a description, not a score)."""
    low: float | None = None
    """Lower end of the confidence interval (``None``: no interval)."""
    high: float | None = None
    n: int | None = None
    """Sample size behind the value (images, features, pairs: the unit the CI resamples)."""
    no_interval: str = ""
    """Why a number with a direction has no interval (a count over the whole split, a
    definition taken as a peer computes it), where it has none."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"value": self.value, "direction": self.direction}
        if self.low is not None and self.high is not None:
            doc["ci"] = [self.low, self.high]
        if self.n is not None:
            doc["n"] = self.n
        if self.no_interval:
            doc["no_interval"] = self.no_interval
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Scalar:
        ci = doc.get("ci") or [None, None]
        value = doc["value"]
        return cls(
            float("nan") if value is None else float(value),
            doc.get("direction", "none"),
            None if ci[0] is None else float(ci[0]),
            None if ci[1] is None else float(ci[1]),
            doc.get("n"),
            str(doc.get("no_interval") or ""),
        )


@dataclass
class Result:
    """What one analysis found."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    scalars: dict[str, Scalar] = field(default_factory=dict)
    """Flat ``"label/metric" -> Scalar``."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-feature (or per-class, per-pair) arrays, written to ``arrays.npz``."""
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Named tables, each a list of rows."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Parts not computed (a label, a sub-analysis) -> the reason."""
    metadata: dict[str, Any] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    """Scalars a summary shows first (``vista run`` prints them)."""
    files: dict[str, Any] = field(default_factory=dict)
    """Documents in an original schema: ``name.json`` -> JSON object, ``name.npz`` -> arrays."""

    def add(
        self,
        name: str,
        value: float,
        direction: str = "none",
        ci: tuple[float, float] | None = None,
        n: int | None = None,
        no_interval: str = "",
    ) -> None:
        """Add the scalar ``name``; one with a direction takes an interval and its ``n``, or says
        in ``no_interval`` why it has none (``Outputs.check``)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        lo, hi = ci if ci is not None else (None, None)
        self.scalars[name] = Scalar(
            float(value),
            direction,
            None if lo is None else float(lo),
            None if hi is None else float(hi),
            None if n is None else int(n),
            no_interval,
        )

    def value(self, name: str) -> float:
        return self.scalars[name].value

    # -- files ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "config": self.config,
            "scalars": {k: s.to_json() for k, s in self.scalars.items()},
            "tables": self.tables,
            "skipped": self.skipped,
            "headline": self.headline,
            "arrays": {
                k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in self.arrays.items()
            },
            "metadata": self.metadata,
            "files": sorted(self.files),
        }

    def write(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``out_dir/analyses/<name>/`` (arrays first, JSON last) and the original files."""
        out = Path(out_dir)
        target = out / "analyses" / self.name
        target.mkdir(parents=True, exist_ok=True)
        write_npz(target / "arrays.npz", self.arrays)
        for fname, doc in self.files.items():
            if fname.endswith(".npz"):
                write_npz(out / fname, doc)
            else:
                write_json(out / fname, doc)
        write_json(target / "result.json", self.to_json())
        return target

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Result:
        """Read ``path`` (a result directory, or its ``result.json``). A file that is not what
        ``write`` wrote (not JSON, JSON of another shape, an ``arrays.npz`` that is not a numeric
        archive or holds pickled objects) is one sentence naming it; nothing in it is executed."""
        p = Path(path)
        d = p if p.is_dir() else p.parent
        try:
            doc = json.loads((d / "result.json").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise VistaError(
                f"{str(d)!r} holds no readable result.json ({e.__class__.__name__}); run "
                "`vista analyze` again."
            ) from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise VistaError(
                f"{str(d / 'result.json')!r} is not a vista result (schema {got!r}); run "
                "`vista analyze` again."
            )
        try:
            result = cls._from_doc(doc)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise VistaError(
                f"{str(d / 'result.json')!r} does not have the shape vista writes ({e}); it was "
                "edited or written by something else: run `vista analyze` again."
            ) from None
        if (d / "arrays.npz").is_file():
            result.arrays = _read_arrays(d / "arrays.npz")
        return result

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> Result:
        def mapping(key: str, values: type | tuple[type, ...] = object) -> dict[str, Any]:
            got = doc.get(key, {})
            if not isinstance(got, dict) or not all(isinstance(k, str) for k in got):
                raise TypeError(f"{key!r} is not an object")
            if not all(isinstance(v, values) for v in got.values()):
                raise TypeError(f"an entry of {key!r} is not {getattr(values, '__name__', values)}")
            return got

        if not isinstance(doc.get("name"), str):
            raise TypeError("'name' is not a string")
        headline = doc.get("headline", [])
        if not isinstance(headline, list) or not all(isinstance(h, str) for h in headline):
            raise TypeError("'headline' is not a list of names")
        tables = mapping("tables", list)
        for name, rows in tables.items():
            if not all(isinstance(r, dict) for r in rows):
                raise TypeError(f"table {name!r} is not a list of rows (objects)")
        scalars = {}
        for k, v in mapping("scalars", dict).items():
            sc = Scalar.from_json(v)
            if sc.direction not in DIRECTIONS or (sc.n is not None and not isinstance(sc.n, int)):
                raise ValueError(f"scalar {k!r} has direction {sc.direction!r} or n {sc.n!r}")
            scalars[k] = sc
        return cls(
            name=doc["name"],
            config=mapping("config"),
            scalars=scalars,
            tables=tables,
            skipped={k: str(v) for k, v in mapping("skipped").items()},
            headline=headline,
            metadata=mapping("metadata"),
        )


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The numeric arrays of ``path``; pickled objects are refused, never loaded."""
    import pickle
    import zipfile

    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single array or other data, not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise VistaError(
            f"{str(path)!r} is not an archive of numeric arrays ({' '.join(str(e).split())[:120]}); "
            "vista never loads pickled objects: run `vista analyze` again."
        ) from None
    return arrays


def write_npz(path: Path, arrays: dict[str, Any]) -> Path:
    """``np.savez_compressed`` through a temporary file and a rename (no pickled objects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in clean.items():
        if v.dtype == object:
            raise ValueError(f"array {k!r} has dtype object; results hold numeric arrays only")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **clean)  # type: ignore[arg-type]
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_results(out_dir: str | os.PathLike[str]) -> dict[str, Result]:
    """Every result under ``out_dir/analyses`` (what reports read)."""
    root = Path(out_dir) / "analyses"
    if not root.is_dir():
        return {}
    return {
        d.name: Result.read(d)
        for d in sorted(root.iterdir())
        if d.is_dir() and (d / "result.json").is_file()
    }


__all__ = ["SCHEMA", "Result", "Scalar", "jsonable", "read_results", "write_npz"]
