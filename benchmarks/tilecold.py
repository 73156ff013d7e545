"""Cold vector tiles in-process: CPU per tile of the client (Python) and of the PostgreSQL server, by fullness.

    python benchmarks/tilecold.py URL DATASET GPKG [--passes 3] [--only full|small|empty] [--json]

Renders the benchmark's tile set (`run.py`: z8–z14, 20 tiles per zoom around features of GPKG, plus
one empty tile per zoom beyond the data's corner) through the tile route's own steps — the gate
(`dataset_for_read`), `plan_tile`, `render_planned`, on one read connection handed over as the route
does (code from before that took a connection of its own for the tile) — with no tile cache, so every
tile is made.
Tiles are grouped by the raw `ST_AsMVT` tile's size on the plain table (empty / < 4 KiB / ≥ 4 KiB,
as the harness does; on SQLite the groups are taken from the PostGIS plain table given by
`--raw-dsn`, or from landcloud's own tile size when there is none). CPU: `time.process_time()`
of this process, plus on PostGIS the utime+stime of every backend of the cluster
(`/proc/<pid>/stat` of the postmaster's children) over each group's pass. Run it under the
code to compare (`PYTHONPATH=<other tree>/src`), alternately, on the same store: the figures
are CPU, comparable on a shared machine; wall times are not.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawmvt import RAW_SETTINGS  # noqa: E402
from run import RAW_MVT, fullness, sample_points, tile_list  # noqa: E402

RAW_TABLE = {"bench-dltb": ("dltb_plain", "DLBM"), "bench-osm": ("osm_plain", "landuse")}


def tiles_of(gpkg: Path) -> list[tuple[int, int, int]]:
    import pyogrio

    tiles = tile_list(sample_points(gpkg, 2000, seed=5), range(8, 15), 20)
    ext = pyogrio.read_info(gpkg)["total_bounds"]
    return tiles + tile_list(np.array([[ext[2] + 0.3, ext[3] + 0.3]]), range(8, 15), 1)


def backend_cpu(dsn: str | None) -> float:
    """CPU seconds so far of every child of the cluster's postmaster (backends and helpers)."""
    if not dsn:
        return 0.0
    import psycopg

    global _POSTMASTER
    if _POSTMASTER is None:
        with psycopg.connect(dsn) as c:
            data_dir = c.execute("SHOW data_directory").fetchone()[0]
        _POSTMASTER = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == _POSTMASTER:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


_POSTMASTER: int | None = None


def raw_sizes(dsn: str, dataset: str, tiles: list[tuple[int, int, int]]) -> list[int]:
    import psycopg

    table, column = RAW_TABLE[dataset]
    sql = RAW_MVT.format(table=table, column=column)
    with psycopg.connect(dsn) as conn:
        return [len(conn.execute(sql, {"z": z, "x": x, "y": y}).fetchone()[0] or b"") for z, x, y in tiles]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("dataset")
    ap.add_argument("gpkg")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--only", choices=["full", "small", "empty"])
    ap.add_argument("--raw-dsn", help="PostGIS DSN of the plain tables (default: URL's, when it is PostGIS)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--raw", action="store_true", help="time the raw ST_AsMVT query on the plain table instead (psycopg, one connection)")
    a = ap.parse_args()

    import landcloud
    from landcloud.access import gate
    from landcloud.access.principal import Principal
    from landcloud.publish.tiles import plan_tile, render_planned
    from landcloud.store.db import create_engine, read_connection

    handover = "conn" in inspect.signature(render_planned).parameters

    engine = create_engine(a.url)
    pg = a.url.startswith("postgresql")
    dsn = a.url.replace("postgresql+psycopg://", "postgresql://") if pg else None
    raw_dsn = a.raw_dsn or dsn
    me = Principal("user", user_id="bench-reader", username="bench_reader_230000", unit="230000", unit_kind="administrative",
                   roles=frozenset({"viewer"}))
    tiles = tiles_of(Path(a.gpkg))

    raw_conn = None
    if a.raw:
        import psycopg

        raw_conn = psycopg.connect(raw_dsn, autocommit=True)
        raw_conn.execute(RAW_SETTINGS)
        raw_sql = RAW_MVT.format(table=RAW_TABLE[a.dataset][0], column=RAW_TABLE[a.dataset][1])

    def make(z: int, x: int, y: int) -> tuple[bytes, int]:
        if raw_conn is not None:
            tile = raw_conn.execute(raw_sql, {"z": z, "x": x, "y": y}).fetchone()[0] or b""
            return bytes(tile), 0
        conn = read_connection(engine)  # the route's one connection (deps.Reads): the gate's read, then the tile's
        try:
            ds, access = gate.dataset_for_read(engine, me, a.dataset, conn)
            plan = plan_tile(ds, access, None, "WebMercatorQuad", z, x, y, engine=engine)
            if handover:
                return render_planned(engine, me, ds, access, plan, conn=conn)
            conn.close()  # (code from before the hand-over: the tile took a connection of its own)
            return render_planned(engine, me, ds, access, plan)
        finally:
            conn.close()

    sizes = raw_sizes(raw_dsn, a.dataset, tiles) if raw_dsn else [len(make(*t)[0]) for t in tiles]
    groups: dict[str, list[tuple[int, int, int]]] = {}
    for t, n in zip(tiles, sizes):
        groups.setdefault({"empty": "empty", "< 4 KiB": "small", "≥ 4 KiB": "full"}[fullness(n)], []).append(t)
    for t in tiles[:10]:  # warm-up: connections, PostGIS/PROJ caches of the backend
        make(*t)
    out: dict[str, dict[str, float]] = {}
    for name, group in groups.items():
        if a.only and name != a.only:
            continue
        client, server, wall, features, size = [], [], [], 0, 0
        for _ in range(a.passes):
            c0, s0, w0 = time.process_time(), backend_cpu(dsn), time.perf_counter()
            for t in group:
                made = make(*t)
                features += made[1]
                size += len(made[0])
            client.append((time.process_time() - c0) / len(group))
            server.append((backend_cpu(dsn) - s0) / len(group))
            wall.append((time.perf_counter() - w0) / len(group))
        out[name] = {
            "tiles": len(group),
            "features_per_tile": features / a.passes / len(group),
            "bytes_per_tile": size / a.passes / len(group),
            "client_ms": 1000 * float(np.median(client)),
            "server_ms": 1000 * float(np.median(server)),
            "wall_ms": 1000 * float(np.median(wall)),
        }
    head = {"code": "raw ST_AsMVT" if a.raw else str(Path(landcloud.__file__).parents[2]), "dataset": a.dataset, "backend": "postgis" if pg else "sqlite"}
    if a.json:
        print(json.dumps({**head, "groups": out}))
    else:
        print(head)
        for name, r in out.items():
            print(f"  {name:6s} {r['tiles']:3d} tiles, {r['features_per_tile']:7.1f} features/tile, {r['bytes_per_tile'] / 1024:6.1f} KiB: client {r['client_ms']:7.2f} ms, "
                  f"server {r['server_ms']:7.2f} ms, sum {r['client_ms'] + r['server_ms']:7.2f} ms CPU/tile (wall {r['wall_ms']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
