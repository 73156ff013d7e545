"""The stage's writer thread (store/stage_writer.py): in order, one at a time, every error reaching the caller."""

from __future__ import annotations

import threading
import time

import pytest

from landcloud.store.stage_writer import StageWriter


def test_writes_run_in_order_one_at_a_time_off_the_callers_thread() -> None:
    done: list[int] = []
    running = threading.Semaphore(1)
    threads: set[str] = set()

    def write(i: int) -> None:
        assert running.acquire(blocking=False), "two writes at once"
        threads.add(threading.current_thread().name)
        time.sleep(0.002 * (i % 3))
        done.append(i)
        running.release()

    writer = StageWriter()
    for i in range(20):
        writer.submit(write, i)
        assert done == list(range(i)) or done == list(range(i + 1))  # the one before is done when the next is given
    writer.finish()
    assert done == list(range(20))
    assert len(threads) == 1 and threading.current_thread().name not in threads


def test_a_writes_error_is_raised_at_the_next_write_and_the_next_is_not_run() -> None:
    done: list[int] = []

    def write(i: int) -> None:
        if i == 1:
            raise ValueError("refused")
        done.append(i)

    writer = StageWriter()
    writer.submit(write, 0)
    writer.submit(write, 1)
    with pytest.raises(ValueError, match="refused"):
        writer.submit(write, 2)
    writer.abandon()
    assert done == [0]


def test_the_last_writes_error_is_raised_by_finish_and_the_thread_ends() -> None:
    writer = StageWriter()
    writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        writer.finish()
    assert not [t for t in threading.enumerate() if t.name.startswith("landcloud-stage-writer") and t.is_alive()]


def test_abandon_waits_for_the_write_in_flight_and_raises_nothing() -> None:
    done: list[str] = []

    def slow() -> None:
        time.sleep(0.05)
        done.append("written")
        raise RuntimeError("ignored: the submission fails already")

    writer = StageWriter()
    writer.submit(slow)
    writer.abandon()
    assert done == ["written"]  # the connection is free again when abandon returns (the rollback may follow)
