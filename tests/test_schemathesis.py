"""schemathesis against the whole OpenAPI document (/ogc/api is the same document): no server errors.

Generated requests, signed in as a submitter of the unit that owns the data, on both stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from landcloud.access import units, users
from landcloud.app import create_app
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission

from builders import grid_parcels, write_geojson
from conftest import REFERENCE
from world import PASSWORD, sign_in


@pytest.fixture
def app_and_token(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> tuple[Any, dict[str, str]]:
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    path = write_geojson(tmp_path / "dltb.geojson", grid_parcels(2))
    assert run_submission(engine, settings, path, SubmitOptions(dataset_id="dltb", unit="230102")).accepted
    catalog.update_metadata(engine, "dltb", {"openness": "open", "security_level": "public"})
    users.create_user(engine, settings, "fuzz", "230102", ["viewer", "submitter"], PASSWORD)
    app = create_app(settings.model_copy(update={"rate_limit_public_per_minute": 1_000_000}))
    return app, {"Authorization": f"Bearer {sign_in(TestClient(app), 'fuzz')}"}


def test_no_server_errors(app_and_token: tuple[Any, dict[str, str]]) -> None:
    """Every operation of the OpenAPI document, generated requests, signed in: never a 5xx."""
    app, token = app_and_token
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    statuses: set[int] = set()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hsettings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=token)
            statuses.add(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}: {response.text[:300]}")

        check()
    assert operations >= 40
    assert failures == []
    assert {200, 400, 404} <= statuses  # the generated requests reached real handlers, good and bad
