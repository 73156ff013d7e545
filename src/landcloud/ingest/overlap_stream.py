"""The overlap rule decided while a dataset's first version streams in, over a window of recent batches.

Why: after the merge, `find_overlaps` read every stored geometry back, parsed its WKB a second
time and decided each envelope pair in GEOS while nothing else ran: about 40% of a 100,000-parcel
submission. When the incoming rows are the dataset's first (the pipeline's `direct` load: every
current row is new in the version), the geometries are in memory anyway while they are written.
So each batch's pairs with the batches just before it (`window` batches, itself included) are
decided at once (`geo.overlap_window`), on a thread of its own or, for a large layer, in a process of
its own (`ingest.overlap_process`), beside the rules and the writes of the next batches: a layer in
spatial order (a county after another, parcels in survey order) has nearly all of its neighbours there. Pairs of features further apart in the file are found at the end from the
envelopes kept for every feature (32 bytes each) and decided the same way in this process, their geometries read
back from the store by key; if a key is not unique among the version's rows the caller falls back
to `find_overlaps`. The verdicts are `find_overlaps`'s: the pairs whose interiors meet
(DE-9IM T********), reported when the survey area of their intersection is above the tolerance,
with the feature read first as `feature_key`; findings are sorted by the two features' order in
the file. At most `MAX_FINDINGS` overlaps are held: once that many are found, the rest of the
layer is not searched (the submission is rejected either way, as `find_overlaps` stops there too).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import shapely
from sqlalchemy.engine import Connection

from landcloud.geo.overlap_window import OverlapHits, WindowOverlaps
from landcloud.geo.parallel import in_parts
from landcloud.geo.separation import Payoff
from landcloud.ingest import overlap
from landcloud.ingest.overlap import MAX_FINDINGS, overlap_findings
from landcloud.ingest.overlap_process import Outcome, OverlapWorkerFailed, ProcessWindow
from landcloud.ingest.report import Finding

log = logging.getLogger(__name__)

WINDOW = 4  # batches: a feature's pairs with the features of the 3 batches before its own are decided in the stream
PENDING = 2  # batches waiting for the GEOS thread at most (each holds its window's geometries)


class _Window(Protocol):
    """Where the window's pairs are decided: a thread (`ThreadWindow`) or a process (`ProcessWindow`)."""

    cpu_s: float
    wall_s: float

    def add(self, geoms: np.ndarray, wkbs: Sequence[bytes] | None) -> None: ...
    def seal(self) -> None: ...
    def outcome(self) -> Outcome: ...
    def close(self) -> None: ...


class ThreadWindow:
    """A `WindowOverlaps` on a thread of its own, at most `PENDING` batches behind the caller."""

    def __init__(self, tolerance_m2: float, window: int, limit: int) -> None:
        self._window = WindowOverlaps(tolerance_m2, window, limit)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landcloud-overlap")
        self._pending: deque[Future[None]] = deque()
        self._far: Future[tuple[np.ndarray, np.ndarray]] | None = None
        self.cpu_s = 0.0  # the thread's own clock, for the stage clock
        self.wall_s = 0.0

    def _timed(self, fn: Any, *args: Any) -> Any:
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.cpu_s += time.thread_time() - c0
            self.wall_s += time.perf_counter() - w0

    def add(self, geoms: np.ndarray, wkbs: Sequence[bytes] | None) -> None:
        while len(self._pending) >= PENDING:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._timed, self._window.add, geoms))

    def seal(self) -> None:
        """The far pairs searched for on the thread from now on, after its last batches."""
        if self._far is None:
            self._far = self._pool.submit(self._timed, self._window.far_pairs_left)

    def outcome(self) -> Outcome:
        self.seal()
        while self._pending:
            self._pending.popleft().result()
        assert self._far is not None
        far_a, far_b = self._far.result()
        return Outcome(*self._window.hits.arrays(), far_a, far_b)

    def close(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        if self._far is not None:
            self._far.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _started_window(tolerance_m2: float, window: int, limit: int, in_process: bool) -> _Window:
    """The process when asked for and it starts; else (or if it cannot start: logged) the thread."""
    if in_process:
        try:
            return ProcessWindow(tolerance_m2, window, limit)
        except OSError:
            log.warning("the overlap rule's process could not start; deciding it on a thread instead", exc_info=True)
    return ThreadWindow(tolerance_m2, window, limit)


class StreamedOverlaps:
    """Collects a version's polygons batch by batch and decides the overlap rule between them.

    `in_process`: the window decided in a process of its own (a large layer; see `ingest.overlap_process`).
    """

    def __init__(self, tolerance_m2: float, window: int = WINDOW, in_process: bool = False) -> None:
        self.tolerance = tolerance_m2
        self.limit = MAX_FINDINGS
        self._keys: list[str] = []  # per usable feature, in file order
        self._window: _Window = _started_window(tolerance_m2, window, self.limit, in_process)
        self._hits = OverlapHits(tolerance_m2)
        self.far_pairs = 0  # pairs decided after the stream (features more than `window - 1` batches apart)
        self._far_payoff = Payoff()

    @property
    def thread_cpu_s(self) -> float:
        """CPU of the window's thread or process, for the stage clock."""
        return self._window.cpu_s

    @property
    def thread_wall_s(self) -> float:
        return self._window.wall_s

    def add(self, keys: Sequence[str], geoms: np.ndarray, wkbs: Sequence[bytes | None] | None = None) -> None:
        """One batch in file order: the stored keys, geometries and (when the caller has them) WKBs of its rows;
        missing and empty geometries are skipped."""
        usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        if not usable.all():
            keep = usable.tolist()
            keys = [k for k, ok in zip(keys, keep) if ok]
            wkbs = [w for w, ok in zip(wkbs, keep) if ok] if wkbs is not None else None
            geoms = geoms[usable]
        self._keys.extend(keys)
        self._window.add(geoms, wkbs)  # type: ignore[arg-type]  # (None only where the geometry is missing)

    def seal(self) -> None:
        """The stream is over (no more `add`): the far pairs are searched for by the window from now on, after
        its last batches, beside what the caller does before `finish` — the last writes and the merge (1M parcels:
        the COPY's end on PostGIS, the R*Tree's packing on SQLite) — instead of after them (~2-4 s a million)."""
        self._window.seal()

    def finish(self, conn: Connection, store: Any, dataset_id: str, version: int) -> list[Finding] | None:
        """The findings, once the stream is over and its rows are written; None when the pairs left over
        cannot be read back by key (a key shared by several rows) or the window's process failed (killed, out of
        memory: logged): the caller then runs `find_overlaps` on the stored rows, which gives the same verdicts."""
        try:
            found = self._window.outcome()
        except OverlapWorkerFailed:
            log.warning("the overlap rule's process failed; deciding it on the stored rows instead", exc_info=True)
            return None
        self._hits.extend(found.a, found.b, found.inter)
        self.far_pairs = len(found.far_a)
        if self._hits.held < self.limit and len(found.far_a):
            if not self._decide_far(conn, store, dataset_id, version, found.far_a, found.far_b):
                return None
        a, b, inter = self._hits.arrays()
        if not len(a):
            return []
        order = np.lexsort((b, a))[: self.limit]
        keys = self._keys
        return overlap_findings([keys[i] for i in a[order].tolist()], [keys[i] for i in b[order].tolist()], inter[order], self.tolerance)

    def _decide_far(self, conn: Connection, store: Any, dataset_id: str, version: int, a: np.ndarray, b: np.ndarray) -> bool:
        """Decide the far pairs on geometries read back from the store, a chunk of pairs at a time (a layer in no
        spatial order has most of its pairs here: memory stays bounded); False if a key is ambiguous."""
        for start in range(0, len(a), overlap.CHUNK):
            ca, cb = a[start : start + overlap.CHUNK], b[start : start + overlap.CHUNK]
            seqs = np.unique(np.concatenate((ca, cb)))
            keys = [self._keys[i] for i in seqs.tolist()]
            if len(set(keys)) != len(keys):
                return False
            wkb_of: dict[str, bytes | None] = {}
            for fkey, wkb in store.geometries_of_keys(conn, dataset_id, version, keys):
                if fkey in wkb_of:
                    return False
                wkb_of[fkey] = wkb
            if len(wkb_of) != len(keys):
                return False
            wkbs = np.array([wkb_of[k] for k in keys], dtype=object)
            geoms = in_parts(lambda w: shapely.from_wkb(w, on_invalid="ignore"), wkbs)
            ia, ib = np.searchsorted(seqs, ca), np.searchsorted(seqs, cb)
            apart = self._far_payoff.settle(geoms, ia, ib)
            self._hits.decide(ca, cb, geoms[ia], geoms[ib], threads=True, apart=apart)
            if self._hits.held >= self.limit:
                break
        return True

    def close(self) -> None:
        """Stop the window's thread or process (a failed or rejected submission: pending batches are dropped)."""
        self._window.close()
