"""A small province for access tests: units, users with tokens, and datasets loaded the real way."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyotp
import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud.access import tokens, units, users
from landcloud.access.tables import grants
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission

from builders import grid_parcels, publish_edition, write_geojson
from conftest import REFERENCE

PASSWORD = "Heilongjiang-2026!"
BANK = "BANK-ICBC-HRB"


@dataclass
class World:
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    totp: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    def get(self, path: str, who: str | None, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers(who), **kw)

    def post(self, path: str, who: str | None, **kw: Any) -> Any:
        return self.client.post(path, headers=self.headers(who), **kw)

    def patch(self, path: str, who: str | None, **kw: Any) -> Any:
        return self.client.patch(path, headers=self.headers(who), **kw)


def parcels(rows: list[tuple[str, str, str]], origin: tuple[float, float] = (126.6, 45.74)) -> list[dict[str, Any]]:
    """Grid parcels with given (BSM, ZLDWDM, 权利人证件号) values."""
    feats = grid_parcels(3, origin=origin)[: len(rows)]
    for f, (bsm, zl, zjh) in zip(feats, rows):
        f["properties"].update(BSM=bsm, ZLDWDM=zl, QSDWDM=zl, QLRZJH=zjh)
    return feats


def sign_in(client: TestClient, username: str, otp_secret: str | None = None) -> str:
    data = {"username": username, "password": PASSWORD}
    if otp_secret:
        data["otp"] = pyotp.TOTP(otp_secret).now()
    resp = client.post("/api/auth/token", data=data)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def make_user(engine: sa.Engine, settings: Settings, world: World, name: str, unit: str, *roles: str) -> None:
    users.create_user(engine, settings, name, unit, list(roles) or ["viewer"], PASSWORD)
    secret = None
    if set(roles) & {"data_admin", "sysadmin", "secadmin", "auditadmin"}:
        secret, _ = users.enrol_totp(engine, settings, name)
        world.totp[name] = secret
    world.tokens[name] = sign_in(world.client, name, secret)


def submit(engine: sa.Engine, settings: Settings, tmp: Path, dataset_id: str, unit: str, feats: list[dict[str, Any]]) -> None:
    path = write_geojson(tmp / f"{dataset_id}-{len(list(tmp.iterdir()))}.geojson", feats)
    result = run_submission(engine, settings, path, SubmitOptions(dataset_id=dataset_id, unit=unit, schema="DLTB"))
    assert result.accepted, result.report["findings"][:3]


HRB_ROWS = [
    ("HRB-A1", "230102101201", "230102199001011111"),
    ("HRB-A2", "230102102201", "230102199001012222"),
    ("HRB-B1", "230103101201", "230103199001013333"),
    ("HRB-B2", "230103102201", "230103199001014444"),
    ("HRB-C1", "230104101201", "230104199001015555"),
]
QQHR_ROWS = [("QQHR-1", "230202101201", "230202199001016666")]
MINE_ROWS = [("MINE-1", "230102103201", "230102199001017777")]


def build(engine: sa.Engine, settings: Settings, client: TestClient, tmp: Path) -> World:
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    units.add_department(engine, BANK, "工商银行哈尔滨分行", "230100")
    world = World(client)
    hrb = parcels(HRB_ROWS)
    submit(engine, settings, tmp, "hrb-dltb", "230100", hrb)
    v2 = copy.deepcopy(hrb)
    v2[0]["properties"].update(DLBM="0702", DLMC="农村宅基地")
    v2[2]["properties"].update(DLBM="0702", DLMC="农村宅基地")
    submit(engine, settings, tmp, "hrb-dltb", "230100", v2)
    catalog.update_metadata(engine, "hrb-dltb", {"sensitive_fields": "QLRZJH"})
    submit(engine, settings, tmp, "qqhr-dltb", "230200", parcels(QQHR_ROWS, origin=(123.9, 47.3)))
    submit(engine, settings, tmp, "daoli-mine", "230102", parcels(MINE_ROWS))
    catalog.update_metadata(engine, "daoli-mine", {"security_level": "sensitive"})
    submit(engine, settings, tmp, "open-dltb", "230000", parcels([("OPEN-1", "230102101201", "230102199001018888")]))
    catalog.update_metadata(engine, "open-dltb", {"openness": "open", "security_level": "public"})
    # the public sees the master only through its edition; the edition leaves out the 证件号
    publish_edition(engine, settings, "open-dltb", fields=["BSM", "DLBM", "DLMC", "ZLDWDM", "TBMJ"])
    for name, unit, roles in [
        ("prov", "230000", ["viewer"]), ("hrb", "230100", ["viewer"]), ("hrbadmin", "230100", ["data_admin"]),
        ("qqhr", "230200", ["viewer"]), ("daoli", "230102", ["viewer"]), ("daoliadmin", "230102", ["data_admin"]),
        ("nangang", "230103", ["viewer", "submitter"]), ("bank", BANK, ["viewer"]), ("sec", "230000", ["secadmin"]),
        ("sys", "230000", ["sysadmin"]), ("aud", "230000", ["auditadmin"]),
    ]:
        make_user(engine, settings, world, name, unit, *roles)
    return world


def grant_to_bank(engine: sa.Engine, starts_at: datetime, expires_at: datetime, created_at: datetime) -> str:
    """A grant of hrb-dltb to the bank, written as plain SQL (any path that writes it must count); its id."""
    grant_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(grants.insert().values(
            id=grant_id, dataset_id="hrb-dltb", grantee_unit=BANK, purpose="loans", starts_at=starts_at,
            expires_at=expires_at, created_at=created_at,
        ))
    return grant_id


def hrb_token(engine: sa.Engine, settings: Settings, world: World, name: str, **kw: Any) -> tuple[dict[str, Any], str]:
    """A personal read token of the city's user `hrb`, known to `world` as "hrb-token": (the user, the token's id)."""
    user = users.find_user(engine, "hrb") or {}
    plaintext, record = tokens.create_token(engine, settings, user, name, ["read"], **kw)
    world.tokens["hrb-token"] = plaintext
    return user, str(record["id"])
