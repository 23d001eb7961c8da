"""What each verb reads and what it writes, and the rule between them: no verb writes over one of
its own inputs (docs/errors.md, "Outputs that exist").

``check_outputs`` runs before any work (the CLI calls it before taking the output lock). It
refuses, in one sentence, an output file that is an input or would be written inside one (the
store, the SAE directory, the dataset, the files a verb reads), a derived output (``X.mean.h5``
and ``X.max.h5`` of ``vista encode``, ``X.partial`` of an interrupted write) that is an input, an
input inside a folder the verb writes (``out_dir/analyses``, ``out_dir/sae``, ...), an output file
that is a directory and an output directory that is a file. ``overwrite=true`` never lifts it.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from vista.errors import VistaError

_ANALYSIS_WRITES = (
    "analyses",
    "plots",
    "logs",
    "*_results.json",
    "causal_*.json",
    "eval_*.json",
    "concept_paths.json",
    "sdfs_*.npz",
)
WRITES_IN_OUT_DIR: dict[str, tuple[str, ...]] = {
    "train": ("sae", "reseeds", "checkpoints", "logs"),
    "train-encoder": ("encoder.safetensors", "encoder.json", "logs", "checkpoints"),
    "analyze": _ANALYSIS_WRITES,
    "evaluate": _ANALYSIS_WRITES,
    "intervene": _ANALYSIS_WRITES,
    "splice": _ANALYSIS_WRITES,
    "generate": _ANALYSIS_WRITES,
    "probe": ("analyses", "logs"),
    "judge": ("analyses", "logs"),
    "bench": ("saes", "train", "results", "plots", "report", "logs", "bench_*.json", "bench_*.csv"),
    "run": (
        "sae",
        "reseeds",
        "checkpoints",
        "logs",
        "encoder",
        "activations.h5",
        "activations.h5.partial",
        *_ANALYSIS_WRITES,
        "report",
        "run.json",
    ),
}
"""The entries of its out_dir each verb writes (names or glob patterns); what else is there is
left alone, so a run directory can hold the store and the SAE a later verb reads."""


def _inputs(job: object) -> list[tuple[str, Path]]:
    """``(setting, path)`` of every file or folder the job reads."""
    out: list[tuple[str, Path]] = []

    def add(name: str, value: Any) -> None:
        if isinstance(value, str) and value:
            out.append((name, Path(value)))

    for name in ("store", "sae", "params", "model_path"):
        add(name, getattr(job, name, None))
    for i, value in enumerate(getattr(job, "files", None) or []):
        add(f"files[{i}]", value)
    for group, attrs in (
        ("dataset", ("root",)),
        ("encoder", ("path",)),
        ("compare", ("other_sae", "other_store")),
        ("splice", ("encoder_path", "dataset_root")),
        ("generate", ("encoder_path", "dataset_root")),
    ):
        node = getattr(job, group, None)
        for a in attrs:
            add(f"{group}.{a}", getattr(node, a, None))
    stability = getattr(job, "stability", None)
    for i, p in enumerate(getattr(stability, "saes", None) or []):
        add(f"stability.saes[{i}]", p)
    return out


def _output_files(verb: str, job: object) -> list[tuple[str, Path]]:
    """``(what, path)`` of every file a job with an ``out=`` file writes."""
    out = getattr(job, "out", None)
    if verb not in ("extract", "encode", "synthetic", "shard", "unshard") or not out:
        return []
    files = [("out", Path(out))]
    if verb == "encode":
        from vista.analysis.codes import POOLINGS, pooled_path

        files += [(f"{p}-pooled output", pooled_path(out, p)) for p in POOLINGS]
    files += [(f"partial file of {w}", Path(f"{p}.partial")) for w, p in list(files)]
    return files


def _same_or_inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies inside it (paths resolved, links followed)."""
    ra, rb = a.resolve(), b.resolve()
    if ra == rb:
        return True
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return rb in ra.parents


def check_outputs(verb: str, job: object) -> None:
    """Refuse, before any work, a job that would write over one of its inputs or whose output
    path is of the wrong kind."""
    for name in ("out", "out_dir", "run_dir"):
        value = getattr(job, name, None)
        if isinstance(value, str) and not value.strip():
            raise VistaError(f"{name} is empty; give the path to write to, e.g. {name}=results.")
    inputs = _inputs(job)
    for what, path in _output_files(verb, job):
        sharded = verb == "shard" or (verb == "extract" and float(getattr(job, "shard_gb", 0)) != 0)
        if what == "out" and path.is_dir() and not sharded:  # a sharded store is a directory
            raise VistaError(
                f"out={str(path)!r} is a directory; give the path of the file to write, e.g. "
                f"out={str(path / 'out.h5')!r}."
            )
        for name, src in inputs:
            if _same_or_inside(path, src):
                where = "is" if path.resolve() == src.resolve() else "lies inside"
                named = f"out={str(path)!r}" if what == "out" else f"The {what} ({str(path)!r})"
                raise VistaError(
                    f"{named} {where} the input {name}={str(src)!r}; vista never "
                    "writes over its own inputs: choose another out."
                )
    out_dir = getattr(job, "out_dir", None)
    if verb == "report":
        out_dir = getattr(job, "run_dir", None)
    if not isinstance(out_dir, str) or not out_dir:
        return
    root = Path(out_dir)
    if verb == "report" and not root.exists():
        raise VistaError(
            f"The run directory {out_dir!r} does not exist; give the out_dir of `vista run` or "
            "`vista analyze`."
        )
    if root.exists() and not root.is_dir():
        setting = "run_dir" if verb == "report" else "out_dir"
        raise VistaError(
            f"{setting}={out_dir!r} is a file, not a directory; give a directory for the results."
        )
    writes = ("report",) if verb == "report" else WRITES_IN_OUT_DIR.get(verb, ())
    for name, src in inputs:
        try:
            rel = src.resolve().relative_to(root.resolve())
        except ValueError:
            if _same_or_inside(root, src) and src.is_file():
                raise VistaError(
                    f"out_dir={out_dir!r} is the input {name}={str(src)!r}; choose another out_dir."
                ) from None
            continue
        if not rel.parts:
            continue  # the out_dir itself is read (a run directory): only its entries matter
        top = rel.parts[0]
        if any(fnmatch.fnmatch(top, pat) for pat in writes):
            raise VistaError(
                f"The input {name}={str(src)!r} lies in {str(root / top)!r}, which vista {verb} "
                f"writes; vista never writes over its own inputs: move the input or choose another "
                "out_dir."
            )
