"""Static files: the portal's own scripts and styles, and the npm libraries it uses (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from landcloud.config import Settings

STATIC_DIR = Path(__file__).parent / "static"
# URL folder → folder inside node_modules; only these are served, never the whole node_modules
VENDOR = {
    "maplibre-gl": "maplibre-gl/dist",
    "geographiclib-geodesic": "geographiclib-geodesic",
    "proj4": "proj4/dist",
}


def node_modules(settings: Settings) -> Path:
    return settings.node_modules_dir or Path(__file__).resolve().parents[3] / "node_modules"


def mount_assets(app: FastAPI, settings: Settings) -> list[str]:
    """Mounts /static and /static/vendor/<lib>; returns the libraries that are missing (npm ci not run)."""
    missing = []
    base = node_modules(settings)
    for name, sub in VENDOR.items():
        folder = base / sub
        if folder.is_dir():
            app.mount(f"/static/vendor/{name}", StaticFiles(directory=folder), name=f"vendor-{name}")
        else:
            missing.append(name)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return missing
