"""Errors as a person in a browser sees them: a page in their language, never a stack trace.

API and OGC paths keep their machine-readable JSON bodies; only a browser asking for a page
(GET, Accept: text/html, outside /api and /ogc) gets the page.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from landcloud.messages import LandcloudError

log = logging.getLogger(__name__)
MACHINE_PREFIXES = ("/api", "/ogc", "/static", "/healthz", "/docs", "/redoc", "/openapi.json")
STATUS_TEXT = {
    404: ("页面不存在", "page not found"),
    405: ("不支持此操作", "method not allowed"),
    500: ("服务器内部错误，请稍后重试；如问题持续，请联系系统管理员", "internal error; try again later, or tell the system administrator"),
}


def wants_page(request: Request) -> bool:
    path = request.url.path
    return (
        request.method == "GET"
        and not path.startswith(MACHINE_PREFIXES)
        and "text/html" in request.headers.get("accept", "")
    )


def error_page(request: Request, status: int, zh: str, en: str) -> Response:
    from landcloud.access.principal import ANONYMOUS
    from landcloud.web.pages import render

    return render(request, ANONYMOUS, "error", status_code=status, error={"status": status, "zh": zh, "en": en})


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_page(request):
            zh, en = STATUS_TEXT.get(exc.status_code, (str(exc.detail), str(exc.detail)))
            return error_page(request, exc.status_code, zh, en)
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        zh, en = STATUS_TEXT[500]
        if wants_page(request):
            return error_page(request, 500, zh, en)
        return JSONResponse(status_code=500, content=LandcloudError("server.error", zh, en).to_dict())
