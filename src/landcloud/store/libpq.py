"""PostgreSQL statements from the event loop, straight through libpq (psycopg's `psycopg.pq` layer).

For the few statements a tile request runs on the event loop (a tile's statement, `publish.tiles_router`; the access
generation is read its own way, `store.repeated_read`, on a connection this module opens): psycopg's asynchronous
execution (its generators, cursor and result set-up) cost ~0.1 ms of CPU a statement more than the synchronous one,
three quarters of a one-row read
(benchmarks/profiles/tiles-decisions.txt §6). Here a statement is sent on the `PGconn` of a psycopg `AsyncConnection`
(which made the connection: conninfo, authentication, TLS), the socket is awaited with the loop's reader, and the
first row comes back as the values libpq holds. Parameters are dumped by psycopg's own `Transformer`, so a value
goes to PostgreSQL with the type and format psycopg would give it. Statements are prepared at the protocol level,
as psycopg's `prepare=True`, which PgBouncer 1.21+ keeps in transaction pooling too.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import ConnStatus, ExecStatus, Format
from psycopg.pq.abc import PGconn, PGresult
from sqlalchemy.engine import Engine

from landcloud.store.db import POSTGRES_SESSION, backend_of

Row = list[bytes | None]
# Connections a process keeps for statements on the event loop, beside the store's pool (10 + 20 overflow). A map asks
# for a few dozen tiles at once; past these, tiles take the worker threads and the store's pool as before.
LOOP_CONNECTIONS = 8
MAX_PREPARED = 100  # statements kept prepared per connection (psycopg's `prepared_max` default)
# The store's session settings, and a plan made once per prepared statement. PostgreSQL plans a prepared statement anew
# on each run while it judges a plan for those values cheaper than a generic one, which it decides from a text's first
# five runs: a small tile's statement could be planned on every run, 0.25-0.33 ms of its 0.5-0.6 ms, or settle on the
# generic plan after a few (benchmarks/profiles/tiles-small.txt §3). The statements these connections run — a tile's,
# the access generation's primary-key read — take the same index whatever their values (a tile's box on the GiST of its
# dataset), so their generic plan is the plan, from the first run.
LOOP_SESSION = POSTGRES_SESSION + "; SET plan_cache_mode = force_generic_plan"


def conninfo(engine: Engine) -> str:
    """The engine's database as libpq takes it (psycopg's connection string)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def exchange(
    loop: asyncio.AbstractEventLoop, pg: PGconn, send: Callable[[PGconn], None],
    readable: Callable[[], Awaitable[None]] | None = None,
) -> Row | None:
    """One statement's round trip on a libpq connection in non-blocking mode: `send` it, wait for the socket, take the
    results; the first row's values (text or binary, as asked for), or None. A statement's error raises
    `psycopg.DatabaseError` once its results are all read (the connection is then ready for the next); a lost
    connection raises from libpq (`psycopg.OperationalError`). `readable`: how to wait for the socket (a
    `LoopConnection`'s reader, registered once), else a reader registered for the wait."""
    send(pg)
    while pg.flush():  # a few bytes: sent at once but for a full socket buffer
        await _ready(loop, pg.socket, write=True)
    row: Row | None = None
    error: str | None = None
    while True:
        pg.consume_input()
        if pg.is_busy():
            await (readable() if readable is not None else _ready(loop, pg.socket))
            continue
        result = pg.get_result()
        if result is None:
            break
        row, error = taken(result, row, error)
    if error is not None:
        raise psycopg.DatabaseError(error)
    return row


def taken(result: PGresult, row: Row | None, error: str | None) -> tuple[Row | None, str | None]:
    """(the first row, the first error) of a statement's results so far, with `result` taken in."""
    if result.status == ExecStatus.TUPLES_OK:
        if result.ntuples and row is None:
            row = [result.get_value(0, i) for i in range(result.nfields)]
    elif result.status != ExecStatus.COMMAND_OK and error is None:
        error = (result.error_message or b"").decode("utf-8", "replace").strip()
    return row, error


async def connect(conninfo: str, loop: asyncio.AbstractEventLoop) -> psycopg.AsyncConnection[Any]:
    """A connection for statements on the event loop: autocommit, with `LOOP_SESSION`'s settings."""
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    try:
        await exchange(loop, conn.pgconn, lambda p: p.send_query(LOOP_SESSION.encode()))
    except BaseException:
        conn.pgconn.finish()
        raise
    return conn


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, write: bool = False) -> None:
    """Until `fd` can be read (or written)."""
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


def text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


@dataclass
class LoopConnection:
    """One connection of a `LoopPool`, and the statements prepared on it (by text and parameter types), the least
    recently used let go past `MAX_PREPARED` (as psycopg's own cache does: each holds a plan in the server's memory,
    and a province's datasets, zooms and attribute lists make many texts over a server's life).

    Its socket is watched by one reader registered with the loop for the connection's life (`_watch`), not one per
    wait: uvloop makes, starts, stops and closes a poll handle for each `add_reader`/`remove_reader`, two `epoll_ctl`
    calls and ~30 us of CPU a statement, half of what the loop spent on a one-row read (the access generation, then read
    through this pool: benchmarks/profiles/tiles-edge.txt)."""

    conn: psycopg.AsyncConnection[Any]
    epoch: int  # the pool's when it was opened: one opened under another loop is not counted any more
    prepared: OrderedDict[tuple[str, tuple[int, ...]], bytes] = field(default_factory=OrderedDict)
    _loop: asyncio.AbstractEventLoop | None = None  # the loop whose reader watches the socket, while one does
    _fd: int = -1
    _waiter: asyncio.Future[None] | None = None

    async def run(self, query: str, values: Sequence[Any], binary: bool = True) -> Row | None:
        """`query` ($1, $2 … placeholders) with `values`, prepared on this connection on its first run; the first row."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._watch(loop)
        tx = Transformer.from_context(self.conn)
        params = tx.dump_sequence(values, [PyFormat.AUTO] * len(values))
        types, formats = tuple(tx.types), list(tx.formats)
        key = (query, types)
        name = self.prepared.get(key)
        pg = self.conn.pgconn
        if name is None:
            if len(self.prepared) >= MAX_PREPARED:
                _, old = self.prepared.popitem(last=False)
                await exchange(loop, pg, lambda p: p.send_query(b"DEALLOCATE " + old), self._readable)
            name = b"landcloud_" + hashlib.sha1(repr(key).encode()).hexdigest()[:24].encode()
            await exchange(loop, pg, lambda p: p.send_prepare(name, query.encode(), param_types=types), self._readable)
            self.prepared[key] = name
        else:
            self.prepared.move_to_end(key)
        result_format = Format.BINARY if binary else Format.TEXT
        return await exchange(
            loop, pg, lambda p: p.send_query_prepared(name, params, param_formats=formats, result_format=result_format),
            self._readable,
        )

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        self.unwatch()
        self._fd = self.conn.pgconn.socket
        loop.add_reader(self._fd, self._on_readable)
        self._loop = loop

    def unwatch(self) -> None:
        """The socket's reader let go (before the connection is closed: its descriptor may be reused at once)."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
        self._waiter = None

    async def _readable(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _on_readable(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        # nothing waits: what the server sent between statements (a notice, a setting's new value, the connection's
        # end) is taken in now, or the loop would call this again at once; a connection that ended is not watched
        try:
            self.conn.pgconn.consume_input()
        except psycopg.Error:
            self.unwatch()
            return
        if self.conn.pgconn.status == ConnStatus.BAD:
            self.unwatch()


class LoopPool:
    """A few PostgreSQL connections for statements run on the event loop, taken last-in first-out.

    `take` never waits: with every connection busy (`size` of them) it gives None and the caller takes its usual way
    (a worker thread and the store's pool), so this pool bounds what the loop holds without queueing anyone. The
    connections belong to the loop that opened them; when the loop changes (a test client's, each its own) they are
    let go. A connection that failed, or whose statement was cancelled half-way, is closed rather than given back.
    """

    def __init__(self, conninfo: str, size: int = LOOP_CONNECTIONS) -> None:
        self.conninfo = conninfo
        self.size = size
        self._idle: list[LoopConnection] = []
        self._open = 0
        self._epoch = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.taken = 0  # connections handed out (tests and notes count them)

    @classmethod
    def for_engine(cls, engine: Engine, size: int = LOOP_CONNECTIONS) -> LoopPool | None:
        """A pool on the engine's PostgreSQL database (its URL, password included); None for SQLite."""
        if backend_of(engine) != "postgis":
            return None
        return cls(conninfo(engine), size)

    async def take(self) -> LoopConnection | None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()
            self._loop = loop
        while self._idle:
            held = self._idle.pop()
            if not held.conn.closed:
                self.taken += 1
                return held
            _finish(held)  # the server ended it while it was idle (its reader saw that)
            self._open -= 1
        if self._open >= self.size:
            return None
        self._open += 1
        try:
            conn = await connect(self.conninfo, loop)
        except BaseException:
            self._open -= 1
            raise
        self.taken += 1
        return LoopConnection(conn, self._epoch)

    def give_back(self, held: LoopConnection, ok: bool) -> None:
        """Return `held` after use; `ok` False (an error, a cancellation): close it."""
        if held.epoch != self._epoch:
            _finish(held)
            return
        if held.conn.closed or not ok:
            _finish(held)
            self._open -= 1
            return
        self._idle.append(held)

    def close(self) -> None:
        """Let go of every idle connection without awaiting (the loop may have ended); the count starts again."""
        for held in self._idle:
            _finish(held)
        self._idle.clear()
        self._open = 0
        self._epoch += 1


def _finish(held: LoopConnection) -> None:
    held.unwatch()
    if not held.conn.closed:
        held.conn.pgconn.finish()
