"""The OGC API – Tiles routes in the small province of tests/world.py: who sees which rows and fields.

A county's tile holds only its own rows, the province's all of them, the public's nothing of
internal data; masked fields never reach a tile; the cache never hands one caller's tile to
another; a new version changes the tile and history still answers.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import pytest
import shapely
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_tiles import pg_url  # noqa: F401 (a database of our own)

from landcloud.app import create_app
from landcloud.config import Settings
from landcloud.geo.tiles import WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD
from landcloud.publish.tiles import KEY_PROPERTY, MEDIA_TYPE
from landcloud.publish.tiles_router import router as tiles_router

from builders import grid_parcels
from world import HRB_ROWS, MINE_ROWS, World, build, parcels, submit

Z = 12
ALL_HRB = {r[0] for r in HRB_ROWS}
CLEAR_IDS = {r[2] for r in HRB_ROWS}
# hrb-dltb (v2) rows each caller's tile holds, and whether 证件号 (QLRZJH, sensitive) is in it; None: 404, set(): 403
EXPECTED: dict[str | None, tuple[set[str] | None, bool]] = {
    None: (None, False),
    "prov": (ALL_HRB, False),
    "hrb": (ALL_HRB, False),
    "hrbadmin": (ALL_HRB, True),
    "qqhr": (set(), False),
    "daoli": ({"HRB-A1", "HRB-A2"}, False),
    "nangang": ({"HRB-B1", "HRB-B2"}, False),
    "bank": (set(), False),
    "sec": (None, False),
}


def tiles_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    if not any(getattr(r, "path", "") == "/ogc/tileMatrixSets" for r in app.routes):
        app.include_router(tiles_router)  # until app.py mounts it
    return app


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    return build(engine, settings, TestClient(tiles_app(settings)), tmp_path)


def harbin_tile(tms: Any = WEB_MERCATOR_QUAD, z: int = Z) -> tuple[int, int]:
    """The tile holding every test parcel (checked, not assumed)."""
    extent = shapely.union_all([shapely.geometry.shape(f["geometry"]) for f in grid_parcels(3, origin=(126.6, 45.74))])
    x, y = tms.tile_for_lonlat(extent.centroid.x, extent.centroid.y, z)
    assert shapely.box(*tms.tile_bounds_lonlat(z, x, y)).contains(extent)
    return x, y


def tile_url(dataset: str = "hrb-dltb", tms: Any = WEB_MERCATOR_QUAD, z: int = Z) -> str:
    x, y = harbin_tile(tms, z)
    return f"/ogc/collections/{dataset}/tiles/{tms.id}/{z}/{y}/{x}"


def revalidate(world: World, path: str, who: str | None, etag: str) -> Any:
    return world.client.get(path, headers={**world.headers(who), "If-None-Match": etag})


def features(resp: Any, dataset: str = "hrb-dltb") -> dict[str, dict[str, Any]]:
    assert resp.status_code == 200 and resp.headers["content-type"] == MEDIA_TYPE, resp.text
    layer = mapbox_vector_tile.decode(resp.content)[dataset]
    assert layer["extent"] == 4096
    return {f["properties"][KEY_PROPERTY]: f["properties"] for f in layer["features"]}


def test_tile_matrix_sets_tilesets_and_tilejson(world: World) -> None:
    sets = world.get("/ogc/tileMatrixSets", None).json()["tileMatrixSets"]
    assert [s["id"] for s in sets] == ["WebMercatorQuad", "WorldCRS84Quad"]
    assert all(s["links"][0]["href"].endswith(f"/ogc/tileMatrixSets/{s['id']}") for s in sets)
    doc = world.get("/ogc/tileMatrixSets/WorldCRS84Quad", None).json()
    assert doc["tileMatrices"][0]["matrixWidth"] == 2 and doc["tileMatrices"][0]["matrixHeight"] == 1
    unknown = world.get("/ogc/tileMatrixSets/EPSG4490", None)
    assert unknown.status_code == 404 and unknown.json()["error"] == "tiles.unknown_tms"

    listed = world.get("/ogc/collections/hrb-dltb/tiles", "hrb").json()
    assert [t["tileMatrixSetURI"].rsplit("/", 1)[1] for t in listed["tilesets"]] == ["WebMercatorQuad", "WorldCRS84Quad"]
    assert all(t["dataType"] == "vector" for t in listed["tilesets"])

    meta = world.get("/ogc/collections/hrb-dltb/tiles/WebMercatorQuad", "hrb").json()
    rels = {link["rel"]: link for link in meta["links"]}
    assert rels["item"]["href"].endswith("/ogc/collections/hrb-dltb/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}")
    assert rels["item"]["type"] == MEDIA_TYPE and rels["item"]["templated"] is True
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"]["href"].endswith("/ogc/tileMatrixSets/WebMercatorQuad")
    assert rels["tilejson"]["href"].endswith("/tiles/WebMercatorQuad/tilejson.json")
    props = meta["layers"][0]["propertiesSchema"]["properties"]
    assert "DLBM" in props and "QLRZJH" not in props  # masked for a viewer: not in its tiles at all
    assert "QLRZJH" in world.get("/ogc/collections/hrb-dltb/tiles/WebMercatorQuad", "hrbadmin").json()["layers"][0]["propertiesSchema"]["properties"]
    limits = {lim["tileMatrix"]: lim for lim in meta["tileMatrixSetLimits"]}
    x, y = harbin_tile()
    assert limits[str(Z)]["minTileCol"] <= x <= limits[str(Z)]["maxTileCol"]
    assert limits[str(Z)]["minTileRow"] <= y <= limits[str(Z)]["maxTileRow"]

    tj = world.get("/ogc/collections/hrb-dltb/tiles/WebMercatorQuad/tilejson.json", "hrb").json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith("/ogc/collections/hrb-dltb/tiles/WebMercatorQuad/{z}/{y}/{x}")
    assert tj["minzoom"] == 0 and tj["maxzoom"] == 18 and tj["bounds"][0] == pytest.approx(126.6)
    layer = tj["vector_layers"][0]
    assert layer["id"] == "hrb-dltb" and layer["fields"]["DLBM"] == "String" and layer["fields"]["TBMJ"] == "Number"
    assert "QLRZJH" not in layer["fields"]
    old = world.get("/ogc/collections/hrb-dltb/tiles/WorldCRS84Quad/tilejson.json", "hrb", params={"version": 1}).json()
    assert old["tiles"][0].endswith("/WorldCRS84Quad/{z}/{y}/{x}?version=1")
    assert world.get("/ogc/collections/hrb-dltb/tiles/WebMercatorQuad/tilejson.json", "hrb", params={"version": 9}).status_code == 404
    # the gate: unknown to the public, listed but not readable for others
    for path in ("/tiles", "/tiles/WebMercatorQuad", "/tiles/WebMercatorQuad/tilejson.json"):
        assert world.get(f"/ogc/collections/hrb-dltb{path}", None).status_code == 404
        assert world.get(f"/ogc/collections/hrb-dltb{path}", "bank").status_code == 403
        assert world.get(f"/ogc/collections/daoli-mine{path}", "prov").status_code == 403


def test_each_caller_gets_its_rows_and_clear_fields_and_never_anothers_cached_tile(world: World) -> None:
    url = tile_url()
    etags: dict[str | None, str] = {}
    for who in ["daoli", *[w for w in EXPECTED if w != "daoli"]]:  # the county first: its tile is cached first
        rows, clear = EXPECTED[who]
        resp = world.get(url, who)
        if rows is None:
            assert resp.status_code == 404, who
            continue
        if not rows:
            assert resp.status_code == 403 and resp.json()["error"] == "access.application_required", who
            continue
        got = features(resp)
        assert set(got) == rows, who
        for bsm, props in got.items():
            assert ("QLRZJH" in props) == clear, who
            if clear:
                assert props["QLRZJH"] == next(r[2] for r in HRB_ROWS if r[0] == bsm)
        if not clear:
            assert not any(text in resp.text for text in CLEAR_IDS)  # not even masked: left out
        assert resp.headers["cache-control"] == "private, no-cache"
        etags[who] = resp.headers["etag"]
    assert len({etags["daoli"], etags["nangang"], etags["prov"], etags["hrbadmin"]}) == 4
    # the county's ETag does not make the province's tile "not modified"
    prov = revalidate(world, url, "prov", etags["daoli"])
    assert prov.status_code == 200 and set(features(prov)) == ALL_HRB
    again = revalidate(world, url, "daoli", etags["daoli"])
    assert again.status_code == 304 and again.headers["etag"] == etags["daoli"] and not again.content
    cached = world.get(url, "daoli")
    assert set(features(cached)) == EXPECTED["daoli"][0] and cached.headers["etag"] == etags["daoli"]
    assert world.get(url, None).status_code == 404  # the public, after all that caching
    # sensitive data: the owner county only
    mine = tile_url("daoli-mine")
    assert set(features(world.get(mine, "daoli"), "daoli-mine")) == {r[0] for r in MINE_ROWS}
    for who in ("prov", "hrb", "nangang"):
        assert world.get(mine, who).status_code == 403
    # every read was audited, cache hits and revalidations too
    entries = world.get("/api/audit", "aud", params={"action": "data.tiles", "limit": 1000}).json()["entries"]
    daoli = [e for e in entries if e["actor"] == "daoli" and e["dataset_id"] == "hrb-dltb"]
    assert len(daoli) == 3 and all((e["detail"]["z"], e["detail"]["tms"]) == (Z, "WebMercatorQuad") for e in daoli)
    assert [(e["detail"].get("not_modified"), e["detail"].get("cached")) for e in daoli] == [(None, True), (True, None), (None, None)]
    assert all(e["detail"]["count"] == 2 and e["detail"]["rows"] == "restricted" for e in daoli)


def test_public_data_caching_and_bad_requests(world: World) -> None:
    url = tile_url("open-dltb-public")
    resp = world.get(url, None)
    assert set(features(resp, "open-dltb-public")) == {"OPEN-1"}
    assert resp.headers["cache-control"] == "public, max-age=3600"
    assert world.get(url, None, params={"version": 1}).headers["cache-control"] == "public, max-age=86400"
    entries = world.get("/api/audit", "aud", params={"action": "data.tiles", "limit": 1000}).json()["entries"]
    assert not [e for e in entries if e["dataset_id"] == "open-dltb-public"]  # public reads are not logged
    assert world.get(tile_url("open-dltb"), None).status_code == 404  # the master, even open and public: never to the public
    master = world.get(tile_url("open-dltb"), "prov")
    assert master.status_code == 200 and master.headers["cache-control"] == "private, no-cache"  # no shared cache keeps it
    crs84 = world.get(tile_url("hrb-dltb", WORLD_CRS84_QUAD), "prov")
    assert set(features(crs84)) == ALL_HRB
    base = "/ogc/collections/hrb-dltb/tiles"
    assert world.get(f"{base}/WebMercatorQuad/12/0/0", "prov").status_code == 204  # the Atlantic: empty
    for path, status, code in [
        (f"{base}/WebMercatorQuad/12/0/4096", 400, "tile.bad_index"),
        (f"{base}/WebMercatorQuad/12/-1/0", 400, "tile.bad_index"),
        (f"{base}/WebMercatorQuad/x/0/0", 400, "tile.bad_index"),
        (f"{base}/WebMercatorQuad/25/0/0", 400, "tile.bad_zoom"),
        (f"{base}/WorldCRS84Quad/0/1/0", 400, "tile.bad_index"),
        (f"{base}/GoogleMapsCompatible/12/0/0", 404, "tiles.unknown_tms"),
        (f"{base}/WebMercatorQuad/19/0/0", 404, "tiles.zoom_not_served"),
    ]:
        resp = world.get(path, "prov")
        assert resp.status_code == status and resp.json()["error"] == code, path
    assert world.get(f"{base}/WebMercatorQuad/12/0/0", "prov", params={"version": 7}).status_code == 404


def test_a_new_version_changes_the_tile_and_history_still_answers(
    world: World, engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    url = tile_url()
    before = world.get(url, "hrb")
    assert features(before)["HRB-A1"]["DLBM"] == "0702"  # version 2
    rows = parcels([r for r in HRB_ROWS])
    v3 = copy.deepcopy(rows)
    v3[0]["properties"].update(DLBM="1006", DLMC="农村道路")
    folder = tmp_path / "v3"
    folder.mkdir()
    submit(engine, settings, folder, "hrb-dltb", "230100", v3)
    after = world.get(url, "hrb")
    assert after.headers["etag"] != before.headers["etag"]
    assert features(after)["HRB-A1"]["DLBM"] == "1006"
    assert revalidate(world, url, "hrb", before.headers["etag"]).status_code == 200
    history = world.get(url, "hrb", params={"version": 2})
    assert history.headers["etag"] == before.headers["etag"] and history.content == before.content
    first = world.get(url, "hrb", params={"version": 1})
    assert features(first)["HRB-A1"]["DLBM"] == HRB_DLBM_V1


HRB_DLBM_V1 = grid_parcels(3, origin=(126.6, 45.74))[0]["properties"]["DLBM"]


def test_a_tile_outside_the_extent_is_empty_without_a_query_and_still_audited(world: World) -> None:
    # daoli-mine (sensitive, audited) lies in Harbin: a tile over the Atlantic is outside its extent
    resp = world.get("/ogc/collections/daoli-mine/tiles/WebMercatorQuad/12/0/0", "daoli")
    assert resp.status_code == 204 and not resp.content
    assert world.get("/ogc/collections/daoli-mine/tiles/WebMercatorQuad/12/0/0", "prov").status_code == 403
    entries = world.get("/api/audit", "aud", params={"action": "data.tiles", "limit": 1000}).json()["entries"]
    mine = [e for e in entries if e["dataset_id"] == "daoli-mine" and e["actor"] == "daoli"]
    assert len(mine) == 1 and (mine[0]["detail"]["count"], mine[0]["detail"]["x"], mine[0]["detail"]["y"]) == (0, 0, 0)


@pytest.mark.usefixtures("version_facts_at_once")  # a tile compared across requests
def test_the_plain_tile_route_answers_as_the_fastapi_route(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tile request without a query string is served by `PlainTileRoute` (no FastAPI dependency solving); with one,
    by the FastAPI route. For each caller and each kind of answer (rows, 403, 404, 204, 400s) both give the same."""
    from landcloud.publish import tiles_router as module

    plain_calls = []
    threadpool = module.run_in_threadpool

    async def counting(func: Any, *args: Any) -> Any:
        plain_calls.append(args[3])  # the dataset id
        return await threadpool(func, *args)

    monkeypatch.setattr(module, "run_in_threadpool", counting)
    base = "/ogc/collections/hrb-dltb/tiles"
    paths = [tile_url(), tile_url("daoli-mine"), tile_url("open-dltb-public"), tile_url("no-such-data"),
             f"{base}/WebMercatorQuad/12/0/0", f"{base}/WebMercatorQuad/12/0/4096", f"{base}/WebMercatorQuad/x/0/0",
             f"{base}/WebMercatorQuad/25/0/0", f"{base}/GoogleMapsCompatible/12/0/0"]
    statuses = set()
    for who in EXPECTED:
        for path in paths:
            before = len(plain_calls)
            plain = world.get(path, who)
            assert len(plain_calls) == before + 1, (who, path)  # the plain route took it
            routed = world.get(path, who, params={"gcj02": "false"})  # the same request, with a query string
            assert len(plain_calls) == before + 1, (who, path)  # the FastAPI route took it
            statuses.add(plain.status_code)
            assert plain.status_code == routed.status_code and plain.content == routed.content, (who, path)
            for header in ("content-type", "etag", "cache-control", "vary", "content-security-policy"):
                assert plain.headers.get(header) == routed.headers.get(header), (who, path, header)
    assert statuses == {200, 204, 400, 403, 404}
    assert world.client.head(tile_url(), headers=world.headers("prov")).status_code == 405  # GET only, as the route
