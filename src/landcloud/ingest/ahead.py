"""Prepare the next batches on a thread of their own while the caller works on the current one.

Reading (GDAL), parsing WKB, converting coordinates (PROJ) and measuring areas mostly run
outside the GIL, and the rules, rows and writes of the caller mostly inside it: on two cores
the two overlap. At most `depth` prepared batches wait (memory stays bounded); an error of the
producer is raised in the caller at the batch where it happened; when the caller stops early
(an exception, a rejection) the producer stops at its next batch and closes its source.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


@contextmanager
def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[Iterator[T]]:
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 — handed to the caller
            offer((_DONE, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[T]:
        while True:
            item, exc = waiting.get()  # type: ignore[misc]
            if exc is not None:
                raise exc
            if item is _DONE:
                return
            yield item  # type: ignore[misc]

    thread = threading.Thread(target=produce, name="landcloud-read-ahead", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()
