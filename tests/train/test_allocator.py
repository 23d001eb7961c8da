"""Freed training memory stays in the heap: once the heap has grown to fit them (a few rounds),
the same large allocations page-fault (almost) nothing with ``keep_freed_memory`` on, and every
one of their pages each round otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys, torch
from vista.train.allocator import keep_freed_memory
on = keep_freed_memory() if sys.argv[1] == "on" else False

def faults_of_a_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        t = torch.empty(2**24)  # 64 MB of float32, like a step's pre-activations
        t.fill_(1.0)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

for _ in range(5):  # the first rounds fault pages in while the heap grows to fit the blocks
    faults_of_a_round()
print(json.dumps({"on": on, "faults": faults_of_a_round()}))
"""


def _probe(mode: str, env_off: bool = False) -> dict:
    env = dict(os.environ)
    if env_off:
        env["VISTA_KEEP_FREED_MEMORY"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults() -> None:
    on, off = _probe("on"), _probe("off")
    assert on["on"] is True and off["on"] is False
    pages = 3 * 64 * 2**20 // 4096  # 49,152 pages of 4 KiB in three 64 MB tensors
    assert off["faults"] > pages // 2, off  # mmap'ed afresh and zeroed by the kernel each time
    assert on["faults"] < pages // 50, on  # the same heap blocks again
    assert _probe("on", env_off=True)["on"] is False  # VISTA_KEEP_FREED_MEMORY=0 opts out
