"""The PostgreSQL pool survives connections dropped while idle, without a ping on every checkout."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from landcloud.store import db


def test_a_connection_dropped_while_idle_is_replaced(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    if db.backend_of(engine) != "postgis":
        pytest.skip("SQLite has no server connection to lose")
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    killer = db.create_engine(engine.url.render_as_string(hide_password=False))
    with killer.connect() as k:  # what a server restart does to the pooled connection
        assert k.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one() is True
    killer.dispose()
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", -1.0)  # the pooled connection counts as idle: pinged, found dead, replaced
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid


def test_a_read_after_a_writer_holds_no_write_lock(engine: sa.Engine) -> None:
    """A writer's "write" mark is the pooled connection's: a read checked out after it must not BEGIN
    IMMEDIATE. A read route holds its read connection for the whole request (deps.Reads) while it
    writes its audit entry on another one: with the write lock held by the read, that write waited
    the busy timeout out."""
    fresh = db.create_engine(engine.url.render_as_string(hide_password=False))  # a pool of one: the next checkout is the same connection
    try:
        with fresh.connect() as conn:  # a writer that leaves its mark behind (several did)
            conn.info["write"] = True
            with conn.begin():
                conn.execute(sa.text("SELECT 1"))
        with fresh.connect() as reader:
            assert reader.execute(sa.text("SELECT count(*) FROM datasets")).scalar_one() >= 0  # a read transaction on SQLite
            assert "write" not in reader.info
            with fresh.connect() as writer:
                raw = writer.connection.driver_connection
                sqlite = db.backend_of(fresh) == "sqlite"
                if sqlite:
                    raw.execute("PRAGMA busy_timeout=200")  # fail fast instead of waiting 30 s
                try:
                    writer.info["write"] = True
                    with writer.begin():  # SQLite: BEGIN IMMEDIATE, the write lock
                        assert writer.execute(sa.text("SELECT 1")).scalar_one() == 1
                finally:
                    writer.info.pop("write", None)
                    if sqlite:
                        raw.execute("PRAGMA busy_timeout=30000")
    finally:
        fresh.dispose()


def test_reads_writes_what_waited_after_its_connection_is_back_even_when_one_fails(engine: sa.Engine) -> None:
    """`deps.Reads.close`: the connection goes back first, then every waiting write runs; a failure is raised
    after the others ran (an audit entry is never dropped because another failed)."""
    from types import SimpleNamespace

    from landcloud.deps import Reads

    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine, settings=None)))
    reads = Reads(request)  # type: ignore[arg-type]
    assert reads.conn.execute(sa.text("SELECT 1")).scalar() == 1
    seen: list[tuple[str, int]] = []

    def fail() -> None:
        seen.append(("fail", engine.pool.checkedout()))
        raise RuntimeError("disk full")

    reads.after_close(fail)
    reads.after_close(lambda: seen.append(("write", engine.pool.checkedout())))
    assert reads.pending
    with pytest.raises(RuntimeError, match="disk full"):
        reads.close()
    assert seen == [("fail", 0), ("write", 0)] and not reads.pending
    reads.close()  # nothing left: a second close does nothing
    assert seen == [("fail", 0), ("write", 0)]
