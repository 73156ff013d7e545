"""Public editions through the API: profile, build, approve, publish, supersede; read-only; where data goes."""

from __future__ import annotations

import json
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import mapbox_vector_tile
import numpy as np
import pyogrio
import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud import clock
from landcloud.access.principal import system_principal
from landcloud.app import create_app
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.geo.gcj02 import wgs84_to_gcj02
from landcloud.messages import LandcloudError
from landcloud.publish import editions, fingerprints
from landcloud.publish.ogc_crs import GCJ02_URI

from builders import publish_edition, write_geojson
from world import BANK, HRB_ROWS, World, build, parcels, submit

PROFILE = {"fields": ["BSM", "DLBM", "DLMC", "ZLDWDM"], "class_field": "DLBM", "remove_classes": ["07"], "tolerance_m": 50,
           "attribution": "数据来源：哈尔滨市自然资源和规划局", "review_number": "黑S(2026)001号"}


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    client = TestClient(create_app(settings))
    return build(engine, settings, client, tmp_path)


def keys(world: World, who: str | None, dataset: str, **params: str) -> tuple[int, dict[str, dict]]:
    resp = world.get(f"/api/datasets/{dataset}/features", who, params=params)
    if resp.status_code != 200:
        return resp.status_code, {}
    return 200, {f["properties"]["BSM"]: f["properties"] for f in resp.json()["features"]}


def test_profile_build_approve_and_a_new_version(world: World, engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    url = "/api/datasets/hrb-dltb/release-profile"
    assert world.client.put(url, json=PROFILE, headers=world.headers("hrb")).status_code == 403  # a viewer
    assert world.client.put(url, json=PROFILE, headers=world.headers("daoliadmin")).status_code == 403  # not the owner unit
    bad = world.client.put(url, json={**PROFILE, "fields": ["BSM", "QLRZJH"]}, headers=world.headers("hrbadmin"))
    assert bad.status_code == 400 and bad.json()["error"] == "profile.sensitive_field" and bad.json()["message_zh"]
    bad = world.client.put(url, json={**PROFILE, "fields": ["NOPE"]}, headers=world.headers("hrbadmin"))
    assert bad.status_code == 400 and bad.json()["error"] == "profile.unknown_field"
    bad = world.client.put(url, json={**PROFILE, "tolerance_m": -1}, headers=world.headers("hrbadmin"))
    assert bad.status_code == 400 and bad.json()["error"] == "profile.invalid"
    ok = world.client.put(url, json=PROFILE, headers=world.headers("hrbadmin"))
    assert ok.status_code == 200 and ok.json()["tolerance_m"] == 50 and ok.json()["gcj02"] is False
    assert world.get(url, "hrbadmin").json()["remove_classes"] == ["07"]

    built = world.post("/api/datasets/hrb-dltb/editions", "hrbadmin")
    assert built.status_code == 201, built.text
    e1 = built.json()
    assert (e1["status"], e1["dataset_id"], e1["version"], e1["source_version"]) == ("pending", "hrb-dltb-public", 1, 2)
    report = e1["report"]
    assert report["passed"] and all(report["checks"].values())
    # v2: HRB-A1, HRB-B1 and HRB-B2 are 0702 (农村宅基地): the whole first-level class 07 goes
    assert report["removed"]["by_class"] == 3 and report["feature_count"] == 2 and report["source_feature_count"] == 5
    assert report["class_leaks"] == 0 and report["off_grid_coordinates"] == 0 and report["invalid_geometries"] == 0
    assert set(report["fields"]) <= set(PROFILE["fields"])
    by_class = {c["class"]: c for c in report["area_per_class"]}
    assert by_class["0702"]["area_after_m2"] == 0 and by_class["0702"]["area_before_m2"] > 0
    assert by_class["0103"]["area_after_m2"] > 0

    # pending: the public does not see it; the owner unit's staff do
    assert keys(world, None, "hrb-dltb-public")[0] == 404
    assert {d["id"] for d in world.get("/api/datasets", None).json()["datasets"]} == {"open-dltb-public"}
    assert set(keys(world, "hrb", "hrb-dltb-public")[1]) == {"HRB-A2", "HRB-C1"}
    assert world.get("/api/datasets/hrb-dltb-public", "qqhr").status_code == 404  # not listed outside the owner unit yet
    assert world.post(f"/api/editions/{e1['id']}/approve", "hrb").status_code == 403
    assert world.post(f"/api/editions/{e1['id']}/approve", None).status_code == 401
    approved = world.post(f"/api/editions/{e1['id']}/approve", "hrbadmin")
    assert approved.status_code == 200 and approved.json()["status"] == "published"

    status, got = keys(world, None, "hrb-dltb-public")
    assert status == 200 and set(got) == {"HRB-A2", "HRB-C1"}
    assert all(set(p) <= set(PROFILE["fields"]) for p in got.values())
    assert keys(world, None, "hrb-dltb")[0] == 404  # the master stays out of reach
    meta = world.get("/api/datasets/hrb-dltb-public", None).json()
    assert meta["title"] == "hrb-dltb（公开版）" and meta["edition_of"] == "hrb-dltb" and "黑S(2026)001号" in meta["description"]

    # a new master version: a new edition pending approval; the public keeps reading the published one
    rows = [(b, z, q) for b, z, q in HRB_ROWS]
    v3 = parcels(rows)
    v3[1]["properties"].update(DLMC="旱地（改）")
    upload = write_geojson(tmp_path / "v3.geojson", v3)
    sub = world.post("/api/submissions", "hrbadmin", data={"dataset": "hrb-dltb", "schema": "DLTB"},
                     files={"file": ("v3.geojson", upload.read_bytes(), "application/geo+json")})
    assert sub.status_code == 202, sub.text
    assert world.get(f"/api/submissions/{sub.json()['id']}", "hrbadmin").json()["status"] == "accepted"
    listed = world.get("/api/datasets/hrb-dltb/editions", "hrbadmin").json()["editions"]
    assert [(e["status"], e["source_version"], e["version"]) for e in listed] == [("pending", 3, 2), ("published", 2, 1)]
    assert [e["status"] for e in world.get("/api/datasets/hrb-dltb/editions", "qqhr").json()["editions"]] == ["published"]
    assert world.get("/api/datasets/hrb-dltb/editions", None).status_code == 404  # the master is not in the public catalogue
    e2 = listed[0]["id"]
    assert world.get(f"/api/editions/{e2}", "qqhr").status_code == 404 and world.get(f"/api/editions/{e2}", "hrb").status_code == 200
    assert world.get("/api/datasets/hrb-dltb-public", None).json()["current_version"] == 1
    assert keys(world, None, "hrb-dltb-public")[1]["HRB-A2"]["DLMC"] == "旱地"
    assert keys(world, None, "hrb-dltb-public", version="2")[0] == 404
    assert [v["version"] for v in world.get("/api/datasets/hrb-dltb-public/versions", None).json()["versions"]] == [1]
    assert keys(world, "hrb", "hrb-dltb-public")[1]["HRB-A2"]["DLMC"] == "旱地（改）"  # the owner unit reviews the pending one
    spot = shapely.geometry.shape(v3[1]["geometry"]).representative_point()
    here = world.get("/api/here", None, params={"lon": spot.x, "lat": spot.y}).json()  # "what is here" too
    assert [(lay["dataset"], lay["version"], lay["features"][0]["properties"]["DLMC"]) for lay in here["layers"]] == [
        ("hrb-dltb-public", 1, "旱地")]
    assert world.post(f"/api/editions/{e2}/approve", "hrbadmin").json()["status"] == "published"
    assert keys(world, None, "hrb-dltb-public")[1]["HRB-A2"]["DLMC"] == "旱地（改）"
    listed = world.get("/api/datasets/hrb-dltb/editions", "hrbadmin").json()["editions"]
    assert [e["status"] for e in listed] == ["published", "superseded"]
    again = world.post(f"/api/editions/{e1['id']}/approve", "hrbadmin")
    assert again.status_code == 409 and again.json()["error"] == "edition.not_pending"

    # an edition is read-only: no submission, no rollback, no edition of an edition
    with pytest.raises(LandcloudError) as exc:
        submit(engine, settings, tmp_path, "hrb-dltb-public", "230100", v3)
    assert exc.value.message.code == "dataset.read_only_edition" and exc.value.status == 409
    refused = world.post("/api/datasets/hrb-dltb-public/rollback", "hrbadmin", json={"to": 1})
    assert refused.status_code == 409 and refused.json()["error"] == "dataset.read_only_edition" and refused.json()["message_zh"]
    assert world.client.put("/api/datasets/hrb-dltb-public/release-profile", json=PROFILE,
                            headers=world.headers("hrbadmin")).json()["error"] == "edition.of_edition"
    actions = {e["action"] for e in world.get("/api/audit", "aud", params={"limit": 1000}).json()["entries"]}
    assert {"edition.profile", "edition.build", "edition.approve"} <= actions


def test_build_needs_a_profile_and_the_owner(world: World) -> None:
    missing = world.post("/api/datasets/hrb-dltb/editions", "hrbadmin")
    assert missing.status_code == 404 and missing.json()["error"] == "profile.not_found"
    assert world.post("/api/datasets/hrb-dltb/editions", "hrb").status_code == 403
    assert world.post("/api/datasets/hrb-dltb/editions", None).status_code == 404


def test_public_downloads_of_editions_are_recorded(world: World) -> None:
    resp = world.get("/api/datasets/open-dltb-public/download", None, params={"format": "geojson"})
    assert resp.status_code == 200 and "OPEN-1" in resp.text and "230102199001018888" not in resp.text
    assert world.get("/api/datasets/open-dltb/download", None, params={"format": "geojson"}).status_code == 404
    entries = world.get("/api/audit", "aud", params={"action": "data.download", "limit": 100}).json()["entries"]
    mine = [e for e in entries if e["dataset_id"] == "open-dltb-public"]
    assert len(mine) == 1 and mine[0]["actor"] == "anonymous" and mine[0]["ip"] and mine[0]["at"]
    assert mine[0]["detail"]["format"] == "geojson" and mine[0]["detail"]["count"] == 1 and mine[0]["version"] == 1


def _grant(world: World, who: str, dataset: str = "hrb-dltb") -> None:
    app = world.post("/api/applications", who, json={
        "dataset_id": dataset, "purpose": "核查 checks", "period_end": (clock.now() + timedelta(days=30)).isoformat(),
    })
    assert app.status_code == 201, app.text
    assert world.post(f"/api/applications/{app.json()['id']}/decision", "hrbadmin", json={"approve": True}).json()["status"] == "approved"


def test_grant_downloads_are_fingerprinted_and_traced(world: World, engine: sa.Engine, tmp_path: Path) -> None:
    _grant(world, "bank")
    _grant(world, "qqhr")
    got = {}
    for who in ("bank", "qqhr"):
        resp = world.get("/api/datasets/hrb-dltb/download", who, params={"format": "geojson"})
        assert resp.status_code == 200
        got[who] = tmp_path / f"{who}.geojson"
        got[who].write_bytes(resp.content)
    body = json.loads(got["bank"].read_text(encoding="utf-8"))
    assert body["recipient"] == BANK and BANK in body["watermark"] and "不得外传" in body["watermark"]
    # the fingerprint is invisible at use scale: every vertex within 15 cm of the master's
    master = {f["properties"]["BSM"]: shapely.geometry.shape(f["geometry"])
              for f in world.get("/api/datasets/hrb-dltb/features", "hrbadmin").json()["features"]}
    for f in body["features"]:
        copy = shapely.geometry.shape(f["geometry"])
        assert copy.is_valid and 0 < shapely.hausdorff_distance(copy, master[f["properties"]["BSM"]]) < 2e-6
    assert fingerprints.trace_copy(engine, fingerprints.read_copy(got["bank"]))["recipient"] == BANK
    assert fingerprints.trace_copy(engine, fingerprints.read_copy(got["qqhr"]))["recipient"] == "230200"
    # a Shapefile download, and a round trip GeoJSON → Shapefile → GeoJSON of the bank's copy, still name the bank
    shp = world.get("/api/datasets/hrb-dltb/download", "bank", params={"format": "shp"})
    zpath = tmp_path / "bank.shp.zip"
    zpath.write_bytes(shp.content)
    with zipfile.ZipFile(zpath) as zf:
        meta = json.loads(next(zf.read(n) for n in zf.namelist() if n.endswith(".metadata.json")))
        assert meta["recipient"] == BANK and BANK in zf.read("README.txt").decode("utf-8")
    assert fingerprints.trace_copy(engine, fingerprints.read_copy(zpath))["recipient"] == BANK
    frame = pyogrio.read_dataframe(got["bank"])
    pyogrio.write_dataframe(frame, tmp_path / "leak.shp")
    pyogrio.write_dataframe(pyogrio.read_dataframe(tmp_path / "leak.shp"), tmp_path / "leak.geojson", driver="GeoJSON")
    traced = fingerprints.trace_copy(engine, fingerprints.read_copy(tmp_path / "leak.geojson"))
    assert traced["recipient"] == BANK and traced["match"]["score"] > 0.9
    # the master itself, as the owner reads it, carries no one's fingerprint
    own = world.get("/api/datasets/hrb-dltb/download", "hrbadmin", params={"format": "geojson"})
    (tmp_path / "own.geojson").write_bytes(own.content)
    assert "recipient" not in own.json()
    assert fingerprints.trace_copy(engine, fingerprints.read_copy(tmp_path / "own.geojson"))["recipient"] is None
    entries = world.get("/api/audit", "aud", params={"action": "data.download", "limit": 100}).json()["entries"]
    assert {e["detail"].get("fingerprint", {}).get("recipient") for e in entries} >= {BANK, "230200"}


def test_cli_profile_build_approve_list_and_trace(world: World, settings: Settings, tmp_path: Path) -> None:
    from test_cli import run

    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(PROFILE, ensure_ascii=False), encoding="utf-8")
    out = run(settings, "editions", "profile", "hrb-dltb", "--file", str(profile))
    assert out.returncode == 0, out.stderr
    out = run(settings, "editions", "build", "hrb-dltb")
    assert out.returncode == 0, out.stderr
    eid = json.loads(out.stdout)["id"]
    out = run(settings, "editions", "approve", str(eid))
    assert out.returncode == 0 and "published" in out.stdout, out.stderr
    out = run(settings, "editions", "list", "hrb-dltb")
    assert out.returncode == 0 and "published" in out.stdout and "checks passed" in out.stdout
    # a new version submitted from the command line: the edition is rebuilt right after it (a batch), pending approval
    upload = write_geojson(tmp_path / "v3.geojson", parcels(HRB_ROWS))
    out = run(settings, "ingest", str(upload), "--dataset", "hrb-dltb", "--unit", "230100", "--schema", "DLTB")
    assert out.returncode == 0 and "built, pending approval" in out.stdout, out.stderr
    out = run(settings, "editions", "list", "hrb-dltb")
    assert "pending" in out.stdout and "latest build / 最近一次生成: built (source v3)" in out.stdout, out.stdout
    bad = run(settings, "editions", "approve", "999")
    assert bad.returncode == 2 and "edition 999 does not exist" in bad.stderr
    _grant(world, "bank")
    leak = tmp_path / "leak.geojson"
    leak.write_bytes(world.get("/api/datasets/hrb-dltb/download", "bank", params={"format": "geojson"}).content)
    out = run(settings, "trace", str(leak))
    assert out.returncode == 0 and BANK in out.stdout, out.stderr
    clean = tmp_path / "clean.geojson"
    clean.write_bytes(world.get("/api/datasets/hrb-dltb/download", "hrbadmin", params={"format": "geojson"}).content)
    assert run(settings, "trace", str(clean)).returncode == 1


def test_statistics_only_release_by_grid(world: World, engine: sa.Engine, settings: Settings) -> None:
    publish_edition(engine, settings, "qqhr-dltb", class_field="DLBM", aggregate={"kind": "grid", "cell_m": 500}, tolerance_m=50)
    status_feats = world.get("/api/datasets/qqhr-dltb-public/features", None).json()["features"]
    assert status_feats and all(set(f["properties"]) == {"cell", "DLBM", "area_m2"} for f in status_feats)
    source = catalog.require_dataset(engine, "qqhr-dltb")
    total = sum(f["properties"]["area_m2"] for f in status_feats)
    master_area = sum(f["properties"]["TBMJ"] for f in world.get("/api/datasets/qqhr-dltb/features", "qqhr").json()["features"])
    assert abs(total - master_area) / master_area < 0.01 and source.current_version == 1
    assert all(shapely.geometry.shape(f["geometry"]).is_valid for f in status_feats)


def test_the_check_finds_a_removed_feature_by_its_key(world: World, engine: sa.Engine, settings: Settings) -> None:
    """The class field need not be published: removed features are also looked for by key, and a leak fails the check."""
    publish_edition(engine, settings, "hrb-dltb", fields=["BSM", "DLMC"], class_field="DLBM", remove_classes=["07"])
    built = editions.list_editions(engine, system_principal(), "hrb-dltb")[0]
    assert built["report"]["class_leaks"] == 0 and built["report"]["removed"]["by_class"] == 3
    profile = editions.ReleaseProfile.model_validate(built["profile"])
    with engine.connect() as conn:
        tally = editions.Tally(removed_keys={"HRB-A2"})  # as if HRB-A2 had been removed and still got through
        report = editions.check(conn, "hrb-dltb-public", built["version"], profile, built["report"]["grid_epsg"], tally)
    assert not report["passed"] and not report["checks"]["removed_classes_absent"] and report["class_leak_keys"] == ["HRB-A2"]


def test_statistics_only_release_by_administrative_unit(world: World, engine: sa.Engine, settings: Settings) -> None:
    from landcloud.access import units

    units.set_boundary(engine, "230202", shapely.box(123.85, 47.25, 123.95, 47.35))  # 龙沙区, for the unit's outline
    publish_edition(engine, settings, "hrb-dltb", class_field="DLBM", remove_classes=["07"],
                    aggregate={"kind": "admin", "code_field": "ZLDWDM", "level": 6})
    feats = world.get("/api/datasets/hrb-dltb-public/features", None).json()["features"]
    # v2: HRB-A2 (0103, 道里区 230102) and HRB-C1 (1006, 香坊区 230104) remain after removing class 07
    got = {(f["properties"]["unit"], f["properties"]["DLBM"]): f for f in feats}
    assert set(got) == {("230102", "0103"), ("230104", "1006")}
    assert got[("230102", "0103")]["properties"]["unit_name"] == "道里区"
    assert all(set(f["properties"]) == {"unit", "unit_name", "DLBM", "area_m2"} for f in feats)
    master = {f["properties"]["BSM"]: f["properties"]["TBMJ"] for f in world.get("/api/datasets/hrb-dltb/features", "hrb").json()["features"]}
    assert abs(got[("230102", "0103")]["properties"]["area_m2"] - master["HRB-A2"]) < 1
    assert all(f["geometry"] is None for f in feats)  # no boundary loaded for these districts: statistics only
    publish_edition(engine, settings, "qqhr-dltb", class_field="DLBM", aggregate={"kind": "admin", "code_field": "ZLDWDM"})
    outline = world.get("/api/datasets/qqhr-dltb-public/features", None).json()["features"]
    assert len(outline) == 1 and outline[0]["properties"]["unit"] == "230202"
    assert shapely.geometry.shape(outline[0]["geometry"]).is_valid  # the unit's boundary, generalised to 50 m
    bad = world.client.put("/api/datasets/hrb-dltb/release-profile", json={"class_field": "DLBM", "aggregate": {"kind": "admin"}},
                           headers=world.headers("hrbadmin"))
    assert bad.status_code == 400 and bad.json()["error"] == "profile.code_field_required"


def _coords(doc: dict) -> np.ndarray:
    return np.array([c for f in doc["features"] for c in shapely.get_coordinates(shapely.geometry.shape(f["geometry"]))])


def test_gcj02_is_an_output_of_the_editions_that_enable_it(world: World, engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    """Stored in CGCS2000 (invariant 1); GCJ-02 in OGC API items, tiles and downloads, honestly labelled, on request only."""
    publish_edition(engine, settings, "hrb-dltb", **{**PROFILE, "gcj02": True})
    url = "/ogc/collections/hrb-dltb-public"
    assert GCJ02_URI in world.get(url, None).json()["crs"]
    plain = world.get(f"{url}/items", None).json()
    gcj = world.get(f"{url}/items", None, params={"crs": GCJ02_URI})
    assert gcj.status_code == 200 and gcj.headers["Content-Crs"] == f"<{GCJ02_URI}>"
    lon, lat = wgs84_to_gcj02(_coords(plain)[:, 0], _coords(plain)[:, 1])
    assert np.allclose(_coords(gcj.json()), np.column_stack([lon, lat]), atol=1e-9)
    shift = np.abs(_coords(gcj.json()) - _coords(plain)).max()
    assert shift > 0.003  # hundreds of metres around Harbin: really shifted …
    one = world.get(f"{url}/items/HRB-A2", None, params={"crs": "GCJ02"})
    assert one.status_code == 200 and one.headers["Content-Crs"] == f"<{GCJ02_URI}>"
    # … and a GCJ-02 bbox finds what is shown there
    x0, y0 = _coords(gcj.json()).min(axis=0)
    x1, y1 = _coords(gcj.json()).max(axis=0)
    boxed = world.get(f"{url}/items", None, params={"bbox": f"{x0},{y0},{x1},{y1}", "bbox-crs": GCJ02_URI})
    assert boxed.json()["numberReturned"] == len(gcj.json()["features"])
    # the store itself holds CGCS2000: the plain output is the master's geometry generalised, not shifted
    master = world.get("/ogc/collections/hrb-dltb/items", "hrbadmin").json()
    assert np.abs(_coords(plain).mean(axis=0) - _coords(master).mean(axis=0)).max() < 0.001

    # tiles for GCJ-02 basemaps: the TileJSON names gcj02=true in its tile URLs, the tile is the shifted one
    tj = world.get(f"{url}/tiles/WebMercatorQuad/tilejson.json", None, params={"gcj02": "true"})
    assert tj.status_code == 200 and tj.json()["tiles"][0].endswith("?gcj02=true")
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    z = 14
    tx = int((cx + 180) / 360 * 2**z)
    ty = int((1 - np.log(np.tan(np.radians(cy)) + 1 / np.cos(np.radians(cy))) / np.pi) / 2 * 2**z)
    t_gcj = world.get(f"{url}/tiles/WebMercatorQuad/{z}/{ty}/{tx}", None, params={"gcj02": "true"})
    t_plain = world.get(f"{url}/tiles/WebMercatorQuad/{z}/{ty}/{tx}", None)
    assert t_gcj.status_code == 200 and t_gcj.content != t_plain.content
    layer = mapbox_vector_tile.decode(t_gcj.content)["hrb-dltb-public"]
    assert layer["features"]

    # downloads
    doc = world.get("/api/datasets/hrb-dltb-public/download", None, params={"format": "geojson", "crs": "GCJ02"})
    assert doc.status_code == 200 and doc.headers["X-Landcloud-CRS"] == "GCJ-02"
    assert doc.json()["crs"]["properties"]["name"] == GCJ02_URI
    assert np.allclose(np.sort(_coords(doc.json()), axis=0), np.sort(_coords(gcj.json()), axis=0), atol=1e-7)
    gpkg = world.get("/api/datasets/hrb-dltb-public/download", None, params={"format": "gpkg", "crs": "gcj-02"})
    assert gpkg.status_code == 200
    (tmp_path / "e.gpkg").write_bytes(gpkg.content)
    info = pyogrio.read_info(tmp_path / "e.gpkg")
    assert "GCJ-02" in info["crs"] and "_GCJ02" in gpkg.headers["Content-Disposition"]

    # asked of anything else: a 400 that says why (a master, an edition without GCJ-02)
    for path, who, params in [("/ogc/collections/hrb-dltb/items", "hrbadmin", {"crs": GCJ02_URI}),
                              ("/ogc/collections/hrb-dltb/items", "hrbadmin", {"bbox": "126,45,127,46", "bbox-crs": "GCJ02"}),
                              ("/ogc/collections/open-dltb-public/items", None, {"crs": GCJ02_URI}),
                              ("/ogc/collections/hrb-dltb/tiles/WebMercatorQuad/tilejson.json", "hrbadmin", {"gcj02": "true"}),
                              (f"/ogc/collections/hrb-dltb/tiles/WebMercatorQuad/{z}/{ty}/{tx}", "hrbadmin", {"gcj02": "true"}),
                              ("/api/datasets/hrb-dltb/download", "hrbadmin", {"format": "geojson", "crs": "GCJ02"}),
                              ("/api/datasets/open-dltb-public/download", None, {"format": "geojson", "crs": "GCJ02"})]:
        resp = world.get(path, who, params=params)
        assert resp.status_code == 400 and resp.json()["error"] == "crs.gcj02_not_offered", (path, resp.text)
        assert "GCJ-02" in resp.json()["message_zh"] and "GCJ-02" in resp.json()["message_en"]
    assert GCJ02_URI not in world.get("/ogc/collections/open-dltb-public", None).json()["crs"]


def test_an_ogc_edit_answers_before_the_edition_is_rebuilt_and_a_failed_build_is_recorded(
    world: World, engine: sa.Engine, settings: Settings
) -> None:
    publish_edition(engine, settings, "hrb-dltb", **PROFILE)
    admin = world.headers("hrbadmin")
    resp = world.client.patch("/ogc/collections/hrb-dltb/items/HRB-A2", json={"properties": {"DLMC": "旱地（改）"}}, headers=admin)
    assert resp.status_code == 200, resp.text
    # the answer was made before the edition was rebuilt: then it was only queued, for the new version
    assert resp.json()["version"] == 3 and resp.headers["X-Landcloud-Edition-Build"] == "queued"
    assert resp.json()["edition_build"]["status"] == "queued" and resp.json()["edition_build"]["source_version"] == 3
    # after the response it ran: a new edition of v3, pending approval, and the published one stays published
    listed = world.get("/api/datasets/hrb-dltb/editions", "hrbadmin").json()
    assert listed["build"]["status"] == "built" and listed["build"]["error"] is None
    assert [(e["status"], e["source_version"]) for e in listed["editions"]] == [("pending", 3), ("published", 2)]
    assert listed["build"]["edition_id"] == listed["editions"][0]["id"]
    assert world.get("/api/datasets/hrb-dltb-public/features", None).json()["features"][0]["properties"]["DLMC"] != "旱地（改）"
    other = world.get("/api/datasets/hrb-dltb/editions", "prov")
    assert other.status_code != 200 or other.json()["build"] is None  # the build state is the owner unit's

    # a build that fails (nothing left to publish) is recorded with its error; the edit itself succeeded
    keys = [f["id"] for f in world.get("/ogc/collections/hrb-dltb/items", "hrbadmin").json()["features"]]
    for key in keys:
        deleted = world.client.delete(f"/ogc/collections/hrb-dltb/items/{key}", headers=admin)
        assert deleted.status_code == 204, deleted.text
    listed = world.get("/api/datasets/hrb-dltb/editions", "hrbadmin").json()
    assert listed["build"]["status"] == "failed" and listed["build"]["source_version"] == 3 + len(keys)
    assert listed["build"]["error"]["error"] == "edition.empty_source" and listed["build"]["error"]["message_zh"]
    assert listed["editions"][0]["source_version"] == 3 + len(keys) - 1  # the last good build stays, pending
    failed = world.get("/api/audit", "aud", params={"action": "edition.build_failed"}).json()["entries"]
    assert [e["detail"]["error"] for e in failed if e["dataset_id"] == "hrb-dltb"] == ["edition.empty_source"]


def test_concurrent_approvals_publish_one_edition(world: World, engine: sa.Engine, settings: Settings) -> None:
    me = system_principal("test")
    editions.set_profile(engine, me, "hrb-dltb", PROFILE)
    first = editions.build(engine, settings, me, "hrb-dltb")
    barrier = threading.Barrier(2)

    def approve(eid: int) -> str:
        barrier.wait()  # both start together: both see the edition pending before either commits
        try:
            return str(editions.approve(engine, me, eid)["status"])
        except LandcloudError as exc:
            return exc.message.code

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(approve, [first["id"], first["id"]])) == ["edition.not_pending", "published"]
    approvals = world.get("/api/audit", "aud", params={"action": "edition.approve"}).json()["entries"]
    assert [e["detail"]["edition"] for e in approvals if e["dataset_id"] == "hrb-dltb-public"] == [first["id"]]
    # two pending editions approved at once: whichever order, one edition is published, and it is the one the public reads
    second, third = editions.build(engine, settings, me, "hrb-dltb"), editions.build(engine, settings, me, "hrb-dltb")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(approve, [second["id"], third["id"]]))
    assert results[1] == "published" and results[0] in ("published", "edition.outdated")
    status = {e["id"]: e["status"] for e in editions.list_editions(engine, me, "hrb-dltb")}
    assert [eid for eid, s in status.items() if s == "published"] == [third["id"]]
    assert catalog.require_dataset(engine, "hrb-dltb-public").published_version == third["version"]


def test_the_public_sees_the_fields_of_the_published_edition_not_of_one_pending(world: World, engine: sa.Engine,
                                                                                 settings: Settings) -> None:
    """A wider profile's build awaits approval: until then its field list stays with the staff reviewing it."""
    publish_edition(engine, settings, "hrb-dltb", fields=["BSM", "DLBM"])
    url = "/api/datasets/hrb-dltb/release-profile"
    assert world.client.put(url, json={**PROFILE, "fields": ["BSM", "DLBM", "DLMC"]}, headers=world.headers("hrbadmin")).status_code == 200
    assert world.post("/api/datasets/hrb-dltb/editions", "hrbadmin").json()["status"] == "pending"

    def names(who: str | None, path: str) -> set[str]:
        resp = world.get(path, who)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return {f["name"] for f in body["fields"]} if "fields" in body else set(body["properties"]) - {"geometry"}

    assert names(None, "/api/datasets/hrb-dltb-public") == {"BSM", "DLBM"}
    queryables = names(None, "/ogc/collections/hrb-dltb-public/queryables")
    assert "DLBM" in queryables and "DLMC" not in queryables
    assert names("hrb", "/api/datasets/hrb-dltb-public") == {"BSM", "DLBM", "DLMC"}  # the owner unit reviews the pending one


def test_a_build_never_approved_stays_out_of_public_reach(world: World, engine: sa.Engine, settings: Settings) -> None:
    """v1 approved, v2 built with a profile that kept too much and never approved, v3 approved: the public
    reads v3 only — not v2 by asking for it (features, download, versions, diff, tiles), nor v1's past."""
    me = system_principal("test")
    publish_edition(engine, settings, "hrb-dltb", fields=["BSM", "DLBM"])  # v1, published
    editions.set_profile(engine, me, "hrb-dltb", {**PROFILE, "fields": ["BSM", "DLBM", "DLMC"], "remove_classes": []})
    wrong = editions.build(engine, settings, me, "hrb-dltb")  # v2: pending, and never approved
    editions.set_profile(engine, me, "hrb-dltb", {**PROFILE, "fields": ["BSM", "DLBM"]})
    right = editions.build(engine, settings, me, "hrb-dltb")  # v3
    editions.approve(engine, me, right["id"])
    assert (wrong["version"], right["version"]) == (2, 3)
    assert editions.get_edition(engine, wrong["id"])["status"] == "pending"
    base = "/api/datasets/hrb-dltb-public"
    status, got = keys(world, None, "hrb-dltb-public")
    assert status == 200 and got and all(set(p) <= {"BSM", "DLBM"} for p in got.values())
    for v in ("1", "2"):
        assert keys(world, None, "hrb-dltb-public", version=v)[0] == 404, v
        assert world.get("/ogc/collections/hrb-dltb-public/items", None, params={"version": v}).status_code == 404, v
        assert world.get(f"{base}/download", None, params={"format": "geojson", "version": v}).status_code == 404, v
        assert world.get(f"{base}/versions/{v}", None).status_code == 404, v
        tiles = "/ogc/collections/hrb-dltb-public/tiles/WebMercatorQuad"
        assert world.get(f"{tiles}/tilejson.json", None, params={"version": v}).status_code == 404, v
        assert world.get(f"{tiles}/12/0/0", None, params={"version": v}).status_code == 404, v  # (204, empty, at v3)
    assert [v["version"] for v in world.get(f"{base}/versions", None).json()["versions"]] == [3]
    assert world.get("/ogc/collections/hrb-dltb-public/tiles/WebMercatorQuad/12/0/0", None).status_code == 204
    for a, b in ((2, 3), (1, 2), (3, 2)):
        assert world.get(f"{base}/versions/{a}/diff/{b}", None).status_code == 404, (a, b)
    # the owner unit's staff review every build, the unapproved one included
    assert keys(world, "hrb", "hrb-dltb-public", version="2")[0] == 200
    assert world.get(f"{base}/versions/2/diff/3", "hrb").status_code == 200


def test_a_grantee_reading_through_the_apis_takes_a_marked_copy(world: World, engine: sa.Engine, settings: Settings,
                                                                 tmp_path: Path) -> None:
    """A grant hands data over whichever way it is read: GDAL paging through OGC API, the features API, one
    item, a diff with geometry — each carries the recipient's fingerprint, the same one as a download."""
    _grant(world, "bank")
    def copies() -> list[tuple[str, int]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text("SELECT recipient, count(*) FROM fingerprinted_copies GROUP BY recipient"))]

    master = {f["properties"]["BSM"]: f["geometry"] for f in world.get("/api/datasets/hrb-dltb/features", "hrbadmin").json()["features"]}
    api = {f["properties"]["BSM"]: f["geometry"] for f in world.get("/api/datasets/hrb-dltb/features", "bank").json()["features"]}
    assert copies() == [(BANK, 1)]  # the bank's API reads of this version: one standing copy, recorded on the first
    download = {f["properties"]["BSM"]: f["geometry"]
                for f in world.get("/api/datasets/hrb-dltb/download", "bank", params={"format": "geojson"}).json()["features"]}
    assert copies() == [(BANK, 2)]  # a download is a copy of its own
    assert download.keys() == master.keys() and all(download[k] != master[k] for k in master)
    # the same vertex moves the same way on every route: a copy pieced together from them is one copy
    ogc: dict[str, dict] = {}
    page = world.get("/ogc/collections/hrb-dltb/items", "bank", params={"limit": 2}).json()
    while True:
        ogc |= {f["properties"]["BSM"]: f["geometry"] for f in page["features"]}
        nxt = [lk["href"] for lk in page["links"] if lk["rel"] == "next"]
        if not nxt:
            break
        parts = urlsplit(nxt[0])
        page = world.get(f"{parts.path}?{parts.query}", "bank").json()
    key = next(iter(master))
    one = world.get(f"/ogc/collections/hrb-dltb/items/{key}", "bank").json()["geometry"]
    assert api == download and ogc == download and one == download[key]
    diff = world.get("/api/datasets/hrb-dltb/versions/1/diff/2", "bank", params={"geometry": "true"}).json()
    assert diff["entries"] and all(e["geometry_after"] == download[e["key"]] for e in diff["entries"] if e["geometry_after"])
    # the earlier version's geometries in the diff are marked too (the owner's diff shows them as stored)
    owners = world.get("/api/datasets/hrb-dltb/versions/1/diff/2", "hrbadmin", params={"geometry": "true"}).json()["entries"]
    befores = [(e["geometry_before"], o["geometry_before"]) for e, o in zip(diff["entries"], owners, strict=True) if o["geometry_before"]]
    assert befores and all(mine != stored for mine, stored in befores)
    assert [e["key"] for e in diff["entries"]] == [o["key"] for o in owners]
    # the owner reads the master unmarked; the bank's further API reads recorded no more copies
    assert {f["properties"]["BSM"]: f["geometry"]
            for f in world.get("/api/datasets/hrb-dltb/features", "hrbadmin").json()["features"]} == master
    assert copies() == [(BANK, 2)]
    # GDAL's OAPIF driver pages through the whole dataset as the bank; the file it leaks names the bank
    from conftest import serve

    with serve(settings.data_dir, settings.resolved_database_url, settings.secret_key or "") as url:
        pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": "BEARER", "GDAL_HTTP_BEARER": world.tokens["bank"]})
        try:
            frame = pyogrio.read_dataframe(f"OAPIF:{url}/ogc", layer="hrb-dltb")
        finally:
            pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": None, "GDAL_HTTP_BEARER": None})
    assert len(frame) == len(master)
    pyogrio.write_dataframe(frame, tmp_path / "pulled.shp")
    assert fingerprints.trace_copy(engine, fingerprints.read_copy(tmp_path / "pulled.shp"))["recipient"] == BANK
