"""Transport hardening: security headers, request size limits, rate limits.

Written as plain ASGI middleware so that streamed responses (features, downloads) pass through
untouched. The rate limiter keeps its windows in the process: behind a load balancer each
application server limits on its own, which still bounds guessing per server.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from landcloud.access.auth import SESSION_COOKIE
from landcloud.config import Settings
from landcloud.messages import LandcloudError
from landcloud.web.errors import STATUS_TEXT

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(self)"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        b"worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    ),
]
SIGNIN_PATHS = ("/api/auth/token", "/api/auth/session")


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body: a whole answer, as the lanes give one
SESSION_MENTIONED = SESSION_COOKIE.encode()  # in a Cookie header: the public tiles treat it as signed in, however spelled
_SESSION_SET = SESSION_MENTIONED + b"="  # as a Cookie header carries the session


def signs_in(name: bytes, value: bytes) -> bool:
    """Whether a request header makes the request "signed in" for the rate limits: an Authorization header or a
    session cookie (a bad one is then refused by authentication, not counted)."""
    return name == b"authorization" or (name == b"cookie" and _SESSION_SET in value)


def error_answer(status: int, code: str, zh: str, en: str, extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    body = json.dumps(LandcloudError(code, zh, en).to_dict(), ensure_ascii=False).encode()
    return status, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers], body


async def _json_error(
    send: Send, status: int, code: str, zh: str, en: str, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    status, headers, body = error_answer(status, code, zh, en, extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_RATE_LIMITED = ("request.rate_limited", "请求过于频繁，请稍后再试", "too many requests; try again later")


def _retry_after(wait: float) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"retry-after", str(max(1, int(wait) + 1)).encode()),)


def with_map_origins(headers: list[tuple[bytes, bytes]], origins: list[str]) -> list[tuple[bytes, bytes]]:
    """The headers with a content-security-policy that also lets the map fetch tiles from `origins`
    (a deployment's basemap, e.g. 天地图); everything else stays 'self' only."""
    if not origins:
        return headers
    extra = " ".join(origins).encode()
    out = []
    for k, v in headers:
        if k == b"content-security-policy":
            v = v.replace(b"img-src 'self'", b"img-src 'self' " + extra).replace(b"connect-src 'self'", b"connect-src 'self' " + extra)
        out.append((k, v))
    return out


def origin_of(url: str | None) -> list[str]:
    """['https://host[:port]'] of a URL template, or [] (no basemap, or not an http(s) URL)."""
    parts = urlsplit(url or "")
    return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme in ("http", "https") and parts.netloc else []


class RateLimit:
    """Sliding one-minute windows per client IP: sign-in attempts, and anonymous API requests (tiles apart: one map
    view asks for dozens at once)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def wait(self, ip: str, method: str | None, path: str, signed_in: bool) -> float | None:
        """Records the request in its window, if it is counted; seconds to wait when over the limit, else None."""
        if method == "POST" and path in SIGNIN_PATHS:
            return self._hit("signin", ip, self.settings.rate_limit_signin_per_minute)
        if signed_in or not (path.startswith("/api") or path.startswith("/ogc")):
            return None
        if "/tiles/" in path:
            return self._hit("tiles", ip, self.settings.rate_limit_tiles_per_minute)
        return self._hit("public", ip, self.settings.rate_limit_public_per_minute)

    def _hit(self, bucket: str, ip: str, per_minute: int) -> float | None:
        now = self.clock()
        window = self.windows[(bucket, ip)]
        while window and now - window[0] >= 60:
            window.popleft()
        if len(window) >= per_minute:
            return 60 - (now - window[0])
        window.append(now)
        if len(self.windows) > 100_000:  # forget idle clients rather than grow without bound
            for key in [k for k, w in self.windows.items() if not w or now - w[-1] >= 60]:
                del self.windows[key]
        return None


_TOO_LARGE = ("request.too_large", "请求体过大", "request body too large")
NUL_REFUSED = "cannot contain NUL"  # psycopg's words for a text with U+0000, which PostgreSQL cannot store


def nul_character() -> LandcloudError:
    return LandcloudError("request.nul_character", "请求中含有空字符（U+0000），无法处理", "the request contains a NUL character (U+0000)")


def _has_nul(scope: Scope) -> bool:
    """A NUL in the path or the query string (as sent, or percent-encoded): no identifier, code or text of ours holds
    one, and PostgreSQL could not compare with it."""
    query = scope.get("query_string", b"")
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query


class Hardening:
    """The application's outermost layer: the rate limits, the request body limits (submissions have their own,
    larger one) and the security headers on every answer, the application's own 500s included.

    One layer rather than three, each with its own look at the headers and its own wrapper around `send`: a cached
    tile's whole answer costs the server ~0.15-0.3 ms of CPU, and each layer and wrapper it passes was a few percent
    of that (benchmarks/profiles/tiles-edge.txt). A request "signed in" for the rate limit presents an Authorization
    header or a session cookie (a bad one is then refused by authentication, not counted)."""

    def __init__(self, app: ASGIApp, settings: Settings, map_origins: list[str] | None = None) -> None:
        self.app = app
        self.settings = settings
        self.limits = RateLimit(settings)
        self.headers = with_map_origins(SECURITY_HEADERS, map_origins or [])

    def _body_limit(self, path: str) -> int:
        mb = self.settings.max_upload_mb if path.startswith("/api/submissions") else self.settings.max_request_mb
        return mb * 1024 * 1024

    def rate_limited(self, client: str | None, method: str, path: str, signed_in: bool) -> Answer | None:
        """The request counted by the rate limit (`RateLimit.wait`), and the 429 (headers not yet secured) when over
        it: for a lane that answers before this layer (`publish.tile_lane`)."""
        wait = self.limits.wait(client or "?", method, path, signed_in)
        return None if wait is None else error_answer(429, *_RATE_LIMITED, _retry_after(wait))

    def secured(self, headers: Iterable[tuple[bytes, bytes]], https: bool, path: str) -> list[tuple[bytes, bytes]]:
        """An answer's headers with the security headers it does not set itself."""
        out = list(headers)  # (an ASGI iterable: read once)
        present = {k.lower() for k, _ in out}
        out += [(k, v) for k, v in self.headers if k not in present]
        if https:
            out.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        if path.startswith("/api/auth") or path.startswith("/api/tokens"):
            out.append((b"cache-control", b"no-store"))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        signed_in = False
        declared: bytes | None = None
        for name, value in scope.get("headers", ()):
            if signs_in(name, value):
                signed_in = True
            elif name == b"content-length":
                declared = value
        https = scope.get("scheme") == "https"
        started = over = False

        async def secured_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # whatever the application answers to a cut-off body, the answer is 413
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = self.secured(message.get("headers", []), https, path)
            await send(message)

        wait = self.limits.wait((scope.get("client") or ("?", 0))[0], scope.get("method"), path, signed_in)
        if wait is not None:
            await _json_error(secured_send, 429, *_RATE_LIMITED, _retry_after(wait))
            return
        if _has_nul(scope):
            error = nul_character()
            await _json_error(secured_send, 400, error.message.code, error.message.zh, error.message.en)
            return
        limit = self._body_limit(path)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _json_error(secured_send, 413, *_TOO_LARGE)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True  # the application sees the client go away and reads no further
                    return {"type": "http.disconnect"}
            return message

        try:
            await self.app(scope, counting_receive, secured_send)
        except Exception:
            if over:
                pass  # the 413 below
            elif started:
                raise
            else:  # a layer outside FastAPI's error handling failed (the tile lanes): a 500 in our words, then the log
                await _json_error(secured_send, 500, "server.error", *STATUS_TEXT[500])
                raise
        if over and not started:
            over = False
            await _json_error(secured_send, 413, *_TOO_LARGE)
