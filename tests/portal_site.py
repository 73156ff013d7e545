"""Fixtures for the portal in a real browser: Debian's Chromium driven by Playwright, against the demo site.

One demo site per test worker (the real `landcloud init` + `landcloud demo`, then uvicorn), shared
by every browser test; each test gets a fresh browser context (no cookies carried over).
Screenshots of each journey are written to test-artifacts/screenshots/. Loaded as a plugin by
conftest.py (a second conftest.py would replace the `conftest` module other tests import from).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa

from conftest import REPO, serve

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]


@dataclass
class Site:
    url: str
    backend: str
    data_dir: Path
    database_url: str
    accounts: dict[str, tuple[str, str | None]]  # name → (password, TOTP secret)

    def otp(self, name: str) -> str | None:
        secret = self.accounts[name][1]
        return pyotp.TOTP(secret).now() if secret else None


def read_accounts(path: Path) -> dict[str, tuple[str, str | None]]:
    accounts: dict[str, tuple[str, str | None]] = {}
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("    TOTP secret ") and last:
            accounts[last] = (accounts[last][0], line.split()[2])
            continue
        name, password = line.split("\t")[:2]
        accounts[name] = (password, None)
        last = name
    return accounts


def _landcloud(*args: str, env: dict[str, str]) -> None:
    exe = Path(sys.executable).with_name("landcloud")
    done = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout


def _build_site(tmp: Path, backend: str, database_url: str) -> Iterator[Site]:
    data_dir = tmp / f"site-{backend}"
    data_dir.mkdir()
    env = {**os.environ, "LANDCLOUD_DATA_DIR": str(data_dir), "LANDCLOUD_DATABASE_URL": database_url,
           "LANDCLOUD_SECRET_KEY": "browser-test-secret"}
    _landcloud("init", env=env)
    _landcloud("demo", env=env)
    accounts = read_accounts(data_dir / "demo-accounts.txt")
    with serve(data_dir, database_url, "browser-test-secret") as url:
        yield Site(url, backend, data_dir, database_url, accounts)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo site on the embedded SQLite store."""
    tmp = tmp_path_factory.mktemp("web")
    yield from _build_site(tmp, "sqlite", f"sqlite:///{tmp / 'site.db'}")


@pytest.fixture(scope="session")
def pg_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo site on PostGIS, in a database of its own (other tests truncate theirs)."""
    dsn = os.environ.get("LANDCLOUD_TEST_PG_DSN")
    if not dsn:
        message = "PostGIS not available: set LANDCLOUD_TEST_PG_DSN or run `make test`"
        if os.environ.get("LANDCLOUD_REQUIRE_POSTGIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    admin = sa.create_engine(dsn).execution_options(isolation_level="AUTOCOMMIT")
    name = f"landcloud_web_{os.getpid()}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(dsn).set(database=name).render_as_string(hide_password=False)
    try:
        yield from _build_site(tmp_path_factory.mktemp("webpg"), "postgis", url)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, for one module's tests: while Playwright's synchronous API is open, the main thread has its event
    loop as the running one, and any later test's `asyncio.run` in the same worker would fail ("cannot be called from
    a running event loop")."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium fonts-wqy-microhei (make test installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page (own cookies); JavaScript errors fail the test; a screenshot is kept at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=False)
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def sign_in(page: Any, site: Site, name: str, next_path: str = "/") -> None:
    """Signs in through the portal's own sign-in page (session cookie + CSRF token)."""
    page.goto(f"{site.url}/signin?next={next_path}")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", site.accounts[name][0])
    otp = site.otp(name)
    if otp:
        page.fill("input[name=otp]", otp)
    page.click("form#signin-form button[type=submit]")
    page.wait_for_url(f"{site.url}{next_path}*")
    assert page.locator("[data-testid=who]").inner_text() == name


def wait_for_map(page: Any, layer_prefix: str | None = None, timeout: float = 30_000) -> None:
    """Waits until the map has its layers and has drawn every tile it asked for."""
    page.wait_for_selector("body[data-map-ready=true]", timeout=timeout)
    page.wait_for_function(
        "() => window.lcMap && window.lcMap.loaded() && window.lcMap.areTilesLoaded()", timeout=timeout, polling=200
    )
    page.wait_for_timeout(300)  # one more frame after the last tile


def rendered(page: Any, dataset: str) -> list[dict[str, Any]]:
    """Properties of the features MapLibre drew for a dataset in the current view."""
    return page.evaluate(
        """(id) => window.lcMap.queryRenderedFeatures({layers: [id + ':fill', id + ':outline', id + ':point', id + ':line']
                 .filter(l => window.lcMap.getLayer(l))}).map(f => f.properties)""",
        dataset,
    )


def colour_pixels(page: Any, colours: list[str], selector: str = "#map", tolerance: int = 12) -> int:
    """How many screenshot pixels of an element are near one of the colours (#rrggbb): real pixels, not DOM."""
    png = base64.b64encode(page.locator(selector).screenshot()).decode()
    return page.evaluate(
        """async ([png, colours, tol]) => {
          const img = new Image(); img.src = 'data:image/png;base64,' + png; await img.decode();  // CSP: img-src data:
          const c = new OffscreenCanvas(img.width, img.height); const g = c.getContext('2d'); g.drawImage(img, 0, 0);
          const d = g.getImageData(0, 0, img.width, img.height).data;
          const want = colours.map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
          let n = 0;
          for (let i = 0; i < d.length; i += 4) {
            if (want.some(([r, gg, b]) => Math.abs(d[i] - r) <= tol && Math.abs(d[i + 1] - gg) <= tol && Math.abs(d[i + 2] - b) <= tol)) n++;
          }
          return n;
        }""",
        [png, colours, tolerance],
    )
