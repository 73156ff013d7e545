"""Remembered access decisions (`access.decisions`) and the store's access generation (migration 0012), on both stores.

A tile request takes the decision made for the same credential and dataset only while the generation it was filed
under stands; these tests hold the database to bumping it on every write a decision could depend on (and on nothing
else it does per request), hold the trigger list to the tables authentication and the gate actually read, and hold
the remembered decision to its clock: the credential's expiry, a grant's start and end, its maximum age.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from starlette.requests import Request

from landcloud import clock
from landcloud.access import auth, decisions, gate, tokens, units, users
from landcloud.access.policy import Access, Clause
from landcloud.access.principal import Principal
from landcloud.access.tables import access_changes, api_tokens, grants
from landcloud.access.tables import users as users_table
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.store import libpq
from landcloud.store.features import RowFilter

from builders import grid_parcels, publish_edition, write_geojson
from conftest import REFERENCE

MIGRATION = import_module("landcloud.store.migrations.versions.0012_access_changes")


def generation(engine: sa.Engine) -> decisions.Generation:
    with engine.connect() as conn:
        return decisions.access_generation(conn)


def _request(headers: dict[str, str] | None = None, cookie: str | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if cookie is not None:
        raw.append((b"cookie", f"{auth.SESSION_COOKIE}={cookie}".encode()))
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "client": ("10.0.0.9", 5000), "query_string": b""})


@pytest.fixture
def frozen_clock() -> Iterator[list[datetime]]:
    now = [datetime(2026, 12, 5, 8, 0, tzinfo=UTC)]
    clock.set_clock(lambda: now[0])
    yield now
    clock.set_clock(None)


def test_every_write_a_decision_rests_on_bumps_the_generation_and_a_tokens_use_does_not(
    engine: sa.Engine, settings: Settings, cheap_passwords: None
) -> None:
    start = generation(engine)
    assert start[1] and len(start[1]) == 36
    steps: list[tuple[str, decisions.Generation]] = []

    def bumped(what: str) -> None:
        now = generation(engine)
        previous = steps[-1][1] if steps else start
        assert now[0] > previous[0] and now[1] == start[1], what
        steps.append((what, now))

    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    bumped("units loaded")
    user = users.create_user(engine, settings, "gen_viewer", "230100", ["viewer"], "Heilongjiang-2026!")
    bumped("account created")
    users.set_roles(engine, "gen_viewer", ["viewer", "submitter"])
    bumped("roles changed")
    plaintext, record = tokens.create_token(engine, settings, user, "t", ["read"])
    bumped("token created")
    with engine.begin() as conn:
        conn.execute(api_tokens.update().where(api_tokens.c.id == record["id"]).values(last_used_at=clock.now()))
    assert generation(engine) == steps[-1][1]  # a token's use: written as it is used, never a change of access
    found = tokens.lookup_token_user(engine, plaintext)
    assert found is not None and generation(engine) == steps[-1][1]
    tokens.revoke_token(engine, user, record["id"])
    bumped("token revoked")
    cookie, _ = auth.create_session(engine, settings, users.find_user(engine, "gen_viewer") or {})
    bumped("session created")
    with engine.begin() as conn:  # any path, plain SQL too
        conn.execute(catalog.datasets.insert().values(
            id="gen-ds", title="t", owner_unit="230100", security_level="internal", sharing_class="conditional",
            openness="not_open", fields=[], keywords=[], current_version=0, feature_count=0, extra={}, created_at=clock.now(),
            updated_at=clock.now(),
        ))
    bumped("dataset created")
    catalog.update_metadata(engine, "gen-ds", {"security_level": "sensitive"})
    bumped("dataset policy changed")
    grant_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(grants.insert().values(
            id=grant_id, dataset_id="gen-ds", grantee_unit="230102", purpose="p", starts_at=clock.now(),
            expires_at=clock.now() + timedelta(days=1), created_at=clock.now(),
        ))
    bumped("grant made")
    with engine.begin() as conn:
        conn.execute(grants.delete().where(grants.c.id == grant_id))
    bumped("grant deleted")

    before = generation(engine)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # a failed write leaves it as it was
        conn.execute(sa.update(users_table).where(users_table.c.username == "gen_viewer").values(active=False))
        conn.execute(catalog.datasets.insert().values(
            id="gen-ds", title="dup", owner_unit="230100", security_level="internal", sharing_class="conditional",
            openness="not_open", fields=[], keywords=[], current_version=0, feature_count=0, extra={}, created_at=clock.now(),
            updated_at=clock.now(),
        ))
    assert generation(engine) == before
    with engine.connect() as conn:  # reads change nothing
        conn.execute(sa.select(users_table)).all()
        conn.execute(sa.select(access_changes)).all()
    assert generation(engine) == before
    assert cookie


def test_the_generation_counts_a_write_when_it_commits(engine: sa.Engine, settings: Settings, cheap_passwords: None) -> None:
    """A decision filed under a generation read while a change is not yet committed must not outlive the change."""
    before = generation(engine)
    with engine.connect() as writer:
        trans = writer.begin()
        writer.execute(units.units.insert().values(code="239999", name="测试县", level="county", updated_at=clock.now()))
        assert generation(engine) == before  # not yet: the change is not visible either
        trans.commit()
    assert generation(engine)[0] > before[0]


def _tables_read(statements: list[str]) -> set[str]:
    names: set[str] = set()
    for s in statements:
        names.update(m.lower() for m in re.findall(r'(?:FROM|JOIN)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?', s))
    return names


def test_the_generation_covers_every_table_authentication_and_the_gate_read(
    engine: sa.Engine, settings: Settings, cheap_passwords: None
) -> None:
    """Each kind of credential, and a decision that reads grants, a unit's boundary and an edition's version: every
    table their statements name bumps the generation (a table added to them later must be added to migration 0012)."""
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    user = users.create_user(engine, settings, "cover_viewer", "230102", ["viewer"], "Heilongjiang-2026!")
    plaintext, _ = tokens.create_token(engine, settings, user, "t", ["read"])
    cookie, _ = auth.create_session(engine, settings, users.find_user(engine, "cover_viewer") or {})
    jwt_token, _ = auth.issue_access_token(settings, users.find_user(engine, "cover_viewer") or {})
    path = write_geojson(settings.data_dir / "p.geojson", grid_parcels(2, origin=(126.6, 45.74)))
    assert run_submission(engine, settings, path, SubmitOptions(dataset_id="cover-ds", unit="230100", schema="DLTB")).accepted
    catalog.update_metadata(engine, "cover-ds", {"openness": "open", "security_level": "public"})
    publish_edition(engine, settings, "cover-ds", fields=["BSM", "DLBM"])
    with engine.begin() as conn:
        conn.execute(grants.insert().values(
            id=str(uuid.uuid4()), dataset_id="cover-ds", grantee_unit="230102", purpose="p", starts_at=clock.now(),
            expires_at=clock.now() + timedelta(days=1), created_at=clock.now(),
        ))
    editions = [d.id for d in catalog.list_datasets(engine) if d.edition_of == "cover-ds"]
    assert editions
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many) -> None:  # noqa: ANN001
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        for request in (_request({"Authorization": f"Bearer {plaintext}"}), _request({"Authorization": f"Bearer {jwt_token}"}),
                        _request(cookie=cookie), _request()):
            with engine.connect() as conn:
                principal = auth.authenticate(engine, settings, request, conn=conn)
                for ds in ("cover-ds", *editions):
                    try:
                        gate.read_decision(engine, principal, ds, conn)
                    except Exception:  # noqa: BLE001 - a refusal reads the same tables
                        pass
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    read = _tables_read(statements)
    assert {"users", "api_tokens", "sessions", "grants", "datasets", "units"} <= read, read
    kept_by_the_database = set(MIGRATION.TABLES) | {"access_changes", "unit_changes"}
    assert read <= kept_by_the_database, read - kept_by_the_database


def test_the_decision_cache_keeps_a_decision_only_while_it_stands(frozen_clock: list[datetime]) -> None:
    ticks = [0.0]
    cache = decisions.DecisionCache(max_entries=2, max_age_s=60, monotonic=lambda: ticks[0])
    decision = gate.ReadDecision(ds=None, access=None, changes_at=None)  # type: ignore[arg-type]
    someone = Principal("user", user_id="u", username="u", ip="10.0.0.1")

    def put(key: decisions.Key, until: datetime | None = None, gen: decisions.Generation = (1, "i")) -> None:
        cache.put(key, decisions.Remembered(someone, decision, gen, until, ticks[0]))

    put((b"a", "d"))
    assert cache.get((b"a", "d"), (1, "i")) is not None
    assert cache.get((b"a", "other"), (1, "i")) is None  # another dataset: decided anew
    assert cache.get((b"a", "d"), (2, "i")) is None  # the store changed: dropped …
    assert cache.get((b"a", "d"), (1, "i")) is None  # … for good
    put((b"a", "d"), gen=(1, "i"))
    assert cache.get((b"a", "d"), (1, "j")) is None  # another store under the same number
    put((b"a", "d"), until=frozen_clock[0] + timedelta(seconds=5))
    assert cache.get((b"a", "d"), (1, "i")) is not None
    frozen_clock[0] += timedelta(seconds=5)  # the credential's expiry, or a grant's start or end: at that instant
    assert cache.get((b"a", "d"), (1, "i")) is None
    put((b"a", "d"))
    ticks[0] = 59.9
    assert cache.get((b"a", "d"), (1, "i")) is not None
    ticks[0] = 60.0
    assert cache.get((b"a", "d"), (1, "i")) is None  # a minute at most
    put((b"1", "d")), put((b"2", "d"))
    assert cache.get((b"1", "d"), (1, "i")) is not None  # 1 used last: 2 goes first
    put((b"3", "d"))
    assert len(cache) == 2 and cache.get((b"2", "d"), (1, "i")) is None and cache.get((b"1", "d"), (1, "i")) is not None


def test_the_credential_key_is_the_credential_authentication_chooses() -> None:
    header = decisions.credential_key(_request({"Authorization": "Bearer lct_x"}))
    assert header == decisions.credential_key(_request({"Authorization": "Bearer lct_x"}, cookie="s1"))  # the header wins
    assert header != decisions.credential_key(_request({"Authorization": "Bearer lct_y"}))
    assert decisions.credential_key(_request(cookie="s1")) != decisions.credential_key(_request(cookie="s2"))
    assert decisions.credential_key(_request(cookie="s1")) != decisions.credential_key(_request({"Authorization": "s1"}))
    assert decisions.credential_key(_request()) == decisions.credential_key(_request({"Authorization": "  "})) == b"public"
    assert len(header) == 32 and b"lct_x" not in header  # a digest: no credential kept in memory as sent
    # the keys of the credentials seen last are kept, not those of long headers (what callers send cannot grow them)
    kept = decisions._authorization_key.cache_info().currsize, decisions._cookies_key.cache_info().currsize
    long = b"Bearer " + b"x" * 2000
    assert decisions.credential_key_of(long, []) == hashlib.sha256(b"h:" + long).digest()
    cookie = "s9; other=" + "y" * 2000
    assert decisions.credential_key(_request(cookie=cookie)) == hashlib.sha256(b"c:s9").digest()
    assert (decisions._authorization_key.cache_info().currsize, decisions._cookies_key.cache_info().currsize) == kept
    assert decisions.credential_key(_request(cookie="s1")) == decisions.credential_key(_request(cookie="s1"))


def test_the_decision_cache_is_bounded_by_what_its_areas_hold() -> None:
    """A decision matching rows by area holds the area's WKB (a county's boundary is ~0.1-1 MB): the cache counts it."""
    def remembered(area_bytes: int) -> decisions.Remembered:
        rows = RowFilter((), (b"\x01" * area_bytes,)) if area_bytes else None
        access = Access(True, (Clause(rows, None),))
        return decisions.Remembered(Principal("user"), gate.ReadDecision(None, access, None), (1, "i"), None, 0.0)  # type: ignore[arg-type]

    cache = decisions.DecisionCache(max_bytes=12_000, monotonic=lambda: 0.0)
    assert remembered(0).size == decisions._ENTRY_OVERHEAD and remembered(1000).size == decisions._ENTRY_OVERHEAD + 1000
    cache.put((b"a", "d"), remembered(3000))
    cache.put((b"b", "d"), remembered(3000))
    assert len(cache) == 2 and cache.bytes == 2 * (decisions._ENTRY_OVERHEAD + 3000)
    cache.put((b"c", "d"), remembered(3000))  # over the bound: the least recently used goes
    assert len(cache) == 2 and cache.get((b"a", "d"), (1, "i")) is None and cache.bytes <= 12_000
    cache.put((b"b", "d"), remembered(0))  # kept again under the same key: counted once
    assert len(cache) == 2 and cache.bytes == 2 * decisions._ENTRY_OVERHEAD + 3000
    cache.put((b"huge", "d"), remembered(20_000))  # bigger than the whole bound: not kept, nothing pushed out
    assert len(cache) == 2 and cache.get((b"huge", "d"), (1, "i")) is None
    assert cache.get((b"c", "d"), (1, "i")) is not None and cache.get((b"b", "d"), (1, "i")) is not None
    cache.get((b"c", "d"), (2, "i"))  # dropped as it no longer stands: its bytes with it
    assert len(cache) == 1 and cache.bytes == decisions._ENTRY_OVERHEAD


@pytest.mark.parametrize("backend", ["postgis"])  # SQLite reads at once: no read is ever on its way
def test_askers_share_generation_reads_but_never_one_sent_before_they_asked(engine: sa.Engine) -> None:
    """PostgreSQL (`store.repeated_read`): an asker while no read is out sends one; two askers while it is out wait
    for the next read, one for both, sent as soon as the first is back, so a change committed before they asked is
    what they see; no asker is called from within its own `ask`, and one whose callback fails leaves the others
    answered."""
    reader = decisions.GenerationReader(engine)

    async def scenario() -> tuple[decisions.Generation, dict[str, tuple[Any, ...]], int]:
        before = await reader.current()  # (opens the connection)
        answered: dict[str, tuple[Any, ...]] = {}

        def asker(name: str) -> Callable[[decisions.Generation | None, BaseException | None], None]:
            def answer(generation: decisions.Generation | None, error: BaseException | None) -> None:
                answered[name] = (generation, error, reader.reads)
                if name == "b":
                    raise RuntimeError("this asker's own failure")
            return answer

        assert reader.asks and reader.reads == 1
        reader.ask(asker("a"))
        assert reader.reads == 2 and not answered  # sent, not answered from within
        with engine.begin() as conn:  # committed while a's read may be on its way
            conn.execute(sa.text("UPDATE access_changes SET generation = generation + 1 WHERE id = 1"))
        reader.ask(asker("b"))
        reader.ask(asker("c"))
        assert reader.reads == 2 and not answered  # they wait for a read sent after they asked
        deadline = time.monotonic() + 10
        while len(answered) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return before, answered, reader.reads

    try:
        before, answered, reads = asyncio.run(scenario())
    finally:
        reader.close()
    bumped = (before[0] + 1, before[1])
    assert reads == 3 and set(answered) == {"a", "b", "c"}
    assert answered["a"][0] in (before, bumped) and answered["a"][1] is None
    assert answered["a"][2] == 3  # the next read was sent before the first read's askers were answered
    assert answered["b"][:2] == answered["c"][:2] == (bumped, None)


def test_the_generation_reader_reads_what_the_store_holds(engine: sa.Engine) -> None:
    reader = decisions.GenerationReader(engine)
    try:
        assert reader.available
        assert asyncio.run(reader.current()) == generation(engine)  # each run a loop of its own: a connection each
        with engine.begin() as conn:
            conn.execute(units.units.insert().values(code="239998", name="测试县", level="county", updated_at=clock.now()))
        assert asyncio.run(reader.current()) == generation(engine) and reader.reads == 2
    finally:
        reader.close()
    assert not decisions.GenerationReader(sa.create_engine("sqlite://")).available  # in memory: no other connection sees it


def _backend_pid(reader: decisions.GenerationReader) -> int:
    """The server process behind the reader's connection (idle between reads)."""
    assert reader._pg is not None and reader._pg._conn is not None
    return int(reader._pg._conn.pgconn.backend_pid)


@pytest.mark.parametrize("backend", ["postgis"])  # the SQLite reader opens a file, not a connection a server can end
def test_a_generation_read_on_a_lost_connection_fails_and_the_next_one_reconnects(engine: sa.Engine) -> None:
    """PostgreSQL: the reader's own connection, read past psycopg's execution (`libpq.exchange`), ended by the
    server. Unseen (the loop did not run meanwhile): the read sent on it fails (the tile takes the full path), the next
    opens a connection, prepares again and reads. Seen while idle (its reader, registered for the connection's life):
    the connection is let go without the loop spinning on its closed socket, and the next read reconnects."""
    reader = decisions.GenerationReader(engine)

    def terminate(pid: int) -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    async def scenario() -> tuple[list[decisions.Generation], type[BaseException] | None, list[int], float]:
        seen = [await reader.current()]
        pids = [_backend_pid(reader)]
        terminate(pids[0])
        time.sleep(0.2)  # the end arrives while the loop does not run: nothing has read it
        failed: type[BaseException] | None = None
        try:
            await reader.current()
        except psycopg.Error as exc:
            failed = type(exc)
        with engine.begin() as conn:
            conn.execute(units.units.insert().values(code="239997", name="测试县", level="county", updated_at=clock.now()))
        seen.append(await reader.current())
        pids.append(_backend_pid(reader))
        terminate(pids[1])
        cpu = time.process_time()
        await asyncio.sleep(0.5)  # the loop runs: the connection's reader sees its end
        cpu = time.process_time() - cpu
        seen.append(await reader.current())
        pids.append(_backend_pid(reader))
        return seen, failed, pids, cpu

    try:
        seen, failed, pids, idle_cpu = asyncio.run(scenario())
    finally:
        reader.close()
    assert failed is not None and issubclass(failed, psycopg.OperationalError)
    assert len(set(pids)) == 3
    assert seen[1] == seen[2] == generation(engine) and seen[1][0] > seen[0][0] and seen[1][1] == seen[0][1]
    assert idle_cpu < 0.25  # not a loop calling the reader of a closed socket again and again


@pytest.mark.parametrize("backend", ["postgis"])
def test_a_statement_carries_the_generation_as_a_read_of_its_own_gives_it(engine: sa.Engine, backend: str) -> None:
    """`decisions.with_generation`: a tile made on the event loop reads the generation in its own statement (through
    the loop's libpq connections, results in binary); its last two columns are what `access_generation` reads, a
    write's bump included; a store without the row says so."""
    query = "SELECT CAST($1 AS bytea) AS tile, CAST(7 AS bigint) AS n"

    async def carried() -> decisions.Generation:
        pool = libpq.LoopPool.for_engine(engine, size=1)
        assert pool is not None
        held = await pool.take()
        assert held is not None
        try:
            row = await held.run(decisions.with_generation(query), [b"\x1a\x00"])
        finally:
            pool.give_back(held, True)
            pool.close()
        assert row is not None and row[0] == b"\x1a\x00" and row[1] == (7).to_bytes(8, "big")  # its own columns first
        return decisions.binary_generation(row[2:])

    with engine.connect() as conn:
        before = decisions.access_generation(conn)
    assert asyncio.run(carried()) == before
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE access_changes SET generation = generation + 1 WHERE id = 1"))
    assert asyncio.run(carried()) == (before[0] + 1, before[1])
    with pytest.raises(RuntimeError, match="migrations"):
        decisions.binary_generation([None, None])


def test_the_sqlite_generation_read_does_not_hold_the_event_loop_on_a_locked_store(tmp_path: Path) -> None:
    """SQLite's read is made at once on the event loop: a store another connection holds locked fails it within
    `SQLITE_WAIT_S` (the tile takes the full path, which waits in a worker thread), it does not stop the loop for
    sqlite3's default five seconds."""
    path = tmp_path / "locked.sqlite"
    setup = sqlite3.connect(path)
    with setup:
        setup.execute("CREATE TABLE access_changes (id INTEGER PRIMARY KEY, generation INTEGER, instance TEXT)")
        setup.execute("INSERT INTO access_changes VALUES (1, 7, 'i')")
    setup.close()
    reader = decisions.GenerationReader(sa.create_engine(f"sqlite:///{path}"))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        assert asyncio.run(reader.current()) == (7, "i") and reader.reads == 1
        holder.execute("BEGIN EXCLUSIVE")  # (a rollback journal: an exclusive lock keeps readers out)
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            asyncio.run(reader.current())
        assert time.monotonic() - started < 1.0
        holder.execute("ROLLBACK")
        assert asyncio.run(reader.current()) == (7, "i") and reader.reads == 3
    finally:
        holder.close()
        reader.close()
