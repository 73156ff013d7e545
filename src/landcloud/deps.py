"""FastAPI dependencies shared by every router: settings, engine, the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from landcloud.access.principal import Principal
from landcloud.config import Settings


# async: an attribute read. A sync dependency runs in the thread pool, a hop each per request
# (see benchmarks/profiles/items-*.txt); get_principal reads the store, so it stays sync.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_app_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_principal(request: Request) -> Principal:
    """Who is calling: a bearer token, a personal API token, a session cookie, or the public."""
    from landcloud.access.auth import authenticate

    return authenticate(request.app.state.engine, request.app.state.settings, request)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_app_engine)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
