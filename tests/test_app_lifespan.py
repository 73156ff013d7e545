"""What the app does once when it starts and stops (the lifespan)."""

from __future__ import annotations

import gc

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud.app import create_app
from landcloud.config import Settings


@pytest.fixture(autouse=True)
def _thawed() -> None:
    gc.unfreeze()  # whatever a test before left: each test here starts from a heap the collector walks whole


def test_the_start_up_heap_is_kept_from_the_collector_while_the_app_runs(engine: sa.Engine, settings: Settings) -> None:
    app = create_app(settings)
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:
        frozen = gc.get_freeze_count()
        assert frozen > 50_000  # the modules, FastAPI's routes and models, the app itself
        assert client.get("/healthz").json()["status"] == "ok"
        gc.collect()
        # a full collection leaves them where they are (objects freed by reference count leave the frozen set)
        assert gc.get_freeze_count() > 0.9 * frozen
    assert gc.get_freeze_count() == 0  # undone at shutdown: the next app of this process starts from scratch


def test_the_start_up_heap_is_left_to_the_collector_when_turned_off(engine: sa.Engine, settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"gc_freeze": False}))) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("wanted", [False, True])
def test_fastapis_opentelemetry_is_asked_about_on_each_request_only_when_turned_on(
    engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch, wanted: bool
) -> None:
    """Off by default (Settings.opentelemetry): FastAPI then never asks OpenTelemetry's global providers, which it
    otherwise does on every request (~3.5 us, a fiftieth of a cached tile)."""
    from opentelemetry import trace

    asked: list[int] = []
    real = trace.get_tracer_provider
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: asked.append(1) or real())
    with TestClient(create_app(settings.model_copy(update={"opentelemetry": wanted}))) as client:
        asked.clear()  # (start-up)
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz").status_code == 200
    assert (len(asked) >= 2) is wanted
