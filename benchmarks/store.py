"""Store-side benchmark steps, each run as its own child process (so its peak memory is its own).

    python benchmarks/store.py setup   URL                       # migrations, Heilongjiang units and boundaries
    python benchmarks/store.py ingest  URL FILE DATASET UNIT [no-overlap]  # landcloud submission (full checks), then open/public
    python benchmarks/store.py plain   URL FILE TABLE OUT_GPKG   # anchor: pyogrio read + write, no checks
    python benchmarks/store.py catalog URL N REPEATS             # N catalogue records, timed Chinese searches
    python benchmarks/store.py search  URL REPEATS               # the timed searches again, on a catalogue built before
    python benchmarks/store.py token   URL UNIT                  # a reader of UNIT and its API token (lct_…)
    python benchmarks/store.py layers  URL FILE PREFIX K UNIT    # K more layers PREFIX-1..K (the file again), for "what is here"
    python benchmarks/store.py edition URL DATASET...            # their public editions (every non-sensitive field), built and approved

Every step prints one JSON line on stdout. LANDCLOUD_DATA_DIR must be set by the caller.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np


def _engine(url: str):
    from landcloud.store.db import create_engine

    return create_engine(url)


def setup(url: str) -> dict:
    from landcloud.demo.load import load_units
    from landcloud.store.migrate import upgrade

    engine = _engine(url)
    upgrade(engine)
    return {"units": len(load_units(engine))}


def ingest(url: str, path: str, dataset: str, unit: str, profile: str = "") -> dict:
    """`profile` "no-overlap": the submission's overlap rule off (a layer of no standard schema, e.g. OSM)."""
    from landcloud.catalog import datasets as catalog
    from landcloud.config import Settings
    from landcloud.ingest.pipeline import SubmitOptions, run_submission

    engine = _engine(url)
    settings = Settings(database_url=url)
    t0 = time.perf_counter()
    opts = SubmitOptions(dataset_id=dataset, unit=unit, title=f"benchmark {dataset}", overlap_check=profile != "no-overlap")
    # as the HTTP submission and `landcloud ingest` run it: accepted once committed, the tile copies after
    res = run_submission(engine, settings, path, opts, copies_after=True)
    seconds = time.perf_counter() - t0
    after = res.after.run() if res.after is not None else {}
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"accepted": res.accepted, "version": res.version, "seconds": seconds,
           # the overlap rule's process (a large layer) counted in: its CPU, and its peak beside this one's (Linux: KiB)
           "cpu_seconds": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
           "self_peak_rss_mib": me.ru_maxrss / 1024, "children_peak_rss_mib": kids.ru_maxrss / 1024,
           "stages": {**res.timings, **after}}
    if not res.accepted:
        out["findings"] = [f.message_en for f in res.findings[:5]]
        return out
    catalog.update_metadata(engine, dataset, {"openness": "open", "security_level": "public"})
    ds = catalog.require_dataset(engine, dataset)
    out.update(features=ds.feature_count, extent=ds.extent)
    out["after_acceptance_s"] = time.perf_counter() - t0 - seconds  # the copies and the above: not waited for
    return out


def plain(url: str, path: str, table: str, out_gpkg: str) -> dict:
    """Read with pyogrio and write into the same backend, no checks: a GPKG file (SQLite) or COPY into PostGIS."""
    import pyogrio.raw
    import shapely

    t0 = time.perf_counter()
    meta, _, wkb, fields = pyogrio.raw.read(path)
    names = list(meta["fields"])
    if url.startswith("sqlite"):
        pyogrio.raw.write(out_gpkg, wkb, fields, names, layer=table, driver="GPKG", geometry_type="Unknown",
                          crs="EPSG:4490", encoding="UTF-8")
        target = out_gpkg
    else:
        import psycopg

        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        geoms = shapely.set_srid(shapely.from_wkb(wkb), 4490)
        hexes = shapely.to_wkb(geoms, hex=True, include_srid=True)
        cols = ", ".join(f'"{n}" text' for n in names)
        with psycopg.connect(dsn) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            conn.execute(f'CREATE TABLE "{table}" (fid serial PRIMARY KEY, {cols}, geom geometry(Geometry, 4490))')
            collist = ", ".join(f'"{n}"' for n in names) + ", geom"
            with conn.cursor().copy(f'COPY "{table}" ({collist}) FROM STDIN') as cp:
                for i in range(len(hexes)):
                    cp.write_row([None if f[i] is None else str(f[i]) for f in fields] + [hexes[i]])
            conn.execute(f'CREATE INDEX "{table}_geom_idx" ON "{table}" USING gist (geom)')
            conn.execute(f'ANALYZE "{table}"')
        target = table
    return {"seconds": time.perf_counter() - t0, "features": int(len(wkb)), "target": target}


QUERIES = ["耕地", "地类图斑", "哈尔滨 规划", "林地 保护", "道里区", "永久基本农田", "矿产 资源", "水域", "城镇 开发 边界",
           "土地 利用 现状", "不动产", "黑龙江 行政区", "湿地", "建设用地 审批", "草地 调查"]
WORDS = ["耕地", "林地", "草地", "湿地", "水域", "园地", "建设用地", "永久基本农田", "生态保护红线", "城镇开发边界", "地类图斑",
         "土地利用现状", "国土空间规划", "矿产资源", "地质灾害", "不动产登记", "行政区划", "测绘", "遥感影像", "调查成果",
         "审批", "储备", "征收", "确权", "变更调查", "年度", "统计", "保护", "整治", "复垦"]
PLACES = ["哈尔滨市", "道里区", "南岗区", "香坊区", "齐齐哈尔市", "牡丹江市", "佳木斯市", "大庆市", "鸡西市", "双鸭山市",
          "伊春市", "七台河市", "鹤岗市", "黑河市", "绥化市", "大兴安岭", "五常市", "尚志市", "宾县", "依兰县"]


def catalog(url: str, n: int, repeats: int) -> dict:

    from landcloud.catalog import datasets as cat
    from landcloud.catalog import search as srch
    from landcloud.catalog.tables import datasets as dtable

    engine = _engine(url)
    rng = np.random.default_rng(7)
    themes = sorted(cat.THEMES)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for i in range(n):
            place = PLACES[rng.integers(len(PLACES))]
            w = [WORDS[j] for j in rng.choice(len(WORDS), 3, replace=False)]
            did = f"rec-{i:05d}"
            cat.create_dataset(conn, did, "230000", title=f"{place}{w[0]}{w[1]}数据（{2015 + i % 10}年）",
                               theme=themes[rng.integers(len(themes))])
            conn.execute(dtable.update().where(dtable.c.id == did).values(
                description=f"{place}{w[0]}、{w[1]}与{w[2]}成果，供{w[2]}工作使用。Benchmark record {i}.",
                keywords=[w[0], w[1], place], openness="open", security_level="public",
            ))
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    srch.reindex_all(engine)
    reindex = time.perf_counter() - t1
    return {"records": n, "build_seconds": build, "reindex_seconds": reindex, **search(url, repeats, engine)}


def search_reader():
    """A viewer of the owner unit (the public sees published editions only, not these master records)."""
    from landcloud.access.principal import Principal

    return Principal("user", user_id="bench-reader", username="bench_reader", unit="230000", unit_kind="administrative",
                     roles=frozenset({"viewer"}))


def search(url: str, repeats: int, engine=None) -> dict:
    """Timed searches (QUERIES, `repeats` times, limit 20) on a catalogue built by `catalog`: wall and CPU time each."""
    from landcloud.catalog import search as srch

    engine = engine if engine is not None else _engine(url)
    reader = search_reader()
    times: list[float] = []
    cpu: list[float] = []
    totals = {}
    for _r in range(repeats):
        for q in QUERIES:
            s, c = time.perf_counter(), time.process_time()
            res = srch.search(engine, reader, q, limit=20)
            times.append(time.perf_counter() - s)
            cpu.append(time.process_time() - c)
            totals[q] = res["total"]
    return {"latencies": times, "cpu": cpu, "hits": totals}


def layers(url: str, path: str, prefix: str, k: str, unit: str) -> dict:
    """K more open/public layers over the same ground (the same file submitted K times), for "what is here"."""
    t0 = time.perf_counter()
    out = [ingest(url, path, f"{prefix}-{i}", unit) for i in range(1, int(k) + 1)]
    rejected = [o for o in out if not o["accepted"]]
    return {"layers": len(out), "rejected": rejected, "seconds": time.perf_counter() - t0}


def edition(url: str, dataset: str) -> dict:
    """The dataset's public edition (`<id>-public`): a profile keeping every non-sensitive field, built and approved,
    as its data administrator would; the public (anonymous) reads it, which the lean tile path serves."""
    from landcloud.access.principal import system_principal
    from landcloud.catalog import datasets as catalog
    from landcloud.config import Settings
    from landcloud.publish import editions

    engine = _engine(url)
    settings = Settings(database_url=url)
    me = system_principal("benchmark")
    ds = catalog.require_dataset(engine, dataset)
    t0 = time.perf_counter()
    editions.set_profile(engine, me, dataset, {"fields": [f["name"] for f in ds.fields if not f.get("sensitive")]})
    built = editions.build(engine, settings, me, dataset)
    editions.approve(engine, me, built["id"])
    return {
        "edition": built["dataset_id"],
        "version": built["version"],
        "features": built["report"].get("feature_count"),
        "seconds": time.perf_counter() - t0,
    }


def token(url: str, unit: str) -> dict:
    """A viewer of `unit` (no password: it only uses its token) and a read-only API token for it.

    The benchmark's landcloud requests carry this token, so they measure a signed-in reader (auth
    included) and do not depend on what anonymous callers may see.
    """
    from landcloud.access import tokens, users
    from landcloud.config import Settings

    engine = _engine(url)
    settings = Settings(database_url=url)
    name = f"bench_reader_{unit}"
    user = users.find_user(engine, name) or users.create_user(engine, settings, name, unit, ["viewer"], None, "benchmark reader")
    plaintext, _ = tokens.create_token(engine, settings, user, "benchmark", ["read"], expires_days=1)
    return {"token": plaintext, "user": name}


def main(argv: list[str]) -> int:
    cmd, url, *rest = argv
    if cmd == "setup":
        out = setup(url)
    elif cmd == "ingest":
        out = ingest(url, *rest)
    elif cmd == "plain":
        out = plain(url, *rest)
    elif cmd == "layers":
        out = layers(url, *rest)
    elif cmd == "edition":
        out = {"editions": [edition(url, d) for d in rest]}
    elif cmd == "token":
        out = token(url, rest[0])
    elif cmd == "catalog":
        out = catalog(url, int(rest[0]), int(rest[1]))
    elif cmd == "search":
        out = search(url, int(rest[0]))
    else:
        raise SystemExit(f"unknown step {cmd}")
    print(json.dumps(out, ensure_ascii=False, default=str))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
