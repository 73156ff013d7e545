"""The benchmark run: data, stores, servers, load, results JSON and BENCHMARKS.md — one process tree that stops by itself.

    .venv/bin/python benchmarks/run.py --profile smoke|full [--anchors benchmarks/.venv-anchors]

Everything runs on 127.0.0.1. Servers under test are child processes (uvicorn); the load
generator is threads with http.client, bounded by a request count and a time limit per run.
Nothing here asserts anything about speed: a run fails only when a step does not work.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import saturate
from rawmvt import RAW_MVT, RAW_MVT_COLUMN, RAW_SETTINGS

from landcloud.geo.tiles import WEB_MERCATOR_QUAD
from landcloud.web import http_protocol

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PY = sys.executable

PROFILES = {
    "smoke": dict(parcels=2_000, prefix="2301", requests=100, time_limit=15.0, tiles_per_zoom=4, tiles_per_class=6, catalog=1_000, catalog_repeats=4,
                  osm=True, osm_bbox="126.60,45.74,126.64,45.77", here_parcels=300,  # central Harbin only: 2,177 of the 19,173 polygons
                  cached_tiles=(120, 2_000),  # cached tile requests with several clients: (signed-in, public edition)
                  one_core_s=1,  # seconds of each cached row's one-core run (`saturate`)
                  ingest_parcels=5_000),  # the at-size ingest step (1M in `full`), kept alive at a small size
    "full": dict(parcels=100_000, prefix="", requests=1_000, time_limit=60.0, tiles_per_zoom=20, tiles_per_class=40, catalog=10_000, catalog_repeats=20,
                 osm=True, here_parcels=5_000, cached_tiles=(3_000, 20_000), one_core_s=10,
                 ingest_parcels=1_000_000),  # comparison 3 at the size: the 1M-parcel file, ingest only, at the end
    "full-1m": dict(parcels=1_000_000, prefix="", requests=1_000, time_limit=90.0, tiles_per_zoom=20, tiles_per_class=40, catalog=10_000,
                    catalog_repeats=20, osm=False, here_parcels=5_000, cached_tiles=(3_000, 20_000), one_core_s=10),
}
TILE_CLIENTS = 8  # concurrent clients for the cached-tile throughput runs (one server process: one core)
TOKEN = "benchmark-secret-key-not-for-production"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stats(lat_s: list[float]) -> dict:
    if not lat_s:
        return {"n": 0}
    a = np.array(lat_s) * 1000
    return {"n": int(len(a)), "median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


# ---------------------------------------------------------------- child steps (peak RSS of the child)

def _child_with_rss(args: list[str], env: dict, timeout: float = 3600) -> tuple[dict, float, float]:
    """Like child(), but reaps the child with os.wait4 so its own ru_maxrss is known (Linux: KiB)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([PY, str(BENCH / "store.py"), *args], env=env, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, etext = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"store.py {args[0]} failed ({proc.returncode}):\n{etext[-3000:]}")
    return json.loads(text.strip().splitlines()[-1]), wall, ru.ru_maxrss / 1024


# ---------------------------------------------------------------- servers

class Server:
    def __init__(self, name: str, cmd: list[str], env: dict, port: int, health: str, logdir: Path) -> None:
        self.name, self.port, self.health = name, port, health
        self.logf = open(logdir / f"{name}.log", "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.logf.name}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", self.health)
                if c.getresponse().status < 500:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not start; see {self.logf.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()


def landcloud_server(name: str, url: str, datadir: Path, logdir: Path) -> Server:
    port = free_port()
    env = dict(os.environ, LANDCLOUD_DATA_DIR=str(datadir), LANDCLOUD_DATABASE_URL=url, LANDCLOUD_SECRET_KEY=TOKEN,
               LANDCLOUD_RATE_LIMIT_PUBLIC_PER_MINUTE="100000000", LANDCLOUD_RATE_LIMIT_TILES_PER_MINUTE="100000000")
    cmd = [PY, "-m", "uvicorn", "landcloud.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--no-access-log", "--http", http_protocol.NAME]  # as `landcloud serve` runs it
    return Server(name, cmd, env, port, "/healthz", logdir)


def pygeoapi_server(anchors: Path, work: Path, resources: dict, logdir: Path) -> Server:
    port = free_port()
    cfg = {
        "server": {"bind": {"host": "127.0.0.1", "port": port}, "url": f"http://127.0.0.1:{port}",
                   "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8", "language": "en-US",
                   "pretty_print": False, "limits": {"default_items": 100, "max_items": 1000},
                   "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OSM"}},
        "logging": {"level": "ERROR"},
        "metadata": {"identification": {"title": "bench", "description": "bench", "keywords": ["bench"], "keywords_type": "theme",
                                        "terms_of_service": "none", "url": "http://127.0.0.1"},
                     "license": {"name": "none", "url": "http://127.0.0.1"},
                     "provider": {"name": "bench", "url": "http://127.0.0.1"}, "contact": {"name": "bench"}},
        "resources": {},
    }
    for rid, (provider, extent) in resources.items():
        cfg["resources"][rid] = {
            "type": "collection", "title": rid, "description": rid, "keywords": ["bench"],
            "extents": {"spatial": {"bbox": list(extent), "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [provider],
        }
    cfg_path, oa_path = work / "pygeoapi.yml", work / "pygeoapi-openapi.yml"
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False))  # JSON is YAML
    env = dict(os.environ, PYGEOAPI_CONFIG=str(cfg_path), PYGEOAPI_OPENAPI=str(oa_path))
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    subprocess.run([str(anchors / "bin" / "pygeoapi"), "openapi", "generate", str(cfg_path), "--output-file", str(oa_path)],
                   env=env, check=True, capture_output=True, timeout=120)
    cmd = [str(anchors / "bin" / "python"), "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return Server("pygeoapi", cmd, env, port, "/conformance", logdir)


RAW_HTTP = "raw PostGIS ST_AsMVT over HTTP (Starlette + uvicorn + psycopg2)"
RAW_DIRECT = "raw PostGIS ST_AsMVT (psycopg, no HTTP)"


def rawtiles_server(anchors: Path, dsn: str, layers: dict[str, tuple[str, str]], logdir: Path) -> Server:
    """`rawtiles.py`: the raw tile statement behind the thinnest Python HTTP server (the anchors venv's uvicorn)."""
    port = free_port()
    env = dict(os.environ, RAWTILES_DSN=dsn, RAWTILES_LAYERS=json.dumps(layers))
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    cmd = [str(anchors / "bin" / "python"), "-m", "uvicorn", "rawtiles:app", "--app-dir", str(BENCH), "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return Server("raw-tiles-http", cmd, env, port, "/ready", logdir)


FLOOR = "floor: the same tiles from a dict, Starlette + uvicorn in landcloud's venv"


def floortiles_server(dsn: str, layers: dict[str, tuple[str, str]], logdir: Path) -> Server:
    """`floortiles.py`: tiles from memory behind Starlette + uvicorn of landcloud's own venv (httptools, uvloop): what
    a remembered tile costs the stack itself on this machine now, beside landcloud's cached-tile rows."""
    port = free_port()
    env = dict(os.environ, FLOORTILES_DSN=dsn, FLOORTILES_LAYERS=json.dumps(layers))
    cmd = [PY, "-m", "uvicorn", "floortiles:app", "--app-dir", str(BENCH), "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return Server("floor-tiles", cmd, env, port, "/ready", logdir)


def against_floor(rows: list[dict], floor: dict) -> None:
    """Each cached-tile row's server CPU a tile said as a multiple of the floor's, measured in the same run."""
    base = floor.get("server_cpu_ms_per_tile")
    if not base:
        return
    for r in rows:
        mine = r.get("server_cpu_ms_per_tile")
        if mine and r is not floor:
            r["cpu_vs_floor"] = mine / base
            r["extra"] = f"{r.get('extra', '')}; {mine / base:.2f}× the floor's CPU"


# ---------------------------------------------------------------- load generator

def run_load(port: int, paths: list[str], concurrency: int, time_limit: float, token: str | None = None) -> dict:
    """Each path once (bounded), by `concurrency` keep-alive clients, stopping at the time limit."""
    headers = {"Accept": "application/geo+json, application/json, */*"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lock = threading.Lock()
    it = iter(paths)
    lat: list[float] = []
    errors: dict[str, int] = {}
    nbytes = [0]
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                path = next(it, None)
            if path is None:
                break
            t = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                dt = time.perf_counter() - t
                with lock:
                    if resp.status in (200, 204):
                        lat.append(dt)
                        nbytes[0] += len(body)
                    else:
                        errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
        conn.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        for f in [ex.submit(worker) for _ in range(concurrency)]:
            f.result()
    return _summary(lat, errors, nbytes[0], len(paths), concurrency, time.perf_counter() - t0)


def _summary(lat: list[float], errors: dict[str, int], nbytes: int, planned: int, concurrency: int, wall: float) -> dict:
    """A run's row: latency statistics of the answered requests, what failed, and the throughput over `wall`."""
    out = stats(lat)
    out.update(concurrency=concurrency, planned=planned, errors=errors, wall_s=wall,
               throughput_rps=len(lat) / wall if wall else None, bytes=nbytes)
    return out


Sample = tuple[str, int, float, int]  # a request's path, status (0: no answer), seconds, body bytes
COLD_BLOCK = 10  # tiles a side answers before the next side takes them (see `cold_side_by_side`)


def cold_side_by_side(targets: list[tuple[str, int, str, str | None]], raw_direct: tuple[str, str, str] | None,
                      tiles: list[tuple[int, int, int]], time_limit: float,
                      warm_tiles: list[tuple[int, int, int]] = ()) -> tuple[dict[str, list[Sample]], list[tuple[float, int]]]:
    """The tiles from every side in turn, `COLD_BLOCK` tiles at a time: the landcloud servers (cold: the first request
    for each tile), the raw statement behind HTTP, and the raw statement issued directly (`raw_direct`: DSN, table,
    column), each over the block before the next side takes it. A block's answers are taken within a second of each
    other, so a change in the shared machine's load weighs on every side alike (measured one whole pass after another,
    the ratios of two runs differed by more than the goal's margin); the order of the sides turns by one each block,
    so no side is always first. Blocks, not single tiles: a server that answers one request between three other
    processes' answers has its code and data out of the CPU's caches each time — every side ~20% slower, the ratios
    unchanged (benchmarks/profiles/tiles-small.txt §4) — which no server in use sees.

    Every side first answers `warm_tiles` (other tiles of the same zooms, not measured): what a server does once and
    then never again — its connections, each statement text prepared and
    planned once per connection, what it learns of a version — is not taken for the cost of a cold tile, on either
    side. Without it a fresh landcloud server's pass paid a generic plan of each tile statement per connection of its
    loop (2-20 ms each) and the raw statement's first five runs were planned anew.

    `targets`: (name, port, a tile's path with {z}, {x} and {y} to fill in, token). Returns each target's samples (the
    path, status, seconds, bytes of each tile) and the direct statement's (seconds, tile bytes), in `tiles`' order (cut
    short at the time limit, every side at the same block)."""
    ports = {name: port for name, port, _, _ in targets}
    asks: dict[str, tuple[list[str], dict[str, str]]] = {}  # each side's paths and headers
    conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=60) for name, port in ports.items()}
    for name, _, path, token in targets:
        headers = {"Accept": "application/vnd.mapbox-vector-tile, */*"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        asks[name] = ([path.format(z=z, x=x, y=y) for z, x, y in tiles], headers)
        for z, x, y in warm_tiles:
            conns[name].request("GET", path.format(z=z, x=x, y=y), headers=headers)
            conns[name].getresponse().read()
    samples: dict[str, list[Sample]] = {name: [] for name in ports}
    direct: list[tuple[float, int]] = []
    raw = None
    if raw_direct is not None:
        import psycopg

        dsn, table, column = raw_direct
        raw = psycopg.connect(dsn, autocommit=True)
        raw.execute(RAW_SETTINGS)
        raw_sql = RAW_MVT.format(table=table, column=column)
        for z, x, y in warm_tiles:
            raw.execute(raw_sql, {"z": z, "x": x, "y": y}).fetchone()
    sides: list[str | None] = [*ports, *([None] if raw is not None else [])]
    deadline = time.monotonic() + time_limit
    try:
        for b, start in enumerate(range(0, len(tiles), COLD_BLOCK)):
            if time.monotonic() > deadline:
                break
            block = range(start, min(start + COLD_BLOCK, len(tiles)))
            for side in sides[b % len(sides):] + sides[: b % len(sides)]:
                for i in block:
                    if side is None:
                        z, x, y = tiles[i]
                        t = time.perf_counter()
                        tile = raw.execute(raw_sql, {"z": z, "x": x, "y": y}).fetchone()[0]  # type: ignore[union-attr]
                        direct.append((time.perf_counter() - t, len(tile or b"")))
                        continue
                    path, headers = asks[side][0][i], asks[side][1]
                    t = time.perf_counter()
                    try:
                        conns[side].request("GET", path, headers=headers)
                        resp = conns[side].getresponse()
                        body = resp.read()
                        samples[side].append((path, resp.status, time.perf_counter() - t, len(body)))
                    except (OSError, http.client.HTTPException):
                        conns[side].close()
                        conns[side] = http.client.HTTPConnection("127.0.0.1", ports[side], timeout=60)
                        samples[side].append((path, 0, time.perf_counter() - t, 0))
    finally:
        for c in conns.values():
            c.close()
        if raw is not None:
            raw.close()
    return samples, direct


def load_row(samples: list[Sample], planned: int) -> dict:
    """`run_load`'s row of samples taken one at a time (one client): 200 and 204 are answers, the rest errors."""
    ok = [(dt, n) for _, st, dt, n in samples if st in (200, 204)]
    errors: dict[str, int] = {}
    for _, st, _, _ in samples:
        if st not in (200, 204):
            errors[str(st or "no answer")] = errors.get(str(st or "no answer"), 0) + 1
    busy = sum(dt for _, _, dt, _ in samples)
    return _summary([dt for dt, _ in ok], errors, sum(n for _, n in ok), planned, 1, busy)


def of_kind(samples: list[Sample], kind: dict[int, str], label: str) -> list[Sample]:
    """The samples (in tile order) of the tiles of one fullness class."""
    return [x for i, x in enumerate(samples) if kind.get(i) == label]


def per_tile_ratio(mine: list[Sample], theirs: list[float | None], kind: dict[int, str], label: str | None) -> float | None:
    """The median over the tiles (of one fullness class, or all: `label` None) of each tile's time on one side over its
    time on the other (`theirs`: seconds in tile order, None where it gave no answer). A tile's two times were taken in
    one block of the pass, seconds apart, so what the shared machine does between blocks weighs on neither: in eight
    passes over the 80 small DLTB tiles (two servers, blocks of 10) the ratio of the medians moved 1.19-1.38, the median
    of the tiles' own ratios 1.17-1.27 (profiles/tiles-small.txt §8)."""
    pairs = [dt / theirs[i] for i, (_, st, dt, _) in enumerate(mine)
             if (label is None or kind.get(i) == label) and st in (200, 204) and i < len(theirs) and theirs[i]]
    return float(np.median(pairs)) if pairs else None


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (utime + stime of /proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, quiet_s: float = 0.3, limit_s: float = 30.0) -> float:
    """Wait until a process has used under 5% of a core over `quiet_s` (at most `limit_s`); returns the seconds waited.
    A server's first request for a version starts one-off work on its learning thread (what the rows hold, where they
    are: `publish.version_learning`; 1M parcels on SQLite ~1.2 s of CPU), which is not a cached tile's cost."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        c0 = cpu_seconds(pid)
        time.sleep(quiet_s)
        if cpu_seconds(pid) - c0 < 0.05 * quiet_s:  # (a clock tick is 10 ms: at most one)
            break
    return time.monotonic() - t0


def cached_throughput(server: Server, paths: list[str], total: int, token: str | None, time_limit: float) -> dict:
    """Cached tiles with TILE_CLIENTS concurrent clients against one server process: tiles/s, and the server's CPU
    per tile (/proc/<pid>/stat before/after), i.e. what one core could serve; the clients run on the same machine.
    Measured once the server is idle after the warm-up (`wait_idle`)."""
    run_load(server.port, paths, TILE_CLIENTS, time_limit, token)  # every tile once more: all of them cached
    wait_idle(server.proc.pid)
    planned = (paths * (total // max(len(paths), 1) + 1))[:total]
    cpu0 = cpu_seconds(server.proc.pid)
    r = run_load(server.port, planned, TILE_CLIENTS, time_limit, token)
    cpu = cpu_seconds(server.proc.pid) - cpu0
    done = r.get("n", 0) + sum(r["errors"].values())
    r["server_cpu_ms_per_tile"] = cpu * 1000 / done if done else None
    if r["server_cpu_ms_per_tile"]:
        r["extra"] = f"{r['server_cpu_ms_per_tile']:.3f} ms server CPU/tile ≈ {1000 / r['server_cpu_ms_per_tile']:,.0f} tiles/s per core"
    return r


def one_core_row(server: Server, paths: list[str], token: str | None, target: str, seconds: float, work: Path,
                 pgdir: Path) -> dict | None:
    """The cached tiles a second of `server` kept busy on one core (`saturate`); None when that cannot be measured here."""
    why = saturate.why_not()
    if why is not None:
        log(f"{target}: the one-core run left out: {why}")
        return None
    log(f"{target}: on one core, wrk with {saturate.CONNECTIONS} connections for {seconds:.0f} s")
    store = saturate.cluster_pids(pgdir / "data")  # (scripts/pg-cluster.sh's layout: the data directory inside)
    r = saturate.one_core(server.proc.pid, server.port, paths, token, seconds, work, store, cpu_seconds)
    r.update(target=f"{target}, on one core (wrk, {saturate.CONNECTIONS} connections)", anchor=False)
    return r


def fullness(nbytes: int) -> str:
    """How full a tile is, by the size of the raw query's tile: what decides the cold cost on both sides."""
    return "empty" if nbytes == 0 else "< 4 KiB" if nbytes < 4096 else "≥ 4 KiB"


def sample_points(gpkg: Path, k: int, seed: int, wkb: np.ndarray | None = None) -> np.ndarray:
    """`k` points on the file's features drawn at random (`wkb`: the file's geometries when already read)."""
    import pyogrio.raw
    import shapely

    if wkb is None:
        _, _, wkb, _ = pyogrio.raw.read(gpkg, columns=[])
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(wkb), size=min(k, len(wkb)), replace=k > len(wkb))
    pts = shapely.point_on_surface(shapely.from_wkb(wkb[idx]))
    return np.column_stack([shapely.get_x(pts), shapely.get_y(pts)])


def bbox_side(gpkg: Path, target: float = 150.0) -> float:
    """A bbox side (degrees) that holds about `target` features on average around a feature."""
    import pyogrio

    info = pyogrio.read_info(gpkg)
    minx, miny, maxx, maxy = info["total_bounds"]
    per = (maxx - minx) * (maxy - miny) * 0.5 / max(info["features"], 1)
    return float(min(max(np.sqrt(per * target), 0.002), 1.0))


def tile_list(points: np.ndarray, zooms: range, per_zoom: int) -> list[tuple[int, int, int]]:
    """Up to `per_zoom` distinct tiles per zoom that hold the points, in the points' order."""
    out = []
    for z in zooms:
        seen = set()
        for lon, lat in points:
            x, y = WEB_MERCATOR_QUAD.tile_for_lonlat(lon, lat, z)
            if (x, y) not in seen:
                seen.add((x, y))
                out.append((z, x, y))
            if len(seen) >= per_zoom:
                break
    return out


SMALL_POINTS = 800  # points of the features meeting a tile below which its raw tile is likely < 4 KiB (see `more_tiles`)


def likely_fullness(features: int, points: int) -> str:
    """A tile's fullness class guessed from the data file alone: how many features' bounding boxes meet it and how many
    points those features have (on the bench's data the raw tiles under 4 KiB had at most 115 such features and
    1,668 points, those over at least 52 and 844, zoom for zoom mostly far apart)."""
    return "empty" if features == 0 else "< 4 KiB" if points < SMALL_POINTS else "≥ 4 KiB"


def more_tiles(gpkg: Path, tiles: list[tuple[int, int, int]], zooms: range, per_class: int,
               exclude: set[tuple[int, int, int]], seed: int) -> list[tuple[int, int, int]]:
    """Tiles to add to `tiles` so that each fullness class likely holds `per_class` of them. The tiles drawn at the
    data's features leave some classes with a handful (OSM: 7 empty and 15 small of 77), and a class of a handful of
    sub-millisecond tiles is one or two blocks of the pass: it moved 0.69-1.57x between three runs with nothing
    changed on its path. The class is guessed from the file (`likely_fullness`), not asked of the raw statement: that
    would bring the plain table's pages into PostgreSQL's buffers for the anchor only. What a tile counts as is still
    its raw tile's size in the pass. Candidates: tiles at more of the features and tiles anywhere in and just around
    the data's extent (empty ones there are what a map at the edge asks for), none of `exclude` (the warm-up's)."""
    import pyogrio.raw
    import shapely

    _, _, wkb, _ = pyogrio.raw.read(gpkg, columns=[])
    geoms = shapely.from_wkb(wkb)
    points = shapely.get_num_coordinates(geoms)
    west, south, east, north = shapely.total_bounds(geoms)
    tree = shapely.STRtree(shapely.box(*shapely.bounds(geoms).T))
    del geoms
    rng = np.random.default_rng(seed)
    candidates = tile_list(sample_points(gpkg, 20 * per_class * len(zooms), seed, wkb), zooms, 10 * per_class)
    del wkb
    for z in zooms:
        x0, y0 = WEB_MERCATOR_QUAD.tile_for_lonlat(west, north, z)
        x1, y1 = WEB_MERCATOR_QUAD.tile_for_lonlat(east, south, z)
        xs = rng.integers(x0 - 2, x1 + 3, 20 * per_class)
        ys = rng.integers(y0 - 2, y1 + 3, 20 * per_class)
        candidates += [(z, int(x), int(y)) for x, y in zip(xs, ys, strict=True)]
    # in random order within a zoom, a zoom at a time in turn: every zoom gets some of each kind
    by_zoom = [[t for t in candidates if t[0] == z] for z in zooms]
    for ts in by_zoom:
        rng.shuffle(ts)
    candidates = [t for turn in itertools.zip_longest(*by_zoom) for t in turn if t is not None]

    def guess(ts: list[tuple[int, int, int]]) -> list[str]:
        if not ts:
            return []
        which, hit = tree.query(shapely.box(*np.array([WEB_MERCATOR_QUAD.tile_bounds_lonlat(*t) for t in ts]).T))
        features = np.bincount(which, minlength=len(ts))
        pts = np.bincount(which, weights=points[hit], minlength=len(ts))
        return [likely_fullness(int(f), int(p)) for f, p in zip(features, pts, strict=True)]
    have: dict[str, int] = {}
    for label in guess(tiles):
        have[label] = have.get(label, 0) + 1
    taken = set(tiles) | exclude
    wanted: dict[str, list[tuple[int, int, int]]] = {}
    for t, label in zip(candidates, guess(candidates), strict=True):
        if t not in taken and have.get(label, 0) + len(wanted.get(label, ())) < per_class:
            taken.add(t)
            wanted.setdefault(label, []).append(t)
    return sorted(t for ts in wanted.values() for t in ts)


def crs84_copy(dsn: str, table: str) -> None:
    """`{table}_crs84`: the plain table's rows with their SRID set to 4326 (same coordinates), for pygeoapi."""
    import psycopg

    t = f"{table}_crs84"
    with psycopg.connect(dsn) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{t}"')
        conn.execute(f'CREATE TABLE "{t}" AS SELECT * FROM "{table}"')
        conn.execute(f'ALTER TABLE "{t}" ALTER COLUMN geom TYPE geometry(Geometry, 4326) USING ST_SetSRID(geom, 4326)')
        conn.execute(f'ALTER TABLE "{t}" ADD PRIMARY KEY (fid)')
        conn.execute(f'CREATE INDEX "{t}_geom_idx" ON "{t}" USING gist (geom)')
        conn.execute(f'ANALYZE "{t}"')


# ---------------------------------------------------------------- machine and versions

def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cores": os.cpu_count(), "memory_gib": round(mem, 1), "cpu": cpu, "os": platform.platform()}


def versions(pg_dsn: str | None, anchors: Path | None) -> dict:
    import sqlite3
    from importlib.metadata import version

    import pyogrio

    v = {"python": platform.python_version(), "landcloud": version("landcloud"), "sqlite": sqlite3.sqlite_version,
         "gdal (pyogrio)": pyogrio.__gdal_version_string__, "fastapi": version("fastapi"), "uvicorn": version("uvicorn")}
    if pg_dsn:
        import psycopg

        with psycopg.connect(pg_dsn) as c:
            v["postgresql"] = c.execute("SHOW server_version").fetchone()[0]
            v["postgis"] = c.execute("SELECT postgis_lib_version()").fetchone()[0]
    if anchors:
        r = subprocess.run([str(anchors / "bin" / "python"), "-c", "import pygeoapi; print(pygeoapi.__version__)"],
                           capture_output=True, text=True)
        v["pygeoapi"] = r.stdout.strip() or "?"
    return v


# ---------------------------------------------------------------- the run

def libpq_dsn(url: str) -> str:
    """A store's SQLAlchemy URL (postgresql+psycopg://...) as psycopg and libpq take it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def settle(url: str) -> None:
    """Write out what the last timed step left in memory before the next is timed: PostgreSQL's dirty buffers (a
    CHECKPOINT) and the kernel's dirty pages (sync). A 1M-parcel submission leaves ~1-2 GB to write back; the plain
    copy timed after it shared the disk and the kernel's CPU with that writeback and took 11.9-20.2 s from run to run
    (the submission 29.5-34.9 s), which moved the ratio 1.47-2.93x with nothing changed on either side."""
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    os.sync()


def ingest_pair(be: str, url: str, env: dict, key: str, path: Path, dsid: str, table: str, work: Path,
                overlap: bool = True) -> list[dict]:
    """One landcloud submission with full checks, then the plain pyogrio copy of the same file into the same backend,
    each after what came before it is written out (`settle`)."""
    settle(url)
    log(f"{be}: landcloud ingest {key} (full checks)")
    res, wall, rss = _child_with_rss(["ingest", url, str(path), dsid, "230000", "" if overlap else "no-overlap"], env)
    if not res.get("accepted"):
        raise RuntimeError(f"ingest of {key} rejected on {be}: {res.get('findings')}")
    rss, memory = _submission_peak(res, rss)
    accepted = wall - res["after_acceptance_s"]
    rows = [{"target": f"landcloud ingest ({be})", "anchor": False, "median_ms": accepted * 1000, "n": 1,
             "peak_rss_mib": rss, "extra": f"pipeline {res['seconds']:.1f} s, CPU {res['cpu_seconds']:.1f} s{_copies_part(res, wall)}{memory}"}]
    settle(url)
    log(f"{be}: plain pyogrio copy {key}")
    res, wall, rss = _child_with_rss(["plain", url, str(path), table, str(work / be / f"{table}.gpkg")], env)
    rows.append({"target": f"pyogrio copy, no checks ({be})", "anchor": True, "median_ms": wall * 1000, "n": 1,
                 "peak_rss_mib": rss})
    return rows


def _submission_peak(res: dict, reaped: float) -> tuple[float, str]:
    """The submission's peak memory with its overlap process's (a large layer) added, as if both peaked at once
    (wait4 gives the larger of the two, not their sum); and the split, said in the row."""
    kids = res.get("children_peak_rss_mib") or 0.0
    if not kids:
        return reaped, ""
    own = res.get("self_peak_rss_mib") or reaped
    return own + kids, f", peak {own:.0f} MiB + overlap process {kids:.0f} MiB"


def _copies_part(res: dict, wall: float) -> str:
    """The low-zoom tile copies (built after the submission is accepted, as `landcloud ingest` and the HTTP submission
    do; not a check): their time and the whole child's, said, not hidden. The row's time is the child's until the
    acceptance (its wall less what followed it in the child, `after_acceptance_s`)."""
    stage = res["stages"].get("tile_copies")
    return f", then tile copies {stage['wall_s']:.1f} s (the child to its end {wall:.1f} s)" if stage else ""


def ingest_comparisons(key: str, rows: list[dict]) -> list[dict]:
    """The (landcloud, plain copy) pairs of one file, a comparison per backend."""
    out = []
    for i in range(0, len(rows), 2):
        be = rows[i]["target"].split("(")[-1].rstrip(")")
        out.append({"comparison": "ingest", "dataset": key, "variant": f"{be}, whole file, child process",
                    "rows": rows[i:i + 2],
                    "unit": "wall time of the child process until landcloud's submission is accepted (single run)"})
    return out


def dltb_file(cache: Path, parcels: int, prefix: str) -> Path:
    """The generated DLTB parcels (cached by parameters; deterministic by seed)."""
    path = cache / f"dltb_{parcels}_{prefix or 'hlj'}_s1.gpkg"
    if not path.exists():
        log(f"generating {parcels} DLTB parcels → {path.name}")
        subprocess.run([PY, str(BENCH / "data.py"), "dltb", str(path) + ".tmp.gpkg", "--n", str(parcels), "--seed", "1",
                        "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
        Path(str(path) + ".tmp.gpkg").rename(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    ap.add_argument("--anchors", default=str(BENCH / ".venv-anchors"), help="venv with pygeoapi (skipped when missing)")
    ap.add_argument("--no-pygeoapi", action="store_true")
    ap.add_argument("--no-postgis", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args(argv)
    prof = PROFILES[a.profile]
    started = datetime.now(UTC)
    t_run = time.perf_counter()
    anchors = Path(a.anchors)
    if a.no_pygeoapi or not (anchors / "bin" / "pygeoapi").exists():
        log(f"pygeoapi comparison SKIPPED (no anchors venv at {anchors}; `make bench` creates it)")
        anchors = None
    work = Path(tempfile.mkdtemp(prefix="landcloud-bench-"))
    os.chmod(work, 0o755)  # the PostGIS cluster runs as `postgres` when we are root
    cache = BENCH / ".data"
    cache.mkdir(exist_ok=True)
    servers: list[Server] = []
    pgdir = work / "pg"
    pg_dsn = pg_url = None
    skipped: list[str] = []
    comparisons: list[dict] = []
    sizes: dict = {}
    if not prof["osm"]:
        skipped.append("Harbin OSM polygons: not in this profile")
    try:
        # ---- data (cached by parameters; deterministic by seed)
        dltb = dltb_file(cache, prof["parcels"], prof["prefix"])
        osm_bbox = prof.get("osm_bbox", "")
        osm = cache / f"harbin_osm_valid{'_' + osm_bbox.replace(',', '_') if osm_bbox else ''}.gpkg"
        if prof["osm"] and not osm.exists():
            log("filtering the Harbin OSM polygons (valid, landuse/building)")
            subprocess.run([PY, str(BENCH / "data.py"), "osm", str(osm) + ".tmp.gpkg", "--bbox", osm_bbox], check=True,
                           stdout=subprocess.DEVNULL)
            Path(str(osm) + ".tmp.gpkg").rename(osm)
        import pyogrio.raw

        data = {"dltb": (dltb, "bench-dltb", "dltb_plain")}
        if prof["osm"]:
            data["osm"] = (osm, "bench-osm", "osm_plain")
        for key, (path, _, _) in data.items():
            sizes[key] = pyogrio.read_info(path)["features"]
        sizes["counties"] = prof["prefix"] or "all Heilongjiang"

        # ---- stores
        backends = {"sqlite": f"sqlite:///{work / 'sqlite' / 'landcloud.sqlite'}"}
        (work / "sqlite").mkdir()
        if not a.no_postgis:
            port = free_port()
            r = subprocess.run([str(ROOT / "scripts" / "pg-cluster.sh"), "start", str(pgdir), str(port)], capture_output=True, text=True)
            if r.returncode == 0:
                pg_url = r.stdout.strip().splitlines()[-1]
                pg_dsn = libpq_dsn(pg_url)
                backends["postgis"] = pg_url
                (work / "postgis").mkdir()
            else:
                skipped.append(f"PostGIS: cluster did not start ({r.stderr.strip()[-200:]})")
                log("PostGIS SKIPPED: " + skipped[-1])
        # "what is here" over 10 layers: dltb, osm and 8 more layers of the first parcels of dltb (same ground)
        here_file = work / "here_layer.gpkg"
        meta, _, wkb, fields = pyogrio.raw.read(dltb, max_features=prof["here_parcels"])
        pyogrio.raw.write(here_file, wkb, fields, list(meta["fields"]), layer="dltb", driver="GPKG", geometry_type="Unknown",
                          crs="EPSG:4490", encoding="UTF-8")
        here_extra = 10 - len(data)
        ingest_rows: dict[str, list] = {k: [] for k in data}
        tokens: dict[str, str] = {}
        for be, url in backends.items():
            env = dict(os.environ, LANDCLOUD_DATA_DIR=str(work / be), LANDCLOUD_SECRET_KEY=TOKEN)
            log(f"{be}: migrations, units, boundaries")
            _child_with_rss(["setup", url], env)
            tokens[f"landcloud-{be}"] = _child_with_rss(["token", url, "230000"], env)[0]["token"]
            for key, (path, dsid, table) in data.items():
                # OSM buildings lie on landuse polygons: a layer of no standard schema, submitted without the overlap rule
                ingest_rows[key] += ingest_pair(be, url, env, key, path, dsid, table, work, overlap=key != "osm")
                if be == "postgis":
                    crs84_copy(pg_dsn, table)
            log(f"{be}: {here_extra} more layers of {prof['here_parcels']} parcels for 'what is here'")
            res = _child_with_rss(["layers", url, str(here_file), "bench-here", str(here_extra), "230000"], env)[0]
            if res["rejected"]:
                raise RuntimeError(f"'what is here' layers rejected on {be}: {res['rejected'][:1]}")
        for key, rows in ingest_rows.items():
            comparisons += ingest_comparisons(key, rows)

        # ---- servers
        for be, url in backends.items():
            s = landcloud_server(f"landcloud-{be}", url, work / be, work)
            servers.append(s)
        pyg = None
        if anchors:
            resources = {}
            probe = "import sqlite3; c = sqlite3.connect(':memory:'); c.enable_load_extension(True); c.execute(\"SELECT load_extension('mod_spatialite.so')\")"
            spatialite = subprocess.run([str(anchors / "bin" / "python"), "-c", probe], capture_output=True).returncode == 0
            for key, (path, _dsid, table) in data.items():
                ext = pyogrio.read_info(path)["total_bounds"]
                if spatialite:
                    resources[f"{key}-gpkg"] = ({"type": "feature", "name": "SQLiteGPKG", "data": str(work / "sqlite" / f"{table}.gpkg"),
                                                 "id_field": "fid", "table": table}, ext)
                if pg_dsn:
                    # The same rows, labelled EPSG:4326 (crs84_copy): pygeoapi's default storage CRS is CRS84, so it
                    # neither reprojects the bbox nor every feature, as landcloud serves its CGCS2000 lon/lat as CRS84.
                    pgport = int(pg_dsn.rsplit(":", 1)[1].split("/")[0])
                    resources[f"{key}-pg"] = ({"type": "feature", "name": "PostgreSQL",
                                               "data": {"host": "127.0.0.1", "port": pgport, "dbname": "landcloud_test", "user": "postgres",
                                                        "password": "", "search_path": ["public"]},
                                               "id_field": "fid", "table": f"{table}_crs84", "geom_field": "geom",
                                               "storage_crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}, ext)
            if not spatialite:
                skipped.append("pygeoapi SQLiteGPKG provider: the anchors venv's Python cannot load mod_spatialite (sqlite3 built without extension loading, or libsqlite3-mod-spatialite missing)")
                log("SKIPPED " + skipped[-1])
            if resources:
                pyg = pygeoapi_server(anchors, work, resources, work)
                servers.append(pyg)
        rawhttp = floor = None
        raw_layers = {key: (table, RAW_MVT_COLUMN[key]) for key, (_p, _d, table) in data.items()}  # the plain copies' tables
        if anchors and pg_dsn:
            rawhttp = rawtiles_server(anchors, pg_dsn, raw_layers, work)
            servers.append(rawhttp)
        if pg_dsn:
            floor = floortiles_server(pg_dsn, raw_layers, work)
            servers.append(floor)
        for s in servers:
            s.wait()
        log("servers up: " + ", ".join(f"{s.name}:{s.port}" for s in servers))

        # ---- (1) OGC API Features bbox queries
        for key, (path, dsid, _table) in data.items():
            side = bbox_side(path)
            pts = sample_points(path, prof["requests"], seed=11)
            boxes = [f"{x - side / 2:.6f},{y - side / 2:.6f},{x + side / 2:.6f},{y + side / 2:.6f}" for x, y in pts]
            for conc in (1, 16):
                rows = []
                targets = [(s.name, s.port, f"/ogc/collections/{dsid}/items", False) for s in servers if s.name.startswith("landcloud")]
                if pyg:
                    targets += [(f"pygeoapi ({'GPKG' if k.endswith('gpkg') else 'PostgreSQL'})", pyg.port,
                                 f"/collections/{k}/items", True)
                                for k in [f"{key}-gpkg", f"{key}-pg"] if k in json.loads((work / 'pygeoapi.yml').read_text())["resources"]]
                for name, port, base, anchor in targets:
                    extra = "&f=json" if anchor else ""
                    paths = [f"{base}?bbox={b}&limit=100{extra}" for b in boxes]
                    run_load(port, paths[: max(5, len(paths) // 10)], conc, 10, tokens.get(name))  # warm-up
                    log(f"bbox {key} c={conc} {name}")
                    r = run_load(port, paths, conc, prof["time_limit"], tokens.get(name))
                    r.update(target=name, anchor=anchor)
                    rows.append(r)
                comparisons.append({"comparison": "OGC API Features bbox, limit=100", "dataset": key,
                                    "variant": f"{conc} client{'s' if conc > 1 else ''}, bbox side {side:.4f}°", "rows": rows,
                                    "unit": "request latency"})

        # ---- (2) vector tiles z8–z14, cold (side by side with the raw statement) then cached, against raw ST_AsMVT
        tile_sets: dict[str, list[str]] = {}
        tile_rows: dict[str, list[dict]] = {}
        landclouds = [s for s in servers if s.name.startswith("landcloud")]
        for key, (path, dsid, table) in data.items():
            tiles = tile_list(sample_points(path, 2000, seed=5), range(8, 15), prof["tiles_per_zoom"])
            # and one empty tile per zoom, beyond the data's north-east corner (a map view at the edge asks for those)
            ext = pyogrio.read_info(path)["total_bounds"]
            tiles += tile_list(np.array([[ext[2] + 0.3, ext[3] + 0.3]]), range(8, 15), 1)
            measured = set(tiles)  # the warm-up's tiles: others of the same zooms (`cold_side_by_side`)
            warm_tiles = [t for t in tile_list(sample_points(path, 4000, seed=6), range(8, 15), 2 * prof["tiles_per_zoom"]) if t not in measured]
            tiles += more_tiles(path, tiles, range(8, 15), prof["tiles_per_class"], set(warm_tiles), seed=7)
            tile_path = f"/ogc/collections/{dsid}/tiles/WebMercatorQuad/{{z}}/{{y}}/{{x}}"
            tpaths = [tile_path.format(z=z, x=x, y=y) for z, x, y in tiles]
            tile_sets[key] = [f"/ogc/collections/{dsid}-public/tiles/WebMercatorQuad/{z}/{y}/{x}" for z, x, y in tiles]
            targets = [(s.name, s.port, tile_path, tokens.get(s.name)) for s in landclouds]
            if rawhttp:
                targets.append((RAW_HTTP, rawhttp.port, f"/tiles/{key}/{{z}}/{{x}}/{{y}}", None))
            log(f"tiles {key}: {len(tiles)} tiles cold (after {len(warm_tiles)} others), {COLD_BLOCK} at a time from every side in turn: "
                + ", ".join([t[0] for t in targets] + (["raw ST_AsMVT (no HTTP)"] if pg_dsn else [])))
            samples, raw = cold_side_by_side(targets, (pg_dsn, table, RAW_MVT_COLUMN[key]) if pg_dsn else None, tiles,
                                             prof["time_limit"] * 2 * (len(targets) + 1), warm_tiles)
            # how full each tile is, by the raw tile's size (what decides the cold cost on both sides)
            kind = {i: fullness(n) for i, (_, n) in enumerate(raw)}
            rows = []
            by_fullness: dict[str, list[dict]] = {}
            theirs = {RAW_DIRECT: [t for t, _ in raw]}  # each anchor's time per tile, for `per_tile_ratio`
            if rawhttp:
                theirs[RAW_HTTP] = [dt if st in (200, 204) else None for _, st, dt, _ in samples[RAW_HTTP]]
            for s in landclouds:
                cold = load_row(samples[s.name], len(tiles))
                cold.update(target=f"{s.name} cold", anchor=False,
                            per_tile={a: per_tile_ratio(samples[s.name], t, kind, None) for a, t in theirs.items()})
                for label in sorted(set(kind.values())):
                    mine = of_kind(samples[s.name], kind, label)
                    r = stats([dt for _, st, dt, _ in mine if st in (200, 204)])
                    empty = sum(1 for _, st, _, _ in mine if st == 204)
                    r.update(target=f"{s.name} cold", anchor=False, extra=f"{empty} of them 204 (empty for landcloud)",
                             per_tile={a: per_tile_ratio(samples[s.name], t, kind, label) for a, t in theirs.items()})
                    by_fullness.setdefault(label, []).append(r)
                log(f"tiles {key} {s.name}: the same tiles cached, then {TILE_CLIENTS} clients")
                warm = run_load(s.port, tpaths, 1, prof["time_limit"] * 2, tokens.get(s.name))
                warm.update(target=f"{s.name} cached", anchor=False)
                busy = cached_throughput(s, tpaths, prof["cached_tiles"][0], tokens.get(s.name), prof["time_limit"])
                busy.update(target=f"{s.name} cached, signed in, {TILE_CLIENTS} clients", anchor=False)
                rows += [cold, warm, busy]
                core = one_core_row(s, tpaths, tokens.get(s.name), f"{s.name} cached, signed in", prof["one_core_s"], work, pgdir)
                rows += [core] if core else []
            if raw:
                r = stats([t for t, _ in raw])
                r.update(target=RAW_DIRECT, anchor=True)
                rows.append(r)
                http_by_fullness: dict[str, dict] = {}
                if rawhttp:  # the same statement behind HTTP: what the protocol alone costs a Python server
                    h = load_row(samples[RAW_HTTP], len(tiles))
                    h.update(target=RAW_HTTP, anchor=True)
                    rows.append(h)
                    for label in sorted(set(kind.values())):
                        hr = stats([dt for _, st, dt, _ in of_kind(samples[RAW_HTTP], kind, label) if st in (200, 204)])
                        hr.update(target=RAW_HTTP, anchor=True)
                        http_by_fullness[label] = hr
                for label, frows in by_fullness.items():
                    part = [t for t, n in raw if fullness(n) == label]
                    anchor_row = stats(part)
                    anchor_row.update(target=RAW_DIRECT, anchor=True)
                    anchors_rows = [anchor_row] + ([http_by_fullness[label]] if label in http_by_fullness else [])
                    comparisons.append({"comparison": "vector tiles WebMercatorQuad, cold, by fullness", "dataset": key,
                                        "variant": f"raw tile {label}: {len(part)} of {len(tiles)} tiles, cold pass side by side",
                                        "rows": [*frows, *anchors_rows], "unit": "tile latency"})
            tile_rows[key] = rows
            comparisons.append({"comparison": "vector tiles WebMercatorQuad", "dataset": key,
                                "variant": f"z8–z14, {len(tiles)} tiles, 1 client unless said; cold: {COLD_BLOCK} at a time from every side in turn, "
                                           f"after {len(warm_tiles)} other tiles",
                                "rows": rows, "unit": "tile latency"})

        # ---- (4) what is here: GET /api/here at points of the shared ground, 10 layers
        pts = sample_points(here_file, prof["requests"], seed=13)
        hpaths = [f"/api/here?lon={x:.6f}&lat={y:.6f}" for x, y in pts]
        rows = []
        for s in servers:
            if not s.name.startswith("landcloud"):
                continue
            run_load(s.port, hpaths[: max(5, len(hpaths) // 10)], 1, 10, tokens.get(s.name))  # warm-up
            log(f"what is here {s.name}: {len(hpaths)} points")
            r = run_load(s.port, hpaths, 1, prof["time_limit"], tokens.get(s.name))
            r.update(target=s.name, anchor=False)
            rows.append(r)
        comparisons.append({"comparison": "what is here (GET /api/here)", "dataset": "10 layers",
                            "variant": f"dltb, osm + {here_extra} layers of {prof['here_parcels']} parcels; 1 client (goal p99 < 20 ms)",
                            "rows": rows, "unit": "request latency"})

        # ---- (2, continued) cached tiles of the public editions, anonymous: the lean path (after "what is here":
        # an edition is one more layer there)
        for be, url in backends.items():
            env = dict(os.environ, LANDCLOUD_DATA_DIR=str(work / be), LANDCLOUD_SECRET_KEY=TOKEN)
            log(f"{be}: public editions (profile, build, approve)")
            _child_with_rss(["edition", url, *[dsid for _path, dsid, _table in data.values()]], env)
        for s in servers:
            if not s.name.startswith("landcloud"):
                continue
            for key, ppaths in tile_sets.items():
                log(f"tiles {key} {s.name}: cached public edition, anonymous, {TILE_CLIENTS} clients")
                r = cached_throughput(s, ppaths, prof["cached_tiles"][1], None, prof["time_limit"])
                r.update(target=f"{s.name} cached public edition, anonymous, {TILE_CLIENTS} clients", anchor=False)
                tile_rows[key].append(r)
                core = one_core_row(s, ppaths, None, f"{s.name} cached public edition, anonymous", prof["one_core_s"], work, pgdir)
                tile_rows[key] += [core] if core else []
        if floor is not None:  # the stack's own cost of a remembered tile, now: what the per-core rows are read against
            for key, rows in tile_rows.items():
                zyx = [p.rsplit("/", 3)[1:] for p in tile_sets[key]]  # (z, y, x) of the tiles landcloud was asked for
                fpaths = [f"/tiles/{key}/{z}/{x}/{y}" for z, y, x in zyx]
                log(f"tiles {key}: {FLOOR}, {TILE_CLIENTS} clients")
                r = cached_throughput(floor, fpaths, prof["cached_tiles"][1], None, prof["time_limit"])
                r.update(target=f"{FLOOR}, {TILE_CLIENTS} clients", anchor=False)
                rows.append(r)
                against_floor(rows, r)
                core = one_core_row(floor, fpaths, None, FLOOR, prof["one_core_s"], work, pgdir)
                if core:
                    rows.append(core)
                    saturate.against_floor(rows, core)
    except BaseException:
        for s in servers:
            s.stop()
        servers = []
        if pg_dsn or pgdir.exists():
            subprocess.run([str(ROOT / "scripts" / "pg-cluster.sh"), "stop", str(pgdir)], capture_output=True)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        for s in servers:
            s.stop()

    # ---- (5) catalogue search (no servers: in-process search() in a child)
    try:
        rows = []
        for be in ["sqlite"] + (["postgis"] if pg_url else []):
            url = backends[be] if be == "sqlite" else pg_url
            if be == "sqlite":
                url = f"sqlite:///{work / 'catalog.sqlite'}"
            env = dict(os.environ, LANDCLOUD_DATA_DIR=str(work / "sqlite"), LANDCLOUD_SECRET_KEY=TOKEN)
            if be == "sqlite":
                _child_with_rss(["setup", url], env)
            log(f"catalogue search {be}: {prof['catalog']} records")
            res, _, rss = _child_with_rss(["catalog", url, str(prof["catalog"]), str(prof["catalog_repeats"])], env)
            r = stats(res["latencies"])
            r.update(target=f"landcloud search ({be})", anchor=False, peak_rss_mib=rss,
                     extra=f"build {res['build_seconds']:.0f} s + reindex {res['reindex_seconds']:.1f} s")
            rows.append(r)
        comparisons.append({"comparison": "catalogue search, Chinese queries", "dataset": f"{prof['catalog']} records",
                            "variant": "15 queries, limit 20, a provincial viewer", "rows": rows, "unit": "search() latency (p99 is the figure)"})
        sizes["catalogue_records"] = prof["catalog"]
        # ---- (3, at the size) the 1M-parcel file, last, so that its rows do not weigh on the runs above
        if prof.get("ingest_parcels"):
            big = dltb_file(cache, prof["ingest_parcels"], "")
            key = f"dltb {prof['ingest_parcels'] // 1000:,}k"
            rows = []
            for be in ["sqlite"] + (["postgis"] if pg_url else []):
                env = dict(os.environ, LANDCLOUD_DATA_DIR=str(work / be), LANDCLOUD_SECRET_KEY=TOKEN)
                rows += ingest_pair(be, backends[be], env, key, big, "bench-dltb-big", "dltb_big_plain", work)
            comparisons += ingest_comparisons(key, rows)
            sizes["dltb_ingest"] = prof["ingest_parcels"]
        vers = versions(pg_dsn, anchors)
    finally:
        if pg_dsn:
            subprocess.run([str(ROOT / "scripts" / "pg-cluster.sh"), "stop", str(pgdir)], capture_output=True)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    result = {"profile": a.profile, "started": started.isoformat(timespec="seconds"),
              "runtime_s": round(time.perf_counter() - t_run, 1), "machine": machine(), "versions": vers,
              "sizes": sizes, "skipped": skipped, "comparisons": comparisons}
    outdir = BENCH / "results"
    outdir.mkdir(exist_ok=True)
    out = outdir / f"{a.profile}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    (outdir / f"latest-{a.profile}.json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
    from report import write_markdown

    write_markdown(ROOT / "BENCHMARKS.md", outdir)
    log(f"results: {out.relative_to(ROOT)}; BENCHMARKS.md written; {result['runtime_s']} s")
    for s in skipped:
        log("SKIPPED: " + s)
    dead = [f"{c['comparison']} / {c['variant']} / {r['target']}" for c in comparisons for r in c["rows"]
            if r.get("errors") and not r.get("n")]
    for d in dead:
        log(f"FAILED: every request failed: {d}")
    return 1 if dead else 0


if __name__ == "__main__":
    sys.exit(main())
