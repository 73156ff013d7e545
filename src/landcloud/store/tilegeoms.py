"""Building the pre-generalised tile copies of feature rows (`feature_tilegeoms`, see `geo/tilegen.py`).

Built after a version is committed, for the rows it wrote, in transactions of their own: a failure (or a store not yet
migrated) leaves rows without copies, which tiles then simplify on the fly, never a wrong tile (the HTTP submission and
`landcloud ingest` say "accepted" before it starts: `ingest.after_acceptance`). The build runs when
nothing else of the submission does, so it spreads over the machine's cores (`geo.parallel.thread_count()`,
LANDCLOUD_GEOS_THREADS=1 for one at a time; the copies are the same rows and bytes either way):
- PostGIS: one INSERT ... SELECT per id range of the rows, each on its own connection and in its own transaction, run
  concurrently (PostgreSQL runs an INSERT ... SELECT on one backend, one core). A range that fails leaves the others'
  copies; the build then raises.
- SQLite: batches read by id on the calling thread, their copies made on worker threads (shapely; GEOS releases the
  GIL), written in order on the calling thread (SQLite has one writer), each batch in a transaction of its own: reading,
  GEOS and writing overlap. At most workers + 2 batches are in hand (being read, computed, written), so a dataset is
  never held whole in memory. A failed batch ends the build; the batches written before it keep their copies.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from landcloud.geo import parallel, tilegen
from landcloud.store.db import backend_of
from landcloud.store.sqlite_rows import insert_rows, split_joined

_log = logging.getLogger(__name__)
TABLE = "feature_tilegeoms"
BATCH = 2000  # SQLite: rows read (and copied, written) at a time
# PostGIS: ids per concurrent range at least; a smaller version is built by one statement (a range costs a connection
# and a thread, and a version of a few thousand rows is built in well under a second)
MIN_PART_ROWS = 20_000


@dataclass(frozen=True)
class Built:
    copies: int  # copies written
    seconds: float


class PartsFailed(RuntimeError):
    """Some of a build's concurrent parts failed (the others' copies are committed); the first failure is the cause."""


def _rows_sql(one_version: bool) -> str:
    """The rows of a dataset to build for: those version :n wrote, or every row; none that has its copies."""
    which = "f.v_from = :n" if one_version else "1 = 1"
    return f"f.dataset_id = :d AND {which} AND NOT EXISTS (SELECT 1 FROM {TABLE} g WHERE g.feature_id = f.id)"


# ---------------------------------------------------------------- PostGIS: concurrent id ranges


def _postgis_sql(version: int | None) -> str:
    """The INSERT ... SELECT of the copies of the rows (`_rows_sql`) whose ids lie in [:lo, :hi]."""
    # (level, tolerance in metres, pixel in degrees of its lowest zoom, of its own zoom, a tile's height in degrees)
    levels = ", ".join(
        f"({level}, {tilegen.tolerance_m(level)!r}, {tilegen.pixel_deg(tilegen.lowest_zoom(level))!r}, "
        f"{tilegen.pixel_deg(level)!r}, {360.0 / (1 << level)!r})"
        for level in tilegen.LEVELS
    )
    # tilegen.needs_copy in SQL; each shape projected once (OFFSET 0 keeps the subquery apart), then simplified per
    # level: by PostGIS's own Douglas-Peucker (every removed point within the tolerance; preserveCollapsed keeps each
    # ring), kept when it is valid and has every part and ring it had; else (~0.3% of DLTB's) topology-preserving.
    # ST_SimplifyPreserveTopology for all was ~3.5x the server CPU (38 vs ~11 us a shape): profiles/tiles-gen.txt.
    n = tilegen.SIMPLIFY_ABOVE_POINTS
    simplified = (
        "CASE WHEN ST_IsValid(d.g) AND ST_NumGeometries(d.g) = ST_NumGeometries(s.m) AND ST_NRings(d.g) = ST_NRings(s.m) "
        "THEN d.g ELSE ST_SimplifyPreserveTopology(s.m, l.tol) END"
    )
    return (
        f"INSERT INTO {TABLE} (feature_id, level, geom) "
        f"SELECT s.id, l.level, {simplified} FROM ("
        "SELECT f.id, ST_NPoints(f.geom) AS np, f.maxx - f.minx AS dx, f.maxy - f.miny AS dy, "
        "GREATEST(abs(f.miny), abs(f.maxy)) AS far, ST_Transform(ST_SetSRID(f.geom, 4326), 3857) AS m "
        f"FROM features f WHERE {_rows_sql(version is not None)} AND f.id BETWEEN :lo AND :hi "
        f"AND ST_NPoints(f.geom) > {n} OFFSET 0) s "  # (none for NULL, empty)
        f"JOIN (VALUES {levels}) AS l (level, tol, px_low, px, tile_deg) ON s.np > (s.dx + s.dy) / l.px_low "
        "AND (s.dx >= l.px OR s.dy >= l.px * cos(radians(LEAST(s.far + l.tile_deg, 90.0)))) "
        "CROSS JOIN LATERAL (SELECT ST_Simplify(s.m, l.tol, true) AS g) d "
        "ON CONFLICT DO NOTHING"  # (a build running alongside)
    )


def _id_ranges(engine: Engine, dataset_id: str, version: int | None, parts: int) -> list[tuple[int, int]]:
    """The rows' ids, min to max, cut into at most `parts` ranges of at least MIN_PART_ROWS ids ([] when no rows).

    The ids of one version are nearly contiguous (a submission inserts its rows together), so equal id ranges are
    nearly equal row counts. The min and max are read through the dataset's index (OFFSET 0): left to itself the
    planner walks the primary key from one end, through every older row of the store for a new version's min."""
    which = "v_from = :n" if version is not None else "1 = 1"
    with engine.connect() as conn:
        lo, hi = conn.execute(
            sa.text(f"SELECT min(id), max(id) FROM (SELECT id FROM features WHERE dataset_id = :d AND {which} OFFSET 0) s"),
            {"d": dataset_id, "n": version},
        ).one()
    if lo is None:
        return []
    n = max(1, min(parts, (hi - lo + 1) // MIN_PART_ROWS))
    bounds = np.linspace(lo, hi + 1, n + 1).astype(np.int64).tolist()
    return [(bounds[i], bounds[i + 1] - 1) for i in range(n)]


def _postgis_part(engine: Engine, dataset_id: str, version: int | None, ids: tuple[int, int]) -> int:
    """The copies of the rows with ids in `ids`, in a transaction of their own on a connection of their own."""
    with engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            # ST_IsValid's NOTICE per invalid shape. (No JIT either, as every pooled connection runs, store.db.POSTGRES_SESSION:
            # compiling this statement took ~0.2 s of a 100k build's ~0.8 s, profiles/tiles-copies-parallel.txt.)
            conn.exec_driver_sql("SET LOCAL client_min_messages = warning")
            result = conn.execute(sa.text(_postgis_sql(version)), {"d": dataset_id, "n": version, "lo": ids[0], "hi": ids[1]})
            return int(result.rowcount)


def _postgis(engine: Engine, dataset_id: str, version: int | None, workers: int) -> int:
    ranges = _id_ranges(engine, dataset_id, version, workers)
    if len(ranges) <= 1:
        return sum(_postgis_part(engine, dataset_id, version, ids) for ids in ranges)
    with ThreadPoolExecutor(len(ranges), thread_name_prefix="landcloud-copies") as pool:
        futures = [pool.submit(_postgis_part, engine, dataset_id, version, ids) for ids in ranges]
    return _sum_of(futures)


def _sum_of(futures: Sequence[Future[int]]) -> int:
    """The copies the parts wrote; PartsFailed (from the first failure) when any failed, once all have ended."""
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        made = sum(f.result() for f in futures if f.exception() is None)
        raise PartsFailed(f"{len(failed)} of {len(futures)} parts of the tile copies failed ({made} copies made)") from failed[0]
    return sum(f.result() for f in futures)


# ---------------------------------------------------------------- SQLite: read, copy and write overlapped


class _InOrder:
    """Jobs run on up to `workers` threads (on the caller with fewer than 2), results handed back in submission order.

    `push` returns the results that must be taken for at most `workers` jobs to stay in hand: the caller's memory is
    bounded, and it does its own work (reading, writing) while the workers compute."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._queue: deque[Future[Any]] = deque()

    def push(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        if self.workers < 2:
            return [fn(*args)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="landcloud-copies")
        self._queue.append(self._pool.submit(fn, *args))
        return [self._queue.popleft().result() for _ in range(len(self._queue) - self.workers)]

    def drain(self) -> Iterator[Any]:
        while self._queue:
            yield self._queue.popleft().result()

    def __enter__(self) -> _InOrder:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        """After a failure the jobs not begun are dropped and the running ones awaited (no thread outlives the build)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _versions(conn: Connection, dataset_id: str, version: int | None) -> list[int]:
    """The versions whose rows to read: read one version at a time, the reads walk the (dataset_id, v_from) index in id
    order; a read of every row of a dataset by `id > :last` scanned and sorted the whole dataset for each batch."""
    if version is not None:
        return [version]
    rows = conn.execute(sa.text("SELECT DISTINCT v_from FROM features WHERE dataset_id = :d ORDER BY v_from"), {"d": dataset_id})
    return [int(v) for (v,) in rows]


def _joined_select(where: str) -> sa.TextClause:
    """The one-step batch read `_joined_rows` takes: the ids and WKB lengths as text and the WKBs joined into one blob
    of the rows of features f that `where` (a condition, then its ORDER BY and LIMIT) picks, in its order."""
    return sa.text(
        "SELECT group_concat(id), group_concat(length(geom)), CAST(group_concat(geom, '') AS BLOB) FROM ("
        f"SELECT f.id, f.geom FROM features f WHERE {where})"
    )


def _joined_rows(conn: Connection, select: sa.TextClause, params: dict[str, Any]) -> tuple[list[int], list[bytes | None]] | None:
    """One batch read in one step, in a short read transaction of its own: `select` gives the ids and the WKB
    lengths as text and the WKBs joined into one blob; (ids, WKBs), or None when it read no row."""
    with conn.begin():
        ids_text, lengths_text, blob = conn.execute(select, params).one()
    if ids_text is None:
        return None
    return list(map(int, ids_text.split(","))), split_joined(blob, list(map(int, lengths_text.split(","))))


def _batches(engine: Engine, dataset_id: str, version: int | None) -> Iterator[tuple[list[int], list[bytes | None]]]:
    """The rows to build for, BATCH at a time by id, each read in a short read transaction of its own: (ids, WKBs).

    A batch comes back in one step, its ids and WKB lengths as text and the WKBs joined into one blob, as
    `SQLiteFeatureStore` reads a page: row by row, the sqlite3 module let the GIL go around each row's step
    while the copies' workers wanted it (the reads were ~1.3 s of a 1M-parcel version's ~3.8 s build, on the
    thread that also writes the copies). The envelopes are not read: the workers take them from the shapes,
    from which the stored ones were made."""
    select = _joined_select(
        f"{_rows_sql(True)} AND f.id > :last AND f.geom IS NOT NULL AND length(f.geom) >= {tilegen.MIN_WKB_BYTES} "
        "ORDER BY f.id LIMIT :batch"
    )
    with engine.connect() as conn:
        with conn.begin():
            versions = _versions(conn, dataset_id, version)
        for v in versions:
            last = 0
            while True:
                batch = _joined_rows(conn, select, {"d": dataset_id, "n": v, "last": last, "batch": BATCH})
                if batch is None:
                    break
                yield batch
                last = batch[0][-1]


def _copies_of(batch: tuple[list[int], list[bytes | None]]) -> list[tuple[int, int, bytes]]:
    """The copies of a batch of rows as (feature id, level, WKB): GEOS's work, on a worker thread."""
    ids, wkbs = batch
    geoms = shapely.from_wkb(np.array(wkbs, dtype=object), on_invalid="ignore")
    made = tilegen.copies(geoms, shapely.bounds(geoms))
    if not made:
        return []
    out = shapely.to_wkb(np.array([g for _, _, g in made], dtype=object))
    return [(ids[i], level, w) for (i, level, _), w in zip(made, out.tolist())]


@contextmanager
def _writer(engine: Engine) -> Iterator[Callable[[list[tuple[int, int, bytes]]], int]]:
    """Writes a batch's copies in a write transaction of its own (the write lock held for the insert only)."""
    insert = f"INSERT OR IGNORE INTO {TABLE} (feature_id, level, geom)"  # (a build running alongside)
    with engine.connect() as conn:
        conn.info["write"] = True

        def write(copies: list[tuple[int, int, bytes]]) -> int:
            if copies:
                with conn.begin():
                    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                    insert_rows(cur, insert, 3, copies)
                    cur.close()
            return len(copies)

        yield write


class StreamedRows:
    """Which rows of a version need copies, noted while they stream in, in the order written (`add` per batch), so
    that the build reads those rows alone (`build(..., streamed=)`) instead of every row of the version long enough to
    need one: ~15% of DLTB parcels need a copy, and SQLite walked all of a version's rows to find them (the build of a
    1M-parcel version: 0.3-0.8 s less CPU, 0.1-0.3 s less wall; benchmarks/profiles/ingest-sqlite-1m.txt §18).

    The build takes the row written k-th as the one of id min(id) + k: a direct load (a dataset's first rows) writes
    a version's rows with consecutive ids in the stream's order, the write lock held from the first. It checks that
    first (the version has exactly the rows noted, of consecutive ids) and otherwise reads every row as before. The
    rows are told apart by `tilegen.needs_any` on the stored shapes' point counts and envelopes: the same test, on
    the same shapes, as the copies' own, so the same copies are made."""

    def __init__(self) -> None:
        self.rows = 0
        self._wanted: list[np.ndarray] = []

    def add(self, geoms: np.ndarray, bounds: np.ndarray) -> None:
        """The next batch's stored shapes (missing ones included) and their (n, 4) envelopes (`shapely.bounds`)."""
        wanted = np.flatnonzero(tilegen.needs_any(shapely.get_num_coordinates(geoms), bounds))
        if len(wanted):
            self._wanted.append(wanted + self.rows)
        self.rows += len(geoms)

    def places(self) -> np.ndarray:
        """The places (0 = the first row written) of the rows that need copies, in order."""
        return np.concatenate(self._wanted) if self._wanted else np.empty(0, dtype=np.int64)


def _streamed_ids(engine: Engine, dataset_id: str, version: int, streamed: StreamedRows) -> np.ndarray | None:
    """The ids of the rows `streamed` says need copies, or None when the version's rows are not the stream's
    (not exactly `streamed.rows` rows of consecutive ids)."""
    with engine.connect() as conn, conn.begin():
        lo, hi, n = conn.execute(
            sa.text("SELECT min(id), max(id), count(*) FROM features WHERE dataset_id = :d AND v_from = :n"),
            {"d": dataset_id, "n": version},
        ).one()
    if n != streamed.rows or (n and hi - lo + 1 != n):
        _log.info("tile copies of %s v%d: %d rows of ids %s..%s, %d streamed: every row read", dataset_id, version, n, lo, hi, streamed.rows)
        return None
    return streamed.places() + (lo or 0)


def _batches_of(engine: Engine, dataset_id: str, version: int, ids: np.ndarray) -> Iterator[tuple[list[int], list[bytes | None]]]:
    """`_batches`, for the rows of these ids only (increasing): each batch read by its ids (json_each), in one step."""
    select = _joined_select(f"f.id IN (SELECT value FROM json_each(:ids)) AND {_rows_sql(True)} AND f.geom IS NOT NULL ORDER BY f.id")
    with engine.connect() as conn:
        for start in range(0, len(ids), BATCH):
            batch = _joined_rows(conn, select, {"ids": json.dumps(ids[start : start + BATCH].tolist()), "d": dataset_id, "n": version})
            if batch is not None:
                yield batch


def _sqlite(engine: Engine, dataset_id: str, version: int | None, workers: int, streamed: StreamedRows | None = None) -> int:
    written = 0
    ids = _streamed_ids(engine, dataset_id, version, streamed) if streamed is not None and version is not None else None
    source = _batches(engine, dataset_id, version) if ids is None else _batches_of(engine, dataset_id, version, ids)  # type: ignore[arg-type]
    # (closing: the batches' read connection goes back at once on a failure)
    with _writer(engine) as write, _InOrder(workers) as jobs, closing(source) as batches:
        for rows in batches:
            written += sum(write(copies) for copies in jobs.push(_copies_of, rows))
        written += sum(write(copies) for copies in jobs.drain())
    return written


def build(engine: Engine, dataset_id: str, version: int | None = None, streamed: StreamedRows | None = None) -> Built:
    """Make the copies the rows written by `version` of a dataset need (every row of it with None) and lack.

    `streamed`: which of the version's rows need copies, noted as a direct load wrote them (SQLite reads those
    alone; PostGIS finds them in its statement). Raises what the database raises (PartsFailed when some of PostGIS's
    concurrent parts failed); `build_quietly` is the writers' form."""
    start = time.perf_counter()
    workers = parallel.thread_count()
    if backend_of(engine) == "postgis":
        written = _postgis(engine, dataset_id, version, workers)
    else:
        written = _sqlite(engine, dataset_id, version, workers, streamed)
    return Built(written, time.perf_counter() - start)


def drop(engine: Engine, dataset_id: str) -> int:
    """Remove the copies of every row of a dataset (before building them anew, e.g. after LEVELS changed)."""
    with engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            return conn.execute(
                sa.text(f"DELETE FROM {TABLE} WHERE feature_id IN (SELECT f.id FROM features f WHERE f.dataset_id = :d)"),
                {"d": dataset_id},
            ).rowcount


def build_quietly(engine: Engine, dataset_id: str, version: int, streamed: StreamedRows | None = None) -> Built | None:
    """`build` after a committed version: a failure is logged, never raised (the version stands; its tiles simplify on
    the fly until `landcloud tiles build` makes the copies)."""
    try:
        return build(engine, dataset_id, version, streamed)
    except Exception:
        _log.warning("tile copies of %s v%d not built; its tiles simplify on the fly", dataset_id, version, exc_info=True)
        return None


def count(engine: Engine, dataset_id: str) -> dict[int, int]:
    """Copies per level of a dataset's rows (every version)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT g.level, count(*) FROM {TABLE} g JOIN features f ON f.id = g.feature_id WHERE f.dataset_id = :d GROUP BY g.level"),
            {"d": dataset_id},
        ).all()
    return {int(level): int(n) for level, n in rows}
