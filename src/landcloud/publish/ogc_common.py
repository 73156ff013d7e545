"""What every OGC API route shares: links, format negotiation (JSON/HTML), the HTML page, paging."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from landcloud.messages import LandcloudError

Format = Literal["json", "html"]
GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"

_env = Environment(loader=PackageLoader("landcloud.web", "templates"), autoescape=select_autoescape(["html"]))


def output_format(request: Request, f: str | None) -> Format:
    """f= wins; otherwise HTML only when the client prefers it (a browser), else JSON."""
    if f:
        value = f.lower()
        if value in ("json", "geojson", "application/json", GEOJSON):
            return "json"
        if value in ("html", HTML):
            return "html"
        raise LandcloudError(
            "request.bad_format", f"不支持的格式 f={f}（可用 json、html）", f"unsupported format f={f} (use json or html)"
        )
    accept = request.headers.get("accept", "").lower()
    return "html" if "text/html" in accept and "json" not in accept else "json"


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def link(href: str, rel: str, type_: str, title: str = "", **extra: Any) -> dict[str, Any]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    out.update(extra)
    return out


def with_query(url: str, **params: Any) -> str:
    from urllib.parse import urlencode

    clean = {k: v for k, v in params.items() if v is not None}
    return f"{url}?{urlencode(clean)}" if clean else url


def html_page(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(**context))


class LRU:
    """A small bounded cache (counts for paging): never grows without limit."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def put(self, key: Hashable, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)
