"""The cyclic collector paused while submissions run (ingest/collector.py)."""

from __future__ import annotations

import gc
import threading

from landcloud.ingest import collector


def test_paused_while_any_submission_runs_and_resumed_after_the_last() -> None:
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():  # a second submission, nested or on another thread
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first still runs
    assert gc.isenabled()


def test_resumed_after_an_error() -> None:
    try:
        with collector.paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_concurrent_submissions_on_threads() -> None:
    inside = threading.Barrier(3)
    leave = threading.Event()
    seen: list[bool] = []

    def submission() -> None:
        with collector.paused():
            inside.wait()
            leave.wait()
            seen.append(gc.isenabled())

    threads = [threading.Thread(target=submission) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    assert not gc.isenabled()
    leave.set()
    for t in threads:
        t.join()
    assert seen == [False, False] and gc.isenabled()


def test_young_cycles_are_freed_between_batches_while_paused() -> None:
    """A cycle dropped during a submission (by it or another thread) is freed within `collector.EVERY` batches."""
    import weakref

    class Node:
        pass

    with collector.paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # no automatic pass
        passes = 0
        while gone() is not None and passes < collector.EVERY:
            collector.between_batches()
            passes += 1
        assert gone() is None
        assert passes <= collector.EVERY


def test_between_batches_outside_a_submission_does_nothing() -> None:
    gc.disable()
    try:
        class Node:
            pass

        import weakref

        a = Node()
        a.me = a
        gone = weakref.ref(a)
        del a
        collector.between_batches()  # the collector was disabled by someone else: left alone
        assert gone() is not None
    finally:
        gc.enable()
        gc.collect()


def test_one_pass_every_few_batches() -> None:
    """A pass walks what is alive; one per batch cost ~0.6 s of a 1M-parcel submission's main thread."""
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with collector.paused():
            for _ in range(3 * collector.EVERY):
                collector.between_batches()
    finally:
        gc.callbacks.remove(count)
    assert passes == [1, 1, 1]
