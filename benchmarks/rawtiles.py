"""The raw tile query behind the thinnest Python HTTP server: the floor of any Python tile server on PostGIS.

    RAWTILES_DSN=postgresql://… RAWTILES_LAYERS='{"dltb": ["dltb_plain", "DLBM"]}' \
        python -m uvicorn rawtiles:app --app-dir benchmarks --port N

`GET /tiles/{layer}/{z}/{x}/{y}` runs `rawmvt.RAW_MVT` (the very statement of the "no HTTP" anchor, one plain
column, no access rules, no simplification, with the same settings) and answers the tile (204 when empty). Starlette + uvicorn, as
landcloud and pygeoapi run, in the anchors venv (psycopg2 there), one connection per worker thread. It is the
second tile anchor: set against the raw query without HTTP it shows what HTTP alone costs a Python server, so a
reader can tell landcloud's own work (authentication, the gate, simplification, the key) from the protocol's.
"""

from __future__ import annotations

import json
import os
import threading

import psycopg2
from rawmvt import RAW_MVT, RAW_SETTINGS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

DSN = os.environ["RAWTILES_DSN"]
SQL = {name: RAW_MVT.format(table=table, column=column) for name, (table, column) in json.loads(os.environ["RAWTILES_LAYERS"]).items()}
# psycopg2 sends every statement with its values spelled out, so PostgreSQL would plan each tile anew; psycopg (3), as
# the no-HTTP anchor and landcloud use it, prepares a statement run often and reuses its plan. Prepared here too, so the
# two anchors differ by HTTP only.
_PREPARED = {name: f"tile_{i}" for i, name in enumerate(SQL)}
_local = threading.local()


def _cursor():
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg2.connect(DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(RAW_SETTINGS)
            for name, sql in SQL.items():
                params = sql.replace("%(z)s", "$1").replace("%(x)s", "$2").replace("%(y)s", "$3")
                cur.execute(f"PREPARE {_PREPARED[name]} (integer, integer, integer) AS {params}")
    return conn.cursor()


def tile(request: Request) -> Response:
    p = request.path_params
    name = _PREPARED.get(p["layer"])
    if name is None:
        return PlainTextResponse("no such layer", status_code=404)
    with _cursor() as cur:
        cur.execute(f"EXECUTE {name} (%s, %s, %s)", (p["z"], p["x"], p["y"]))
        data = cur.fetchone()[0]
    if not data:
        return Response(status_code=204)
    return Response(bytes(data), media_type="application/vnd.mapbox-vector-tile")


def ready(_request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/tiles/{layer}/{z:int}/{x:int}/{y:int}", tile), Route("/ready", ready)])
