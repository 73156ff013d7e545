"""Building the pre-generalised tile copies of feature rows (`feature_tilegeoms`, see `geo/tilegen.py`).

Built after a version is committed, for the rows it wrote, in a transaction of its own: a failure (or a store not yet
migrated) leaves rows without copies, which tiles then simplify on the fly, never a wrong tile. PostGIS builds them in
one INSERT ... SELECT on the server; SQLite in batches here (shapely, vectorised), read by id ranges, so a dataset is
never held whole in memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from landcloud.geo import tilegen
from landcloud.store.db import backend_of

_log = logging.getLogger(__name__)
TABLE = "feature_tilegeoms"
BATCH = 2000


@dataclass(frozen=True)
class Built:
    copies: int  # copies written
    seconds: float


def _rows_sql(version: int | None) -> str:
    """The rows of a dataset to build for: those a version wrote, or every row (None); none that has its copies."""
    which = "f.v_from = :n" if version is not None else "1 = 1"
    return f"f.dataset_id = :d AND {which} AND NOT EXISTS (SELECT 1 FROM {TABLE} g WHERE g.feature_id = f.id)"


def _postgis(conn: Connection, dataset_id: str, version: int | None) -> int:
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
    sql = (
        f"INSERT INTO {TABLE} (feature_id, level, geom) "
        f"SELECT s.id, l.level, {simplified} FROM ("
        "SELECT f.id, ST_NPoints(f.geom) AS np, f.maxx - f.minx AS dx, f.maxy - f.miny AS dy, "
        "GREATEST(abs(f.miny), abs(f.maxy)) AS far, ST_Transform(ST_SetSRID(f.geom, 4326), 3857) AS m "
        f"FROM features f WHERE {_rows_sql(version)} AND ST_NPoints(f.geom) > {n} OFFSET 0) s "  # (none for NULL, empty)
        f"JOIN (VALUES {levels}) AS l (level, tol, px_low, px, tile_deg) ON s.np > (s.dx + s.dy) / l.px_low "
        "AND (s.dx >= l.px OR s.dy >= l.px * cos(radians(LEAST(s.far + l.tile_deg, 90.0)))) "
        "CROSS JOIN LATERAL (SELECT ST_Simplify(s.m, l.tol, true) AS g) d "
        "ON CONFLICT DO NOTHING"  # (a build running alongside)
    )
    conn.exec_driver_sql("SET LOCAL client_min_messages = warning")  # ST_IsValid's NOTICE per invalid shape
    return int(conn.execute(sa.text(sql), {"d": dataset_id, "n": version}).rowcount)


def _sqlite(engine: Engine, dataset_id: str, version: int | None) -> int:
    select = sa.text(
        "SELECT f.id, f.geom, f.minx, f.miny, f.maxx, f.maxy FROM features f "
        f"WHERE {_rows_sql(version)} AND f.id > :last AND f.geom IS NOT NULL AND length(f.geom) >= {tilegen.MIN_WKB_BYTES} "
        "ORDER BY f.id LIMIT :batch"
    )
    insert = f"INSERT OR IGNORE INTO {TABLE} (feature_id, level, geom) VALUES (?, ?, ?)"  # (a build running alongside)
    last, written = 0, 0
    while True:
        with engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                rows = conn.execute(select, {"d": dataset_id, "n": version, "last": last, "batch": BATCH}).all()
                if not rows:
                    break
                ids = [r[0] for r in rows]
                geoms = shapely.from_wkb(np.array([bytes(r[1]) for r in rows], dtype=object), on_invalid="ignore")
                env = np.array([r[2:6] for r in rows], dtype=np.float64)
                made = tilegen.copies(geoms, env)
                if made:
                    wkbs = shapely.to_wkb(np.array([g for _, _, g in made], dtype=object))
                    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                    cur.executemany(insert, [(ids[i], level, w) for (i, level, _), w in zip(made, wkbs.tolist())])
                    cur.close()
        last, written = ids[-1], written + len(made)
    return written


def build(engine: Engine, dataset_id: str, version: int | None = None) -> Built:
    """Make the copies the rows written by `version` of a dataset need (every row of it with None) and lack.

    Raises what the database raises; `build_quietly` is the writers' form."""
    start = time.perf_counter()
    if backend_of(engine) == "postgis":
        with engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                written = _postgis(conn, dataset_id, version)
    else:
        written = _sqlite(engine, dataset_id, version)
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


def build_quietly(engine: Engine, dataset_id: str, version: int) -> Built | None:
    """`build` after a committed version: a failure is logged, never raised (the version stands; its tiles simplify on
    the fly until `landcloud tiles build` makes the copies)."""
    try:
        return build(engine, dataset_id, version)
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
