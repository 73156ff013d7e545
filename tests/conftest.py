"""Fixtures shared by the suite: both stores, real data paths, small file builders.

Every store test is parametrised over SQLite and PostGIS. PostGIS comes from
LANDCLOUD_TEST_PG_DSN (make test starts a throwaway cluster); each xdist worker gets its own
database. With LANDCLOUD_REQUIRE_POSTGIS=1 (CI) a missing PostGIS fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from landcloud import clock
from landcloud.config import Settings
from landcloud.store.db import create_engine
from landcloud.store.migrate import upgrade

pytest_plugins = ["portal_site"]  # browser fixtures (tests/portal_site.py)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"
TABLES = (
    "edition_builds", "fingerprinted_copies", "recipient_keys", "editions", "release_profiles", "feature_tilegeoms", "features", "dataset_versions", "grants", "applications", "datasets", "api_tokens", "sessions", "signin_failures",
    "users", "units", "submissions", "transformation_sets", "audit_log", "audit_head", "search_docs", "search_dirty",
)


def _require_postgis() -> bool:
    return os.environ.get("LANDCLOUD_REQUIRE_POSTGIS") == "1"


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str | None]:
    """A migrated database of this worker's own on the test cluster, or None."""
    dsn = os.environ.get("LANDCLOUD_TEST_PG_DSN")
    if not dsn:
        yield None
        return
    admin = create_engine(dsn).execution_options(isolation_level="AUTOCOMMIT")
    name = f"landcloud_test_{worker_id}_{os.getpid()}".replace("-", "_")  # unique across concurrent test runs
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(dsn).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(tmp_path: Path, backend: str, pg_url: str | None) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if backend == "postgis":
        if pg_url is None:
            message = "PostGIS not available: set LANDCLOUD_TEST_PG_DSN or run `make test`"
            if _require_postgis():
                pytest.fail(message)
            pytest.skip(message)
        return Settings(data_dir=data_dir, database_url=pg_url, secret_key="test-secret", cookie_secure=False, rate_limit_signin_per_minute=10_000)
    return Settings(data_dir=data_dir, secret_key="test-secret", cookie_secure=False, rate_limit_signin_per_minute=10_000)


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    from landcloud.access.units import division_index
    from landcloud.store.engine import get_engine

    eng = get_engine(settings)
    upgrade(eng)
    division_index.cache_clear()
    yield eng
    if eng.dialect.name == "postgresql":
        with eng.begin() as conn:  # the audit log refuses TRUNCATE: bypass its triggers, as only a test may
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    else:
        eng.dispose()
    division_index.cache_clear()


def table_counts(engine: sa.Engine) -> dict[str, int]:
    """Row counts of every table: a store 'exactly as it was' has the same counts and rows."""
    with engine.connect() as conn:
        return {t: int(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one()) for t in TABLES}


def needs_data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared test data missing: {path}")
    return path


@pytest.fixture
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters for tests that create many users (the real ones are tested on their own)."""
    from argon2 import PasswordHasher, Type

    from landcloud.access import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID))


@pytest.fixture
def live_url(settings: Settings, engine: sa.Engine) -> Iterator[str]:
    """The real application served by uvicorn in its own process on a free loopback port."""
    with serve(settings.data_dir, settings.resolved_database_url, settings.secret_key or "") as url:
        yield url


@contextmanager
def serve(data_dir: Path, database_url: str, secret_key: str, **env_extra: str) -> Iterator[str]:
    """Runs the application with uvicorn in a child process until the block ends.

    A separate process, not a thread: GDAL (through pyogrio) keeps the GIL while it waits for
    HTTP, so a server thread in the test process could never answer it.
    """
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from landcloud.web import http_protocol

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env.update(
        LANDCLOUD_DATA_DIR=str(data_dir),
        LANDCLOUD_DATABASE_URL=database_url,
        LANDCLOUD_SECRET_KEY=secret_key,
        LANDCLOUD_COOKIE_SECURE="false",
        LANDCLOUD_RATE_LIMIT_SIGNIN_PER_MINUTE="10000",
        LANDCLOUD_RATE_LIMIT_PUBLIC_PER_MINUTE="100000",
        **env_extra,
    )
    log_path = Path(data_dir) / f"server-{port}.log"  # a file, not a pipe: a chatty server must never block on it
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed when the server stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "landcloud.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--http", http_protocol.NAME],  # as `landcloud serve` runs it
        env=env, stdout=subprocess.DEVNULL, stderr=log_file,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(log_path.read_text(errors="replace") or "server exited") from None
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("the test server did not start")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


@pytest.fixture
def version_facts_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a version's rows hold (`publish.tile_types.facts`) learnt before the first tile that asks, not on a worker
    thread after it: until it is known a PostGIS tile takes the statement that builds each row's properties, whose
    bytes (key order) and so key and ETag differ, and tests that compare a tile's answers across requests would compare
    the two forms."""
    from landcloud.publish import tile_types

    real = tile_types.facts
    monkeypatch.setattr(tile_types, "facts", lambda engine, ds, version, wait=False: real(engine, ds, version, wait=True))


@pytest.fixture
def moved_clock() -> Iterator[list[timedelta]]:
    """The platform's clock, ahead of the real one by what the test sets as [0] (0 at first): what changes by time
    alone, with no write. Set back after the test."""
    real = clock.now()
    offset = [timedelta(0)]
    clock.set_clock(lambda: real + offset[0])
    try:
        yield offset
    finally:
        clock.set_clock(None)
