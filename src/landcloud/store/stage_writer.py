"""A submission's SQLite writes on a thread of their own, one batch in flight.

Why: SQLite inserts a batch inside `sqlite3_step`, without the GIL (the columns bound as a few parameters,
`sqlite_columns`), ~4 µs a parcel of C. On the submission's own thread that time is on its critical path: the next
batch's rules and rows wait for it. Handed to this thread, it runs beside them on the other core. One batch at a
time: the next write waits for the one before (memory stays at two batches, the rows keep their order), and a
write's error is raised to the submission at its next write or at `finish`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class StageWriter:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landcloud-stage-writer")
        self._pending: Future[None] | None = None

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` after the write before it (whose error, if any, is raised here instead)."""
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        """Until the write in flight is done; its error raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def finish(self) -> None:
        """The last write done (its error raised), the thread gone."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def abandon(self) -> None:
        """The thread gone after the write in flight, whatever became of it (the submission is failing already)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.exception()
        self._pool.shutdown(wait=True)
