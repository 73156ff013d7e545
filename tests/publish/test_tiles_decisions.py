"""Tiles on remembered access decisions (`access.decisions`): every change still counts on the very next tile.

In the small province of tests/world.py, on both stores and both tile routes: a caller's second tile is served on the
decision made for its first, and then a revoked token, a disabled account, a changed role, a granted or revoked
grant, a dataset's new policy, a grant's end and a token's expiry by the clock each change the next answer; an
audited dataset's tiles are each audited, with the request's own address.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_tiles import pg_url  # noqa: F401 (a database of our own)
from test_tiles_api import tile_url, tiles_app

from landcloud import clock
from landcloud.access import decisions, tokens, users
from landcloud.access.decisions import DecisionCache
from landcloud.access.tables import audit_log, grants
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.publish import tiles_router
from landcloud.publish.tiles import TileCache
from landcloud.store.libpq import LoopConnection, LoopPool

from world import World, build, grant_to_bank, hrb_token

pytestmark = pytest.mark.usefixtures("version_facts_at_once")  # answers compared across requests


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    return build(engine, settings, TestClient(tiles_app(settings)), tmp_path)


def cache_of(world: World) -> DecisionCache:
    return world.client.app.state.decisions  # type: ignore[attr-defined,no-any-return]


def status(world: World, who: str | None, path: str, query: str = "") -> int:
    return world.get(path + query, who).status_code


@pytest.mark.parametrize("query", ["", "?version=2"], ids=["plain-route", "fastapi-route"])
def test_every_change_counts_on_the_next_tile(world: World, engine: sa.Engine, settings: Settings, query: str) -> None:
    path = tile_url()
    cache = cache_of(world)
    assert status(world, "daoli", path, query) == 200
    hits = cache.hits
    first = world.get(path + query, "daoli")
    assert first.status_code == 200 and cache.hits == hits + 1  # the second tile: the decision made for the first

    users.set_roles(engine, "daoli", ["secadmin"])  # an administrator reads no data: the gate refuses
    assert status(world, "daoli", path, query) in (403, 404)
    users.set_roles(engine, "daoli", ["viewer"])
    assert status(world, "daoli", path, query) == 200
    users.set_active(engine, "daoli", False)  # a disabled account: its credential is refused
    assert status(world, "daoli", path, query) == 401
    users.set_active(engine, "daoli", True)

    # a personal API token, revoked
    user, token_id = hrb_token(engine, settings, world, "map")
    assert [status(world, "hrb-token", path, query) for _ in range(2)] == [200, 200]
    tokens.revoke_token(engine, user, token_id)
    assert status(world, "hrb-token", path, query) == 401

    # a grant to the bank: made, then revoked (plain SQL: any path counts)
    assert status(world, "bank", path, query) == 403
    grant_id = grant_to_bank(engine, clock.now() - timedelta(hours=1), clock.now() + timedelta(hours=1), clock.now())
    assert [status(world, "bank", path, query) for _ in range(2)] == [200, 200]
    with engine.begin() as conn:
        conn.execute(grants.update().where(grants.c.id == grant_id).values(revoked_at=clock.now()))
    assert status(world, "bank", path, query) == 403

    # the dataset made sensitive: the owner unit only, not the province
    assert [status(world, "prov", path, query) for _ in range(2)] == [200, 200]
    catalog.update_metadata(engine, "hrb-dltb", {"security_level": "sensitive"})  # the owner unit only
    assert status(world, "prov", path, query) in (403, 404)


def test_the_clock_alone_ends_a_remembered_decision(
    world: World, engine: sa.Engine, settings: Settings, moved_clock: list[timedelta]
) -> None:
    path = tile_url()
    real = clock.now()
    grant_to_bank(engine, real + timedelta(minutes=10), real + timedelta(minutes=20), real)
    hrb_token(engine, settings, world, "short", expires_days=1)
    cache = cache_of(world)
    assert [status(world, "bank", path) for _ in range(2)] == [403, 403]  # not yet begun
    assert [status(world, "hrb-token", path) for _ in range(2)] == [200, 200]
    hits = cache.hits
    moved_clock[0] = timedelta(minutes=10)  # the grant begins: no write, the clock alone
    assert [status(world, "bank", path) for _ in range(2)] == [200, 200]
    assert cache.hits == hits + 1
    moved_clock[0] = timedelta(minutes=20)  # … and ends
    assert status(world, "bank", path) == 403
    assert status(world, "hrb-token", path) == 200
    moved_clock[0] = timedelta(days=1)  # the token's expiry
    assert status(world, "hrb-token", path) == 401


def test_each_tile_of_an_audited_dataset_is_audited_with_its_own_address(world: World, engine: sa.Engine) -> None:
    path = tile_url("daoli-mine")
    cache = cache_of(world)
    hits = cache.hits
    headers = world.headers("daoliadmin")
    answers = [TestClient(world.client.app, client=(f"10.1.2.{i}", 5000)).get(path, headers=headers) for i in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert cache.hits == hits + 2  # the second and third on the first's decision
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "data.tiles", audit_log.c.dataset_id == "daoli-mine")
            .order_by(audit_log.c.seq)
        ).all()
    assert [(r.actor, r.ip) for r in rows] == [("daoliadmin", f"10.1.2.{i}") for i in range(3)]


def _answer(resp: Any) -> tuple[int, bytes, dict[str, str | None]]:
    names = ("etag", "cache-control", "vary", "content-type", "x-content-type-options", "content-security-policy")
    return resp.status_code, resp.content, {n: resp.headers.get(n) for n in names}


def test_a_cached_tile_is_answered_on_the_event_loop_as_the_full_path_answers_it(
    world: World, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second request of a tile (in memory, decision remembered) is answered by `remembered_tile` after one read
    of the access generation; its answer is the full path's, 200, 204 and 304 alike; a change still counts at once."""
    app = world.client.app
    reader = app.state.generations  # type: ignore[attr-defined]
    # open, public data: a signed-in caller's reads of it are not audited (an audited tile always takes the full path)
    empty = tile_url("open-dltb").rsplit("/", 2)[0] + "/0/0"  # a tile far from Harbin: 204
    for path in (tile_url("open-dltb"), empty):
        full = world.get(path, "daoli")
        assert full.status_code in (200, 204)
        reads = reader.reads
        lean = world.get(path, "daoli")
        assert reader.reads == reads + 1  # answered on the loop
        assert _answer(lean) == _answer(full)
        assert lean.headers["x-content-type-options"] == "nosniff"  # inside the security headers, as every answer
        etag = full.headers["etag"]
        lean_304 = world.client.get(path, headers={**world.headers("daoli"), "If-None-Match": etag})
        assert reader.reads == reads + 2 and lean_304.status_code == 304
        app.state.generations = None  # type: ignore[attr-defined]  # the same requests through the full path
        try:
            full_304 = world.client.get(path, headers={**world.headers("daoli"), "If-None-Match": etag})
            again = world.get(path, "daoli")
        finally:
            app.state.generations = reader  # type: ignore[attr-defined]
        assert _answer(full_304) == _answer(lean_304) and _answer(again) == _answer(full)

    reads = reader.reads
    users.set_active(engine, "daoli", False)
    assert world.get(tile_url("open-dltb"), "daoli").status_code == 401  # the read saw the change: the full path refused
    assert reader.reads == reads + 1

    mine = tile_url("daoli-mine")  # audited: every tile through the full path, which writes its entry
    assert [world.get(mine, "daoliadmin").status_code for _ in range(2)] == [200, 200]
    assert reader.reads == reads + 1

    async def gone() -> Any:
        raise OSError("the store went away")

    monkeypatch.setattr(reader, "current", gone)  # a failing read: the full path answers
    assert [world.get(tile_url("open-dltb"), "prov").status_code for _ in range(2)] == [200, 200]


def _counted_plans(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """The (z, x, y) of every plan the tile routes and the layer before routing make from now on."""
    plans: list[tuple[int, int, int]] = []
    real_plan = tiles_router.plan_tile

    def counted(*args: Any, **kwargs: Any) -> Any:
        plans.append(args[4:7])
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(tiles_router, "plan_tile", counted)
    return plans


def test_a_tile_made_on_what_the_layer_looked_up_still_sees_every_change(
    world: World, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tile not in memory: the layer before routing hands the remembered decision and the plan to `serve_tile`
    (`tiles_router._Attempt`), which takes them only once the generation it reads confirms the decision: the plan is
    made once a tile, the answer is the full path's, and a change between the two still counts."""
    app = world.client.app
    app.state.tile_cache = TileCache(max_bytes=0)  # type: ignore[attr-defined]  # keeps nothing: every tile is made
    cache = cache_of(world)
    plans = _counted_plans(monkeypatch)
    path = tile_url("open-dltb")  # open data: not audited, so the layer looks
    first = world.get(path, "daoli")
    assert first.status_code == 200 and len(plans) == 1  # decided in full, planned by serve_tile
    hits = cache.hits
    second = world.get(path, "daoli")
    assert cache.hits == hits + 1 and len(plans) == 2  # planned by the layer only, its decision confirmed
    assert _answer(second) == _answer(first)

    users.set_active(engine, "daoli", False)  # after the layer's look, before serve_tile's read, as far as it knows
    assert world.get(path, "daoli").status_code == 401
    users.set_active(engine, "daoli", True)
    assert world.get(path, "daoli").status_code == 200
    users.set_roles(engine, "daoli", ["secadmin"])
    assert world.get(path, "daoli").status_code in (403, 404)


def test_the_layer_plans_a_tile_once_per_remembered_decision(world: World, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A map comes back to the same tiles: under one remembered decision the layer before routing plans each tile once
    (`tiles_router._remembered_plan`); another tile, or a new decision after a change, is planned anew, and every answer
    is the one the full path gives."""
    plans = _counted_plans(monkeypatch)
    path, other = tile_url("open-dltb"), tile_url("open-dltb", z=13)
    first = world.get(path, "daoli")  # decided in full, planned by serve_tile
    again = [world.get(path, "daoli") for _ in range(3)]
    assert len(plans) == 2  # the layer planned it once, then took that plan
    assert all(_answer(a) == _answer(first) for a in again)
    assert world.get(other, "daoli").status_code == 200 and len(plans) == 3
    world.get(other, "daoli")
    assert len(plans) == 3
    users.set_roles(engine, "daoli", ["viewer"])  # a change: the next request decides anew, then the layer plans anew
    assert world.get(path, "daoli").status_code == 200
    assert _answer(world.get(path, "daoli")) == _answer(first) and len(plans) == 5


# tiles are made on the event loop on PostgreSQL only (SQLite's are made in Python, in a worker thread)
ON_POSTGRESQL = pytest.mark.parametrize("backend", ["postgis"])


def _loop_pool(world: World) -> LoopPool:
    pool = world.client.app.state.loop_pool  # type: ignore[attr-defined]
    assert isinstance(pool, LoopPool)
    return pool


@ON_POSTGRESQL
def test_a_cold_tile_made_on_the_event_loop_is_the_full_paths_tile(world: World) -> None:
    """PostgreSQL, a tile cache that keeps nothing: under a remembered decision the tile's statement runs on the loop's
    own connection (`_made_on_loop`); status, bytes and headers are the full path's, 200, 204 (outside the data, no
    statement) and 304 (no statement) alike."""
    app = world.client.app
    pool = _loop_pool(world)
    app.state.tile_cache = TileCache(max_bytes=0)  # type: ignore[attr-defined]
    far = tile_url("open-dltb").rsplit("/", 2)[0] + "/0/0"
    low = tile_url("open-dltb", z=10)  # below the detail zoom: another statement (no ids)
    reader = app.state.generations  # type: ignore[attr-defined]
    for path, statements in ((tile_url("open-dltb"), 1), (low, 1), (far, 0)):
        app.state.generations = None  # type: ignore[attr-defined]  # the full path: serve_tile makes it
        try:
            taken = pool.taken
            full = world.get(path, "daoli")
            assert pool.taken == taken
        finally:
            app.state.generations = reader  # type: ignore[attr-defined]
        lean = world.get(path, "daoli")
        assert pool.taken == taken + statements
        assert lean.status_code == full.status_code and _answer(lean) == _answer(full)
        etag = full.headers["etag"]
        not_modified = world.client.get(path, headers={**world.headers("daoli"), "If-None-Match": etag})
        assert not_modified.status_code == 304 and pool.taken == taken + statements and not_modified.headers["etag"] == etag
    assert full.status_code == 204  # (the last pair: the far tile)
    assert world.get(tile_url("open-dltb"), "daoli").content and world.get(low, "daoli").content


@ON_POSTGRESQL
def test_a_cold_tile_made_on_the_event_loop_reads_the_generation_in_its_own_statement(world: World, engine: sa.Engine) -> None:
    """PostgreSQL: the tile's statement carries the access generation (`decisions.with_generation`), one round trip and
    no read of the generation beside it; a change committed before the statement still counts."""
    app = world.client.app
    pool = _loop_pool(world)
    app.state.tile_cache = TileCache(max_bytes=0)  # type: ignore[attr-defined]
    reader = app.state.generations  # type: ignore[attr-defined]
    path = tile_url("open-dltb")
    full = world.get(path, "daoli")  # decided in full, remembered
    taken, reads = pool.taken, reader.reads
    lean = world.get(path, "daoli")
    assert _answer(lean) == _answer(full) and lean.content
    assert pool.taken == taken + 1 and reader.reads == reads  # made on the loop, no read of its own
    users.set_active(engine, "daoli", False)
    assert world.get(path, "daoli").status_code == 401
    assert pool.taken == taken + 2  # made on the loop again, not answered: the generation it read had moved


@ON_POSTGRESQL
def test_a_cold_tile_takes_the_full_path_when_the_loop_has_no_connection_free_or_one_fails(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = world.client.app
    pool = _loop_pool(world)
    app.state.tile_cache = TileCache(max_bytes=0)  # type: ignore[attr-defined]
    path = tile_url("open-dltb")
    full = world.get(path, "daoli")
    assert full.status_code == 200 and full.content

    busy = LoopPool(pool.conninfo, size=0)  # every connection out
    app.state.loop_pool = busy  # type: ignore[attr-defined]
    assert _answer(world.get(path, "daoli")) == _answer(full) and busy.taken == 0

    app.state.loop_pool = pool  # type: ignore[attr-defined]
    held: list[LoopConnection] = []

    real_run = LoopConnection.run

    async def failing(self: LoopConnection, query: str, values: Any, binary: bool = True) -> Any:
        if query == decisions._GENERATION_SQL:  # the generation reader's own connection: not the one failing here
            return await real_run(self, query, values, binary)
        held.append(self)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(LoopConnection, "run", failing)
    assert _answer(world.get(path, "daoli")) == _answer(full)  # the full path made it
    assert len(held) == 1 and held[0].conn.closed  # and the failed connection was let go, not kept


@ON_POSTGRESQL
def test_a_tile_on_disk_is_answered_on_the_event_loop_without_a_statement(world: World, tmp_path: Path) -> None:
    """PostgreSQL: a tile whose file another process (or this one before a restart) wrote, not in this one's memory."""
    app = world.client.app
    pool = _loop_pool(world)
    path = tile_url("open-dltb")
    app.state.tile_cache = TileCache(directory=tmp_path / "tiles")  # type: ignore[attr-defined]
    made = [world.get(path, "daoli") for _ in range(2)]  # the second request hands it to the disk
    assert app.state.tile_cache.flush(10)  # type: ignore[attr-defined]
    app.state.tile_cache = TileCache(directory=tmp_path / "tiles")  # type: ignore[attr-defined]  # memory empty
    taken = pool.taken
    again = world.get(path, "daoli")
    assert pool.taken == taken and _answer(again) == _answer(made[0]) and again.content


@ON_POSTGRESQL
def test_concurrent_cold_tiles_share_the_loops_connections_and_the_rest_take_the_full_path(world: World) -> None:
    """Two dozen cold tiles at once on one event loop: at most `size` of them hold a loop connection (the pool never
    waits), the others are made by serve_tile; every answer is the full path's."""
    app = world.client.app
    pool = _loop_pool(world)
    app.state.tile_cache = TileCache(max_bytes=0)  # type: ignore[attr-defined]
    path = tile_url("open-dltb")
    full = world.get(path, "daoli")  # decided in full (and remembered)
    assert full.status_code == 200 and full.content
    headers = world.headers("daoli")
    taken = pool.taken

    async def burst() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            answers = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(24)))
        assert pool._open <= pool.size and len(pool._idle) <= pool.size
        return answers

    answers = asyncio.run(burst())
    made_on_loop = pool.taken - taken
    assert 1 <= made_on_loop < 24  # some on the loop, the rest through serve_tile
    assert all(_answer(a) == _answer(full) for a in answers)
