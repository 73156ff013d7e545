"""Public editions (公开版): desensitised, read-only releases of a dataset for the internet.

A data administrator sets a release profile on a master dataset: the fields kept (a whitelist),
the classes and attribute values removed, the precision tolerance (default 50 m), optional
GCJ-02 output and optional statistics-only aggregation, and the attribution/审图号 text.
Building applies the profile to one version of the master and writes the result as a new
version of the master's edition dataset (`<master>-public`), versioned like every dataset and
read-only to everything but this module. Each build is an *edition*, pending until the
data administrator approves it; the approved one is what the public reads (the gate pins it),
and an older approved edition stays published until a newer one is approved.

The build streams: the master is read through the gate in batches (an audited read), each batch
is filtered and generalised (desensitise.py, one metric CRS for the whole layer) and spooled to
a file under the data folder; only then is one write transaction opened that stages the rows,
merges them as the new version, reads them back and checks them (no removed class present, no
field outside the whitelist, no coordinate off the tolerance grid, every geometry valid, area
per class before and after). An edition whose check fails is not written.

An edition is stored in CGCS2000 like every dataset (invariant 1; DOMAIN.md §4: GCJ-02 is never
written to the store). A profile's `gcj02` makes GCJ-02 an additional output of that edition's
versions (OGC API `crs=`, tiles `gcj02=true`, downloads `crs=GCJ02`): `offers_gcj02` says which,
and the check report proves the GCJ-02 output valid and aligned (it maps back onto the stored
geometry to within a millimetre).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Connection, Engine

from landcloud.access import audit, gate
from landcloud.access import units as units_mod
from landcloud.access.policy import Access
from landcloud.access.principal import Principal
from landcloud.catalog import datasets as catalog
from landcloud.catalog import search
from landcloud.catalog.tables import datasets as datasets_table
from landcloud.config import Settings
from landcloud.geo.area import survey_areas
from landcloud.geo.gcj02 import geometry_gcj02_to_wgs84, geometry_wgs84_to_gcj02
from landcloud.messages import Conflict, LandcloudError, NotFound
from landcloud.publish import desensitise
from landcloud.publish.tables import editions as editions_table
from landcloud.publish.tables import release_profiles
from landcloud.store import tilegeoms
from landcloud.store.db import connection
from landcloud.store.features import StageRow, feature_store_for

SUFFIX = "-public"
GCJ02_CHECK_EPS_M = 1e-3  # the GCJ-02 inverse is iterated to 1e-9° (~0.1 mm): the output maps back to within 1 mm
METRES_PER_DEGREE = 111_320.0  # the upper bound of a degree (of latitude, or of longitude at the equator) in metres
LISTED_KEYS = 50  # feature keys quoted in a report per reason


# ---------------------------------------------------------------- the profile


class AttributeFilter(BaseModel):
    """Remove the features whose `field` (as text) is one of `values`."""

    model_config = ConfigDict(extra="forbid")
    field: str
    values: list[str] = Field(min_length=1)


class Aggregation(BaseModel):
    """A statistics-only release, no parcel geometry: area per class per grid cell (`grid`, `cell_m` metres) or
    per administrative unit (`admin`: the first `level` digits of `code_field`, 6 = county), with the unit's
    boundary, generalised to the tolerance, as its geometry when the unit list holds one."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["grid", "admin"] = "grid"
    cell_m: float = Field(default=1000.0, gt=0)
    code_field: str | None = Field(default=None, description="admin: the administrative code field, e.g. ZLDWDM")
    level: Literal[2, 4, 6, 9, 12] = 6

    def field_names(self, class_field: str | None) -> list[str]:
        first = ["cell"] if self.kind == "grid" else ["unit", "unit_name"]
        return [*first, class_field or "class", "area_m2"]


class ReleaseProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[str] = Field(default_factory=list, description="fields kept (a whitelist): every other field is dropped")
    class_field: str | None = Field(default=None, description="the class code field, e.g. DLBM")
    remove_classes: list[str] = Field(default_factory=list, description="classes removed; a 2-digit code removes its whole first-level class")
    remove_where: list[AttributeFilter] = Field(default_factory=list)
    tolerance_m: float = Field(default=desensitise.DEFAULT_TOLERANCE_M, gt=0, le=100_000)
    gcj02: bool = Field(default=False, description="offer GCJ-02 output (stored in CGCS2000) for overlay on GCJ-02 basemaps")
    aggregate: Aggregation | None = None
    attribution: str = ""
    review_number: str = Field(default="", description="审图号")
    title: str | None = None


def parse_profile(data: Any) -> ReleaseProfile:
    try:
        return ReleaseProfile.model_validate(data)
    except ValidationError as exc:
        raise LandcloudError(
            "profile.invalid", f"发布配置无效：{exc.errors()[0]['msg']}", f"invalid release profile: {exc.errors()[0]['msg']}",
            errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
        ) from None


def check_profile(ds: catalog.Dataset, profile: ReleaseProfile) -> None:
    """The profile must name the dataset's own fields and may not publish a sensitive one."""
    names = {f["name"] for f in ds.fields}
    named = set(profile.fields) | {f.field for f in profile.remove_where} | ({profile.class_field} if profile.class_field else set())
    if profile.aggregate is not None and profile.aggregate.kind == "admin":
        if not profile.aggregate.code_field:
            raise LandcloudError("profile.code_field_required", "按行政区统计需要指明行政区代码字段（code_field）",
                                 "aggregating by administrative unit needs the code field (code_field)")
        named.add(profile.aggregate.code_field)
    unknown = sorted(named - names)
    if unknown:
        raise LandcloudError(
            "profile.unknown_field", f"数据集“{ds.id}”没有字段：{', '.join(unknown)}", f"dataset '{ds.id}' has no field(s): {', '.join(unknown)}",
            fields=unknown,
        )
    sensitive = sorted({f["name"] for f in ds.fields if f.get("sensitive")} & set(profile.fields))
    if sensitive:
        raise LandcloudError(
            "profile.sensitive_field", f"敏感字段不能公开：{', '.join(sensitive)}", f"sensitive fields cannot be published: {', '.join(sensitive)}",
            fields=sensitive,
        )
    if (profile.remove_classes or profile.aggregate) and not profile.class_field:
        raise LandcloudError(
            "profile.class_field_required", "按类别删除或统计需要指明类别字段（class_field）",
            "removing or aggregating by class needs the class field (class_field)",
        )


def edition_id(source_id: str) -> str:
    return source_id[: 64 - len(SUFFIX)] + SUFFIX


def require_master(ds: catalog.Dataset) -> None:
    if ds.edition_of is not None:
        raise Conflict(
            "edition.of_edition", f"“{ds.id}”本身是公开版，不能再发布公开版", f"'{ds.id}' is itself a public edition; it has no editions",
        )


def set_profile(engine: Engine, principal: Principal, dataset_id: str, data: Any) -> dict[str, Any]:
    ds, _ = gate.dataset_for_catalogue(engine, principal, dataset_id)
    gate.require_dataset_admin(principal, ds)
    require_master(ds)
    profile = parse_profile(data)
    check_profile(ds, profile)
    value = profile.model_dump()
    with engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            conn.execute(release_profiles.delete().where(release_profiles.c.dataset_id == ds.id))
            conn.execute(release_profiles.insert().values(dataset_id=ds.id, profile=value, updated_by=principal.actor, updated_at=catalog.now()))
            audit.record(engine, principal, "edition.profile", dataset_id=ds.id, detail={"profile": value}, conn=conn)
    return value


def stored_profile(engine: Engine | Connection, dataset_id: str) -> ReleaseProfile | None:
    with connection(engine) as c:
        row = c.execute(sa.select(release_profiles.c.profile).where(release_profiles.c.dataset_id == dataset_id)).first()
    return ReleaseProfile.model_validate(row[0]) if row else None


def get_profile(engine: Engine, principal: Principal, dataset_id: str) -> dict[str, Any]:
    ds, _ = gate.dataset_for_catalogue(engine, principal, dataset_id)
    gate.require_dataset_admin(principal, ds)
    profile = stored_profile(engine, ds.id)
    if profile is None:
        raise NotFound("profile.not_found", f"数据集“{ds.id}”尚未配置发布配置", f"dataset '{ds.id}' has no release profile")
    return profile.model_dump()


# ---------------------------------------------------------------- building


@dataclass
class Tally:
    """What happened to the master's features, for the check report."""

    source_count: int = 0
    removed_class: int = 0
    removed_filter: int = 0
    collapsed: int = 0
    collapsed_keys: list[str] = field(default_factory=list)
    collapsed_area_m2: float = 0.0
    removed_keys: set[str] = field(default_factory=set)  # features removed by class or value: none may appear in the edition
    area_before: Counter[str] = field(default_factory=Counter)
    area_after: Counter[str] = field(default_factory=Counter)
    grid: dict[tuple[Any, str], float] = field(default_factory=dict)  # (cell or unit code, class) → m²


def _class_of(props: dict[str, Any], class_field: str | None) -> str:
    if not class_field:
        return "*"
    v = props.get(class_field)
    return "" if v is None else str(v).strip()


def _keep_mask(props: list[dict[str, Any]], profile: ReleaseProfile, tally: Tally) -> np.ndarray:
    keep = np.ones(len(props), dtype=bool)
    if profile.class_field and profile.remove_classes:
        by_class = desensitise.remove_classes(props, profile.class_field, profile.remove_classes)
        tally.removed_class += int(np.count_nonzero(~by_class))
        keep &= by_class
    for flt in profile.remove_where:
        values = set(flt.values)
        hit = np.array([p.get(flt.field) is not None and str(p.get(flt.field)).strip() in values for p in props], dtype=bool)
        tally.removed_filter += int(np.count_nonzero(hit & keep))
        keep &= ~hit
    return keep


def _layer_epsg(extent: list[float] | None) -> int:
    if not extent:
        raise LandcloudError("edition.empty_source", "源数据版本没有几何，不能发布公开版", "the source version has no geometry; nothing to publish")
    return desensitise.layer_epsg(np.array([shapely.box(*extent)], dtype=object))


def apply_profile(
    fkeys: list[str], props: list[dict[str, Any]], geoms: np.ndarray, profile: ReleaseProfile, epsg: int, tally: Tally
) -> list[tuple[str, dict[str, Any], Any]]:
    """One batch of master features → the edition's (key, properties, geometry) rows; no I/O.

    Removes declared classes and attribute values, keeps whitelisted fields, generalises to the
    tolerance in the layer's plane `epsg` (collapsed features are dropped and counted); the rows
    stay CGCS2000 (GCJ-02 is an output, never stored); for statistics-only profiles it only adds
    the batch to the grid totals.
    """
    tally.source_count += len(fkeys)
    for p, a in zip(props, survey_areas(geoms)):
        tally.area_before[_class_of(p, profile.class_field)] += float(a)
    keep = _keep_mask(props, profile, tally)
    tally.removed_keys.update(fkeys[i] for i in np.nonzero(~keep)[0])
    idx = np.nonzero(keep)[0]
    if profile.aggregate is not None:
        _aggregate(geoms[idx], [props[i] for i in idx], profile, epsg, tally)
        return []
    res = desensitise.generalise(geoms[idx], profile.tolerance_m, epsg=epsg)
    kept_props = desensitise.filter_fields([props[i] for i in idx], set(profile.fields))
    rows = []
    for j, i in enumerate(idx):
        tally.area_after[_class_of(props[i], profile.class_field)] += float(res.area_after_m2[j])
        if res.collapsed[j]:
            tally.collapsed += 1
            tally.collapsed_area_m2 += float(res.area_before_m2[j])
            if len(tally.collapsed_keys) < LISTED_KEYS:
                tally.collapsed_keys.append(fkeys[i])
            continue
        rows.append((fkeys[i], kept_props[j], res.geoms[j]))
    return rows


def _spool(engine: Engine, principal: Principal, ds: catalog.Dataset, access: Access, version: int, profile: ReleaseProfile,
           epsg: int, spool: Path, batch_size: int) -> Tally:
    """Read the master version through the gate, desensitise it batch by batch, write the rows to `spool`."""
    feats = gate.read_features(engine, principal, ds, access, version, action="edition.build")
    tally = Tally()
    try:
        with spool.open("w", encoding="utf-8") as out:
            while batch := list(islice(feats, batch_size)):
                geoms = shapely.from_wkb(np.array([f.wkb for f in batch], dtype=object), on_invalid="ignore")
                for fkey, props, geom in apply_profile([f.fkey for f in batch], [f.props for f in batch], geoms, profile, epsg, tally):
                    out.write(json.dumps([fkey, props, shapely.to_wkb(geom).hex()], ensure_ascii=False, default=str) + "\n")
    finally:
        feats.close()  # type: ignore[attr-defined]
    return tally


def _aggregate(geoms: np.ndarray, props: list[dict[str, Any]], profile: ReleaseProfile, epsg: int, tally: Tally) -> None:
    agg = profile.aggregate
    assert agg is not None
    codes = [_class_of(p, profile.class_field) for p in props]
    if agg.kind == "grid":
        pieces = [((c["cell"], c["code"]), c["area_m2"]) for c in desensitise.aggregate_grid(geoms, codes, agg.cell_m, epsg=epsg)]
    else:
        units = [str(p.get(agg.code_field or "") or "").strip()[: agg.level] for p in props]
        pieces = [((u, c), float(a)) for u, c, a in zip(units, codes, survey_areas(geoms))]
    for key, area in pieces:
        tally.grid[key] = tally.grid.get(key, 0.0) + area
        tally.area_after[key[1]] += area


def _write_aggregate(engine: Engine, spool: Path, profile: ReleaseProfile, epsg: int, tally: Tally) -> None:
    """The statistics-only release: one feature per (cell or unit, class), the cell or the generalised unit boundary as its geometry."""
    agg = profile.aggregate
    assert agg is not None
    inverse = desensitise._transformers(epsg)[1]
    outlines: dict[str, tuple[Any, str]] = {}

    def outline(key: Any) -> tuple[Any, dict[str, Any]]:
        if agg.kind == "grid":
            c, r = key
            box = shapely.box(c * agg.cell_m, r * agg.cell_m, (c + 1) * agg.cell_m, (r + 1) * agg.cell_m)
            return desensitise._project(np.array([box], dtype=object), inverse)[0], {"cell": f"{c}_{r}"}
        if key not in outlines:
            boundary = units_mod.boundary(engine, key)
            geom = desensitise.generalise([boundary], profile.tolerance_m, epsg=epsg).geoms[0] if boundary is not None else None
            try:
                name = str(units_mod.get_unit(engine, key)["name"])
            except NotFound:
                name = ""
            outlines[key] = (geom, name)
        geom, name = outlines[key]
        return geom, {"unit": key, "unit_name": name}

    with spool.open("w", encoding="utf-8") as out:
        for (key, code), area in sorted(tally.grid.items(), key=lambda t: (str(t[0][0]), t[0][1])):
            geom, props = outline(key)
            props.update({profile.class_field or "class": code, "area_m2": round(area, 2)})
            fkey = f"{props.get('cell') or props.get('unit')}_{code}"
            out.write(json.dumps([fkey, props, shapely.to_wkb(geom).hex() if geom is not None else None], ensure_ascii=False) + "\n")


def _spooled_batches(spool: Path, batch_size: int) -> Iterator[list[StageRow]]:
    with spool.open(encoding="utf-8") as fh:
        while lines := list(islice(fh, batch_size)):
            rows = [json.loads(line) for line in lines]
            geoms = shapely.from_wkb(np.array([bytes.fromhex(r[2]) if r[2] else None for r in rows], dtype=object))
            wkbs = shapely.to_wkb(geoms, output_dimension=3)
            bounds = shapely.bounds(geoms)
            areas = survey_areas(geoms)
            out = []
            for k, (fkey, props, hexwkb) in enumerate(rows):
                props_json = json.dumps(props, ensure_ascii=False, default=str)
                chash = hashlib.blake2b(props_json.encode() + (wkbs[k] or b""), digest_size=16).hexdigest()
                box = tuple(float(x) for x in bounds[k]) if hexwkb else None
                out.append(StageRow(fkey, props_json, wkbs[k], box, float(areas[k]) if hexwkb else None, chash))
            yield out


def _edition_fields(ds: catalog.Dataset, profile: ReleaseProfile) -> list[dict[str, Any]]:
    if profile.aggregate is not None:
        aliases = {"cell": "格网", "unit": "行政区代码", "unit_name": "行政区名称", "area_m2": "面积（平方米）"}
        return [{"name": n, "type": "real" if n == "area_m2" else "string", "alias_zh": aliases.get(n, "类别")}
                for n in profile.aggregate.field_names(profile.class_field)]
    keep = set(profile.fields)
    return [{k: v for k, v in f.items() if k != "sensitive"} for f in ds.fields if f["name"] in keep]


def _ensure_edition_dataset(conn: Connection, ds: catalog.Dataset, profile: ReleaseProfile) -> catalog.Dataset:
    eid = edition_id(ds.id)
    title = profile.title or f"{ds.title}（公开版）"
    edition = catalog.get_dataset(conn, eid)
    if edition is None:
        key_field = ds.key_field if ds.key_field in profile.fields and profile.aggregate is None else None
        edition = catalog.create_dataset(
            conn, eid, ds.owner_unit, title=title, fields=_edition_fields(ds, profile), key_field=key_field, theme=ds.theme,
            extra={},
        )
    elif edition.edition_of != ds.id:
        raise Conflict("edition.id_taken", f"数据集标识“{eid}”已被占用", f"dataset id '{eid}' is already taken by another dataset")
    description = f"{ds.title}的公开版（脱密处理）。Public edition of {ds.id}."
    if profile.attribution:
        description += f"\n{profile.attribution}"
    if profile.review_number:
        description += f"\n审图号：{profile.review_number}"
    conn.execute(
        datasets_table.update().where(datasets_table.c.id == eid).values(
            edition_of=ds.id, title=title, description=description, openness="open", security_level="public",
            sharing_class="unconditional", extra={**edition.extra, "attribution": profile.attribution,
                                                   "review_number": profile.review_number,
                                                   "coordinates": "CGCS2000", "gcj02_output": profile.gcj02},
            updated_at=catalog.now(),
        )
    )
    return catalog.require_dataset(conn, eid)


def build(
    engine: Engine, settings: Settings, principal: Principal, source_id: str, version: int | None = None
) -> dict[str, Any]:
    """Apply the source's profile to one of its versions (default the newest): a new edition, pending approval."""
    ds, access = gate.dataset_for_read(engine, principal, source_id)
    gate.require_dataset_admin(principal, ds)
    require_master(ds)
    profile = stored_profile(engine, ds.id)
    if profile is None:
        raise NotFound("profile.not_found", f"数据集“{ds.id}”尚未配置发布配置", f"dataset '{ds.id}' has no release profile")
    check_profile(ds, profile)
    v = gate.readable_version(ds, access, version)
    epsg = _layer_epsg(catalog.get_version(engine, ds.id, v).extent)
    work = Path(settings.data_dir) / "editions"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        spool = Path(tmp) / "edition.jsonl"
        tally = _spool(engine, principal, ds, access, v, profile, epsg, spool, settings.batch_size)
        if profile.aggregate is not None:
            _write_aggregate(engine, spool, profile, epsg, tally)
        return _write(engine, principal, ds, v, profile, epsg, spool, tally, settings.batch_size)


def _write(engine: Engine, principal: Principal, ds: catalog.Dataset, v: int, profile: ReleaseProfile, epsg: int,
           spool: Path, tally: Tally, batch_size: int) -> dict[str, Any]:
    store = feature_store_for(engine)
    with engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            edition = _ensure_edition_dataset(conn, ds, profile)
            new_version = edition.current_version + 1
            store.begin_stage(conn)
            for rows in _spooled_batches(spool, batch_size):
                store.stage(conn, rows)
            counts = store.merge_stage(conn, edition.id, new_version, "replace")
            feature_count, extent = store.summary(conn, edition.id, new_version)
            report = check(conn, edition.id, new_version, profile, epsg, tally)
            if not report["passed"]:
                raise Conflict("edition.check_failed", "公开版未通过检查，未生成", "the edition failed its checks and was not written", report=report)
            fields = _edition_fields(ds, profile)
            catalog.record_version(
                conn, edition, version=new_version, mode="edition", unit=ds.owner_unit, submission_id=None,
                feature_count=feature_count, added=counts.added, removed=counts.removed, changed=counts.changed, extent=extent,
                # the version keeps its own fields: the dataset's follow the newest build, maybe still pending approval
                source={"edition_of": ds.id, "source_version": v, "geometry_type": _geometry_type(conn, ds.id, v, profile),
                        "fields": fields},
                report={"status": "accepted", "summary": {"feature_count": feature_count, "checks_passed": True}, "edition": report},
                fields=fields, note=f"edition of {ds.id} v{v}",
            )
            eid = conn.execute(
                editions_table.insert().values(
                    dataset_id=edition.id, version=new_version, source_dataset_id=ds.id, source_version=v, profile=profile.model_dump(),
                    report=report, status="pending", created_by=principal.actor, created_at=catalog.now(),
                ).returning(editions_table.c.id)
            ).scalar_one()
            audit.record(engine, principal, "edition.build", dataset_id=edition.id, version=new_version,
                         detail={"edition": eid, "source": ds.id, "source_version": v, "feature_count": feature_count}, conn=conn)
    store.refresh_statistics(counts.added + counts.changed + counts.removed)  # committed; PostGIS: a large write analysed
    tilegeoms.build_quietly(engine, edition.id, new_version)
    return get_edition(engine, eid)


def _geometry_type(conn: Connection, source_id: str, v: int, profile: ReleaseProfile) -> str | None:
    if profile.aggregate is not None:
        return "Polygon"
    return (catalog.get_version(conn, source_id, v).source or {}).get("geometry_type")


def gcj02_output_check(geoms: np.ndarray) -> tuple[int, float]:
    """The GCJ-02 output of stored geometries: how many are invalid, and how far (m) its inverse lands from them."""
    present = geoms[~shapely.is_missing(geoms)]
    out = geometry_wgs84_to_gcj02(present)
    invalid = int(np.count_nonzero(~shapely.is_valid(out)))
    back = shapely.get_coordinates(geometry_gcj02_to_wgs84(out))
    worst = float(np.abs(back - shapely.get_coordinates(present)).max()) * METRES_PER_DEGREE if len(back) else 0.0
    return invalid, worst


def check(conn: Connection, dataset_id: str, version: int, profile: ReleaseProfile, epsg: int, tally: Tally) -> dict[str, Any]:
    """Read the written edition back and prove the rules held; the report quotes every count."""
    store = feature_store_for(conn.engine)
    allowed = set(profile.aggregate.field_names(profile.class_field) if profile.aggregate is not None else profile.fields)
    class_leaks = extra_fields = off_grid = invalid = count = gcj_invalid = 0
    gcj_worst_m = 0.0
    leak_keys: list[str] = []
    field_names: set[str] = set()
    stored_area = 0.0
    feats = store.iter_features(dataset_id, version, conn=conn)
    while batch := list(islice(feats, 5000)):
        count += len(batch)
        props = [f.props for f in batch]
        for p in props:
            field_names |= set(p)
        extra_fields += sum(1 for p in props if set(p) - allowed)
        # a removed feature is found by its key (also when the class field is not published) or by its class
        keep = np.array([f.fkey not in tally.removed_keys for f in batch], dtype=bool)
        if profile.class_field and profile.remove_classes:
            keep &= desensitise.remove_classes(props, profile.class_field, profile.remove_classes)
        class_leaks += int(np.count_nonzero(~keep))
        leak_keys += [f.fkey for f, k in zip(batch, keep) if not k][: LISTED_KEYS - len(leak_keys)]
        geoms = shapely.from_wkb(np.array([f.wkb for f in batch], dtype=object), on_invalid="ignore")
        invalid += int(np.count_nonzero(~shapely.is_missing(geoms) & ~shapely.is_valid(geoms)))
        if profile.aggregate is None or profile.aggregate.kind == "admin":  # grid cells are the grid itself
            off_grid += desensitise.check_precision(geoms, profile.tolerance_m, epsg, eps_m=1e-6)
        if profile.gcj02:
            bad, worst = gcj02_output_check(geoms)
            gcj_invalid += bad
            gcj_worst_m = max(gcj_worst_m, worst)
        if profile.aggregate is not None:
            stored_area += sum(float(p.get("area_m2") or 0) for p in props)
        else:
            stored_area += float(np.sum(survey_areas(geoms)))
    removed = set(profile.remove_classes)
    per_class = []
    for code in sorted(set(tally.area_before) | set(tally.area_after)):
        before, after = tally.area_before.get(code, 0.0), tally.area_after.get(code, 0.0)
        per_class.append({"class": code, "area_before_m2": round(before, 2), "area_after_m2": round(after, 2),
                          "change_rel": round((after - before) / before, 6) if before else None})
    checks = {
        "removed_classes_absent": class_leaks == 0,
        "fields_within_whitelist": extra_fields == 0,
        "coordinates_on_tolerance_grid": off_grid == 0,
        "geometry_valid": invalid == 0,
        # what was written is what was computed (the per-class areas below describe the stored edition)
        "stored_area_matches": math.isclose(stored_area, sum(tally.area_after.values()), rel_tol=1e-6, abs_tol=1.0),
    }
    if profile.gcj02:  # the GCJ-02 output is valid and is the stored geometry shifted, nothing else
        checks["gcj02_output_valid"] = gcj_invalid == 0
        checks["gcj02_output_aligned"] = gcj_worst_m <= GCJ02_CHECK_EPS_M
    return {
        "passed": all(checks.values()),
        "checks": checks,
        "source_feature_count": tally.source_count,
        "feature_count": count,
        "removed": {"by_class": tally.removed_class, "by_filter": tally.removed_filter, "classes": sorted(removed)},
        "collapsed": {"count": tally.collapsed, "area_m2": round(tally.collapsed_area_m2, 2), "keys": tally.collapsed_keys},
        "class_leaks": class_leaks,
        "class_leak_keys": leak_keys,
        "fields": sorted(field_names),
        "fields_outside_whitelist": extra_fields,
        "off_grid_coordinates": off_grid,
        "invalid_geometries": invalid,
        "tolerance_m": profile.tolerance_m,
        "grid_epsg": epsg,
        "coordinates": "CGCS2000",
        "gcj02_output": {"invalid_geometries": gcj_invalid, "max_roundtrip_m": round(gcj_worst_m, 6)} if profile.gcj02 else None,
        "aggregate": profile.aggregate.model_dump() if profile.aggregate else None,
        "area_total_m2": {"before": round(sum(tally.area_before.values()), 2), "after": round(stored_area, 2)},
        "area_per_class": per_class,
    }


# ---------------------------------------------------------------- editions and approval


def _edition_dict(row: Any, with_report: bool = True) -> dict[str, Any]:
    m = dict(row._mapping)
    for k in ("created_at", "decided_at"):
        m[k] = m[k].isoformat() if m[k] else None
    if not with_report:
        m["report"] = {"passed": m["report"].get("passed"), "checks": m["report"].get("checks")}
    return m


def get_edition(engine: Engine | Connection, eid: int) -> dict[str, Any]:
    with connection(engine) as conn:
        row = conn.execute(sa.select(editions_table).where(editions_table.c.id == eid)).first()
    if row is None:
        raise NotFound("edition.not_found", f"公开版 {eid} 不存在", f"edition {eid} does not exist")
    return _edition_dict(row)


def edition_for(engine: Engine, principal: Principal, eid: int) -> dict[str, Any]:
    """An edition as the caller may see it: a pending or superseded one only for the owner unit's staff."""
    edition = get_edition(engine, eid)
    visible = {e["id"] for e in list_editions(engine, principal, edition["source_dataset_id"])}
    if eid not in visible:
        raise NotFound("edition.not_found", f"公开版 {eid} 不存在", f"edition {eid} does not exist")
    return edition


def owner_staff(principal: Principal, ds: catalog.Dataset) -> bool:
    """The owner unit's staff (and the local operator): who sees a master's pending editions and build states."""
    return principal.kind == "system" or (principal.kind == "user" and principal.unit == ds.owner_unit)


def list_editions(engine: Engine, principal: Principal, source_id: str) -> list[dict[str, Any]]:
    """Editions of a master, newest first: the owner unit's staff see all, others the published one."""
    ds, _ = gate.dataset_for_catalogue(engine, principal, source_id)
    staff = owner_staff(principal, ds)
    stmt = sa.select(editions_table).where(editions_table.c.source_dataset_id == ds.id).order_by(editions_table.c.id.desc())
    if not staff:
        stmt = stmt.where(editions_table.c.status == "published")
    with engine.connect() as conn:
        return [_edition_dict(r) for r in conn.execute(stmt)]


def approve(engine: Engine, principal: Principal, eid: int) -> dict[str, Any]:
    """Publish a pending edition (the owner unit's data administrator); the previous one is superseded.

    All in one transaction that first locks the edition dataset's row (SQLite: the write lock of
    BEGIN IMMEDIATE), so approvals of one dataset run one after the other; the edition is claimed
    by a conditional update (`status = 'pending'`), so of two concurrent approvals one publishes
    and the other is refused, and one edition at most is published (a refusal rolls it all back).
    """
    edition = get_edition(engine, eid)
    source = catalog.require_dataset(engine, edition["source_dataset_id"])
    gate.require_dataset_admin(principal, source)
    with engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            ts = catalog.now()
            conn.execute(datasets_table.update().where(datasets_table.c.id == edition["dataset_id"]).values(updated_at=ts))  # the lock
            claimed = conn.execute(
                editions_table.update().where(editions_table.c.id == eid, editions_table.c.status == "pending")
                .values(status="published", decided_by=principal.actor, decided_at=ts)
            ).rowcount
            if claimed != 1:
                status = conn.execute(sa.select(editions_table.c.status).where(editions_table.c.id == eid)).scalar_one()
                raise Conflict("edition.not_pending", f"公开版 {eid} 的状态为 {status}，不能批准", f"edition {eid} is {status}; only a pending one can be approved")
            newer = conn.execute(
                sa.select(sa.func.count()).select_from(editions_table).where(
                    editions_table.c.dataset_id == edition["dataset_id"], editions_table.c.status == "published",
                    editions_table.c.version > edition["version"],
                )
            ).scalar_one()
            if newer:
                raise Conflict("edition.outdated", f"已有更新的公开版发布，公开版 {eid} 不能再批准", f"a newer edition is already published; edition {eid} cannot be approved")
            conn.execute(
                editions_table.update().where(editions_table.c.dataset_id == edition["dataset_id"], editions_table.c.status == "published",
                                              editions_table.c.id != eid)
                .values(status="superseded")
            )
            conn.execute(
                datasets_table.update().where(datasets_table.c.id == edition["dataset_id"]).values(published_version=edition["version"], updated_at=ts)
            )
            search.reindex(conn, edition["dataset_id"])
            audit.record(engine, principal, "edition.approve", dataset_id=edition["dataset_id"], version=edition["version"],
                         detail={"edition": eid, "source": source.id, "source_version": edition["source_version"]}, conn=conn)
            # what this approval did, read before the commit: a concurrent later approval may supersede it at once
            return get_edition(conn, eid)


def offers_gcj02(engine: Engine | Connection, ds: catalog.Dataset, version: int) -> bool:
    """Whether this version of `ds` offers GCJ-02 output: an edition built with a profile that enables it."""
    if ds.edition_of is None:
        return False
    with connection(engine) as c:
        profile = c.execute(
            sa.select(editions_table.c.profile).where(editions_table.c.dataset_id == ds.id, editions_table.c.version == version)
        ).scalar()
    return bool(profile and profile.get("gcj02"))


def version_fields(engine: Engine | Connection, ds: catalog.Dataset, version: int) -> list[dict[str, Any]]:
    """The fields of one edition version; `ds.fields` follows the newest build, maybe still pending approval.

    A version built since its fields were recorded with it names them; an older one is rebuilt from its profile."""
    recorded = catalog.get_version(engine, ds.id, version).source.get("fields")
    if recorded is not None:
        return list(recorded)
    with connection(engine) as c:
        stored = c.execute(
            sa.select(editions_table.c.profile).where(editions_table.c.dataset_id == ds.id, editions_table.c.version == version)
        ).scalar()
    if stored is None:
        return list(ds.fields)
    profile = ReleaseProfile.model_validate(stored)
    names = profile.aggregate.field_names(profile.class_field) if profile.aggregate is not None else profile.fields
    known = {f["name"]: f for f in ds.fields}
    return [known.get(n, {"name": n, "type": "real" if n == "area_m2" else "string"}) for n in names]


def published_edition_of(engine: Engine, source_id: str) -> str | None:
    """The edition dataset of a master, when one is published."""
    ds = catalog.get_dataset(engine, edition_id(source_id))
    return ds.id if ds is not None and ds.edition_of == source_id and ds.published_version else None

