"""Benchmark input data: synthetic DLTB parcels tiling real Heilongjiang counties, and real Harbin OSM polygons.

Both are written as GeoPackages in EPSG:4490 lon/lat. The parcel writer streams county by county
(and in batches within a county), so 1M parcels never sit in memory at once. Deterministic by seed:
the same (n, seed, prefix) gives the same file.

    python benchmarks/data.py dltb OUT.gpkg --n 100000 --seed 1 [--prefix 2301]
    python benchmarks/data.py osm OUT.gpkg
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely

COUNTIES = Path("/work/shared/data/cnmaps-heilongjiang/heilongjiang_counties_merged_gcj02.geojson")
OSM = Path("/work/shared/data/osm-harbin/harbin_osm_2024-11.gpkg")
DLTB_FIELDS = ["BSM", "YSDM", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWDM", "ZLDWMC", "TBMJ", "SJNF"]
BATCH = 20_000


def county_boundaries(prefix: str = "") -> list[tuple[str, shapely.Geometry]]:
    """(adcode, CGCS2000 boundary) of the Heilongjiang counties, converted from GCJ-02; sorted by code."""
    from landcloud.geo.gcj02 import geometry_gcj02_to_wgs84

    fc = json.loads(COUNTIES.read_text(encoding="utf-8"))
    out = []
    for f in fc["features"]:
        code = str(f["properties"]["adcode"])
        if not code.startswith(prefix):
            continue
        geom = shapely.make_valid(geometry_gcj02_to_wgs84(shapely.geometry.shape(f["geometry"])))
        geom = shapely.union_all([p for p in shapely.get_parts(geom) if p.geom_type == "Polygon"])
        out.append((code, geom))
    return sorted(out)


def split_counts(boundaries: list[tuple[str, shapely.Geometry]], n: int) -> list[int]:
    """n parcels split across counties in proportion to (planar lon/lat) area; at least 1 each."""
    areas = np.array([g.area for _, g in boundaries])
    raw = areas / areas.sum() * n
    counts = np.maximum(np.floor(raw).astype(int), 1)
    rest = n - counts.sum()
    order = np.argsort(-(raw - np.floor(raw)))
    i = 0
    while rest > 0:
        counts[order[i % len(order)]] += 1
        rest -= 1
        i += 1
    return counts.tolist()


def _write_batch(out: Path, feats: list[dict], first: bool) -> None:
    geoms = shapely.to_wkb(np.array([shapely.geometry.shape(f["geometry"]) for f in feats], dtype=object))
    cols = []
    for name in DLTB_FIELDS:
        vals = [f["properties"][name] for f in feats]
        dtype = float if name == "TBMJ" else (np.int32 if name == "SJNF" else object)
        cols.append(np.array(vals, dtype=dtype))
    pyogrio.raw.write(
        out, geoms, cols, DLTB_FIELDS, layer="dltb", driver="GPKG", geometry_type="Unknown",
        crs="EPSG:4490", append=not first, encoding="UTF-8",
    )


def write_dltb(out: Path, n: int, seed: int, prefix: str = "") -> dict:
    from landcloud.demo.parcels import dltb_features

    out = Path(out)
    out.unlink(missing_ok=True)
    boundaries = county_boundaries(prefix)
    counts = split_counts(boundaries, n)
    written = 0
    first = True
    buf: list[dict] = []
    for k, ((code, boundary), count) in enumerate(zip(boundaries, counts)):
        for f in dltb_features(boundary, code, count, seed=seed * 1000 + k):
            buf.append(f)
            if len(buf) >= BATCH:
                _write_batch(out, buf, first)
                written += len(buf)
                first = False
                buf = []
    if buf:
        _write_batch(out, buf, first)
        written += len(buf)
    return {"path": str(out), "features": written, "counties": len(boundaries), "seed": seed, "prefix": prefix}


def write_osm(out: Path, bbox: tuple[float, float, float, float] | None = None) -> dict:
    """Valid (multi)polygons of the Harbin OSM extract with a landuse or building tag (those meeting `bbox`, if given)."""
    out = Path(out)
    out.unlink(missing_ok=True)
    meta, _, wkb, fields = pyogrio.raw.read(OSM, layer="multipolygons", columns=["osm_id", "osm_way_id", "name", "building", "landuse"])
    names = list(meta["fields"])
    total = len(wkb)
    geoms = shapely.from_wkb(wkb, on_invalid="ignore")
    cols = dict(zip(names, fields))
    tagged = np.array([(b is not None and b != "") or (lu is not None and lu != "") for b, lu in zip(cols["building"], cols["landuse"])])
    ok = (
        tagged
        & ~shapely.is_missing(geoms)
        & np.isin(shapely.get_type_id(geoms), [3, 6])
        & shapely.is_valid(geoms)
    )
    ok &= ~shapely.is_empty(geoms)
    if bbox is not None:
        ok &= shapely.intersects(geoms, shapely.box(*bbox))
    idx = np.nonzero(ok)[0]
    key = np.array([str(a or b) for a, b in zip(cols["osm_id"][idx], cols["osm_way_id"][idx])], dtype=object)
    out_fields = ["OSMID", "name", "building", "landuse"]
    out_cols = [key] + [np.array([v if v is not None else "" for v in cols[c][idx]], dtype=object) for c in ("name", "building", "landuse")]
    pyogrio.raw.write(out, shapely.to_wkb(geoms[idx]), out_cols, out_fields, layer="osm", driver="GPKG",
                  geometry_type="Unknown", crs="EPSG:4490", encoding="UTF-8")
    return {"path": str(out), "features": int(len(idx)), "source_features": int(total)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["dltb", "osm"])
    p.add_argument("out")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--prefix", default="")
    p.add_argument("--bbox", default="", help="osm: only polygons meeting minx,miny,maxx,maxy")
    a = p.parse_args(argv)
    bbox = tuple(float(v) for v in a.bbox.split(",")) if a.bbox else None
    info = write_dltb(Path(a.out), a.n, a.seed, a.prefix) if a.kind == "dltb" else write_osm(Path(a.out), bbox)  # type: ignore[arg-type]
    print(json.dumps(info, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
