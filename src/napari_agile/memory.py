"""How much memory is free, and whether a planned allocation leaves enough of it (no torch, for the detector too)."""

from __future__ import annotations

#: share of the free memory one job may plan to take: the rest is napari's, the image's and the system's
MEMORY_SHARE = 0.8


def free_memory() -> int | None:
    """Bytes of memory free for a new allocation (psutil, else Linux's MemAvailable), None where neither tells."""
    try:
        import psutil
    except ImportError:
        try:
            with open("/proc/meminfo") as fh:
                found = next((line.split()[1] for line in fh if line.startswith("MemAvailable:")), None)
        except OSError:
            return None
        return None if found is None else int(found) * 1024
    return int(psutil.virtual_memory().available)


def short_of(nbytes: int) -> int | None:
    """The free memory when `nbytes` is more than MEMORY_SHARE of it (the job would not fit), else None."""
    free = free_memory()
    return free if free is not None and nbytes > MEMORY_SHARE * free else None
