"""The test-only environments of the peer libraries (bench/.envs/*), built while the suite runs.

``make test`` sets VISTA_BUILD_PEERS=1: the session starts ``bench/peers/setup.sh`` in the
background (pip spends most of its time on downloads), and the first interop test waits for it
to finish, so the suite does not wait for environments it needs only later. Without the variable,
environments are used as they are (``make peers`` builds them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "bench" / ".envs"
PEERS = ("saelens", "sparsify", "dictlearn")
LOG = ENVS / "build.log"

_build: subprocess.Popen[bytes] | None = None


def start_build() -> None:
    """Start building the missing environments, once per session (a no-op when all are ready)."""
    global _build
    if _build is not None or all((ENVS / p / ".ready").exists() for p in PEERS):
        return
    ENVS.mkdir(parents=True, exist_ok=True)
    with LOG.open("wb") as log:
        _build = subprocess.Popen(
            ["bash", str(ROOT / "bench" / "peers" / "setup.sh"), *PEERS],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def finish_build() -> None:
    """Wait for the build started by ``start_build``; a failed build fails the asking test."""
    global _build
    if _build is None:
        return
    code = _build.wait()
    _build = None
    if code != 0:
        tail = LOG.read_text(errors="replace")[-2000:]
        pytest.fail(f"bench/peers/setup.sh failed (exit {code}); its log {LOG} ends:\n{tail}")


def peer_python(env: str) -> str:
    """The interpreter of a peer's environment; skips (or, with VISTA_REQUIRE_PEERS, fails) when
    the environment is missing."""
    finish_build()
    env_dir = ENVS / env
    if not (env_dir / ".ready").exists():
        msg = f"the {env} test environment is missing; run bench/peers/setup.sh {env}"
        if os.environ.get("VISTA_REQUIRE_PEERS"):
            pytest.fail(msg)
        pytest.skip(msg)
    return str(env_dir / "bin" / "python")
