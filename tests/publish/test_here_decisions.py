"""'What is here' on remembered readable datasets (`access.decisions.decide_layers`): every change still counts on the
very next point.

In the small province of tests/world.py, on both stores: a caller's second point is answered on the datasets decided
for its first, without authenticating again; then a changed role, a disabled account, a revoked token, a granted or
revoked grant, a dataset's new policy, a new version, a grant's start and end and a token's expiry by the clock each
change the next answer; each request's audit entry names its own address.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud import clock
from landcloud.access import auth, tokens, users
from landcloud.access.decisions import DecisionCache, RememberedLayers
from landcloud.access.tables import audit_log, grants
from landcloud.app import create_app
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings

from builders import grid_parcels
from world import World, build, grant_to_bank, hrb_token, submit

POINT = {"lon": 126.601, "lat": 45.741}  # HRB-A1 of tests/world.py's grid


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    return build(engine, settings, TestClient(create_app(settings)), tmp_path)


def cache_of(world: World) -> DecisionCache[RememberedLayers]:
    return world.client.app.state.layer_decisions  # type: ignore[attr-defined,no-any-return]


def layers(world: World, who: str | None) -> dict[str, int]:
    """The datasets with features at the point, and their versions."""
    resp = world.get("/api/here", who, params=POINT)
    assert resp.status_code == 200, resp.text
    return {lay["dataset"]: lay["version"] for lay in resp.json()["layers"]}


def status(world: World, who: str | None) -> int:
    return int(world.get("/api/here", who, params=POINT).status_code)


def test_a_second_point_is_answered_without_authenticating_again(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = auth.authenticate

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append("authenticate")
        return real(*args, **kw)

    monkeypatch.setattr(auth, "authenticate", counted)
    cache = cache_of(world)
    first = world.get("/api/here", "daoli", params=POINT).json()
    hits = cache.hits
    second = world.get("/api/here", "daoli", params=POINT).json()
    assert cache.hits == hits + 1 and calls == ["authenticate"]
    assert {k: v for k, v in second.items() if k != "generated_at"} == {k: v for k, v in first.items() if k != "generated_at"}
    assert {lay["dataset"] for lay in second["layers"]} == {"hrb-dltb", "daoli-mine", "open-dltb", "open-dltb-public"}
    masked = next(lay for lay in second["layers"] if lay["dataset"] == "hrb-dltb")["features"][0]["properties"]["QLRZJH"]
    assert masked != "230102199001011111"  # shaped as the remembered decision says: masked for the district
    # another credential (the public) is decided on its own
    assert set(layers(world, None)) == {"open-dltb-public"}
    assert calls == ["authenticate", "authenticate"]


def test_every_change_counts_on_the_next_point(world: World, engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    cache = cache_of(world)
    assert set(layers(world, "daoli")) == {"hrb-dltb", "daoli-mine", "open-dltb", "open-dltb-public"}
    hits = cache.hits
    assert set(layers(world, "daoli")) == {"hrb-dltb", "daoli-mine", "open-dltb", "open-dltb-public"}
    assert cache.hits == hits + 1

    users.set_roles(engine, "daoli", ["secadmin"])  # an administrator reads no data: the public's layers only
    assert set(layers(world, "daoli")) == {"open-dltb-public"}
    users.set_roles(engine, "daoli", ["viewer"])
    assert "hrb-dltb" in layers(world, "daoli")
    users.set_active(engine, "daoli", False)  # a disabled account: its credential is refused
    assert status(world, "daoli") == 401
    users.set_active(engine, "daoli", True)

    # a personal API token, revoked
    user, token_id = hrb_token(engine, settings, world, "map")
    assert [("hrb-dltb" in layers(world, "hrb-token")) for _ in range(2)] == [True, True]
    tokens.revoke_token(engine, user, token_id)
    assert status(world, "hrb-token") == 401

    # a grant to the bank: made, then revoked (plain SQL: any path counts)
    assert "hrb-dltb" not in layers(world, "bank")
    grant_id = grant_to_bank(engine, clock.now() - timedelta(hours=1), clock.now() + timedelta(hours=1), clock.now())
    assert [("hrb-dltb" in layers(world, "bank")) for _ in range(2)] == [True, True]
    with engine.begin() as conn:
        conn.execute(grants.update().where(grants.c.id == grant_id).values(revoked_at=clock.now()))
    assert "hrb-dltb" not in layers(world, "bank")

    # a new version of a dataset: the next point reads it
    assert [layers(world, "prov")["hrb-dltb"] for _ in range(2)] == [2, 2]
    feats = grid_parcels(3, origin=(126.6, 45.74))[:1]
    feats[0]["properties"].update(BSM="HRB-A1", ZLDWDM="230102101201", QSDWDM="230102101201", QLRZJH="230102199001011111")
    submit(engine, settings, tmp_path, "hrb-dltb", "230100", feats)
    assert layers(world, "prov")["hrb-dltb"] == 3

    # the dataset made sensitive: the owner unit only, not the province
    catalog.update_metadata(engine, "hrb-dltb", {"security_level": "sensitive"})
    assert "hrb-dltb" not in layers(world, "prov")


def test_the_clock_alone_ends_remembered_layers(
    world: World, engine: sa.Engine, settings: Settings, moved_clock: list[timedelta]
) -> None:
    real = clock.now()
    grant_to_bank(engine, real + timedelta(minutes=10), real + timedelta(minutes=20), real)
    hrb_token(engine, settings, world, "short", expires_days=1)
    cache = cache_of(world)
    assert [("hrb-dltb" in layers(world, "bank")) for _ in range(2)] == [False, False]
    assert [("hrb-dltb" in layers(world, "hrb-token")) for _ in range(2)] == [True, True]
    hits = cache.hits
    moved_clock[0] = timedelta(minutes=10)  # the grant begins: no write, the clock alone
    assert [("hrb-dltb" in layers(world, "bank")) for _ in range(2)] == [True, True]
    assert cache.hits == hits + 1
    moved_clock[0] = timedelta(minutes=20)  # … and ends
    assert "hrb-dltb" not in layers(world, "bank")
    assert "hrb-dltb" in layers(world, "hrb-token")
    moved_clock[0] = timedelta(days=1)  # the token's expiry
    assert status(world, "hrb-token") == 401


def test_each_point_is_audited_with_its_own_address(world: World, engine: sa.Engine) -> None:
    cache = cache_of(world)
    hits = cache.hits
    headers = world.headers("daoli")
    answers = [
        TestClient(world.client.app, client=(f"10.1.2.{i}", 5000)).get("/api/here", params=POINT, headers=headers)
        for i in range(3)
    ]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert cache.hits == hits + 2  # the second and third on the first's datasets
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "data.here", audit_log.c.actor == "daoli").order_by(audit_log.c.seq)
        ).all()
    assert [r.ip for r in rows] == [f"10.1.2.{i}" for i in range(3)]
