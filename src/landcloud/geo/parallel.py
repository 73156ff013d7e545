"""Vectorised shapely calls spread over the machine's cores.

shapely's array functions release the GIL while GEOS works, so an array cut into parts is
worked on by several threads at once; the results come back in the input's order, the same
array a single call would give. Small arrays stay on the calling thread (a part must be worth
a thread hand-over). `LANDCLOUD_GEOS_THREADS` caps the threads (1: everything on the caller).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

MIN_WORK = 2_000  # work per part (items × cost): below this a thread hand-over costs more than it saves

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def thread_count() -> int:
    wanted = os.environ.get("LANDCLOUD_GEOS_THREADS", "").strip()
    return max(1, int(wanted)) if wanted.isdigit() else min(os.cpu_count() or 1, 8)


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < n:  # noqa: SLF001 (grow once, never shrink)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="landcloud-geos")
        return _pool


def in_parts(fn: Callable[..., Any], *arrays: np.ndarray, cost: int = 1) -> np.ndarray:
    """`fn(*arrays)` computed on consecutive slices by several threads, concatenated in order.

    `cost`: the work of one item relative to a predicate (an intersection is ~10).
    """
    n = len(arrays[0])
    parts = min(thread_count(), n * cost // MIN_WORK)
    if parts < 2:
        return np.asarray(fn(*arrays))
    bounds = np.linspace(0, n, parts + 1).astype(np.intp).tolist()
    pool = _executor(parts)
    results = list(pool.map(lambda s, e: fn(*(a[s:e] for a in arrays)), bounds[:-1], bounds[1:]))
    return np.concatenate(results)
