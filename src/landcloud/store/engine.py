"""One engine per database URL for the life of the process."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.engine import Engine

from landcloud.config import Settings, get_settings
from landcloud.store.db import create_engine


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return create_engine(url)


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _engine_for(settings.resolved_database_url)
