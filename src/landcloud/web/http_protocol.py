"""uvicorn's httptools protocol with the application's tile lane asked first (`publish.tile_lane`).

    landcloud serve                  (uses it)
    uvicorn landcloud.app:create_app --factory --http landcloud.web.http_protocol:LandcloudHttp

For every request uvicorn builds an ASGI scope, a request-response cycle with its event, and a task; the application's
layers each add a coroutine, and the answer goes out as two ASGI messages, each checked header by header, in two
writes to the socket. For a tile answered from memory that was most of its cost: as much as everything a bare
Starlette application does to answer a tile from a dict (benchmarks/profiles/tiles-protocol.txt). Here, once a
GET's headers are parsed, the application's tile lane is asked synchronously; its answer is written at once, in one
write, and the request is done. Whatever the lane does not answer goes on exactly as uvicorn would take it.

The lane is asked only when uvicorn would start the request at once (no earlier request of the connection still
answering, the socket not backed up), never for an upgrade, and only when nothing but uvicorn's own proxy-headers
layer stands between the server and the application (another wrapper must see every request).

An answer that waits for a read (PostgreSQL's access generation, for a signed-in tile) gets uvicorn's own cycle, so
that the connection's next request, its end and the server's shutdown are handled as uvicorn does; the answer is then
written from the read's callback (`_deliver`, no task), or from a task when it is a coroutine's or the application's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable
from typing import Any

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr
from uvicorn.server import ServerState

from landcloud.access.hardening import Answer, Scope
from landcloud.publish.tile_lane import Confirming, TileLane

log = logging.getLogger(__name__)

NAME = "landcloud.web.http_protocol:LandcloudHttp"  # as uvicorn's --http takes it


_failed_at = [-math.inf]


def _lane_failed() -> None:
    """Logged with its traceback once a minute at most: a lane that fails would otherwise say so for every tile."""
    now = time.monotonic()
    if now - _failed_at[0] >= 60:
        _failed_at[0] = now
        log.exception("the tile lane failed; the application answers")


def lane_of(app: Any) -> tuple[TileLane | None, ProxyHeadersMiddleware | None]:
    """The application's tile lane, and uvicorn's proxy-headers layer around it if any; no lane when anything else
    wraps the application, or it has none (not a landcloud application, or its layers not yet built)."""
    proxy = None
    if isinstance(app, ProxyHeadersMiddleware):
        proxy, app = app, app.app
    return getattr(app, "tile_lane", None), proxy


class LandcloudHttp(HttpToolsProtocol):
    """See the module docstring."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._lane_answered = False
        self._proxy: ProxyHeadersMiddleware | None = None

    def _lane(self) -> TileLane | None:
        # looked up per request, not per connection: the application builds its layers (and lane) at its first call
        lane, self._proxy = lane_of(self.app)
        return lane if not self.root_path else None

    def on_headers_complete(self) -> None:
        try:
            answered = self._lane_first()
        except Exception:  # noqa: BLE001 - the application answers (and reports its own failures)
            _lane_failed()
            answered = False
        if not answered:
            super().on_headers_complete()

    def _lane_first(self) -> bool:
        """Whether the lane answered the request (now, or in a task of its own); nothing is written otherwise. (Any
        failure here, the lane's or a change in uvicorn's internals, leaves the request to uvicorn, as if no lane.)"""
        lane = self._lane()
        if (
            lane is None
            or not (self.cycle is None or self.cycle.response_complete)
            or self.pipeline
            or self.flow.write_paused
            or self.parser.get_method() != b"GET"
            or self.parser.should_upgrade()
            or self._over_limit()
        ):
            return False
        answer = lane.answer(self.url, self.scope, *self._forwarded())
        if isinstance(answer, tuple):
            self._write(answer, self._keep_alive())
            return True
        if isinstance(answer, Confirming):
            cycle = self._cycle()
            answer.start(lambda confirmed: self._deliver(cycle, confirmed))
            return True
        if answer is not None:
            self._answer_later(answer)
            return True
        return False

    def _over_limit(self) -> bool:
        """uvicorn's --limit-concurrency reached: its 503, as it would answer."""
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit)

    def _forwarded(self) -> tuple[str | None, bool]:
        """(the client's address, whether over https) as uvicorn's proxy-headers layer makes them for the application."""
        client = self.client[0] if self.client else None
        scheme = self.scheme
        proxy = self._proxy
        if proxy is not None and client in proxy.trusted_hosts:
            forwarded_for: list[bytes] = []
            for name, value in self.headers:
                if name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").strip()
                    if proto in ("http", "https"):
                        scheme = proto
                elif name == b"x-forwarded-for":
                    forwarded_for.append(value)
            if forwarded_for:
                host, _port = proxy.trusted_hosts.get_trusted_client_address(b", ".join(forwarded_for).decode("latin-1"))
                client = host or client
        return client, scheme == "https"

    def _keep_alive(self) -> bool:
        return self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()

    def _write(self, answer: Answer, keep_alive: bool) -> None:
        """The lane's answer now; then the connection waits for the next request as after any answer."""
        self._send(answer, keep_alive, self.scope, self.url, self.parser.get_http_version())
        self._lane_answered = True  # (after the write: had it failed, uvicorn takes the request whole)
        self.server_state.total_requests += 1
        if keep_alive and self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def _send(self, answer: Answer, keep_alive: bool, scope: Scope, target: bytes, version: str) -> None:
        """The whole answer in one write (uvicorn writes the head and the body apart: two sends, each a few percent of
        a tile answered from memory), closing the connection after it unless kept alive. (`scope`, `target` and
        `version` for the access log: the request's, which the parser may have left for the next one meanwhile.)"""
        status, headers, body = answer
        if self.access_log:
            self.access_logger.info('%s - "GET %s HTTP/%s" %d', get_client_addr(scope), target.decode("latin-1"), version, status)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        head.append(body)
        self.transport.write(b"".join(head))
        if not keep_alive:
            self.transport.close()

    def _cycle(self) -> RequestResponseCycle:
        """uvicorn's own cycle for a request whose answer needs waiting (a read that is a round trip), as for any other:
        the connection's next request (pipelined), its end and the server's shutdown are then handled as uvicorn does,
        and the application can take the request over whole."""
        self.scope["method"] = "GET"
        if (version := self.parser.get_http_version()) != "1.1":
            self.scope["http_version"] = version
        self.scope["path"] = self.url.decode("latin-1")
        self.scope["raw_path"] = self.url
        self.scope["query_string"] = b""
        self.cycle = cycle = RequestResponseCycle(
            scope=self.scope, transport=self.transport, flow=self.flow, logger=self.logger,
            access_logger=self.access_logger, access_log=self.access_log, default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(), expect_100_continue=False, keep_alive=self._keep_alive(),
            on_response=self.on_response_complete,
        )
        return cycle

    def _deliver(self, cycle: RequestResponseCycle, answer: Answer | None) -> None:
        """A `Confirming` answer, from the read's callback: sent at once, without a task, when the socket takes it; else
        (None, or the socket backed up) in a task, as `_answer_later` does."""
        if answer is not None and not cycle.disconnected and not self.flow.write_paused:
            if self._sent(cycle, answer):
                return
            answer = None
        if not cycle.disconnected:
            self._task(self._finish(cycle, answer))

    def _answer_later(self, pending: Awaitable[Answer | None]) -> None:
        """The lane's answer is a coroutine: a task awaits it and sends it, or hands the request to the application."""
        self._task(self._then(self._cycle(), pending))

    def _task(self, coroutine: Awaitable[None]) -> None:
        task = self.loop.create_task(coroutine)  # type: ignore[arg-type]
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _then(self, cycle: RequestResponseCycle, pending: Awaitable[Answer | None]) -> None:
        try:
            answer = await pending
        except Exception:  # noqa: BLE001 - the application answers (and reports its own failures)
            _lane_failed()
            answer = None
        await self._finish(cycle, answer)

    async def _finish(self, cycle: RequestResponseCycle, answer: Answer | None) -> None:
        if answer is None:
            await cycle.run_asgi(self.app)
            return
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()
        if cycle.disconnected:
            return
        if not self._sent(cycle, answer):
            await cycle.run_asgi(self.app)

    def _sent(self, cycle: RequestResponseCycle, answer: Answer) -> bool:
        """Whether `answer` went out as the cycle's response (False: nothing written, the application answers)."""
        scope = cycle.scope
        try:
            self._send(answer, cycle.keep_alive, scope, scope["raw_path"], scope["http_version"])
        except Exception:  # noqa: BLE001 - nothing written: the application answers
            _lane_failed()
            return False
        cycle.response_started = cycle.response_complete = True
        cycle.message_event.set()
        cycle.on_response()  # uvicorn's: the connection's next request (pipelined), or its keep-alive timer
        return True

    def on_body(self, body: bytes) -> None:
        if not self._lane_answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._lane_answered:
            self._lane_answered = False
            return
        super().on_message_complete()
