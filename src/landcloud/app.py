"""Assembles the FastAPI application: settings, store, routers, error handling."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError
from starlette.middleware import Middleware

from landcloud import __version__
from landcloud.access.admin_router import router as admin_router
from landcloud.access.audit_router import router as audit_router
from landcloud.access.auth_router import router as auth_router
from landcloud.access.decisions import DecisionCache, GenerationReader, Remembered, RememberedLayers
from landcloud.access.hardening import NUL_REFUSED, ASGIApp, Hardening, nul_character, origin_of
from landcloud.access.sharing_router import router as sharing_router
from landcloud.catalog.router import router as datasets_router
from landcloud.catalog.search_router import router as search_router
from landcloud.config import Settings, get_settings
from landcloud.ingest import submissions
from landcloud.ingest.router import router as submissions_router
from landcloud.messages import LandcloudError
from landcloud.publish.downloads_router import router as downloads_router
from landcloud.publish.editions_router import router as editions_router
from landcloud.publish.features_router import router as features_router
from landcloud.publish.here_router import router as here_router
from landcloud.publish.public_tiles import PublicTileCache, PublicTiles
from landcloud.publish.records_router import router as records_router
from landcloud.publish.tile_lane import TileLane
from landcloud.publish.tiles_router import PlainTileRoute, RememberedTiles
from landcloud.publish.tiles_router import router as tiles_router
from landcloud.store.db import backend_of
from landcloud.store.engine import get_engine
from landcloud.store.libpq import LoopPool
from landcloud.web import errors as web_errors
from landcloud.web.api import router as portal_api_router
from landcloud.web.assets import mount_assets
from landcloud.web.colours import legend, load_overrides
from landcloud.web.pages import router as pages_router

log = logging.getLogger(__name__)


def _freeze_startup_heap() -> None:
    """Move what start-up made (modules, FastAPI's routes and models, the app) out of the cyclic collector's reach.

    Every full collection walks all tracked objects, and a request that allocates much (a tile made the Python way,
    a page of features) triggers some: with the ~190,000 objects start-up leaves tracked, a full z8-z10 tile
    spent 5-7 ms of its ~29 ms of CPU in the collector (25-31 vs 23.4 ms frozen, 22-28 ms with the collector off:
    benchmarks/profiles/gc-freeze.txt). These objects live as long as the process, so walking them frees nothing.
    Process-wide, like the collector itself: undone at shutdown (tests start and stop many apps in one process).
    """
    gc.collect()
    gc.freeze()


class LandcloudApp(FastAPI):
    """FastAPI with layers of its own outside FastAPI's (`edge`, outermost first).

    FastAPI puts an application's middleware inside its own error layer, exception telemetry and body limit, each a
    coroutine to pass and the first a wrapper around `send`. A tile answered from memory (a public edition's, or a
    signed-in map's under a remembered decision) needs none of them: it is answered by the edge's tile layers, which
    report their own failures. The hardening layer goes outermost, so that FastAPI's own 500 carries the security
    headers too (it did not when hardening sat inside it). The same layers make the tile lane (`tile_lane`) that
    landcloud's HTTP protocol asks before any ASGI layer (`web.http_protocol`): only while nothing stands between the
    hardening layer and the server, and no middleware was added inside FastAPI's.
    """

    edge: list[Middleware]
    tile_lane: TileLane | None = None  # for the HTTP protocol (`web.http_protocol`): made with the edge's layers

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = super().build_middleware_stack()
        edge = getattr(self, "edge", [])
        layers: dict[type, Any] = {}
        for cls, args, kwargs in reversed(edge):
            app = layers[cls] = cls(app, *args, **kwargs)
        if edge and edge[0].cls is Hardening and RememberedTiles in layers and not self.user_middleware:  # (none in between)
            self.tile_lane = TileLane(self.state, layers[Hardening], layers.get(PublicTiles))
        return app


def create_app(settings: Settings | None = None) -> LandcloudApp:
    settings = settings or get_settings()
    engine = get_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        interrupted = submissions.mark_interrupted(engine)
        if interrupted:
            log.warning("%d submissions were interrupted by a restart and marked failed", interrupted)
        if settings.gc_freeze:
            _freeze_startup_heap()
        try:
            yield
        finally:
            app.state.generations.close()
            if app.state.loop_pool is not None:
                app.state.loop_pool.close()
            if settings.gc_freeze:
                gc.unfreeze()

    app = LandcloudApp(
        title="landcloud 国土资源云",
        version=__version__,
        description="The land-resources cloud: one map, one way in, one gate out. 一张图、一个入口、一道闸门。",
        lifespan=lifespan,
        # FastAPI asks OpenTelemetry's global providers whether to instrument on every request (unless told no here):
        # ~3% of a cached tile's CPU, for an instrumentation landcloud does not set up (Settings.opentelemetry)
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.decisions = DecisionCache[Remembered]()  # tiles' access decisions, per credential and dataset (access.decisions)
    app.state.layer_decisions = DecisionCache[RememberedLayers]()  # 'what is here': the readable datasets, per credential
    app.state.generations = GenerationReader(engine)  # whether they stand, for tiles answered on the event loop
    app.state.loop_pool = LoopPool.for_engine(engine)  # PostgreSQL: connections for tiles made on the event loop
    app.state.landuse_legend = legend(load_overrides(settings.landuse_colours_file))  # read once; a bad file stops the start

    @app.exception_handler(LandcloudError)
    async def landcloud_error(request: Request, exc: LandcloudError) -> Response:
        if web_errors.wants_page(request):
            return web_errors.error_page(request, exc.status, exc.message.zh, exc.message.en)
        return JSONResponse(status_code=exc.status, content=exc.to_dict())

    @app.exception_handler(DataError)
    async def value_the_store_refuses(request: Request, exc: DataError) -> Response:
        """A text with a NUL character (U+0000) in a body: PostgreSQL cannot hold one (psycopg refuses it before the
        statement is sent, so the transaction is rolled back and nothing is written). The caller's input, so a 400;
        any other value the store refuses is a fault of ours (500). URLs with one are refused at the edge."""
        if NUL_REFUSED not in str(exc.orig):
            raise exc
        return await landcloud_error(request, nul_character())

    web_errors.install(app)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={
                "error": "request.invalid",
                "message_zh": "请求参数无效",
                "message_en": "invalid request parameters",
                "details": jsonable_errors(exc.errors()),
            },
        )

    @app.get("/healthz", tags=["system"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "store": backend_of(engine), "version": __version__}

    # The read routers first: FastAPI matches a request by walking every included router's routes in
    # order (twice: to match, then to handle), so a feature page behind the twelve other routers spent
    # ~8% of its server CPU finding its route (benchmarks/profiles/request-path.txt). No path of one
    # router matches a path of another, so the order decides nothing else.
    app.router.routes.append(PlainTileRoute())  # a map's tiles without a query string, ahead of FastAPI's tile route
    app.include_router(records_router)  # before the features router: /ogc/collections/catalog is the catalogue
    app.include_router(features_router)
    app.include_router(tiles_router)
    app.include_router(here_router)
    app.include_router(auth_router)
    app.include_router(datasets_router)
    app.include_router(submissions_router)
    app.include_router(sharing_router)
    app.include_router(audit_router)
    app.include_router(admin_router)
    app.include_router(search_router)
    app.include_router(downloads_router)
    app.include_router(editions_router)
    app.include_router(portal_api_router)
    app.include_router(pages_router)
    missing = mount_assets(app, settings)
    if missing:
        log.warning("portal libraries missing (run `make install` / `npm ci`): %s", ", ".join(missing))
    # outermost first: limits and headers apply to every response, errors included; then the tile layers that answer
    # from memory before routing (a public edition's tiles, then a signed-in map's under a remembered decision)
    edge = [Middleware(Hardening, settings=settings, map_origins=origin_of(settings.basemap_url))]
    if settings.public_tile_cache_mb > 0:
        app.state.public_tiles = PublicTileCache(settings.public_tile_cache_mb << 20, settings.public_tile_check_ms)
        edge.append(Middleware(PublicTiles, engine=engine, cache=app.state.public_tiles))
    edge.append(Middleware(RememberedTiles))
    app.edge = edge
    return app


def jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", [])), "msg": str(e.get("msg", "")), "type": e.get("type", "")} for e in errors]


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of the application, including those of included routers.

    FastAPI keeps included routers as nested entries, not as a flat list; the route-guard test
    walks them all through this one function.
    """
    out: list[APIRoute] = []
    stack: list[Any] = list(app.routes)
    while stack:
        route = stack.pop(0)
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):
            stack.extend(route.original_router.routes)
    return out
