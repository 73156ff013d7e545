"""Every submission format reaches the same stored features (both stores)."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
import sqlalchemy as sa

from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.store.features import feature_store_for

from builders import grid_parcels, write_shapefile


def frame() -> gpd.GeoDataFrame:
    feats = grid_parcels(2)
    return gpd.GeoDataFrame.from_features(feats, crs="EPSG:4490")


def shapefile_zip(tmp: Path) -> Path:
    folder = tmp / "shp"
    folder.mkdir()
    write_shapefile(folder / "地类图斑.shp", grid_parcels(2), encoding="GBK", keep_cpg=False)
    out = tmp / "dltb.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"提交/{f.name}")
    return out


def shapefile_folder(tmp: Path) -> Path:
    folder = tmp / "folder"
    folder.mkdir()
    write_shapefile(folder / "dltb.shp", grid_parcels(2))
    return folder


def gpkg(tmp: Path) -> Path:
    path = tmp / "dltb.gpkg"
    frame().to_file(path, layer="DLTB", driver="GPKG")
    return path


def fgb(tmp: Path) -> Path:
    path = tmp / "dltb.fgb"
    frame().to_file(path, driver="FlatGeobuf")
    return path


def geoparquet(tmp: Path) -> Path:
    path = tmp / "dltb.parquet"
    frame().to_parquet(path)
    return path


def kml(tmp: Path) -> Path:
    path = tmp / "dltb.kml"
    frame().to_crs("EPSG:4326").to_file(path, driver="KML")
    return path


def wkt_csv(tmp: Path) -> Path:
    path = tmp / "dltb.csv"
    df = frame()
    with path.open("w", encoding="gbk", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*[c for c in df.columns if c != "geometry"], "WKT"])
        for _, row in df.iterrows():
            writer.writerow([*[row[c] for c in df.columns if c != "geometry"], row.geometry.wkt])
    return path


BUILDERS = {"shp-zip": shapefile_zip, "shp-folder": shapefile_folder, "gpkg": gpkg, "fgb": fgb,
            "geoparquet": geoparquet, "kml": kml, "csv-wkt-gbk": wkt_csv}


@pytest.mark.parametrize("fmt", list(BUILDERS))
def test_each_format_stores_the_same_parcels(fmt: str, engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path = BUILDERS[fmt](tmp_path)
    result = run_submission(engine, settings, path, SubmitOptions(dataset_id="dltb", unit="230102", schema="DLTB"))
    assert result.accepted, result.report["findings"][:3]
    assert result.report["summary"]["feature_count"] == 4
    store = feature_store_for(engine)
    for expected in grid_parcels(2):
        key = expected["properties"]["BSM"]
        got = store.get_feature("dltb", 1, key)
        assert got is not None, key
        assert got.props["DLMC"] == expected["properties"]["DLMC"]
        assert float(got.props["TBMJ"]) == pytest.approx(expected["properties"]["TBMJ"])
        assert shapely.hausdorff_distance(shapely.from_wkb(got.wkb), shapely.geometry.shape(expected["geometry"])) < 1e-9
