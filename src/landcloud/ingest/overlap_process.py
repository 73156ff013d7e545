"""The streamed overlap rule's window (`geo.overlap_window`) in a process of its own, for large layers.

Why: on a thread beside the submission the window's GEOS work (~8-9 s of CPU a million parcels) took
17-19 s of wall: it is many short shapely and numpy calls, and each gives the GIL up and waits to get
it back from the submission's threads, which then wait in turn to hand it the next batch
(benchmarks/profiles/ingest-sqlite-1m.txt §14-15). A process has its own GIL. It is sent each batch's
WKB, which the submission made for the store anyway (~0.5 ms a batch to join), and parses it again
(~1 s of its own CPU a million); it starts in ~0.3 s, so small layers keep the thread
(`Settings.overlap_process_min_features`).

The process runs this module (`python -m landcloud.ingest.overlap_process`) and speaks over its
stdin and stdout in frames: a kind byte, the payload's length, the number of parts and each part's
length, then the parts. The submission sends "I" (the settings, JSON), then "B" per batch (the WKBs'
lengths as int64 and the WKBs joined); "S" (sealed) asks for the outcome, answered with "R" (the pairs
found in the stream, their intersections as WKB, the far pairs and the process's own clock) or "E" (a
traceback). A submission that ends early closes the pipe or kills the process; nothing else is shared.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import shapely

import landcloud
from landcloud.geo.overlap_window import WindowOverlaps
from landcloud.ingest import collector
from landcloud.store.sqlite_rows import split_joined

PENDING = 2  # batches waiting to be sent at most (each holds its joined WKB)
# a traceback sent back at most (bytes): while the submission may still be writing batches to the process, an answer
# larger than the pipe's buffer (64 KiB) would wait for a reader that waits for it in turn
MAX_ERROR_BYTES = 32_768
_HEAD = struct.Struct("<cQ")  # kind, payload length
_COUNT = struct.Struct("<Q")
_Part = bytes | bytearray | memoryview | np.ndarray


class OverlapWorkerFailed(RuntimeError):
    """The overlap process failed or ended without an answer (its traceback, when it sent one, is the message)."""


class Outcome(NamedTuple):
    """What the window found: pairs (earlier, later) with their intersections, and the far pairs left to decide."""

    a: np.ndarray
    b: np.ndarray
    inter: np.ndarray
    far_a: np.ndarray
    far_b: np.ndarray


def write_frame(out: BinaryIO, kind: bytes, parts: Sequence[_Part]) -> None:
    sizes = [memoryview(p).nbytes for p in parts]
    head = _COUNT.pack(len(parts)) + struct.pack(f"<{len(parts)}Q", *sizes)
    out.write(_HEAD.pack(kind, len(head) + sum(sizes)) + head)
    for part in parts:
        out.write(part)
    out.flush()


def read_frame(inp: BinaryIO) -> tuple[bytes, list[memoryview]] | None:
    """(kind, parts), or None at the end of the stream; a frame cut short is an error."""
    head = inp.read(_HEAD.size)
    if not head:
        return None
    if len(head) < _HEAD.size:
        raise EOFError("overlap worker: a frame's header cut short")
    kind, size = _HEAD.unpack(head)
    payload = memoryview(inp.read(size))
    if len(payload) < size:
        raise EOFError("overlap worker: a frame cut short")
    (count,) = _COUNT.unpack_from(payload)
    sizes = struct.unpack_from(f"<{count}Q", payload, _COUNT.size)
    parts, at = [], _COUNT.size + 8 * count
    for n in sizes:
        parts.append(payload[at : at + n])
        at += n
    return kind, parts


def joined_wkb(wkbs: Sequence[bytes]) -> tuple[np.ndarray, bytes]:
    """(lengths, the bytes joined): a batch's WKBs as two parts of a frame."""
    return np.fromiter(map(len, wkbs), dtype=np.int64, count=len(wkbs)), b"".join(wkbs)


def split_wkb(lengths: memoryview, joined: memoryview) -> np.ndarray:
    """The geometries of `joined_wkb`'s two parts."""
    wkbs = split_joined(bytes(joined), np.frombuffer(lengths, dtype=np.int64).tolist())
    return shapely.from_wkb(np.array(wkbs, dtype=object))


class ProcessWindow:
    """A `WindowOverlaps` in a child process, fed from the submission's thread (which only joins bytes)."""

    def __init__(self, tolerance_m2: float, window: int, limit: int) -> None:
        env = dict(os.environ)  # the child imports this very landcloud, wherever it was imported from
        root = str(Path(landcloud.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "landcloud.ingest.overlap_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._queue: queue.Queue[tuple[bytes, Sequence[_Part]] | None] = queue.Queue(maxsize=PENDING)
        self._send_error: BaseException | None = None
        self._sender = threading.Thread(target=self._send, name="landcloud-overlap-send", daemon=True)
        self._sender.start()
        self._sealed = False
        self._answered = False
        self._closed = False
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.peak_rss_mib = 0.0
        self._queue.put((b"I", [json.dumps({"tolerance": tolerance_m2, "window": window, "limit": limit}).encode()]))

    def _send(self) -> None:
        """On a thread of its own: the frames in order; after a broken pipe the rest are dropped (the child's
        answer, or its exit code, says why when the outcome is asked for)."""
        stdin = self._proc.stdin
        assert stdin is not None
        while (item := self._queue.get()) is not None:
            if self._send_error is None:
                try:
                    write_frame(stdin, *item)
                except (OSError, ValueError) as exc:
                    self._send_error = exc

    def add(self, geoms: np.ndarray, wkbs: Sequence[bytes] | None) -> None:
        """A batch's usable geometries, as WKB when the caller has it (else made here)."""
        if wkbs is None:
            wkbs = shapely.to_wkb(geoms).tolist()
        self._queue.put((b"B", joined_wkb(wkbs)))

    def seal(self) -> None:
        if not self._sealed:
            self._sealed = True
            self._queue.put((b"S", []))
            self._queue.put(None)

    def outcome(self) -> Outcome:
        """Waits for the child's answer (the stream's pairs and the far pairs)."""
        self.seal()
        self._sender.join()
        assert self._proc.stdout is not None
        try:
            frame = read_frame(self._proc.stdout)
        except EOFError:
            frame = None
        if frame is None:
            raise OverlapWorkerFailed(f"overlap worker ended without an answer (exit code {self._proc.wait()}, {self._send_error!r})")
        kind, parts = frame
        self._answered = True
        if kind == b"E":
            raise OverlapWorkerFailed(f"overlap worker failed:\n{bytes(parts[0]).decode(errors='replace')}")
        a, b, lengths, joined, far_a, far_b, clock = parts
        self.cpu_s, self.wall_s, self.peak_rss_mib = np.frombuffer(clock, dtype=np.float64).tolist()
        ints = (np.frombuffer(p, dtype=np.int64).copy() for p in (a, b, far_a, far_b))
        a_, b_, far_a_, far_b_ = ints
        return Outcome(a_, b_, split_wkb(lengths, joined), far_a_, far_b_)

    def close(self) -> None:
        """Stops the child (killed unless it has answered) and the sending thread; waits for both."""
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None and not self._answered:
            self._proc.kill()
        self._sealed = True
        try:
            self._queue.put(None, timeout=5)  # (a full queue empties once the dead pipe fails each write)
        except queue.Full:
            pass
        self._sender.join(timeout=10)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


def serve(inp: BinaryIO, out: BinaryIO) -> int:
    """The child's loop: the settings, then batches until sealed (answered) or the pipe's end (abandoned).

    The cyclic collector is paused while it serves, its young generations collected every few batches, as the
    submission's own process does while it streams (`ingest.collector`): the window makes no reference cycles, and
    the automatic full passes walked every object it holds (the far pairs' envelopes, the window's trees). 1M DLTB
    parcels: 2,623 / 238 / 19 passes of the three generations, ~2 s of the process's ~18 s of CPU
    (benchmarks/profiles/ingest-sqlite-1m.txt §20)."""
    with collector.paused():
        return _serve(inp, out)


def _serve(inp: BinaryIO, out: BinaryIO) -> int:
    work_s = 0.0
    try:
        first = read_frame(inp)
        if first is None:
            return 0
        cfg = json.loads(bytes(first[1][0]))
        window = WindowOverlaps(cfg["tolerance"], cfg["window"], cfg["limit"])
        while (frame := read_frame(inp)) is not None:
            kind, parts = frame
            w0 = time.perf_counter()
            if kind == b"B":
                window.add(split_wkb(parts[0], parts[1]))
                collector.between_batches()
                work_s += time.perf_counter() - w0
                continue
            if kind != b"S":
                raise ValueError(f"overlap worker: a frame of unknown kind {kind!r}")
            far_a, far_b = window.far_pairs_left()
            a, b, inter = window.hits.arrays()
            lengths, joined = joined_wkb(shapely.to_wkb(inter).tolist())
            work_s += time.perf_counter() - w0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # (Linux: KiB)
            clock = np.array([time.process_time(), work_s, peak], dtype=np.float64)
            write_frame(out, b"R", [a.astype(np.int64), b.astype(np.int64), lengths, joined, far_a, far_b, clock])
            return 0
        return 0
    except BaseException:  # (KeyboardInterrupt too: the parent is told, then the process ends)
        try:
            write_frame(out, b"E", [clipped(traceback.format_exc().encode())])
        except OSError:
            pass
        return 1


def clipped(text: bytes, limit: int = MAX_ERROR_BYTES) -> bytes:
    """At most `limit` bytes of `text` (its start and its end, where the exception is named)."""
    if len(text) <= limit:
        return text
    cut = b"\n...\n"
    half = (limit - len(cut)) // 2
    return text[:half] + cut + text[len(text) - half :]


def main() -> int:
    """The frames go over a private copy of stdout; fd 1 then points at stderr, so that nothing a library
    prints can break them."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    sys.exit(main())
