"""Keep a worker's memory near what it holds, not what it once held.

glibc serves big allocations from its heap once a big one was freed (its mmap threshold
adapts upwards, up to 32 MiB), and that heap rarely shrinks: copying a table of 5 MB values
doubled a process's resident size. A fixed threshold keeps every allocation over 1 MiB (big
values, chunk buffers) in its own mmap, returned to the system when freed
(ops/bench/RESULTS.md has the measurement).
"""

from __future__ import annotations

import ctypes
import ctypes.util

MMAP_THRESHOLD = 1 << 20
M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
# The same for processes we start (glibc reads it before Python runs). There, also
# transparent huge pages for those mmaps (glibc madvises them): a MariaDB table's reader
# builds each chunk's payload in a fresh 8 MiB mmap, whose 2,048 page faults were a fifth of
# its CPU on text-heavy rows; with huge pages, a handful (ops/bench/RESULTS.md). A PostgreSQL
# table's reader keeps one buffer for every chunk (_pgcopy.c's scratch).
ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def fixed_mmap_threshold() -> bool:
    """Set it in this process; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False
