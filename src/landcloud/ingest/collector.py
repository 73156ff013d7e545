"""Python's cyclic garbage collector paused while a submission streams in.

Why: a submission makes and drops several container objects per feature (the property dict, the
stage row and its write tuple, the rules' per-feature state), and CPython's collector runs after
every 700 net new ones, walking the younger generations and, every hundredth time, every tracked
object alive. None of that frees anything the reference counts do not free at once: the pipeline
makes no reference cycles per feature. Paused for the submission, 100,000 DLTB parcels (SQLite,
benchmarks/store.py ingest, min of 2 interleaved rounds): 8.8 → 7.7 s of process CPU; a raised
threshold (50,000) instead saved 0.6 s. Peak memory stayed the same (see
benchmarks/profiles/ingest-cpu.txt for the 1M run).

The collector is process-wide: while any submission runs, other threads of the process (a web
worker's requests: submissions over HTTP run as background tasks in the worker) would run without it
too, so the young generations are still collected every few batches (`between_batches`): a cycle
another thread drops is freed within those batches (well under a second), as the collector would
free it; only objects already old wait for the end of the submission. Nested and concurrent
submissions are counted; a collector someone else disabled stays so.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # submissions inside `paused()`
_resume = False  # whether the first of them found the collector enabled (and the last turns it back on)
_batches = 0  # batches seen by `between_batches` (any submission's)
EVERY = 8  # batches per pass of the young generations


@contextmanager
def paused() -> Iterator[None]:
    """Run the body with the cyclic collector disabled; re-enabled when the last concurrent body ends."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


def between_batches() -> None:
    """Collect the young generations every `EVERY` batches while `paused` holds the automatic passes off (not when
    someone else disabled the collector): what those batches' automatic passes would have freed, in one pass.

    Not every batch: a pass walks what is alive then (the batch in hand, ~30,000 containers: ~3 ms, 0.6 s of a
    1M-parcel submission's main thread, under the GIL), and what the batches before it dropped is already gone
    by reference counts, so one pass per `EVERY` batches walks about as much as one per batch.
    """
    global _batches
    if _depth and _resume:
        _batches += 1
        if _batches % EVERY == 0:
            gc.collect(1)
