"""The C heap under a long-running publisher (glibc's malloc; elsewhere
nothing to do). A large race frees and remakes hundreds of megabytes a
cycle in several threads; glibc's defaults keep much of it resident."""

from __future__ import annotations

import ctypes

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 (glibc's, or not)
        return libc
    except (OSError, AttributeError):
        return None


def tune() -> None:
    """Before the publisher's threads start: two malloc arenas, not eight
    a core (each upload thread's freed buffers stayed in its own); blocks
    of 512 KB and more mapped and unmapped whole (the dynamic threshold
    rose to 32 MB and left a cycle's big buffers in the heap); the heap's
    top trimmed above 32 MB (not shrunk and regrown every cycle): what it
    saves is measured in DESIGN.md, Memory. So a vectorised step's
    temporaries must stay under 512 KB, or each is mapped afresh (course.py's
    BLOCK_CANDIDATES)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, 2)
        libc.mallopt(M_MMAP_THRESHOLD, 512 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024)


def release() -> None:
    """Hand the heap's free pages back to the system (malloc_trim). A
    catch-up's rows and trails, freed, would otherwise stay resident
    (DESIGN.md, Memory)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
