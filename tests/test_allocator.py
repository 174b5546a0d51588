"""glaciermap.allocator: the malloc settings of the model jobs really stop the per-batch page faults."""

import subprocess
import sys
import textwrap

import pytest

from glaciermap import allocator

# In a fresh process: minor page faults of 20 rounds of a batch-like pattern (blocks of 1 to 40 MiB
# allocated, touched, all freed), before and after keep_freed_memory(). By default glibc unmaps or trims
# the freed blocks, so every round faults their pages in again; with the settings the heap keeps them.
PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, resource
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    MiB = 1024 * 1024
    def faults():
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            blocks = []
            for size in (40, 24, 12, 6, 3, 1):
                p = libc.malloc(size * MiB)
                ctypes.memset(p, 1, size * MiB)
                blocks.append(p)
            for p in blocks:
                libc.free(p)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
    before = faults()
    from glaciermap.allocator import keep_freed_memory
    applied = keep_freed_memory()
    after = faults()
    print(json.dumps({"before": before, "after": after, "applied": applied}))
""")



def _probe(env_extra=None):
    import json
    import os

    env = dict(os.environ, **(env_extra or {}))
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


needs_glibc = pytest.mark.skipif(allocator._libc() is None, reason="glibc only")


@needs_glibc
def test_keep_freed_memory_stops_refaulting():
    r = _probe()
    assert r["applied"] is True
    pages = 20 * (24 + 12 + 6 + 3 + 1) * 256  # the blocks under glibc's 32 MiB mmap limit, in 4 KiB pages
    assert r["before"] > 0.8 * pages  # default glibc: every round faults the blocks in again
    assert r["after"] < 0.1 * r["before"]  # tuned: the block is reused, (almost) no new faults


@needs_glibc
def test_switch_off_leaves_allocator_alone():
    r = _probe({"GLACIERMAP_MALLOC_TUNING": "0"})
    assert r["applied"] is False
    assert r["after"] > 0.8 * r["before"]
