"""read_ahead: the next batches prepared on a thread, in order, errors where they happened, closed on an early stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from landcloud.ingest.ahead import read_ahead


def test_items_arrive_in_order_and_the_producer_runs_on_its_own_thread() -> None:
    threads: set[str] = set()

    def items() -> Iterator[int]:
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    with read_ahead(items(), depth=2) as got:
        assert list(got) == list(range(50))
    assert threads == {"landcloud-read-ahead"}


def test_an_error_of_the_producer_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad record 3")

    seen = []
    with pytest.raises(ValueError, match="bad record 3"), read_ahead(items()) as got:
        for i in got:
            seen.append(i)
    assert seen == [1, 2]


def test_an_early_stop_closes_the_source_and_bounds_what_was_read() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    with pytest.raises(KeyboardInterrupt), read_ahead(items(), depth=1) as got:
        for i in got:
            if i == 3:
                time.sleep(0.05)  # the producer fills the queue and waits
                raise KeyboardInterrupt
    assert closed.is_set()
    assert len(produced) <= 4 + 2  # the items taken, the one queued, the one waiting to be
