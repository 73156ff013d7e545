"""Units: the operator's administrative division list and unit boundaries.

The division list is data an operator loads and updates every year (the Ministry publishes
changes), never code. Other packages ask this module for the hierarchy and for boundaries;
they never read the `units` table themselves.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from landcloud.access.tables import unit_changes, units
from landcloud.codes.admin import AdminDivision, DivisionIndex, parse_divisions
from landcloud.messages import Conflict, LandcloudError, NotFound
from landcloud.store.db import backend_of, connection


def load_divisions(engine: Engine, path: str | Path) -> int:
    """Insert or update the administrative units of a division CSV (code,name,level,parent)."""
    divisions = parse_divisions(Path(path))
    return upsert_units(engine, divisions)


def upsert_units(engine: Engine, divisions: list[AdminDivision]) -> int:
    ts = datetime.now(UTC)
    with engine.begin() as conn:
        existing = {r.code for r in conn.execute(sa.select(units.c.code))}
        for d in divisions:
            values = dict(name=d.name, level=d.level, parent=d.parent, kind="administrative", updated_at=ts)
            if d.code in existing:
                conn.execute(units.update().where(units.c.code == d.code).values(**values))
            else:
                conn.execute(units.insert().values(code=d.code, **values))
    division_index.cache_clear()
    from landcloud.catalog import search  # unit names are part of the catalogue's search text

    search.reindex_all(engine)
    return len(divisions)


IndexKey = tuple[int, str]  # (generation, instance) of `unit_changes`: changes whenever the units table does
_UNIT_COLUMNS = (units.c.code, units.c.name, units.c.level, units.c.parent, units.c.kind)
_GENERATION = (unit_changes.c.generation.label("u__generation"), unit_changes.c.instance.label("u__instance"))


def _index_key(bind: Engine | Connection) -> IndexKey:
    with connection(bind) as conn:
        row = conn.execute(sa.select(*_GENERATION).where(unit_changes.c.id == 1)).one()
    return int(row[0]), str(row[1])


# One row: the division index's key and the unit `:unit_code`'s columns (NULLs when there is none).
# Every access decision needs both (is the cached index current? who is the caller's unit?), so they
# are read together: two primary-key reads, whatever the number of units (the key is kept by the
# database's triggers, migration 0011). Built once (it runs on every request); read with index_key_and_unit_of.
INDEX_KEY_AND_UNIT = (
    sa.select(*_GENERATION, *[c.label(f"u__{c.name}") for c in _UNIT_COLUMNS])
    .select_from(unit_changes.outerjoin(units, units.c.code == sa.bindparam("unit_code")))
    .where(unit_changes.c.id == 1)
)


def index_key_and_unit_of(row: Any) -> tuple[IndexKey, dict[str, object] | None]:
    """(index key, unit row or None) of a row of `INDEX_KEY_AND_UNIT`."""
    m = row._mapping
    key = (int(m["u__generation"]), str(m["u__instance"]))
    if m["u__code"] is None:
        return key, None
    return key, {c.name: m[f"u__{c.name}"] for c in _UNIT_COLUMNS}


class _IndexCache:
    """Caches the division index per engine until the units table changes."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[tuple[int, str], DivisionIndex | None]] = {}

    def __call__(self, bind: Engine | Connection, key: IndexKey | None = None) -> DivisionIndex | None:
        """The index, read again only when the units table changed (`key`: already read by the caller)."""
        engine = bind.engine if isinstance(bind, Connection) else bind
        key = key if key is not None else _index_key(bind)
        hit = self._cache.get(id(engine))
        if hit and hit[0] == key:
            return hit[1]
        with connection(bind) as conn:
            rows = conn.execute(
                sa.select(units.c.code, units.c.name, units.c.level, units.c.parent).where(units.c.kind == "administrative")
            ).all()
        index = DivisionIndex([AdminDivision(r.code, r.name, r.level, r.parent) for r in rows]) if rows else None
        self._cache[id(engine)] = (key, index)
        return index

    def cache_clear(self) -> None:
        self._cache.clear()


division_index = _IndexCache()


def get_unit(bind: Engine | Connection, code: str) -> dict[str, object]:
    with connection(bind) as conn:
        row = conn.execute(sa.select(*_UNIT_COLUMNS).where(units.c.code == code)).first()
    if row is None:
        raise NotFound("unit.not_found", f"单位代码 {code} 不存在", f"unit {code} does not exist")
    return dict(row._mapping)


def set_boundary(engine: Engine, code: str, geometry: shapely.Geometry) -> None:
    """Store a unit's boundary (EPSG:4490); the submission rules use it for the extent check."""
    if geometry is None or geometry.is_empty or geometry.geom_type not in ("Polygon", "MultiPolygon"):
        raise LandcloudError("unit.bad_boundary", f"单位 {code} 的边界必须是面", f"the boundary of unit {code} must be a polygon")
    wkb = shapely.to_wkb(geometry)
    value = sa.func.ST_GeomFromWKB(wkb, 4490) if backend_of(engine) == "postgis" else wkb
    with engine.begin() as conn:
        # updated_at moves too, so that the cached boundaries (division_at) see the change
        updated = conn.execute(
            units.update().where(units.c.code == code).values(boundary=value, updated_at=datetime.now(UTC))
        ).rowcount
    if not updated:
        raise NotFound("unit.not_found", f"单位代码 {code} 不存在", f"unit {code} does not exist")


def boundary(bind: Engine | Connection, code: str | None) -> shapely.Geometry | None:
    """The unit's boundary, if one was loaded (read once per submission, not cached)."""
    if not code:
        return None
    col = sa.func.ST_AsBinary(units.c.boundary) if backend_of(bind) == "postgis" else units.c.boundary
    with connection(bind) as conn:
        wkb = conn.execute(sa.select(col).where(units.c.code == code)).scalar()
    return shapely.from_wkb(bytes(wkb)) if wkb is not None else None


class _Bounded(NamedTuple):
    code: str
    name: str
    geom: shapely.Geometry
    size: float  # planar, in square degrees: only to order nested units


class _BoundaryCache:
    """The stored boundaries of the administrative units, parsed and indexed once per engine
    until the units table changes (the same key as the division index)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[tuple[int, str], list[_Bounded], shapely.STRtree | None]] = {}

    def __call__(self, engine: Engine, key: IndexKey | None = None) -> tuple[list[_Bounded], shapely.STRtree | None]:
        key = key if key is not None else _index_key(engine)
        hit = self._cache.get(id(engine))
        if hit and hit[0] == key:
            return hit[1], hit[2]
        col = sa.func.ST_AsBinary(units.c.boundary) if backend_of(engine) == "postgis" else units.c.boundary
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(units.c.code, units.c.name, col.label("wkb")).where(
                    units.c.kind == "administrative", units.c.boundary.is_not(None)
                )
            ).all()
        found = []
        for r in rows:
            geom = shapely.from_wkb(bytes(r.wkb))
            shapely.prepare(geom)
            found.append(_Bounded(r.code, r.name, geom, float(shapely.area(geom))))
        tree = shapely.STRtree([u.geom for u in found]) if found else None
        self._cache[id(engine)] = (key, found, tree)
        return found, tree

    def cache_clear(self) -> None:
        self._cache.clear()


_boundaries = _BoundaryCache()


def division_at(engine: Engine, lon: float, lat: float, key: IndexKey | None = None) -> dict[str, str] | None:
    """The smallest administrative unit whose stored boundary covers the point (EPSG:4490), or None.

    `key`: the index key the caller read in this request (saves reading it again)."""
    found, tree = _boundaries(engine, key)
    if tree is None:
        return None
    point = shapely.Point(lon, lat)
    # the tree gives the boxes that hold the point; the test runs on the boundaries, which are prepared (an index of
    # their edges). `tree.query(point, predicate=...)` would prepare the point instead and walk every edge of each
    # county's outline: ~0.7 ms a request on Heilongjiang's, a tenth of 'what is here' (profiles/here-postgis.txt)
    hits = [unit for unit in (found[int(i)] for i in tree.query(point)) if unit.geom.intersects(point)]
    if not hits:
        return None
    best = min(hits, key=lambda u: u.size)  # nested units: the smallest is the innermost
    return {"code": best.code, "name": best.name}


DEPARTMENT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")


def add_department(engine: Engine, code: str, name: str, region: str) -> dict[str, object]:
    """An external department (court, tax, bank …) attached to a region of the hierarchy."""
    if not DEPARTMENT_CODE.match(code or ""):
        raise LandcloudError(
            "unit.bad_code",
            f"部门代码“{code}”无效：3–32 位字母、数字、. _ -",
            f"invalid department code '{code}': 3–32 letters, digits, . _ -",
        )
    if not (name or "").strip():
        raise LandcloudError("unit.no_name", "部门名称不能为空", "the department needs a name")
    index = division_index(engine)
    if index is None or region not in index:
        raise LandcloudError(
            "unit.unknown_region", f"所属区域 {region} 不在行政区划列表中", f"region {region} is not in the division list"
        )
    with engine.begin() as conn:
        if conn.execute(sa.select(units.c.code).where(units.c.code == code)).first() is not None:
            raise Conflict("unit.exists", f"单位代码 {code} 已存在", f"unit {code} already exists")
        conn.execute(
            units.insert().values(
                code=code, name=name.strip(), level="department", parent=region, kind="department", updated_at=datetime.now(UTC)
            )
        )
    division_index.cache_clear()
    return get_unit(engine, code)


def count_units(engine: Engine) -> int:
    """How many units are registered, counted by the database."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(units)).scalar_one())


def list_units(engine: Engine, kind: str | None = None, conn: sa.Connection | None = None) -> list[dict[str, object]]:
    """Every unit; pass `conn` to read inside the caller's (writing) transaction."""
    query = sa.select(units.c.code, units.c.name, units.c.level, units.c.parent, units.c.kind).order_by(units.c.code)
    if kind:
        query = query.where(units.c.kind == kind)
    if conn is not None:
        return [dict(r._mapping) for r in conn.execute(query)]
    with engine.connect() as own:
        return [dict(r._mapping) for r in own.execute(query)]
