"""PostGIS-named spatial functions for the SQLite store, so one filter text serves both backends.

SQLite cannot load SpatiaLite here (the Python build cannot load extensions), so the few
predicates a filter needs are provided by GEOS through shapely. Geometry travels as WKB blobs;
ST_GeomFromWKB only passes its blob through. They are exact but row by row: filters should also
narrow by the R*Tree (a bbox), as the OGC routes do.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from functools import lru_cache

import shapely

PREDICATES: dict[str, Callable[[shapely.Geometry, shapely.Geometry], bool]] = {
    "ST_Intersects": shapely.intersects,
    "ST_Disjoint": shapely.disjoint,
    "ST_Within": shapely.within,
    "ST_Contains": shapely.contains,
    "ST_Equals": shapely.equals,
    "ST_Touches": shapely.touches,
    "ST_Crosses": shapely.crosses,
    "ST_Overlaps": shapely.overlaps,
}


@lru_cache(maxsize=64)
def _parsed_constant(wkb: bytes) -> shapely.Geometry:
    """Filter geometries recur on every row: parse and prepare them once."""
    geom = shapely.from_wkb(wkb)
    shapely.prepare(geom)
    return geom


def _predicate(fn: Callable[[shapely.Geometry, shapely.Geometry], bool]) -> Callable[[bytes | None, bytes | None], int | None]:
    def call(a: bytes | None, b: bytes | None) -> int | None:
        if a is None or b is None:
            return None
        try:
            ga = shapely.from_wkb(a)
            gb = _parsed_constant(bytes(b))
        except shapely.errors.GEOSException:
            return None
        return int(bool(fn(ga, gb)))

    return call


def _from_wkb(wkb: bytes | None, _srid: int | None = None) -> bytes | None:
    return wkb


def register(conn: sqlite3.Connection) -> None:
    if not _sqlite_has_pow():  # (SQLite built without its math functions: `sqlite_columns` reads floats with it)
        conn.create_function("pow", 2, pow_or_null, deterministic=True)
    conn.create_function("ST_GeomFromWKB", 2, _from_wkb, deterministic=True)
    conn.create_function("ST_GeomFromWKB", 1, _from_wkb, deterministic=True)
    for name, fn in PREDICATES.items():
        conn.create_function(name, 2, _predicate(fn), deterministic=True)


def pow_or_null(x: float | None, y: float | None) -> float | None:
    """SQLite's own pow where it lacks its math functions: NULL for a NULL argument or a result out of range."""
    if x is None or y is None:
        return None
    try:
        return math.pow(x, y)
    except (OverflowError, ValueError):
        return None


@lru_cache(maxsize=1)
def _sqlite_has_pow() -> bool:
    """Whether the process's SQLite library has its math functions (asked once: every connection shares it)."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("SELECT pow(2.0, -1074)").fetchone()
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True
