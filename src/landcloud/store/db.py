"""Engine creation and the one MetaData every package's tables hang on.

SQLite is tuned here (WAL, foreign keys, a busy timeout) because the embedded store must
behave like a server for concurrent readers while one submission writes.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

BackendKind = Literal["sqlite", "postgis"]
_log = logging.getLogger(__name__)
SQLITE_AUTOCHECKPOINT = 1000  # pages: SQLite's default, which every connection keeps


def backend_of(engine: Engine | sa.Connection) -> BackendKind:
    return "sqlite" if engine.dialect.name == "sqlite" else "postgis"


_STORE_NAMES: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def store_name(engine: Engine) -> str:
    """The engine's URL as text (password hidden), made once per engine: caches keyed by store (tile stamps, tile
    types) build it on every tile, and rendering a URL was a twentieth of a cached tile."""
    name = _STORE_NAMES.get(engine)
    if name is None:
        name = _STORE_NAMES[engine] = engine.url.render_as_string()
    return name


@contextmanager
def connection(bind: Engine | sa.Connection) -> Iterator[sa.Connection]:
    """For reads: `bind` itself when it is a connection (the caller's: left open), else a new one.

    Lets a caller that makes several small reads make them on one connection (one pool checkout).
    A new PostgreSQL connection is in autocommit: each read is its own statement (what READ
    COMMITTED gives anyway) without the BEGIN and ROLLBACK round trips around it. Never write
    through a new one: use `engine.begin()`.
    """
    if isinstance(bind, sa.Connection):
        yield bind
    else:
        with read_connection(bind) as conn:
            yield conn


def read_connection(engine: Engine) -> sa.Connection:
    """A new connection for reads (the caller closes it): in autocommit on PostgreSQL (see `connection`).

    Closing it costs no round trip: there is no transaction to end (SQLite's is a read transaction,
    ended in the library).
    """
    if backend_of(engine) == "postgis":
        return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    return engine.connect()


def commit_checkpoint_beside(conn: sa.Connection, trans: sa.RootTransaction) -> threading.Thread | None:
    """Commit `trans`; on SQLite, without the WAL checkpoint its commit would make, which runs on a thread instead.

    Why: the commit of a large write (a submission's version) copies every page it wrote from the WAL into the
    database file before it returns (~3 s of a 1M-parcel submission, `benchmarks/profiles/ingest-columns.txt`);
    on a thread of its own (a connection of its own, PASSIVE: it waits for no reader or writer) it runs beside
    what follows the commit (the tile copies, `ingest.after_acceptance`, which joins it). Other
    connections' commits meanwhile find the checkpoint busy and skip theirs, as SQLite's automatic checkpoints do.
    The writer's own setting is back to the default when this returns, committed or not. PostgreSQL: the commit, None.
    """
    if conn.dialect.name != "sqlite":
        trans.commit()
        return None
    driver = conn.connection.driver_connection  # (the driver's connection: a PRAGMA here opens no transaction)
    driver.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
    try:
        trans.commit()
    finally:
        driver.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT}")  # type: ignore[union-attr]
    engine = conn.engine

    def checkpoint() -> None:
        try:
            with engine.connect() as other:
                other.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        except Exception:  # the next commits checkpoint as usual
            _log.warning("WAL checkpoint after a commit failed", exc_info=True)

    thread = threading.Thread(target=checkpoint, name="landcloud-wal-checkpoint", daemon=True)
    thread.start()
    return thread


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The stdlib driver opens transactions lazily and never for DDL; we drive BEGIN ourselves
    # (see the "begin" listener) so a submission is one all-or-nothing transaction.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()
    from landcloud.store import sqlite_functions

    sqlite_functions.register(dbapi_connection)


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


def _forget_write(_dbapi_connection: Any, record: Any) -> None:
    """A pool `checkin` listener: the next checkout begins as a read unless it asks to write.

    `conn.info` is the pooled connection's, not the checkout's: a writer that set "write" and did not
    take it off (history, editions, fingerprints, the ingest pipeline, migrations) made every later read
    on that connection BEGIN IMMEDIATE: it held the write lock while it read, so reads queued behind
    each other and behind writers, and a read still open while its request wrote on another connection
    (an audit entry) waited the busy timeout out ("database is locked").
    """
    record.info.pop("write", None)


IDLE_PING_SECONDS = 10.0  # a pooled PostgreSQL connection idle longer than this is pinged before use


def _mark_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    """A pool `checkout` listener: ping only a connection that sat idle longer than IDLE_PING_SECONDS.

    `pool_pre_ping` costs a round trip on every checkout (12% of a feature page's server time, see
    benchmarks/profiles/items-*.txt). A connection in steady use is known alive; one idle for a while
    may have been dropped (a PostgreSQL restart, a firewall timeout): that one is pinged, and a dead
    one is replaced (DisconnectionError makes the pool reconnect). A connection that dies while in
    use fails that one statement; SQLAlchemy then recycles every connection older than the failure.
    """

    def listener(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("checked_in")
        if last is None or time.monotonic() - last <= IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc

    return listener


# Every PostgreSQL connection of the store's pool runs with these, set once when it is opened. Its reads are many and
# short (a page, a tile, a lookup); two planner features cost them more than they gave: a full z8 tile's statement is
# costed above jit_above_cost and spent ~15 ms compiling expressions it ran once, and a parallel worker found nothing to do
# (the work is in the projection above the Gather: 26 vs 17 ms). Set per statement (BEGIN; SET LOCAL ...; ROLLBACK)
# they cost a tile two round trips, ~0.3 ms (benchmarks/profiles/tiles-fixed.txt). Writes lose nothing: PostgreSQL plans
# no parallel query for a statement that writes, and index builds take max_parallel_maintenance_workers instead. A plain
# SET, not the `options` startup parameter, which PgBouncer refuses.
POSTGRES_SESSION = "SET jit = off; SET max_parallel_workers_per_gather = 0"


def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
    """A pool `connect` listener: the session settings above, committed (psycopg opened a transaction for them)."""
    with dbapi_connection.cursor() as cur:
        cur.execute(POSTGRES_SESSION)
    dbapi_connection.commit()


def create_engine(url: str) -> Engine:
    """An engine for either backend, with the settings the store relies on."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine.pool, "checkin", _forget_write)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # LIFO: a request takes the connection used last, so a map's run of tiles (and any run of like requests) stays on
    # the few connections whose statements psycopg has prepared (after 5 runs of a text, per connection) and
    # PostgreSQL has planned. FIFO rotated every request through all ten: after a burst had filled the pool, a
    # single client's small tiles paid the planning again on each (2.8 -> 2.2 ms; profiles/tiles-lean.txt).
    engine = sa.create_engine(url, pool_size=10, max_overflow=20, pool_use_lifo=True)
    event.listen(engine, "connect", _postgres_session)
    event.listen(engine.pool, "checkin", _mark_checkin)
    event.listen(engine.pool, "checkin", _forget_write)  # no effect on PostgreSQL's BEGIN, but one meaning on both
    event.listen(engine.pool, "checkout", _ping_if_idle(engine))
    return engine
