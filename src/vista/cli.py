"""The ``vista`` command: one verb per pipeline step, Hydra overrides for everything else."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vista import __version__
from vista.errors import VistaError

USAGE = """usage: vista VERB [key=value ...] [--help] [--cfg job] [-m]

Sparse autoencoders on vision-encoder activations.

verbs:
  run            the whole default job: train-encoder -> extract -> train -> evaluate -> plot
  train-encoder  train mnist_cnn or alexnet_transformer (encoder=NAME dataset=NAME out_dir=DIR)
  extract        encoder activations + labels -> HDF5 store (dataset=NAME encoder=NAME
                 encoder.path=... encoder.layer=INT|MODULE encoder.tokens=... out=FILE.h5)
  train          train SAE(s) on a store (store=FILE.h5 sae=topk|batchtopk|... out_dir=DIR)
  encode         an SAE's codes as stores, per token and mean/max per image (sae= store= out=)
  evaluate       evaluation_results.json (sae=DIR/sae store=FILE.h5 out_dir=DIR)
  synthetic      a store with a known dictionary, the ground truth (out=FILE.h5 synthetic.*=...)
  info           describe a store or an SAE directory (vista info PATH)

`vista VERB --help` shows the verb's configuration. Results land in the out_dir of each verb.
"""

# Lightning's DDP launcher re-runs this program without the verb; it finds it here.
_VERB_ENV = "VISTA_VERB"


def _setup_logging() -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_vista", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._vista = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.INFO)
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _require(cfg: Any, *keys: str) -> None:
    from omegaconf import OmegaConf

    missing = [k for k in keys if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise VistaError(
            f"Missing required setting(s) {', '.join(missing)}: pass them as {missing[0]}=VALUE."
        )


# -- tasks ------------------------------------------------------------------------------------------
def task_train(cfg: Any) -> None:
    _require(cfg, "store", "out_dir")
    from vista.store import ActivationStore

    with ActivationStore(cfg.store):  # a missing or corrupt store fails before Lightning loads
        pass
    from omegaconf import OmegaConf

    from vista.train.fit import train_saes

    base = OmegaConf.to_container(cfg.sae, resolve=True)
    sweep = cfg.get("sweep")
    extra = OmegaConf.to_container(sweep, resolve=True) if sweep else []
    paths = train_saes(cfg.store, sweep_configs(base, extra), cfg.train, cfg.trainer, cfg.out_dir)
    for p in paths:
        print(f"SAE written to {p}")


def sweep_configs(base: Any, overrides: Any) -> list[dict[str, Any]]:
    """``base`` plus one config per entry of ``overrides`` (each applied on top of ``base``)."""
    if not isinstance(overrides, list) or not all(isinstance(o, dict) for o in overrides):
        raise VistaError("sweep must be a list of mappings, e.g. 'sweep=[{k: 64}, {d_sae: 8192}]'.")
    return [dict(base), *({**base, **o} for o in overrides)]


def task_evaluate(cfg: Any) -> None:
    from vista.pipeline import evaluate_into
    from vista.reports.tables import evaluation_summary

    _require(cfg, "sae", "store", "out_dir")
    doc, _ = evaluate_into(Path(cfg.sae), Path(cfg.store), Path(cfg.out_dir), cfg.eval)
    print(evaluation_summary(doc))
    print(f"results: {Path(cfg.out_dir) / 'evaluation_results.json'}")


def task_extract(cfg: Any) -> None:
    from vista.sources.extract import extract

    _require(cfg, "out")
    compression = None if str(cfg.compression).lower() in ("none", "null", "") else cfg.compression
    path = extract(
        cfg.dataset,
        cfg.encoder,
        cfg.out,
        dtype=cfg.dtype,
        compression=compression,
        resume=cfg.resume,
        overwrite=cfg.overwrite,
    )
    print(f"store written to {path}")


def task_encode(cfg: Any) -> None:
    from vista.analysis.codes import encode_store

    _require(cfg, "sae", "store", "out")
    compression = None if str(cfg.compression).lower() in ("none", "null", "") else cfg.compression
    paths = encode_store(
        cfg.sae,
        cfg.store,
        cfg.out,
        batch_images=int(cfg.batch_images),
        device=cfg.device,
        dtype=cfg.dtype,
        compression=compression,
        resume=cfg.resume,
        overwrite=cfg.overwrite,
    )
    print("codes written to " + ", ".join(str(p) for p in paths.values()))


def task_train_encoder(cfg: Any) -> None:
    from vista.train.classifier import train_encoder

    _require(cfg, "out_dir")
    meta = train_encoder(cfg.dataset, cfg.encoder, cfg.out_dir, cfg.trainer)
    print(
        f"encoder written to {cfg.out_dir}: test accuracy {meta.get('test_accuracy', float('nan')):.4f}"
    )


def task_synthetic(cfg: Any) -> None:
    from omegaconf import OmegaConf

    from vista.sources.synthetic import SyntheticConfig, write_synthetic_store

    _require(cfg, "out")
    syn = SyntheticConfig(**OmegaConf.to_container(cfg.synthetic, resolve=True))  # type: ignore[arg-type]
    path = write_synthetic_store(cfg.out, syn)
    print(
        f"synthetic store written to {path} ({syn.n_features} true directions in {syn.d_model} dims)"
    )


def task_run(cfg: Any) -> None:
    from vista.pipeline import run

    run(cfg)


TASKS: dict[str, Callable[[Any], None]] = {
    "run": task_run,
    "train-encoder": task_train_encoder,
    "extract": task_extract,
    "encode": task_encode,
    "train": task_train,
    "evaluate": task_evaluate,
    "synthetic": task_synthetic,
}


def info(paths: list[str]) -> None:
    """Print what a store or an SAE directory holds."""
    import json

    from vista.store import ActivationStore

    if not paths:
        raise VistaError("vista info needs a path: a store (.h5) or an SAE directory.")
    for p in paths:
        if Path(p).is_dir():
            cfg = Path(p) / "cfg.json"
            if not cfg.is_file():
                raise VistaError(
                    f"{p!r} is a directory without cfg.json; it is not an SAE directory."
                )
            print(json.dumps(json.loads(cfg.read_text()), indent=2))
            continue
        with ActivationStore(p) as st:
            print(f"{p}: store format {st.format_version}")
            for k, v in st.attrs.items():
                print(f"  {k}: {v}")
            for s in st.splits.values():
                shape = (
                    f"({s.n_rows}, {s.n_tokens}, {s.d_model})"
                    if s.has_token_axis
                    else f"({s.n_rows}, {s.d_model})"
                )
                print(f"  /{s.name}/encoded {shape}, labels: {', '.join(s.label_names) or 'none'}")
                for lab in s.label_names:
                    print(f"    {lab}: {st.class_names(s.name, lab)}")


# -- dispatch ---------------------------------------------------------------------------------------
# `dataset=NAME` / `encoder=NAME` pick a registry entry (the groups are dataclasses, not Hydra
# config groups, so the bare key is rewritten to the field that holds the name).
SHORTHANDS: dict[str, dict[str, str]] = {
    "extract": {"dataset": "dataset.name", "encoder": "encoder.name"},
    "train-encoder": {"dataset": "dataset.name", "encoder": "encoder.architecture"},
    "run": {"dataset": "dataset.name"},
}


def expand_shorthand(verb: str, arg: str) -> str:
    key, sep, value = arg.partition("=")
    target = SHORTHANDS.get(verb, {}).get(key)
    return f"{target}={value}" if sep and target and not value.startswith("{") else arg


def run_verb(verb: str, args: list[str]) -> None:
    import hydra

    from vista.conf import register_verb

    config_name = register_verb(verb)
    task = TASKS[verb]

    def entry(cfg: Any) -> None:
        _setup_logging()
        try:
            task(cfg)
        except VistaError as e:
            print(f"vista {verb}: error: {e}", file=sys.stderr)
            sys.exit(2)

    defaults = [
        "hydra.run.dir=.",
        "hydra.output_subdir=null",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        "hydra/help=vista",
    ]
    saved = sys.argv
    # argparse wants flags before the overrides: `vista train -m sae=a,b` and `... sae=a,b -m` both work.
    flags = [a for a in args if a in ("-m", "--multirun")]
    rest = [expand_shorthand(verb, a) for a in args if a not in ("-m", "--multirun")]
    sys.argv = [saved[0] if saved else "vista", *flags, *defaults, *rest]
    os.environ[_VERB_ENV] = verb
    try:
        hydra.main(version_base=None, config_path="conf", config_name=config_name)(entry)()
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in TASKS and args[0] != "info" and os.environ.get(_VERB_ENV) in TASKS:
        # A DDP worker started by Lightning: same arguments, minus the verb.
        args = [os.environ[_VERB_ENV], *[a for a in args if not a.startswith("hydra/")]]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if args[0] == "--version":
        print(f"vista {__version__}")
        return
    verb, rest = args[0], args[1:]
    try:
        if verb == "info":
            info(rest)
            return
        if verb not in TASKS:
            raise VistaError(f"Unknown verb {verb!r}; run `vista --help` for the list.")
        run_verb(verb, rest)
    except VistaError as e:
        print(f"vista {verb}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
