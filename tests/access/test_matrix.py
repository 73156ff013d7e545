"""The access matrix: a province, two prefectures, two counties and a bank, through every route.

Each caller reads exactly the rows and fields it should; grants widen and expire on time;
every GET route of the application is requested by every caller and must not leak a row or a
clear-text sensitive value it should not see.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from landcloud import clock
from landcloud.app import api_routes, create_app
from landcloud.config import Settings
from landcloud.deps import get_principal, get_reads
from landcloud.geo.tiles import WEB_MERCATOR_QUAD

from world import HRB_ROWS, MINE_ROWS, PASSWORD, QQHR_ROWS, World, build, sign_in

ALL_HRB = {r[0] for r in HRB_ROWS}
# hrb-dltb rows each caller sees (v2), and whether the 证件号 is in clear
EXPECTED: dict[str | None, tuple[set[str] | None, bool]] = {
    None: (None, False),  # anonymous: the dataset does not exist for it
    "prov": (ALL_HRB, False),
    "hrb": (ALL_HRB, False),
    "hrbadmin": (ALL_HRB, True),
    "qqhr": (set(), False),  # listed in the catalogue, no data
    "daoli": ({"HRB-A1", "HRB-A2"}, False),
    "daoliadmin": ({"HRB-A1", "HRB-A2"}, False),
    "nangang": ({"HRB-B1", "HRB-B2"}, False),
    "bank": (set(), False),
    "sec": (None, False),
    "sys": (None, False),
    "aud": (None, False),
}


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    client = TestClient(create_app(settings))
    return build(engine, settings, client, tmp_path)


def features(world: World, who: str | None, dataset: str = "hrb-dltb", **params: str) -> tuple[int, dict[str, dict]]:
    resp = world.get(f"/api/datasets/{dataset}/features", who, params=params)
    if resp.status_code != 200:
        return resp.status_code, {}
    return 200, {f["properties"]["BSM"]: f["properties"] for f in resp.json()["features"]}


@pytest.mark.parametrize("who", list(EXPECTED))
def test_each_caller_reads_exactly_its_rows_and_fields(world: World, who: str | None) -> None:
    rows, clear = EXPECTED[who]
    status, got = features(world, who)
    if rows is None:
        assert status == 404
        assert world.get("/api/datasets/hrb-dltb", who).status_code == 404
        return
    if not rows:
        assert status == 403
        body = world.get("/api/datasets/hrb-dltb/features", who).json()
        assert body["error"] == "access.application_required"
        meta = world.get("/api/datasets/hrb-dltb", who).json()
        assert meta["access"]["rows"] == "none" and meta["extent"] is None
        return
    assert status == 200 and set(got) == rows
    for bsm, props in got.items():
        original = next(r[2] for r in HRB_ROWS if r[0] == bsm)
        assert props["QLRZJH"] == (original if clear else original[:4] + "*" * 10 + original[-4:])
    listed = {d["id"] for d in world.get("/api/datasets", who).json()["datasets"]}
    assert "hrb-dltb" in listed and "open-dltb" in listed
    diff = world.get("/api/datasets/hrb-dltb/versions/1/diff/2", who).json()
    assert {e["key"] for e in diff["entries"]} == {"HRB-A1", "HRB-B1"} & rows
    assert sum(diff["counts"].values()) == len({"HRB-A1", "HRB-B1"} & rows)


def test_public_and_other_datasets(world: World) -> None:
    # the public sees the edition, never the master, even an open and public one
    assert features(world, None, "open-dltb")[0] == 404
    assert set(features(world, None, "open-dltb-public")[1]) == {"OPEN-1"}
    assert "QLRZJH" not in features(world, None, "open-dltb-public")[1]["OPEN-1"]  # not in the edition's whitelist
    assert {d["id"] for d in world.get("/api/datasets", None).json()["datasets"]} == {"open-dltb-public"}
    # signed-in users keep their rights on the master
    assert features(world, "qqhr", "open-dltb")[1]["OPEN-1"]["QLRZJH"] == "230102199001018888"  # not marked sensitive
    assert set(features(world, "qqhr", "qqhr-dltb")[1]) == {r[0] for r in QQHR_ROWS}
    assert features(world, "hrb", "qqhr-dltb")[0] == 403
    # sensitive data: the owner unit only, not even its province
    assert set(features(world, "daoli", "daoli-mine")[1]) == {r[0] for r in MINE_ROWS}
    for who in ("hrb", "prov", "nangang"):
        assert features(world, who, "daoli-mine")[0] == 403
    # the separated administrators read no data at all, even what a county may
    for who in ("sec", "sys", "aud"):
        assert features(world, who, "qqhr-dltb")[0] == 404
        assert features(world, who, "open-dltb")[0] == 404  # what the public sees, they see: the edition, not the master
        assert features(world, who, "open-dltb-public")[0] == 200


def test_bank_applies_owner_approves_grant_applies_and_expires(world: World) -> None:
    app = world.post("/api/applications", "bank", json={
        "dataset_id": "hrb-dltb", "purpose": "抵押登记核查 mortgage checks", "fields": ["BSM", "DLBM", "QLRZJH"],
        "region": "230102", "period_end": (clock.now() + timedelta(days=30)).isoformat(),
    })
    assert app.status_code == 201, app.text
    app_id = app.json()["id"]
    assert features(world, "bank")[0] == 403  # pending is not approved
    # only the owner unit's data administrator decides
    assert world.post(f"/api/applications/{app_id}/decision", "daoliadmin", json={"approve": True}).status_code == 403
    assert world.post(f"/api/applications/{app_id}/decision", "hrb", json={"approve": True}).status_code == 403
    inbox = world.get("/api/applications", "hrbadmin").json()["inbox"]
    assert [a["id"] for a in inbox] == [app_id]
    decided = world.post(f"/api/applications/{app_id}/decision", "hrbadmin", json={"approve": True, "comment": "同意"})
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
    status, got = features(world, "bank")
    assert status == 200 and set(got) == {"HRB-A1", "HRB-A2"}
    assert got["HRB-A1"] == {"BSM": "HRB-A1", "DLBM": "0702", "QLRZJH": "230102199001011111"}  # granted fields, in clear
    grants = world.get("/api/grants", "bank").json()["held"]
    assert len(grants) == 1 and grants[0]["active"] and grants[0]["region"] == "230102"
    assert world.get("/api/grants", "hrbadmin").json()["given"][0]["id"] == grants[0]["id"]
    # time passes: the grant expires on time (the bank signs in again: its bearer token expired too)
    real = clock.now()
    try:
        clock.set_clock(lambda: real + timedelta(days=30, minutes=1))
        world.tokens["bank"] = sign_in(world.client, "bank")
        assert features(world, "bank")[0] == 403
        clock.set_clock(lambda: real + timedelta(days=29, hours=23))
        world.tokens["bank"] = sign_in(world.client, "bank")
        assert features(world, "bank")[0] == 200  # the last minute of the period still counts
    finally:
        clock.set_clock(None)
    world.tokens["bank"] = sign_in(world.client, "bank")
    assert features(world, "bank")[0] == 200
    # and a revoked grant stops at once
    revoked = world.post(f"/api/grants/{grants[0]['id']}/revoke", "hrbadmin")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert features(world, "bank")[0] == 403


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """(x, y) of the WebMercatorQuad tile holding the point."""
    n = 2**z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int((lon + 180) / 360 * n), int(y)


def test_read_routes_follow_a_revoked_grant_or_token_on_the_next_request(world: World) -> None:
    """The OGC items, tiles and "what is here" authenticate inside the route, on one connection with the
    gate's reads (deps.Reads): nothing of the decision is kept, so a revocation counts at once."""
    app_id = world.post("/api/applications", "bank", json={"dataset_id": "hrb-dltb", "purpose": "抵押登记核查 mortgage checks",
                                                            "fields": ["BSM", "DLBM"]}).json()["id"]
    assert world.post(f"/api/applications/{app_id}/decision", "hrbadmin", json={"approve": True}).json()["status"] == "approved"
    made = world.post("/api/tokens", "bank", json={"name": "desktop GIS", "scopes": ["read"]})
    assert made.status_code == 201, made.text
    api = {"Authorization": f"Bearer {made.json()['token']}"}
    x, y = _tile_of(126.601, 45.741, 14)
    items = "/ogc/collections/hrb-dltb/items?limit=100"
    tile = f"/ogc/collections/hrb-dltb/tiles/WebMercatorQuad/14/{y}/{x}"
    here = "/api/here?lon=126.601&lat=45.741"

    def here_layers() -> list[str]:
        resp = world.client.get(here, headers=api)
        assert resp.status_code == 200, resp.text
        return [layer["dataset"] for layer in resp.json()["layers"]]

    page = world.client.get(items, headers=api)
    assert page.status_code == 200, page.text
    assert {f["properties"]["BSM"] for f in page.json()["features"]} == ALL_HRB
    assert all(set(f["properties"]) == {"BSM", "DLBM"} for f in page.json()["features"])  # the granted fields only
    got = world.client.get(tile, headers=api)
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/vnd.mapbox-vector-tile")
    assert "hrb-dltb" in here_layers()
    grant = world.get("/api/grants", "bank").json()["held"][0]["id"]
    assert world.post(f"/api/grants/{grant}/revoke", "hrbadmin").json()["active"] is False
    refused = world.client.get(items, headers=api)
    assert refused.status_code == 403 and refused.json()["error"] == "access.application_required"
    assert world.client.get(tile, headers=api).status_code == 403
    assert "hrb-dltb" not in here_layers()
    assert world.client.delete(f"/api/tokens/{made.json()['id']}", headers=world.headers("bank")).status_code == 204
    for path in (items, tile, here):
        gone = world.client.get(path, headers=api)
        assert gone.status_code == 401 and gone.json()["error"] == "auth.bad_token", path


def test_an_audited_read_writes_its_entry_once_its_connection_is_back(
    world: World, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items, tiles and "what is here" read on the request's one connection (deps.Reads); the audit entry of the read
    is written after that connection is back in the pool. Written while it was held, every audited request needed a
    second connection: more concurrent audited reads than the pool holds would each wait for one none gives back."""
    from landcloud.access import audit

    app_id = world.post("/api/applications", "bank", json={"dataset_id": "hrb-dltb", "purpose": "抵押登记核查 mortgage checks",
                                                            "fields": ["BSM", "DLBM"]}).json()["id"]
    assert world.post(f"/api/applications/{app_id}/decision", "hrbadmin", json={"approve": True}).json()["status"] == "approved"
    held: list[tuple[str, int]] = []
    record = audit.record

    def spy(engine: sa.Engine, principal: object, action: str, **kw: object) -> int:
        held.append((action, engine.pool.checkedout()))
        return record(engine, principal, action, **kw)

    monkeypatch.setattr(audit, "record", spy)
    page = world.get("/ogc/collections/hrb-dltb/items", "bank", params={"limit": 100})
    assert page.status_code == 200 and {f["properties"]["BSM"] for f in page.json()["features"]} == ALL_HRB
    here = world.get("/api/here", "bank", params={"lon": 126.601, "lat": 45.741})
    assert here.status_code == 200 and "hrb-dltb" in [layer["dataset"] for layer in here.json()["layers"]]
    tx, ty = WEB_MERCATOR_QUAD.tile_for_lonlat(126.601, 45.741, 14)
    tile = world.get(f"/ogc/collections/hrb-dltb/tiles/WebMercatorQuad/14/{ty}/{tx}", "bank")
    assert tile.status_code == 200 and tile.content
    reads = [(action, n) for action, n in held if action in ("data.read", "data.here", "data.tiles")]
    assert [action for action, _ in reads] == ["data.read", "data.here", "data.tiles"], held  # each read audited, once
    assert [n for _, n in reads] == [0, 0, 0], held  # ... with no connection of the request still checked out
    with engine.connect() as conn:
        last = conn.execute(sa.select(audit.audit_log.c.action, audit.audit_log.c.detail)
                            .order_by(audit.audit_log.c.seq.desc()).limit(3)).all()
    assert [row.action for row in last] == ["data.tiles", "data.here", "data.read"]
    assert json.loads(last[2].detail)["count"] == len(ALL_HRB)
    assert json.loads(last[0].detail)["count"] >= 1


def test_sensitive_data_needs_the_level_above(world: World) -> None:
    app = world.post("/api/applications", "hrb", json={"dataset_id": "daoli-mine", "purpose": "矿产监管 supervision"}).json()
    first = world.post(f"/api/applications/{app['id']}/decision", "daoliadmin", json={"approve": True})
    assert first.json()["status"] == "pending" and first.json()["stage"] == "parent"
    assert features(world, "hrb", "daoli-mine")[0] == 403
    assert world.post(f"/api/applications/{app['id']}/decision", "daoliadmin", json={"approve": True}).status_code == 403
    second = world.post(f"/api/applications/{app['id']}/decision", "hrbadmin", json={"approve": True})
    assert second.json()["status"] == "approved"
    assert set(features(world, "hrb", "daoli-mine")[1]) == {"MINE-1"}


def test_applications_refused_when_not_needed_or_not_allowed(world: World, engine: sa.Engine) -> None:
    from landcloud.catalog import datasets as catalog

    assert world.post("/api/applications", "hrb", json={"dataset_id": "hrb-dltb", "purpose": "x"}).json()["error"] == "application.own_data"
    catalog.update_metadata(engine, "qqhr-dltb", {"sharing_class": "unconditional"})
    refused = world.post("/api/applications", "bank", json={"dataset_id": "qqhr-dltb", "purpose": "x"})
    assert refused.status_code == 409 and refused.json()["error"] == "application.not_needed"
    assert set(features(world, "bank", "qqhr-dltb")[1]) == {"QQHR-1"}  # unconditional: no application needed
    catalog.update_metadata(engine, "qqhr-dltb", {"sharing_class": "not_shared"})
    assert world.post("/api/applications", "bank", json={"dataset_id": "qqhr-dltb", "purpose": "x"}).status_code == 404
    assert world.post("/api/applications", None, json={"dataset_id": "hrb-dltb", "purpose": "x"}).status_code == 401
    bad = world.post("/api/applications", "bank", json={"dataset_id": "hrb-dltb", "purpose": "x", "fields": ["NOPE"]})
    assert bad.status_code == 400 and bad.json()["error"] == "application.unknown_fields"


def test_writes_are_for_the_right_roles_only(world: World) -> None:
    assert world.patch("/api/datasets/hrb-dltb", "hrb", json={"title": "x"}).status_code == 403
    assert world.patch("/api/datasets/hrb-dltb", "daoliadmin", json={"title": "x"}).status_code == 403
    assert world.patch("/api/datasets/hrb-dltb", "sec", json={"title": "x"}).status_code == 404
    ok = world.patch("/api/datasets/hrb-dltb", "hrbadmin", json={"title": "哈尔滨地类图斑"})
    assert ok.status_code == 200 and ok.json()["title"] == "哈尔滨地类图斑"
    assert world.post("/api/datasets/hrb-dltb/rollback", "hrb", json={"to": 1}).status_code == 403
    assert world.get("/api/users", "hrbadmin").status_code == 403
    assert world.get("/api/users", "sec").status_code == 200
    assert world.get("/api/system/status", "sec").status_code == 403
    status = world.get("/api/system/status", "sys").json()
    assert status["datasets"] == 5  # four masters and one edition
    assert status["users"] == len(world.get("/api/users", "sec").json()["users"])
    assert status["units"] == len(world.get("/api/units", "sec").json()["units"])
    assert world.get("/api/audit", "sys").status_code == 403
    assert world.get("/api/audit", "aud").status_code == 200


def test_reads_of_non_public_data_are_audited(world: World) -> None:
    features(world, "daoli")
    features(world, None, "open-dltb-public")
    entries = world.get("/api/audit", "aud", params={"action": "data.read", "limit": 1000}).json()["entries"]
    mine = [e for e in entries if e["actor"] == "daoli" and e["dataset_id"] == "hrb-dltb"]
    assert mine and mine[0]["detail"]["count"] == 2 and mine[0]["detail"]["rows"] == "restricted"
    assert mine[0]["actor_unit"] == "230102" and mine[0]["version"] == 2
    assert "QLRZJH" in mine[0]["detail"]["masked"]
    assert not [e for e in entries if e["dataset_id"] == "open-dltb-public"]  # public reads are not logged as sensitive reads
    signins = world.get("/api/audit", "aud", params={"action": "auth.signin", "limit": 1000}).json()["entries"]
    assert {"daoli", "bank", "aud"} <= {e["actor"] for e in signins}


# -- every route ---------------------------------------------------------------------------------
# routes that serve no data: the API description, the OGC landing and conformance pages, the TMS definitions
OPEN_ROUTES = {"/healthz", "/api/roles", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/ogc", "/ogc/conformance",
               "/ogc/api", "/ogc/tileMatrixSets", "/ogc/tileMatrixSets/{tms_id}", "/api/catalog/themes", "/api/catalog/terms/{key}"}
SIGN_IN_ROUTES = {"/api/auth/token", "/api/auth/session", "/api/auth/logout", "/api/auth/oidc/login", "/api/auth/oidc/callback"}


def _depends_on_principal(route: APIRoute) -> bool:
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.call in (get_principal, get_reads):  # get_reads: the principal of a read route, authenticated in it
            return True
        stack.extend(dep.dependencies)
    return False


def test_every_route_asks_who_is_calling(settings: Settings, engine: sa.Engine) -> None:
    app = create_app(settings)
    routes = api_routes(app)
    documented = {(path, m.upper()) for path, ops in app.openapi()["paths"].items() for m in ops}
    walked = {(r.path, m) for r in routes for m in r.methods if m != "HEAD"}
    assert documented <= walked and len(routes) >= 25  # the walk found every route
    unguarded = [r.path for r in routes if r.path not in OPEN_ROUTES | SIGN_IN_ROUTES and not _depends_on_principal(r)]
    assert unguarded == []


# the world's parcels are 0.002° squares on a grid from (126.60, 45.74); these are their centres
POINT_QUERIES = {"/api/here": [{"lon": 126.601 + 0.002 * i, "lat": 45.741 + 0.002 * j} for i in range(2) for j in range(3)]}


def _fill(path: str) -> str:
    values = {"dataset_id": "hrb-dltb", "version": "2", "a": "1", "b": "2"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


@pytest.mark.parametrize("who", list(EXPECTED))
def test_no_get_route_leaks_rows_or_clear_values(world: World, who: str | None) -> None:
    rows, clear = EXPECTED[who]
    visible = rows or set()
    forbidden_rows = ALL_HRB - visible
    forbidden_text = {r[2] for r in HRB_ROWS} if not clear else {r[2] for r in HRB_ROWS if r[0] not in visible}
    forbidden_text |= {r[2] for r in MINE_ROWS} if who not in ("daoli", "daoliadmin") else set()
    checked = 0
    for route in api_routes(world.client.app):  # type: ignore[arg-type]
        if "GET" not in route.methods or route.path in OPEN_ROUTES:
            continue
        for dataset in ("hrb-dltb", "daoli-mine"):
            path = _fill(route.path).replace("hrb-dltb", dataset)
            resp = world.get(path, who)
            text = resp.text
            leaked = [m for m in forbidden_rows | forbidden_text if m in text]
            assert not leaked, (path, who, leaked)
            checked += 1
        for params in POINT_QUERIES.get(route.path, []):  # routes that answer for a point, at every parcel
            text = world.get(route.path, who, params=params).text
            leaked = [m for m in forbidden_rows | forbidden_text if m in text]
            assert not leaked, (route.path, params, who, leaked)
    assert checked >= 20


# -- the public sees editions, never the master --------------------------------------------------
MASTER_ONLY = "230102199001018888"  # open-dltb's 证件号: in the open, public master, left out of its edition


def _public_paths(path: str, dataset: str) -> list[str]:
    """The route asked for `dataset` every way that could return features (tile: the one holding the parcels)."""
    from landcloud.geo.tiles import get_tms

    tms = get_tms("WebMercatorQuad")
    col, row = tms.tile_for_lonlat(126.601, 45.741, 14)
    values = {"dataset_id": dataset, "collection_id": dataset, "version": "1", "a": "1", "b": "1", "tms_id": "WebMercatorQuad",
              "z": "14", "x": str(col), "y": str(row), "feature_id": "OPEN-1", "record_id": dataset, "edition_id": "1"}
    filled = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)
    if path.endswith("/download"):
        return [f"{filled}?format={f}" for f in ("geojson", "csv", "gpkg", "kml")]
    if path.endswith("/items") or path.endswith("/features"):
        return [filled, f"{filled}?f=json"]
    return [filled]


def test_no_public_route_reaches_a_master(world: World) -> None:
    """Every GET route, asked anonymously for each master (the open, public one included), returns none of
    its features; asked for the published edition, the same routes do serve it (the check is not vacuous)."""
    masters = ("open-dltb", "hrb-dltb", "daoli-mine", "qqhr-dltb")
    master_text = {MASTER_ONLY} | {r[0] for r in HRB_ROWS + MINE_ROWS + QQHR_ROWS} | {r[2] for r in HRB_ROWS + MINE_ROWS + QQHR_ROWS}
    served_edition = set()
    for route in api_routes(world.client.app):  # type: ignore[arg-type]
        if "GET" not in route.methods or route.path in OPEN_ROUTES:
            continue
        for dataset in (*masters, "open-dltb-public"):
            for path in _public_paths(route.path, dataset):
                resp = world.get(path, None)
                text = resp.content.decode("utf-8", "replace")
                leaked = [m for m in master_text if m in text]
                assert not leaked, (path, leaked)
                if dataset != "open-dltb-public" and "{" in route.path:
                    assert "OPEN-1" not in text, path  # not even the master's rows the edition also has
                elif resp.status_code == 200 and "OPEN-1" in text:
                    served_edition.add(route.path)
    # the edition's features reach the public through the JSON API, OGC API Features, downloads and tiles
    assert {"/api/datasets/{dataset_id}/features", "/ogc/collections/{collection_id}/items", "/api/datasets/{dataset_id}/download",
            "/ogc/collections/{dataset_id}/tiles/{tms_id}/{z}/{y}/{x}"} <= served_edition, served_edition


def test_the_security_administrator_resets_a_second_factor_once_shown(world: World) -> None:
    """A lost phone: the security administrator enrols a new secret; the old codes stop working at once."""
    old = world.totp["daoliadmin"]
    assert world.post("/api/users/daoliadmin/totp", "hrbadmin").status_code == 403
    assert world.post("/api/users/daoliadmin/totp", None).status_code == 401
    own = world.post("/api/users/sec/totp", "sec")
    assert own.status_code == 403 and "自己" in own.json()["message_zh"]
    assert world.post("/api/users/nobody-here/totp", "sec").status_code == 404
    reset = world.post("/api/users/DaoliAdmin/totp", "sec")
    assert reset.status_code == 200 and reset.headers["cache-control"] == "no-store"
    body = reset.json()
    assert body["username"] == "daoliadmin" and body["secret"] != old
    assert body["otpauth_uri"].startswith("otpauth://totp/") and f"secret={body['secret']}" in body["otpauth_uri"]
    form = {"username": "daoliadmin", "password": PASSWORD}
    assert world.client.post("/api/auth/token", data=form | {"otp": pyotp.TOTP(old).now()}).status_code == 401
    assert world.client.post("/api/auth/token", data=form | {"otp": pyotp.TOTP(body["secret"]).now()}).status_code == 200
    listed = {u["username"]: u for u in world.get("/api/users", "sec").json()["users"]}
    assert listed["daoliadmin"]["totp_enrolled"] and "secret" not in json.dumps(listed["daoliadmin"])
    entries = world.get("/api/audit", "aud", params={"action": "user.totp_enrol", "limit": 1000}).json()["entries"]
    assert [e["actor"] for e in entries if e["detail"]["username"] == "daoliadmin"][-1:] == ["sec"], entries[-3:]
