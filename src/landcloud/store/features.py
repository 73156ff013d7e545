"""The FeatureStore: versioned features on SQLite or PostGIS, one behaviour.

Everything that differs between the two engines lives in the two small subclasses at the
bottom (how a bounding box is searched, how geometry is written and read, how rows are
bulk-loaded); the versioning logic (what "replace", "incremental", "rollback" and "diff" mean)
is written once, in SQL that both engines run.

A row is visible in version N when `v_from <= N AND (v_to IS NULL OR v_to > N)`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from landcloud.geo.overlay import interiors_meeting
from landcloud.geo.parallel import in_parts
from landcloud.geo.separation import Payoff
from landcloud.geo.tilegen import MIN_WKB_BYTES
from landcloud.store import rtree_bulk, sqlite_rows, tilegeoms
from landcloud.store.db import BackendKind, backend_of, connection
from landcloud.store.sqlite_columns import Blobs, Reals, Same, Texts, insert_columns
from landcloud.store.stage_writer import StageWriter
from landcloud.store.staged import StageBatch, StageRow

_log = logging.getLogger(__name__)

__all__ = ["FeatureStore", "PostGISFeatureStore", "SQLiteFeatureStore", "StageBatch", "StageRow", "feature_store_for"]

BBox = tuple[float, float, float, float]
_NO_BOX = (None, None, None, None)
_STAGE_WRITES, _STAGE_DELETES = "s.op <> 'delete'", "s.op = 'delete'"  # the staged rows a merge writes / deletes by
_RTREE = "features_rtree"  # SQLite's R*Tree of the rows' envelopes (id = features.id)
DiffKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class StoredFeature:
    """One row of one version, as read back.

    Read `as_text` (see `FeatureStore.iter_features`), `props` is left empty and `props_text` holds
    the stored JSON object; `geojson` is the geometry's GeoJSON in EPSG:4490 lon/lat where the
    database writes it (PostGIS), and then `wkb` is not read.
    """

    id: int
    fkey: str
    props: dict[str, Any]
    wkb: bytes | None
    v_from: int
    v_to: int | None
    area_m2: float | None
    props_text: str | None = None
    geojson: str | None = None


class TileRows(NamedTuple):
    """A batch of rows as a vector tile reads them (`FeatureStore.tile_rows`), column by column."""

    fkeys: list[str]
    values: list[list[Any]]  # per row, the values of the fields asked for, in that order (None where absent)
    wkbs: list[bytes | None]
    envelopes: np.ndarray  # (n, 4) stored minx, miny, maxx, maxy
    copies: list[bytes | None] | None = None  # the rows' pre-generalised tile copies (EPSG:3857 WKB) of the level asked for


@functools.lru_cache(maxsize=256)
def _driver_sql(sql: str, dialect: sa.Dialect) -> tuple[str, tuple[str, ...] | None]:
    """A text statement in the driver's parameter style, and the order of its parameters when they are positional
    (compiling it is ~0.15 ms, what a small tile's whole read costs; a tile's statements differ by field count only)."""
    compiled = sa.text(sql).compile(dialect=dialect)
    return str(compiled), (tuple(compiled.positiontup or ()) if compiled.positional else None)


def _driver_batches(c: Connection, sql: str, params: dict[str, Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
    """A text statement's rows in batches of plain tuples, through the driver's own cursor: a SQLAlchemy Row per row
    and its partitions were ~1.5 ms of a full tile's 2,400 rows on SQLite (profiles/tiles-python.txt)."""
    statement, names = _driver_sql(sql, c.dialect)
    args = tuple(params[k] for k in names) if names is not None else params
    cur = c.connection.cursor()
    try:
        cur.execute(statement, args)
        while part := cur.fetchmany(size):
            yield part
    finally:
        cur.close()


@dataclass(frozen=True)
class SQLFilter:
    """A condition over the feature table (alias `f`) with its bound parameters, e.g. a translated CQL2 filter.

    Property values are reached through `FeatureStore.prop_sql` and geometry through the
    PostGIS function names (ST_Intersects(f.geom, ST_GeomFromWKB(:g, 4490)) …), which the
    SQLite store provides as functions of its own, so one text serves both backends.
    """

    sql: str
    params: dict[str, Any]


@dataclass(frozen=True)
class RowFilter:
    """The rows a reader may see: any row whose code field starts with one of the prefixes, or
    whose geometry intersects one of the areas. An empty filter admits no row; "no filter"
    (every row) is expressed by passing None instead.
    """

    prefixes: tuple[tuple[str, str], ...] = ()  # (field, administrative-code prefix)
    areas: tuple[bytes, ...] = ()  # WKB polygons in EPSG:4490

    def __post_init__(self) -> None:
        for field_name, prefix in self.prefixes:
            if not prefix.isalnum() or not field_name:
                raise ValueError(f"bad row filter prefix {field_name!r}={prefix!r}")

    def area_geometries(self) -> list[shapely.Geometry]:
        return [shapely.from_wkb(a) for a in self.areas]

    def matches_props(self, props: dict[str, Any]) -> bool:
        return any(str(props.get(f) or "").startswith(p) for f, p in self.prefixes)


PostFilter = Callable[[list["StoredFeature"]], list[bool]]


class OverlapChunk(NamedTuple):
    """Pairs of features whose interiors meet: their keys and the intersection of each pair."""

    keys_a: list[str]
    keys_b: list[str]
    intersections: np.ndarray


@dataclass(frozen=True)
class MergeCounts:
    added: int
    removed: int
    changed: int


@dataclass(frozen=True)
class DiffEntry:
    kind: DiffKind
    fkey: str
    before: StoredFeature | None
    after: StoredFeature | None


def visible_in(version_param: str = "version", alias: str = "f", unindexed: str = "") -> str:
    """SQL condition for rows of table alias `alias` visible in a version bound as :version_param.

    `unindexed`: a prefix keeping the version columns off the indexes (`FeatureStore._unindexed`), for a lookup by key."""
    u = f"{unindexed}{alias}"
    return f"({u}.v_from <= :{version_param} AND ({u}.v_to IS NULL OR {u}.v_to > :{version_param}))"


def _suffix_params(sql: str, names: Iterable[str], suffix: str) -> str:
    """Rename the bound parameters `:name` of `sql` that are in `names` to `:name<suffix>` (not `::casts`)."""
    known = set(names)
    return re.sub(r"(?<!:):(\w+)", lambda m: f":{m.group(1)}{suffix}" if m.group(1) in known else m.group(0), sql)


_FEATURE_COLUMNS = "f.id, f.fkey, f.props, {geom} AS wkb, f.v_from, f.v_to, f.area_m2"
_TEXT_COLUMNS = "f.id, f.fkey, {props} AS props, {geom} AS wkb, {geojson} AS geojson, f.v_from, f.v_to, f.area_m2"


def _first_batch(wanted: int, batch_size: int) -> int:
    """The first batch of a page tested here (`wanted`: its offset + limit): a little more than the page.

    SQLite narrows a box by envelope only, so a bbox page reads candidates and tests them exactly in
    Python. Taken 5,000 at a time, a 100-feature page decoded and tested every candidate in its box
    (a dense box of buildings: hundreds), to keep the first 100. Each later batch is twice the last.
    """
    return min(batch_size, max(64, wanted + wanted // 4 + 16))


def _doubling(result: sa.CursorResult[Any], size: int, batch_size: int) -> Iterator[Sequence[sa.Row[Any]]]:
    """The result's rows in batches of `size`, each twice the last up to `batch_size`."""
    while rows := result.fetchmany(size):
        yield rows
        size = min(batch_size, size * 2)


def _partitions(result: sa.CursorResult[Any], batch_size: int, wanted: int | None) -> Iterator[Sequence[sa.Row[Any]]]:
    """The result's rows in batches (`_first_batch` first for a page tested here)."""
    if wanted is None:
        yield from result.partitions(batch_size)
        return
    yield from _doubling(result, _first_batch(wanted, batch_size), batch_size)


class _PageRow(NamedTuple):
    """A row of a page SQLite returned in one step (`SQLiteFeatureStore._rows_at_once`), as
    `FeatureStore._row_to_feature` reads a row: by column name."""

    id: int
    fkey: str
    props: str
    wkb: bytes | None
    v_from: int
    v_to: int | None
    area_m2: float | None
    geojson: None = None  # SQLite does not write GeoJSON


# A page's rows as three values: each row's small columns as a JSON array (the area as the shortest text that reads
# back to the same double: json_array writes 15 significant digits, %!.17g round-trips; the WKB's length), the
# properties joined by the record separator (a JSON text has no raw control character to meet it), the WKB joined as one
# blob (group_concat keeps a blob's bytes, NULs included, and skips NULL). One thread, a DLTB page cost 0.15-0.4 ms more
# so than as plain rows; as JSON rows with the WKB in hex, 0.6-1.3 ms more (profiles/items-sqlite-16.txt).
_PAGE_AT_ONCE = (
    "SELECT json_group_array(json_array(id, fkey, v_from, v_to, "
    "CASE WHEN area_m2 IS NOT NULL THEN printf('%!.17g', area_m2) END, length(wkb))), "
    "group_concat(props, char(30)), CAST(group_concat(wkb, '') AS BLOB) FROM ({sql})"
)


class FeatureStore:
    """Reads and writes versioned features; the dialect-specific parts are overridden below."""

    # a prefix that keeps a column's term off the indexes in a lookup by key ("+" on SQLite, see SQLiteFeatureStore)
    _unindexed = ""

    kind: BackendKind

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- dialect hooks -------------------------------------------------------------------
    geom_read_sql: str = "f.geom"
    props_text_sql: str = "f.props"  # the stored JSON object as text
    geojson_sql: str | None = None  # the geometry as GeoJSON text, where the database writes it

    def _bbox_condition(self, bbox_params: str = "b") -> str:
        raise NotImplementedError

    def _box_join(self) -> tuple[str, str]:
        """FROM and WHERE text that start a small-box search from the spatial index (:bminx … :bmaxy)."""
        return "features f", self._bbox_condition()

    def _create_stage(self, conn: Connection) -> None:
        raise NotImplementedError

    def _write_stage(self, conn: Connection, batch: StageBatch) -> None:
        raise NotImplementedError

    def _geom_from_stage_sql(self) -> str:
        raise NotImplementedError

    def _after_insert(self, conn: Connection, dataset_id: str, version: int) -> None:
        """Keep side indexes (SQLite's R*Tree) in step with rows inserted for a version."""

    def _decode_props(self, value: Any) -> dict[str, Any]:
        if isinstance(value, (str, bytes)):
            return json.loads(value)
        return dict(value)

    # -- reading -------------------------------------------------------------------------
    def _row_to_feature(self, row: Any) -> StoredFeature:
        wkb = row.wkb
        if wkb is not None and not isinstance(wkb, bytes):
            wkb = bytes(wkb)
        return StoredFeature(row.id, row.fkey, self._decode_props(row.props), wkb, row.v_from, row.v_to, row.area_m2)

    def _row_to_text_feature(self, row: Any) -> StoredFeature:
        wkb = row.wkb
        if wkb is not None and not isinstance(wkb, bytes):
            wkb = bytes(wkb)
        return StoredFeature(row.id, row.fkey, {}, wkb, row.v_from, row.v_to, row.area_m2, row.props, row.geojson)

    def _columns(self, as_text: bool) -> str:
        if not as_text:
            return _FEATURE_COLUMNS.format(geom=self.geom_read_sql)
        if self.geojson_sql is None:
            return _TEXT_COLUMNS.format(props=self.props_text_sql, geom=self.geom_read_sql, geojson="NULL")
        return _TEXT_COLUMNS.format(props=self.props_text_sql, geom="NULL", geojson=self.geojson_sql)

    def iter_features(
        self,
        dataset_id: str,
        version: int,
        *,
        bbox: BBox | None = None,
        rows: RowFilter | None = None,
        where: SQLFilter | None = None,
        order: Sequence[tuple[str, str, bool]] = (),
        limit: int | None = None,
        offset: int = 0,
        batch_size: int = 5000,
        conn: Connection | None = None,
        as_text: bool = False,
        read_conn: Connection | None = None,
    ) -> Iterator[StoredFeature]:
        """Stream the features of one version in a stable order (`order`, then row id).

        `bbox` selects features whose geometry intersects the box (exactly, not just by
        envelope); `rows` is the access policy's row restriction (None: every row); `where` a
        translated user filter (CQL2); `order` (property, type, ascending) triples. All run in
        the database; where SQLite can only narrow by envelope, the exact test runs here,
        before paging, so limit/offset always count matching features.

        `as_text`: for a reader that only writes the features out as GeoJSON in EPSG:4490, unchanged:
        the properties stay the stored JSON text (`props_text`, `props` empty: decoding and encoding
        them again was a third of a page's cost) and PostGIS writes the geometry's GeoJSON itself
        (`geojson`). Ignored with a row restriction (its test reads the properties).

        `conn` is a connection to read on whatever the read (a transaction's). `read_conn` is a read
        connection (`store.db.read_connection`, autocommit on PostgreSQL) to take where it serves: a
        page (one statement) on either store, any read on SQLite; a longer PostgreSQL read streams
        through a server-side cursor, which needs a transaction of its own connection.
        """
        as_text = as_text and rows is None
        clauses, params = self.conditions(dataset_id, version, None, rows, where)
        source = "features f"
        if bbox is not None:
            # from the spatial index (SQLite: R*Tree first, then rows by id). Given `f.id IN (R*Tree
            # ids)`, SQLite's planner walked the dataset's whole version index and tested every row
            # against the list: 58 ms a page for 100,000 parcels, 2.5 ms this way.
            source, in_box = self._box_join()
            clauses.append(in_box)
            params.update(bminx=bbox[0], bminy=bbox[1], bmaxx=bbox[2], bmaxy=bbox[3])
        order_sql = "".join(
            f"{self.prop_sql(name, ftype, params)} {'ASC' if asc else 'DESC'} NULLS LAST, " for name, ftype, asc in order
        )
        sql = f"SELECT {self._columns(as_text)} FROM {source} WHERE {' AND '.join(clauses)} ORDER BY {order_sql}f.id"
        post = self._post_filter(bbox, rows)
        if post is None:
            if limit is not None:
                sql += " LIMIT :limit OFFSET :offset"
                params.update(limit=limit, offset=offset)
            elif offset:
                sql += " OFFSET :offset" if self.kind == "postgis" else " LIMIT -1 OFFSET :offset"
                params.update(offset=offset)
        yield from self._stream(sql, params, batch_size, conn, post, limit, offset, as_text, read_conn)

    def tile_rows(
        self,
        dataset_id: str,
        version: int,
        bbox: BBox,
        fields: Sequence[str],
        *,
        rows: RowFilter | None = None,
        where: SQLFilter | None = None,
        batch_size: int = 2000,
        copy_level: int | None = None,
    ) -> Iterator[TileRows]:
        """The rows of one version whose stored envelope meets `bbox`, for a vector tile: in batches, in id order,
        with only the values of `fields` (decoded from one small JSON array per row, never the whole object) and
        the stored envelope; no exact geometry test (the tile parses each geometry once and tests it there).

        For a row restriction by code prefix only (`rows.areas` needs the geometry and every property: use
        `iter_features`). A vector tile of 1,000 parcels carries two of their twelve properties below z12:
        decoding them all into a StoredFeature per row was a third of the tile (profiles/tiles-cold3.txt).

        `copy_level`: also each row's pre-generalised copy of that level (`feature_tilegeoms`; None where it has none),
        looked up (SQLite) only for rows whose geometry is long enough to have more points than any copy is made for.
        """
        if rows is not None and rows.areas:
            raise ValueError("tile_rows takes no row restriction by area")
        clauses, params = self.conditions(dataset_id, version, None, rows, where)
        source, in_box = self._box_join()
        clauses.append(in_box)
        params.update(bminx=bbox[0], bminy=bbox[1], bmaxx=bbox[2], bmaxy=bbox[3])
        values_sql = self._values_sql([self._json_path(n) for n in fields], params) if fields else "NULL"
        copy_sql = ""
        if copy_level is not None:
            params["tile_level"] = copy_level
            copy_sql = f", {self._tile_copy_sql()} AS tcopy"
        sql = (
            f"SELECT f.id, f.fkey, {values_sql} AS vals, {self.geom_read_sql} AS wkb, f.minx, f.miny, f.maxx, f.maxy{copy_sql} "
            f"FROM {source} WHERE {' AND '.join(clauses)} ORDER BY f.id"
        )
        n = len(fields)
        with self.engine.connect() as c:
            for part in _driver_batches(c, sql, params, batch_size):
                if copy_level is not None:
                    _, fkeys, vals, wkbs, *env, tcopies = zip(*part)
                    copies: list[bytes | None] | None = [None if w is None else bytes(w) for w in tcopies]
                else:
                    _, fkeys, vals, wkbs, *env = zip(*part)
                    copies = None
                if not n:
                    values: list[list[Any]] = [[] for _ in fkeys]
                elif isinstance(vals[0], str):  # SQLite: JSON text, parsed for the whole batch at once
                    values = json.loads("[" + ",".join(vals) + "]")
                else:
                    values = [v[:n] for v in vals]
                if not isinstance(wkbs[0], bytes):
                    wkbs = tuple(None if w is None else bytes(w) for w in wkbs)
                yield TileRows(list(fkeys), values, list(wkbs), np.array(env, dtype=np.float64).T.reshape(-1, 4), copies)

    def _tile_copy_sql(self) -> str:
        """A row's tile copy of level :tile_level as WKB, or NULL (see `tile_rows`)."""
        return (
            f"(SELECT {self._copy_read_sql} FROM {tilegeoms.TABLE} g WHERE g.feature_id = f.id AND g.level = :tile_level)"
        )

    _copy_read_sql = "g.geom"

    def _values_sql(self, paths: Sequence[str], params: dict[str, Any]) -> str:
        """SQL for a JSON array of the values at `paths` of a row's properties (null where absent)."""
        raise NotImplementedError

    def features_in_box(
        self, parts: Sequence[tuple[str, int, RowFilter | None]], bbox: BBox, conn: Connection | None = None
    ) -> list[list[StoredFeature]]:
        """The features of several (dataset, version, row filter) parts in one small box, in one statement.

        For point queries over many layers: one round trip instead of one cursor per layer. Each
        part is `iter_features(dataset, version, bbox=bbox, rows=rows)`; the answer is a list per part.
        """
        if not parts:
            return []
        selects = []
        params: dict[str, Any] = {"bminx": bbox[0], "bminy": bbox[1], "bmaxx": bbox[2], "bmaxy": bbox[3]}
        source, in_box = self._box_join()
        for i, (dataset_id, version, rows) in enumerate(parts):
            clauses, own = self.conditions(dataset_id, version, None, rows, None)
            where = _suffix_params(" AND ".join(clauses), own, f"_{i}")
            params.update({f"{k}_{i}": v for k, v in own.items()})
            selects.append(
                f"SELECT {i} AS part, {_FEATURE_COLUMNS.format(geom=self.geom_read_sql)} FROM {source} WHERE {in_box} AND {where}"
            )
        sql = " UNION ALL ".join(selects) + " ORDER BY 1, 2"  # part, row id
        out: list[list[StoredFeature]] = [[] for _ in parts]
        with connection(conn if conn is not None else self.engine) as c:  # a new one in autocommit: no BEGIN/ROLLBACK trips
            for row in c.execute(sa.text(sql), params):
                out[row.part].append(self._row_to_feature(row))
        for i, (_dataset_id, _version, rows) in enumerate(parts):
            post = self._post_filter(bbox, rows)
            if post is not None and out[i]:
                out[i] = [f for f, keep in zip(out[i], post(out[i])) if keep]
        return out

    def conditions(
        self, dataset_id: str, version: int, bbox: BBox | None, rows: RowFilter | None, where: SQLFilter | None
    ) -> tuple[list[str], dict[str, Any]]:
        params: dict[str, Any] = {"d": dataset_id, "version": version}
        clauses = ["f.dataset_id = :d", visible_in()]
        if bbox is not None:
            clauses.append(self._bbox_condition())
            params.update(bminx=bbox[0], bminy=bbox[1], bmaxx=bbox[2], bmaxy=bbox[3])
        if rows is not None:
            clauses.append(self._row_filter_sql(rows, params))
        if where is not None:
            clauses.append(f"({where.sql})")
            params.update(where.params)
        return clauses, params

    def prop_sql(self, name: str, ftype: str, params: dict[str, Any]) -> str:
        """SQL for a property's value (numbers as numbers, everything else as text); binds the name."""
        key = f"prop{len([k for k in params if k.startswith('prop')])}"
        params[key] = self._json_path(name)
        return self._prop_expr(key, ftype)

    def _prop_expr(self, key: str, ftype: str) -> str:
        raise NotImplementedError

    def _json_text_sql(self, field_param: str) -> str:
        raise NotImplementedError

    def _area_condition(self, i: int, area: shapely.Geometry, params: dict[str, Any]) -> str:
        raise NotImplementedError

    def _row_filter_sql(self, rows: RowFilter, params: dict[str, Any]) -> str:
        clauses = []
        for i, (field_name, prefix) in enumerate(rows.prefixes):
            params[f"rf{i}"] = self._json_path(field_name)
            params[f"rp{i}"] = prefix + "%"
            clauses.append(f"{self._json_text_sql(f'rf{i}')} LIKE :rp{i}")
        for i, area in enumerate(rows.area_geometries()):
            clauses.append(self._area_condition(i, area, params))
        return "(" + " OR ".join(clauses) + ")" if clauses else "(1 = 0)"

    def _json_path(self, field_name: str) -> str:
        return field_name

    def _post_filter(self, bbox: BBox | None, rows: RowFilter | None) -> PostFilter | None:
        """The exact test SQLite cannot do in SQL (geometry), or None when SQL was exact."""
        return None

    def _stream(
        self,
        sql: str,
        params: dict[str, Any],
        batch_size: int,
        conn: Connection | None,
        post: PostFilter | None,
        limit: int | None,
        offset: int,
        as_text: bool = False,
        read_conn: Connection | None = None,
    ) -> Iterator[StoredFeature]:
        # A page (LIMIT in the SQL, at most one batch) is fetched in one go on a plain connection; only a
        # longer read streams through a server-side cursor (DECLARE/FETCH/CLOSE in a transaction).
        page = post is None and limit is not None and limit <= batch_size
        if conn is None and read_conn is not None and (page or self.kind == "sqlite"):
            conn = read_conn
        to_feature = self._row_to_text_feature if as_text else self._row_to_feature
        wanted = None if post is None or limit is None else limit + offset

        def run(c: Connection) -> Iterator[StoredFeature]:
            skipped = produced = 0
            for partition in self._batches(c, sql, params, page, batch_size, wanted):
                feats = [to_feature(r) for r in partition]
                if post is not None:
                    keep = post(feats)
                    feats = [f for f, k in zip(feats, keep) if k]
                for feat in feats:
                    if post is not None:
                        if skipped < offset:
                            skipped += 1
                            continue
                        if limit is not None and produced >= limit:
                            return
                    produced += 1
                    yield feat

        if conn is not None:
            yield from run(conn)
        else:
            with connection(self.engine) if page else self.engine.connect() as c:
                yield from run(c)

    def _batches(
        self, c: Connection, sql: str, params: dict[str, Any], page: bool, batch_size: int, wanted: int | None
    ) -> Iterator[Sequence[Any]]:
        """The statement's rows in batches: a page (`page`: LIMIT in the SQL) in one go; a page tested here (`wanted`)
        by `_first_batch`; any other read `batch_size` at a time, streamed."""
        stmt = sa.text(sql) if page else sa.text(sql).execution_options(yield_per=batch_size)
        yield from _partitions(c.execute(stmt, params), batch_size, wanted)

    def get_feature(
        self, dataset_id: str, version: int, fkey: str, conn: Connection | None = None, rows: RowFilter | None = None
    ) -> StoredFeature | None:
        params: dict[str, Any] = {"d": dataset_id, "k": fkey, "version": version}
        where = f"f.dataset_id = :d AND f.fkey = :k AND {visible_in(unindexed=self._unindexed)}"
        if rows is not None:
            where += " AND " + self._row_filter_sql(rows, params)
        sql = f"SELECT {_FEATURE_COLUMNS.format(geom=self.geom_read_sql)} FROM features f WHERE {where}"
        with connection(conn if conn is not None else self.engine) as c:
            row = c.execute(sa.text(sql), params).first()
            if row is None:
                return None
            feat = self._row_to_feature(row)
            post = self._post_filter(None, rows)
            return feat if post is None or post([feat])[0] else None

    def count(
        self,
        dataset_id: str,
        version: int,
        bbox: BBox | None = None,
        rows: RowFilter | None = None,
        where: SQLFilter | None = None,
    ) -> int:
        if self._post_filter(bbox, rows) is not None:
            return sum(1 for _ in self.iter_features(dataset_id, version, bbox=bbox, rows=rows, where=where))
        clauses, params = self.conditions(dataset_id, version, bbox, rows, where)
        with connection(self.engine) as c:
            return int(c.execute(sa.text(f"SELECT count(*) FROM features f WHERE {' AND '.join(clauses)}"), params).scalar_one())

    def summary(self, conn: Connection, dataset_id: str, version: int) -> tuple[int, BBox | None]:
        """Feature count and extent of a version (from the stored envelopes)."""
        row = conn.execute(
            sa.text(
                "SELECT count(*) AS n, min(f.minx) AS a, min(f.miny) AS b, max(f.maxx) AS c, max(f.maxy) AS d "
                f"FROM features f WHERE f.dataset_id = :d AND {visible_in()}"
            ),
            {"d": dataset_id, "version": version},
        ).one()
        extent = None if row.a is None else (float(row.a), float(row.b), float(row.c), float(row.d))
        return int(row.n), extent

    # -- writing a version ---------------------------------------------------------------
    def begin_stage(
        self, conn: Connection, direct: tuple[str, int] | None = None, expected_rows: int | None = None, background: bool = False
    ) -> None:
        """Create the (transaction-local) staging table for one incoming version.

        Its indexes are built once the rows are in (`_index_stage`, before the first statement
        that reads the stage): one sort instead of an index update per row.

        `direct` (dataset, version): the first rows of a dataset (no current row, a replacement
        with a key field) go straight into `features`, as the version: the stage would hold the
        same rows and the merge copy them unchanged. The transaction still decides: a rejection
        rolls them back. `merge_stage` then only counts them.

        `expected_rows`: how many rows the source says it has (None: unknown), for choosing how to
        keep a spatial index up (SQLite: insert per batch, or pack the tree anew after the last).

        `background`: SQLite writes each batch on a thread of its own while the caller goes on (`stage_writer`); the
        caller then calls `end_stage` on every path, a failure's included, before the connection runs anything else.
        """
        if direct is not None:
            self.hold_dataset(conn, direct[0])
        conn.info["stage_direct"] = direct
        conn.info["stage_background"] = background
        conn.info["stage_expected"] = expected_rows
        conn.info.pop("rtree_packed", None)  # (decided by the first batch of this version)
        conn.info.pop("rtree_new", None)
        conn.info["stage_written"] = 0
        conn.info["stage_indexed_direct"] = False  # the side indexes of the direct rows kept up as they go in (SQLite)
        if direct is None:
            self._create_stage(conn)
        conn.info["stage_indexed"] = direct is not None

    _hold_sql = "SELECT 1 FROM datasets WHERE id = :d"

    def hold_dataset(self, conn: Connection, dataset_id: str) -> None:
        """Before writing rows of `dataset_id`: its row must exist, and (PostgreSQL) stays as it is until this
        transaction ends. On PostgreSQL this is what the foreign key did for every row (migration 0013): checked
        once for a whole write, whose rows all carry the one dataset id."""
        if conn.execute(sa.text(self._hold_sql), {"d": dataset_id}).first() is None:
            raise LookupError(f"no dataset {dataset_id!r}: its rows cannot be written (没有此数据集，不能写入它的要素)")

    def refresh_statistics(self, written: int) -> None:
        """After a committed write of `written` rows: bring the planner's statistics up to date if it was large.

        The database's own statistics only (nothing about callers or access): a no-op except on PostGIS.
        """

    def has_current_rows(self, conn: Connection, dataset_id: str) -> bool:
        row = conn.execute(
            sa.text("SELECT 1 FROM features f WHERE f.dataset_id = :d AND f.v_to IS NULL LIMIT 1"), {"d": dataset_id}
        ).first()
        return row is not None

    def _index_stage(self, conn: Connection) -> None:
        self.flush_stage(conn)  # (the first statement that reads the stage)
        if conn.info.get("stage_indexed", True):
            return
        for sql in self._stage_index_sql():
            conn.exec_driver_sql(sql)
        conn.info["stage_indexed"] = True

    def _stage_index_sql(self) -> list[str]:
        return ["CREATE INDEX ix_stage_fkey ON stage (fkey)", "CREATE INDEX ix_stage_chash ON stage (chash)"]

    def stage(self, conn: Connection, rows: Sequence[StageRow] | StageBatch) -> None:
        if not len(rows):
            return
        batch = StageBatch.of(rows)
        direct = conn.info.get("stage_direct")
        if direct is None:
            self._write_stage(conn, batch)
        else:
            self._write_features(conn, direct[0], direct[1], batch)
        conn.info["stage_written"] = conn.info.get("stage_written", 0) + len(batch)

    def _write_features(self, conn: Connection, dataset_id: str, version: int, batch: StageBatch) -> None:
        raise NotImplementedError

    def flush_stage(self, conn: Connection) -> None:
        """Until every batch given to `stage` is written (SQLite writes on a thread of its own), before the
        connection runs anything else."""

    def end_stage(self, conn: Connection, failed: BaseException | None = None) -> None:
        """Finish the writes of `stage` (PostGIS: the open COPY) before the connection runs anything else;
        `failed`: the submission stops here, its writes are dropped (then the transaction is rolled back)."""

    def number_duplicate_keys(self, conn: Connection) -> None:
        """Make content-hash keys unique: the 2nd, 3rd … identical feature gets :2, :3 in file order.

        Done in the database so that a keyless province-sized layer needs no in-memory map;
        only duplicates are rewritten, counted on the (unchanging) content hash.
        """
        self._index_stage(conn)
        earlier = "FROM stage s2 WHERE s2.chash = stage.chash AND s2.ord"
        conn.exec_driver_sql(
            f"UPDATE stage SET fkey = fkey || ':' || CAST((SELECT count(*) {earlier} <= stage.ord) AS TEXT) "
            f"WHERE EXISTS (SELECT 1 {earlier} < stage.ord)"
        )

    def stage_problems(self, conn: Connection, dataset_id: str, limit: int = 1000) -> list[tuple[str, str]]:
        """Incremental operations that contradict the current version: (op, fkey) pairs."""
        self._index_stage(conn)
        current = f"SELECT 1 FROM features f WHERE f.dataset_id = :d AND {self._unindexed}f.v_to IS NULL AND f.fkey = s.fkey"
        rows = conn.execute(
            sa.text(
                f"SELECT s.op, s.fkey FROM stage s WHERE (s.op IN ('modify', 'delete') AND NOT EXISTS ({current})) "
                f"OR (s.op = 'add' AND EXISTS ({current})) ORDER BY s.ord LIMIT :lim"
            ),
            {"d": dataset_id, "lim": limit},
        )
        return [(r.op, r.fkey) for r in rows]

    def merge_stage(self, conn: Connection, dataset_id: str, version: int, mode: Literal["replace", "incremental"]) -> MergeCounts:
        """Turn the staged rows into version `version` on top of the current version.

        replace: the staged rows are the whole new version; incremental: they are upserts and
        deletes by key. Unchanged features (same key, same content hash) keep their row.
        """
        self.end_stage(conn)
        if conn.info.get("stage_direct") is not None:
            if conn.info["stage_direct"] != (dataset_id, version) or mode != "replace":
                raise ValueError("rows were written directly for another version or mode")
            conn.info["stage_direct"] = None
            if conn.info.pop("stage_indexed_direct", False):  # each batch's entries went in with it: none kept
                conn.info.pop("rtree_packed", None)  # (else held by the pooled connection until its next stage)
            else:
                self._after_insert(conn, dataset_id, version)
            return MergeCounts(added=conn.info["stage_written"], removed=0, changed=0)
        self.hold_dataset(conn, dataset_id)
        self._index_stage(conn)
        p = {"d": dataset_id, "n": version}
        cur = "features.dataset_id = :d AND features.v_to IS NULL"

        def keyed(ops: str) -> str:
            """The current rows with a key of the staged rows `ops`: without the key condition an edit's updates
            visited every current row — SQLite through the version index (1M-row dataset: 0.61 s an update of a
            one-feature edit, 0.3 ms with it), PostgreSQL by a sequential scan of the whole shared table (100k rows:
            46 ms; with it a nested loop over (dataset_id, fkey), a large stage still a hash join)."""
            return (
                f"features.dataset_id = :d AND {self._unindexed}features.v_to IS NULL "
                f"AND features.fkey IN (SELECT s.fkey FROM stage s WHERE {ops})"
            )

        changed = conn.execute(
            sa.text(
                f"UPDATE features SET v_to = :n WHERE {keyed(_STAGE_WRITES)} AND EXISTS (SELECT 1 FROM stage s "
                f"WHERE s.fkey = features.fkey AND {_STAGE_WRITES} AND s.chash <> features.chash)"
            ),
            p,
        ).rowcount
        if mode == "replace":
            gone = f"{cur} AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.fkey = features.fkey)"
        else:
            gone = f"{keyed(_STAGE_DELETES)} AND EXISTS (SELECT 1 FROM stage s WHERE s.fkey = features.fkey AND {_STAGE_DELETES})"
        removed = conn.execute(sa.text(f"UPDATE features SET v_to = :n WHERE {gone}"), p).rowcount
        inserted = conn.execute(
            sa.text(
                "INSERT INTO features (dataset_id, fkey, v_from, v_to, props, geom, minx, miny, maxx, maxy, area_m2, chash) "
                f"SELECT CAST(:d AS VARCHAR(64)), s.fkey, :n, NULL, {self._props_from_stage_sql()}, {self._geom_from_stage_sql()}, "
                "s.minx, s.miny, s.maxx, s.maxy, s.area_m2, s.chash FROM stage s "
                f"WHERE {_STAGE_WRITES} AND NOT EXISTS (SELECT 1 FROM features f WHERE f.dataset_id = :d "
                f"AND {self._unindexed}f.v_to IS NULL AND f.fkey = s.fkey) ORDER BY s.ord"
            ),
            p,
        ).rowcount
        self._after_insert(conn, dataset_id, version)
        return MergeCounts(added=inserted - changed, removed=removed, changed=changed)

    def _props_from_stage_sql(self) -> str:
        return "s.props"

    def restore_version(self, conn: Connection, dataset_id: str, source_version: int, new_version: int) -> MergeCounts:
        """Make `new_version` equal to `source_version` by closing and re-inserting rows (rollback)."""
        self.hold_dataset(conn, dataset_id)
        p = {"d": dataset_id, "n": new_version, "src": source_version}
        src_visible = visible_in("src", "g", self._unindexed)  # (looked up by key in each statement below)
        # current rows whose key is absent from the source version, or present with other content
        changed = conn.execute(
            sa.text(
                "UPDATE features SET v_to = :n WHERE features.dataset_id = :d AND features.v_to IS NULL "
                f"AND EXISTS (SELECT 1 FROM features g WHERE g.dataset_id = :d AND {src_visible} "
                "AND g.fkey = features.fkey AND g.chash <> features.chash)"
            ),
            p,
        ).rowcount
        removed = conn.execute(
            sa.text(
                "UPDATE features SET v_to = :n WHERE features.dataset_id = :d AND features.v_to IS NULL "
                f"AND NOT EXISTS (SELECT 1 FROM features g WHERE g.dataset_id = :d AND {src_visible} "
                "AND g.fkey = features.fkey)"
            ),
            p,
        ).rowcount
        inserted = conn.execute(
            sa.text(
                "INSERT INTO features (dataset_id, fkey, v_from, v_to, props, geom, minx, miny, maxx, maxy, area_m2, chash) "
                "SELECT g.dataset_id, g.fkey, :n, NULL, g.props, g.geom, g.minx, g.miny, g.maxx, g.maxy, g.area_m2, g.chash "
                f"FROM features g WHERE g.dataset_id = :d AND {visible_in('src', 'g')} AND NOT EXISTS (SELECT 1 FROM features f "
                f"WHERE f.dataset_id = :d AND {self._unindexed}f.v_to IS NULL AND f.fkey = g.fkey) ORDER BY g.id"
            ),
            p,
        ).rowcount
        self._after_insert(conn, dataset_id, new_version)
        return MergeCounts(added=inserted - changed, removed=removed, changed=changed)

    # -- the overlap rule's pairs ----------------------------------------------------------
    _placeholder = "?"  # the driver's parameter marker, for reads that skip SQLAlchemy's rows

    def _driver_cursor(self, conn: Connection, stream: bool) -> Any:
        return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def _driver_rows(
        self, conn: Connection, sql: str, params: tuple[Any, ...], block: int, stream: bool = False
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Rows of one read in blocks, as the driver's tuples: building SQLAlchemy rows cost more than the
        read for the overlap rule's hundreds of thousands of rows. `sql` marks parameters `{p}`; `stream`:
        a long read, fetched block by block from the server (PostgreSQL), not held whole by the client."""
        cur = self._driver_cursor(conn, stream)
        try:
            cur.execute(sql.format(p=self._placeholder), params)
            while rows := cur.fetchmany(block):
                yield rows
        finally:
            cur.close()

    def _candidate_blocks(self, conn: Connection, dataset_id: str, version: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Pairs of current rows whose envelopes meet, at least one of them new in `version`, as id arrays.

        The stored envelopes of the dataset's current rows (5 numbers a row: ~50 MB for a million) go
        into a shapely STRtree, queried with the new rows' envelopes in one vectorised call. A join in
        SQL did the same pair by pair: on SQLite through the R*Tree's virtual-table interface (~10x the
        CPU), on PostGIS after an ANALYZE of the whole table (rows merged in this transaction have no
        statistics: without it the planner joined every pair, 8 minutes for 100,000 parcels).
        """
        sql = (
            "SELECT f.id, CASE WHEN f.v_from = {p} THEN 1 ELSE 0 END AS new, f.minx, f.miny, f.maxx, f.maxy "
            "FROM features f WHERE f.dataset_id = {p} AND f.v_to IS NULL AND f.minx IS NOT NULL ORDER BY f.id"
        )
        blocks = self._driver_rows(conn, sql, (version, dataset_id), 50_000, stream=True)
        parts = [np.array(rows, dtype=np.float64) for rows in blocks]
        if not parts:
            return
        table = np.concatenate(parts)
        ids, new = table[:, 0].astype(np.int64), table[:, 1] == 1
        tree = shapely.STRtree(shapely.box(table[:, 2], table[:, 3], table[:, 4], table[:, 5]))
        del table
        new_pos = np.flatnonzero(new)
        for start in range(0, len(new_pos), 50_000):
            q = new_pos[start : start + 50_000]
            qi, ti = tree.query(tree.geometries.take(q))
            a, b = ids[q[qi]], ids[ti]
            keep = (a != b) & (~new[ti] | (b > a))
            yield a[keep], b[keep]

    def overlapping_pairs(self, conn: Connection, dataset_id: str, version: int, chunk: int = 20_000) -> Iterator[OverlapChunk]:
        """Current polygons whose interiors meet (DE-9IM T********), one of them new in `version`, with
        their intersections, in chunks of candidate pairs (in the candidates' order). Decided here by
        shapely, not by PostGIS's ST_Relate: the bundled GEOS (3.14, RelateNG) decides a pair several
        times faster than the server's (3.11 here took ~7 s more for 100,000 parcels than reading the
        geometries and deciding here). GEOS runs on every core (`geo.parallel`); the rows of one chunk
        stay parsed for the next, which shares most of them (neighbours of neighbours).
        """
        held_ids = np.empty(0, dtype=np.int64)
        held_keys = held_geoms = np.empty(0, dtype=object)
        payoff = Payoff()  # hulls settle a tessellation's neighbours before relate (`geo.separation`)
        for pairs in _rechunk(self._candidate_blocks(conn, dataset_id, version), chunk):
            # a parcel of a tessellation is in ~6 candidate pairs: read and parse it once
            ids = np.unique(pairs)
            keys, geoms = np.empty(len(ids), dtype=object), np.empty(len(ids), dtype=object)
            held = np.isin(ids, held_ids, assume_unique=True)
            if held.any():
                pos = np.searchsorted(held_ids, ids[held])
                keys[held], geoms[held] = held_keys[pos], held_geoms[pos]
            if not held.all():
                rows = self.fetch_geometries(conn, ids[~held].tolist())
                missing = ids[~held].tolist()
                keys[~held] = [rows[i][0] for i in missing]
                geoms[~held] = in_parts(lambda w: shapely.from_wkb(w, on_invalid="ignore"), np.array([rows[i][1] for i in missing], dtype=object))
            held_ids, held_keys, held_geoms = ids, keys, geoms
            ia, ib = np.searchsorted(ids, pairs[:, 0]), np.searchsorted(ids, pairs[:, 1])
            hit, inter = interiors_meeting(geoms[ia], geoms[ib], apart=payoff.settle(geoms, ia, ib))
            if len(hit):
                yield OverlapChunk(keys[ia[hit]].tolist(), keys[ib[hit]].tolist(), inter)

    # ids bound per statement when reading rows by id
    _max_ids_per_statement = 50_000

    def _ids_condition(self) -> str:
        """`f.id` among the ids bound as one parameter `{p}` (`_ids_param`), not one parameter per id:
        compiling 20,000 expanded parameters cost more than the query."""
        raise NotImplementedError

    def _ids_param(self, ids: list[int]) -> Any:
        return ids

    def fetch_geometries(self, conn: Connection, ids: Iterable[int]) -> dict[int, tuple[str, bytes | None]]:
        """Row id → (fkey, WKB) for a set of row ids."""
        id_list = list(ids)
        out: dict[int, tuple[str, bytes | None]] = {}
        step = self._max_ids_per_statement
        sql = f"SELECT f.id, f.fkey, {self.geom_read_sql} AS wkb FROM features f WHERE {self._ids_condition()}"
        for i in range(0, len(id_list), step):
            for rows in self._driver_rows(conn, sql, (self._ids_param(id_list[i : i + step]),), step):
                for rid, fkey, wkb in rows:
                    out[rid] = (fkey, wkb if wkb is None or isinstance(wkb, bytes) else bytes(wkb))
        return out

    def _keys_read_sql(self) -> str:
        """The read of `geometries_of_keys`: the version's current rows by key, through the (dataset_id, fkey) index."""
        u = self._unindexed
        return (
            f"SELECT f.fkey, {self.geom_read_sql} AS wkb FROM features f WHERE f.dataset_id = {{p}} AND {u}f.v_from = {{p}} "
            f"AND {u}f.v_to IS NULL AND {self._keys_condition()}"
        )

    def _keys_condition(self) -> str:
        """`f.fkey` among the keys bound as one parameter `{p}` (`_keys_param`)."""
        raise NotImplementedError

    def _keys_param(self, keys: list[str]) -> Any:
        return keys

    def geometries_of_keys(self, conn: Connection, dataset_id: str, version: int, keys: Sequence[str]) -> list[tuple[str, bytes | None]]:
        """(fkey, WKB) of the current rows written by `version` with these keys (for the streamed overlap
        rule's pairs of features far apart in the file: their rows are read back instead of held)."""
        out: list[tuple[str, bytes | None]] = []
        step = self._max_ids_per_statement
        sql = self._keys_read_sql()
        key_list = list(keys)
        for i in range(0, len(key_list), step):
            params = (dataset_id, version, self._keys_param(key_list[i : i + step]))
            for rows in self._driver_rows(conn, sql, params, step):
                out += [(fkey, wkb if wkb is None or isinstance(wkb, bytes) else bytes(wkb)) for fkey, wkb in rows]
        return out

    # -- comparing versions --------------------------------------------------------------
    def _diff_sql(self, kind: DiffKind) -> str:
        # the outer rows by their version's index, the other version's rows looked up by key (`_unindexed`)
        a_vis, b_vis = visible_in("va", "a"), visible_in("vb", "b")
        a_key, b_key = visible_in("va", "a", self._unindexed), visible_in("vb", "b", self._unindexed)
        if kind == "added":
            return (
                f"SELECT b.id AS bid, CAST(NULL AS BIGINT) AS aid, b.fkey FROM features b WHERE b.dataset_id = :d AND {b_vis} "
                f"AND NOT EXISTS (SELECT 1 FROM features a WHERE a.dataset_id = :d AND a.fkey = b.fkey AND {a_key})"
            )
        if kind == "removed":
            return (
                f"SELECT CAST(NULL AS BIGINT) AS bid, a.id AS aid, a.fkey FROM features a WHERE a.dataset_id = :d AND {a_vis} "
                f"AND NOT EXISTS (SELECT 1 FROM features b WHERE b.dataset_id = :d AND b.fkey = a.fkey AND {b_key})"
            )
        return (
            f"SELECT b.id AS bid, a.id AS aid, a.fkey FROM features a JOIN features b ON b.dataset_id = :d "
            f"AND b.fkey = a.fkey AND {b_key} WHERE a.dataset_id = :d AND {a_vis} AND a.chash <> b.chash"
        )

    def diff_counts(self, dataset_id: str, a: int, b: int) -> dict[DiffKind, int]:
        p = {"d": dataset_id, "va": a, "vb": b}
        with self.engine.connect() as c:
            return {
                kind: int(c.execute(sa.text(f"SELECT count(*) FROM ({self._diff_sql(kind)}) q"), p).scalar_one())
                for kind in ("added", "removed", "changed")
            }

    def iter_diff(
        self, dataset_id: str, a: int, b: int, kinds: Sequence[DiffKind] = ("added", "removed", "changed"), limit: int | None = None, offset: int = 0
    ) -> Iterator[DiffEntry]:
        """Stream the differences between versions a and b, ordered by kind then key."""
        union = " UNION ALL ".join(f"SELECT '{k}' AS kind, q.* FROM ({self._diff_sql(k)}) q" for k in kinds)
        sql = f"SELECT * FROM ({union}) u ORDER BY u.kind, u.fkey"
        p: dict[str, Any] = {"d": dataset_id, "va": a, "vb": b}
        if limit is not None:
            sql += " LIMIT :limit OFFSET :offset"
            p.update(limit=limit, offset=offset)
        with self.engine.connect() as c:
            for part in c.execute(sa.text(sql).execution_options(yield_per=2000), p).partitions(2000):
                ids = [x for r in part for x in (r.aid, r.bid) if x is not None]
                rows = self._fetch_rows(c, ids)
                for r in part:
                    yield DiffEntry(r.kind, r.fkey, rows.get(r.aid), rows.get(r.bid))

    def _fetch_rows(self, conn: Connection, ids: list[int]) -> dict[int, StoredFeature]:
        out: dict[int, StoredFeature] = {}
        for i in range(0, len(ids), 900):
            stmt = sa.text(
                f"SELECT {_FEATURE_COLUMNS.format(geom=self.geom_read_sql)} FROM features f WHERE f.id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True))
            for row in conn.execute(stmt, {"ids": ids[i : i + 900]}):
                out[row.id] = self._row_to_feature(row)
        return out


class SQLiteFeatureStore(FeatureStore):
    """Embedded store: WKB in a BLOB, envelopes in an R*Tree virtual table."""

    kind: BackendKind = "sqlite"
    # SQLite has no planner statistics (no ANALYZE is run): for a lookup by key it took the (dataset_id, v_from) or
    # (dataset_id, v_to) index and visited every row of the version instead of the one with the key — 1M-row dataset:
    # one feature by id 340 ms (0.1 ms by key), 118 ms per staged row of a replacement or an edit, 0.55 s per 30,000
    # far-pair keys (0.12 s). Unary "+" keeps the version terms of such lookups off the indexes.
    _unindexed = "+"

    def _bbox_condition(self, bbox_params: str = "b") -> str:
        return (
            f"f.id IN (SELECT r.id FROM {_RTREE} r WHERE r.minx <= :bmaxx AND r.maxx >= :bminx "
            "AND r.miny <= :bmaxy AND r.maxy >= :bminy)"
        )

    def _box_join(self) -> tuple[str, str]:
        # CROSS JOIN fixes the order (R*Tree first, then rows by id): left alone, the planner walks
        # the dataset's whole index and tests each row against the R*Tree list
        return (
            f"{_RTREE} r CROSS JOIN features f",
            "r.minx <= :bmaxx AND r.maxx >= :bminx AND r.miny <= :bmaxy AND r.maxy >= :bminy AND f.id = r.id",
        )

    def _json_path(self, field_name: str) -> str:
        return '$."' + field_name.replace('"', "") + '"'

    def _tile_copy_sql(self) -> str:
        return f"CASE WHEN length(f.geom) >= {MIN_WKB_BYTES} THEN {super()._tile_copy_sql()} END"

    def _values_sql(self, paths: Sequence[str], params: dict[str, Any]) -> str:
        # json_extract of two or more paths is the JSON array of their values, each as stored (true stays true;
        # one path would give an SQL value: true as 1, an array as text); one path's value as JSON (->) in brackets.
        # Twelve paths by -> instead were 2x the statement's time (each parses the properties again)
        names = []
        for i, path in enumerate(paths):
            params[f"tv{i}"] = path
            names.append(f":tv{i}")
        if len(names) == 1:
            return "('[' || COALESCE(f.props -> :tv0, 'null') || ']')"
        return f"json_extract(f.props, {', '.join(names)})"

    def _json_text_sql(self, field_param: str) -> str:
        return f"json_extract(f.props, :{field_param})"

    def _prop_expr(self, key: str, ftype: str) -> str:
        if ftype in ("integer", "real", "number"):
            return f"CAST(json_extract(f.props, :{key}) AS REAL)"
        if ftype == "boolean":
            return f"json_extract(f.props, :{key})"
        return f"CAST(json_extract(f.props, :{key}) AS TEXT)"

    def _area_condition(self, i: int, area: shapely.Geometry, params: dict[str, Any]) -> str:
        minx, miny, maxx, maxy = area.bounds
        params.update({f"a{i}x0": minx, f"a{i}y0": miny, f"a{i}x1": maxx, f"a{i}y1": maxy})
        return (
            f"f.id IN (SELECT r.id FROM {_RTREE} r WHERE r.minx <= :a{i}x1 AND r.maxx >= :a{i}x0 "
            f"AND r.miny <= :a{i}y1 AND r.maxy >= :a{i}y0)"
        )

    def _batches(
        self, c: Connection, sql: str, params: dict[str, Any], page: bool, batch_size: int, wanted: int | None
    ) -> Iterator[Sequence[Any]]:
        """A page's rows in one step (`_rows_at_once`); a page tested here its first batch so, the rare rest (a dense box,
        a deep offset) streamed by one more statement; any other read streamed, as on PostgreSQL."""
        if page:
            yield self._rows_at_once(c, sql, params)
            return
        if wanted is None:
            yield from super()._batches(c, sql, params, page, batch_size, wanted)
            return
        size = _first_batch(wanted, batch_size)
        first = self._rows_at_once(c, f"{sql} LIMIT {size}", params)
        yield first
        if len(first) < size:
            return
        rest = c.execute(sa.text(f"{sql} LIMIT -1 OFFSET {size}"), params)
        yield from _doubling(rest, min(batch_size, size * 2), batch_size)

    @staticmethod
    def _rows_at_once(c: Connection, sql: str, params: dict[str, Any]) -> Sequence[Any]:
        """The rows of a bounded statement (the feature columns), fetched in one step (`_PAGE_AT_ONCE`).

        The sqlite3 module lets the GIL go around every step, one per row: with 16 clients a bbox page's 141 steps each
        handed the GIL to another thread and waited to get it back (~450 context switches and 3 ms of system time a
        request; the server's throughput at 16 clients fell below its throughput at one, profiles/items-sqlite-16.txt).
        The aggregates see the rows of the LIMITed subquery in its order, all three alike."""
        meta, props, blob = c.execute(sa.text(_PAGE_AT_ONCE.format(sql=sql)), params).one()
        rows = json.loads(meta)
        texts = props.split("\x1e") if props is not None else []
        if len(texts) != len(rows):  # a stored text with a raw record separator (not written by landcloud): row by row
            return c.execute(sa.text(sql), params).all()
        wkbs = sqlite_rows.split_joined(blob, [r[5] for r in rows])
        return [
            _PageRow(rid, fkey, text, wkb, v_from, v_to, None if area is None else float(area))
            for (rid, fkey, v_from, v_to, area, _), text, wkb in zip(rows, texts, wkbs)
        ]

    def _post_filter(self, bbox: BBox | None, rows: RowFilter | None) -> PostFilter | None:
        areas = rows.area_geometries() if rows is not None else []
        if bbox is None and not areas:
            return None
        box = shapely.box(*bbox) if bbox is not None else None
        area = shapely.union_all(areas) if areas else None
        if area is not None:
            shapely.prepare(area)

        def exact(feats: list[StoredFeature]) -> list[bool]:
            geoms = shapely.from_wkb([f.wkb for f in feats], on_invalid="ignore")
            keep = np.ones(len(feats), dtype=bool)
            if box is not None:
                keep &= shapely.intersects(geoms, box)
            if area is not None and rows is not None:
                by_code = np.array([rows.matches_props(f.props) for f in feats], dtype=bool)
                keep &= by_code | shapely.intersects(area, geoms)
            return keep.tolist()

        return exact

    def _create_stage(self, conn: Connection) -> None:
        conn.exec_driver_sql("DROP TABLE IF EXISTS temp.stage")
        conn.exec_driver_sql(
            "CREATE TEMP TABLE stage (ord INTEGER PRIMARY KEY, fkey TEXT NOT NULL, props TEXT NOT NULL, geom BLOB, "
            "minx REAL, miny REAL, maxx REAL, maxy REAL, area_m2 REAL, chash TEXT NOT NULL, op TEXT NOT NULL)"
        )

    def _stage_index_sql(self) -> list[str]:
        return ["CREATE INDEX temp.ix_stage_fkey ON stage (fkey)", "CREATE INDEX temp.ix_stage_chash ON stage (chash)"]

    def _write_stage(self, conn: Connection, batch: StageBatch) -> None:
        self._in_order(conn, self._insert_stage, conn, batch)

    def _in_order(self, conn: Connection, write: Callable[..., None], *args: Any) -> None:
        """`write(*args)` now, or on the stage's writer thread when it writes in the background (`begin_stage`)."""
        if not conn.info.get("stage_background"):
            write(*args)
            return
        writer = conn.info.get("stage_writer")
        if writer is None:
            writer = conn.info["stage_writer"] = StageWriter()
        writer.submit(write, *args)

    def flush_stage(self, conn: Connection) -> None:
        writer = conn.info.get("stage_writer")
        if writer is not None:
            writer.wait()

    def _insert_stage(self, conn: Connection, batch: StageBatch) -> None:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        ops = Same("upsert") if batch.ops is None else Texts(batch.ops)
        insert_columns(cur, "INSERT INTO stage (fkey, props, geom, minx, miny, maxx, maxy, area_m2, chash, op)", [*_sqlite_columns(batch), ops])
        cur.close()

    def _geom_from_stage_sql(self) -> str:
        return "s.geom"

    def _write_features(self, conn: Connection, dataset_id: str, version: int, batch: StageBatch) -> None:
        self._in_order(conn, self._insert_features, conn, dataset_id, version, batch)

    def _insert_features(self, conn: Connection, dataset_id: str, version: int, batch: StageBatch) -> None:
        # The batch's R*Tree entries go in right after its rows, not in one statement after the last batch:
        # the same inserts (SQLite's R*Tree has no bulk load), but run while the read-ahead and overlap
        # threads work (sqlite3 releases the GIL in each step) instead of alone after the stream (10 s of
        # a 1M-parcel submission). The write lock is held since BEGIN IMMEDIATE: every id above the
        # batch's first is one of its rows.
        # Unless the source has enough rows to pack the tree anew after the last batch (`rtree_bulk.pays`): then
        # `merge_stage` does that (`_after_insert`), and no batch inserts.
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if "rtree_packed" not in conn.info:
            expected = conn.info.get("stage_expected")
            conn.info["rtree_packed"] = expected is not None and rtree_bulk.pays(rtree_bulk.size(cur, _RTREE), expected)
        last = cur.execute("SELECT coalesce(max(id), 0) FROM features").fetchone()[0]
        insert_columns(
            cur, "INSERT INTO features (dataset_id, v_from, fkey, props, geom, minx, miny, maxx, maxy, area_m2, chash)",
            [Same(dataset_id), Same(version), *_sqlite_columns(batch)],
        )
        if conn.info["rtree_packed"]:  # the batch's entries kept for the packing (reading them back cost ~1.7 s a million)
            has_box = np.flatnonzero(~np.isnan(batch.bounds[:, 0]))
            conn.info.setdefault("rtree_new", []).append((has_box + (last + 1), batch.bounds[has_box][:, [0, 2, 1, 3]]))
        else:
            cur.execute(
                f"INSERT INTO {_RTREE} (id, minx, maxx, miny, maxy) SELECT id, minx, maxx, miny, maxy "
                "FROM features WHERE id > ? AND minx IS NOT NULL",
                (last,),
            )
            conn.info["stage_indexed_direct"] = True
        cur.close()

    def end_stage(self, conn: Connection, failed: BaseException | None = None) -> None:
        writer = conn.info.pop("stage_writer", None)
        if writer is not None:
            if failed is None:
                writer.finish()  # a write's error raised here: the caller's failure path ends the stage again, with it
            else:
                writer.abandon()
        if failed is not None:  # the entries kept for a packing go with the rows (not held by a pooled connection)
            conn.info.pop("rtree_new", None)
            conn.info.pop("rtree_packed", None)

    def _ids_condition(self) -> str:
        return "f.id IN (SELECT value FROM json_each({p}))"

    def _ids_param(self, ids: list[int]) -> Any:
        return json.dumps(ids)

    def _keys_condition(self) -> str:
        return "f.fkey IN (SELECT value FROM json_each({p}))"

    def _keys_param(self, keys: list[str]) -> Any:
        return json.dumps(keys, ensure_ascii=False)

    def _after_insert(self, conn: Connection, dataset_id: str, version: int) -> None:
        """The R*Tree entries of the rows version `version` wrote: inserted, or the whole tree packed anew with
        them when they are many against its size (`rtree_bulk`)."""
        conn.info.pop("rtree_packed", None)
        kept = conn.info.pop("rtree_new", None)  # a direct write's entries (`_write_features`)
        where = "FROM features WHERE dataset_id = ? AND v_from = ? AND minx IS NOT NULL"
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            existing = rtree_bulk.size(cur, _RTREE)
            if kept is not None:
                ids, boxes = np.concatenate([k[0] for k in kept]), np.concatenate([k[1] for k in kept])
                del kept
                if rtree_bulk.pays(existing, len(ids)):
                    rtree_bulk.rebuild(cur, _RTREE, ids, boxes)
                else:  # (fewer rows than the source said)
                    sqlite_rows.insert_rows(cur, f"INSERT INTO {_RTREE} (id, minx, maxx, miny, maxy)", 5, list(zip(ids.tolist(), *boxes.T.tolist())))
                return
            new = int(cur.execute(f"SELECT count(*) {where}", (dataset_id, version)).fetchone()[0])
            if not rtree_bulk.pays(existing, new):
                cur.execute(f"INSERT INTO {_RTREE} (id, minx, maxx, miny, maxy) SELECT id, minx, maxx, miny, maxy {where}", (dataset_id, version))
                return
            cur.execute(f"SELECT id, minx, maxx, miny, maxy {where} ORDER BY id", (dataset_id, version))
            parts = [np.array(rows, dtype=np.float64) for rows in iter(lambda: cur.fetchmany(100_000), [])]
            table = np.concatenate(parts) if parts else np.empty((0, 5))
            del parts
            rtree_bulk.rebuild(cur, _RTREE, table[:, 0].astype(np.int64), table[:, 1:])
        finally:
            cur.close()


def _sqlite_columns(batch: StageBatch) -> list[Texts | Blobs | Reals]:
    """fkey, props, geom, minx, miny, maxx, maxy, area_m2, chash: a batch's columns as SQLite's store writes them."""
    return [Texts(batch.fkeys), Texts(batch.props), Blobs(batch.wkbs), *(Reals(batch.bounds[:, k]) for k in range(4)),
            Reals(batch.areas), Texts(batch.chashes)]


_STAGE_COPY_TYPES = ["text", "bytea", "bytea", "float8", "float8", "float8", "float8", "float8", "text", "text"]
_JSONB_V1 = b"\x01"  # jsonb's binary wire format: version 1, then the JSON text
_FEATURES_COPY_TYPES = ["text", "text", "int4", "bytea", "bytea", "float8", "float8", "float8", "float8", "float8", "text"]
_SRID_FLAG = 0x20000000  # EWKB: an SRID follows the type
_SRID_4490 = {1: (4490).to_bytes(4, "little"), 0: (4490).to_bytes(4, "big")}


def _ewkb_4490(wkb: bytes | None) -> bytes | None:
    """WKB → EWKB with SRID 4490 (the outer header gets the flag and the SRID; parts stay as they are)."""
    if wkb is None:
        return None
    order = "little" if wkb[0] == 1 else "big"
    kind = int.from_bytes(wkb[1:5], order) | _SRID_FLAG  # type: ignore[arg-type]
    return wkb[:1] + kind.to_bytes(4, order) + _SRID_4490[wkb[0]] + wkb[5:]  # type: ignore[arg-type]


# the first column of PostGIS's spatial index (migration 0010), equal to the dataset's (:d) own
DATASET_HASH_SQL = "hashtextextended(f.dataset_id, 0) = hashtextextended(CAST(:d AS text), 0)"


class PostGISFeatureStore(FeatureStore):
    """Production store: geometry(Geometry, 4490) with a GiST index; bulk loads through COPY."""

    kind: BackendKind = "postgis"
    geom_read_sql = "ST_AsBinary(f.geom)"
    _copy_read_sql = "ST_AsBinary(g.geom)"
    props_text_sql = "CAST(f.props AS text)"
    # ryu's shortest text of each double (up to 20 decimals: every coordinate reads back the same)
    geojson_sql = "ST_AsGeoJSON(f.geom, 20, 0)"

    def _bbox_condition(self, bbox_params: str = "b") -> str:
        return "ST_Intersects(f.geom, ST_MakeEnvelope(:bminx, :bminy, :bmaxx, :bmaxy, 4490))"

    def conditions(
        self, dataset_id: str, version: int, bbox: BBox | None, rows: RowFilter | None, where: SQLFilter | None
    ) -> tuple[list[str], dict[str, Any]]:
        """The base conditions and the dataset's hash as its spatial index has it (migration 0010): without it the
        planner could not take that index for a box (only `dataset_id = :d` would be left to it)."""
        clauses, params = super().conditions(dataset_id, version, bbox, rows, where)
        clauses.insert(1, DATASET_HASH_SQL)
        return clauses, params

    def _decode_props(self, value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else super()._decode_props(value)

    def _json_text_sql(self, field_param: str) -> str:
        return f"(f.props ->> CAST(:{field_param} AS TEXT))"

    def _values_sql(self, paths: Sequence[str], params: dict[str, Any]) -> str:
        names = []
        for i, path in enumerate(paths):
            params[f"tv{i}"] = path
            names.append(f"f.props -> CAST(:tv{i} AS text)")
        return f"jsonb_build_array({', '.join(names)})"

    def _prop_expr(self, key: str, ftype: str) -> str:
        text = f"(f.props ->> CAST(:{key} AS TEXT))"
        if ftype in ("integer", "real", "number"):
            # numbers stored as JSON numbers or as numeric text; anything else is NULL, never an error
            return f"(CASE WHEN {text} ~ '^\\s*[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?\\s*$' THEN CAST({text} AS double precision) END)"
        if ftype == "boolean":
            return f"(CASE WHEN {text} IN ('true', 'false') THEN CAST({text} AS boolean) END)"
        return text

    def _area_condition(self, i: int, area: shapely.Geometry, params: dict[str, Any]) -> str:
        params[f"a{i}"] = shapely.to_wkb(area)
        return f"ST_Intersects(f.geom, ST_GeomFromWKB(:a{i}, 4490))"

    def _create_stage(self, conn: Connection) -> None:
        conn.exec_driver_sql("DROP TABLE IF EXISTS pg_temp.stage")
        conn.exec_driver_sql(
            "CREATE TEMP TABLE stage (ord bigserial PRIMARY KEY, fkey text NOT NULL, props jsonb NOT NULL, geom bytea, "
            "minx float8, miny float8, maxx float8, maxy float8, area_m2 float8, chash text NOT NULL, op text NOT NULL) "
            "ON COMMIT DROP"
        )

    def _stage_index_sql(self) -> list[str]:
        # a temporary table is never auto-analysed: without statistics the merge plans for a few rows
        return ["CREATE INDEX ON stage (fkey)", "CREATE INDEX ON stage (chash)", "ANALYZE stage"]

    def _write_stage(self, conn: Connection, batch: StageBatch) -> None:
        # Binary COPY: WKB goes as bytes (text COPY escapes every byte of it) and numbers unformatted;
        # the JSON goes as text (jsonb's binary format is a version byte and the same text)
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cur.copy(
            "COPY stage (fkey, props, geom, minx, miny, maxx, maxy, area_m2, chash, op) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_STAGE_COPY_TYPES)
            write = copy.write_row
            for fkey, props, wkb, box, area, chash, op in zip(
                batch.fkeys, batch.props, batch.wkbs, batch.boxes(), batch.area_values(), batch.chashes, batch.op_values(), strict=True
            ):
                write((fkey, _JSONB_V1 + props, wkb, *(box or _NO_BOX), area, chash, op))
        cur.close()

    def _geom_from_stage_sql(self) -> str:
        return "ST_GeomFromWKB(s.geom, 4490)"

    def _write_features(self, conn: Connection, dataset_id: str, version: int, batch: StageBatch) -> None:
        # One binary COPY into the table itself for the whole stream, open until `end_stage`: the server
        # inserts (and updates the shared indexes) while this process reads and checks the next batches,
        # and a psycopg thread does the sending. The server parses each geometry as EWKB (geometry_recv),
        # so the WKB gets the SRID the column requires, as ST_GeomFromWKB(wkb, 4490) gives it in the merge.
        copy = conn.info.get("stage_copy")
        if copy is None:
            from psycopg.copy import QueuedLibpqWriter

            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            opened = cur.copy(
                "COPY features (dataset_id, fkey, v_from, props, geom, minx, miny, maxx, maxy, area_m2, chash) "
                "FROM STDIN WITH (FORMAT BINARY)",
                writer=QueuedLibpqWriter(cur),
            )
            copy = conn.info["stage_copy"] = (cur, opened, opened.__enter__())
            copy[2].set_types(_FEATURES_COPY_TYPES)
        write = copy[2].write_row
        for fkey, props, wkb, box, area, chash in zip(
            batch.fkeys, batch.props, batch.wkbs, batch.boxes(), batch.area_values(), batch.chashes, strict=True
        ):
            write((dataset_id, fkey, version, _JSONB_V1 + props, _ewkb_4490(wkb), *(box or _NO_BOX), area, chash))

    def end_stage(self, conn: Connection, failed: BaseException | None = None) -> None:
        copy = conn.info.pop("stage_copy", None)
        if copy is not None:
            cur, opened, _ = copy
            try:
                if failed is None:
                    opened.__exit__(None, None, None)
                else:  # abort the COPY (the server discards it) so that the rollback can follow
                    with contextlib.suppress(Exception):
                        opened.__exit__(type(failed), failed, failed.__traceback__)
            finally:
                cur.close()

    # the columns a page's plan is chosen on: which dataset and version, and the bounding box
    _STATISTICS_SQL = "ANALYZE features (dataset_id, v_from, v_to, geom)"

    def refresh_statistics(self, written: int) -> None:
        # A version's rows go in by COPY and a merge in one transaction, and autovacuum analyses the table
        # only on its next round (a minute or more later). Until then the planner has no statistics for
        # the new rows (or none at all: reltuples -1) and takes `dataset_id = … AND v_from <= …` for a few
        # rows: a bbox page then ANDs the GiST bitmap with a scan of the dataset's whole version index —
        # 100,000 entries, ~3 ms of the backend's CPU per page, 4.3-4.8 instead of 1.4-1.5 ms per request.
        # So a large write (never analysed, >= 10% of the table, or >= 10,000 rows) is analysed at once, on
        # the four columns the plan depends on (~0.13 s for 100,000 parcels; a sample of 30,000 rows at any
        # size); the full ANALYZE (props included) is still autovacuum's, which this one does not reset.
        # After the commit, in autocommit: no lock held in the writer's transaction; a failure here
        # loses nothing but the early statistics.
        if written <= 0:
            return
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                tuples = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST('features' AS regclass)")).scalar()
                if tuples is None or tuples < 0 or written >= max(0.1 * tuples, 1) or written >= 10_000:
                    conn.exec_driver_sql(self._STATISTICS_SQL)
        except sa.exc.SQLAlchemyError:
            _log.warning("ANALYZE of the features table after a write of %d rows failed", written, exc_info=True)

    # the lock the foreign key's check took (migration 0013): a concurrent DELETE or change of the id waits
    _hold_sql = "SELECT 1 FROM datasets WHERE id = :d FOR KEY SHARE"

    def _ids_condition(self) -> str:
        return "f.id = ANY(CAST({p} AS bigint[]))"

    def _keys_condition(self) -> str:
        return "f.fkey = ANY(CAST({p} AS text[]))"

    _placeholder = "%s"

    def _driver_cursor(self, conn: Connection, stream: bool) -> Any:
        driver = conn.connection.driver_connection  # type: ignore[union-attr]
        return driver.cursor(name="landcloud_rows") if stream else driver.cursor()


def _rechunk(blocks: Iterable[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[np.ndarray]:
    """(a, b) id arrays of any lengths → (size, 2) pair arrays in the same order (the last one shorter)."""
    held: list[np.ndarray] = []
    count = 0
    for a, b in blocks:
        held.append(np.column_stack((a, b)))
        count += len(a)
        if count >= size:
            pairs = np.concatenate(held)
            for start in range(0, len(pairs) - size + 1, size):
                yield pairs[start : start + size]
            rest = pairs[len(pairs) - len(pairs) % size :]
            held, count = [rest], len(rest)
    if count:
        yield np.concatenate(held)


def feature_store_for(engine: Engine) -> FeatureStore:
    return SQLiteFeatureStore(engine) if backend_of(engine) == "sqlite" else PostGISFeatureStore(engine)
