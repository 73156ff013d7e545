"""The JSON API over HTTP (FastAPI's TestClient), on both stores."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud.access import units, users
from landcloud.app import create_app
from landcloud.config import Settings

from builders import grid_parcels, write_geojson
from conftest import REFERENCE, table_counts
from world import PASSWORD, sign_in

AUTH: dict[str, str] = {}


@pytest.fixture
def client(engine: sa.Engine, settings: Settings, cheap_passwords: None) -> TestClient:
    """A client signed in as the data administrator (and submitter) of 道里区 (230102)."""
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    users.create_user(engine, settings, "daoliadmin", "230102", ["data_admin", "submitter"], PASSWORD)
    secret, _ = users.enrol_totp(engine, settings, "daoliadmin")
    client = TestClient(create_app(settings))
    AUTH["Authorization"] = f"Bearer {sign_in(client, 'daoliadmin', secret)}"
    return client


def upload(client: TestClient, path: Path, **form: str) -> dict:
    with path.open("rb") as fh:
        resp = client.post("/api/submissions", files={"file": (path.name, fh)}, data={"dataset": "dltb", **form}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    sid = resp.json()["id"]
    status = client.get(f"/api/submissions/{sid}", headers=AUTH)
    assert status.status_code == 200
    return status.json()


def test_healthz_names_the_store(client: TestClient, backend: str) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok" and resp.json()["store"] == backend


def test_submission_over_http_then_history(client: TestClient, tmp_path: Path) -> None:
    feats = grid_parcels(3)
    sub = upload(client, write_geojson(tmp_path / "v1.geojson", feats))
    assert sub["status"] == "accepted" and sub["version"] == 1
    assert sub["report"]["summary"]["feature_count"] == 9
    html = client.get(f"/api/submissions/{sub['id']}/report.html", headers=AUTH)
    assert html.status_code == 200 and "已接受" in html.text and "dltb" in html.text

    changed = copy.deepcopy(feats)
    changed[0]["properties"].update(DLBM="0702", DLMC="农村宅基地")
    del changed[8]
    sub2 = upload(client, write_geojson(tmp_path / "v2.geojson", changed))
    assert sub2["status"] == "accepted" and sub2["version"] == 2

    versions = client.get("/api/datasets/dltb/versions", headers=AUTH).json()["versions"]
    assert [(v["version"], v["added"], v["removed"], v["changed"]) for v in versions] == [(1, 9, 0, 0), (2, 0, 1, 1)]
    diff = client.get("/api/datasets/dltb/versions/1/diff/2", headers=AUTH).json()
    assert diff["counts"] == {"added": 0, "removed": 1, "changed": 1}
    changed_entry = next(e for e in diff["entries"] if e["kind"] == "changed")
    assert changed_entry["changed_fields"] == ["DLBM", "DLMC"] and changed_entry["after"]["DLBM"] == "0702"

    v1 = client.get("/api/datasets/dltb/features?version=1", headers=AUTH).json()
    assert len(v1["features"]) == 9 and v1["version"] == 1
    v2 = client.get("/api/datasets/dltb/features", headers=AUTH).json()
    assert len(v2["features"]) == 8
    assert {f["id"] for f in v1["features"]} - {f["id"] for f in v2["features"]} == {"230102000009"}

    rb = client.post("/api/datasets/dltb/rollback", json={"to": 1}, headers=AUTH)
    assert rb.status_code == 200 and rb.json()["version"] == 3
    assert len(client.get("/api/datasets/dltb/features", headers=AUTH).json()["features"]) == 9


def test_rejected_submission_reports_and_changes_nothing(client: TestClient, engine: sa.Engine, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    feats[0]["properties"]["DLBM"] = "0000"
    before = table_counts(engine)
    sub = upload(client, write_geojson(tmp_path / "bad.geojson", feats))
    assert sub["status"] == "rejected" and sub["version"] is None
    assert sub["report"]["summary"]["errors"] == 1
    assert sub["report"]["findings"][0]["rule"] == "code.dlbm_invalid"
    after = table_counts(engine)
    assert after["submissions"] == before["submissions"] + 1
    unchanged = ("features", "dataset_versions", "datasets")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}


def test_anonymous_sees_only_published_editions(client: TestClient, tmp_path: Path) -> None:
    upload(client, write_geojson(tmp_path / "v1.geojson", grid_parcels(2)))
    assert client.get("/api/datasets").json()["count"] == 0
    assert client.get("/api/datasets/dltb").status_code == 404
    assert client.get("/api/datasets/dltb/features").status_code == 404
    assert client.get("/api/datasets", headers=AUTH).json()["count"] == 1
    resp = client.patch("/api/datasets/dltb", json={"openness": "open", "security_level": "public"}, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["openness"] == "open"
    assert client.get("/api/datasets").json()["count"] == 0  # open and public, but a master: never to the public
    assert client.get("/api/datasets/dltb/features").status_code == 404
    profile = {"fields": ["BSM", "DLBM", "DLMC"], "tolerance_m": 50}
    assert client.put("/api/datasets/dltb/release-profile", json=profile, headers=AUTH).status_code == 200
    edition = client.post("/api/datasets/dltb/editions", headers=AUTH).json()
    assert edition["status"] == "pending" and client.get("/api/datasets").json()["count"] == 0
    assert client.post(f"/api/editions/{edition['id']}/approve", headers=AUTH).json()["status"] == "published"
    assert [d["id"] for d in client.get("/api/datasets").json()["datasets"]] == ["dltb-public"]
    feats = client.get("/api/datasets/dltb-public/features").json()["features"]
    assert len(feats) == 4 and all(set(f["properties"]) <= set(profile["fields"]) for f in feats)


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(client: TestClient, engine: sa.Engine, tmp_path: Path) -> None:
    upload(client, write_geojson(tmp_path / "v1.geojson", grid_parcels(2)))
    before = table_counts(engine)
    bad_value = client.patch("/api/datasets/dltb", json={"openness": "maybe", "title": "新名"}, headers=AUTH)
    assert bad_value.status_code == 400
    body = bad_value.json()
    assert body["error"] == "dataset.bad_value" and "openness" in body["message_en"] and body["message_zh"]
    assert client.get("/api/datasets/dltb", headers=AUTH).json()["title"] != "新名"  # all or nothing
    assert client.patch("/api/datasets/dltb", json={"colour": "red"}, headers=AUTH).json()["error"] == "dataset.bad_key"
    assert client.patch("/api/datasets/dltb", json={"openness": "open"}).status_code == 404  # the public cannot see it
    forged = client.patch("/api/datasets/dltb", json={"openness": "open"}, headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 401 and forged.json()["error"] == "auth.bad_token"
    assert client.get("/api/datasets/dltb/versions/7", headers=AUTH).status_code == 404
    assert client.get("/api/datasets/dltb/features?bbox=1,2,3", headers=AUTH).json()["error"] == "request.bad_bbox"
    assert client.get("/api/datasets/dltb/features?limit=-1", headers=AUTH).status_code == 422
    assert client.post("/api/datasets/dltb/rollback", json={"to": 9}, headers=AUTH).status_code == 404
    resp = client.post("/api/submissions", files={"file": ("x.geojson", b"{}")}, data={"dataset": "Bad Id!"}, headers=AUTH)
    assert resp.status_code == 400 and resp.json()["error"] == "dataset.bad_id"
    assert client.get("/api/submissions/nope", headers=AUTH).status_code == 404
    after = table_counts(engine)
    assert {k: v for k, v in after.items() if not k.startswith("audit")} == {k: v for k, v in before.items() if not k.startswith("audit")}


def test_unreadable_upload_is_rejected_with_a_report(client: TestClient, tmp_path: Path) -> None:
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    sub = upload(client, path)
    assert sub["status"] == "rejected"
    assert sub["report"]["findings"][0]["rule"].startswith("source.")


def test_openapi_lists_the_json_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/datasets", "/api/datasets/{dataset_id}", "/api/datasets/{dataset_id}/versions",
              "/api/datasets/{dataset_id}/versions/{a}/diff/{b}", "/api/submissions", "/api/submissions/{submission_id}", "/healthz"):
        assert p in paths, p
    assert json.dumps(paths)
