"""Readers: every submission format opened, streamed in bounded batches, geometry untouched."""

from __future__ import annotations

import decimal
import json
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon

from landcloud.ingest.readers import (
    ColumnRows,
    FieldInfo,
    RawBatch,
    SourceError,
    SourceInfo,
    iter_batches,
    open_source,
    sample_coordinates,
)
from landcloud.messages import LandcloudError, Message

DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared real test data not available")

NAMES = ["哈尔滨市", "道里区", "南岗区", "香坊区", "平房区", "松北区", "呼兰区", "阿城区", "双城区", "依兰县"]
CLASSES = ["水田", "旱地", "水浇地", "果园", "乔木林地", "天然牧草地", "城镇住宅用地", "农村宅基地", "公路用地", "河流水面"]


def parcels(n: int = 10, crs: str | None = "EPSG:4490") -> gpd.GeoDataFrame:
    geoms = [Polygon([(126.6 + i * 0.01, 45.7), (126.605 + i * 0.01, 45.7), (126.605 + i * 0.01, 45.705), (126.6 + i * 0.01, 45.7)]) for i in range(n)]
    return gpd.GeoDataFrame(
        {
            "XZQMC": NAMES[:n],
            "DLMC": CLASSES[:n],
            "DLBM": [f"01{i:02d}" for i in range(n)],
            "TBMJ": [1000.5 + i for i in range(n)],
            "Bsm": list(range(1, n + 1)),
        },
        geometry=geoms,
        crs=crs,
    )


def write(gdf: gpd.GeoDataFrame, path: Path, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyogrio.write_dataframe(gdf, path, **kwargs)
    return path


def write_gbk_shp(folder: Path, name: str = "dltb", n: int = 10, crs: str | None = "EPSG:4490") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shp = write(parcels(n, crs), folder / f"{name}.shp", encoding="GBK")
    shp.with_suffix(".cpg").unlink()
    return shp


def read_all(info: SourceInfo, batch_size: int = 10_000) -> tuple[list[RawBatch], list[bytes | None], list[dict]]:
    batches = list(iter_batches(info, batch_size))
    wkb = [w for b in batches for w in b.wkb]
    props = [p for b in batches for p in b.properties]
    return batches, wkb, props


def codes(exc: pytest.ExceptionInfo) -> str:
    return exc.value.message.code


# --------------------------------------------------------------------------- shapefile


def test_gbk_shapefile_without_cpg(tmp_path: Path) -> None:
    shp = write_gbk_shp(tmp_path)
    info = open_source(shp)
    assert info.format == "shapefile"
    assert info.path == shp
    assert info.layer == "dltb" and info.layers == ["dltb"]
    assert info.encoding is not None and info.encoding.encoding == "GBK" and info.encoding.how == "detected"
    assert any(m.code == "encoding.detected" and "GBK" in m.zh for m in info.notes)
    assert info.fields == [
        FieldInfo("XZQMC", "string"),
        FieldInfo("DLMC", "string"),
        FieldInfo("DLBM", "string"),
        FieldInfo("TBMJ", "real"),
        FieldInfo("Bsm", "integer"),
    ]
    assert info.feature_count == 10
    assert info.geometry_type == "Polygon"
    assert info.crs_wkt is not None and "China" in info.crs_wkt  # the .prj text as written
    assert info.total_bounds == pytest.approx((126.6, 45.7, 126.695, 45.705))
    _, wkb, props = read_all(info)
    assert [p["XZQMC"] for p in props] == NAMES
    assert [p["DLMC"] for p in props] == CLASSES
    assert props[0] == {"XZQMC": "哈尔滨市", "DLMC": "水田", "DLBM": "0100", "TBMJ": 1000.5, "Bsm": 1}
    geoms = shapely.from_wkb(wkb)
    expected = parcels().geometry.values
    assert all(g.equals(e) for g, e in zip(geoms, expected))


def test_batch_boundaries(tmp_path: Path) -> None:
    info = open_source(write_gbk_shp(tmp_path))
    batches = list(iter_batches(info, batch_size=3))
    assert [b.start for b in batches] == [0, 3, 6, 9]
    assert [len(b.wkb) for b in batches] == [3, 3, 3, 1]
    assert [len(b.properties) for b in batches] == [3, 3, 3, 1]
    assert [b.properties[0]["XZQMC"] for b in batches] == [NAMES[0], NAMES[3], NAMES[6], NAMES[9]]


def test_given_encoding_wins(tmp_path: Path) -> None:
    shp = write_gbk_shp(tmp_path)
    info = open_source(shp, encoding="GB18030")
    assert info.encoding is not None and info.encoding.how == "given"
    _, _, props = read_all(info)
    assert props[1]["XZQMC"] == "道里区"
    with pytest.raises(SourceError) as exc:
        open_source(shp, encoding="no-such-codec")
    assert codes(exc) == "source.unknown_encoding"


def test_uppercase_extensions(tmp_path: Path) -> None:
    shp = write_gbk_shp(tmp_path, "XZQ")
    for p in list(tmp_path.iterdir()):
        p.rename(p.with_suffix(p.suffix.upper()))
    info = open_source(tmp_path / "XZQ.SHP")
    assert info.encoding is not None and info.encoding.encoding == "GBK"
    assert info.crs_wkt is not None
    _, _, props = read_all(info)
    assert props[2]["XZQMC"] == "南岗区"
    assert not shp.exists()


def test_field_name_case_kept(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"DLBM": ["0101"], "Dlmc": ["水田"], "zldwdm": ["230102"]}, geometry=[Point(126.6, 45.7)], crs="EPSG:4490")
    info = open_source(write(gdf, tmp_path / "case.gpkg"))
    assert [f.name for f in info.fields] == ["DLBM", "Dlmc", "zldwdm"]
    _, _, props = read_all(info)
    assert props == [{"DLBM": "0101", "Dlmc": "水田", "zldwdm": "230102"}]


def test_shapefile_without_prj(tmp_path: Path) -> None:
    info = open_source(write_gbk_shp(tmp_path, crs=None))
    assert info.crs_wkt is None


def test_missing_shx_is_unreadable(tmp_path: Path) -> None:
    shp = write_gbk_shp(tmp_path)
    shp.with_suffix(".shx").unlink()
    with pytest.raises(SourceError) as exc:
        info = open_source(shp)
        list(iter_batches(info))
    assert codes(exc) == "source.unreadable"
    assert "gdal_message" in exc.value.details


# --------------------------------------------------------------------------- zip and folders


def test_zip_with_folder_inside(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shp = write_gbk_shp(src / "汇交数据" / "地类图斑", "DLTB")
    z = tmp_path / "submission.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in shp.parent.iterdir():
            zf.write(p, f"汇交数据/地类图斑/{p.name}")
        zf.writestr("__MACOSX/汇交数据/._DLTB.shp", b"junk")
        zf.writestr("汇交数据/说明.txt", "readme")
    work = tmp_path / "work"
    info = open_source(z, workdir=work)
    assert info.format == "shapefile"
    assert info.path.name == "DLTB.shp"
    assert info.path.parent.name == "地类图斑"
    assert work in info.path.parents
    assert info.encoding is not None and info.encoding.encoding == "GBK"
    _, wkb, props = read_all(info)
    assert len(wkb) == 10 and props[0]["DLMC"] == "水田"


class _GbkNameInfo(zipfile.ZipInfo):
    """A zip entry named in GBK without the UTF-8 flag, as Windows tools write them."""

    def _encodeFilenameFlags(self):  # noqa: N802 — overrides the stdlib's private hook
        return self.filename.encode("gbk"), self.flag_bits


def test_zip_with_gbk_member_names(tmp_path: Path) -> None:
    shp = write_gbk_shp(tmp_path / "src", "地块")
    z = tmp_path / "gbk.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in shp.parent.iterdir():
            zf.writestr(_GbkNameInfo(f"成果/{p.name}"), p.read_bytes())
    with zipfile.ZipFile(z) as zf:
        assert not any(i.flag_bits & 0x800 for i in zf.infolist())
    with open_source(z) as info:
        assert info.path.name == "地块.shp"
        assert info.path.parent.name == "成果"
        tmp = info.workdir
        assert tmp is not None and tmp.exists()
        assert len(list(iter_batches(info))[0].wkb) == 10
    assert not tmp.exists()  # the temporary extraction folder is removed on close


def test_zip_two_shapefiles_is_ambiguous(tmp_path: Path) -> None:
    a = write_gbk_shp(tmp_path / "src", "DLTB", n=3)
    b = write_gbk_shp(tmp_path / "src", "XZQ", n=2)
    z = tmp_path / "two.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in a.parent.iterdir():
            zf.write(p, f"data/{p.name}")
    with pytest.raises(SourceError) as exc:
        open_source(z, workdir=tmp_path / "w1")
    assert codes(exc) == "source.ambiguous_layer"
    assert exc.value.details["layers"] == ["data/DLTB.shp", "data/XZQ.shp"]
    assert "data/DLTB.shp" in exc.value.message.zh and "data/XZQ.shp" in exc.value.message.en
    info = open_source(z, layer="xzq", workdir=tmp_path / "w2")
    assert info.path.name == "XZQ.shp" and info.feature_count == 2
    assert any(m.code == "source.dataset_chosen" for m in info.notes)
    with pytest.raises(SourceError) as exc:
        open_source(z, layer="nope", workdir=tmp_path / "w3")
    assert codes(exc) == "source.unknown_layer"
    assert b.exists()


def test_folder_input(tmp_path: Path) -> None:
    write_gbk_shp(tmp_path / "folder", "DLTB")
    info = open_source(tmp_path / "folder")
    assert info.path == tmp_path / "folder" / "DLTB.shp"
    assert info.workdir is None
    assert info.feature_count == 10


def test_zip_path_traversal_refused(tmp_path: Path) -> None:
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok/a.geojson", "{}")
        zf.writestr("../../evil.txt", "pwned")
    work = tmp_path / "deep" / "work"
    with pytest.raises(SourceError) as exc:
        open_source(z, workdir=work)
    assert codes(exc) == "source.zip_unsafe"
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    z2 = tmp_path / "abs.zip"
    with zipfile.ZipFile(z2, "w") as zf:
        zf.writestr("/etc/evil.txt", "pwned")
    with pytest.raises(SourceError) as exc:
        open_source(z2, workdir=work)
    assert codes(exc) == "source.zip_unsafe"


def test_zip_size_limit(tmp_path: Path) -> None:
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.csv", "lon,lat\n" + "0,0\n" * 100_000)
    with pytest.raises(SourceError) as exc:
        open_source(z, workdir=tmp_path / "w", max_extract_bytes=10_000)
    assert codes(exc) == "source.zip_too_large"


def test_zip_without_data(tmp_path: Path) -> None:
    z = tmp_path / "empty.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(SourceError) as exc:
        open_source(z)
    assert codes(exc) == "source.no_dataset"
    assert exc.value.details["files"] == ["readme.txt"]


# --------------------------------------------------------------------------- GeoPackage


def test_gpkg_layers(tmp_path: Path) -> None:
    gpkg = tmp_path / "multi.gpkg"
    write(parcels(4), gpkg, layer="DLTB")
    write(parcels(2), gpkg, layer="XZQ")
    with pytest.raises(SourceError) as exc:
        open_source(gpkg)
    assert codes(exc) == "source.ambiguous_layer"
    assert exc.value.details["layers"] == ["DLTB", "XZQ"]
    assert "DLTB" in exc.value.message.zh and "XZQ" in exc.value.message.en
    assert isinstance(exc.value, LandcloudError)
    assert exc.value.to_dict()["error"] == "source.ambiguous_layer"

    info = open_source(gpkg, layer="XZQ")
    assert (info.format, info.layer, info.layers, info.feature_count) == ("gpkg", "XZQ", ["DLTB", "XZQ"], 2)
    assert info.crs_wkt is not None and "China Geodetic" in info.crs_wkt
    with pytest.raises(SourceError) as exc:
        open_source(gpkg, layer="LSTB")
    assert codes(exc) == "source.unknown_layer"
    assert exc.value.details["layers"] == ["DLTB", "XZQ"]


def test_gpkg_attribute_table_is_not_a_candidate(tmp_path: Path) -> None:
    gpkg = tmp_path / "styled.gpkg"
    write(parcels(3), gpkg, layer="DLTB")
    write(pd.DataFrame({"styleName": ["default"]}), gpkg, layer="layer_styles")
    info = open_source(gpkg)
    assert info.layer == "DLTB"
    assert any(m.code == "source.layer_chosen" for m in info.notes)


def test_gpkg_value_types(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame(
        {
            "i": [1, None],
            "r": [2.5, None],
            "b": [True, False],
            "t": pd.to_datetime(["2024-05-06T07:08:09", None]),
            "s": ["水田", None],
        },
        geometry=[Point(126.6, 45.7), None],
        crs="EPSG:4490",
    )
    gdf["i"] = gdf["i"].astype("Int64")
    info = open_source(write(gdf, tmp_path / "types.gpkg"))
    types = {f.name: f.type for f in info.fields}
    assert types == {"i": "integer", "r": "real", "b": "boolean", "t": "datetime", "s": "string"}
    _, wkb, props = read_all(info)
    assert props[0] == {"i": 1, "r": 2.5, "b": True, "t": "2024-05-06T07:08:09", "s": "水田"}
    assert props[1] == {"i": None, "r": None, "b": False, "t": None, "s": None}
    assert wkb[1] is None
    assert shapely.from_wkb(wkb[0]).equals(Point(126.6, 45.7))


def test_invalid_geometry_passes_through_untouched(tmp_path: Path) -> None:
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    gdf = gpd.GeoDataFrame({"n": [1]}, geometry=[bowtie], crs="EPSG:4490")
    info = open_source(write(gdf, tmp_path / "bad.gpkg"))
    _, wkb, _ = read_all(info)
    g = shapely.from_wkb(wkb[0])
    assert not g.is_valid
    assert g.equals_exact(bowtie, 0)


# --------------------------------------------------------------------------- GeoJSON, FlatGeobuf, KML


def test_geojson_without_crs(tmp_path: Path) -> None:
    p = tmp_path / "x.geojson"
    p.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {"名称": "道里区", "adcode": "230102"}, "geometry": {"type": "Point", "coordinates": [126.6, 45.7]}},
                    {"type": "Feature", "properties": {"名称": "南岗区", "adcode": "230103"}, "geometry": None},
                ],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    info = open_source(p)
    assert info.format == "geojson"
    assert info.crs_wkt is None
    assert info.feature_count == 2
    assert [f.name for f in info.fields] == ["名称", "adcode"]
    _, wkb, props = read_all(info)
    assert props == [{"名称": "道里区", "adcode": "230102"}, {"名称": "南岗区", "adcode": "230103"}]
    assert shapely.from_wkb(wkb[0]).equals(Point(126.6, 45.7))
    assert wkb[1] is None


def test_geojson_with_declared_crs(tmp_path: Path) -> None:
    p = write(parcels(3), tmp_path / "d.geojson")
    assert '"crs"' in p.read_text(encoding="utf-8")
    info = open_source(p)
    from pyproj import CRS

    assert info.crs_wkt is not None and CRS.from_wkt(info.crs_wkt).to_epsg() == 4490


def test_flatgeobuf(tmp_path: Path) -> None:
    # without a spatial index the file keeps the written order
    info = open_source(write(parcels(5), tmp_path / "p.fgb", SPATIAL_INDEX="NO"))
    assert (info.format, info.feature_count, info.geometry_type) == ("fgb", 5, "Polygon")
    assert [f.name for f in info.fields] == ["XZQMC", "DLMC", "DLBM", "TBMJ", "Bsm"]
    batches, wkb, props = read_all(info, batch_size=2)
    assert [b.start for b in batches] == [0, 2, 4]
    assert [p["DLMC"] for p in props] == CLASSES[:5]
    assert [p["Bsm"] for p in props] == [1, 2, 3, 4, 5]
    assert all(g.equals(e) for g, e in zip(shapely.from_wkb(wkb), parcels(5).geometry.values))
    # with one (the default), features come in the index's (Hilbert) order, which is the file's order
    indexed = open_source(write(parcels(5), tmp_path / "i.fgb"))
    _, _, props = read_all(indexed)
    assert sorted(p["Bsm"] for p in props) == [1, 2, 3, 4, 5]


def test_kml(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame(
        {"Name": ["道里区", "松花江"]},
        geometry=[Point(126.6, 45.7), LineString([(126.5, 45.8), (126.7, 45.8)])],
        crs="EPSG:4326",
    )
    info = open_source(write(gdf, tmp_path / "x.kml", driver="KML"))
    assert info.format == "kml"
    assert info.crs_wkt is None  # WGS84 by the KML specification
    _, wkb, props = read_all(info)
    assert [p["Name"] for p in props] == ["道里区", "松花江"]
    geoms = shapely.from_wkb(wkb)
    assert shapely.get_coordinates(geoms[0]).tolist() == [[126.6, 45.7]]
    assert shapely.get_coordinates(geoms[1]).tolist() == [[126.5, 45.8], [126.7, 45.8]]


# --------------------------------------------------------------------------- CSV


def test_csv_lonlat_gbk(tmp_path: Path) -> None:
    p = tmp_path / "points.csv"
    p.write_bytes("名称,经度,纬度,备注\n道里区,126.6,45.7,\n南岗区,126.65,45.75,中心\n".encode("gbk"))
    info = open_source(p)
    assert info.format == "csv"
    assert info.encoding is not None and info.encoding.encoding == "GBK"
    assert info.fields == [FieldInfo("名称", "string"), FieldInfo("备注", "string")]
    assert info.feature_count is None and info.crs_wkt is None
    _, wkb, props = read_all(info)
    assert props == [{"名称": "道里区", "备注": None}, {"名称": "南岗区", "备注": "中心"}]
    assert [shapely.from_wkb(w).coords[0] for w in wkb] == [(126.6, 45.7), (126.65, 45.75)]


def test_csv_wkt_utf8_bom(tmp_path: Path) -> None:
    p = tmp_path / "wkt.csv"
    rows = [
        "id,WKT,地类",
        '1,"POLYGON ((0 0, 1 0, 1 1, 0 0))",水田',
        '2,"POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))",旱地',
        "3,,林地",
        '4,"POLYGON ((0 0, 1 0",草地',
    ]
    p.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode("utf-8"))
    info = open_source(p)
    assert info.extra["geometry"] == "wkt"
    assert [f.name for f in info.fields] == ["id", "地类"]
    batches, wkb, props = read_all(info)
    assert [p["地类"] for p in props] == ["水田", "旱地", "林地", "草地"]
    assert shapely.from_wkb(wkb[0]).equals(Polygon([(0, 0), (1, 0), (1, 1), (0, 0)]))
    assert not shapely.from_wkb(wkb[1]).is_valid  # a bowtie is still delivered
    assert wkb[2] is None and wkb[3] is None
    assert batches[0].geometry_errors == {3: "POLYGON ((0 0, 1 0"}


def test_csv_bad_coordinates_reported(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("name;LON;LAT\na;126.6;45.7\nb;126°38′;45.7\nc;;\n", encoding="utf-8")
    info = open_source(p)
    assert info.extra["delimiter"] == ";"
    batches = list(iter_batches(info, batch_size=2))
    assert [b.start for b in batches] == [0, 2]
    assert batches[0].geometry_errors == {1: "126°38′,45.7"}
    assert batches[1].wkb == [None] and batches[1].geometry_errors == {}


def test_csv_surveying_xy_swapped(tmp_path: Path) -> None:
    p = tmp_path / "jzd.csv"
    p.write_text("点号,X,Y\nJ1,5068012.35,42512345.67\nJ2,5068020.00,42512350.00\n", encoding="utf-8")
    info = open_source(p)
    assert info.extra["xy_swapped"] is True
    assert any(m.code == "source.csv_xy_swapped" for m in info.notes)
    xy = sample_coordinates(info)
    assert xy.tolist() == [[42512345.67, 5068012.35], [42512350.0, 5068020.0]]


def test_csv_without_geometry(tmp_path: Path) -> None:
    p = tmp_path / "table.csv"
    p.write_text("名称,面积\n道里区,1\n", encoding="utf-8")
    with pytest.raises(SourceError) as exc:
        open_source(p)
    assert codes(exc) == "source.csv_no_geometry"
    assert exc.value.details["columns"] == ["名称", "面积"]
    assert "名称" in exc.value.message.zh and "面积" in exc.value.message.en


# --------------------------------------------------------------------------- GeoParquet


def test_geoparquet_with_crs(tmp_path: Path) -> None:
    p = tmp_path / "p.parquet"
    parcels(10).to_parquet(p, write_covering_bbox=True)
    info = open_source(p)
    assert (info.format, info.feature_count, info.geometry_type) == ("geoparquet", 10, "Polygon")
    from pyproj import CRS

    assert info.crs_wkt is not None and CRS.from_wkt(info.crs_wkt).to_epsg() == 4490
    assert [f.name for f in info.fields] == ["XZQMC", "DLMC", "DLBM", "TBMJ", "Bsm"]  # no bbox covering
    batches, wkb, props = read_all(info, batch_size=3)
    assert [b.start for b in batches] == [0, 3, 6, 9]
    assert [p["XZQMC"] for p in props] == NAMES
    assert all(g.equals(e) for g, e in zip(shapely.from_wkb(wkb), parcels(10).geometry.values))
    assert info.total_bounds == pytest.approx((126.6, 45.7, 126.695, 45.705))


def test_geoparquet_crs_absent_and_null(tmp_path: Path) -> None:
    table = pa.table({"name": ["道里区"], "geometry": [Point(126.6, 45.7).wkb]})
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"]}}}
    p = tmp_path / "absent.parquet"
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), p)
    info = open_source(p)
    assert info.crs_wkt is None and info.extra["geoparquet_crs"] == "absent"
    _, wkb, props = read_all(info)
    assert props == [{"name": "道里区"}] and shapely.from_wkb(wkb[0]).equals(Point(126.6, 45.7))

    geo["columns"]["geometry"]["crs"] = None
    p2 = tmp_path / "null.parquet"
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), p2)
    info2 = open_source(p2)
    assert info2.crs_wkt is None and info2.extra["geoparquet_crs"] == "null"
    assert any(m.code == "source.crs_unknown" for m in info2.notes)


def test_parquet_without_geo_metadata(tmp_path: Path) -> None:
    p = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), p)
    with pytest.raises(SourceError) as exc:
        open_source(p)
    assert codes(exc) == "source.unsupported_format"


# --------------------------------------------------------------------------- errors


def test_unsupported_and_unreadable(tmp_path: Path) -> None:
    dwg = tmp_path / "map.dwg"
    dwg.write_bytes(b"AC1027")
    with pytest.raises(SourceError) as exc:
        open_source(dwg)
    assert codes(exc) == "source.unsupported_format"
    assert "map.dwg" in exc.value.message.zh

    bad = tmp_path / "broken.gpkg"
    bad.write_bytes(b"not a geopackage at all" * 10)
    with pytest.raises(SourceError) as exc:
        open_source(bad)
    assert codes(exc) == "source.unreadable"
    assert exc.value.details["gdal_message"]
    assert exc.value.message.zh and exc.value.message.en

    with pytest.raises(SourceError) as exc:
        open_source(tmp_path / "missing.shp")
    assert codes(exc) == "source.not_found"


def test_notes_are_messages(tmp_path: Path) -> None:
    info = open_source(write_gbk_shp(tmp_path))
    assert info.notes and all(isinstance(m, Message) and m.zh and m.en for m in info.notes)


def test_sample_coordinates(tmp_path: Path) -> None:
    info = open_source(write_gbk_shp(tmp_path))
    xy = sample_coordinates(info, n=12)
    # at most n // 10 = 1 vertex per feature: the first vertex of each of the 10 features, …
    assert xy.shape == (10, 2)
    assert xy[:, 0].tolist() == pytest.approx([126.6 + i * 0.01 for i in range(10)])
    assert np.all(xy[:, 1] >= 45.7)
    assert sample_coordinates(info, n=1000).shape == (40, 2)  # all 4 vertices of 10 features


# --------------------------------------------------------------------------- real data


@needs_data
def test_real_osm_gpkg_streamed() -> None:
    gpkg = DATA / "osm-harbin" / "harbin_osm_2024-11.gpkg"
    with pytest.raises(SourceError) as exc:
        open_source(gpkg)
    assert codes(exc) == "source.ambiguous_layer"
    assert exc.value.details["layers"] == ["multipolygons", "points", "lines"]
    for name in ("multipolygons", "points", "lines"):
        assert name in exc.value.message.zh and name in exc.value.message.en

    info = open_source(gpkg, layer="multipolygons")
    assert info.feature_count == 21_788
    assert info.geometry_type == "MultiPolygon"
    batch_sizes = []
    total = unparseable = missing = 0
    for batch in iter_batches(info, batch_size=5_000):
        assert batch.start == total
        batch_sizes.append(len(batch.wkb))
        total += len(batch.wkb)
        present = [w for w in batch.wkb if w is not None]
        missing += len(batch.wkb) - len(present)
        parsed = shapely.from_wkb(np.array(present, dtype=object), on_invalid="ignore")
        unparseable += int(sum(g is None for g in parsed))
    assert total == 21_788
    assert batch_sizes == [5_000, 5_000, 5_000, 5_000, 1_788]
    assert unparseable == 23
    assert missing == 0


@needs_data
def test_real_overture_geoparquet() -> None:
    info = open_source(DATA / "pygeoapi-testdata" / "nyc_subset_overture.parquet")
    assert info.format == "geoparquet" and info.feature_count == 679
    assert info.crs_wkt is None and info.extra["geoparquet_crs"] == "absent"
    assert "bbox" not in [f.name for f in info.fields]
    _, wkb, props = read_all(info, batch_size=200)
    assert len(wkb) == 679 and all(w is not None for w in wkb)
    assert {g.geom_type for g in shapely.from_wkb(wkb)} <= {"Polygon", "MultiPolygon"}
    assert isinstance(props[0]["sources"], str) and json.loads(props[0]["sources"])
    xy = sample_coordinates(info, 100)
    assert np.all((xy[:, 0] > -75) & (xy[:, 0] < -73) & (xy[:, 1] > 40) & (xy[:, 1] < 42))


@needs_data
def test_real_landslide_csv() -> None:
    info = open_source(DATA / "nasa-glc" / "Global_Landslide_Catalog_Export.csv")
    assert (info.extra["x_column"], info.extra["y_column"]) == ("longitude", "latitude")
    names = [f.name for f in info.fields]
    assert "latitude" not in names and "longitude" not in names and "geolocation" in names
    # the export is neither UTF-8 nor GBK: read as latin1 and flagged
    assert info.encoding is not None and info.encoding.encoding == "latin1" and info.encoding.uncertain
    batches, wkb, props = read_all(info, batch_size=4_000)
    assert [b.start for b in batches] == [0, 4_000, 8_000]
    assert len(wkb) == 9_564
    assert all(w is not None for w in wkb) and not any(b.geometry_errors for b in batches)
    assert shapely.from_wkb(wkb[0]).coords[0] == (-3.5875, 54.5494)
    assert props[0]["country"] == "United Kingdom" and props[0]["time"] is None
    assert sum(p["countryname"] == "China" for p in props) == 426


@needs_data
def test_real_cnmaps_geojson() -> None:
    info = open_source(DATA / "cnmaps-heilongjiang" / "heilongjiang_counties_merged_gcj02.geojson")
    assert info.format == "geojson" and info.feature_count == 122
    assert info.crs_wkt is None  # no "crs" member: CRS84 by RFC 7946 (really GCJ-02, see README)
    assert [f.name for f in info.fields][:6] == ["adcode", "name", "city", "city_adcode", "province", "province_adcode"]
    _, wkb, props = read_all(info, batch_size=50)
    assert len(wkb) == 122
    assert props[0]["name"] == "道里区" and props[0]["city"] == "哈尔滨市"
    assert len({p["adcode"] for p in props}) == 122
    assert all(g.is_valid for g in shapely.from_wkb(wkb))


_ARROW_COLUMNS = [
    pa.array(["a", None, "地类"]), pa.array([1, None, 2**40]), pa.array([True, None, False]), pa.array([None, None], pa.null()),
    pa.array([1.5, None, -0.0]), pa.array([1.5, float("nan")]), pa.array([float("inf"), 1.0], pa.float32()),
    pa.array([1.5, None], pa.float32()), pa.array([b"\x00\x01", None]), pa.array(np.array([1.5, 2.0], dtype=np.float16)),
    pa.array([decimal.Decimal("1.50"), None]), pa.array(["a", "b", "a"]).dictionary_encode(),
    pa.array([1.5, float("nan"), 1.5]).dictionary_encode(), pa.array([[1, 2], None]),
    pa.array([0, 86_400_000], pa.timestamp("ms")), pa.array([0, None], pa.date32()), pa.chunked_array([[1.0], [float("inf")]]),
    pa.array([], pa.float64()),
]


@pytest.mark.parametrize("arr", _ARROW_COLUMNS, ids=lambda a: str(a.type))
def test_a_plain_column_needs_no_sanitising(arr: pa.Array) -> None:
    """`RawBatch.plain` lets the pipeline skip `_sanitized`: only when every value is one it keeps as it is."""
    from landcloud.ingest.pipeline import _sanitized
    from landcloud.ingest.readers import _plain_column, _to_python_column

    values = _to_python_column(arr)
    kept = all(_sanitized({"v": v})["v"] is v and type(v) in (str, int, bool, float, type(None)) for v in values)
    # sound always; complete except for the types sanitised row by row anyway (decimals, half floats)
    assert _plain_column(arr) == kept or (kept and (pa.types.is_decimal(arr.type) or pa.types.is_float16(arr.type)))


def test_a_batch_of_plain_columns_is_marked_plain() -> None:
    from landcloud.ingest.readers import _batch_to_raw

    batch = pa.record_batch([pa.array(["a", "b"]), pa.array([1.5, None]), pa.array([b"\x01", b"\x02"])], names=["s", "f", "g"])
    assert _batch_to_raw(batch, 0, 2, set()).plain
    batch = pa.record_batch([pa.array(["a", "b"]), pa.array([1.5, float("nan")]), pa.array([b"\x01", b"\x02"])], names=["s", "f", "g"])
    assert not _batch_to_raw(batch, 0, 2, set()).plain
    batch = pa.record_batch([pa.array([b"\x00", None]), pa.array([b"\x01", b"\x02"])], names=["b", "g"])
    assert not _batch_to_raw(batch, 0, 1, set()).plain


def test_column_rows_are_the_rows_of_the_columns() -> None:
    """A batch's rows made from its columns on demand read as the list of dicts they stand for: length, indexing
    from either end, slices, iteration, equality; each access is a new dict, so changing one changes no column."""
    columns = {"BSM": ["a", "b", "c"], "TBMJ": [1.5, None, 3.0]}
    rows = ColumnRows(columns, 3)
    expected = [{"BSM": "a", "TBMJ": 1.5}, {"BSM": "b", "TBMJ": None}, {"BSM": "c", "TBMJ": 3.0}]
    assert len(rows) == 3 and list(rows) == expected and rows == expected
    assert rows[0] == expected[0] and rows[-1] == expected[2] and rows[1:] == expected[1:]
    with pytest.raises(IndexError):
        rows[3]
    rows[0]["BSM"] = "changed"
    assert columns["BSM"][0] == "a" and rows[0]["BSM"] == "a"
    assert list(ColumnRows({}, 2)) == [{}, {}] and ColumnRows({}, 2)[1] == {}
    assert rows != expected[:2]
