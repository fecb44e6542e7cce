"""Arrow's buffers from the C library's malloc instead of mimalloc, for the CLI's batch steps.

pyarrow allocates through mimalloc by default. On the development machine (a virtual machine whose freed pages
are reported back to its host) mimalloc's first large allocations cost mostly system time: splitting 25M
ratings (two ``Table.filter`` calls over 20M rows) took 11.6 s in a fresh process with mimalloc, of which
10.2 s system time, and 1.0-1.4 s with jemalloc or the system allocator; later repetitions in the same process
came down to 0.7-0.9 s with any of them (``BENCHMARKS.md``). The system allocator is as fast once warm and
never pays that start, so the CLI selects it, unless ``ARROW_DEFAULT_MEMORY_POOL`` names a pool (then
Arrow's own choice stands).
"""

from __future__ import annotations

import os

from cinematch.core.log import get_logger, log_event

__all__ = ["use_system_pool"]

log = get_logger(__name__)


def use_system_pool() -> bool:
    """Make the system allocator Arrow's default pool; False when ``ARROW_DEFAULT_MEMORY_POOL`` is set (kept)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return False
    import pyarrow as pa

    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
        log_event(log, "arrow_pool", backend="system")
    return True
