"""OGC API – Tiles (vector tiles, MVT) and TileJSON for MapLibre, through the gate.

    GET /ogc/tileMatrixSets                                              tile matrix sets
    GET /ogc/tileMatrixSets/{tms}                                        OGC TMS 2.0 document
    GET /ogc/collections/{id}/tiles                                      tilesets of a dataset
    GET /ogc/collections/{id}/tiles/{tms}                                tileset metadata
    GET /ogc/collections/{id}/tiles/{tms}/tilejson.json                  TileJSON 3.0.0
    GET /ogc/collections/{id}/tiles/{tms}/{tileMatrix}/{tileRow}/{tileCol}   one tile (MVT)

Every route asks who is calling; every dataset route goes through the gate (404 for a dataset
the caller may not know of, 403 for one it may only apply for). Tiles are ETagged with their
cache key (which holds the caller's access signature), answer 304 to a matching If-None-Match,
204 when empty, and are `private, no-cache` unless the data are open and public.

`gcj02=true` on the tileset, TileJSON and tile URLs asks for tiles in GCJ-02 (for overlay on
GCJ-02 basemaps): offered only by the public editions whose release profile enables it, a 400
everywhere else.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Route, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from landcloud.access import decisions, gate
from landcloud.access.hardening import Answer
from landcloud.access.policy import Access
from landcloud.catalog import datasets as catalog
from landcloud.deps import EngineDep, PrincipalDep, Reads, ReadsDep, close_reads
from landcloud.geo.gcj02 import wgs84_to_gcj02
from landcloud.geo.tiles import TILE_MATRIX_SETS, BBox, TileMatrixSet, get_tms
from landcloud.messages import LandcloudError
from landcloud.publish import editions
from landcloud.publish.ogc_crs import gcj02_not_offered
from landcloud.publish.public_tiles import STATE_KEY as PUBLIC_TILE_STATE
from landcloud.publish.public_tiles import etag_matches
from landcloud.publish.tiles import (
    KEY_PROPERTY,
    MEDIA_TYPE,
    CachedTile,
    TileCache,
    TilePlan,
    audit_tile_read,
    field_types,
    get_tile,
    known_empty,
    known_stamp,
    plan_tile,
    postgis_statement,
    tile_attributes,
    tile_config,
    tile_of_binary_row,
)
from landcloud.store.db import backend_of
from landcloud.store.libpq import LoopPool

log = logging.getLogger(__name__)

router = APIRouter(prefix="/ogc", tags=["tiles"])

TILES_CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
]
REL_TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
REL_TILESETS_VECTOR = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
PUBLIC_MAX_AGE = 3600
HISTORY_MAX_AGE = 86400
_INDEX = re.compile(r"^[0-9]{1,10}$")
_cache_lock = threading.Lock()


def tile_cache(request: Request) -> TileCache:
    """The application's tile cache (memory, and files under the data dir's `tiles/`), made on first use."""
    return tile_cache_of(request.app.state)


def tile_cache_of(state: Any) -> TileCache:
    """`tile_cache` for code that has the application's state but no request (the layer before routing)."""
    cache = getattr(state, "tile_cache", None)
    if cache is None:
        with _cache_lock:
            cache = getattr(state, "tile_cache", None)
            if cache is None:
                settings = getattr(state, "settings", None)
                cache = TileCache(directory=settings.data_dir / "tiles" if settings is not None else None)
                state.tile_cache = cache
    return cache


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _query(version: int | None, gcj02: bool = False) -> str:
    params = [*([f"version={version}"] if version is not None else []), *(["gcj02=true"] if gcj02 else [])]
    return f"?{'&'.join(params)}" if params else ""


def _check_version(engine: Any, ds: catalog.Dataset, access: Access, version: int | None, gcj02: bool) -> None:
    """A version asked for must be one the caller may read (404); GCJ-02 tiles only of an edition version that offers them."""
    if version is None and not gcj02:
        return
    v = gate.readable_version(ds, access, version)
    if gcj02 and not editions.offers_gcj02(engine, ds, v):
        raise gcj02_not_offered(ds.id)


def _tile_index(name: str, value: str) -> int:
    if not _INDEX.match(value):
        raise LandcloudError(
            "tile.bad_index",
            f"瓦片参数 {name} 应为非负整数（收到“{value}”）",
            f"tile parameter {name} must be a non-negative integer (got '{value}')",
        )
    return int(value)


def _tms_summary(base: str, tms: TileMatrixSet) -> dict[str, Any]:
    return {
        "id": tms.id,
        "title": tms.title,
        "uri": tms.uri,
        "crs": tms.crs,
        "links": [{"rel": "self", "href": f"{base}/ogc/tileMatrixSets/{tms.id}", "type": "application/json", "title": tms.title}],
    }


@router.get("/tileMatrixSets")
def list_tile_matrix_sets(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    """The tile matrix sets tiles are served in."""
    base = _base(request)
    return {
        "tileMatrixSets": [_tms_summary(base, t) for t in TILE_MATRIX_SETS.values()],
        "links": [{"rel": "self", "href": f"{base}/ogc/tileMatrixSets", "type": "application/json"}],
    }


@router.get("/tileMatrixSets/{tms_id}")
def get_tile_matrix_set(tms_id: str, request: Request, principal: PrincipalDep) -> dict[str, Any]:
    """One tile matrix set as an OGC Two Dimensional Tile Matrix Set 2.0 document."""
    tms = get_tms(tms_id)
    doc = tms.document()
    doc["links"] = [{"rel": "self", "href": f"{_base(request)}/ogc/tileMatrixSets/{tms.id}", "type": "application/json"}]
    return doc


def _collection_url(base: str, dataset_id: str) -> str:
    return f"{base}/ogc/collections/{quote(dataset_id)}"


def _tileset_links(base: str, dataset_id: str, tms: TileMatrixSet, version: int | None, gcj02: bool = False) -> list[dict[str, Any]]:
    root = f"{_collection_url(base, dataset_id)}/tiles/{tms.id}"
    q = _query(version, gcj02)
    return [
        {"rel": "self", "href": f"{root}{q}", "type": "application/json", "title": f"{tms.id} tileset"},
        {"rel": REL_TILING_SCHEME, "href": f"{base}/ogc/tileMatrixSets/{tms.id}", "type": "application/json", "title": tms.title},
        {"rel": "item", "href": f"{root}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}{q}", "type": MEDIA_TYPE, "templated": True,
         "title": "Mapbox vector tiles"},
        {"rel": "alternate", "href": f"{root}/tilejson.json{q}", "type": "application/vnd.mapbox.tile+json", "title": "TileJSON"},
        {"rel": "tilejson", "href": f"{root}/tilejson.json{q}", "type": "application/json", "title": "TileJSON 3.0.0 (MapLibre)"},
        {"rel": "collection", "href": _collection_url(base, dataset_id), "type": "application/json"},
    ]


@router.get("/collections/{dataset_id}/tiles")
def list_tilesets(dataset_id: str, request: Request, engine: EngineDep, principal: PrincipalDep, version: int | None = None) -> dict[str, Any]:
    """The vector tilesets of a dataset, one per tile matrix set."""
    ds, access = gate.dataset_for_read(engine, principal, dataset_id)
    _check_version(engine, ds, access, version, False)
    base = _base(request)
    tilesets = []
    for tms in TILE_MATRIX_SETS.values():
        tilesets.append({
            "title": f"{ds.title} ({tms.id})",
            "dataType": "vector",
            "crs": tms.crs,
            "tileMatrixSetURI": tms.uri,
            "links": [link for link in _tileset_links(base, ds.id, tms, version) if link["rel"] in ("self", REL_TILING_SCHEME, "item")],
        })
    return {
        "links": [
            {"rel": "self", "href": f"{_collection_url(base, ds.id)}/tiles{_query(version)}", "type": "application/json"},
            {"rel": "collection", "href": _collection_url(base, ds.id), "type": "application/json"},
        ],
        "tilesets": tilesets,
    }


def _extent(ds: catalog.Dataset, gcj02: bool = False) -> BBox | None:
    if not ds.extent or len(ds.extent) != 4:
        return None
    minx, miny, maxx, maxy = (float(v) for v in ds.extent)
    if gcj02:  # the offset grows both ways across a box: take the shifted corners' bounds
        xs, ys = wgs84_to_gcj02([minx, maxx, minx, maxx], [miny, miny, maxy, maxy])
        return float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))
    return minx, miny, maxx, maxy


@router.get("/collections/{dataset_id}/tiles/{tms_id}")
def tileset(
    dataset_id: str, tms_id: str, request: Request, engine: EngineDep, principal: PrincipalDep, version: int | None = None,
    gcj02: bool = False,
) -> dict[str, Any]:
    """Tileset metadata (OGC API – Tiles), with the tile URL template and a TileJSON link."""
    tms = get_tms(tms_id)
    ds, access = gate.dataset_for_read(engine, principal, dataset_id)
    _check_version(engine, ds, access, version, gcj02)
    cfg = tile_config(ds)
    extent = _extent(ds, gcj02)
    fields = field_types(ds, tile_attributes(ds, access, cfg.maxzoom))
    properties = {name: {"type": {"String": "string", "Number": "number", "Boolean": "boolean"}[t]} for name, t in fields.items()}
    properties[KEY_PROPERTY] = {
        "type": "string",
        "description": f"feature key, when it is not a plain integer (else the MVT id); from zoom {cfg.detail_zoom} (below it, no ids)",
    }
    doc: dict[str, Any] = {
        "title": f"{ds.title} ({tms.id})",
        "description": ds.description,
        "dataType": "vector",
        "crs": tms.crs,
        "tileMatrixSetURI": tms.uri,
        "tileMatrixSetLimits": tms.limits(extent, cfg.minzoom, cfg.maxzoom),
        "minTileMatrix": str(cfg.minzoom),
        "maxTileMatrix": str(cfg.maxzoom),
        "layers": [{
            "id": ds.id,
            "title": ds.title,
            "dataType": "vector",
            "minTileMatrix": str(cfg.minzoom),
            "maxTileMatrix": str(cfg.maxzoom),
            "propertiesSchema": {"type": "object", "properties": properties},
        }],
        "links": _tileset_links(_base(request), ds.id, tms, version, gcj02),
    }
    if extent:
        doc["boundingBox"] = {"lowerLeft": list(extent[:2]), "upperRight": list(extent[2:]), "crs": CRS84}
    return doc


@router.get("/collections/{dataset_id}/tiles/{tms_id}/tilejson.json")
def tilejson(
    dataset_id: str, tms_id: str, request: Request, engine: EngineDep, principal: PrincipalDep, version: int | None = None,
    gcj02: bool = False,
) -> dict[str, Any]:
    """TileJSON 3.0.0 of the tileset: what MapLibre needs for a `vector` source (`gcj02=true`: for GCJ-02 basemaps)."""
    tms = get_tms(tms_id)
    ds, access = gate.dataset_for_read(engine, principal, dataset_id)
    _check_version(engine, ds, access, version, gcj02)
    cfg = tile_config(ds)
    extent = _extent(ds, gcj02) or (-180.0, -85.0511, 180.0, 85.0511)
    root = f"{_collection_url(_base(request), ds.id)}/tiles/{tms.id}"
    fields = field_types(ds, tile_attributes(ds, access, cfg.maxzoom))
    fields[KEY_PROPERTY] = "String"
    center_zoom = min(max(cfg.minzoom, 10), cfg.maxzoom)
    doc: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": ds.title,
        "description": ds.description,
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [f"{root}/{{z}}/{{y}}/{{x}}{_query(version, gcj02)}"],
        "minzoom": cfg.minzoom,
        "maxzoom": cfg.maxzoom,
        "bounds": list(extent),
        "center": [(extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2, center_zoom],
        "vector_layers": [{
            "id": ds.id,
            "description": ds.title,
            "minzoom": cfg.minzoom,
            "maxzoom": cfg.maxzoom,
            "fields": fields,
        }],
    }
    if tms.geographic:
        doc["crs"] = tms.crs  # not Web Mercator: for clients that take a lon/lat tile grid (OpenLayers, Cesium)
    return doc


TILE_PATH = "/ogc/collections/{dataset_id}/tiles/{tms_id}/{z}/{y}/{x}"
_PLAIN_TILE = compile_path(TILE_PATH)[0]  # as Starlette matches it


@router.get("/collections/{dataset_id}/tiles/{tms_id}/{z}/{y}/{x}")
def tile(
    dataset_id: str,
    tms_id: str,
    z: str,
    y: str,
    x: str,
    request: Request,
    engine: EngineDep,
    reads: ReadsDep,
    version: int | None = None,
    gcj02: bool = False,
) -> Response:
    """One vector tile (tileMatrix z, tileRow y, tileCol x): only the rows and clear fields the caller may see.

    A request without a query string is answered by `PlainTileRoute` (the same `serve_tile`), ahead of this route."""
    return serve_tile(request, engine, reads, dataset_id, tms_id, z, y, x, version, gcj02)


def _answer_headers(request: Request, ds: catalog.Dataset, plan: TilePlan, version: int | None, gcj02: bool) -> dict[str, str]:
    """A tile answer's caching headers; a tile of the public edition as anyone reads it is marked for the public tiles
    layer to keep (`public_tiles`)."""
    mark_public(request.scope, ds, plan, version, gcj02)
    return answer_headers(plan, version)


def mark_public(scope: Scope, ds: catalog.Dataset, plan: TilePlan, version: int | None, gcj02: bool) -> None:
    """Tells `public_tiles.PublicTiles` (in the request's state) that this answer is the public edition's tile as anyone
    reads it, so that it may keep it."""
    if plan.public and version is None and not gcj02:
        updated = ds.updated_at.isoformat() if ds.updated_at else ""
        scope.setdefault("state", {})[PUBLIC_TILE_STATE] = (ds.id, plan.version, updated)


def answer_headers(plan: TilePlan, version: int | None) -> dict[str, str]:
    """The caching headers of a tile's answer (200, 204 and 304 alike)."""
    if plan.public:
        cache_control = f"public, max-age={HISTORY_MAX_AGE if version is not None else PUBLIC_MAX_AGE}"
    else:
        cache_control = "private, no-cache"
    return {"ETag": plan.etag, "Cache-Control": cache_control, "Vary": "Authorization, Cookie"}


def serve_tile(
    request: Request, engine: Engine, reads: Reads, dataset_id: str, tms_id: str, z: str, y: str, x: str,
    version: int | None, gcj02: bool,
) -> Response:
    """A tile's response, the same whichever route took the request."""
    tms = get_tms(tms_id)
    zi, yi, xi = _tile_index("tileMatrix", z), _tile_index("tileRow", y), _tile_index("tileCol", x)
    tms.check(zi, xi, yi)
    # the access generation, authentication and the gate's read (both only when the remembered decision no longer
    # stands: access.decisions) and (PostGIS) the tile statement on one connection, in this worker thread (deps.Reads):
    # one pool checkout per tile; the audit entry waits for it to be back (`reads.after_close`). The Python way
    # (SQLite, GCJ-02) reads on connections of its own.
    attempt: _Attempt | None = request.scope.get("state", {}).pop(_ATTEMPT, None) if version is None and not gcj02 else None
    principal, ds, access = decisions.decide_read(
        request.app.state.decisions, engine, request, dataset_id, reads.conn, lambda: reads.principal,
        peeked=(attempt.key, attempt.remembered) if attempt is not None else None,
    )
    _check_version(reads.conn, ds, access, version, gcj02)
    if attempt is not None and ds is attempt.remembered.decision.ds and access is attempt.remembered.decision.access:
        plan = attempt.plan  # the layer's, for this very decision
    else:
        plan = plan_tile(ds, access, version, tms, zi, xi, yi, engine=engine, gcj02=gcj02, conn=reads.conn)
    conn = reads.conn if backend_of(engine) == "postgis" and not gcj02 else None
    if conn is None:
        reads.close()  # before the tile's own reads: one connection held at a time
    headers = _answer_headers(request, ds, plan, version, gcj02)
    cache = tile_cache(request)
    if etag_matches(request.headers.get("if-none-match", "").encode("latin-1"), plan.etag.encode("latin-1")):
        hit = cache.get(plan.key)
        audit_tile_read(engine, principal, ds, access, plan, hit.count if hit else None, defer=reads.after_close, not_modified=True)
        reads.close()
        return Response(status_code=304, headers=headers)
    result = get_tile(engine, principal, ds, access, version, tms, zi, xi, yi, cache=cache, plan=plan, conn=conn,
                      defer=reads.after_close)
    reads.close()  # the connection back before the answer is sent, then the audit entry that waited for it
    return _tile_response(result.data, headers)


def _tile_response(data: bytes, headers: dict[str, str]) -> Response:
    """A tile's bytes as the answer: 204 for an empty tile."""
    if not data:
        return Response(status_code=204, headers=headers)
    return Response(content=data, media_type=MEDIA_TYPE, headers=headers)


class PlainTileRoute(Route):
    """The tile path when the request has no query string (a map's tile of the current version, as TileJSON hands
    it out): served by `serve_tile` without FastAPI's dependency solving, parameter model and route walk.

    Each signed-in tile is a request of its own, a map view asks for dozens at once, and those steps were ~0.2 ms of
    the ~1.3 ms an empty tile costs the server (benchmarks/profiles/tiles-lean.txt). Everything else is as for any
    route: it sits in the application's router ahead of the included routers, inside the same middleware (rate limit,
    body limit, security headers, public tiles) and error handlers, and it authenticates and decides through `Reads`
    and the gate like the FastAPI route. A query string (`version`, `gcj02`, anything else) goes to the FastAPI route,
    which validates it and is the one the OpenAPI document describes.
    """

    def __init__(self) -> None:
        super().__init__(TILE_PATH, _plain_tile, methods=["GET"], include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("query_string") or scope.get("method") != "GET":  # HEAD too: the FastAPI route answers it (405)
            return Match.NONE, {}
        return super().matches(scope)


_warned_at = [-math.inf]
_ATTEMPT = "landcloud.tile_attempt"
LANE_TRIED = "landcloud.tile_lane"  # in a request's state: `tile_lane.TileLane.later` looked already (and left _ATTEMPT)


@dataclass(frozen=True)
class _Attempt:
    """What `remembered_tile` found for a tile it could not answer (not in memory): the request's decision key, the
    remembered decision and the tile's plan under it. `serve_tile` confirms that decision with the generation it reads
    and then takes the plan, rather than making both again (~15% of a cold small tile's Python time)."""

    key: decisions.Key
    remembered: decisions.Remembered
    plan: TilePlan


def warn_loop_failed(error: BaseException | None = None) -> None:
    """Logged once a minute at most: while the store cannot be read every tile would say so. (`error`: the failure,
    when it is not the one being handled.)"""
    now = time.monotonic()
    if now - _warned_at[0] >= 60:
        _warned_at[0] = now
        log.warning("tiles: reading the store on the event loop failed; tiles take the full path", exc_info=error or True)


_MEDIA_TYPE_HEADER = (b"content-type", MEDIA_TYPE.encode())


@dataclass(frozen=True)
class _Remembered:
    """A tile's plan under one remembered decision, with its answer's headers as they are sent (`answer_headers`, in
    the order and spelling Starlette's `Response` gives them: the route's answer, byte for byte)."""

    plan: TilePlan
    etag: bytes
    headers: list[tuple[bytes, bytes]]  # ETag, Cache-Control, Vary (a 200 adds its length and type)

    @classmethod
    def of(cls, plan: TilePlan) -> _Remembered:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers(plan, None).items()]
        return cls(plan, plan.etag.encode("latin-1"), headers)

    def answer(self, status: int, data: bytes) -> Answer:
        if status != 200:
            return status, list(self.headers), b""
        return 200, [*self.headers, (b"content-length", str(len(data)).encode()), _MEDIA_TYPE_HEADER], data


class Found(NamedTuple):
    """What a remembered tile's lane found before the access generation is read: the request's decision key, the
    remembered decision, the tile's plan under it, the tile if in memory (or on disk), whether the caller has it.
    (A tuple: made for every such tile, and a frozen dataclass's making is several times slower.)"""

    key: decisions.Key
    remembered: decisions.Remembered
    known: _Remembered
    hit: CachedTile | None
    not_modified: bool

    @property
    def at_hand(self) -> bool:
        """Whether the answer needs no tile made: the tile in memory (or on disk), or the caller's copy current."""
        return self.hit is not None or self.not_modified

    @property
    def data(self) -> bytes:
        """The tile found (b"": none, or empty)."""
        return self.hit.data if self.hit is not None else b""

    def answer(self, state: Any, generation: decisions.Generation, data: bytes) -> Answer | None:
        """The answer once `generation` is read (sent after the request came), if the decision still stands."""
        if not state.decisions.confirm(self.key, self.remembered, generation):
            return None
        if self.not_modified:
            return self.known.answer(304, b"")
        return self.known.answer(200 if data else 204, data)


def remembered_found(state: Any, headers: Iterable[tuple[bytes, bytes]], params: dict[str, str]) -> Found | None:
    """A remembered decision for the request's credential and dataset, and the tile's plan under it; None: the full path
    answers (no decision remembered, one that needs an audit entry, a plan that cannot be known here)."""
    authorization, cookies, if_none_match = decisions.request_credentials(headers)
    key = (decisions.credential_key_of(authorization, cookies), params["dataset_id"])
    remembered = state.decisions.peek(key)
    if remembered is None or remembered.decision.access.audited:
        return None
    known = _remembered_plan(state.engine, remembered, params["tms_id"], params["z"], params["y"], params["x"])
    if known is None:
        return None
    loop_pool: LoopPool | None = getattr(state, "loop_pool", None)
    hit = tile_cache_of(state).get(known.plan.key, disk=loop_pool is not None)  # its file too when the tile would be made here
    return Found(key, remembered, known, hit, etag_matches(if_none_match, known.etag))


def remembered_tile_now(state: Any, headers: Iterable[tuple[bytes, bytes]], params: dict[str, str]) -> Answer | None:
    """`remembered_tile`'s answer where it needs no waiting: the tile in memory (or the caller's copy current), the
    access generation read at once (SQLite: `GenerationReader.now`); else None. For the HTTP protocol's lane
    (`web.http_protocol`), which answers before any ASGI layer and without a coroutine."""
    reader: decisions.GenerationReader | None = getattr(state, "generations", None)
    if reader is None or not reader.available:
        return None
    found = remembered_found(state, headers, params)
    if found is None or not found.at_hand:
        return None
    try:
        generation = reader.now()
    except Exception:  # noqa: BLE001 - the full path asks the store itself, and reports what fails
        warn_loop_failed()
        return None
    if generation is None:
        return None
    return found.answer(state, generation, found.data)


async def remembered_tile(scope: Scope, params: dict[str, str], state: Any = None, found: Found | None = None) -> Answer | None:
    """The tile's answer, made on the event loop (by `RememberedTiles`, before routing) under a remembered decision,
    else None (`serve_tile` answers).

    A map's tiles come back: panning, zooming out and in, another tab. Such a tile of a signed-in caller is already in
    the tile cache and its decision remembered (`access.decisions`); what is left to ask the store is whether that
    decision still stands, one shared read of the access generation (`decisions.GenerationReader`). Without a worker
    thread, a pooled connection or a statement of its own this was ~0.7 of a cached tile's ~0.75 ms (benchmarks/
    profiles/tiles-decisions.txt). On PostgreSQL a tile not in memory is made here too, its statement on a connection
    of the loop's own (`_made_on_loop`), beside that read. Only what `serve_tile` would answer the same: a remembered
    decision that needs no audit entry, a plan whose version stamp is known; anything else, and any failure, goes to
    it (with what was found here, `_Attempt`, when the decision may still stand). `found`: `remembered_found`'s answer
    for this request when the caller has it already (the HTTP protocol's lane).

    On the ASGI scope itself, not a Starlette `Request`, and its answer as ASGI messages, not a `Response`: what is
    left of such a tile's cost is the Python around it (benchmarks/profiles/tiles-edge.txt).
    """
    state = state if state is not None else scope["app"].state
    reader: decisions.GenerationReader | None = getattr(state, "generations", None)
    if reader is None or not reader.available:
        return None
    found = found or remembered_found(state, scope["headers"], params)
    if found is None:
        return None
    plan = found.known.plan
    data = found.data
    try:
        if found.at_hand:
            generation = await reader.current()
        else:
            made = await _made_on_loop(state.engine, getattr(state, "loop_pool", None), reader, tile_cache_of(state),
                                       found.remembered.decision.ds, found.remembered.decision.access, plan)
            if made is None:  # to be made by serve_tile: what was found here goes with the request
                scope.setdefault("state", {})[_ATTEMPT] = _Attempt(found.key, found.remembered, plan)
                return None
            generation, data = made
    except Exception:  # noqa: BLE001 - the full path asks the store itself, and reports what fails
        warn_loop_failed()
        return None
    answer = found.answer(state, generation, data)
    if answer is not None:
        mark_public(scope, found.remembered.decision.ds, plan, None, False)
    return answer


_PLANS_MAX = 4096
_plans: dict[tuple[int, str, str, str, str], tuple[weakref.ref[decisions.Remembered], _Remembered]] = {}


def _remembered_plan(
    engine: Engine, remembered: decisions.Remembered, tms_id: str, z: str, y: str, x: str
) -> _Remembered | None:
    """The plan of a tile under a remembered decision, with its answer's headers (`_Remembered`; None: the full path
    answers: a bad index, a stamp not known), made once per decision and tile: a map comes back to the same tiles, and planning one (bounds, attributes, the
    key's digest; ~15 us) was a tenth of a cached signed-in tile's server CPU (1M parcels, PostGIS: 0.200-0.203 ms
    a tile against 0.173-0.182 with this; benchmarks/profiles/tiles-cached-postgis.txt). Nothing a
    plan holds changes while the decision is the same object: its dataset row and access, so its version and that
    version's stamp. (The one fact that may be learnt meanwhile, whether the version's whole props go to ST_AsMVT
    (`tiles.whole_props`), then waits for the next decision, at most `decisions.MAX_AGE_S`: the plan is right either
    way.) On the event loop only; bounded, emptied when full; a decision is held weakly (the decision cache's bound on
    what decisions hold stays the bound: a county's boundary may be a megabyte)."""
    key = (id(remembered), tms_id, z, y, x)
    found = _plans.get(key)
    if found is not None and found[0]() is remembered:
        return found[1]
    ds, access = remembered.decision.ds, remembered.decision.access
    try:
        tms = get_tms(tms_id)
        zi, yi, xi = _tile_index("tileMatrix", z), _tile_index("tileRow", y), _tile_index("tileCol", x)
        stamp = known_stamp(engine, ds, gate.readable_version(ds, access, None))
        if stamp is None:
            return None
        plan = plan_tile(ds, access, None, tms, zi, xi, yi, engine=engine, stamp=stamp)
    except LandcloudError:
        return None  # the full path gives the error
    if len(_plans) >= _PLANS_MAX:
        _plans.clear()
    known = _Remembered.of(plan)
    _plans[key] = (weakref.ref(remembered), known)
    return known


async def _made_on_loop(
    engine: Engine, pool: LoopPool | None, reader: decisions.GenerationReader, cache: TileCache, ds: catalog.Dataset,
    access: Access, plan: TilePlan,
) -> tuple[decisions.Generation, bytes] | None:
    """(the generation, the tile's bytes) for a tile neither in memory nor on disk, made on the event loop: PostgreSQL
    only (SQLite's tiles are made in Python, work for a worker thread), None when it must go to `serve_tile` (another
    store, no connection of the loop's pool free).

    A cold tile's request on the full path was a worker thread, a pooled connection and its return, and psycopg's
    synchronous execution around the statement (with the layers after this one and the second look at the decision,
    ~a third of a small tile's Python time; benchmarks/profiles/tiles-decisions.txt §7). Here the statement goes to one
    of a few connections of the loop's own (`store.libpq.LoopPool`), the access generation read by the statement
    itself (`decisions.with_generation`: one round trip, not a second read of the generation beside it): sent after
    the request came, as on the full path, and the caller confirms the decision with it before anything is answered.
    The tile is kept in the cache as `get_tile` keeps it, even if the decision then turns out not to stand: its key
    names its content (the version and the access signature), not who asked.
    """
    if pool is None or not access.visible:
        return None
    if known_empty(engine, ds, plan):
        return await reader.current(), b""
    query, values = postgis_statement(engine, ds, access, plan)
    held = await pool.take()
    if held is None:
        return None
    ok = False
    try:  # a failure or a cancellation half-way: the connection is let go, not given back for the next
        row = await held.run(decisions.with_generation(query), values)
        ok = True
    finally:
        pool.give_back(held, ok)
    data, count = tile_of_binary_row(row)  # (its first two columns; no row raises)
    generation = decisions.binary_generation(row[2:])  # type: ignore[index]
    cache.put(plan.key, CachedTile(data, count))
    return generation, data


class RememberedTiles:
    """The ASGI layer that answers `remembered_tile`'s tiles before routing (beside `public_tiles.PublicTiles`, inside
    the rate limit and the security headers): FastAPI's exception and exit-stack layers, the router and the route's
    request handling were a fifth of such a tile's CPU. Only a GET of the tile path without a query string, as
    `PlainTileRoute` takes it; everything it does not answer goes on to the application unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET" and not scope.get("query_string") and LANE_TRIED not in scope.get("state", ()):
            match = _PLAIN_TILE.match(scope.get("path", ""))
            if match is not None:
                answer = await remembered_tile(scope, match.groupdict())
                if answer is not None:
                    status, headers, body = answer
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


async def _plain_tile(request: Request) -> Response:
    p = request.path_params
    reads = Reads(request)
    try:
        return await run_in_threadpool(
            serve_tile, request, request.app.state.engine, reads, p["dataset_id"], p["tms_id"], p["z"], p["y"], p["x"], None, False,
        )
    finally:
        await close_reads(reads)
