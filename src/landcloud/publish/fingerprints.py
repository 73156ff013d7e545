"""Where handed-over data goes: per-recipient watermark and invisible fingerprint, and tracing a leak.

A download made under a grant (data handed to a company or another department) is marked for
its recipient unit: the metadata carries a watermark text naming the recipient and the grant,
and every vertex moves by a recorded, recipient-specific ±tolerance/10 (desensitise.fingerprint,
keyed by a secret kept per recipient in `recipient_keys`), far below what the data is used at.
Each marked copy is recorded (`fingerprinted_copies`: dataset, version, recipient, grant, CRS
plane, tolerance, extent, when), so `landcloud trace FILE` can take a leaked file — GeoJSON,
Shapefile (also zipped), GeoPackage, with or without its metadata — find the copies whose
extent it overlaps, and name the recipient whose fingerprint explains the file's coordinates.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import shapely
import sqlalchemy as sa
from pyproj import CRS, Transformer
from sqlalchemy.engine import Connection, Engine

from landcloud.access import gate
from landcloud.access import units as units_mod
from landcloud.access.policy import Access
from landcloud.access.principal import Principal, system_principal
from landcloud.access.tables import units
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.messages import LandcloudError, NotFound
from landcloud.publish import desensitise
from landcloud.publish.tables import fingerprinted_copies, recipient_keys
from landcloud.store.db import connection
from landcloud.store.features import StoredFeature

MATCH_SCORE = 0.5  # a recipient's fingerprint explains the copy (others score ≈ 0 ± 1/√(2N) over N matched vertices) …
MATCH_SIGMAS = 4.0  # … and by more than chance could: the score must also exceed 4/√(2N)


def recipient_secret(conn: Connection, recipient: str) -> bytes:
    """The recipient's recorded key, made on first use."""
    row = conn.execute(sa.select(recipient_keys.c.secret).where(recipient_keys.c.recipient == recipient)).first()
    if row is None:
        value = secrets.token_hex(32)
        conn.execute(recipient_keys.insert().values(recipient=recipient, secret=value, created_at=catalog.now()))
        return bytes.fromhex(value)
    return bytes.fromhex(row[0])


def grant_ids(access: Access) -> list[str]:
    return [b.split(":", 1)[1] for b in access.bases if b.startswith("grant:")]


@dataclass(frozen=True)
class Marker:
    """The mark of one handed-over copy: apply it to lon/lat geometries before any CRS change."""

    recipient: str
    recipient_name: str
    grants: list[str]
    secret: bytes
    tolerance_m: float
    epsg: int

    def __call__(self, geoms: np.ndarray) -> np.ndarray:
        return desensitise.fingerprint(geoms, self.secret, self.tolerance_m, epsg=self.epsg)

    def watermark(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "recipient_name": self.recipient_name,
            "grants": self.grants,
            "watermark": (
                f"本数据依共享授权（{', '.join(self.grants)}）提供给 {self.recipient_name}（{self.recipient}），仅限授权用途，不得外传。"
                f" Provided to {self.recipient_name} ({self.recipient}) under grant {', '.join(self.grants)}; authorised use only, do not pass on."
            ),
        }


def marker_for(engine: Engine, principal: Principal, ds: catalog.Dataset, version: int, access: Access, tolerance_m: float,
               *, standing: bool = False, conn: Connection | None = None) -> Marker | None:
    """A recorded marker when this read hands data over under a grant; None otherwise.

    A download is a copy of its own, recorded each time (who took it, under which grants). The
    API reads of a grantee (OGC API, the features API, a version diff with geometry) are marked
    the same way, since a client such as GDAL can page through a whole version: with `standing`
    one copy per dataset version, recipient and tolerance is recorded, on the first such read.
    `conn`: the request's read connection, to look the standing copy up on (no checkout of its own).
    """
    grants = grant_ids(access)
    if not grants or principal.kind != "user" or not principal.unit:
        return None
    name: str | None = None
    if standing:  # recorded already (the usual case for a grantee paging through a version): one read, no write
        with connection(conn if conn is not None else engine) as c:
            row = c.execute(_STANDING, {"unit": principal.unit, "dataset_id": ds.id, "version": version,
                                        "tolerance_m": tolerance_m}).first()
        if row is not None:
            name = str(row.name)
            if row.secret is not None:
                return Marker(principal.unit, name, grants, bytes.fromhex(row.secret), tolerance_m, row.epsg)
    if name is None:
        try:
            name = str(units_mod.get_unit(engine, principal.unit)["name"])
        except NotFound:
            name = principal.unit
    extent = catalog.get_version(engine, ds.id, version).extent
    if not extent:
        return None
    epsg = desensitise.layer_epsg(np.array([shapely.box(*extent)], dtype=object))
    with engine.connect() as wconn:
        wconn.info["write"] = True
        with wconn.begin():
            secret = recipient_secret(wconn, principal.unit)
            wconn.execute(
                fingerprinted_copies.insert().values(
                    dataset_id=ds.id, version=version, recipient=principal.unit, actor=principal.actor, grant_ids=grants,
                    tolerance_m=tolerance_m, epsg=epsg, extent=list(extent), created_at=catalog.now(),
                )
            )
    return Marker(principal.unit, name, grants, secret, tolerance_m, epsg)


# The recipient unit's name and, when recorded, its standing copy of a version (epsg, secret), in one statement:
# it runs on every API read of a grantee.
_copy = fingerprinted_copies.c
_STANDING = (
    sa.select(units.c.name, _copy.epsg, recipient_keys.c.secret)
    .select_from(units)
    .outerjoin(
        fingerprinted_copies.join(recipient_keys, recipient_keys.c.recipient == _copy.recipient),
        sa.and_(_copy.recipient == units.c.code, _copy.dataset_id == sa.bindparam("dataset_id"),
                _copy.version == sa.bindparam("version"), _copy.tolerance_m == sa.bindparam("tolerance_m")),
    )
    .where(units.c.code == sa.bindparam("unit"))
    .limit(1)
)


def api_marker(engine: Engine, settings: Settings, principal: Principal, ds: catalog.Dataset, version: int,
               access: Access, conn: Connection | None = None) -> Marker | None:
    """The marker of a grantee's API read of a version (recorded once as its standing copy), or None."""
    return marker_for(engine, principal, ds, version, access, settings.fingerprint_tolerance_m, standing=True, conn=conn)


def marked(features: Iterable[StoredFeature], marker: Marker | None, batch: int = 500) -> Iterator[StoredFeature]:
    """The features with the recipient's fingerprint in their geometry (unchanged without a marker).

    Batched: the fingerprint projects to the layer's Gauss-Krüger plane once per batch."""
    if marker is None:
        yield from features
        return
    it = iter(features)
    while chunk := list(islice(it, batch)):
        geoms = shapely.from_wkb(np.array([f.wkb for f in chunk], dtype=object), on_invalid="ignore")
        wkbs = shapely.to_wkb(marker(geoms))
        for f, wkb in zip(chunk, wkbs, strict=True):
            yield dataclasses.replace(f, wkb=wkb) if f.wkb is not None else f


# ---------------------------------------------------------------- tracing a leaked copy


def read_copy(path: Path) -> np.ndarray:
    """Every geometry of a file (GeoJSON, Shapefile or zipped Shapefile, GeoPackage) in lon/lat (EPSG:4490)."""
    source = f"/vsizip/{path}" if path.suffix.lower() == ".zip" else str(path)
    try:
        meta, _, wkb, _ = pyogrio.raw.read(source, read_geometry=True, columns=[])
    except Exception as exc:  # GDAL's own errors: the file cannot be read
        raise LandcloudError("trace.unreadable", f"无法读取文件：{exc}", f"cannot read the file: {exc}") from None
    geoms = shapely.from_wkb(np.array(wkb, dtype=object), on_invalid="ignore")
    crs = meta.get("crs")
    if crs:
        src = CRS.from_user_input(crs)
        if src.is_projected:
            tr = Transformer.from_crs(src, "EPSG:4490", always_xy=True)
            geoms = shapely.transform(geoms, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
    return geoms


def trace_copy(engine: Engine, geoms: np.ndarray) -> dict[str, Any]:
    """Rank the recipients of recorded copies by how well their fingerprint explains `geoms`."""
    present = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
    if present.size == 0:
        raise LandcloudError("trace.empty", "文件中没有几何", "the file holds no geometry")
    bounds = shapely.total_bounds(present)
    with engine.connect() as conn:
        copies = conn.execute(sa.select(fingerprinted_copies).order_by(fingerprinted_copies.c.id)).all()
        keys = {r.recipient: bytes.fromhex(r.secret) for r in conn.execute(sa.select(recipient_keys))}
    groups: dict[tuple[str, int, float, int], set[str]] = {}
    for c in copies:
        ext = c.extent
        if ext and ext[0] <= bounds[2] and ext[2] >= bounds[0] and ext[1] <= bounds[3] and ext[3] >= bounds[1]:
            groups.setdefault((c.dataset_id, c.version, c.tolerance_m, c.epsg), set()).add(c.recipient)
    me = system_principal("trace")
    results = []
    for (dataset_id, version, tol, epsg), recipients in groups.items():
        ds = catalog.require_dataset(engine, dataset_id)
        access = gate.access_for(engine, me, ds)
        pad = tol
        box = (bounds[0] - pad * 1e-4, bounds[1] - pad * 1e-4, bounds[2] + pad * 1e-4, bounds[3] + pad * 1e-4)
        feats = gate.read_features(engine, me, ds, access, version, bbox=box, action="trace.read")
        original = shapely.from_wkb(np.array([f.wkb for f in feats], dtype=object), on_invalid="ignore")
        if original.size == 0:
            continue
        scores, matched = desensitise.trace_matches(original, geoms, {r: keys[r] for r in recipients}, tol, epsg=epsg)
        if not matched:
            continue
        needed = max(MATCH_SCORE, MATCH_SIGMAS / math.sqrt(2 * matched))
        for name, score in scores:
            results.append({"recipient": name, "score": round(score, 4), "dataset_id": dataset_id, "version": version,
                            "matched_vertices": matched, "needed": round(needed, 4)})
    results.sort(key=lambda r: r["score"], reverse=True)
    best = results[0] if results and results[0]["score"] >= results[0]["needed"] else None
    return {"recipient": best["recipient"] if best else None, "match": best, "candidates": results}
