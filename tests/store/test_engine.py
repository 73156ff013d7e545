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


def _wal_frames(engine: sa.Engine) -> tuple[int, int]:
    """(frames in the WAL, frames of it checkpointed), as a PASSIVE checkpoint that copies nothing reports them."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        _, log, done = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return log, done


def test_a_commit_leaves_its_checkpoint_to_a_thread_and_the_writer_as_it_was(engine: sa.Engine) -> None:
    """`commit_checkpoint_beside`: the rows are committed when it returns; on SQLite the commit has not copied
    the WAL into the database (a write far above SQLite's automatic 1000 pages), the returned thread has, every
    frame, and the writer's connection checkpoints by itself again."""
    if db.backend_of(engine) == "sqlite":
        with engine.connect() as conn:  # an empty WAL to begin with
            conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with engine.connect() as conn:
        conn.info["write"] = True
        trans = conn.begin()
        conn.execute(sa.text("CREATE TABLE wal_probe (pad TEXT)"))
        conn.execute(sa.text("INSERT INTO wal_probe (pad) VALUES (:p)"), [{"p": "x" * 2000}] * 3000)  # ~1,500 pages
        thread = db.commit_checkpoint_beside(conn, trans)
        if db.backend_of(engine) == "postgis":
            assert thread is None
        else:
            assert thread is not None
            assert conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == db.SQLITE_AUTOCHECKPOINT
            thread.join(timeout=60)
            assert not thread.is_alive()
            log, done = _wal_frames(engine)
            assert log > 1000 and done == log  # the thread's checkpoint copied every frame of the commit
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM wal_probe")).scalar_one() == 3000
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE wal_probe"))


def test_a_failed_commit_leaves_the_writer_checkpointing(engine: sa.Engine) -> None:
    """A commit that fails (here: a deferred foreign key broken) raises as a commit does, starts no checkpoint, and
    the writer's connection keeps SQLite's automatic checkpoints."""
    if db.backend_of(engine) != "sqlite":
        pytest.skip("the WAL setting is SQLite's")
    with engine.connect() as conn:
        conn.info["write"] = True
        trans = conn.begin()
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        conn.exec_driver_sql("INSERT INTO feature_tilegeoms (feature_id, level, geom) VALUES (-1, 8, x'00')")
        with pytest.raises(sa.exc.IntegrityError):
            db.commit_checkpoint_beside(conn, trans)
        assert conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == db.SQLITE_AUTOCHECKPOINT
        trans.rollback()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM feature_tilegeoms WHERE feature_id = -1").scalar_one() == 0


def test_the_pool_hands_out_the_connection_used_last(engine: sa.Engine) -> None:
    """LIFO: a run of requests stays on the connections whose statements are prepared and planned already. After a
    burst has opened several, a single caller's next requests get the one it gave back last, not the oldest idle."""
    if db.backend_of(engine) != "postgis":
        pytest.skip("SQLite's pool is not the PostgreSQL one")
    fresh = db.create_engine(engine.url.render_as_string(hide_password=False))
    try:
        burst = [fresh.connect() for _ in range(3)]
        pids = [c.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() for c in burst]
        for c in burst:  # given back in order: the last one back is pids[-1]
            c.close()
        for _ in range(3):
            with fresh.connect() as c:
                assert c.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == pids[-1]
    finally:
        fresh.dispose()
