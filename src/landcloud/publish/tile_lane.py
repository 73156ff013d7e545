"""Tiles answered from memory before any ASGI layer: the lane that `web.http_protocol` asks first.

A map asks for dozens of tiles at a time and comes back to them, and most are answered from memory: a published
edition's tile as anyone reads it (`public_tiles`), or a signed-in caller's under a remembered decision that still
stands (`tiles_router.remembered_tile_now`). What such an answer costs is nearly all the Python around it: on uvicorn,
the request's ASGI scope, cycle object, event and task, each middleware's coroutine and `send` wrapper, two ASGI
messages and two writes to the socket. That was more than the tile's own steps, and as much as a bare Starlette
application answering the same tiles from a dict (benchmarks/profiles/tiles-protocol.txt). This lane is asked by the
HTTP protocol as soon as a request's headers are parsed, synchronously, and its answer goes out in one write.

It answers only what the ASGI path would answer the same, with the same headers (the security headers of
`hardening.Hardening`, the caching headers of the tile's plan), and counts what the rate limit counts; anything else
(no tile path, a query string, a body, a decision not remembered or no longer standing, a tile not in memory, an
access generation that is a round trip away) is None, and the request goes on to the application unchanged. On
PostgreSQL a signed-in tile's access generation is a round trip: for a tile in memory `Confirming` asks the
generation's reader and answers from its callback (no task or coroutine: they were a fifth of such a tile's CPU,
benchmarks/profiles/tiles-protocol.txt); a tile to be made, or the first tile before the reader's connection is open,
is answered by `later`, a coroutine of its own, still ahead of the ASGI layers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from landcloud.access.decisions import Generation
from landcloud.access.hardening import SESSION_MENTIONED, Answer, Hardening, Scope, signs_in
from landcloud.publish import tiles_router
from landcloud.publish.public_tiles import PublicTiles

# as sent, so plain characters only: a percent-encoded or non-ASCII path, or a query string, goes to the application
_TILE = re.compile(rb"^/ogc/collections/([!$&-.0-9;=@-Z_a-z~]+)/tiles/([!$&-.0-9;=@-Z_a-z~]+)/([0-9]{1,10})/([0-9]{1,10})/([0-9]{1,10})$")
_BODY_HEADERS = (b"content-length", b"transfer-encoding", b"expect")


class TileLane:
    """The application's lane (see the module docstring), made with its edge layers (`app.LandcloudApp`)."""

    def __init__(self, state: Any, hardening: Hardening, public: PublicTiles | None) -> None:
        self.state = state
        self.hardening = hardening
        self.public = public
        self.round_trip = state.generations.available and not state.generations.at_once
        self.answered = 0  # answers it gave (tests and the bench's notes count them)

    def answer(self, target: bytes, scope: Scope, client: str | None, https: bool
               ) -> Answer | Confirming | Awaitable[Answer | None] | None:
        """The answer to `GET target` (the request's target as sent; `scope` as the protocol has it so far, its
        headers and state; `client` and `https` as the proxy headers make them): an answer now, one to be confirmed by
        a read (`Confirming`), a coroutine for one (`later`), or None (the application answers, with `scope`)."""
        match = _TILE.match(target)
        if match is None:
            return None
        headers = scope["headers"]
        signed_in = mentioned = False
        if_none_match = None
        for name, value in headers:
            if name in _BODY_HEADERS:
                return None  # a body: the body limits and the route decide
            if name == b"if-none-match":
                if if_none_match is None:
                    if_none_match = value
            elif signs_in(name, value):
                signed_in = True
            elif name == b"cookie" and SESSION_MENTIONED in value:
                mentioned = True  # not signed in for the rate limit, not anonymous for the public tiles
        path = match.group(0).decode("ascii")
        dataset_id, tms, z, row, col = (g.decode("ascii") for g in match.groups())
        params = {"dataset_id": dataset_id, "tms_id": tms, "z": z, "y": row, "x": col}
        if signed_in:  # not counted by the rate limit (a bad credential is refused by authentication)
            if self.round_trip:
                return self._confirming(scope, headers, params, path, https)
            found = tiles_router.remembered_tile_now(self.state, headers, params)
            return None if found is None else self._secured(found, https, path)
        if mentioned:
            return None
        return self._public(params, path, if_none_match, client, https)

    def _public(self, params: dict[str, str], path: str, if_none_match: bytes | None, client: str | None, https: bool
                ) -> Answer | None:
        """A published edition's tile as anyone reads it, kept by `PublicTiles`, while its fact is fresh."""
        if self.public is None:
            return None
        cache = self.public.cache
        fresh, fact = cache.fresh_fact(params["dataset_id"])
        if not fresh or fact is None:
            return None  # the layer reads it (and decides)
        entry = cache.get((params["dataset_id"], fact[0], fact[1], params["tms_id"], params["z"], params["y"], params["x"]), False)
        if entry is None:
            return None
        refused = self.hardening.rate_limited(client, "GET", path, False)  # counted only once it is answered here
        if refused is not None:
            return self._secured(refused, https, path)
        return self._secured(entry.answer(if_none_match), https, path)

    def _confirming(self, scope: Scope, headers: list[tuple[bytes, bytes]], params: dict[str, str], path: str, https: bool
                    ) -> Confirming | Awaitable[Answer | None] | None:
        found = tiles_router.remembered_found(self.state, headers, params)
        if found is None:
            return None
        if not found.at_hand or not self.state.generations.asks:
            return self.later(scope, params, path, https, found)  # made on the loop; or the reader's connection opened
        return Confirming(self, found, https, path)

    async def later(self, scope: Scope, params: dict[str, str], path: str, https: bool,
                    found: tiles_router.Found | None = None) -> Answer | None:
        """A signed-in tile whose access generation is a round trip away (PostgreSQL): `RememberedTiles`' answer, with
        what it leaves in the request's state for the route when there is none (`scope` goes on to the application).
        `found`: what the lane found already (`tiles_router.remembered_found`)."""
        scope.setdefault("state", {})[tiles_router.LANE_TRIED] = True
        answer = await tiles_router.remembered_tile(scope, params, self.state, found)
        return None if answer is None else self._secured(answer, https, path)

    def _secured(self, answer: Answer, https: bool, path: str) -> Answer:
        self.answered += 1
        status, headers, body = answer
        return status, self.hardening.secured(headers, https, path), body


class Confirming:
    """A signed-in tile in memory (or the caller's copy current) under a remembered decision, answered once a read of the
    access generation sent after the request came is back, if the decision still stands (PostgreSQL). The protocol
    calls `start` with what takes the answer (None: the application answers); the reader calls this object back."""

    __slots__ = ("lane", "found", "https", "path", "deliver")

    def __init__(self, lane: TileLane, found: tiles_router.Found, https: bool, path: str) -> None:
        self.lane, self.found, self.https, self.path = lane, found, https, path
        self.deliver: Callable[[Answer | None], None] | None = None

    def start(self, deliver: Callable[[Answer | None], None]) -> None:
        self.deliver = deliver
        self.lane.state.generations.ask(self)

    def __call__(self, generation: Generation | None, error: BaseException | None) -> None:
        assert self.deliver is not None
        answer = None
        if error is not None:
            tiles_router.warn_loop_failed(error)
        else:
            found = self.found
            try:
                answer = found.answer(self.lane.state, generation, found.data)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - the application answers (and reports its own failures)
                tiles_router.warn_loop_failed(exc)
            if answer is not None:
                answer = self.lane._secured(answer, self.https, self.path)
        self.deliver(answer)
