"""The CLI's one boundary: settings checked before Hydra runs, and every failure turned into one
sentence and an exit code (docs/errors.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vista.errors import VistaError


def check_overrides(verb: str, config_name: str, overrides: list[str]) -> None:
    """Parse and compose the overrides before Hydra runs, so a setting that does not parse or does
    not exist is one sentence (Hydra would print its own report and exit 1)."""
    from hydra import compose, initialize
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    parser = OverridesParser.create()
    mine = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    for o in mine:
        try:
            parser.parse_overrides([o])
        except OverrideParseException:
            key, _, value = o.partition("=")
            raise VistaError(
                f"The setting {o!r} does not parse; quote a value with spaces, brackets, commas or "
                f"other special characters: {key}='{value}'."
            ) from None
    try:
        with initialize(version_base=None, config_path=None):
            compose(config_name=config_name, overrides=[o for o in mine if "," not in o])
    except (HydraException, OmegaConfBaseException) as e:
        import re

        text = " ".join(str(e).split())
        unknown = re.match(r"Could not override '([^']+)'", text)
        if unknown:
            text = f"There is no setting {unknown.group(1)!r}"
        elif e.__cause__ is not None:
            cause = " ".join(str(e.__cause__).split()).split(" full_key:")[0]
            text = f"{text.rstrip('.')}: {cause}"
        raise VistaError(
            f"{text.rstrip('.')}; `vista {verb} --help` lists the settings and their types."
        ) from None


def failure(verb: str, e: BaseException, out_dir: str = "") -> int:
    """Print what went wrong as one sentence and return the exit code: 2 for a user's problem
    (bad input, a missing or unreadable file, a full disk), 130 for an interrupt, 3 for a bug,
    whose trace goes to a log file the message names."""
    import contextlib
    import errno
    import pickle

    if isinstance(e, SystemExit):
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    if isinstance(e, BrokenPipeError):
        # The reader of the output went away (`vista info x | head`): nothing is wrong. Point
        # stdout at /dev/null so Python's flush at exit does not raise again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell tool killed by the closed pipe returns
    if isinstance(e, VistaError):
        msg = str(e)
    elif isinstance(e, KeyboardInterrupt):
        print(f"vista {verb}: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    elif _out_of_memory(e):
        msg = (
            f"the machine ran out of memory ({' '.join(str(e).split())[:160]}); lower the sizes "
            "(sae.d_sae, batch sizes, eval.batch_tokens, eval.dense_codes_mb) or use a larger machine"
        )
    elif isinstance(e, OSError) and e.errno == errno.ENOSPC:
        msg = f"the disk is full ({e.filename or 'writing output'}); free space and run the same command again to resume"
    elif isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        what = {
            FileNotFoundError: "does not exist",
            PermissionError: "is not accessible (permission denied)",
            IsADirectoryError: "is a directory, not a file",
            NotADirectoryError: "is not a directory",
        }[type(e)]
        msg = f"{e.filename or str(e)!r} {what}; check the path in the command"
    elif isinstance(e, pickle.UnpicklingError):
        msg = (
            f"a file holds Python objects vista will not unpickle ({str(e).splitlines()[0][:160]}); "
            "unpickling can run code: use state dicts or safetensors"
        )
    else:
        where = write_trace(
            e, Path(out_dir or ".") / "logs" / f"vista-{verb}-error-{os.getpid()}.log"
        )
        print(
            f"vista {verb}: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
            f"— this is a bug in vista; {where} (please attach it to a bug report).",
            file=sys.stderr,
        )
        return 3
    msg = " ".join(msg.split())  # one line, whatever the message quoted (a library's report)
    print(f"vista {verb}: error: {msg}", file=sys.stderr)
    return int(getattr(e, "exit_code", 2))


def write_trace(e: BaseException, log: Path) -> str:
    """Write ``e``'s traceback to ``log``; say where it is (for the one-line message)."""
    import traceback

    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(traceback.format_exception(e)))
        return f"the trace is in {log}"
    except OSError:
        return "the trace could not be written"


def _out_of_memory(e: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's CPU allocator, a GPU's OOM."""
    if isinstance(e, MemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )
