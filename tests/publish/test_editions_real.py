"""Public editions on real data: the Heilongjiang county boundaries (GCJ-02) and the Harbin OSM extract."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud import clock
from landcloud.access import gate
from landcloud.access.principal import ANONYMOUS, system_principal
from landcloud.app import create_app
from landcloud.config import Settings
from landcloud.geo.gcj02 import geometry_wgs84_to_gcj02
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.publish import desensitise, editions, fingerprints
from landcloud.publish.ogc_crs import GCJ02_URI

from conftest import needs_data
from outlines import farthest_vertex, hausdorff
from world import BANK, World, build

ME = system_principal("test")
METRE_DEG = 1 / 111_000  # a metre in degrees of latitude: the strict bound (a degree of longitude is shorter here)
METRE_LON = 1 / (111_000 * np.cos(np.radians(54)))  # a metre in degrees of longitude as far north as the province: the loose bound


def edition_geoms(engine: sa.Engine, dataset_id: str, version: int | None = None) -> dict[str, tuple[dict, shapely.Geometry]]:
    ds, access = gate.dataset_for_read(engine, ME, dataset_id)
    return {f.fkey: (f.props, shapely.from_wkb(f.wkb)) for f in gate.read_features(engine, ME, ds, access, version)}


def build_edition(engine: sa.Engine, settings: Settings, dataset_id: str, profile: dict) -> dict:
    editions.set_profile(engine, ME, dataset_id, profile)
    edition = editions.build(engine, settings, ME, dataset_id)
    assert edition["report"]["passed"], edition["report"]["checks"]
    return edition


def test_county_boundaries_at_50_m_and_in_gcj02(engine: sa.Engine, settings: Settings) -> None:
    path = needs_data("cnmaps-heilongjiang", "heilongjiang_counties_merged_gcj02.geojson")
    result = run_submission(engine, settings, path, SubmitOptions(dataset_id="hlj", unit="230000", crs="GCJ02", key="adcode"))
    assert result.accepted, result.report["findings"][:3]
    raw = {str(f["properties"]["adcode"]): f for f in json.loads(path.read_text(encoding="utf-8"))["features"]}
    daxinganling = {a for a, f in raw.items() if str(f["properties"]["city_adcode"]) == "232700"}
    assert len(daxinganling) >= 4

    profile = {"fields": ["adcode", "name", "city"], "class_field": "city_adcode", "remove_classes": ["232700"],
               "remove_where": [{"field": "name", "values": ["松北区"]}], "tolerance_m": 50, "review_number": "黑S(2026)002号"}
    edition = build_edition(engine, settings, "hlj", profile)
    report = edition["report"]
    assert report["checks"] == {"removed_classes_absent": True, "fields_within_whitelist": True, "coordinates_on_tolerance_grid": True,
                                "geometry_valid": True, "stored_area_matches": True}
    assert report["removed"] == {"by_class": len(daxinganling), "by_filter": 1, "classes": ["232700"]}
    assert report["collapsed"]["count"] == 0 and report["feature_count"] == 122 - len(daxinganling) - 1
    assert report["class_leaks"] == report["off_grid_coordinates"] == report["invalid_geometries"] == report["fields_outside_whitelist"] == 0
    per_class = {c["class"]: c for c in report["area_per_class"]}
    assert per_class["232700"]["area_after_m2"] == 0 and per_class["232700"]["area_before_m2"] > 4e10  # 大兴安岭: > 40,000 km²
    for code, c in per_class.items():
        if code != "232700" and code != "230100":  # Harbin also lost 松北区 to the attribute filter
            assert abs(c["change_rel"]) < 0.002, c  # 50 m moves a county's area by well under 0.2 %
    got = edition_geoms(engine, "hlj-public")
    assert len(got) == report["feature_count"] and not set(got) & (daxinganling | {"230109"})
    assert all(g.is_valid and g.geom_type in ("Polygon", "MultiPolygon") for _, g in got.values())
    assert all(set(p) <= {"adcode", "name", "city"} for p, _ in got.values())
    assert desensitise.check_precision(np.array([g for _, g in got.values()]), 50, report["grid_epsg"]) == 0
    master = edition_geoms(engine, "hlj")
    for key, (_, g) in got.items():  # generalised, not moved: every vertex within the tolerance (+ grid snap) of the master outline
        assert farthest_vertex(g, master[key][1]) < 50 * 1.8 * METRE_LON, key

    # GCJ-02 for GCJ-02 basemaps is an output: the edition is stored in CGCS2000 (the 50 m edition, not moved) …
    gcj = build_edition(engine, settings, "hlj", {**profile, "gcj02": True})
    assert gcj["report"]["coordinates"] == "CGCS2000" and gcj["report"]["checks"]["coordinates_on_tolerance_grid"]
    assert gcj["report"]["checks"]["gcj02_output_valid"] and gcj["report"]["checks"]["gcj02_output_aligned"]
    assert gcj["report"]["gcj02_output"]["max_roundtrip_m"] <= editions.GCJ02_CHECK_EPS_M
    stored = edition_geoms(engine, "hlj-public", gcj["version"])
    for key, (_, g) in stored.items():
        assert hausdorff(g, got[key][1]) < 0.01 * METRE_DEG
        assert farthest_vertex(geometry_wgs84_to_gcj02(g), shapely.geometry.shape(raw[key]["geometry"])) < 50 * 1.8 * METRE_LON
    # … and kept at full precision, its GCJ-02 output (OGC API, crs=GCJ-02) lines up with the original GCJ-02 county file
    # to within a metre
    fine = build_edition(engine, settings, "hlj", {**profile, "gcj02": True, "tolerance_m": 0.01})
    exact = edition_geoms(engine, "hlj-public", fine["version"])
    assert len(exact) == report["feature_count"]
    worst = max(hausdorff(g, shapely.geometry.shape(raw[key]["geometry"])) for key, (_, g) in exact.items())
    assert worst > 100 * METRE_DEG  # stored in CGCS2000: hundreds of metres off the GCJ-02 file
    # none of these is published until approved; the public then reads the approved one only
    assert gate.visible_datasets(engine, ANONYMOUS) == []
    editions.approve(engine, ME, fine["id"])
    ds, access = gate.dataset_for_read(engine, ANONYMOUS, "hlj-public")
    assert ds.current_version == fine["version"] and access.version == fine["version"]
    client = TestClient(create_app(settings))
    assert GCJ02_URI in client.get("/ogc/collections/hlj-public").json()["crs"]
    resp = client.get("/ogc/collections/hlj-public/items", params={"crs": GCJ02_URI, "limit": 1000})
    assert resp.status_code == 200 and resp.headers["Content-Crs"] == f"<{GCJ02_URI}>"
    out = {str(f["id"]): shapely.geometry.shape(f["geometry"]) for f in resp.json()["features"]}
    assert set(out) == set(exact)
    worst = max(hausdorff(g, shapely.geometry.shape(raw[key]["geometry"])) for key, g in out.items())
    assert worst < METRE_DEG, f"{worst / METRE_DEG:.3f} m"


def _osm_landuse(tmp: Path) -> tuple[Path, int]:
    """The extract's landuse polygons as a submission could carry them: unreadable rings dropped, invalid ones
    repaired, and overlapping polygons left out (the platform's overlap rule), military areas kept first."""
    frame = pyogrio.read_dataframe(needs_data("osm-harbin", "harbin_osm_2024-11.gpkg"), layer="multipolygons",
                                   where="landuse IS NOT NULL", on_invalid="ignore")
    frame = frame[frame.geometry.notna()].copy()
    frame["geometry"] = [g if g.is_valid else shapely.make_valid(g) for g in frame.geometry]
    frame["geometry"] = [shapely.union_all([p for p in shapely.get_parts(g) if p.geom_type == "Polygon"]) for g in frame.geometry]
    frame = frame[[not g.is_empty and g.geom_type in ("Polygon", "MultiPolygon") for g in frame.geometry]]
    frame["osm_key"] = [w if isinstance(w, str) and w else f"r{r}" for w, r in zip(frame.osm_way_id, frame.osm_id)]
    frame = frame.sort_values("landuse", key=lambda s: s != "military", kind="stable")
    geoms = frame.geometry.values
    tree = shapely.STRtree(geoms)
    kept: list[int] = []
    taken = np.zeros(len(geoms), dtype=bool)
    for i, g in enumerate(geoms):
        near = tree.query(g)
        near = near[taken[near]]
        if near.size and shapely.relate_pattern(g, geoms[near], "2********").any():
            continue
        taken[i] = True
        kept.append(i)
    out = frame.iloc[kept][["osm_key", "name", "landuse", "military", "other_tags", "geometry"]]
    path = tmp / "harbin_landuse.gpkg"
    pyogrio.write_dataframe(out, path, layer="landuse")
    return path, int((out.landuse == "military").sum())


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    (tmp_path / "in").mkdir()
    return build(engine, settings, TestClient(create_app(settings)), tmp_path / "in")


def test_harbin_osm_edition_and_a_traced_leak(world: World, engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path, military = _osm_landuse(tmp_path)
    assert military >= 10
    result = run_submission(engine, settings, path, SubmitOptions(dataset_id="harbin-landuse", unit="230100", key="osm_key"))
    assert result.accepted, result.report["findings"][:3]
    source_count = result.report["summary"]["feature_count"]
    assert source_count > 2000

    profile = {"fields": ["osm_key", "name", "landuse"], "class_field": "landuse", "remove_classes": ["military"],
               "remove_where": [{"field": "landuse", "values": ["governmental"]}], "tolerance_m": 50}
    edition = build_edition(engine, settings, "harbin-landuse", profile)
    report = edition["report"]
    assert report["removed"]["by_class"] == military and report["removed"]["by_filter"] > 0
    assert report["feature_count"] + report["collapsed"]["count"] + military + report["removed"]["by_filter"] == source_count
    assert report["collapsed"]["count"] > 0 and len(report["collapsed"]["keys"]) > 0  # small plots vanish at 50 m, and are named
    got = edition_geoms(engine, "harbin-landuse-public")
    assert len(got) == report["feature_count"]
    assert all(g.is_valid for _, g in got.values())
    assert not any(p.get("landuse") in ("military", "governmental") for p, _ in got.values())
    assert all(set(p) <= set(profile["fields"]) for p, _ in got.values())
    per_class = {c["class"]: c for c in report["area_per_class"]}
    assert per_class["military"]["area_after_m2"] == 0 and per_class["forest"]["area_before_m2"] > 1e6
    assert abs(per_class["forest"]["change_rel"]) < 0.15  # mostly the small plots that collapsed

    # the master handed to two recipients under grants: each copy is marked; a leaked one names its recipient,
    # also after a round trip through Shapefile and GeoJSON
    for who in ("bank", "qqhr"):
        app = world.post("/api/applications", who, json={"dataset_id": "harbin-landuse", "purpose": "规划核查",
                                                          "period_end": (clock.now() + timedelta(days=10)).isoformat()})
        assert app.status_code == 201, app.text
        decided = world.post(f"/api/applications/{app.json()['id']}/decision", "hrbadmin", json={"approve": True})
        assert decided.json()["status"] == "approved"
    copies = {}
    for who, fmt in (("bank", "shp"), ("qqhr", "geojson"), ("bank", "gpkg")):
        resp = world.get("/api/datasets/harbin-landuse/download", who, params={"format": fmt})
        assert resp.status_code == 200
        copies[(who, fmt)] = tmp_path / f"{who}.{fmt}{'.zip' if fmt == 'shp' else ''}"
        copies[(who, fmt)].write_bytes(resp.content)
    leak = pyogrio.read_dataframe(f"/vsizip/{copies[('bank', 'shp')]}")
    pyogrio.write_dataframe(leak, tmp_path / "leak.geojson", driver="GeoJSON")
    pyogrio.write_dataframe(pyogrio.read_dataframe(tmp_path / "leak.geojson"), tmp_path / "leak2.shp")
    for file, recipient in [(copies[("bank", "shp")], BANK), (copies[("qqhr", "geojson")], "230200"), (copies[("bank", "gpkg")], BANK),
                            (tmp_path / "leak2.shp", BANK)]:
        traced = fingerprints.trace_copy(engine, fingerprints.read_copy(file))
        assert traced["recipient"] == recipient, (file, traced["candidates"][:3])
        scores = {c["recipient"]: c["score"] for c in traced["candidates"]}
        assert scores[recipient] > 0.9 and max(s for r, s in scores.items() if r != recipient) < 0.1
    # the published edition is no one's copy
    editions.approve(engine, ME, edition["id"])
    public = world.get("/api/datasets/harbin-landuse-public/download", None, params={"format": "geojson"})
    (tmp_path / "public.geojson").write_bytes(public.content)
    assert fingerprints.trace_copy(engine, fingerprints.read_copy(tmp_path / "public.geojson"))["recipient"] is None
