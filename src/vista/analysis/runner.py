"""Run a list of analyses on one context: check, run, write each result as soon as it exists.

``OUT/analyses/index.json`` records what ran (with its seconds) and what was skipped and why;
it is rewritten after every analysis, so an interrupted call keeps everything finished before.
Documents named ``file.json#section`` by several analyses are merged into one ``OUT/file.json``
(this is how ``evaluation_results.json`` gets its VISTA sections from five analyses).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.registry import ANALYSES, AnalysisSpec, run_order
from vista.analysis.result import Result, Skip
from vista.errors import VistaError
from vista.jsonio import write_json

log = logging.getLogger(__name__)


class AnalysisJob(Protocol):
    """What a job that runs analyses holds besides one config per registered analysis (read
    with ``configs_of``): the names to run and the shared settings."""

    analysis: list[str]
    eval: AnalysisSettings


@dataclass
class Outcome:
    """What one call produced."""

    results: dict[str, Result] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def resolve_names(requested: list[str] | tuple[str, ...]) -> tuple[list[str], bool]:
    """``(names in run order, explicit)``; ``all`` means every registered analysis."""
    req = [str(r) for r in requested] or ["all"]
    if "all" in req:
        names = list(ANALYSES)
        explicit = False
    else:
        for r in req:
            ANALYSES.get_entry(r)  # unknown name: one sentence listing the choices
        names, explicit = list(dict.fromkeys(req)), True
    return run_order(names), explicit


def precheck(spec: AnalysisSpec, ctx: Context, cfg: Any) -> str:
    """Why ``spec`` cannot run here ('' if it can), from labels and config alone (no encoding)."""
    if spec.needs_labels:
        try:
            ctx.require_labels(spec.needs_labels)
        except Skip as e:
            return str(e)
    return spec.needs(cfg) if spec.needs else ""


def run_analyses(
    ctx: Context,
    names: list[str],
    configs: dict[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    explicit: bool = True,
) -> Outcome:
    """Run ``names`` on ``ctx`` with ``configs[name]`` (default config if absent); write to ``out_dir``.

    With ``explicit`` (the user named the analyses), an analysis that cannot run is an error
    raised before any work; otherwise it is skipped with its reason recorded.
    """
    out = Path(out_dir)
    specs = {n: ANALYSES.get_entry(n) for n in names}
    cfgs = {n: configs.get(n) or specs[n].config() for n in names}
    check_owner(out, ctx)
    outcome = Outcome(skipped=_prechecked(specs, cfgs, ctx, explicit))
    fragments: dict[str, dict[str, Any]] = {}
    for n, spec in specs.items():
        if n in outcome.skipped:
            log.info("Skipping %s: %s.", n, outcome.skipped[n])
            continue
        log.info("Running %s ...", n)
        t0 = time.perf_counter()
        try:
            result = spec.run(ctx, cfgs[n])
        except Skip as e:
            outcome.skipped[n] = str(e)
            log.info("Skipped %s: %s.", n, e)
            _write_index(out, outcome, ctx)
            continue
        if spec.needs_labels:
            for label, why in ctx.usable_labels().items():
                if why:
                    result.skipped.setdefault(label, why)
        result.config = _config_dict(cfgs[n])
        result.metadata = {**ctx.metadata(), **result.metadata}
        result.metadata["seconds"] = time.perf_counter() - t0
        _take_fragments(result, fragments)
        if spec.outputs is not None:
            spec.outputs.check(result)
        result.write(out)
        outcome.results[n] = result
        _write_index(out, outcome, ctx)
        log.info("%s done in %.1fs.", n, result.metadata["seconds"])
    for fname, sections in fragments.items():
        merge_sections(out / fname, sections, ctx.metadata())
    if explicit and outcome.skipped:
        first = next(iter(outcome.skipped.items()))
        raise VistaError(f"Analysis {first[0]!r} could not run: {first[1]}.")
    return outcome


def _prechecked(
    specs: dict[str, Any], cfgs: dict[str, Any], ctx: Context, explicit: bool
) -> dict[str, str]:
    """Analyses that cannot run, with the reason; with ``explicit`` the first is an error. Counts
    beyond the SAE or the split are always an error. Nothing has run yet."""
    beyond = [p for n, spec in specs.items() for p in beyond_data(n, cfgs[n], spec.config(), ctx)]
    if beyond:
        raise VistaError(f"Invalid settings: {'; '.join(beyond)}.")
    skipped = {}
    for n, spec in specs.items():
        reason = precheck(spec, ctx, cfgs[n])
        if reason and explicit:
            raise VistaError(f"Analysis {n!r} cannot run: {reason}.")
        if reason:
            skipped[n] = reason
    return skipped


def _take_fragments(result: Result, fragments: dict[str, dict[str, Any]]) -> None:
    """Move the result's ``FILE#section`` documents into ``fragments`` (several analyses write
    sections of one file, merged once all have run)."""
    for key, doc in result.files.items():
        if "#" in key:
            fname, section = key.split("#", 1)
            fragments.setdefault(fname, {})[section] = doc
    result.files = {k: v for k, v in result.files.items() if "#" not in k}


LATENT_COUNTS = frozenset(
    {"ks", "ns", "sp_ks", "k", "steer_k", "scale_k", "sp_k", "top_latents", "top_features", "top_n"}
)
"""Settings that count latents: at most the SAE's width."""
IMAGE_COUNTS = frozenset({"k_top", "top_k", "purity_k", "map_images"})
"""Settings that count images of the split: at most its size."""


def beyond_data(name: str, cfg: Any, default: Any, ctx: Context) -> list[str]:
    """Settings of analysis ``name`` that were changed from their defaults to more latents than
    the SAE has or more images than the split holds (a default beyond them is capped by the
    analysis, as VISTA's ks are on narrow SAEs)."""
    out: list[str] = []
    if not hasattr(cfg, "__dataclass_fields__"):
        return out
    limits = {"latents": int(ctx.sae.d_sae), "images": int(ctx.info.n_rows)}
    for f in fields(cfg):
        kind = "latents" if f.name in LATENT_COUNTS else "images" if f.name in IMAGE_COUNTS else ""
        v = getattr(cfg, f.name)
        if not kind or v == getattr(default, f.name, None):
            continue
        values = v if isinstance(v, (list, tuple)) else [v]
        big = [int(x) for x in values if isinstance(x, int) and x > limits[kind]]
        if big:
            what = (
                f"the SAE's {limits['latents']} latents"
                if kind == "latents"
                else f"the {limits['images']} images of split {ctx.settings.split!r}"
            )
            out.append(f"{name}.{f.name}={v} exceeds {what} (valid: 1 to {limits[kind]})")
    return out


def read_index(out: Path) -> dict[str, Any]:
    """``out/analyses/index.json`` (empty when there is none), or a ``VistaError``."""
    from vista.jsonio import read_json_object

    index = out / "analyses" / "index.json"
    if not index.is_file():
        return {}
    return read_json_object(
        index,
        "an index of vista analyses",
        f"delete {str(out / 'analyses')!r} and run the analyses again, or choose another out_dir",
    )


def check_owner(out: Path, ctx: Context) -> None:
    """Refuse to add results to an out_dir whose analyses are of another SAE or store: one
    out_dir's results are one SAE's on one store, or the report shows two runs as one."""
    doc = read_index(out)
    if not doc:
        return
    inputs = doc.get("inputs")
    held: dict[str, Any] = inputs if isinstance(inputs, dict) else doc
    mine = ctx.identity
    for what in ("sae", "store"):
        old, old_digest = held.get(what), held.get(f"{what}_digest")
        if isinstance(old_digest, str) and old_digest:
            same = old_digest == mine[f"{what}_digest"]
        else:  # an index written before the digests: by path
            same = not isinstance(old, str) or not old or _same_path(old, mine[what])
        if same:
            continue
        noun = "SAE" if what == "sae" else "store"
        raise VistaError(
            f"{str(out)!r} holds the analyses of another {noun} ({old!r}; this one is "
            f"{mine[what]!r}{', with other contents' if _same_path(str(old), mine[what]) else ''}); "
            f"results of two runs must not mix: choose another out_dir, or delete "
            f"{str(out / 'analyses')!r} to start clean."
        )


def _same_path(a: str, b: str) -> bool:
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:
        return False


def merge_sections(path: Path, sections: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Update ``path`` (a JSON object) with ``sections``; sections of other analyses stay."""
    doc: dict[str, Any] = {}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            doc = {}
        old = doc.get("_metadata", {})
        if old.get("sae") != metadata.get("sae") or old.get("store") != metadata.get("store"):
            doc = {}  # another SAE or store: start over rather than mix
    doc.update(sections)
    doc["_metadata"] = {
        **metadata,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return write_json(path, doc)


def _config_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else dict(cfg or {})


def _write_index(out: Path, outcome: Outcome, ctx: Context) -> None:
    index = out / "analyses" / "index.json"
    doc: dict[str, Any] = {"ran": {}, "skipped": {}}
    if index.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(index.read_text())
    for n, r in outcome.results.items():
        doc.setdefault("ran", {})[n] = {
            "seconds": r.metadata.get("seconds"),
            "path": f"analyses/{n}",
        }
        doc.get("skipped", {}).pop(n, None)
    for n, why in outcome.skipped.items():
        doc.setdefault("skipped", {})[n] = why
        doc.get("ran", {}).pop(n, None)
    doc["sae"], doc["store"], doc["split"] = ctx.sae_path, str(ctx.store), ctx.settings.split
    doc["inputs"] = dict(ctx.identity)
    write_json(index, doc)


def configs_of(job: AnalysisJob) -> dict[str, Any]:
    """The per-analysis configs held by an analysing verb's job (a field per analysis)."""
    return {name: getattr(job, name) for name in ANALYSES if hasattr(job, name)}


def analyze(
    sae_path: str | os.PathLike[str],
    store: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    requested: list[str] | tuple[str, ...],
    configs: dict[str, Any],
    settings: Any,
    explicit: bool | None = None,
    ranks: Any = None,
) -> Outcome:
    """Load the SAE, build the context, run the requested analyses (``all`` = every applicable;
    ``explicit=False`` skips, with the reason, the named ones that cannot run).

    With ``ranks`` of several processes (``vista.train.launch``), they share the encode pass
    (``vista.analysis.distributed``); the first then runs the analyses alone, and the others
    return an empty outcome.
    """
    from vista.saes.io import load_sae

    names, named = resolve_names(requested)
    explicit = named if explicit is None else explicit
    sae = load_sae(sae_path, device=settings.device)
    if settings.pursuit:
        from vista.saes.pursuit import pursuit_encoder

        sae = pursuit_encoder(sae, settings.pursuit, k=int(settings.pursuit_k))
    ctx = Context(sae, store, settings, sae_path=str(Path(sae_path).resolve()))
    if ranks is not None and ranks.world > 1:
        out = Path(out_dir)
        check_owner(out, ctx)  # in every process, before any of them starts the pass
        if not ctx.share_pass(ranks, out / "analyses" / f".encode-{settings.split}"):
            return Outcome()
    return run_analyses(ctx, names, configs, out_dir, explicit=explicit)
