"""The lean path for anonymous tiles of published editions (publish/public_tiles.py).

It must answer exactly what the normal route answers (bytes, headers, ETag/304, 204), keep the
security headers and the anonymous tile rate limit, follow un-publishing and a newly approved
version within its check window, and never serve a signed-in caller or a master dataset.
"""

from __future__ import annotations

import time
from pathlib import Path

import mapbox_vector_tile
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_tiles import pg_url  # noqa: F401 (a database of our own)
from test_tiles_api import tile_url

from landcloud.access.principal import system_principal
from landcloud.app import create_app
from landcloud.catalog.tables import datasets as datasets_table
from landcloud.config import Settings
from landcloud.publish import editions
from landcloud.publish.public_tiles import PublicTileCache

from world import World, build, parcels, submit

pytestmark = pytest.mark.usefixtures("version_facts_at_once")  # answers compared across requests

EDITION = "open-dltb-public"
EMPTY = f"/ogc/collections/{EDITION}/tiles/WebMercatorQuad/12/0/0"  # the Atlantic
CHECK_MS = 300


def lean_app(settings: Settings, **overrides: object) -> TestClient:
    return TestClient(create_app(settings.model_copy(update={"public_tile_check_ms": CHECK_MS, **overrides})))


def lean_cache(client: TestClient) -> PublicTileCache:
    return client.app.state.public_tiles  # type: ignore[attr-defined]


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    return build(engine, settings, lean_app(settings), tmp_path)


def keys_in(resp: object) -> set[str]:
    layer = mapbox_vector_tile.decode(resp.content)[EDITION]  # type: ignore[attr-defined]
    return {f["properties"].get("BSM") for f in layer["features"]}


def test_the_lean_path_answers_what_the_route_answers(world: World, settings: Settings) -> None:
    cache = lean_cache(world.client)
    plain = TestClient(create_app(settings.model_copy(update={"public_tile_cache_mb": 0})))  # the normal route only
    assert not hasattr(plain.app.state, "public_tiles")
    url = tile_url(EDITION)
    first = world.get(url, None)
    assert first.status_code == 200 and keys_in(first) == {"OPEN-1"}
    assert (cache.hits, len(cache)) == (0, 1)  # the route answered; its answer is kept
    again = world.get(url, None)
    assert cache.hits == 1
    reference = plain.get(url)
    for resp in (again, reference):
        assert resp.status_code == 200 and resp.content == first.content
        assert dict(resp.headers) == dict(first.headers)  # ETag, Cache-Control, Vary, content type, security headers
    assert again.headers["cache-control"] == "public, max-age=3600" and again.headers["x-frame-options"] == "DENY"

    etag = first.headers["etag"]
    for inm in (etag, f'W/{etag}, "other"', "*"):
        lean_304 = world.client.get(url, headers={"If-None-Match": inm})
        route_304 = plain.get(url, headers={"If-None-Match": inm})
        assert lean_304.status_code == route_304.status_code == 304 and lean_304.content == b""
        assert dict(lean_304.headers) == dict(route_304.headers)
    assert cache.hits == 4
    assert world.client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200

    empty = [world.get(EMPTY, None) for _ in range(2)]
    assert cache.hits == 6 and len(cache) == 2
    for resp in [*empty, plain.get(EMPTY)]:
        assert resp.status_code == 204 and resp.content == b"" and dict(resp.headers) == dict(empty[0].headers)
    # history (a query string) and bad addresses go to the route, and are not kept
    assert world.get(url, None, params={"version": 1}).headers["cache-control"] == "public, max-age=86400"
    assert world.get(f"/ogc/collections/{EDITION}/tiles/WebMercatorQuad/19/0/0", None).status_code == 404
    assert world.get(f"/ogc/collections/{EDITION}/tiles/Nope/12/0/0", None).status_code == 404
    assert (cache.hits, len(cache)) == (6, 2)


def test_the_anonymous_tile_rate_limit_still_applies(world: World, settings: Settings) -> None:
    client = lean_app(settings, rate_limit_tiles_per_minute=3)
    url = tile_url(EDITION)
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 200]
    assert lean_cache(client).hits == 2
    limited = client.get(url)
    assert limited.status_code == 429 and limited.json()["error"] == "request.rate_limited"
    assert limited.headers["x-content-type-options"] == "nosniff"
    assert lean_cache(client).hits == 2


def _new_master_version(world: World, engine: sa.Engine, settings: Settings, tmp_path: Path) -> int:
    """A second parcel in the same tile: the master's new version and its edition, pending approval."""
    rows = [("OPEN-1", "230102101201", "230102199001018888"), ("OPEN-2", "230102101201", "230102199001019999")]
    submit(engine, settings, tmp_path, "open-dltb", "230000", parcels(rows))
    me = system_principal()
    pending = [e for e in editions.list_editions(engine, me, "open-dltb") if e["status"] == "pending"]
    edition = pending[0] if pending else editions.build(engine, settings, me, "open-dltb")
    return int(edition["id"])


def test_a_new_approved_version_and_unpublishing_take_effect_within_the_window(
    world: World, engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    cache = lean_cache(world.client)
    url = tile_url(EDITION)
    assert keys_in(world.get(url, None)) == {"OPEN-1"}
    eid = _new_master_version(world, engine, settings, tmp_path)
    time.sleep(CHECK_MS / 1000 + 0.1)
    # pending: the public keeps the published version; the owner unit's staff (signed in) review the new one
    assert keys_in(world.get(url, None)) == {"OPEN-1"}
    hits = cache.hits
    staff = world.get(url, "prov")
    assert keys_in(staff) == {"OPEN-1", "OPEN-2"} and staff.headers["cache-control"] == "private, no-cache"
    assert cache.hits == hits  # a signed-in request never takes the lean path
    assert keys_in(world.get(url, None)) == {"OPEN-1"} and cache.hits == hits + 1

    editions.approve(engine, system_principal(), eid)
    time.sleep(CHECK_MS / 1000 + 0.1)
    assert keys_in(world.get(url, None)) == {"OPEN-1", "OPEN-2"}
    assert keys_in(world.get(url, None)) == {"OPEN-1", "OPEN-2"}

    # withdrawn (no command does this yet; the column is what the gate reads): gone within the window
    with engine.begin() as conn:
        conn.execute(datasets_table.update().where(datasets_table.c.id == EDITION).values(published_version=None))
    time.sleep(CHECK_MS / 1000 + 0.1)
    assert world.get(url, None).status_code == 404
    assert world.get(url, None).status_code == 404


def test_signed_in_callers_and_masters_never_take_it(world: World) -> None:
    cache = lean_cache(world.client)
    url = tile_url(EDITION)
    assert world.get(url, None).status_code == 200 and len(cache) == 1
    assert world.get(url, "qqhr").status_code == 200  # a signed-in reader outside the owner unit: the route answers
    bogus = world.client.get(url, headers={"Cookie": "landcloud_session=forged"})
    assert bogus.status_code == 401  # a session cookie, even a forged one, is checked by the route
    assert cache.hits == 0
    master = tile_url("open-dltb")
    for _ in range(2):
        assert world.get(master, None).status_code == 404  # the public never reads a master
        resp = world.get(master, "prov")
        assert resp.status_code == 200 and resp.headers["cache-control"] == "private, no-cache"
    assert (cache.hits, len(cache)) == (0, 1)
