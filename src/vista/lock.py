"""One writer per output: a second ``vista`` process writing the same output is refused.

The lock is an ``flock`` on ``OUT/.vista.lock`` (an output directory) or ``FILE.lock`` (an output
file), holding who took it. The kernel releases it when the holder exits, however it exits, so a
killed run never leaves a stale lock behind. DDP worker processes (rank > 0) share their launcher's
lock. Platforms without ``fcntl`` (Windows) run unlocked.

The CLI takes it for every verb's output, and the library's writers (``train_saes``, ``extract``)
take it too, so a Python caller is protected as well; within one process the lock is re-entrant
(the CLI's lock and the writer's are one).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from vista.errors import VistaError

_HELD: dict[str, int] = {}
"""Locks this process holds (resolved lock path -> depth): taking one again is a no-op."""


def lock_path(target: Path, beside: bool = False) -> Path:
    """Where the lock of ``target`` lives: inside a directory, beside a file (``beside``: beside
    either, for an output that may become a file or a directory, as an extraction's)."""
    if not beside and (target.is_dir() or not target.suffix):
        return target / ".vista.lock"
    return target.with_name(target.name + ".lock")


def _worker() -> bool:
    return any(os.environ.get(k, "0") not in ("", "0") for k in ("LOCAL_RANK", "RANK", "NODE_RANK"))


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str], verb: str, beside: bool = False) -> Iterator[None]:
    """Hold the lock of ``target`` (at ``lock_path(target, beside)``) for the duration of the
    block, or refuse."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    if _worker():
        yield
        return
    path = lock_path(Path(target), beside)
    created = not path.parent.exists()  # removed again if the run leaves it empty
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").strip()
        os.close(fd)
        raise VistaError(
            f"{str(target)!r} is being written by another vista process ({holder or 'unknown'}); "
            "wait for it to finish or choose another output."
        ) from None
    os.ftruncate(fd, 0)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    os.write(
        fd, f"vista {verb}, pid {os.getpid()} on {socket.gethostname()}, since {stamp}".encode()
    )
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            path.unlink()
        if created:
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only if empty: a refused run leaves nothing behind
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def output_of(job: object) -> str:
    """The output a verb's job writes ('' = none): its out_dir, its output file, or its run."""
    for attr in ("out_dir", "out", "run_dir"):
        value = getattr(job, attr, None)
        if isinstance(value, str) and value:
            return value
    return ""
