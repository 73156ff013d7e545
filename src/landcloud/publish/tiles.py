"""Vector tiles (Mapbox Vector Tile 2.1) of a dataset version, through the gate.

One tile = one layer named after the dataset, holding the rows the caller may read with the
attributes it may see in clear. Two ways to make the same tile:

* PostGIS: one `ST_AsMVT` query whose row restriction is `FeatureStore.conditions()` — the
  very clauses the gate's reads use — with the attributes picked in SQL;
* Python (SQLite, and the reference): features read through `gate.read_features`, clipped,
  projected, simplified and snapped with shapely, encoded by `geo.mvt` (the bytes mapbox-vector-tile writes).

Both decide membership the same way, so a tile holds the same features either way: a feature
is in tile (z, x, y) when it intersects the tile (exactly, in EPSG:4490) and its stored
envelope is at least one pixel (1/256 of the tile) wide or high — points always count. Its
geometry is clipped to the tile plus a 64/4096 buffer, simplified with a tolerance of half a
pixel (topology-preserving, so polygons stay valid; the stored copies zooms 8-14 read: Douglas-Peucker where that
stays valid, `geo.tilegen.simplified`; only shapes with more points than
SIMPLIFY_ABOVE_POINTS and than pixels in their envelope's half perimeter) and snapped to the 4096 grid; a feature
that collapses in the snapping is drawn as its (clipped) envelope grown by a pixel, never
silently dropped. Tiles are y-down (row 0 and MVT y = 0 at the north edge) for both tile
matrix sets.

Attributes: `ds.extra["tiles"] = {"attributes": [...], "minzoom": n, "maxzoom": n,
"detail_zoom": n}` configures a dataset; by default zooms from 12 up carry every field the
caller sees in clear and each feature's key, lower zooms only the land-use class (DLBM, the
field the map colours by; see LOW_ZOOM_FIELDS): a class map, whose features carry no identity
(see `identified`). A field the caller would see masked (or not at all) for any row is left
out of the tile, never masked in it. From the detail zoom the MVT feature id is the stored key
when it is a plain non-negative integer, otherwise the key is the property `_key` (so the key
field is not repeated).

Every tile read of non-public data is audited (action "data.tiles", with z/x/y), also when it
is served from the cache. The cache key holds the dataset, version (number and creation time), an
access signature (row restriction, attribute list, masked fields) and the tile address, so a
county's tile is never served to the province and a new version never serves an old tile.

GCJ-02 tiles (`gcj02=True`, for overlay on GCJ-02 basemaps; only editions that offer GCJ-02):
the tile grid is laid over GCJ-02 lon/lat, the tile's box is mapped back to CGCS2000 with a
margin (the offset is up to ~700 m) to read the rows, and the geometries are shifted before
the tile's own membership test, clipping and encoding. Always made the Python way.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import queue
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import psycopg
import shapely
import sqlalchemy as sa
from shapely.errors import GEOSException
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from landcloud.access import audit, gate
from landcloud.access.policy import Access
from landcloud.access.principal import Principal
from landcloud.catalog import datasets as catalog
from landcloud.codes.landuse import CLASS_FIELDS
from landcloud.geo.gcj02 import geometry_wgs84_to_gcj02
from landcloud.geo.mvt import LayerEncoder, type_table
from landcloud.geo.tilegen import SIMPLIFY_ABOVE_POINTS, SIMPLIFY_CELLS, level_for
from landcloud.geo.tiles import TILE_SIZE, BBox, TileMatrixSet, get_tms
from landcloud.messages import NotFound
from landcloud.publish import tile_occupancy, tile_types, version_learning
from landcloud.publish.ogc_crs import gcj02_bbox_to_storage
from landcloud.store import tilegeoms
from landcloud.store.db import read_connection
from landcloud.store.features import SQLFilter, StoredFeature, feature_store_for

_log = logging.getLogger(__name__)

EXTENT = 4096
BUFFER = 64
# SIMPLIFY_CELLS (geo/tilegen.py): simplification tolerance, in pixels (1/256 of a tile) of the zoom.
# SIMPLIFY_ABOVE_POINTS (geo/tilegen.py): shapes of at most this many points (most parcels and buildings) are not simplified, only snapped: the
# topology-preserving simplifier cost a GEOS round trip each (40% of a full tile's PostGIS statement) and changed
# few of them (full z8–z10 DLTB tiles 2% larger). Douglas-Peucker instead was cheaper still but, made valid again,
# lost narrow shapes (a thin landuse strip 49 units off): profiles/tiles-full.txt.
# ... and only shapes with more points than their stored envelope's width + height in pixels of the zoom (points
# closer than ~2 pixels on average: the detail a boundary has at low zooms). ST_AsMVTGeom itself only snaps and drops
# repeated and collinear points. Simplifying every shape of over 8 points was 4.3-4.5 ms of a full tile's ~19 ms
# PostGIS statement for tiles 13% (DLTB) and 5% (OSM) smaller; with this rule ~2 ms less, tiles 2% (DLTB) / 1% (OSM)
# larger, and a county outline at z7 still 4x fewer points (profiles/tiles-cold3.txt).
# Web Mercator tiles up to the highest of tilegen.LEVELS read the shapes they simplify from a copy made once per row
# (`feature_tilegeoms`, built after each version: store/tilegeoms.py) where the row has one, else simplify on the fly:
# simplifying on every request was most of a full tile's statement beyond the raw ST_AsMVT (profiles/tiles-gen.txt).
MIN_FEATURE_CELLS = 1.0  # lines and polygons smaller than this in both directions are left out
# The PostGIS way hands a shape it does not simplify to ST_AsMVTGeom whole when it has at most this many points (most
# parcels and buildings): ST_AsMVTGeom clips to the same buffered tile itself, and clipping it first in GEOS too
# (ST_ClipByBox2D) was 7-10% of a small tile's statement at z11-z14 (profiles/tiles-small.txt §7). Its shape may then
# differ from the clipped one's by the order of snapping and clipping at the buffer's edge (at most 4 of 4096 units,
# a quarter pixel, over 400 tiles). A shape of more points is clipped first, so its projection never covers more than
# the tile (a county's outline at z14, not simplified there, would be projected whole for every tile it crosses).
CLIP_ABOVE_POINTS = 64
DETAIL_ZOOM = 12
DEFAULT_MINZOOM = 0
DEFAULT_MAXZOOM = 18
# Below the detail zoom a tile carries the land-use class only: the one property the map reads (web/static/js/mapstyle.js
# colours by DLBM or dlbm; identify asks /api/here). The jurisdiction field was carried too, read by nothing: 12 KB of a
# 52 KB full DLTB tile (ZLDWDM codes) and ~1 ms of its statement (profiles/tiles-cold3.txt).
LOW_ZOOM_FIELDS = CLASS_FIELDS
KEY_PROPERTY = "_key"
MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
RENDER_VERSION = 5  # 2: low-zoom shapes from the pre-generalised copies; 3: z12-z14 too; 4: no ids below the detail zoom;
# 5: PostGIS: shapes of few points clipped by ST_AsMVTGeom alone (CLIP_ABOVE_POINTS), rows' whole props (`whole_props`)
NUMERIC_KEY = re.compile(r"0|[1-9][0-9]{0,17}")  # (fullmatch) fits a bigint and an MVT uint64 id
# The same test in SQL, without a regular expression: PostgreSQL's regex engine turns each key into wide characters
# before it matches, ~0.2-0.4 ms of a thousand-row tile's statement (profiles/tiles-fixed.txt).
_NUMERIC_KEY_SQL = (
    "(octet_length(f.fkey) BETWEEN 1 AND 18 AND ltrim(f.fkey, '0123456789') = '' AND (f.fkey = '0' OR left(f.fkey, 1) <> '0'))"
)
_BATCH = 2000
_CELL_UNITS = EXTENT / TILE_SIZE  # tile units per pixel

Method = Literal["auto", "python", "postgis"]


# -- what a tile carries ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TileConfig:
    attributes: tuple[str, ...] | None
    minzoom: int
    maxzoom: int
    detail_zoom: int


def _zoom(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 else default


def tile_config(ds: catalog.Dataset) -> TileConfig:
    """The dataset's tile settings (`extra["tiles"]`), with defaults for anything missing or malformed."""
    raw = (ds.extra or {}).get("tiles")
    raw = raw if isinstance(raw, dict) else {}
    attrs = raw.get("attributes")
    attributes = tuple(a for a in attrs if isinstance(a, str)) if isinstance(attrs, list) else None
    minzoom = _zoom(raw.get("minzoom"), DEFAULT_MINZOOM)
    maxzoom = _zoom(raw.get("maxzoom"), DEFAULT_MAXZOOM)
    if maxzoom < minzoom:
        minzoom, maxzoom = DEFAULT_MINZOOM, DEFAULT_MAXZOOM
    return TileConfig(attributes, minzoom, maxzoom, _zoom(raw.get("detail_zoom"), DETAIL_ZOOM))


def clear_fields(ds: catalog.Dataset, access: Access) -> list[str]:
    """Fields the caller sees, in clear, on every row it may read (dataset field order).

    A field only one of several clauses shows, or a sensitive field some clause leaves masked,
    is not among them: a tile has one attribute list for all its rows.
    """
    if not access.visible or not access.clauses:
        return []
    names = [f["name"] for f in ds.fields]
    for c in access.clauses:
        if c.fields is not None:
            names = [n for n in names if n in c.fields]
    clear_everywhere = frozenset.intersection(*(c.unmasked for c in access.clauses))
    masked = access.sensitive - clear_everywhere
    return [n for n in names if n not in masked]


def tile_attributes(ds: catalog.Dataset, access: Access, z: int, cfg: TileConfig | None = None) -> tuple[str, ...]:
    """The attributes tiles at zoom z carry for this caller (`cfg`: `tile_config(ds)`, when the caller has it)."""
    cfg = cfg or tile_config(ds)
    clear = clear_fields(ds, access)
    if cfg.attributes is not None:
        wanted: set[str] = set(cfg.attributes)
    elif z >= cfg.detail_zoom:
        return tuple(clear)
    else:
        wanted = set(LOW_ZOOM_FIELDS)  # the key is the feature's id / _key
    return tuple(n for n in clear if n in wanted)


def identified(cfg: TileConfig, z: int) -> bool:
    """Whether tiles at zoom z carry each feature's identity (the MVT id, or `_key`): from the detail zoom up.

    Below it a tile is the class map (LOW_ZOOM_FIELDS), its features mostly a few pixels wide, where nobody picks one
    (the portal identifies through /api/here): the ids were a fifth of a full DLTB z8-z10 tile (16-18 digit keys, 8-byte
    varints) and OSM's hash keys two thirds of its z8-z11 tiles, 3-8% of their statements (profiles/tiles-lean.txt).
    """
    return z >= cfg.detail_zoom


def field_types(ds: catalog.Dataset, names: Iterable[str]) -> dict[str, str]:
    """TileJSON field types ("String", "Number", "Boolean") of some fields."""
    types = {f["name"]: f.get("type", "string") for f in ds.fields}
    out = {}
    for n in names:
        t = types.get(n, "string")
        out[n] = "Number" if t in ("integer", "real", "number") else "Boolean" if t == "boolean" else "String"
    return out


_SIGNATURES: weakref.WeakKeyDictionary[Access, dict[tuple[str, ...], str]] = weakref.WeakKeyDictionary()


def access_signature(access: Access, attributes: Sequence[str]) -> str:
    """A stable hash of what the caller may see of a tile: rows, attributes, masked fields.

    Remembered beside the `Access` while it lives: a remembered decision (`access.decisions`) hands every tile of a map
    the same one, and the hash (a JSON text and its sha256, the areas' WKB hashed too) was a tenth of a cached tile's
    plan (benchmarks/profiles/tiles-decisions.txt)."""
    attributes = tuple(attributes)
    known = _SIGNATURES.get(access)
    if known is None:
        known = _SIGNATURES.setdefault(access, {})
    signature = known.get(attributes)
    if signature is None:
        signature = known[attributes] = _signature(access, attributes)
    return signature


def _signature(access: Access, attributes: tuple[str, ...]) -> str:
    rows = access.rows
    rows_repr: Any = None
    if rows is not None:
        rows_repr = {
            "prefixes": sorted([list(p) for p in rows.prefixes]),
            "areas": sorted(hashlib.sha256(a).hexdigest() for a in rows.areas),
        }
    text = json.dumps(
        {"rows": rows_repr, "attributes": list(attributes), "masked": sorted(access.masked_fields())},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def feature_id(fkey: str) -> int | None:
    """The MVT id of a stored key, when it is a plain non-negative integer."""
    return int(fkey) if NUMERIC_KEY.fullmatch(fkey) else None  # (`$` would let a trailing newline in)


# -- one tile's plan ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TilePlan:
    dataset_id: str
    version: int
    tms: TileMatrixSet
    z: int
    x: int
    y: int
    attributes: tuple[str, ...]
    bounds: BBox  # the tile, in the set's CRS
    lonlat: BBox  # the tile, in EPSG:4490 lon/lat: features meeting it are in the tile
    clip: BBox  # the tile and its buffer, in lon/lat: geometries are clipped to it first
    cell: float  # one pixel (1/256 of the tile) in the set's CRS units
    min_dx: float  # the size rule, in degrees: one pixel of this tile
    min_dy: float
    signature: str
    key: str
    public: bool  # the tile shows only what anyone may see (may be kept by shared caches)
    gcj02: bool = False  # the tile grid over GCJ-02 lon/lat: `lonlat` and `clip` are GCJ-02
    query: BBox | None = None  # the CGCS2000 box rows are read from, when it is not `lonlat`
    copy_level: int | None = None  # the level of the pre-generalised copies (`geo/tilegen.py`) its simplified shapes use
    identified: bool = True  # features carry their key (MVT id or `_key`): see `identified`
    # PostgreSQL: the rows' `props` go to ST_AsMVT as they are (`whole_props`); part of the key, as the bytes differ
    whole_props: bool = False

    @property
    def etag(self) -> str:
        return f'"{self.key[:40]}"'

    def size_filter(self) -> SQLFilter:
        """The size rule as a condition on the stored envelope (the same numbers on every backend)."""
        return SQLFilter(
            "((f.maxx - f.minx) >= :tile_min_dx OR (f.maxy - f.miny) >= :tile_min_dy "
            "OR (f.maxx = f.minx AND f.maxy = f.miny))",
            {"tile_min_dx": self.min_dx, "tile_min_dy": self.min_dy},
        )

    def audit_detail(self) -> dict[str, Any]:
        return {"tms": self.tms.id, "z": self.z, "x": self.x, "y": self.y, "attributes": list(self.attributes)}


def _zoom_not_served(ds: catalog.Dataset, tms: TileMatrixSet, z: int, cfg: TileConfig) -> NotFound:
    return NotFound(
        "tiles.zoom_not_served",
        f"数据集“{ds.id}”的瓦片只提供层级 {cfg.minzoom}–{cfg.maxzoom}（请求层级 {z}）",
        f"tiles of dataset '{ds.id}' are served for tile matrices {cfg.minzoom}–{cfg.maxzoom} only (asked for {z})",
        tileMatrixSet=tms.id,
        minzoom=cfg.minzoom,
        maxzoom=cfg.maxzoom,
    )


_STAMPS: dict[version_learning.Key, str] = {}
_STAMPS_MAX = 4096


def known_stamp(engine: Engine, ds: catalog.Dataset, version: int) -> str | None:
    """`version_stamp` when it is remembered, None when it would have to be read (from the event loop: no I/O)."""
    return _STAMPS.get(version_learning.version_key(engine, ds, version))


def version_stamp(engine: Engine, ds: catalog.Dataset, version: int, conn: Connection | None = None) -> str:
    """When a version was made: part of the cache key, so a store rebuilt (or restored) under the same
    version numbers never meets old tiles.

    A version's creation time never changes, so it is read once and remembered, keyed by the dataset
    row's `updated_at` as well: recording any new version (a rebuilt or restored store included) sets
    it anew, so a remembered stamp never outlives the version it stamps. `conn`: a connection to read it on
    (the request's), else one of the engine's.
    """
    key = version_learning.version_key(engine, ds, version)
    stamp = _STAMPS.get(key)
    if stamp is None:
        updated = key[3]
        created = catalog.version_created_at(conn if conn is not None else engine, ds.id, version)
        stamp = created.isoformat() if created is not None else ""
        if len(_STAMPS) >= _STAMPS_MAX:
            _STAMPS.clear()
        if updated:
            _STAMPS[key] = stamp
    return stamp


def plan_tile(
    ds: catalog.Dataset,
    access: Access,
    version: int | None,
    tms: TileMatrixSet | str,
    z: int,
    x: int,
    y: int,
    *,
    engine: Engine | None = None,
    gcj02: bool = False,
    conn: Connection | None = None,
    stamp: str | None = None,
) -> TilePlan:
    """Everything that decides a tile's content, checked: bad z/x/y → 400, zoom not served → 404.

    With `engine`, the version's creation time joins the cache key (see `version_stamp`; read on `conn` if given;
    `stamp`: already known, `known_stamp`).
    """
    tms = get_tms(tms) if isinstance(tms, str) else tms
    tms.check(z, x, y)
    cfg = tile_config(ds)
    if not cfg.minzoom <= z <= cfg.maxzoom:
        raise _zoom_not_served(ds, tms, z, cfg)
    v = gate.readable_version(ds, access, version)
    attributes = tile_attributes(ds, access, z, cfg)
    bounds = tms.tile_bounds(z, x, y)
    lonlat = tms.tile_bounds_lonlat(z, x, y)
    w, h = tms.tile_span(z)
    bx, by = w * BUFFER / EXTENT, h * BUFFER / EXTENT
    ext = tms.extent
    clip = (*tms.point_to_lonlat(bounds[0] - bx, max(bounds[1] - by, ext[1])),
            *tms.point_to_lonlat(bounds[2] + bx, min(bounds[3] + by, ext[3])))
    signature = access_signature(access, attributes)
    if stamp is None:
        stamp = version_stamp(engine, ds, v, conn) if engine is not None else ""
    whole = engine is not None and whole_props(engine, ds, v, attributes)
    # (repr of a tuple of texts and integers: unambiguous as the JSON text was, made without an encoder per tile)
    key_text = repr((RENDER_VERSION, ds.id, v, stamp, signature, tms.id, z, x, y, gcj02, whole))
    # a published edition as anyone reads it (the rest: the fields are only looked at when that is so)
    public = access.public and not any(f.get("sensitive") and f["name"] in attributes for f in ds.fields)
    return TilePlan(
        dataset_id=ds.id,
        version=v,
        tms=tms,
        z=z,
        x=x,
        y=y,
        attributes=attributes,
        bounds=bounds,
        lonlat=lonlat,
        clip=clip,
        cell=w / TILE_SIZE,
        min_dx=MIN_FEATURE_CELLS * (lonlat[2] - lonlat[0]) / TILE_SIZE,
        min_dy=MIN_FEATURE_CELLS * (lonlat[3] - lonlat[1]) / TILE_SIZE,
        signature=signature,
        key=hashlib.sha256(key_text.encode()).hexdigest(),
        public=public,
        gcj02=gcj02,
        query=gcj02_bbox_to_storage(lonlat) if gcj02 else None,
        copy_level=None if gcj02 or tms.geographic else level_for(z),
        identified=identified(cfg, z),
        whole_props=whole,
    )


def whole_props(engine: Engine, ds: catalog.Dataset, version: int, attributes: tuple[str, ...]) -> bool:
    """Whether the PostGIS statement hands each row's `props` to ST_AsMVT as they are: every property key the version's
    rows carry is known (`tile_types.facts`) and is among the tile's attributes (so nothing goes out the caller may not
    see). The same properties as the object the statement otherwise builds per row (`_properties_sql`), in another key
    order, so the choice is part of the tile's key: an ETag names exactly one form's bytes. Not with a field named as
    the key property (`_key` would be written twice)."""
    if not attributes or KEY_PROPERTY in attributes or engine.dialect.name != "postgresql":
        return False
    keys = tile_types.facts(engine, ds, version).keys
    return keys is not None and keys.issubset(attributes)


# -- geometry, the Python way ---------------------------------------------------------------------
_GRID_BOX = shapely.box(-BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)


def _pixels(plan: TilePlan, xy: np.ndarray) -> np.ndarray:
    """Lon/lat coordinates (n, 2) as tile units: y-down, 0..4096 across the tile."""
    tx0, _, tx1, ty1 = plan.bounds
    kx = EXTENT / (tx1 - tx0)
    ky = EXTENT / (plan.bounds[3] - plan.bounds[1])
    px, py = plan.tms.to_tms(xy[:, 0], xy[:, 1])
    return np.column_stack(((px - tx0) * kx, (ty1 - py) * ky))


def _to_pixels(plan: TilePlan, geoms: np.ndarray) -> np.ndarray:
    """Lon/lat shapes as shapes in tile units."""
    return shapely.transform(geoms, lambda xy: _pixels(plan, xy))


def _snap_one(geom: shapely.Geometry) -> shapely.Geometry | None:
    """GEOS snap-rounding of one shape to the grid, clipped to the buffered tile (made valid first if need be)."""
    for candidate in (geom, shapely.make_valid(geom)):
        try:
            return shapely.set_precision(shapely.intersection(candidate, _GRID_BOX), 1.0)
        except GEOSException:
            continue
    return None


_SIMPLE_TYPES = type_table([shapely.GeometryType.POINT, shapely.GeometryType.LINESTRING, shapely.GeometryType.POLYGON])
_MULTI_TYPES = type_table([shapely.GeometryType.MULTIPOINT, shapely.GeometryType.MULTILINESTRING, shapely.GeometryType.MULTIPOLYGON])


def _clip(plan: TilePlan, geoms: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Non-empty shapes clipped to the buffered tile, as `shapely.clip_by_rect` clips them.

    Most shapes of a tile lie inside the box: for them clip_by_rect gives back the shape itself, or a one-part
    multi-shape's part (an OSM area stored as a MultiPolygon comes back a Polygon), so only the others go through
    GEOS (~1 ms of a full tile; the identity is tested against clip_by_rect). Collections, multi-shapes of several
    parts (they may hold empty ones, which GEOS drops) and shapes touching the box's edges are clipped by GEOS.
    """
    cx0, cy0, cx1, cy1 = plan.clip
    inside = (bounds[:, 0] > cx0) & (bounds[:, 1] > cy0) & (bounds[:, 2] < cx1) & (bounds[:, 3] < cy1)
    types = shapely.get_type_id(geoms)
    simple = inside & _SIMPLE_TYPES[types]
    multi = inside & _MULTI_TYPES[types]
    multi[multi] = shapely.get_num_geometries(geoms[multi]) == 1
    out = geoms.copy()
    out[multi] = shapely.get_geometry(geoms[multi], 0)
    rest = ~(simple | multi)
    out[rest] = shapely.clip_by_rect(geoms[rest], *plan.clip)
    return out


def _per_shape_bounds(xy: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """`shapely.bounds` of n shapes from their coordinates (`get_coordinates(return_index=True)`); NaN for no coordinates."""
    out = np.full((n, 4), np.nan)
    if not len(xy):
        return out
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    rows = index[starts]
    out[rows, 0], out[rows, 1] = np.minimum.reduceat(xy[:, 0], starts), np.minimum.reduceat(xy[:, 1], starts)
    out[rows, 2], out[rows, 3] = np.maximum.reduceat(xy[:, 0], starts), np.maximum.reduceat(xy[:, 1], starts)
    return out


def _snap_projected(plan: TilePlan, clipped: np.ndarray, big: np.ndarray, premade: np.ndarray | None = None) -> np.ndarray:
    """Project clipped lon/lat shapes to tile units, simplify the `big` ones, and snap all to the integer grid within
    the buffered tile, keeping polygons valid.

    Coordinates are rounded, which leaves almost every shape valid (repeated points are dropped by the encoder); a
    shape rounding made invalid (a sliver folding onto itself) or that reaches beyond the buffered tile is
    snap-rounded by GEOS instead, as every shape was before: that cost 70% of a full tile's geometry work
    (profiles/tiles-full.txt). Either way within √2/2 of a grid unit of the shape.

    The coordinates of the shapes not simplified (most of a tile) are projected and rounded in one numpy pass and set
    once; their shapes in unrounded tile units are made only for the few GEOS must snap-round. Projecting every shape
    and then rounding it again as shapes cost two more coordinate passes through GEOS (profiles/tiles-python.txt).

    `premade`: shapes already in unrounded tile units and simplified (from the pre-generalised copies), None elsewhere;
    where one is given, `clipped` is not read (an empty shape there) and the shape is taken as simplified.
    """
    made = np.zeros(len(clipped), dtype=bool) if premade is None else ~shapely.is_missing(premade)
    xy, index = shapely.get_coordinates(clipped, return_index=True)
    px = _pixels(plan, xy)
    small = ~big
    of_small = small[index]
    rounded = np.empty(len(clipped), dtype=object)
    bounds = np.empty((len(clipped), 4))
    rounded[small] = shapely.set_coordinates(clipped[small].copy(), np.rint(px[of_small]))
    bounds[small] = _per_shape_bounds(px[of_small], index[of_small], len(clipped))[small]
    unrounded = np.empty(len(clipped), dtype=object)
    fly = big & ~made
    if fly.any():  # (the premade rows have no coordinates in `clipped`)
        projected = shapely.set_coordinates(clipped[fly].copy(), px[~of_small])
        unrounded[fly] = shapely.simplify(projected, SIMPLIFY_CELLS * _CELL_UNITS, preserve_topology=True)
    if made.any():
        unrounded[made] = premade[made]  # type: ignore[index]
    if big.any():
        rounded[big] = shapely.transform(unrounded[big], np.rint)
        bounds[big] = shapely.bounds(unrounded[big])
    lo, hi = -BUFFER - 0.5, EXTENT + BUFFER + 0.5
    fine = shapely.is_valid(rounded) & (bounds[:, 0] >= lo) & (bounds[:, 1] >= lo) & (bounds[:, 2] <= hi) & (bounds[:, 3] <= hi)
    for i in np.flatnonzero(~fine).tolist():
        shape = unrounded[i] if big[i] else shapely.set_coordinates(clipped[i:i + 1].copy(), px[index == i])[0]
        rounded[i] = _snap_one(shape)
    return rounded


def _of_dimension(geom: shapely.Geometry | None, dim: int) -> shapely.Geometry | None:
    """The parts of `geom` of dimension `dim` (clipping can leave lines of a polygon), or None."""
    if geom is None or geom.is_empty:
        return None
    if shapely.get_dimensions(geom) == dim and geom.geom_type != "GeometryCollection":
        return geom
    parts = [p for p in shapely.get_parts(geom) if shapely.get_dimensions(p) == dim and not p.is_empty]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return {0: shapely.multipoints, 1: shapely.multilinestrings, 2: shapely.multipolygons}[dim](parts)


def _fallback_box(plan: TilePlan, bounds: np.ndarray) -> shapely.Geometry:
    """A feature that collapsed in the snapping: its clipped envelope, grown by one pixel."""
    cx0, cy0, cx1, cy1 = plan.clip
    x0, y0 = max(bounds[0], cx0), max(bounds[1], cy0)
    x1, y1 = min(bounds[2], cx1), min(bounds[3], cy1)
    px, py = plan.tms.to_tms([x0, x1], [y0, y1])
    tx0, ty0, tx1, ty1 = plan.bounds
    kx, ky = EXTENT / (tx1 - tx0), EXTENT / (ty1 - ty0)
    left, right = (px[0] - tx0) * kx - _CELL_UNITS, (px[1] - tx0) * kx + _CELL_UNITS
    top, bottom = (ty1 - py[1]) * ky - _CELL_UNITS, (ty1 - py[0]) * ky + _CELL_UNITS
    lo, hi = -BUFFER, EXTENT + BUFFER
    left, right = round(min(max(left, lo), hi)), round(min(max(right, lo), hi))
    top, bottom = round(min(max(top, lo), hi)), round(min(max(bottom, lo), hi))
    return shapely.box(left, top, max(right, left + 1), max(bottom, top + 1))


def simplified_ones(plan: TilePlan, points: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Which shapes are simplified: more than SIMPLIFY_ABOVE_POINTS points, and more points than pixels in their
    (stored) envelope's width + height — the same rule as the PostGIS statement's."""
    pixels = (bounds[:, 2] - bounds[:, 0]) / plan.min_dx + (bounds[:, 3] - bounds[:, 1]) / plan.min_dy
    return (points > SIMPLIFY_ABOVE_POINTS) & (points > pixels)


def tile_geometries(plan: TilePlan, wkbs: Sequence[bytes | None]) -> list[shapely.Geometry | None]:
    """Stored geometries (EPSG:4490 WKB) as tile geometries: y-down integer coordinates in 0..4096 (± buffer)."""
    return _tile_geometries(plan, shapely.from_wkb(np.array(wkbs, dtype=object), on_invalid="ignore"))


def _tile_geometries(plan: TilePlan, geoms: np.ndarray, copies: np.ndarray | None = None) -> list[shapely.Geometry | None]:
    """`tile_geometries` of parsed shapes; `copies`: their pre-generalised copies (EPSG:3857 WKB, None where absent)."""
    present = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    if plan.gcj02:  # rows were read from a wider CGCS2000 box: shift them, then keep what meets the tile
        geoms = geometry_wgs84_to_gcj02(geoms)
        present &= shapely.intersects(geoms, shapely.box(*plan.lonlat))
    out: list[shapely.Geometry | None] = [None] * len(geoms)
    if not present.any():
        return out
    idx = np.flatnonzero(present)
    for i, geom in zip(idx.tolist(), _tile_shapes(plan, geoms[idx], None if copies is None else copies[idx])):
        out[i] = geom
    return out


_EMPTY = shapely.Polygon()


def _tile_shapes(plan: TilePlan, g: np.ndarray, copies: np.ndarray | None = None) -> list[shapely.Geometry]:
    """Non-empty lon/lat shapes as tile shapes: clipped, projected, simplified by the rule, snapped. The shapes the
    rule simplifies are taken from their pre-generalised copies (`copies`, EPSG:3857 WKB) where given."""
    bounds = shapely.bounds(g)
    dims = shapely.get_dimensions(g)
    big = simplified_ones(plan, shapely.get_num_coordinates(g), bounds)
    premade = None
    if copies is not None:
        use = big & np.array([c is not None for c in copies], dtype=bool)
        if use.any():
            premade = np.full(len(g), None, dtype=object)
            premade[use] = _copies_in_tile_units(plan, shapely.from_wkb(copies[use]))
            g = g.copy()
            g[use] = _EMPTY  # not clipped nor projected: the copy stands for it
    return _kept_shapes(plan, _snap_projected(plan, _clip(plan, g, bounds), big, premade), dims, bounds)


def _copies_in_tile_units(plan: TilePlan, copies: np.ndarray) -> np.ndarray:
    """Pre-generalised copies (EPSG:3857) clipped to the buffered tile, in unrounded tile units (y down), as
    ST_AsMVTGeom takes them in; those inside the buffered tile are not clipped."""
    tx0, ty0, tx1, ty1 = plan.bounds
    kx, ky = EXTENT / (tx1 - tx0), EXTENT / (ty1 - ty0)
    bx, by = (tx1 - tx0) * BUFFER / EXTENT, (ty1 - ty0) * BUFFER / EXTENT
    box = (tx0 - bx, ty0 - by, tx1 + bx, ty1 + by)
    b = shapely.bounds(copies)
    inside = (b[:, 0] > box[0]) & (b[:, 1] > box[1]) & (b[:, 2] < box[2]) & (b[:, 3] < box[3])
    single = inside & _SIMPLE_TYPES[shapely.get_type_id(copies)]
    out = copies.copy()
    out[~single] = shapely.clip_by_rect(copies[~single], *box)
    return shapely.transform(out, lambda xy: np.column_stack(((xy[:, 0] - tx0) * kx, (ty1 - xy[:, 1]) * ky)))


def _kept_shapes(plan: TilePlan, snapped: np.ndarray, dims: np.ndarray, bounds: np.ndarray) -> list[shapely.Geometry]:
    """Most shapes come out of the snapping as they went in; the others keep their parts of the input's dimension
    (`dims`), or are drawn as their (stored-`bounds`) fallback box when they collapsed."""
    same = (shapely.get_dimensions(snapped) == dims) & ~shapely.is_empty(snapped)
    same &= shapely.get_type_id(snapped) != shapely.GeometryType.GEOMETRYCOLLECTION
    out = []
    for j, ok in enumerate(same.tolist()):
        geom = snapped[j] if ok else _of_dimension(snapped[j], int(dims[j]))
        out.append(geom if geom is not None else _fallback_box(plan, bounds[j]))
    return out


def _mvt_value(value: Any) -> Any:
    """A property value as MVT can hold it (the scalars PostGIS keeps from JSON), or None to leave it out."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else float(value)
    if isinstance(value, float):
        return value if value == value else None
    return None


def tile_properties(plan: TilePlan, feat: StoredFeature) -> tuple[int | None, dict[str, Any]]:
    """The MVT id and properties of a feature read whole (the plan's attributes of its properties)."""
    return _row_properties(plan, feat.fkey, [feat.props.get(name) for name in plan.attributes])


def _layer(plan: TilePlan) -> LayerEncoder:
    """The tile's layer. Its exterior rings turn counter-clockwise in these y-down grid units (clockwise on screen), as
    MVT wants: the encoder orients the rings of the (valid, integer) tile shapes itself, in numpy — what
    `shapely.orient_polygons(exterior_cw=False)` did in GEOS with a copy of every shape (profiles/tiles-python.txt)."""
    return LayerEncoder(plan.dataset_id, EXTENT, orient=True)


def encode_layer(plan: TilePlan, features: Iterable[StoredFeature]) -> tuple[bytes, int]:
    """Encode features (already restricted to the tile) as an MVT; b"" when there are none."""
    layer = _layer(plan)
    count = 0
    it = iter(features)
    while batch := list(islice(it, _BATCH)):
        made = np.array(tile_geometries(plan, [f.wkb for f in batch]), dtype=object)
        present = ~shapely.is_missing(made)
        geoms = made[present]
        layer.add(geoms, [tile_properties(plan, f) for f, p in zip(batch, present.tolist()) if p])
        count += len(geoms)
    return (layer.tile(), count) if count else (b"", 0)


def _render_rows(
    engine: Engine, principal: Principal, ds: catalog.Dataset, access: Access, plan: TilePlan, defer: gate.Defer | None = None
) -> tuple[bytes, int]:
    """The Python way from `FeatureStore.tile_rows`: the rows the gate's reads give (its row restriction, the version
    plan_tile checked), with only the tile's attributes decoded and each geometry parsed once — for the exact test
    with the tile (skipped where the stored envelope lies inside it, as in the PostGIS statement) and the drawing."""
    rows = feature_store_for(engine).tile_rows(
        plan.dataset_id, plan.version, plan.lonlat, plan.attributes, rows=access.rows, where=plan.size_filter(), batch_size=_BATCH,
        copy_level=plan.copy_level,
    )
    bminx, bminy, bmaxx, bmaxy = plan.lonlat
    box = shapely.box(*plan.lonlat)
    layer = _layer(plan)
    count = 0
    for batch in rows:
        geoms = shapely.from_wkb(np.array(batch.wkbs, dtype=object), on_invalid="ignore")
        env = batch.envelopes
        inside = (env[:, 0] >= bminx) & (env[:, 2] <= bmaxx) & (env[:, 1] >= bminy) & (env[:, 3] <= bmaxy)
        meets = inside.copy()
        meets[~inside] = shapely.intersects(geoms[~inside], box)
        made = np.full(len(geoms), None, dtype=object)
        copies = None if batch.copies is None else np.array(batch.copies, dtype=object)[meets]
        made[meets] = _tile_geometries(plan, geoms[meets], copies)
        present = ~shapely.is_missing(made)
        drawn = made[present]
        keep = np.flatnonzero(present).tolist()
        layer.add(drawn, [_row_properties(plan, batch.fkeys[i], batch.values[i]) for i in keep])
        count += len(drawn)
    audit_tile_read(engine, principal, ds, access, plan, count, defer=defer)
    return (layer.tile(), count) if count else (b"", 0)


def _row_properties(plan: TilePlan, fkey: str, values: list[Any]) -> tuple[int | None, dict[str, Any]]:
    """`tile_properties` of a row read by `tile_rows` (`values`: the plan's attributes, in order)."""
    props = {}
    for name, value in zip(plan.attributes, values):
        if value.__class__ is str:  # most values (codes, names): no checks to make
            props[name] = value
        elif (v := _mvt_value(value)) is not None:
            props[name] = v
    if not plan.identified:
        return None, props
    fid = feature_id(fkey)
    if fid is None:
        props[KEY_PROPERTY] = fkey
    return fid, props


def _render_python(
    engine: Engine, principal: Principal, ds: catalog.Dataset, access: Access, plan: TilePlan, defer: gate.Defer | None = None
) -> tuple[bytes, int]:
    rows = access.rows
    if not plan.gcj02 and (rows is None or not rows.areas):
        return _render_rows(engine, principal, ds, access, plan, defer)
    # GCJ-02 tiles read a wider box and test the shifted shapes; a restriction by area needs every row's geometry and
    # properties in the gate's test: both through the gate's read
    feats = gate.read_features(
        engine, principal, ds, access, plan.version, bbox=plan.query or plan.lonlat, where=plan.size_filter(),
        action="data.tiles", detail=plan.audit_detail(), defer=defer,
    )
    try:
        return encode_layer(plan, feats)
    finally:
        close = getattr(feats, "close", None)
        if close is not None:
            close()  # ends the read, which writes (or hands to `defer`) its audit entry


# -- the PostGIS way -------------------------------------------------------------------------------
def postgis_tile_sql(
    plan: TilePlan, access: Access, engine: Engine, string_fields: Collection[str] = (), only_strings: Collection[str] = ()
) -> tuple[str, dict[str, Any]]:
    """The ST_AsMVT query of a tile (same rows as the gate's reads, same membership as the Python way).

    `string_fields`: the fields declared as strings (their values are carried as text columns; see `_properties_sql`);
    `only_strings`: those of them known to hold nothing but strings in the plan's version (`tile_types`).
    """
    store = feature_store_for(engine)
    # the gate's row restriction and the size rule, as every read; the tile's own box test below
    clauses, params = store.conditions(plan.dataset_id, plan.version, None, access.rows, plan.size_filter())
    bminx, bminy, bmaxx, bmaxy = plan.lonlat
    cx0, cy0, cx1, cy1 = plan.clip
    tx0, ty0, tx1, ty1 = plan.bounds
    params.update(
        tile_layer=plan.dataset_id, tile_tol=SIMPLIFY_CELLS * plan.cell, tile_cell=plan.cell,
        bminx=bminx, bminy=bminy, bmaxx=bmaxx, bmaxy=bmaxy, cx0=cx0, cy0=cy0, cx1=cx1, cy1=cy1,
        tx0=tx0, ty0=ty0, tx1=tx1, ty1=ty1, tz=plan.z, tx=plan.x, ty=plan.y,
    )
    params.update({f"tile_a{i}": name for i, name in enumerate(plan.attributes)})
    # Meets the tile exactly (as FeatureStore's bbox test): a row whose stored envelope lies inside the tile
    # needs no geometry test (most rows of a full tile), the others are tested in GEOS.
    box = "ST_MakeEnvelope(:bminx, :bminy, :bmaxx, :bmaxy, 4490)"
    clauses.append(
        f"f.geom && {box} AND ((f.minx >= :bminx AND f.maxx <= :bmaxx AND f.miny >= :bminy AND f.maxy <= :bmaxy) "
        f"OR ST_Intersects(f.geom, {box}))"
    )
    clipped = "ST_ClipByBox2D(s.geom, ST_MakeEnvelope(:cx0, :cy0, :cx1, :cy1, 4490))"
    envelope = "GREATEST(s.minx, :cx0), GREATEST(s.miny, :cy0), LEAST(s.maxx, :cx1), LEAST(s.maxy, :cy1)"
    if plan.tms.geographic:
        projected, whole = clipped, "s.geom"
        fallback = f"ST_MakeEnvelope({envelope}, 4490)"
        bounds = "ST_MakeEnvelope(:tx0, :ty0, :tx1, :ty1, 4490)"
    else:
        # CGCS2000 lon/lat taken as WGS 84 (no datum shift), as geo/tiles.py does
        projected = f"ST_Transform(ST_SetSRID({clipped}, 4326), 3857)"
        whole = "ST_Transform(ST_SetSRID(s.geom, 4326), 3857)"
        fallback = f"ST_Transform(ST_MakeEnvelope({envelope}, 4326), 3857)"
        bounds = "ST_TileEnvelope(CAST(:tz AS integer), CAST(:tx AS integer), CAST(:ty AS integer))"
    on_the_fly = f"ST_SimplifyPreserveTopology({projected}, :tile_tol)"
    if plan.copy_level is not None:
        # the row's pre-generalised copy (EPSG:3857, whole: ST_AsMVTGeom clips it) where it has one, looked up only
        # for the shapes simplified (COALESCE stops at the first value that is not NULL)
        params["tile_level"] = plan.copy_level
        on_the_fly = (
            f"COALESCE((SELECT g.geom FROM {tilegeoms.TABLE} g WHERE g.feature_id = s.id AND g.level = CAST(:tile_level AS smallint)), "
            f"{on_the_fly})"
        )
    simplified = (
        f"CASE WHEN s.npoints > GREATEST({SIMPLIFY_ABOVE_POINTS}, (s.maxx - s.minx) / :tile_min_dx + (s.maxy - s.miny) / :tile_min_dy) "
        f"THEN {on_the_fly} "
        f"WHEN s.npoints > {CLIP_ABOVE_POINTS} THEN {projected} "
        f"ELSE {whole} END"
    )
    geom = (
        f"COALESCE(ST_AsMVTGeom({simplified}, {bounds}, {EXTENT}, {BUFFER}, true), "
        f"ST_AsMVTGeom(ST_Expand({fallback}, :tile_cell), {bounds}, {EXTENT}, {BUFFER}, true))"
    )
    props = _properties_sql(plan, string_fields, only_strings)
    # The rows in id order (the Python way's order); ORDER BY keeps the subquery apart, so the key is tested and the
    # points counted once per row, not once per use.
    key = f"{_NUMERIC_KEY_SQL} AS tile_numeric, f.fkey, " if plan.identified else ""
    rows = (
        f"SELECT f.id, {key}f.props, f.geom, ST_NPoints(f.geom) AS npoints, f.minx, f.miny, f.maxx, f.maxy "
        f"FROM features f WHERE {' AND '.join(clauses)} ORDER BY f.id"
    )
    fid = ["CASE WHEN s.tile_numeric THEN CAST(s.fkey AS bigint) END AS tile_fid"] if plan.identified else []
    columns = ", ".join([*fid, *([props] if props else []), f"{geom} AS geom"])
    id_column = ", 'tile_fid'" if plan.identified else ""
    # OFFSET 0 keeps q apart too: flattened, its geometry would be made twice (for ST_AsMVT and for the count)
    sql = (
        f"SELECT ST_AsMVT(q.*, :tile_layer, {EXTENT}, 'geom'{id_column}) AS tile, "
        f"count(q.geom) AS n FROM (SELECT {columns} FROM ({rows}) s OFFSET 0) q"
    )
    return sql, params


_OWN_COLUMNS = frozenset({"tile_fid", "tile_props", "geom", KEY_PROPERTY})
_SCALARS = "('string', 'number', 'boolean')"  # the JSON values a tile carries (what _mvt_value keeps)
_NOT_STRINGS = "('number', 'boolean')"


def _text_column(name: str) -> str | None:
    """`name` quoted as a column name ST_AsMVT writes as that very key, or None: one of the statement's own columns,
    or longer than PostgreSQL's 63-byte names (it would be cut)."""
    if name in _OWN_COLUMNS or len(name.encode()) > 63 or "\x00" in name:
        return None
    return '"' + name.replace('"', '""') + '"'


def _properties_sql(plan: TilePlan, string_fields: Collection[str], only_strings: Collection[str] = ()) -> str:
    """The select list of a tile's properties: the key (when it is no MVT id) and the attributes' scalar values.

    Values are looked up by name (~6x cheaper than expanding every property with jsonb_each). A field declared as a
    string is a text column holding its value when that value is a JSON string, exactly as the jsonb path would write
    it; any number or boolean in it (the declared type is the newest submission's, older rows keep theirs) still goes
    through the jsonb column, built only for rows that have one. Each jsonb object is built and then parsed again by
    ST_AsMVT: as text, a full z8-z10 DLTB tile's statement is ~0.8 ms (5%) cheaper (profiles/tiles-cold4.txt). A
    field of `only_strings` (every value of the version a string or null, `tile_types`) is its text column without
    a test of each value: ~1 ms of a 600-feature OSM tile (profiles/tiles-fixed.txt).

    Where the plan says so (`whole_props`: every key the version's rows carry is an attribute of the tile), the rows'
    `props` go to ST_AsMVT as they are: it keeps their strings, numbers and booleans and leaves out nulls, lists and
    objects, as the columns above do (a null's key still enters the layer's key table, unused). ~10% of a small
    detail-zoom DLTB tile's statement (profiles/tiles-small.txt §7).
    """
    value = "(s.props -> CAST(:tile_a{0} AS text))"
    columns, pairs, others = [], [], []
    key_field = KEY_PROPERTY in plan.attributes  # a field of that name: the key (when it is no MVT id) overrides it
    own_key = [f"CASE WHEN s.tile_numeric THEN NULL ELSE s.fkey END AS {KEY_PROPERTY}"] if plan.identified else []
    if plan.whole_props:
        return ", ".join([*own_key, "s.props AS tile_props"])
    for i, name in enumerate(plan.attributes):
        v = value.format(i)
        column = _text_column(name) if name in string_fields and not key_field else None
        if column is not None and name in only_strings:
            columns.append(f"s.props ->> CAST(:tile_a{i} AS text) AS {column}")
            continue
        if column is not None:
            columns.append(f"CASE WHEN jsonb_typeof({v}) = 'string' THEN s.props ->> CAST(:tile_a{i} AS text) END AS {column}")
            others.append(f"jsonb_typeof({v}) IN {_NOT_STRINGS}")
        pairs.append(f"CAST(:tile_a{i} AS text), CASE WHEN jsonb_typeof({v}) IN {_NOT_STRINGS if column else _SCALARS} THEN {v} END")
    attrs = f"jsonb_strip_nulls(jsonb_build_object({', '.join(pairs)}))"
    if key_field and plan.identified:
        return f"{attrs} || (CASE WHEN s.tile_numeric THEN CAST('{{}}' AS jsonb) ELSE jsonb_build_object('{KEY_PROPERTY}', s.fkey) END) AS tile_props"
    if key_field:
        return f"{attrs} AS tile_props"
    # The key as a text column of its own (NULL, so left out, when it is the MVT id), and no jsonb at all when no
    # attribute needs it (OSM below the detail zoom, DLTB's class there): ~0.5 ms of a full tile (profiles/tiles-cold3.txt).
    out = [*own_key, *columns]
    if len(others) < len(pairs):
        out.append(f"{attrs} AS tile_props")
    elif others:
        out.append(f"CASE WHEN {' OR '.join(others)} THEN {attrs} END AS tile_props")
    return ", ".join(out)


_NUMBERED = postgresql.psycopg.dialect(paramstyle="numeric_dollar")


@lru_cache(maxsize=256)
def _tile_statement(sql: str) -> tuple[str, tuple[str, ...]]:
    """The statement as PostgreSQL takes it ($1, $2 …, each name numbered once, as SQLAlchemy compiles a text clause)
    and its parameters' names in that order. Few distinct texts: the parameters vary, not the text."""
    compiled = sa.text(sql).compile(dialect=_NUMBERED)
    return compiled.string, tuple(compiled.positiontup or ())


def postgis_statement(engine: Engine, ds: catalog.Dataset, access: Access, plan: TilePlan) -> tuple[str, list[Any]]:
    """A planned tile's statement as PostgreSQL takes it ($1, $2 …) and its values in that order; no I/O (what the
    version's fields hold is asked of `tile_types` without waiting), so it can be made on the event loop too."""
    strings = tile_types.declared_strings(ds)
    only = tile_types.facts(engine, ds, plan.version).only_strings.intersection(plan.attributes)
    sql, params = postgis_tile_sql(plan, access, engine, strings, only)
    query, names = _tile_statement(sql)
    return query, [params[name] for name in names]


def tile_of_row(tile: bytes | None, count: int) -> tuple[bytes, int]:
    """(the tile's bytes, b"" when it has no feature; its feature count) from the statement's row."""
    return (bytes(tile) if tile and count else b""), int(count)


def tile_of_binary_row(row: Sequence[bytes | None] | None) -> tuple[bytes, int]:
    """`tile_of_row` of the statement's row as libpq gives it in binary (`store.libpq`: bytea as is, the count an int8)."""
    if row is None or row[1] is None:
        raise RuntimeError("the tile statement gave no row")
    return tile_of_row(row[0], int.from_bytes(row[1], "big", signed=True))


def _tile_row(conn: Connection, query: str, values: list[Any]) -> tuple[bytes, int]:
    """The tile statement in one round trip: (the tile's bytes, its feature count).

    No transaction of its own around it (the planner settings it needs are the session's,
    `store.db.POSTGRES_SESSION`; profiles/tiles-fixed.txt), so it may run on the request's read connection (one pool
    checkout a tile) or inside a caller's transaction alike. It goes to psycopg's raw cursor, numbered as above, with
    results in binary: through SQLAlchemy each tile paid its execution and result set-up, psycopg split a statement
    longer than its 4 KiB cache limit (a tile with many clear fields) on every call, and the bytea came back as hex
    to decode: 0.07-0.18 ms of client CPU a tile (profiles/tiles-lean.txt). Prepared at once on each connection
    (psycopg's default waits for a text's fifth run there): a few texts, each run on every tile.
    """
    with psycopg.RawCursor(conn.connection.driver_connection) as cur:
        cur.execute(query, values, binary=True, prepare=True)
        tile, count = cur.fetchone()
    return tile_of_row(tile, count)


def _render_postgis(
    engine: Engine, principal: Principal, ds: catalog.Dataset, access: Access, plan: TilePlan, conn: Connection | None = None,
    defer: gate.Defer | None = None,
) -> tuple[bytes, int]:
    """The PostGIS way of `render_planned` (which has checked the caller may read the data)."""
    query, values = postgis_statement(engine, ds, access, plan)
    if conn is not None:
        data, count = _tile_row(conn, query, values)
    else:
        with read_connection(engine) as own:
            data, count = _tile_row(own, query, values)
    audit_tile_read(engine, principal, ds, access, plan, count, defer=defer)
    return data, count


def audit_tile_read(
    engine: Engine, principal: Principal, ds: catalog.Dataset, access: Access, plan: TilePlan, count: int | None,
    defer: gate.Defer | None = None, **extra: Any,
) -> None:
    """The audit entry of a tile read not made through `gate.read_features` (same shape as the gate's), written now or
    handed to `defer` (`deps.Reads.after_close`: once the request's connection is back)."""
    if not access.audited:
        return
    gate.write_or_defer(defer, functools.partial(
        audit.record,
        engine,
        principal,
        "data.tiles",
        dataset_id=ds.id,
        version=plan.version,
        detail={
            **plan.audit_detail(),
            **extra,
            "bbox": list(plan.lonlat),
            "count": count,
            **gate.access_detail(access),
        },
    ))


# -- rendering and caching -------------------------------------------------------------------------
def _method(engine: Engine, method: Method) -> str:
    if method == "auto":
        return "postgis" if feature_store_for(engine).kind == "postgis" else "python"
    return method


def known_empty(engine: Engine, ds: catalog.Dataset, plan: TilePlan) -> bool:
    """Whether no feature of the version can meet the tile, known without a query: the tile lies wholly outside the
    version's extent (the min/max of its stored envelopes; strict inequalities, as a feature touching the tile's edge
    is in the tile), or over none of the cells its rows' envelopes span (`tile_occupancy`, once learnt). Only for the
    version the dataset row describes. Empty for every caller, whatever the access."""
    if plan.version != ds.current_version or not ds.extent or len(ds.extent) != 4:
        return False
    box = plan.query or plan.lonlat  # a GCJ-02 tile reads the CGCS2000 box behind it
    minx, miny, maxx, maxy = box
    ex0, ey0, ex1, ey1 = (float(v) for v in ds.extent)
    if maxx < ex0 or minx > ex1 or maxy < ey0 or miny > ey1:
        return True
    grid = tile_occupancy.occupancy(engine, ds, plan.version)
    return grid is not None and not grid.may_meet(box)


def render_planned(
    engine: Engine,
    principal: Principal,
    ds: catalog.Dataset,
    access: Access,
    plan: TilePlan,
    method: Method = "auto",
    conn: Connection | None = None,
    defer: gate.Defer | None = None,
) -> tuple[bytes, int]:
    """Make a planned tile (audited): (MVT bytes or b"" when empty, feature count).

    `conn`: a connection for the PostGIS statement (the request's read connection, `deps.Reads`), so a tile costs
    one pool checkout; never closed here. Without it the statement takes a connection of its own; the Python way
    reads on its own. `defer`: where the audit entry waits (`deps.Reads.after_close`) when
    the caller still holds a connection: written while it was held, each audited tile needed a second one, and more
    concurrent audited tiles than the pool holds would each wait for one none gives back.
    """
    if not access.visible:
        raise gate.not_found(ds.id)
    if known_empty(engine, ds, plan):
        audit_tile_read(engine, principal, ds, access, plan, 0, defer=defer)
        return b"", 0
    if _method(engine, method) == "postgis" and not plan.gcj02:
        return _render_postgis(engine, principal, ds, access, plan, conn, defer)
    return _render_python(engine, principal, ds, access, plan, defer)


def render_tile(
    engine: Engine,
    principal: Principal,
    ds: catalog.Dataset,
    access: Access,
    version: int | None,
    tms: TileMatrixSet | str,
    z: int,
    x: int,
    y: int,
    *,
    method: Method = "auto",
) -> bytes:
    """One tile of a version as this caller may see it: MVT bytes, b"" when the tile is empty.

    `method` picks the PostGIS (ST_AsMVT) or the Python way; "auto" uses ST_AsMVT on PostGIS.
    """
    plan = plan_tile(ds, access, version, tms, z, x, y, engine=engine)
    return render_planned(engine, principal, ds, access, plan, method)[0]


@dataclass(frozen=True)
class CachedTile:
    data: bytes
    count: int


@dataclass(frozen=True)
class Tile:
    data: bytes
    count: int
    etag: str
    cached: bool
    public: bool
    plan: TilePlan


_MAX_UNWRITTEN = 1024  # tiles waiting for the disk; past that, a tile stays in memory only


class TileCache:
    """Rendered tiles: an in-memory LRU bounded by bytes, and optionally files under a directory.

    Keys are `TilePlan.key` (hex digests: a key always names the same bytes). Files are written atomically, spread over
    256 sub-folders, and pruned oldest-first when the directory grows past `max_disk_bytes`.

    A tile goes to disk on its second request, not its first: most tiles a signed-in caller makes are asked for once
    (the key holds the caller's access signature), and a file per tile was ~0.4 ms of CPU in the serving process (create,
    write, rename; more than a small tile's own statement on a 2-core machine), spent on tiles nobody asks for again
    (benchmarks/profiles/tiles-lean.txt). So a new tile is kept in memory; the request that finds it there again hands it
    to the disk. A tile memory cannot keep (larger than the memory bound) is handed to the disk at once. The files are
    written by a thread of the cache's own, never by the request; until its file is written a tile is answered from the
    queue, and `flush` waits for the files.
    """

    _MAGIC = b"LCT1"

    def __init__(self, max_bytes: int = 64 << 20, directory: Path | None = None, max_disk_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory is not None else None
        self.max_disk_bytes = max_disk_bytes
        self._entries: OrderedDict[str, CachedTile] = OrderedDict()
        self._bytes = 0
        self._memory_only: set[str] = set()  # kept in memory, asked for once: not on disk
        self._disk_bytes: int | None = None
        self._folders: set[str] = set()  # sub-folders made (by the writer thread)
        self._lock = threading.Lock()
        self._unwritten: dict[str, CachedTile] = {}
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._writing = threading.Condition(self._lock)  # notified when `_unwritten` empties
        self._writer: threading.Thread | None = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.mvt"

    def get(self, key: str, disk: bool = True) -> CachedTile | None:
        """The tile under `key`, from memory or the writer's queue, else (`disk`) from its file."""
        queued = False
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                if key in self._memory_only:  # its second request: now worth a file
                    self._memory_only.discard(key)
                    queued = self._enqueue(key, entry)
            else:
                entry = self._unwritten.get(key)
                if entry is not None:
                    self.hits += 1
        if queued:
            self._queue.put(key)
        if entry is not None:
            return entry
        entry = self._read_disk(key) if disk else None
        with self._lock:
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._remember(key, entry)
        return entry

    def put(self, key: str, tile: CachedTile) -> None:
        with self._lock:
            self._remember(key, tile)
            if self.directory is None:
                return
            if key in self._entries:
                self._memory_only.add(key)  # to disk on its next request
                return
            queued = self._enqueue(key, tile)  # memory cannot keep it: now or never
        if queued:
            self._queue.put(key)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every tile handed to the disk so far is written (or given up on); False if `timeout` ran out."""
        with self._writing:
            return self._writing.wait_for(lambda: not self._unwritten, timeout)

    def _enqueue(self, key: str, tile: CachedTile) -> bool:
        """Hand a tile to the writer (call with `_lock` held, then put the key on the queue when True; only for a cache
        with a directory)."""
        if key in self._unwritten or len(self._unwritten) >= _MAX_UNWRITTEN:
            return False
        self._unwritten[key] = tile
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_queued, name="landcloud-tile-cache", daemon=True)
            self._writer.start()
        return True

    def _write_queued(self) -> None:
        while True:
            key = self._queue.get()
            with self._lock:
                tile = self._unwritten.get(key)
            if tile is not None:
                try:
                    self._write_disk(key, tile)
                except Exception:  # noqa: BLE001 - a cache: a file not written is a tile made again later
                    _log.warning("tile cache: writing %s failed", key, exc_info=True)
            with self._writing:
                self._unwritten.pop(key, None)
                if not self._unwritten:
                    self._writing.notify_all()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._memory_only.clear()
            self._bytes = 0

    def _remember(self, key: str, tile: CachedTile) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.data) + 64
        size = len(tile.data) + 64
        if size > self.max_bytes:
            return
        self._entries[key] = tile
        self._bytes += size
        while self._bytes > self.max_bytes and self._entries:
            dropped_key, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped.data) + 64
            self._memory_only.discard(dropped_key)  # asked for once in its time here: it never goes to disk

    def _read_disk(self, key: str) -> CachedTile | None:
        if self.directory is None:
            return None
        try:
            raw = self._path(key).read_bytes()
        except OSError:
            return None
        if len(raw) < 8 or raw[:4] != self._MAGIC:
            return None
        return CachedTile(raw[8:], int.from_bytes(raw[4:8], "big"))

    def _write_disk(self, key: str, tile: CachedTile) -> None:
        """Write one file (the writer thread's, which only a cache with a directory has: `_folders` is its own)."""
        path = self._path(key)
        try:
            if key[:2] not in self._folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(key[:2])
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(self._MAGIC + tile.count.to_bytes(4, "big") + tile.data)
            os.replace(tmp, path)
        except OSError:
            self._folders.discard(key[:2])  # the folder may be gone (pruned by hand): made again next time
            return
        with self._lock:
            if self._disk_bytes is None:
                self._disk_bytes = sum(p.stat().st_size for p in self._files())
            else:
                self._disk_bytes += len(tile.data) + 8
            over = self._disk_bytes > self.max_disk_bytes
        if over:
            self._prune_disk()

    def _files(self) -> Iterator[Path]:
        assert self.directory is not None
        return self.directory.glob("*/*.mvt")

    def _prune_disk(self) -> None:
        files = []
        for p in self._files():
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        files.sort()
        total = sum(size for _, size, _ in files)
        target = int(self.max_disk_bytes * 0.9)
        for _, size, p in files:
            if total <= target:
                break
            p.unlink(missing_ok=True)
            total -= size
        with self._lock:
            self._disk_bytes = total


def get_tile(
    engine: Engine,
    principal: Principal,
    ds: catalog.Dataset,
    access: Access,
    version: int | None,
    tms: TileMatrixSet | str,
    z: int,
    x: int,
    y: int,
    *,
    cache: TileCache | None = None,
    method: Method = "auto",
    plan: TilePlan | None = None,
    conn: Connection | None = None,
    defer: gate.Defer | None = None,
) -> Tile:
    """A tile from the cache or freshly made; audited either way (non-public data). `conn`, `defer`: see
    `render_planned`."""
    plan = plan or plan_tile(ds, access, version, tms, z, x, y, engine=engine)
    hit = cache.get(plan.key) if cache is not None else None
    if hit is not None:
        audit_tile_read(engine, principal, ds, access, plan, hit.count, defer=defer, cached=True)
        return Tile(hit.data, hit.count, plan.etag, True, plan.public, plan)
    data, count = render_planned(engine, principal, ds, access, plan, method, conn, defer)
    if cache is not None:
        cache.put(plan.key, CachedTile(data, count))
    return Tile(data, count, plan.etag, False, plan.public, plan)
