"""FastAPI dependencies shared by every router: settings, engine, the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from landcloud.access.gate import Principal, principal_from_token
from landcloud.config import Settings


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_app_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_principal(request: Request, settings: Annotated[Settings, Depends(get_app_settings)]) -> Principal:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    return principal_from_token(settings, token)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_app_engine)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
