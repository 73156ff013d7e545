"""The PostgreSQL pool survives connections dropped while idle, without a ping on every checkout."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from landcloud.store import db


def test_a_connection_dropped_while_idle_is_replaced(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    if db.backend_of(engine) != "postgis":
        pytest.skip("SQLite has no server connection to lose")
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    killer = db.create_engine(engine.url.render_as_string(hide_password=False))
    with killer.connect() as k:  # what a server restart does to the pooled connection
        assert k.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one() is True
    killer.dispose()
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", -1.0)  # the pooled connection counts as idle: pinged, found dead, replaced
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid
