"""`landcloud demo` loads real boundaries and labelled synthetic parcels through the one way in."""

from __future__ import annotations

import shapely
import sqlalchemy as sa

from landcloud.access import units
from landcloud.catalog import datasets as catalog
from landcloud.catalog import history
from landcloud.config import Settings
from landcloud.demo.load import BOUNDARY_DATASET, HAZARD_DATASET, PARCEL_COUNTIES, PARCEL_DATASET, PLANNING_DATASET, load_demo
from landcloud.store.features import feature_store_for

from conftest import table_counts


def test_demo_loads_once_with_history(engine: sa.Engine, settings: Settings, cheap_passwords: None) -> None:
    lines = list(load_demo(engine, settings))
    assert any("version 2" in line for line in lines)
    xzq = catalog.require_dataset(engine, BOUNDARY_DATASET)
    assert xzq.feature_count == 122 and (xzq.openness, xzq.security_level) == ("open", "public")
    assert {f["name"]: f["alias_zh"] for f in xzq.fields}["XZQDM"] == "行政区代码"  # standard names keep their Chinese names
    # the public sees the published edition of the boundaries, never the master
    from landcloud.access import gate
    from landcloud.access.principal import ANONYMOUS

    public = {ds.id: ds for ds, _ in gate.visible_datasets(engine, ANONYMOUS)}
    assert list(public) == [f"{BOUNDARY_DATASET}-public"]
    edition = public[f"{BOUNDARY_DATASET}-public"]
    assert edition.title == "黑龙江省县级行政区（公开版）" and edition.edition_of == BOUNDARY_DATASET
    assert edition.published_version == 1 and edition.feature_count == 122
    parcels = catalog.require_dataset(engine, PARCEL_DATASET)
    assert parcels.current_version == 2 and parcels.extra["synthetic"] is True
    assert "SYNTHETIC" in parcels.description
    counts = history.diff_counts(engine, parcels, 1, 2)
    assert counts["added"] == 0 and counts["removed"] == 0 and 0 < counts["changed"] <= 25
    # parcels tile their district: the areas add up to the district's area
    daoli = units.boundary(engine, "230102")
    assert daoli is not None
    feats = [f for f in feature_store_for(engine).iter_features(PARCEL_DATASET, 2) if f.fkey.startswith("230102")]
    union = shapely.union_all(shapely.from_wkb([f.wkb for f in feats]))
    assert abs(union.area - daoli.area) / daoli.area < 1e-6
    assert all(f.props["ZLDWDM"].startswith("230102") for f in feats)
    # the zoning layers tile the same districts, labelled synthetic
    for dataset_id, per_district in ((PLANNING_DATASET, 12), (HAZARD_DATASET, 8)):
        zones = catalog.require_dataset(engine, dataset_id)
        assert zones.feature_count == per_district * len(PARCEL_COUNTIES) and zones.extra["synthetic"] is True
        zone_feats = list(feature_store_for(engine).iter_features(dataset_id, 1))
        daoli_zones = shapely.union_all(shapely.from_wkb([f.wkb for f in zone_feats if f.props["XZQDM"] == "230102"]))
        assert abs(daoli_zones.area - daoli.area) / daoli.area < 1e-6
    # demo accounts, and the gate at work on them: a county sees its own parcels only
    accounts = (settings.data_dir / "demo-accounts.txt").read_text(encoding="utf-8")
    assert all(name in accounts for name in ("hrb-submitter", "daoli-viewer", "bank-viewer", "hrb-admin", "audit-admin"))
    assert (settings.data_dir / "demo-accounts.txt").stat().st_mode & 0o077 == 0
    from landcloud.access import gate
    from landcloud.access.auth import principal_for
    from landcloud.access.users import get_user_row

    daoli = principal_for(engine, get_user_row(engine, "daoli-viewer"), via="bearer")
    ds, access = gate.dataset_for_read(engine, daoli, PARCEL_DATASET)
    seen = list(gate.read_features(engine, daoli, ds, access))
    assert len(seen) == len(feats) and all(f.props["ZLDWDM"].startswith("230102") for f in seen)
    before = table_counts(engine)
    assert list(load_demo(engine, settings)) == ["demo data already loaded / 演示数据已加载"]
    assert table_counts(engine) == before
