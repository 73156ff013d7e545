"""Settings, read from `LANDCLOUD_*` environment variables.

One settings object for the whole process so that the CLI, the server and the tests agree on
where the data folder and the database are; nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANDCLOUD_", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Folder for the SQLite store, uploads and caches")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default a SQLite file in the data dir; postgresql+psycopg://… selects PostGIS",
    )
    admin_token: str | None = Field(
        default=None,
        description="Bearer token of the platform operator until units and users exist (issue: access)",
    )
    max_upload_mb: int = Field(default=2048, description="Largest accepted submission file")
    area_tolerance_rel: float = Field(default=0.01, description="TBMJ vs ellipsoidal area, relative")
    area_tolerance_abs_m2: float = Field(default=1.0, description="TBMJ vs ellipsoidal area, absolute (m²)")
    overlap_tolerance_m2: float = Field(default=1.0, description="Overlaps smaller than this are not reported")
    batch_size: int = Field(default=5000, description="Features per streamed batch in ingest and export")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'landcloud.sqlite').resolve()}"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"


@lru_cache
def get_settings() -> Settings:
    return Settings()
