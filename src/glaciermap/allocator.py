"""glibc malloc settings for the model jobs (train, infer): keep freed memory for reuse.

CPU training and inference allocate and free the same few-MB activation tensors at every batch. By
default glibc serves blocks above its dynamic mmap threshold with fresh mmap()s and returns freed heap
top to the kernel, so every batch faults its pages in again and the kernel zeroes them: on the demo
(ResNet18 U-Net, 64 px, batch 16, one thread) that was ~1 million minor page faults and ~3 s of system
time per 40 training + 20 inference batches. Raising the mmap threshold to glibc's 32 MiB maximum and the
trim threshold to 1 GiB keeps freed blocks in the heap: 5 times fewer faults, about 6 % less wall time
(docs/performance.md). Arithmetic is untouched, so results stay identical; the cost is that up to the
trim threshold of freed memory stays resident instead of going back to the kernel, which the jobs' peak
RSS (what their memory requests are sized on) already covers.

Set ``GLACIERMAP_MALLOC_TUNING=0`` to leave the allocator alone. Non-glibc platforms are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("glaciermap.allocator")

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Tell glibc malloc to reuse freed blocks instead of unmapping them; True when applied."""
    if os.environ.get("GLACIERMAP_MALLOC_TUNING", "1").strip() == "0":
        log.info("malloc tuning off (GLACIERMAP_MALLOC_TUNING=0)")
        return False
    libc = _libc()
    if libc is None:
        log.info("malloc tuning skipped: not glibc")
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
    if not ok:
        log.warning("malloc tuning: mallopt refused mmap threshold %d / trim threshold %d", mmap_threshold, trim_threshold)
    return ok
