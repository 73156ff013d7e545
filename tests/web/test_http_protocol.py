"""The HTTP protocol's tile lane (web/http_protocol.py, publish/tile_lane.py), through a real uvicorn server.

What it answers must be what the application answers (status, headers, bytes; 304 and 204 alike), every change of
access must still count on the very next tile, the anonymous rate limit must count each request once, and whatever it
does not answer (a HEAD, a query string, a body, pipelined requests, a failure of its own) must reach the application
as uvicorn would hand it over. Each server runs in a thread of the test process with its own event loop.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "publish"))

from test_tiles_api import tile_url, tiles_app  # noqa: E402
from test_tiles_decisions import test_every_change_counts_on_the_next_tile as every_change_counts  # noqa: E402
from test_tiles_public import EDITION, EMPTY  # noqa: E402

from landcloud.access import tokens, users  # noqa: E402
from landcloud.catalog import datasets as catalog  # noqa: E402
from landcloud.config import Settings  # noqa: E402
from landcloud.publish.tile_lane import TileLane  # noqa: E402
from landcloud.web import http_protocol  # noqa: E402

from world import World, build  # noqa: E402

pytestmark = pytest.mark.usefixtures("version_facts_at_once")  # answers compared across requests


class LiveClient(httpx.Client):
    """An HTTP client of a live server, with the served application at hand (as `TestClient.app`)."""

    app: FastAPI


@contextmanager
def live(app: FastAPI, http: Any = http_protocol.NAME) -> Iterator[LiveClient]:
    """`app` served by uvicorn (`http`: the protocol, landcloud's by default) on a free port, in a thread."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=http, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = LiveClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
    client.app = app
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(30)


def lane(client: LiveClient) -> TileLane:
    found = client.app.tile_lane  # type: ignore[attr-defined]
    assert isinstance(found, TileLane)
    return found


def served(resp: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """An answer as the client sees it, less the clock's header."""
    return resp.status_code, {k: v for k, v in resp.headers.items() if k != "date"}, resp.content


@pytest.fixture
def lane_client(settings: Settings) -> Iterator[LiveClient]:
    # whether an edition is still published is read again after public_tile_check_ms: that request is the layer's
    with live(tiles_app(settings.model_copy(update={"public_tile_check_ms": 600_000}))) as client:
        yield client


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None, lane_client: LiveClient) -> World:
    return build(engine, settings, lane_client, tmp_path)  # type: ignore[arg-type]


def test_the_lane_answers_what_the_application_answers(world: World, settings: Settings, backend: str) -> None:
    """Signed in and anonymous (a published edition), 200, 304 and 204: the lane's answers against those of another
    server of the same store on uvicorn's own protocol, which never asks the lane."""
    # on PostgreSQL a tile not in memory under a remembered decision is made by the lane's coroutine too (the empty
    # tile, after the first tile's decision): one answer more
    answered = lane(world.client).answered + (backend == "postgis")  # type: ignore[arg-type]
    with live(tiles_app(settings), http="httptools") as plain:
        # open data read by a signed-in caller: not audited (an audited tile always takes the full path)
        daoli = world.headers("daoli")
        signed_in = tile_url("open-dltb")
        for path, status in ((signed_in, 200), (signed_in.rsplit("/", 2)[0] + "/0/0", 204)):
            for client in (world.client, plain):
                assert client.get(path, headers=daoli).status_code == status  # the decision remembered, the tile kept
            mine = world.client.get(path, headers=daoli)
            theirs = plain.get(path, headers=daoli)
            assert served(mine) == served(theirs) and mine.status_code == status
            assert mine.headers["cache-control"] == "private, no-cache" and mine.headers["x-frame-options"] == "DENY"
        assert mine.content == b"" and theirs.content == b""
        assert lane(world.client).answered == answered + 2  # type: ignore[arg-type]
        etag = world.client.get(signed_in, headers=daoli).headers["etag"]
        for inm in (etag, f'W/{etag}, "other"', "*"):
            mine, theirs = (c.get(signed_in, headers={**daoli, "If-None-Match": inm}) for c in (world.client, plain))
            assert served(mine) == served(theirs) and mine.status_code == 304 and mine.content == b""
        assert lane(world.client).answered == answered + 6  # type: ignore[arg-type]
        assert world.client.get(tile_url(), headers=world.headers("prov")).status_code == 200  # audited: the full path
        assert lane(world.client).answered == answered + 6  # type: ignore[arg-type]

        public = tile_url(EDITION)
        for path, status in ((public, 200), (EMPTY, 204)):
            for client in (world.client, plain):
                assert client.get(path).status_code == status  # the route answers; its answer is kept
            mine, theirs = world.client.get(path), plain.get(path)
            assert served(mine) == served(theirs) and mine.status_code == status
            assert mine.headers["content-security-policy"].startswith("default-src 'self'")
        assert lane(world.client).answered == answered + 8  # type: ignore[arg-type]
        etag = world.client.get(public).headers["etag"]
        mine, theirs = (c.get(public, headers={"If-None-Match": etag}) for c in (world.client, plain))
        assert served(mine) == served(theirs) and mine.status_code == 304
        assert lane(world.client).answered == answered + 10  # type: ignore[arg-type]


def test_every_change_counts_on_the_next_tile_through_the_lane(world: World, engine: sa.Engine, settings: Settings) -> None:
    """A role, an account, a token and a dataset's policy changed between two tiles the lane answers (open data: not
    audited); and test_tiles_decisions' own scenario (audited reads: the full path) through the live server."""
    path = tile_url("open-dltb")
    counted = lane(world.client)  # type: ignore[arg-type]

    def twice(who: str) -> list[int]:
        """The first answer made or confirmed by the full path, the second by the lane."""
        before = counted.answered
        answers = [status(world, who, path) for _ in range(2)]
        assert counted.answered >= before + 1
        return answers

    assert twice("daoli") == [200, 200]
    users.set_roles(engine, "daoli", ["secadmin"])  # an administrator reads no data: the gate refuses
    assert status(world, "daoli", path) in (403, 404)
    users.set_roles(engine, "daoli", ["viewer"])
    assert twice("daoli") == [200, 200]
    users.set_active(engine, "daoli", False)  # a disabled account: its credential is refused
    assert status(world, "daoli", path) == 401
    users.set_active(engine, "daoli", True)

    user = users.find_user(engine, "qqhr") or {}
    plaintext, record = tokens.create_token(engine, settings, user, "map", ["read"])
    world.tokens["qqhr-token"] = plaintext
    assert twice("qqhr-token") == [200, 200]
    tokens.revoke_token(engine, user, record["id"])
    assert status(world, "qqhr-token", path) == 401

    assert twice("qqhr") == [200, 200]
    catalog.update_metadata(engine, "open-dltb", {"security_level": "sensitive"})  # the owner unit only
    assert status(world, "qqhr", path) in (403, 404)

    answered = counted.answered
    every_change_counts(world, engine, settings, "")
    assert counted.answered == answered  # audited throughout


def status(world: World, who: str, path: str) -> int:
    return world.get(path, who).status_code  # type: ignore[no-any-return]


def test_the_anonymous_rate_limit_counts_each_tile_once(engine: sa.Engine, settings: Settings, tmp_path: Path,
                                                        cheap_passwords: None) -> None:
    limited = settings.model_copy(update={"rate_limit_tiles_per_minute": 3})
    with live(tiles_app(limited)) as client:
        build(engine, limited, client, tmp_path)  # type: ignore[arg-type]
        url = tile_url(EDITION)
        answered = lane(client).answered
        assert [client.get(url).status_code for _ in range(3)] == [200, 200, 200]  # the route's, then the lane's
        assert lane(client).answered == answered + 2
        refused = client.get(url)
        assert refused.status_code == 429 and refused.json()["error"] == "request.rate_limited"
        assert refused.headers["retry-after"].isdigit() and refused.headers["x-content-type-options"] == "nosniff"
        assert lane(client).answered == answered + 3


def _raw(client: LiveClient, data: bytes, answers: int = 1, bodies: bool = True) -> list[bytes]:
    """What the server sends back to `data` written at once on one connection: `answers` answers (head and body, if
    `bodies`: not to a HEAD), and whether the server then closed the connection."""
    port = int(str(client.base_url).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        out: list[bytes] = []
        while len(out) < answers:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            got += chunk
            while b"\r\n\r\n" in got:
                head, rest = got.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
                length = length if bodies else 0
                if len(rest) < length:
                    break
                out.append(head + b"\r\n\r\n" + rest[:length])
                got = rest[length:]
        closed = False
        if len(out) == answers:
            sock.settimeout(0.5)
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                closed = False
        out.append(b"closed" if closed else b"open")
        return out


def undated(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.lower().startswith(b"date:"))


def test_what_the_lane_leaves_to_the_application(world: World) -> None:
    """A HEAD, a query string, a body and a percent-encoded path go to the application; pipelined requests are
    answered in order; HTTP/1.0 closes; a proxy's https is the application's https; a failing lane is not seen."""
    client: LiveClient = world.client  # type: ignore[assignment]
    url = tile_url(EDITION)
    assert client.get(url).status_code == 200  # kept
    answered = lane(client).answered
    host = b"Host: t\r\n"
    head = _raw(client, b"HEAD " + url.encode() + b" HTTP/1.1\r\n" + host + b"\r\n", bodies=False)
    assert head[0].startswith(b"HTTP/1.1 405") and head[-1] == b"open"  # the route's answer to a HEAD
    assert client.get(url, params={"f": "mvt"}).status_code == 200
    assert client.request("GET", url, content=b"x").status_code == 200
    assert client.get(url.replace("WebMercatorQuad", "WebMercator%51uad")).status_code == 200
    assert lane(client).answered == answered  # none of them

    one = b"GET " + url.encode() + b" HTTP/1.1\r\n" + host + b"\r\n"
    two = b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n"
    answers = _raw(client, one + two + one, answers=3)
    assert lane(client).answered == answered + 1  # the first; the third waited for the second, which the application had
    assert [a.split(b"\r\n", 1)[0] for a in answers[:3]] == [b"HTTP/1.1 200 OK"] * 3 and answers[3] == b"open"
    assert b'"status":"ok"' in answers[1] and undated(answers[0]) == undated(answers[2])
    assert answers[0].endswith(client.get(url).content)
    assert lane(client).answered == answered + 2
    old = _raw(client, b"GET " + url.encode() + b" HTTP/1.0\r\n\r\n")
    assert old[0].startswith(b"HTTP/1.1 200") and b"connection: close" in old[0] and old[-1] == b"closed"
    assert lane(client).answered == answered + 3

    proxied = client.get(url, headers={"X-Forwarded-Proto": "https"})  # from 127.0.0.1, a trusted proxy
    assert proxied.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in client.get(url).headers
    assert lane(client).answered == answered + 5


def test_a_failing_lane_leaves_the_answer_to_the_application(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    client: LiveClient = world.client  # type: ignore[assignment]
    url = tile_url("open-dltb")
    daoli = world.headers("daoli")
    first = client.get(url, headers=daoli)

    def broken(*_args: Any) -> None:
        raise RuntimeError("a bug in the lane")

    monkeypatch.setattr(TileLane, "answer", broken)
    again = client.get(url, headers=daoli)
    assert served(again) == served(first) and again.status_code == 200
    assert lane(client).answered == 0
    monkeypatch.undo()
    monkeypatch.setattr(http_protocol.LandcloudHttp, "_send", broken)  # the lane's answer made, its write failing
    again = client.get(url, headers=daoli)
    assert served(again) == served(first) and again.status_code == 200
    assert lane(client).answered == 1


@pytest.mark.parametrize("backend", ["postgis"])  # SQLite's generation is read at once: there is no read to wait for
def test_postgres_tiles_in_memory_are_confirmed_by_shared_reads(world: World, engine: sa.Engine, backend: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a signed-in tile in memory is answered from the generation read's callback (`tile_lane.Confirming`,
    no coroutine), byte for byte the application's answer, from 8 connections at once, the clients sharing reads;
    a pipelined request after one waits its turn; the reader's connection ended by the server, the next tile still
    has its answer and the one after is answered from a read on a new connection."""
    client: LiveClient = world.client  # type: ignore[assignment]
    url, daoli = tile_url("open-dltb"), world.headers("daoli")
    first = client.get(url, headers=daoli)  # decided by the full path
    assert client.get(url, headers=daoli).status_code == 200  # the lane's coroutine: the reader's connection opened
    laned, reader = lane(client), client.app.state.generations
    later: list[Any] = []
    coroutine = TileLane.later
    monkeypatch.setattr(TileLane, "later", lambda self, *args: (later.append(args), coroutine(self, *args))[1])
    answered, reads = laned.answered, reader.reads

    def six(_: int) -> list[tuple[int, dict[str, str], bytes]]:
        with httpx.Client(base_url=client.base_url, timeout=30) as own:
            return [served(own.get(url, headers=daoli)) for _ in range(6)]

    with ThreadPoolExecutor(8) as pool:
        answers = [a for six_of in pool.map(six, range(8)) for a in six_of]
    assert len(answers) == 48 and all(a == served(first) for a in answers) and first.status_code == 200
    assert later == [] and laned.answered == answered + 48
    assert 1 <= reader.reads - reads <= 48

    one = f"GET {url} HTTP/1.1\r\nHost: t\r\nAuthorization: {daoli['Authorization']}\r\n\r\n".encode()
    two = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    raw = _raw(client, one + two + one, answers=3)
    assert [a.split(b"\r\n", 1)[0] for a in raw[:3]] == [b"HTTP/1.1 200 OK"] * 3 and raw[3] == b"open"
    assert raw[0].endswith(first.content) and b'"status":"ok"' in raw[1] and undated(raw[0]) == undated(raw[2])
    assert laned.answered == answered + 49  # the first; the third waited for the second, which the application had

    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": reader._pg._conn.pgconn.backend_pid})
    deadline = time.monotonic() + 10
    while reader._pg._conn is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reader._pg._conn is None  # the end seen by the connection's reader while idle
    assert served(client.get(url, headers=daoli)) == served(first)
    assert len(later) == 1  # the lane's coroutine opened a connection again
    assert served(client.get(url, headers=daoli)) == served(first)
    assert len(later) == 1 and laned.answered == answered + 51
