"""Let glibc give big buffers back to the system once they are freed.

A full read decodes pages of several megabytes (a thousand Mautic contacts,
a hundred Stripe sessions with their line items). glibc serves big requests
with mmap and returns them on free, but after the first such free it raises
its threshold (up to 32 MiB), so later pages come from the heap and their
memory stays in the process: at 100k contacts, some 40 MB of peak RSS that
holds nothing. A fixed threshold of 1 MiB keeps them mmapped (the same as
MALLOC_MMAP_THRESHOLD_=1048576, which still wins when set).
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt's parameter number for the mmap threshold (glibc malloc.h).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20


def release_big_buffers() -> bool:
    """Fix glibc's mmap threshold; False where that does not apply."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
