"""Keep freed memory in the process (glibc): large tensors reuse heap pages instead of new ones.

glibc returns every block above its mmap threshold to the OS when it is freed, so each LEQ step's
large activations (an ``[8, 2816, 128]`` stacked-seed hidden layer is 11.5 MB) come back as fresh
pages and pay a page fault per 4 KiB on first touch. Raising the mmap and trim thresholds keeps
them in the heap. Measured on this 2-core CPU (``benchmarks/SPEED.md``): the point-maze step 40 →
37.5 ms at K = 1 and 318 → 268 ms at K = 8; the paper-size step at K = 8 1.07 → 0.97 s.

Example:
    >>> from torchrl_leq.training.allocator import keep_freed_memory
    >>> keep_freed_memory() in (True, False)  # False where the C library is not glibc
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters


def keep_freed_memory(mmap_threshold: int = 1 << 30, top_pad: int = 256 << 20) -> bool:
    """Serve allocations below ``mmap_threshold`` bytes from the heap and never trim it below
    ``top_pad`` spare bytes; returns whether glibc accepted the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, 2**31 - 1),
                (_M_TOP_PAD, top_pad))
    return all(mallopt(param, value) == 1 for param, value in settings)
