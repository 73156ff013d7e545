"""The one gate every read and write of data passes through.

Routes never read the store themselves: they ask this module for the datasets a caller may
see, for the features of a version (rows filtered in the database, fields shaped here), and
for permission to change things. Reads of non-public data are written to the audit chain
with who, unit, dataset, version, filter, feature count and fields.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from sqlalchemy.engine import Connection, Engine

from landcloud.access import audit, sharing
from landcloud.access import units as units_mod
from landcloud.access.auth import Unauthorized, auth_required
from landcloud.access.policy import Access, DatasetView, GrantView, UnitView, decide
from landcloud.access.principal import ANONYMOUS, Principal, system_principal
from landcloud.access.roles import DATA_ADMIN, REVIEWER, SUBMIT_ROLES, SUBMITTER
from landcloud.catalog import datasets as catalog
from landcloud.codes.admin import DivisionIndex
from landcloud.messages import Forbidden, NotFound
from landcloud.store.db import connection
from landcloud.store.features import BBox, SQLFilter, StoredFeature, feature_store_for

# Where a read's audit entry waits to be written (`deps.Reads.after_close`: once the request's connection is back).
Defer = Callable[[Callable[[], object]], None]

__all__ = ["ANONYMOUS", "Principal", "system_principal", "Unauthorized"]


def unit_view(
    engine: Engine | Connection, code: str | None, index: DivisionIndex | None = None
) -> UnitView | None:
    """The caller's unit with its ancestors and jurisdiction prefix (pass `index` when you hold it).

    Without its boundary (a province's is megabytes): `Viewer` adds it only for a decision that uses it.
    """
    if not code:
        return None
    try:
        unit = units_mod.get_unit(engine, code)
    except NotFound:
        return None
    return _unit_view_of(unit, index if index is not None else units_mod.division_index(engine))


def _unit_view_of(unit: dict[str, Any] | None, index: DivisionIndex | None) -> UnitView | None:
    """The UnitView of a unit row (None: no such unit)."""
    if unit is None:
        return None
    code = str(unit["code"])
    if unit["kind"] != "administrative":
        return UnitView(code=code, kind=str(unit["kind"]), prefix="", ancestors=frozenset())
    if index is None or code not in index:
        return UnitView(code=code, kind="administrative", prefix=code, ancestors=frozenset())
    return UnitView(
        code=code, kind="administrative", prefix=index.jurisdiction_prefix(code), ancestors=frozenset(a.code for a in index.ancestors(code))
    )


_CALLER_FACTS = sharing.with_grants_of(units_mod.INDEX_KEY_AND_UNIT)  # built once: it runs on every request
_DATASET_AND_CALLER_FACTS = catalog.with_dataset(_CALLER_FACTS)
# the division index's key, the caller's unit, its grants in force, and when those grants next change by the clock
# alone (`sharing.grants_change_at`; None: no start or end ahead)
CallerFacts = tuple[units_mod.IndexKey, dict[str, Any] | None, list[dict[str, Any]], datetime | None]


def _facts_params(principal: Principal) -> dict[str, Any]:
    return {"unit_code": principal.unit, "grantee": principal.unit if principal.kind == "user" else None}


def _facts_of(rows: Sequence[Any]) -> CallerFacts:
    key, unit = units_mod.index_key_and_unit_of(rows[0])
    return key, unit, sharing.active_grants_of(rows), sharing.grants_change_at(rows)


def _caller_facts(conn: Connection, principal: Principal) -> CallerFacts:
    """The caller's facts: one round trip, read anew for each decision (a revoked grant or a moved unit counts at
    once; `access.decisions` keeps a decision only under the access generation it was made at)."""
    return _facts_of(conn.execute(_CALLER_FACTS, _facts_params(principal)).all())


def _dataset_and_caller_facts(conn: Connection, principal: Principal, dataset_id: str) -> tuple[catalog.Dataset | None, CallerFacts]:
    """A dataset's row and the caller's facts in one round trip (one snapshot), read on every request."""
    rows = conn.execute(_DATASET_AND_CALLER_FACTS, {**_facts_params(principal), "dataset_id": dataset_id}).all()
    return catalog.dataset_of(rows[0]), _facts_of(rows)


def _grant_views(
    engine: Engine | Connection, principal: Principal, index: DivisionIndex | None, active: list[dict[str, Any]] | None = None
) -> dict[str, list[GrantView]]:
    """The caller's grants in force by dataset (`active`: already read, else read here)."""
    if principal.kind != "user" or not principal.unit:
        return {}
    out: dict[str, list[GrantView]] = {}
    for g in active if active is not None else sharing.active_grants(engine, principal.unit):
        region = g["region"]
        region_boundary = units_mod.boundary(engine, region) if region else None
        out.setdefault(g["dataset_id"], []).append(
            GrantView(
                id=g["id"],
                fields=frozenset(g["fields"]) if g["fields"] is not None else None,
                region=(index.jurisdiction_prefix(region) if index is not None and region in index else region) if region else None,
                region_boundary=shapely.to_wkb(region_boundary) if region_boundary is not None else None,
            )
        )
    return out


class Viewer:
    """What one caller may see of many datasets: the facts (unit, grants, division list) are
    gathered once, and the policy decides per dataset. Listing, search and single reads all
    decide through this one place.
    """

    def __init__(self, engine: Engine, principal: Principal, conn: Connection | None = None, facts: CallerFacts | None = None) -> None:
        """`facts`: the caller's facts when already read in this request (`_dataset_and_caller_facts`)."""
        self.principal = principal
        self.engine = engine
        with connection(conn if conn is not None else engine) as c:  # a few small reads: one connection
            # `changes_at`: when the decisions made here change by the clock alone (a grant begins or ends)
            self.index_key, unit, active, self.changes_at = facts if facts is not None else _caller_facts(c, principal)
            self.index = units_mod.division_index(c, self.index_key)
            self.unit = _unit_view_of(unit, self.index)
            self.grants = _grant_views(c, principal, self.index, active)
        self._bounded_unit: UnitView | None = None
        self._ancestors: dict[str, frozenset[str]] = {}
        self._cache: dict[tuple[Any, ...], Access] = {}

    def ancestors(self, owner: str) -> frozenset[str]:
        if owner not in self._ancestors:
            index = self.index
            found = frozenset(a.code for a in index.ancestors(owner)) if index is not None and owner in index else frozenset()
            self._ancestors[owner] = found
        return self._ancestors[owner]

    def unit_for(self, ds: Any) -> UnitView | None:
        """The caller's unit as the decision on `ds` needs it: with its boundary only when the policy
        may match rows by area (an administrative unit, a dataset without a jurisdiction field that
        is not open and public); otherwise the boundary is never read, so it is not loaded."""
        unit = self.unit
        if unit is None or unit.kind != "administrative" or ds.jurisdiction_field:
            return unit
        if ds.openness == "open" and ds.security_level == "public":
            return unit
        if self._bounded_unit is None:
            boundary = units_mod.boundary(self.engine, unit.code)
            self._bounded_unit = dataclasses.replace(unit, boundary=shapely.to_wkb(boundary) if boundary is not None else None)
        return self._bounded_unit

    def access(self, ds: Any, sensitive: frozenset[str] | None = None) -> Access:
        """Access to a dataset (a Dataset, or any row with its policy columns and `sensitive` given)."""
        if sensitive is None:
            sensitive = frozenset(f["name"] for f in ds.fields if f.get("sensitive"))
        grants = self.grants.get(ds.id, [])
        edition_of, published = getattr(ds, "edition_of", None), getattr(ds, "published_version", None)
        key = (ds.owner_unit, ds.security_level, ds.sharing_class, ds.openness, ds.jurisdiction_field, sensitive, edition_of, published)
        if not grants and key in self._cache:
            return self._cache[key]
        view = DatasetView(
            id=ds.id,
            owner_unit=ds.owner_unit,
            owner_ancestors=self.ancestors(ds.owner_unit),
            security_level=ds.security_level,
            sharing_class=ds.sharing_class,
            openness=ds.openness,
            jurisdiction_field=ds.jurisdiction_field,
            sensitive_fields=sensitive,
            edition_of=edition_of,
            published_version=published,
        )
        access = decide(self.principal, view, self.unit_for(ds), grants)
        if not grants:
            self._cache[key] = access
        return access

    def in_catalogue(self, ds: Any, access: Access) -> bool:
        return in_catalogue(self.principal, ds, access)


def access_for(engine: Engine, principal: Principal, ds: catalog.Dataset, conn: Connection | None = None) -> Access:
    return Viewer(engine, principal, conn).access(ds)


def in_catalogue(principal: Principal, ds: Any, access: Access) -> bool:
    """Whether the caller may see the dataset's catalogue entry (metadata, not data).

    Signed-in staff of any unit or department see every shared dataset's entry, so that they
    can find it and apply for it (the sharing catalogue); the public sees published editions.
    An edition not yet approved is listed for no one outside its owner unit.
    """
    if access.visible:
        return True
    if getattr(ds, "edition_of", None) is not None:
        return False
    return principal.kind == "user" and principal.reads_data and ds.sharing_class != "not_shared"


def visible_datasets(
    engine: Engine, principal: Principal, viewer: Viewer | None = None, conn: Connection | None = None
) -> list[tuple[catalog.Dataset, Access]]:
    """Catalogue entries the caller may see, each with what it may read of the data (`viewer`: the
    caller's, when already made in this request; `conn`: the request's read connection)."""
    with connection(conn if conn is not None else engine) as c:  # the caller's facts and the dataset list on one connection
        viewer = viewer if viewer is not None else Viewer(engine, principal, c)
        listed = catalog.list_datasets(c)
        out = []
        for ds in listed:
            access = viewer.access(ds)
            if viewer.in_catalogue(ds, access):
                out.append((as_seen(c, ds, access), access))
    return out


def readable_datasets(
    engine: Engine, principal: Principal, viewer: Viewer | None = None, conn: Connection | None = None
) -> list[tuple[catalog.Dataset, Access]]:
    """The datasets whose data the caller may read and that have a version, as it may know them (`visible_datasets`)."""
    return [(ds, a) for ds, a in visible_datasets(engine, principal, viewer, conn) if a.visible and ds.current_version > 0]


def as_seen(engine: Engine | Connection, ds: catalog.Dataset, access: Access) -> catalog.Dataset:
    """The dataset as this caller may know it: a published edition read by the public shows its
    published version as the current one (count, extent and fields too), never a version pending approval."""
    if access.version is None or access.version == ds.current_version:
        return ds
    v = catalog.get_version(engine, ds.id, access.version)
    fields = v.source.get("fields", ds.fields)  # an edition version names its own fields (older builds did not)
    return dataclasses.replace(ds, current_version=v.version, feature_count=v.feature_count, extent=v.extent, fields=fields)


def readable_version(ds: catalog.Dataset, access: Access, version: int | None) -> int:
    """The version to read (default the newest the caller may read); 404 for any other it may not read.

    A caller held to a published edition's version reads that version only: an older version of
    an edition may be a build that was never approved (kept for the owner unit's review)."""
    v = catalog.resolve_version(ds, access.version if version is None and access.version is not None else version)
    if access.version is not None and v != access.version:
        raise NotFound("version.not_found", f"数据集“{ds.id}”没有版本 {v}", f"dataset '{ds.id}' has no version {v}")
    return v


def not_found(dataset_id: str) -> NotFound:
    return NotFound("dataset.not_found", f"数据集“{dataset_id}”不存在", f"dataset '{dataset_id}' does not exist")


@dataclasses.dataclass(frozen=True)
class ReadDecision:
    """A dataset as the caller may know it, what it may read of its data, and when that changes by the clock alone
    (a grant of the caller's unit beginning or ending; None: none ahead). `access.decisions` remembers it."""

    ds: catalog.Dataset
    access: Access
    changes_at: datetime | None


def _catalogue_entry(engine: Engine, principal: Principal, dataset_id: str, conn: Connection | None) -> ReadDecision:
    with connection(conn if conn is not None else engine) as c:  # the dataset and the caller's facts in one statement
        ds, facts = _dataset_and_caller_facts(c, principal, dataset_id)
        if ds is None:
            raise not_found(dataset_id)
        viewer = Viewer(engine, principal, c, facts)
        access = viewer.access(ds)
        if not in_catalogue(principal, ds, access):
            raise not_found(dataset_id)
        return ReadDecision(as_seen(c, ds, access), access, viewer.changes_at)


def dataset_for_catalogue(
    engine: Engine, principal: Principal, dataset_id: str, conn: Connection | None = None
) -> tuple[catalog.Dataset, Access]:
    """The dataset's entry; one the caller may not even see listed is a 404 like a missing one
    (`conn`: the request's read connection, `deps.Reads`)."""
    entry = _catalogue_entry(engine, principal, dataset_id, conn)
    return entry.ds, entry.access


def read_decision(engine: Engine, principal: Principal, dataset_id: str, conn: Connection | None = None) -> ReadDecision:
    """`dataset_for_read`'s answer with when it changes by the clock alone."""
    entry = _catalogue_entry(engine, principal, dataset_id, conn)
    if not entry.access.visible:
        raise Forbidden(
            "access.application_required",
            f"无权读取数据集“{entry.ds.id}”的数据，可提交数据共享申请",
            f"no access to the data of dataset '{entry.ds.id}'; you may apply for it",
            sharing_class=entry.ds.sharing_class,
        )
    return entry


def dataset_for_read(
    engine: Engine, principal: Principal, dataset_id: str, conn: Connection | None = None
) -> tuple[catalog.Dataset, Access]:
    """The dataset and what the caller may read of its data (403 with a hint to apply when listed only)."""
    entry = read_decision(engine, principal, dataset_id, conn)
    return entry.ds, entry.access


def dataset_metadata(ds: catalog.Dataset, access: Access) -> dict[str, Any]:
    """A dataset's metadata as this caller may see it (the field list follows the field rules)."""
    data = ds.to_dict()
    names = access.field_names
    if names is not None:
        data["fields"] = [f for f in data["fields"] if f["name"] in names]
    masked = access.masked_fields()
    for f in data["fields"]:
        if f["name"] in masked:
            f["masked"] = True
    if not access.visible:
        data["access"] = {"rows": "none", "basis": [], "can_apply": ds.sharing_class != "not_shared"}
        data["extent"] = None  # where the data lies is data too
        return data
    data["access"] = {"rows": "all" if access.rows is None else "restricted", "basis": list(access.bases)}
    return data


def shape_feature(access: Access, feat: StoredFeature) -> StoredFeature | None:
    """The feature as this caller may see it, or None when no clause admits the row."""
    if access.unrestricted:
        return feat
    geom = shapely.from_wkb(feat.wkb) if feat.wkb is not None and any(c.rows and c.rows.areas for c in access.clauses) else None
    props = access.shape(feat.props, geom)
    return None if props is None else dataclasses.replace(feat, props=props)


def read_features(
    engine: Engine,
    principal: Principal,
    ds: catalog.Dataset,
    access: Access,
    version: int | None = None,
    *,
    bbox: BBox | None = None,
    where: SQLFilter | None = None,
    order: Sequence[tuple[str, str, bool]] = (),
    limit: int | None = None,
    offset: int = 0,
    action: str = "data.read",
    detail: dict[str, Any] | None = None,
    audit_public: bool = False,
    as_text: bool = False,
    conn: Connection | None = None,
    defer: Defer | None = None,
) -> Iterator[StoredFeature]:
    """The features of a version this caller may read, shaped; audited when the data is not public
    (or always, with `audit_public`: a download is recorded whatever it holds). `conn`: the request's
    read connection, for a page (see `FeatureStore.iter_features`'s `read_conn`).

    `where` and `order` are the caller's own filter and sort (already translated); the policy's
    row restriction is added here, never left to the route. `as_text`: the caller only writes the
    features out as GeoJSON in EPSG:4490 (see `FeatureStore.iter_features`); taken only when the
    access shapes nothing (no row restriction, no field dropped or masked), so the stored text is
    exactly what the caller may see. `defer`: where the audit entry goes to be written later (`deps.Reads.after_close`:
    once `conn` is back in the pool); without it the entry is written when the read ends.
    """
    if not access.visible:
        raise not_found(ds.id)
    v = readable_version(ds, access, version)
    feats = feature_store_for(engine).iter_features(
        ds.id, v, bbox=bbox, rows=access.rows, where=where, order=order, limit=limit, offset=offset,
        as_text=as_text and access.unrestricted, read_conn=conn,
    )
    return _audited(engine, principal, ds, access, v, feats, action, {**(detail or {}), "bbox": bbox, "limit": limit, "offset": offset},
                    audit_public, defer)


def count_features(
    engine: Engine, ds: catalog.Dataset, access: Access, version: int, *, bbox: BBox | None = None, where: SQLFilter | None = None
) -> int:
    """How many rows of a version match, within what the caller may see (counts are not audited reads)."""
    if not access.visible:
        raise not_found(ds.id)
    version = readable_version(ds, access, version)
    return feature_store_for(engine).count(ds.id, version, bbox=bbox, rows=access.rows, where=where)


def _audited(
    engine: Engine,
    principal: Principal,
    ds: catalog.Dataset,
    access: Access,
    version: int,
    feats: Iterator[StoredFeature],
    action: str,
    detail: dict[str, Any],
    audit_public: bool = False,
    defer: Defer | None = None,
) -> Iterator[StoredFeature]:
    count = 0
    whole = access.unrestricted  # decided once: it is the same for every row of the read
    try:
        for feat in feats:
            shaped = feat if whole else shape_feature(access, feat)
            if shaped is not None:
                count += 1
                yield shaped
    finally:
        if access.audited or audit_public:
            write_or_defer(defer, functools.partial(
                audit.record,
                engine,
                principal,
                action,
                dataset_id=ds.id,
                version=version,
                detail={**{k: v for k, v in detail.items() if v is not None}, "count": count, **access_detail(access)},
            ))


def write_or_defer(defer: Defer | None, entry: Callable[[], object]) -> None:
    """Write an audit entry now, or hand it to `defer` (a read on the request's connection: written once it is back)."""
    if defer is None:
        entry()
    else:
        defer(entry)


def access_detail(access: Access) -> dict[str, Any]:
    """What an audit entry says about the access a read was made with."""
    names = access.field_names
    return {
        "rows": "all" if access.rows is None else "restricted",
        "fields": sorted(names) if names is not None else "all",
        "masked": sorted(access.masked_fields()),
        "basis": list(access.bases),
    }


def get_feature(
    engine: Engine, principal: Principal, ds: catalog.Dataset, access: Access, version: int | None, fkey: str
) -> StoredFeature | None:
    v = readable_version(ds, access, version)
    feat = feature_store_for(engine).get_feature(ds.id, v, fkey, rows=access.rows)
    shaped = shape_feature(access, feat) if feat is not None else None
    if access.audited:
        audit.record(engine, principal, "data.read", dataset_id=ds.id, version=v, detail={"feature": fkey, "count": int(shaped is not None)})
    return shaped


@dataclasses.dataclass(frozen=True)
class LayerAt:
    """One readable dataset's features at a point, shaped for the caller."""

    dataset: catalog.Dataset
    access: Access
    version: int
    features: list[tuple[StoredFeature, shapely.Geometry]]


def _covers_extent(extent: Sequence[float] | None, box: BBox) -> bool:
    if not extent or len(extent) != 4:
        return True  # no extent recorded: look
    return extent[0] <= box[2] and extent[2] >= box[0] and extent[1] <= box[3] and extent[3] >= box[1]


def features_at(
    engine: Engine,
    principal: Principal,
    lon: float,
    lat: float,
    readable: Sequence[tuple[catalog.Dataset, Access]],
    *,
    tolerance_m: float = 2.0,
    action: str = "data.here",
    detail: dict[str, Any] | None = None,
    conn: Connection | None = None,
    defer: Defer | None = None,
) -> tuple[list[LayerAt], int]:
    """Every readable dataset's features at a point (EPSG:4490 lon/lat): (layers with features, datasets checked).

    Each readable dataset (one Viewer decided them all) is read at its current version through the
    store with the policy's row filter (a small box around the point, on the spatial index), then
    tested exactly: polygons must cover the point, points and lines lie within `tolerance_m`.
    Features are shaped like any other read. One audit entry covers the whole request, listing the
    non-public datasets read with their counts; none when every dataset read was public. `conn`: the
    request's read connection (the features are read on it). `readable`: the caller's `readable_datasets` (a
    published edition as seen: never a version pending), as `access.decisions.decide_layers` took them.
    """
    dlat = tolerance_m / 110_574.0
    dlon = tolerance_m / (111_320.0 * max(math.cos(math.radians(lat)), 1e-6))
    box: BBox = (lon - dlon, lat - dlat, lon + dlon, lat + dlat)
    point = shapely.Point(lon, lat)
    near = [(ds, access) for ds, access in readable if _covers_extent(ds.extent, box)]
    found_per_layer = feature_store_for(engine).features_in_box(
        [(ds.id, ds.current_version, access.rows) for ds, access in near], box, conn
    )
    layers: list[LayerAt] = []
    audited: list[dict[str, Any]] = []
    for (ds, access), feats in zip(near, found_per_layer):
        found = []
        for feat in feats:
            geom = shapely.from_wkb(feat.wkb) if feat.wkb is not None else None
            if geom is None or not _at_point(geom, point, lon, lat, tolerance_m):
                continue
            shaped = shape_feature(access, feat)
            if shaped is not None:
                found.append((shaped, geom))
        if access.audited:
            audited.append({"dataset": ds.id, "version": ds.current_version, "count": len(found), **access_detail(access)})
        if found:
            layers.append(LayerAt(ds, access, ds.current_version, found))
    if audited:  # (`defer`: as read_features')
        write_or_defer(defer, functools.partial(
            audit.record,
            engine,
            principal,
            action,
            detail={**(detail or {}), "point": [lon, lat], "count": sum(a["count"] for a in audited), "datasets": audited},
        ))
    return layers, len(readable)


def _at_point(geom: shapely.Geometry, point: shapely.Point, lon: float, lat: float, tolerance_m: float) -> bool:
    """Polygons: cover the point; points and lines: within `tolerance_m` metres (local plane)."""
    if geom.is_empty:
        return False
    polygonal = shapely.get_type_id(geom) in (3, 6)
    if polygonal:
        return bool(shapely.covers(geom, point))
    kx = 111_320.0 * math.cos(math.radians(lat))
    local = shapely.transform(geom, lambda xy: np.column_stack(((xy[:, 0] - lon) * kx, (xy[:, 1] - lat) * 110_574.0)))
    if shapely.get_type_id(geom) == 7:  # a collection: its polygons cover, its other parts are near
        parts = shapely.get_parts(geom)
        if any(shapely.get_type_id(p) in (3, 6) and shapely.covers(p, point) for p in parts):
            return True
    return bool(shapely.dwithin(local, shapely.Point(0.0, 0.0), tolerance_m))


# -- permissions to change things ----------------------------------------------------------------
def require_signed_in(principal: Principal) -> None:
    if principal.kind == "anonymous":
        raise auth_required()


def forbidden(zh: str = "无权执行此操作", en: str = "not allowed to perform this operation") -> Forbidden:
    return Forbidden("auth.forbidden", zh, en)


def require_role(principal: Principal, *roles: str, scope: str = "manage") -> None:
    require_signed_in(principal)
    if principal.kind == "system":
        return
    if not principal.has_role(*roles) or not principal.allows(scope):
        raise forbidden()


def require_dataset_admin(principal: Principal, ds: catalog.Dataset) -> None:
    """Metadata, rollback and application decisions: the owner unit's data administrator."""
    require_role(principal, DATA_ADMIN)
    if principal.kind != "system" and principal.unit != ds.owner_unit:
        raise forbidden(
            f"只有数据集“{ds.id}”的权属单位（{ds.owner_unit}）的数据管理员可以执行此操作",
            f"only a data administrator of dataset '{ds.id}''s owner unit ({ds.owner_unit}) may do this",
        )


def submitting_unit(principal: Principal, unit: str | None) -> str | None:
    """The unit a submission is made for: the caller's own (the local operator may name any)."""
    if principal.kind == "system":
        return unit
    require_role(principal, *SUBMIT_ROLES, scope="submit")
    if unit and unit != principal.unit:
        raise forbidden(
            f"只能以本单位（{principal.unit}）的名义汇交，不能代表 {unit}",
            f"you may submit only for your own unit ({principal.unit}), not for {unit}",
        )
    return principal.unit


def may_see_submissions_of(principal: Principal, unit: str | None) -> bool:
    if principal.kind == "system":
        return True
    return principal.kind == "user" and principal.unit == unit and principal.has_role(SUBMITTER, REVIEWER, DATA_ADMIN)


def feature_for_edit(engine: Engine, principal: Principal, ds: catalog.Dataset, fkey: str) -> StoredFeature | None:
    """The current, unshaped feature for an editor of the owner unit (a PATCH merges into the real values).

    Only those who may submit the whole dataset get here, so they see nothing they could not
    already replace; the read is audited like any other.
    """
    unit = submitting_unit(principal, ds.owner_unit)
    catalog.check_owner(ds, unit)
    feat = feature_store_for(engine).get_feature(ds.id, ds.current_version, fkey)
    audit.record(engine, principal, "data.read", dataset_id=ds.id, version=ds.current_version, detail={"feature": fkey, "purpose": "edit"})
    return feat
