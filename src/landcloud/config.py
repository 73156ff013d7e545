"""Settings, read from `LANDCLOUD_*` environment variables.

One settings object for the whole process so that the CLI, the server and the tests agree on
where the data folder and the database are; nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _zh(text: str) -> dict[str, str]:
    """The Chinese description shown to administrators beside the English one (`description`)."""
    return {"description_zh": text}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANDCLOUD_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./data"), description="Folder for the SQLite store, uploads and caches",
        json_schema_extra=_zh("SQLite 存储、上传文件和缓存所在的目录"),
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default a SQLite file in the data dir; postgresql+psycopg://… selects PostGIS",
        json_schema_extra=_zh("SQLAlchemy 数据库地址；默认是数据目录中的 SQLite 文件；postgresql+psycopg://… 选用 PostGIS"),
    )
    secret_key: str | None = Field(
        default=None,
        description="Signs tokens and encrypts TOTP secrets; otherwise generated into the data dir",
        json_schema_extra=_zh("签发令牌并加密一次性口令（TOTP）密钥；未设置时在数据目录中生成"),
    )
    token_ttl_minutes: int = Field(
        default=60, description="Lifetime of a bearer token from /api/auth/token",
        json_schema_extra=_zh("/api/auth/token 签发的访问令牌有效期（分钟）"),
    )
    session_ttl_hours: int = Field(default=8, description="Lifetime of a browser session", json_schema_extra=_zh("浏览器会话有效期（小时）"))
    cookie_secure: bool = Field(
        default=True, description="Session cookies only over HTTPS (browsers treat localhost as secure)",
        json_schema_extra=_zh("会话 Cookie 只经 HTTPS 传送（浏览器把 localhost 视为安全）"),
    )
    lockout_failures: int = Field(
        default=5, description="Failed sign-ins that lock an account …",
        json_schema_extra=_zh("登录失败达到此次数即锁定账号……"),
    )
    lockout_window_minutes: int = Field(
        default=15, description="… within this window, and for this long",
        json_schema_extra=_zh("……在此时间窗内计数，并锁定同样长的时间（分钟）"),
    )
    password_min_length: int = Field(
        default=12, description="Password policy: minimum length",
        json_schema_extra=_zh("密码策略：最短长度"),
    )
    api_token_max_days: int = Field(
        default=365, description="Longest lifetime of a personal API token",
        json_schema_extra=_zh("个人 API 令牌的最长有效期（天）"),
    )
    rate_limit_signin_per_minute: int = Field(
        default=10, description="Sign-in attempts per client IP and minute",
        json_schema_extra=_zh("每个客户端 IP 每分钟的登录尝试次数"),
    )
    rate_limit_public_per_minute: int = Field(
        default=600, description="Anonymous requests per client IP and minute",
        json_schema_extra=_zh("每个客户端 IP 每分钟的匿名请求数"),
    )
    rate_limit_tiles_per_minute: int = Field(
        default=12000, description="Anonymous map tile requests per client IP and minute (a map view loads dozens at once)",
        json_schema_extra=_zh("每个客户端 IP 每分钟的匿名地图瓦片请求数（一次地图浏览会同时加载几十张）"),
    )
    public_tile_check_ms: int = Field(
        default=1000,
        ge=0,
        description="Anonymous tiles of published editions are answered from memory; how often (ms) whether the dataset is "
        "still a published edition, and at which version, is re-read (un-publishing or a new approved version takes effect "
        "within this window; shared caches already keep these tiles an hour). 0: re-read on every request",
        json_schema_extra=_zh(
            "公开版的匿名瓦片由内存应答；每隔多少毫秒重新读取该数据集是否仍为已发布的公开版及其版本"
            "（撤销发布或批准新版本在此时间内生效；共享缓存本已可保存这些瓦片一小时）。0：每次请求都重新读取"
        ),
    )
    public_tile_cache_mb: int = Field(
        default=64, ge=0, description="Memory for those tiles (0: no lean path)",
        json_schema_extra=_zh("这些瓦片占用的内存（MB；0 表示不走内存应答）"),
    )
    basemap_url: str | None = Field(
        default=None,
        description="Raster basemap tile URL template for the portal map ({z}/{x}/{y}), e.g. 天地图 with its key; none: no external basemap",
        json_schema_extra=_zh("门户地图的栅格底图瓦片地址模板（{z}/{x}/{y}），如带密钥的天地图；不设置则不用外部底图"),
    )
    basemap_attribution: str = Field(
        default="", description="Attribution (and 审图号) shown with the basemap",
        json_schema_extra=_zh("与底图一起显示的版权说明（及审图号）"),
    )
    landuse_colours_file: Path | None = Field(
        default=None, description="JSON {land-use code: '#rrggbb'} overriding the portal's land-use colour table",
        json_schema_extra=_zh("JSON 文件 {地类编码: '#rrggbb'}，覆盖门户的地类配色表"),
    )
    node_modules_dir: Path | None = Field(
        default=None, description="Where `npm ci` put the portal's front-end libraries (default: the checkout's node_modules)",
        json_schema_extra=_zh("`npm ci` 安装的门户前端库所在目录（默认是代码目录下的 node_modules）"),
    )
    gc_freeze: bool = Field(
        default=True,
        description="After start-up, keep the objects made so far (modules, the app) out of Python's cyclic collector",
        json_schema_extra=_zh("启动后将已创建的对象（模块、应用）移出 Python 循环垃圾回收的扫描范围"),
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's own OpenTelemetry instrumentation (traces, metrics, logs of every request) when an "
        "OpenTelemetry SDK is configured in the process; off unless asked: its check on every request was ~3% of a cached tile",
        json_schema_extra=_zh("启用 FastAPI 自带的 OpenTelemetry 观测（进程中已配置 OpenTelemetry SDK 时记录每个请求的追踪、指标和日志）；默认关闭"),
    )
    max_request_mb: int = Field(
        default=16, description="Largest request body outside submissions",
        json_schema_extra=_zh("汇交以外的请求体最大大小（MB）"),
    )
    oidc_issuer: str | None = Field(
        default=None, description="OpenID Connect issuer URL (the province's identity system)",
        json_schema_extra=_zh("OpenID Connect 签发方地址（省统一身份认证系统）"),
    )
    oidc_client_id: str | None = Field(
        default=None, description="OpenID Connect client id",
        json_schema_extra=_zh("OpenID Connect 客户端标识"),
    )
    oidc_client_secret: str | None = Field(
        default=None, description="OpenID Connect client secret",
        json_schema_extra=_zh("OpenID Connect 客户端密钥"),
    )
    oidc_unit_claim: str = Field(
        default="unit", description="ID-token claim holding the user's unit code",
        json_schema_extra=_zh("ID 令牌中存放用户单位代码的声明名"),
    )
    max_upload_mb: int = Field(
        default=2048, description="Largest accepted submission file",
        json_schema_extra=_zh("可接受的汇交文件最大大小（MB）"),
    )
    area_tolerance_rel: float = Field(
        default=0.01, description="TBMJ vs ellipsoidal area, relative",
        json_schema_extra=_zh("图斑面积（TBMJ）与椭球面积的相对容差"),
    )
    area_tolerance_abs_m2: float = Field(
        default=1.0, description="TBMJ vs ellipsoidal area, absolute (m²)",
        json_schema_extra=_zh("图斑面积（TBMJ）与椭球面积的绝对容差（平方米）"),
    )
    overlap_tolerance_m2: float = Field(
        default=1.0, description="Overlaps smaller than this are not reported",
        json_schema_extra=_zh("小于此面积的重叠不报告（平方米）"),
    )
    overlap_process_min_features: int = Field(
        default=50_000, ge=0,
        description="Layers of at least this many features decide the overlap rule in a process of their own "
        "(beside the submission, with a GIL of its own; it takes ~0.3 s to start)",
        json_schema_extra=_zh("要素数不少于此值的图层在独立进程中检查图斑重叠（约 0.3 秒启动）"),
    )
    batch_size: int = Field(
        default=5000, description="Features per streamed batch in ingest and export",
        json_schema_extra=_zh("汇交和导出时每批流式处理的要素数"),
    )
    fingerprint_tolerance_m: float = Field(
        default=1.0, gt=0,
        description="Grant downloads carry a per-recipient fingerprint: every vertex moves by ±1/10 of this (m)",
        json_schema_extra=_zh("按授权下载的数据带有接收方指纹：每个节点移动本值的 ±1/10（米）"),
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
