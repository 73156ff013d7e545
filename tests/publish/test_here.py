"""GET /api/here (此处是什么): every layer a caller may read at a point, through the one gate, on both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pyproj import Geod, Transformer

from landcloud.access import units
from landcloud.app import api_routes, create_app
from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission

from builders import write_geojson
from world import HRB_ROWS, World, build

# the grid of tests/world.py: 0.002° squares from (126.60, 45.74), cell k = (i, j) with k = 3i + j
SIZE = 0.002
CELLS = {"HRB-A1": (0, 0), "HRB-A2": (0, 1), "HRB-B1": (0, 2), "HRB-B2": (1, 0), "HRB-C1": (1, 1)}


def centre(bsm: str) -> tuple[float, float]:
    i, j = CELLS[bsm]
    return 126.60 + (i + 0.5) * SIZE, 45.74 + (j + 0.5) * SIZE


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    client = TestClient(create_app(settings))
    return build(engine, settings, client, tmp_path)


def here(world: World, who: str | None, **params: Any) -> dict[str, Any]:
    resp = world.get("/api/here", who, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def at(world: World, who: str | None, bsm: str) -> dict[str, Any]:
    lon, lat = centre(bsm)
    return here(world, who, lon=lon, lat=lat)


def layer(report: dict[str, Any], dataset: str) -> dict[str, Any] | None:
    return next((lay for lay in report["layers"] if lay["dataset"] == dataset), None)


def test_the_route_is_guarded_and_documented(world: World) -> None:
    app = world.client.app
    assert any(r.path == "/api/here" for r in api_routes(app))  # type: ignore[arg-type]
    assert "/api/here" in app.openapi()["paths"]  # type: ignore[attr-defined]


def test_right_parcel_land_class_and_area(world: World) -> None:
    report = at(world, "hrbadmin", "HRB-A1")
    assert set(report) == {"point", "input", "gauss_kruger", "division", "layers", "checked", "generated_at"}
    hrb = layer(report, "hrb-dltb")
    assert hrb is not None and hrb["version"] == 2 and hrb["theme_zh"] == "国土调查"
    assert set(hrb) == {"dataset", "title", "theme", "theme_zh", "version", "features"}
    [feat] = hrb["features"]
    assert feat["properties"]["BSM"] == "HRB-A1"
    assert feat["landuse"] == {"code": "0702", "name_zh": "农村宅基地", "name_en": feat["landuse"]["name_en"]}  # changed in v2
    assert feat["aliases"]["DLBM"] == "地类编码" and "QLRZJH" not in feat["aliases"]
    assert feat["properties"]["QLRZJH"] == "230102199001011111"  # the owner's data administrator: in clear
    # the area is ellipsoidal on CGCS2000: an independent geodesic area on GRS80 agrees within 0.1 %
    box = shapely.box(126.600, 45.740, 126.602, 45.742)
    lons, lats = box.exterior.coords.xy
    expected = abs(Geod(ellps="GRS80").polygon_area_perimeter(list(lons), list(lats))[0])
    assert abs(feat["area_m2"] - expected) / expected < 1e-3
    assert feat["area_ha"] == pytest.approx(feat["area_m2"] / 10_000, abs=1e-4)
    assert feat["area_mu"] == pytest.approx(feat["area_m2"] * 15 / 10_000, abs=0.01)
    assert feat["tbmj_m2"] == pytest.approx(feat["area_m2"], abs=0.01)
    assert feat["geometry_type"] == "Polygon"
    # the other layers the administrator may read at the same spot; not the sensitive mine layer of a county
    assert {lay["dataset"] for lay in report["layers"]} == {"hrb-dltb", "open-dltb", "open-dltb-public"}
    assert report["checked"] >= 2


def test_jurisdiction_rows_and_masked_fields(world: World) -> None:
    # a county sees its own parcels, never a parcel of the neighbouring county at a point there
    assert layer(at(world, "daoli", "HRB-B1"), "hrb-dltb") is None
    assert layer(at(world, "daoli", "HRB-C1"), "hrb-dltb") is None
    seen = layer(at(world, "nangang", "HRB-B1"), "hrb-dltb")
    assert seen is not None and [f["properties"]["BSM"] for f in seen["features"]] == ["HRB-B1"]
    own = at(world, "daoli", "HRB-A1")
    assert {lay["dataset"] for lay in own["layers"]} == {"hrb-dltb", "daoli-mine", "open-dltb", "open-dltb-public"}
    [feat] = layer(own, "hrb-dltb")["features"]  # type: ignore[index]
    assert feat["properties"]["QLRZJH"] == "2301**********1111"  # sensitive: masked for a viewer
    # every caller over every parcel: exactly its rows, a clear 证件号 only for the owner's administrator
    expected = {None: set(), "prov": set(CELLS), "hrb": set(CELLS), "hrbadmin": set(CELLS), "qqhr": set(),
                "daoli": {"HRB-A1", "HRB-A2"}, "nangang": {"HRB-B1", "HRB-B2"}, "bank": set(), "sec": set()}
    for who, rows in expected.items():
        got = set()
        for bsm in CELLS:
            report = at(world, who, bsm)
            hrb = layer(report, "hrb-dltb")
            for f in hrb["features"] if hrb else []:
                got.add(f["properties"]["BSM"])
                original = next(r[2] for r in HRB_ROWS if r[0] == f["properties"]["BSM"])
                assert (f["properties"]["QLRZJH"] == original) == (who == "hrbadmin"), who
        assert got == rows, who


def test_hidden_fields_of_a_narrow_grant_are_left_out(world: World) -> None:
    app = world.post("/api/applications", "bank", json={
        "dataset_id": "hrb-dltb", "purpose": "抵押登记核查 mortgage checks", "fields": ["BSM", "DLBM", "QLRZJH"], "region": "230102",
    })
    assert app.status_code == 201, app.text
    assert world.post(f"/api/applications/{app.json()['id']}/decision", "hrbadmin", json={"approve": True}).status_code == 200
    [feat] = layer(at(world, "bank", "HRB-A1"), "hrb-dltb")["features"]  # type: ignore[index]
    assert feat["properties"] == {"BSM": "HRB-A1", "DLBM": "0702", "QLRZJH": "230102199001011111"}
    assert set(feat["aliases"]) <= {"BSM", "DLBM"} and feat["tbmj_m2"] is None
    assert feat["landuse"]["code"] == "0702" and feat["area_m2"] > 0
    assert layer(at(world, "bank", "HRB-B1"), "hrb-dltb") is None  # outside the granted region


def test_anonymous_sees_public_layers_only(world: World) -> None:
    report = at(world, None, "HRB-A1")
    assert [lay["dataset"] for lay in report["layers"]] == ["open-dltb-public"]  # the public edition, never the master
    assert report["checked"] == 1
    assert at(world, "sec", "HRB-A1")["layers"] == report["layers"]  # the separated administrators see what the public sees
    empty = at(world, None, "HRB-B1")
    assert empty["layers"] == [] and empty["gauss_kruger"]["zone"] == 42
    far = here(world, "hrbadmin", lon=100.0, lat=30.0)
    assert far["layers"] == [] and far["division"] is None


def _here_entries(world: World) -> list[dict[str, Any]]:
    return world.get("/api/audit", "aud", params={"action": "data.here", "limit": 1000}).json()["entries"]


def test_one_audit_entry_per_request(world: World) -> None:
    before = len(_here_entries(world))
    at(world, "daoli", "HRB-A1")
    entries = _here_entries(world)
    assert len(entries) == before + 1
    entry = next(e for e in entries if e["actor"] == "daoli")
    listed = {d["dataset"]: d for d in entry["detail"]["datasets"]}
    assert set(listed) == {"hrb-dltb", "daoli-mine"}  # the public layer is not a sensitive read
    assert listed["hrb-dltb"]["count"] == 1 and listed["hrb-dltb"]["rows"] == "restricted"
    assert "QLRZJH" in listed["hrb-dltb"]["masked"] and listed["daoli-mine"]["count"] == 1
    assert entry["detail"]["count"] == 2 and entry["actor_unit"] == "230102"
    # public layers only: nothing to account for
    at(world, None, "HRB-A1")
    at(world, "sec", "HRB-A1")
    assert len(_here_entries(world)) == before + 1
    reads = world.get("/api/audit", "aud", params={"action": "data.read", "limit": 1000}).json()["entries"]
    assert all(e["actor"] != "daoli" for e in reads)  # not one entry per layer besides
    # the auditor asking who read a dataset finds the many-layer read too, and only for the datasets it lists
    for dataset_id, expected in (("daoli-mine", True), ("hrb-dltb", True), ("open-dltb", False)):
        found = world.get("/api/audit", "aud", params={"dataset_id": dataset_id, "action": "data.here"}).json()["entries"]
        assert (entry["seq"] in {e["seq"] for e in found}) is expected, dataset_id


def test_gauss_kruger_zone_and_the_plane_coordinate_form(world: World) -> None:
    lon, lat = centre("HRB-C1")
    report = here(world, "hrb", lon=lon, lat=lat)
    gk = report["gauss_kruger"]
    east, north = Transformer.from_crs("EPSG:4490", "EPSG:4530", always_xy=True).transform(lon, lat)
    assert (gk["zone"], gk["width"], gk["central_meridian"], gk["epsg"]) == (42, 3, 126.0, 4530)
    assert gk["x"] == pytest.approx(east, abs=0.01) and gk["y"] == pytest.approx(north, abs=0.01)
    assert 42_000_000 < gk["x"] < 43_000_000
    same = here(world, "hrb", crs="EPSG:4530", x=gk["x"], y=gk["y"])
    assert same["point"]["lon"] == pytest.approx(lon, abs=1e-7) and same["point"]["lat"] == pytest.approx(lat, abs=1e-7)
    assert same["point"]["crs"] == "EPSG:4490" and same["input"] == {"crs": "EPSG:4530", "x": gk["x"], "y": gk["y"]}
    assert same["layers"] == report["layers"]
    assert [f["properties"]["BSM"] for f in layer(same, "hrb-dltb")["features"]] == ["HRB-C1"]  # type: ignore[index]
    # the ESRI name of the same CRS works too
    named = here(world, "hrb", crs="CGCS2000_3_Degree_GK_Zone_42", x=gk["x"], y=gk["y"])
    assert named["point"]["lon"] == pytest.approx(lon, abs=1e-7)


def test_division_from_stored_boundaries(world: World, engine: sa.Engine) -> None:
    assert at(world, "hrb", "HRB-A1")["division"] is None  # no boundary loaded yet
    units.set_boundary(engine, "230100", shapely.box(126.0, 45.0, 127.5, 46.5))
    units.set_boundary(engine, "230102", shapely.box(126.59, 45.735, 126.602, 45.744))
    assert at(world, "hrb", "HRB-A1")["division"] == {"code": "230102", "name": "道里区"}
    assert at(world, "hrb", "HRB-C1")["division"] == {"code": "230100", "name": "哈尔滨市"}
    assert here(world, None, lon=124.0, lat=47.0)["division"] is None


def test_lines_count_within_two_metres(world: World, engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    road = {"type": "Feature", "properties": {"BSM": "ROAD-1", "DLBM": "1006"},
            "geometry": {"type": "LineString", "coordinates": [[126.600, 45.7410], [126.606, 45.7410]]}}
    path = write_geojson(tmp_path / "roads.geojson", [road])
    assert run_submission(engine, settings, path, SubmitOptions(dataset_id="hrb-roads", unit="230100")).accepted
    one_metre = 1.0 / 111_150
    near = here(world, "hrb", lon=126.603, lat=45.741 + one_metre)
    [feat] = layer(near, "hrb-roads")["features"]  # type: ignore[index]
    assert feat["geometry_type"] == "LineString" and feat["area_m2"] is None and feat["landuse"]["name_zh"] == "农村道路"
    assert layer(here(world, "hrb", lon=126.603, lat=45.741 + 5 * one_metre), "hrb-roads") is None


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 400, "here.no_point"),
        ({"lon": 126.6}, 400, "here.no_point"),
        ({"lon": 200, "lat": 45}, 400, "here.out_of_range"),
        ({"lon": 126.6, "lat": -95}, 400, "here.out_of_range"),
        ({"lon": "nan", "lat": 45}, 400, "here.out_of_range"),
        ({"lon": 126.6, "lat": 45.7, "crs": "EPSG:999999"}, 400, "crs.unknown"),
        ({"lon": 126.6, "lat": 45.7, "crs": "EPSG:4530"}, 400, "here.projected_lonlat"),
        ({"x": 42_500_000, "y": 5_061_000, "crs": "EPSG:2366"}, 400, "crs.needs_transformation"),  # Xian 1980 zone 42
        ({"lon": "east", "lat": 45}, 422, "request.invalid"),
    ],
)
def test_bad_input_is_refused_in_both_languages(world: World, params: dict[str, Any], status: int, code: str) -> None:
    resp = world.get("/api/here", "hrb", params=params)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == code and body["message_zh"] and body["message_en"]
