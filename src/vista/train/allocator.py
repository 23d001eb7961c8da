"""Keep freed memory in the process's heap while training (glibc's malloc).

A training step allocates and frees the same large tensors every step (pre-activations,
gradients, optimizer temporaries). glibc serves blocks above its mmap threshold with fresh
``mmap``s and returns them on ``free``, so every step page-faults and the kernel zeroes tens of
megabytes again; on a 2-core VM that costs 15-27% of a TopK step (``docs/benchmarks.md``). With
``mmap`` off for ordinary allocations and a high trim threshold, freed blocks stay in the heap and
the next step reuses them. The process's resident memory then stays at its peak, which a
training run reaches in its first steps anyway. Set ``VISTA_KEEP_FREED_MEMORY=0`` to leave the
allocator alone; other C libraries (macOS, musl) are left alone too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse; ``True`` when the setting is in effect."""
    global _applied
    if _applied:
        return True
    if os.environ.get("VISTA_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _applied
