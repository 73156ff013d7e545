"""Tiles answered from a dict behind the thinnest Python HTTP server of landcloud's own stack: the floor of a cached tile.

    FLOORTILES_DSN=postgresql://… FLOORTILES_LAYERS='{"dltb": ["dltb_plain", "DLBM"]}' \
        .venv/bin/python -m uvicorn floortiles:app --app-dir benchmarks --port N

`GET /tiles/{layer}/{z}/{x}/{y}` answers the tile's bytes from memory, made by `rawmvt.RAW_MVT` (psycopg 3, prepared)
the first time it is asked for (204 when empty). An async endpoint (no thread hop), no headers beyond the type, no
access rules, no cache key: what serving a remembered tile costs Starlette + uvicorn (httptools, uvloop) in this
venv, as landcloud runs. The goal's "5,000 cached tiles a second on one core" is 0.2 ms of CPU a tile; the bench
measures this server's CPU a tile beside landcloud's in the same run, so a reader can tell the machine's speed at that
moment (this server's figure) from landcloud's own work (the rest).
"""

from __future__ import annotations

import json
import os
import threading

import psycopg
from rawmvt import RAW_MVT, RAW_SETTINGS
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

DSN = os.environ["FLOORTILES_DSN"]
SQL = {name: RAW_MVT.format(table=table, column=column) for name, (table, column) in json.loads(os.environ["FLOORTILES_LAYERS"]).items()}
_TILES: dict[tuple[str, int, int, int], bytes] = {}
_local = threading.local()


def _made(layer: str, z: int, x: int, y: int) -> bytes:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(DSN, autocommit=True)
        conn.execute(RAW_SETTINGS)
    row = conn.execute(SQL[layer], {"z": z, "x": x, "y": y}, prepare=True).fetchone()
    return bytes(row[0]) if row and row[0] else b""


async def tile(request: Request) -> Response:
    p = request.path_params
    if p["layer"] not in SQL:
        return PlainTextResponse("no such layer", status_code=404)
    key = (p["layer"], p["z"], p["x"], p["y"])
    data = _TILES.get(key)
    if data is None:
        data = _TILES[key] = await run_in_threadpool(_made, *key)
    if not data:
        return Response(status_code=204)
    return Response(data, media_type="application/vnd.mapbox-vector-tile")


async def ready(_request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/tiles/{layer}/{z:int}/{x:int}/{y:int}", tile), Route("/ready", ready)])
