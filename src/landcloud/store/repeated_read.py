"""One small statement read again and again from the event loop, its answers handed to callbacks (PostgreSQL, libpq).

The access generation is read for nearly every signed-in tile on PostgreSQL (`access.decisions.GenerationReader`), and
for a tile in memory that read was most of what the server did: awaited as a coroutine (the request's task, a chain of
coroutines, a future woken by the socket's reader, the parameters dumped again) it cost ~40 us of the ~100 us of
Python a tile took beside the answer itself (benchmarks/profiles/tiles-protocol.txt). Here the statement is prepared
once on a connection of its own; an asker hands a callback, the statement is sent from the asker's own call, and the
socket's reader, registered for the connection's life, takes the result in and calls every asker of that read. No
task, future or coroutine between the HTTP protocol and the answer (`web.http_protocol`); `current` wraps a callback
in a future for code that awaits.

Exact as before (`decisions.SharedReads`, which this replaced): an asker is answered by a read sent after it asked,
never by one already on its way (which may have been answered from before a change the asker's caller has seen
committed). While a read is out, the askers that come gather for the one read sent as soon as it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.pq import ConnStatus, Format
from sqlalchemy.engine import Engine

from landcloud.store import libpq
from landcloud.store.db import backend_of

log = logging.getLogger(__name__)

T = TypeVar("T")
Answered = Callable[[T | None, BaseException | None], None]  # (the value, None) or (None, why the read failed)
_NAME = b"landcloud_repeated_read"


class RepeatedRead(Generic[T]):
    """`query` (no parameters, text results) on a connection of its own, read for askers on one event loop; `convert`
    makes the value of the first row's values (None: no row), once per read, whatever the number of askers."""

    def __init__(self, conninfo: str, query: str, convert: Callable[[libpq.Row | None], T]) -> None:
        self.conninfo = conninfo
        self._query = query.encode()
        self._convert = convert
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._opening: asyncio.Task[None] | None = None
        self._epoch = 0  # counted by `close`: a connection opened across one is let go
        self._out: list[Answered[T]] = []  # the askers of the read on its way (empty: none is)
        self._next: list[Answered[T]] = []  # the askers since it was sent: the next read's
        self._row: libpq.Row | None = None
        self._error: str | None = None
        self.reads = 0  # reads sent (tests and the bench's notes count them)

    @classmethod
    def for_engine(cls, engine: Engine, query: str, convert: Callable[[libpq.Row | None], T]) -> RepeatedRead[T] | None:
        """A reader on the engine's PostgreSQL database; None for SQLite."""
        if backend_of(engine) != "postgis":
            return None
        return cls(libpq.conninfo(engine), query, convert)

    @property
    def ready(self) -> bool:
        """Whether `ask` can send now: the connection is open, on the running loop (else `current` opens it)."""
        return self._conn is not None and self._loop is asyncio.get_running_loop()

    def ask(self, answered: Answered[T]) -> None:
        """`answered` called, on the loop, with the value of a read sent after this call (or with why it failed); only
        when `ready`. It is never called from within this call."""
        if not self.ready:
            raise RuntimeError("the connection is not open on this event loop (await current() first)")
        if self._out:
            self._next.append(answered)
            return
        self._out.append(answered)
        self._send()

    async def current(self) -> T:
        """The value as of a read sent after this call; the read's failure raised."""
        loop = asyncio.get_running_loop()
        if not self.ready:
            await self._open(loop)
        done: asyncio.Future[T] = loop.create_future()

        def answered(value: T | None, error: BaseException | None) -> None:
            if done.done():  # the caller went away
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(value)  # type: ignore[arg-type]

        self.ask(answered)
        return await done

    # -- the connection ----------------------------------------------------------------------------------------------
    async def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:  # another loop's (a test client's each its own): let go without awaiting
            self.close()
            self._loop = loop
        task = self._opening
        if task is None or task.get_loop() is not loop:
            task = self._opening = loop.create_task(self._connect(loop))
            task.add_done_callback(self._opened)
        await asyncio.shield(task)  # an asker that goes away leaves the opening to the others

    def _opened(self, task: asyncio.Task[None]) -> None:
        if self._opening is task:
            self._opening = None
        if not task.cancelled():
            task.exception()  # retrieved: every asker that waited has it raised

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        epoch = self._epoch
        conn = await libpq.connect(self.conninfo, loop)
        try:
            await libpq.exchange(loop, conn.pgconn, lambda p: p.send_prepare(_NAME, self._query))
        except BaseException:
            conn.pgconn.finish()
            raise
        if self._epoch != epoch or self._loop is not loop:  # closed meanwhile
            conn.pgconn.finish()
            raise RuntimeError("the reader was closed while it connected")
        self._conn, self._fd = conn, conn.pgconn.socket
        loop.add_reader(self._fd, self._on_readable)

    def close(self, why: BaseException | None = None) -> None:
        """Let go of the connection without awaiting (the loop may have ended); its askers are told the read failed."""
        conn, loop, self._conn = self._conn, self._loop, None
        self._epoch += 1
        if conn is not None:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(self._fd)  # before the descriptor can be reused
                loop.remove_writer(self._fd)  # (a read whose send had to wait for the socket)
            conn.pgconn.finish()
        self._fd = -1
        askers, self._out, self._next = self._out + self._next, [], []
        self._row, self._error = None, None
        error = why or psycopg.OperationalError("the connection of the repeated read was closed")
        for answered in askers:
            _call(answered, None, error)

    # -- a read ------------------------------------------------------------------------------------------------------
    def _send(self) -> None:
        assert self._conn is not None
        pg = self._conn.pgconn
        self.reads += 1
        try:
            pg.send_query_prepared(_NAME, None, result_format=Format.TEXT)
            if pg.flush():  # ~40 bytes: sent at once but for a full socket buffer
                self._loop.add_writer(self._fd, self._flush)  # type: ignore[union-attr]
        except psycopg.Error as exc:
            self._loop.call_soon(self.close, exc)  # type: ignore[union-attr]  # (never an asker's call within `ask`)

    def _flush(self) -> None:
        assert self._conn is not None and self._loop is not None
        try:
            if not self._conn.pgconn.flush():
                self._loop.remove_writer(self._fd)
        except psycopg.Error as exc:
            self._loop.remove_writer(self._fd)
            self.close(exc)

    def _on_readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        pg = conn.pgconn
        try:
            pg.consume_input()
        except psycopg.Error as exc:
            self.close(exc)
            return
        if not self._out:  # between reads: a notice, a setting's new value, or the connection's end
            if pg.status == ConnStatus.BAD:
                self.close()
            return
        while not pg.is_busy():
            result = pg.get_result()
            if result is None:  # the read's results all in
                self._answer()
                return
            self._row, self._error = libpq.taken(result, self._row, self._error)
        if pg.status == ConnStatus.BAD:
            self.close()

    def _answer(self) -> None:
        """The read is back: the next one sent for the askers who came meanwhile, then this one's askers answered. A
        statement that failed closes the connection (its askers and the next read's are told): the next read prepares
        it again on a new one."""
        row, error, self._row, self._error = self._row, self._error, None, None
        askers, self._out = self._out, []
        value: T | None = None
        failed: BaseException | None = None
        if error is not None:
            failed = psycopg.DatabaseError(error)
            self.close(failed)
        else:
            if self._next:
                self._out, self._next = self._next, []
                self._send()
            try:
                value = self._convert(row)
            except Exception as exc:  # noqa: BLE001 - handed to every asker
                failed = exc
        for answered in askers:
            _call(answered, value, failed)


def _call(answered: Answered[T], value: T | None, error: BaseException | None) -> None:
    """One asker's callback: its failure is its own (logged), the other askers are still answered."""
    try:
        answered(value, error)
    except Exception:  # noqa: BLE001
        log.exception("an asker of a repeated read failed on its answer")
