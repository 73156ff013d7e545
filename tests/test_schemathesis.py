"""schemathesis against the whole OpenAPI document (/ogc/api is the same document): no server errors.

Generated requests, signed in as a submitter of the unit that owns the data, on both stores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from landcloud.access import units, users
from landcloud.app import create_app
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission

from builders import grid_parcels, write_geojson
from conftest import REFERENCE
from world import PASSWORD, sign_in

TOKEN: dict[str, str] = {}


@pytest.fixture
def api_schema(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> schemathesis.BaseSchema:
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    path = write_geojson(tmp_path / "dltb.geojson", grid_parcels(2))
    assert run_submission(engine, settings, path, SubmitOptions(dataset_id="dltb", unit="230102")).accepted
    catalog.update_metadata(engine, "dltb", {"openness": "open", "security_level": "public"})
    users.create_user(engine, settings, "fuzz", "230102", ["viewer", "submitter"], PASSWORD)
    app = create_app(settings.model_copy(update={"rate_limit_public_per_minute": 1_000_000}))
    TOKEN["Authorization"] = f"Bearer {sign_in(TestClient(app), 'fuzz')}"
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hsettings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call(headers=TOKEN)
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
