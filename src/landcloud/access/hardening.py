"""Transport hardening: security headers, request size limits, rate limits.

Written as plain ASGI middleware so that streamed responses (features, downloads) pass through
untouched. The rate limiter keeps its windows in the process: behind a load balancer each
application server limits on its own, which still bounds guessing per server.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from landcloud.config import Settings
from landcloud.messages import LandcloudError

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


async def _json_error(
    send: Send, status: int, code: str, zh: str, en: str, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps(LandcloudError(code, zh, en).to_dict(), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS, *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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


class SecurityHeaders:
    def __init__(self, app: ASGIApp, map_origins: list[str] | None = None) -> None:
        self.app = app
        self.headers = with_map_origins(SECURITY_HEADERS, map_origins or [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.headers if k not in present]
                if https:
                    headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                if path.startswith("/api/auth") or path.startswith("/api/tokens"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuse request bodies over the limit (submissions have their own, larger one)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def _limit(self, path: str) -> int:
        mb = self.settings.max_upload_mb if path.startswith("/api/submissions") else self.settings.max_request_mb
        return mb * 1024 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        declared = dict(scope.get("headers", [])).get(b"content-length")
        too_large = ("请求体过大", "request body too large")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _json_error(send, 413, "request.too_large", *too_large)
            return
        received = 0
        over = started = False

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True  # the application sees the client go away and reads no further
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # whatever the application answers to a cut-off body, the answer is 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _json_error(send, 413, "request.too_large", *too_large)




class RateLimit:
    """Sliding one-minute windows per client IP: sign-in attempts, and anonymous API requests."""

    def __init__(self, app: ASGIApp, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.settings = settings
        self.clock = clock
        self.windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def _hit(self, bucket: str, ip: str, per_minute: int) -> float | None:
        """Records a request; returns seconds to wait when over the limit."""
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        ip = (scope.get("client") or ("?", 0))[0]
        headers = dict(scope.get("headers", []))
        wait = None
        if scope.get("method") == "POST" and path in SIGNIN_PATHS:
            wait = self._hit("signin", ip, self.settings.rate_limit_signin_per_minute)
        elif (path.startswith("/api") or path.startswith("/ogc")) and b"authorization" not in headers and b"landcloud_session=" not in headers.get(b"cookie", b""):
            if "/tiles/" in path:  # one map view asks for dozens of tiles at once
                wait = self._hit("tiles", ip, self.settings.rate_limit_tiles_per_minute)
            else:
                wait = self._hit("public", ip, self.settings.rate_limit_public_per_minute)
        if wait is not None:
            await _json_error(
                send, 429, "request.rate_limited", "请求过于频繁，请稍后再试", "too many requests; try again later",
                ((b"retry-after", str(max(1, int(wait) + 1)).encode()),),
            )
            return
        await self.app(scope, receive, send)
