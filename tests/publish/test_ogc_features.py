"""OGC API – Features with real clients written by others (owslib, GDAL's OAPIF driver), both stores."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient
from owslib.ogcapi.features import Features
from pyproj import Transformer

from landcloud.access import units, users
from landcloud.access.principal import system_principal
from landcloud.app import create_app
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.publish import editions, editions_jobs

from builders import grid_parcels, publish_edition, write_geojson
from conftest import REFERENCE
from world import PASSWORD, sign_in

FEATS = grid_parcels(3)
KEYS = sorted(f["properties"]["BSM"] for f in FEATS)


@pytest.fixture
def loaded(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> dict[str, str]:
    """An open DLTB dataset with two versions and its published edition (two versions too), an internal one, and a submitter of its unit."""
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    for i, feats in enumerate([FEATS, _v2()]):
        path = write_geojson(tmp_path / f"v{i}.geojson", feats)
        assert run_submission(engine, settings, path, SubmitOptions(dataset_id="dltb", unit="230102")).accepted
        if i == 0:  # the public reads the edition: kept at a micrometre here, so the clients see the stored geometry
            publish_edition(engine, settings, "dltb", tolerance_m=1e-6, title="道里区地类图斑")
    me = system_principal()
    edition = editions_jobs.build_now(engine, settings, "dltb")  # what an entry point does after the second version
    assert edition is not None
    editions.approve(engine, me, edition["id"])
    catalog.update_metadata(engine, "dltb", {"openness": "open", "security_level": "public", "title": "道里区地类图斑"})
    path = write_geojson(tmp_path / "internal.geojson", grid_parcels(2, origin=(126.7, 45.8)))
    assert run_submission(engine, settings, path, SubmitOptions(dataset_id="internal", unit="230102")).accepted
    users.create_user(engine, settings, "editor", "230102", ["viewer", "submitter"], PASSWORD)
    users.create_user(engine, settings, "viewer", "230102", ["viewer"], PASSWORD)
    return {}


def _v2() -> list[dict]:
    feats = copy.deepcopy(FEATS)
    feats[0]["properties"].update(DLBM="0702", DLMC="农村宅基地")
    return feats


def test_owslib_reads_collections_items_paging_and_filters(loaded: dict, live_url: str) -> None:
    api = Features(f"{live_url}/ogc")
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in api.conformance()["conformsTo"]
    ids = [c["id"] for c in api.collections()["collections"]]
    assert "dltb-public" in ids and "internal" not in ids and "dltb" not in ids  # the public sees editions only
    assert api.collection("dltb-public")["title"] == "道里区地类图斑"
    page = api.collection_items("dltb-public", limit=4)
    assert page["numberReturned"] == 4 and page["numberMatched"] == 9
    seen = [f["id"] for f in page["features"]]
    offset = 4
    while any(link["rel"] == "next" for link in page["links"]):
        page = api.collection_items("dltb-public", limit=4, offset=offset)
        seen += [f["id"] for f in page["features"]]
        offset += 4
    assert sorted(seen) == KEYS
    cql = api.collection_items("dltb-public", filter="DLBM = '0101' OR DLBM = '0702'", **{"filter-lang": "cql2-text"})
    assert sorted(f["properties"]["DLBM"] for f in cql["features"]) == ["0702", "0702"]  # v2 turned the 0101 parcel into 0702
    assert cql["numberMatched"] == 2
    queryables = api.collection_queryables("dltb-public")
    assert queryables["properties"]["DLBM"]["type"] == "string"
    box = api.collection_items("dltb-public", bbox=[126.6, 45.74, 126.6019, 45.7419])
    assert [f["id"] for f in box["features"]] == [KEYS[0]]


def test_gdal_oapif_reads_exactly_the_stored_features(loaded: dict, live_url: str) -> None:
    frame = pyogrio.read_dataframe(f"OAPIF:{live_url}/ogc", layer="dltb-public")
    assert len(frame) == 9
    assert sorted(frame["BSM"]) == KEYS
    by_key = {f["properties"]["BSM"]: shapely.geometry.shape(f["geometry"]) for f in _v2()}
    for _, row in frame.iterrows():
        assert shapely.hausdorff_distance(row.geometry, by_key[row["BSM"]]) < 1e-9
    assert set(frame.loc[frame["BSM"] == KEYS[0], "DLBM"]) == {"0702"}  # the current version


@pytest.fixture
def client(loaded: dict, settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


def test_crs_and_bbox_crs_follow_the_axis_order(client: TestClient) -> None:
    plain = client.get("/ogc/collections/dltb-public/items/" + KEYS[0]).json()
    lon, lat = plain["geometry"]["coordinates"][0][0]
    resp = client.get(f"/ogc/collections/dltb-public/items/{KEYS[0]}", params={"crs": "http://www.opengis.net/def/crs/EPSG/0/4490"})
    assert resp.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4490>"
    assert resp.json()["geometry"]["coordinates"][0][0] == pytest.approx([lat, lon])
    gk = client.get(f"/ogc/collections/dltb-public/items/{KEYS[0]}", params={"crs": "http://www.opengis.net/def/crs/EPSG/0/4530"}).json()
    east, north = Transformer.from_crs(4490, 4530, always_xy=True).transform(lon, lat)
    assert gk["geometry"]["coordinates"][0][0] == pytest.approx([north, east], abs=1e-3)  # EPSG:4530 is northing, easting
    lat_lon_box = "45.74,126.6,45.7419,126.6019"
    boxed = client.get("/ogc/collections/dltb-public/items", params={"bbox": lat_lon_box, "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"})
    assert [f["id"] for f in boxed.json()["features"]] == [KEYS[0]]
    bad = client.get("/ogc/collections/dltb-public/items", params={"crs": "EPSG:2000"})
    assert bad.status_code == 400 and bad.json()["code"] == "crs.unsupported"


@pytest.mark.parametrize("who", [None, "viewer"])
def test_pages_read_as_stored_text_hold_the_same_values(client: TestClient, who: str | None) -> None:
    """A whole page in the storage CRS splices the stored properties (and, on PostGIS, the database's
    GeoJSON): the same values as the decoded path (a property selection naming every field) and as
    each feature read alone; the values in EPSG:4490 are the same points, latitude first."""
    headers = {"Authorization": f"Bearer {sign_in(client, who)}"} if who else {}
    dataset = "dltb" if who else "dltb-public"
    url = f"/ogc/collections/{dataset}/items"
    page = client.get(url, params={"limit": 100}, headers=headers).json()["features"]
    assert sorted(f["id"] for f in page) == KEYS
    names = ",".join(sorted({k for f in page for k in f["properties"]}))
    decoded = client.get(url, params={"limit": 100, "properties": names}, headers=headers).json()["features"]
    assert decoded == page
    for feat in page:
        alone = client.get(f"{url}/{feat['id']}", headers=headers).json()
        assert {k: alone[k] for k in ("id", "properties", "geometry")} == {k: feat[k] for k in ("id", "properties", "geometry")}
    lat_lon = client.get(url, params={"limit": 100, "crs": "http://www.opengis.net/def/crs/EPSG/0/4490"}, headers=headers).json()["features"]
    for a, b in zip(page, lat_lon):
        assert a["properties"] == b["properties"]
        assert np.array(b["geometry"]["coordinates"][0])[:, ::-1].tolist() == a["geometry"]["coordinates"][0]


def test_only_a_read_the_access_leaves_whole_comes_as_text(loaded: dict, engine: sa.Engine) -> None:
    import dataclasses
    import json

    from landcloud.access import gate

    viewer = users.find_by_username(engine, "viewer")
    principal = gate.Principal("user", user_id=viewer["id"], username="viewer", unit="230102", unit_kind="administrative",
                               roles=frozenset(viewer["roles"]))
    ds, access = gate.dataset_for_read(engine, principal, "dltb")
    assert access.unrestricted
    whole = list(gate.read_features(engine, principal, ds, access, as_text=True))
    assert whole and all(f.props_text is not None and f.props == {} for f in whole)
    masked = dataclasses.replace(access, sensitive=frozenset({"DLMC"}))  # a masked field: shaped, never spliced
    assert not masked.unrestricted
    shaped = list(gate.read_features(engine, principal, ds, masked, as_text=True))
    assert [f.fkey for f in shaped] == [f.fkey for f in whole]
    for s, w in zip(shaped, whole):
        clear = json.loads(w.props_text)
        assert s.props_text is None and s.props["DLMC"] != clear["DLMC"] and s.props["DLBM"] == clear["DLBM"]


def test_sorting_selection_equality_and_history(client: TestClient) -> None:
    by_area = client.get("/ogc/collections/dltb-public/items", params={"sortby": "-TBMJ,BSM", "limit": 9}).json()["features"]
    areas = [f["properties"]["TBMJ"] for f in by_area]
    assert areas == sorted(areas, reverse=True)
    chosen = client.get("/ogc/collections/dltb-public/items", params={"properties": "BSM,DLBM", "limit": 1}).json()["features"][0]
    assert set(chosen["properties"]) == {"BSM", "DLBM"}
    eq = client.get("/ogc/collections/dltb-public/items", params={"DLBM": "0103"}).json()
    assert [f["properties"]["DLBM"] for f in eq["features"]] == ["0103"] and eq["numberMatched"] == 1
    assert client.get("/ogc/collections/dltb-public/items", params={"NOPE": "1"}).status_code == 400
    # history: the edition's earlier version is the owner unit's to read; the public reads the approved one only
    staff = {"Authorization": f"Bearer {sign_in(client, 'viewer')}"}
    v1 = client.get(f"/ogc/collections/dltb-public/items/{KEYS[0]}", params={"version": 1}, headers=staff).json()
    assert v1["properties"]["DLBM"] == "0101"
    assert client.get(f"/ogc/collections/dltb-public/items/{KEYS[0]}", params={"version": 1}).status_code == 404
    then = client.get(f"/ogc/collections/dltb-public/items/{KEYS[0]}", params={"datetime": "2000-01-01T00:00:00Z"}, headers=staff)
    assert then.status_code == 404
    now = client.get(f"/ogc/collections/dltb-public/items/{KEYS[0]}", params={"datetime": "2999-01-01T00:00:00Z"}).json()
    assert now["properties"]["DLBM"] == "0702"
    assert client.get("/ogc/collections/dltb-public/items", params={"sortby": "geometry"}).status_code == 400


def test_openapi_document_and_cql2_json_over_http(client: TestClient) -> None:
    doc = client.get("/ogc/api")
    assert doc.status_code == 200 and doc.json()["openapi"].startswith("3.")
    assert "/ogc/collections/{collection_id}/items" in doc.json()["paths"]
    import json

    cql_json = {"op": "and", "args": [{"op": "=", "args": [{"property": "DLBM"}, "0103"]},
                                      {"op": "s_intersects", "args": [{"property": "geometry"},
                                                                      {"bbox": [126.59, 45.73, 126.61, 45.76]}]}]}
    resp = client.get("/ogc/collections/dltb-public/items", params={"filter": json.dumps(cql_json), "filter-lang": "cql2-json"})
    assert resp.status_code == 200, resp.text
    assert [f["properties"]["DLBM"] for f in resp.json()["features"]] == ["0103"]
    bad = client.get("/ogc/collections/dltb-public/items", params={"filter": "DLBM = ", "filter-lang": "cql2-text"})
    assert bad.status_code == 400 and bad.json()["code"] == "filter.invalid"


def test_html_pages(client: TestClient) -> None:
    for path in ("/ogc", "/ogc/collections", "/ogc/collections/dltb-public", "/ogc/collections/dltb-public/items", f"/ogc/collections/dltb-public/items/{KEYS[0]}"):
        resp = client.get(path, headers={"Accept": "text/html"})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html"), path
    assert "道里区地类图斑" in client.get("/ogc/collections/dltb-public/items?f=html").text


def test_transactions_make_new_versions_through_the_rules(client: TestClient, engine: sa.Engine) -> None:
    token = {"Authorization": f"Bearer {sign_in(client, 'editor')}"}
    viewer = {"Authorization": f"Bearer {sign_in(client, 'viewer')}"}
    new = grid_parcels(4)[12]  # a parcel next to the 3×3 block: no overlap
    new["properties"]["BSM"] = "230102NEW001"
    assert client.post("/ogc/collections/dltb/items", json=new).status_code == 404  # the public does not know the master
    assert client.post("/ogc/collections/dltb/items", json=new, headers=viewer).status_code == 403
    created = client.post("/ogc/collections/dltb/items", json=new, headers=token)
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith("/ogc/collections/dltb/items/230102NEW001")
    assert created.headers["x-landcloud-version"] == "3"
    assert client.get("/ogc/collections/dltb/items/230102NEW001", headers=viewer).json()["properties"]["DLBM"] == new["properties"]["DLBM"]
    patched = client.patch("/ogc/collections/dltb/items/230102NEW001", json={"properties": {"DLBM": "0301", "DLMC": "乔木林地"}}, headers=token)
    assert patched.status_code == 200 and patched.json()["version"] == 4
    got = client.get("/ogc/collections/dltb/items/230102NEW001", headers=viewer).json()
    assert got["properties"]["DLBM"] == "0301" and got["properties"]["TBMJ"] == new["properties"]["TBMJ"]
    bad = client.patch("/ogc/collections/dltb/items/230102NEW001", json={"properties": {"DLBM": "9999"}}, headers=token)
    assert bad.status_code == 422 and bad.json()["details"]["findings"][0]["rule"] == "code.dlbm_invalid"
    overlapping = copy.deepcopy(new)
    overlapping["properties"]["BSM"] = "230102NEW002"
    assert client.post("/ogc/collections/dltb/items", json=overlapping, headers=token).status_code == 422
    assert catalog.require_dataset(engine, "dltb").current_version == 4  # rejected edits change nothing
    deleted = client.delete("/ogc/collections/dltb/items/230102NEW001", headers=token)
    assert deleted.status_code == 204 and deleted.headers["x-landcloud-version"] == "5"
    assert client.get("/ogc/collections/dltb/items/230102NEW001", headers=viewer).status_code == 404
    assert client.get("/ogc/collections/dltb/items/230102NEW001", params={"version": 4}, headers=viewer).status_code == 200
    versions = client.get("/api/datasets/dltb/versions", headers=viewer).json()["versions"]
    assert [v["feature_count"] for v in versions] == [9, 9, 10, 10, 9]


def test_projected_edit_with_content_crs(client: TestClient) -> None:
    token = {"Authorization": f"Bearer {sign_in(client, 'editor')}"}
    viewer = {"Authorization": f"Bearer {sign_in(client, 'viewer')}"}
    new = grid_parcels(4)[13]
    new["properties"]["BSM"] = "230102GK0001"
    tr = Transformer.from_crs(4490, 4530, always_xy=True)
    ring = np.array(new["geometry"]["coordinates"][0])
    east, north = tr.transform(ring[:, 0], ring[:, 1])
    projected = {**new, "geometry": {"type": "Polygon", "coordinates": [np.column_stack([north, east]).tolist()]}}
    resp = client.post("/ogc/collections/dltb/items", json=projected,
                       headers={**token, "Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/4530>"})
    assert resp.status_code == 201, resp.text
    back = client.get("/ogc/collections/dltb/items/230102GK0001", headers=viewer).json()["geometry"]
    assert shapely.hausdorff_distance(shapely.geometry.shape(back), shapely.geometry.shape(new["geometry"])) < 1e-9
