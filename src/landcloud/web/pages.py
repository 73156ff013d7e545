"""The portal's pages: HTML shells in the caller's language.

A page carries no data of its own; its script fetches everything through the same JSON and
OGC endpoints an outside client uses, so the portal can never show more than the gate allows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from landcloud import __version__
from landcloud.access.principal import Principal
from landcloud.access.roles import SEPARATED, SUBMIT_ROLES
from landcloud.deps import PrincipalDep
from landcloud.web.i18n import LANG_COOKIE, LANGS, catalogue, negotiate, translator

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)

# page name → (template, signed-in only)
PAGES: dict[str, tuple[str, bool]] = {
    "home": ("portal/home.html", False),
    "map": ("portal/map.html", False),
    "here": ("portal/here.html", False),
    "dataset": ("portal/dataset.html", False),
    "signin": ("portal/signin.html", False),
    "error": ("portal/error.html", False),
    "submit": ("portal/submit.html", True),
    "work": ("portal/work.html", True),
    "admin": ("portal/admin.html", True),
}


def page_language(request: Request) -> str:
    return negotiate(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def who(principal: Principal) -> dict[str, Any]:
    """What the page header shows of the caller (the scripts ask /api/auth/me for more)."""
    if principal.kind != "user":
        return {"signed_in": False}
    roles = sorted(principal.roles)
    return {"signed_in": True, "username": principal.username, "unit": principal.unit, "roles": roles,
            "administrator": bool(SEPARATED & set(roles)), "can_submit": bool(SUBMIT_ROLES & set(roles))}


def render(request: Request, principal: Principal, page: str, status_code: int = 200, **extra: Any) -> Response:
    lang = page_language(request)
    template, needs_user = PAGES[page]
    if needs_user and principal.kind != "user":
        return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)
    user = who(principal)
    context = {
        "lang": lang,
        "langs": LANGS,
        "t": translator(lang),
        "page": page,
        "user": user,
        "version": __version__,
        "boot": json.dumps({"lang": lang, "page": page, "user": user, "messages": catalogue(lang), **extra}, ensure_ascii=False),
        **extra,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/", samesite="lax")
    return response


def _page_route(page: str) -> Callable[..., Response]:
    def handler(request: Request, principal: PrincipalDep) -> Response:
        return render(request, principal, page)

    handler.__name__ = f"{page}_page"
    return handler


# URL → page; the dataset and sign-in pages take a parameter and have routes of their own below
_ROUTES = {"/": "home", "/map": "map", "/here": "here", "/submit": "submit", "/work": "work", "/admin": "admin"}
for _path, _page in _ROUTES.items():
    router.add_api_route(_path, _page_route(_page), methods=["GET"], response_class=HTMLResponse)


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(request: Request, principal: PrincipalDep, dataset_id: str) -> Response:
    return render(request, principal, "dataset", dataset_id=dataset_id)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, principal: PrincipalDep) -> Response:
    next_path = request.query_params.get("next") or "/"
    if not next_path.startswith("/") or next_path.startswith("//"):
        next_path = "/"  # never an open redirect
    return render(request, principal, "signin", next=next_path)
