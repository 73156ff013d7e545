"""The overlap window in a process of its own (`ingest.overlap_process`): its frames, its verdicts (the same as
the window's on this process's thread, bit for bit), and how it fails: a clear error, no process left behind."""

from __future__ import annotations

import gc
import io
import os
import signal
import time
import weakref

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_overlap import CELL, TOLERANCE, damaged_tessellations, jittered_grid

from landcloud.geo.overlap_window import WindowOverlaps
from landcloud.ingest import collector, overlap_process
from landcloud.ingest.overlap_process import OverlapWorkerFailed, ProcessWindow, joined_wkb, read_frame, split_wkb, write_frame

parts_strategy = st.lists(
    st.one_of(st.binary(max_size=300), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40).map(lambda v: np.array(v, dtype=np.int64))),
    max_size=6,
)


@given(frames=st.lists(st.tuples(st.sampled_from([b"I", b"B", b"S", b"R", b"E"]), parts_strategy), max_size=5))
def test_frames_read_back_as_written(frames: list[tuple[bytes, list]]) -> None:
    buf = io.BytesIO()
    for kind, parts in frames:
        write_frame(buf, kind, parts)
    buf.seek(0)
    for kind, parts in frames:
        got = read_frame(buf)
        assert got is not None
        assert got[0] == kind
        assert [bytes(p) for p in got[1]] == [bytes(memoryview(p)) for p in parts]
    assert read_frame(buf) is None  # the end of the stream


def test_a_frame_cut_short_is_an_error() -> None:
    buf = io.BytesIO()
    write_frame(buf, b"B", [b"abc", np.arange(3, dtype=np.int64)])
    whole = buf.getvalue()
    for cut in (4, len(whole) - 1):
        with pytest.raises(EOFError):
            read_frame(io.BytesIO(whole[:cut]))


def test_wkbs_go_through_joined_and_come_back_the_same() -> None:
    geoms = np.array(jittered_grid(5, 4, seed=3) + [shapely.Polygon(), shapely.MultiPolygon(jittered_grid(2, 1, seed=4))],
                     dtype=object)
    wkbs = shapely.to_wkb(geoms).tolist()
    lengths, joined = joined_wkb(wkbs)
    back = split_wkb(memoryview(lengths.tobytes()), memoryview(joined))
    assert shapely.to_wkb(back).tolist() == wkbs
    assert len(split_wkb(memoryview(b""), memoryview(b""))) == 0


def decide_both_ways(geoms: list[shapely.Geometry], batch: int, window: int, limit: int = 1000) -> tuple:
    """The same batches through a `WindowOverlaps` here and a `ProcessWindow`: both outcomes."""
    here = WindowOverlaps(TOLERANCE, window, limit)
    there = ProcessWindow(TOLERANCE, window, limit)
    try:
        arr = np.array(geoms, dtype=object)
        for start in range(0, len(arr), batch):
            part = arr[start : start + batch]
            here.add(part)
            there.add(part, shapely.to_wkb(part).tolist())
        far_a, far_b = here.far_pairs_left()
        mine = (*here.hits.arrays(), far_a, far_b)
        got = there.outcome()
        return mine, got, there
    finally:
        there.close()


def assert_same_outcome(mine: tuple, got: overlap_process.Outcome) -> None:
    a, b, inter, far_a, far_b = mine
    assert got.a.tolist() == a.tolist() and got.b.tolist() == b.tolist()
    assert shapely.to_wkb(got.inter).tolist() == shapely.to_wkb(inter).tolist()
    assert got.far_a.tolist() == far_a.tolist() and got.far_b.tolist() == far_b.tolist()


def test_the_process_decides_a_layer_as_the_window_does_here() -> None:
    block = jittered_grid(8, 8, seed=5)
    near = [shapely.affinity.translate(g, 0.4 * CELL, 0.3 * CELL) for g in block[26:30]]  # in the window
    far = [shapely.affinity.translate(g, 0.4 * CELL, 0.3 * CELL) for g in block[:10]]  # batches after
    mine, got, there = decide_both_ways(block[:30] + near + block[30:] + far, batch=7, window=2)
    assert len(got.a) > 0 and len(got.far_a) > 0  # overlaps found in the stream, and pairs left for the end
    assert_same_outcome(mine, got)
    assert there.cpu_s > 0 and there.wall_s > 0 and there.peak_rss_mib > 10  # the process's own clock and memory


@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=damaged_tessellations(), order_seed=st.integers(0, 1000), batch=st.integers(1, 9), window=st.integers(1, 3),
       limit=st.sampled_from([2, 1000]))
def test_random_layers_get_the_same_outcome_in_the_process(
    case: tuple[list[shapely.Geometry], int], order_seed: int, batch: int, window: int, limit: int
) -> None:
    geoms, _ = case
    geoms = [geoms[i] for i in np.random.default_rng(order_seed).permutation(len(geoms))]
    mine, got, _ = decide_both_ways(geoms, batch, window, limit)
    assert_same_outcome(mine, got)


def child_gone(window: ProcessWindow) -> bool:
    return window._proc.poll() is not None and not window._sender.is_alive()


def test_a_batch_the_process_cannot_read_fails_with_its_traceback() -> None:
    window = ProcessWindow(TOLERANCE, 2, 1000)
    try:
        window.add(np.array(jittered_grid(2, 2, seed=1), dtype=object), [b"\x01\x03\x00", b"no wkb", b"", b"x"])
        for _ in range(5):  # batches after the failure are dropped, not waited for
            window.add(np.array(jittered_grid(2, 2, seed=1), dtype=object), None)
        with pytest.raises(OverlapWorkerFailed, match="(?s)overlap worker failed:.*Traceback.*WKB"):
            window.outcome()
    finally:
        window.close()
    assert child_gone(window) and window._proc.returncode == 1


def test_a_killed_process_is_an_error_that_names_its_exit() -> None:
    window = ProcessWindow(TOLERANCE, 2, 1000)
    try:
        os.kill(window._proc.pid, signal.SIGKILL)
        window._proc.wait(timeout=10)
        for _ in range(5):
            window.add(np.array(jittered_grid(3, 3, seed=2), dtype=object), None)
        with pytest.raises(OverlapWorkerFailed, match=r"ended without an answer \(exit code -9"):
            window.outcome()
    finally:
        window.close()
    assert child_gone(window)


def test_closing_without_an_outcome_stops_the_process_at_once() -> None:
    """A rejected or failed submission: the process is killed, not left to finish a large layer."""
    window = ProcessWindow(TOLERANCE, 2, 1000)
    big = np.array(jittered_grid(60, 60, seed=9), dtype=object)
    for _ in range(3):
        window.add(big, None)
    window.seal()
    t0 = time.perf_counter()
    window.close()
    assert child_gone(window)
    assert window._proc.returncode == -signal.SIGKILL and time.perf_counter() - t0 < 5
    window.close()  # twice: nothing left to do


def served(frames: list[tuple[bytes, list]]) -> tuple[int, list[tuple[bytes, list[memoryview]]]]:
    """`serve` as the child runs it, over in-memory pipes: its exit code and the frames it answered."""
    inp, out = io.BytesIO(), io.BytesIO()
    for kind, parts in frames:
        write_frame(inp, kind, parts)
    inp.seek(0)
    code = overlap_process.serve(inp, out)
    out.seek(0)
    answered = []
    while (frame := read_frame(out)) is not None:
        answered.append(frame)
    return code, answered


def test_the_child_loop_runs_with_the_cyclic_collector_paused_and_collects_young_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    """While it serves, no automatic pass of the collector (they walked every envelope and tree the window holds);
    a cycle made meanwhile is freed within a few batches (`collector.between_batches`); the collector is back after."""
    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the collector frees it

    seen: list[bool] = []
    freed: list[weakref.ref[Node]] = []  # a cycle made at each batch

    class Watched(WindowOverlaps):
        def add(self, geoms: np.ndarray) -> None:
            seen.append(gc.isenabled())
            cycle = weakref.ref(Node())
            super().add(geoms)
            freed.append(cycle)

    monkeypatch.setattr(overlap_process, "WindowOverlaps", Watched)
    block = np.array(jittered_grid(6, 6, seed=12), dtype=object)
    frames: list[tuple[bytes, list]] = [(b"I", [b'{"tolerance": %r, "window": 2, "limit": 1000}' % TOLERANCE])]
    batches = 2 * collector.EVERY
    for part in np.array_split(block, batches):
        frames.append((b"B", list(joined_wkb(shapely.to_wkb(part).tolist()))))
    assert gc.isenabled()
    code, answered = served([*frames, (b"S", [])])
    assert code == 0 and [kind for kind, _ in answered] == [b"R"]
    assert seen == [False] * batches and gc.isenabled()
    assert all(ref() is None for ref in freed[: batches - collector.EVERY])  # collected within EVERY batches


def test_the_child_loop_answers_in_frames_and_names_what_it_cannot_read() -> None:
    """The outcome of a layer in one answer, and an error for a frame of a kind the loop does not know."""
    block = np.array(jittered_grid(5, 5, seed=11) + [shapely.affinity.translate(jittered_grid(5, 5, seed=11)[0], 0.3 * CELL, 0)],
                     dtype=object)
    here = WindowOverlaps(TOLERANCE, 2, 1000)
    frames: list[tuple[bytes, list]] = [(b"I", [b'{"tolerance": %r, "window": 2, "limit": 1000}' % TOLERANCE])]
    for start in range(0, len(block), 4):
        frames.append((b"B", list(joined_wkb(shapely.to_wkb(block[start : start + 4]).tolist()))))
        here.add(block[start : start + 4])
    code, answered = served([*frames, (b"S", [])])
    assert code == 0 and [kind for kind, _ in answered] == [b"R"]
    parts = answered[0][1]
    far_a, _ = here.far_pairs()
    a, _, inter = here.hits.arrays()
    assert len(far_a) > 0
    assert np.frombuffer(parts[0], dtype=np.int64).tolist() == a.tolist()
    assert np.frombuffer(parts[4], dtype=np.int64).tolist() == far_a.tolist()
    assert shapely.to_wkb(split_wkb(parts[2], parts[3])).tolist() == shapely.to_wkb(inter).tolist()

    code, answered = served([frames[0], (b"Q", [])])
    assert code == 1 and [kind for kind, _ in answered] == [b"E"]
    assert b"unknown kind b'Q'" in bytes(answered[0][1][0])


def test_a_long_traceback_is_clipped_to_its_start_and_end() -> None:
    text = b"Traceback (most recent call last):\n" + b"x" * 100_000 + b"\nValueError: the end"
    short = overlap_process.clipped(text, 1000)
    assert len(short) <= 1000 and short.startswith(b"Traceback") and short.endswith(b"ValueError: the end")
    assert overlap_process.clipped(b"short") == b"short"


def test_a_process_that_cannot_start_leaves_the_rule_to_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from landcloud.ingest import overlap_stream

    def refuse(*args: object, **kw: object) -> None:
        raise OSError("no python here")

    monkeypatch.setattr(overlap_process.subprocess, "Popen", refuse)
    streamed = overlap_stream.StreamedOverlaps(TOLERANCE, window=2, in_process=True)
    try:
        assert isinstance(streamed._window, overlap_stream.ThreadWindow)
    finally:
        streamed.close()
