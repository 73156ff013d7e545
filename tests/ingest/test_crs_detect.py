"""CRS decision: --crs > file CRS > format default > degrees > zone-prefixed eastings > refuse."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
from pyproj import CRS
from shapely.geometry import Point, Polygon

from landcloud.geo.crs import CRSRefused
from landcloud.ingest.crs_detect import CRSDecision, decide_crs
from landcloud.ingest.readers import SourceInfo, open_source, sample_coordinates

DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared real test data not available")


def gk_parcels(x0: float, y0: float, n: int = 5) -> list[Polygon]:
    return [Polygon([(x0 + i * 50, y0), (x0 + i * 50 + 40, y0), (x0 + i * 50 + 40, y0 + 30), (x0 + i * 50, y0)]) for i in range(n)]


def write_shp(folder: Path, geoms: list, crs: str | None, name: str = "dltb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame({"DLMC": ["水田"] * len(geoms)}, geometry=geoms, crs=crs)
    shp = folder / f"{name}.shp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyogrio.write_dataframe(gdf, shp, encoding="GBK")
    return shp


def decide(path: Path, declared: str | None = None, **kwargs) -> CRSDecision:
    info = open_source(path, **kwargs)
    return decide_crs(info, declared, sample_coordinates(info))


def test_prefixed_eastings_without_prj_infer_zone(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(42_512_345.6, 5_068_012.3), crs=None)
    assert not shp.with_suffix(".prj").exists()
    d = decide(shp)
    assert d.how == "inferred_gk_zone"
    assert isinstance(d.crs, CRS) and d.crs.to_epsg() == 4530
    assert d.epsg == 4530
    assert "EPSG:4530" in d.message_en and "zone 42" in d.message_en and "8-digit" in d.message_en
    assert "no CRS in the file" in d.message_en
    assert "EPSG:4530" in d.message_zh and "第 42 带" in d.message_zh and "3 度带" in d.message_zh


def test_prefixed_6deg_eastings(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(22_512_345.0, 5_068_012.0), crs=None)
    d = decide(shp)
    assert (d.how, d.epsg) == ("inferred_gk_zone", 4500)


def test_unprefixed_eastings_without_prj_refused(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(512_345.6, 5_068_012.3), crs=None)
    with pytest.raises(CRSRefused) as exc:
        decide(shp)
    e = exc.value
    assert e.code == "crs.missing_projected"
    for text in (e.message_zh, e.message_en):
        assert "--crs" in text and ".prj" in text and "EPSG:4551" in text and "4491" in text and "4554" in text
    assert "带号" in e.message_zh and "zone prefix" in e.message_en
    assert isinstance(e, ValueError)


def test_swapped_xy_hint(tmp_path: Path) -> None:
    geoms = [Point(5_068_012.3 + i, 42_512_345.6 + i) for i in range(3)]  # x = northing, y = easting
    shp = write_shp(tmp_path, geoms, crs=None)
    with pytest.raises(CRSRefused) as exc:
        decide(shp)
    assert exc.value.code == "crs.missing_projected"
    assert "swapped" in exc.value.message_en and "颠倒" in exc.value.message_zh


def test_declared_gcj02(tmp_path: Path) -> None:
    p = tmp_path / "amap.geojson"
    p.write_text(
        json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [126.64, 45.76]}}]}),
        encoding="utf-8",
    )
    d = decide(p, "GCJ02")
    assert d.crs == "GCJ02" and d.how == "declared" and d.epsg is None
    assert "GCJ-02" in d.message_zh and "GCJ-02" in d.message_en


def test_declared_beats_file(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(512_345.6, 5_068_012.3), crs="EPSG:4549")
    d = decide(shp, "EPSG:4551")
    assert (d.how, d.epsg) == ("declared", 4551)
    assert "EPSG:4551" in d.message_zh and "EPSG:4551" in d.message_en


def test_prj_of_4549_kept(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(512_345.6, 3_400_000.0), crs="EPSG:4549")
    prj = shp.with_suffix(".prj").read_text()
    assert prj.startswith("PROJCS[") and "4549" not in prj  # an ESRI .prj names no code …
    d = decide(shp)
    assert d.how == "file"
    assert d.epsg == 4549  # … but it resolves to the right one
    assert "EPSG:4549" in d.message_en and ".prj" in d.message_en and ".prj" in d.message_zh


def test_esri_prj_with_custom_name_resolves(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(42_512_345.6, 5_068_012.3), crs=None)
    wkt = CRS.from_epsg(4530).to_wkt("WKT1_ESRI").replace("CGCS2000_3_Degree_GK_Zone_42", "哈尔滨地块投影")
    shp.with_suffix(".prj").write_text(wkt, encoding="utf-8")
    d = decide(shp)
    assert (d.how, d.epsg) == ("file", 4530)


def test_unidentifiable_prj_kept_as_is(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(512_345.6, 5_068_012.3), crs=None)
    custom = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=126.5 +k=1 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m +no_defs")
    shp.with_suffix(".prj").write_text(custom.to_wkt("WKT1_ESRI"))
    d = decide(shp)
    assert d.how == "file" and d.epsg is None
    assert isinstance(d.crs, CRS) and d.crs.is_projected
    assert "no matching EPSG" in d.message_en


def test_wrong_prj_geographic_with_gk_coordinates(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(42_512_345.6, 5_068_012.3), crs="EPSG:4490")
    with pytest.raises(CRSRefused) as exc:
        decide(shp)
    assert exc.value.code == "crs.file_mismatch"
    assert "EPSG:4530" in exc.value.message_en and "EPSG:4530" in exc.value.message_zh


def test_wrong_prj_unprefixed_with_prefixed_eastings(tmp_path: Path) -> None:
    shp = write_shp(tmp_path, gk_parcels(42_512_345.6, 5_068_012.3), crs="EPSG:4551")
    with pytest.raises(CRSRefused) as exc:
        decide(shp)
    assert exc.value.code == "crs.file_mismatch"
    assert "EPSG:4530" in exc.value.message_en


def test_geojson_without_crs_is_crs84(tmp_path: Path) -> None:
    p = tmp_path / "x.geojson"
    p.write_text(
        json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"n": 1}, "geometry": {"type": "Point", "coordinates": [126.6, 45.7]}}]}),
        encoding="utf-8",
    )
    d = decide(p)
    assert d.how == "default_crs84"
    assert isinstance(d.crs, CRS) and d.crs == CRS.from_user_input("OGC:CRS84")
    assert "RFC 7946" in d.message_en and "RFC 7946" in d.message_zh


def test_kml_is_crs84(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"Name": ["a"]}, geometry=[Point(126.6, 45.7)], crs="EPSG:4326")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyogrio.write_dataframe(gdf, tmp_path / "a.kml", driver="KML")
    d = decide(tmp_path / "a.kml")
    assert d.how == "default_crs84" and "KML" in d.message_en


def _parquet(path: Path, crs_entry: dict) -> Path:
    table = pa.table({"n": [1], "geometry": [Point(126.6, 45.7).wkb]})
    col = {"encoding": "WKB", "geometry_types": ["Point"], **crs_entry}
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": col}}
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), path)
    return path


def test_geoparquet_crs(tmp_path: Path) -> None:
    assert decide(_parquet(tmp_path / "a.parquet", {})).how == "default_crs84"
    null = decide(_parquet(tmp_path / "b.parquet", {"crs": None}))
    assert (null.how, null.epsg) == ("assumed_geographic", 4490)
    declared = decide(_parquet(tmp_path / "c.parquet", {"crs": CRS.from_epsg(4490).to_json_dict()}))
    assert (declared.how, declared.epsg) == ("file", 4490)


def test_csv_lonlat_assumed_cgcs2000(tmp_path: Path) -> None:
    p = tmp_path / "pts.csv"
    p.write_text("名称,经度,纬度\n道里区,126.6,45.7\n", encoding="utf-8")
    d = decide(p)
    assert (d.how, d.epsg) == ("assumed_geographic", 4490)
    assert "EPSG:4490" in d.message_zh and "EPSG:4490" in d.message_en


def test_geojson_with_gk_coordinates_is_not_crs84(tmp_path: Path) -> None:
    p = tmp_path / "gk.geojson"
    p.write_text(
        json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [42_512_345.6, 5_068_012.3]}}]}),
        encoding="utf-8",
    )
    d = decide(p)
    assert (d.how, d.epsg) == ("inferred_gk_zone", 4530)


def test_sample_array_used_as_given() -> None:
    info = SourceInfo(
        path=Path("x.shp"), format="shapefile", layer="x", layers=["x"], encoding=None, crs_wkt=None,
        fields=[], geometry_type="Point", feature_count=2, total_bounds=None, notes=[],
    )  # fmt: skip
    xy = np.array([[41_400_000.0, 4_900_000.0], [41_600_000.0, 4_950_000.0], [np.nan, np.nan]])
    assert decide_crs(info, None, xy).epsg == 4529
    assert decide_crs(info, None, np.empty((0, 2))).how == "assumed_geographic"


@needs_data
def test_real_data_crs() -> None:
    counties = DATA / "cnmaps-heilongjiang" / "heilongjiang_counties_merged_gcj02.geojson"
    assert decide(counties).how == "default_crs84"
    assert decide(counties, "GCJ02").crs == "GCJ02"
    osm = decide(DATA / "osm-harbin" / "harbin_osm_2024-11.gpkg", layer="points")
    assert (osm.how, osm.epsg) == ("file", 4326)
    nasa = decide(DATA / "nasa-glc" / "Global_Landslide_Catalog_Export.csv")
    assert (nasa.how, nasa.epsg) == ("assumed_geographic", 4490)


def test_file_crs84_keeps_its_authority(tmp_path: Path) -> None:
    table = pa.table({"n": [1], "geometry": [Point(126.6, 45.7).wkb]})
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"], "crs": CRS.from_user_input("OGC:CRS84").to_json_dict()}}}  # fmt: skip
    p = tmp_path / "crs84.parquet"
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), p)
    d = decide(p)
    assert d.how == "file" and d.crs == CRS.from_user_input("OGC:CRS84")
    assert "OGC:CRS84" in d.message_en and "OGC:CRS84" in d.message_zh
