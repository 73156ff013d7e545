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
    secret_key: str | None = Field(
        default=None,
        description="Signs tokens and encrypts TOTP secrets; otherwise generated into the data dir",
    )
    token_ttl_minutes: int = Field(default=60, description="Lifetime of a bearer token from /api/auth/token")
    session_ttl_hours: int = Field(default=8, description="Lifetime of a browser session")
    cookie_secure: bool = Field(default=True, description="Session cookies only over HTTPS (browsers treat localhost as secure)")
    lockout_failures: int = Field(default=5, description="Failed sign-ins that lock an account …")
    lockout_window_minutes: int = Field(default=15, description="… within this window, and for this long")
    password_min_length: int = Field(default=12, description="Password policy: minimum length")
    api_token_max_days: int = Field(default=365, description="Longest lifetime of a personal API token")
    rate_limit_signin_per_minute: int = Field(default=10, description="Sign-in attempts per client IP and minute")
    rate_limit_public_per_minute: int = Field(default=600, description="Anonymous requests per client IP and minute")
    rate_limit_tiles_per_minute: int = Field(
        default=12000, description="Anonymous map tile requests per client IP and minute (a map view loads dozens at once)"
    )
    public_tile_check_ms: int = Field(
        default=1000,
        ge=0,
        description="Anonymous tiles of published editions are answered from memory; how often (ms) whether the dataset is "
        "still a published edition, and at which version, is re-read (un-publishing or a new approved version takes effect "
        "within this window; shared caches already keep these tiles an hour). 0: re-read on every request",
    )
    public_tile_cache_mb: int = Field(default=64, ge=0, description="Memory for those tiles (0: no lean path)")
    basemap_url: str | None = Field(
        default=None,
        description="Raster basemap tile URL template for the portal map ({z}/{x}/{y}), e.g. 天地图 with its key; none: no external basemap",
    )
    basemap_attribution: str = Field(default="", description="Attribution (and 审图号) shown with the basemap")
    landuse_colours_file: Path | None = Field(
        default=None, description="JSON {land-use code: '#rrggbb'} overriding the portal's land-use colour table"
    )
    node_modules_dir: Path | None = Field(
        default=None, description="Where `npm ci` put the portal's front-end libraries (default: the checkout's node_modules)"
    )
    max_request_mb: int = Field(default=16, description="Largest request body outside submissions")
    oidc_issuer: str | None = Field(default=None, description="OpenID Connect issuer URL (the province's identity system)")
    oidc_client_id: str | None = Field(default=None, description="OpenID Connect client id")
    oidc_client_secret: str | None = Field(default=None, description="OpenID Connect client secret")
    oidc_unit_claim: str = Field(default="unit", description="ID-token claim holding the user's unit code")
    max_upload_mb: int = Field(default=2048, description="Largest accepted submission file")
    area_tolerance_rel: float = Field(default=0.01, description="TBMJ vs ellipsoidal area, relative")
    area_tolerance_abs_m2: float = Field(default=1.0, description="TBMJ vs ellipsoidal area, absolute (m²)")
    overlap_tolerance_m2: float = Field(default=1.0, description="Overlaps smaller than this are not reported")
    batch_size: int = Field(default=5000, description="Features per streamed batch in ingest and export")
    fingerprint_tolerance_m: float = Field(
        default=1.0, gt=0,
        description="Grant downloads carry a per-recipient fingerprint: every vertex moves by ±1/10 of this (m)",
    )

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
