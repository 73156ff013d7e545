"""A source's own WKB stored where it is what GEOS would write (`pipeline.SourceWkb`, `geo.wkb`), GEOS's otherwise:
the reader marks the plain values of a file GDAL wrote, and a submission stores, for every row, exactly the bytes
GEOS writes for the geometry it keeps (the source's where nothing changed it; the repaired or converted one's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
import sqlalchemy as sa

from landcloud.config import Settings
from landcloud.geo.area import survey_areas
from landcloud.ingest.pipeline import SourceWkb, SubmitOptions, run_submission
from landcloud.ingest.readers import iter_batches, open_source
from landcloud.store.features import feature_store_for

from builders import HARBIN, grid_parcels, write_geojson, write_shapefile

X, Y = HARBIN
SQUARE = shapely.box(X, Y, X + 0.001, Y + 0.001)
HOLED = shapely.Polygon(SQUARE.exterior.coords, [[(X + 0.0004, Y + 0.0004), (X + 0.0006, Y + 0.0004), (X + 0.0006, Y + 0.0006),
                                                   (X + 0.0004, Y + 0.0004)]])
MULTI = shapely.MultiPolygon([shapely.box(X + 0.002, Y, X + 0.003, Y + 0.001), shapely.box(X + 0.004, Y, X + 0.005, Y + 0.001)])
Z = shapely.Polygon([(x, y, 150.0) for x, y in shapely.box(X, Y + 0.002, X + 0.001, Y + 0.003).exterior.coords])


def write_gpkg(path: Path, geoms: list[shapely.Geometry | None]) -> Path:
    wkbs = np.array([None if g is None else shapely.to_wkb(g, output_dimension=3) for g in geoms], dtype=object)
    keys = np.array([f"k{i}" for i in range(len(geoms))], dtype=object)
    pyogrio.raw.write(str(path), geometry=wkbs, field_data=[keys], fields=["BSM"], geometry_type="Unknown", crs="EPSG:4490",
                      driver="GPKG")
    return path


def test_a_gpkg_written_by_gdal_reads_back_plain_where_geos_writes_the_same(tmp_path: Path) -> None:
    geoms = [SQUARE, HOLED, MULTI, Z, shapely.Polygon(), None, SQUARE]
    (raw,) = list(iter_batches(open_source(write_gpkg(tmp_path / "mixed.gpkg", geoms)), batch_size=100))
    assert raw.plain_wkb is not None
    assert raw.plain_wkb.tolist() == [True, True, False, False, False, False, True]
    for wkb, plain in zip(raw.wkb, raw.plain_wkb.tolist()):
        if plain:
            assert shapely.to_wkb(shapely.from_wkb(wkb), output_dimension=3) == wkb
    # a later batch of the same file: the Arrow column's offsets start past the first batch's
    batches = list(iter_batches(open_source(tmp_path / "mixed.gpkg"), batch_size=3))
    assert np.concatenate([b.plain_wkb for b in batches]).tolist() == raw.plain_wkb.tolist()


def test_stored_keeps_the_source_bytes_only_where_the_geometry_is_the_one_read() -> None:
    wkbs = [shapely.to_wkb(g) for g in (SQUARE, HOLED, SQUARE, MULTI)]
    parsed = shapely.from_wkb(np.array(wkbs, dtype=object))
    after = parsed.copy()
    after[2] = shapely.box(X, Y, X + 0.002, Y + 0.002)  # replaced (a repair, a conversion)
    source = SourceWkb(wkbs, np.array([True, True, True, False]), parsed)
    stored = source.stored(after)
    assert stored[0] is wkbs[0] and stored[1] is wkbs[1]  # kept as read
    assert stored[2] == shapely.to_wkb(after[2]) and stored[3] == wkbs[3] and stored[3] is not wkbs[3]  # GEOS's
    none = SourceWkb(wkbs, np.zeros(4, dtype=bool), parsed).stored(after)
    assert none == shapely.to_wkb(after, output_dimension=3).tolist()


def stored_wkb(engine: sa.Engine, dataset: str, keys: list[str]) -> dict[str, bytes | None]:
    store = feature_store_for(engine)
    with engine.connect() as conn:
        return dict(store.geometries_of_keys(conn, dataset, 1, keys))


def test_a_submission_stores_geos_bytes_for_kept_repaired_and_converted_rows(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    feats = grid_parcels(3)
    x0, y0, x1, y1 = shapely.geometry.shape(feats[4]["geometry"]).bounds  # the middle parcel, as a bow-tie
    bow = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])  # self-intersecting
    feats[4]["geometry"] = shapely.geometry.mapping(bow)
    feats[4]["properties"]["TBMJ"] = round(float(survey_areas(np.array([shapely.make_valid(bow)]))[0]), 2)
    src = write_geojson(tmp_path / "parcels.geojson", feats)
    result = run_submission(engine, settings, src, SubmitOptions(dataset_id="kept", unit="230102", repair=True))
    assert result.accepted, [f.message_en for f in result.findings]
    keys = [f["properties"]["BSM"] for f in feats]
    got = stored_wkb(engine, "kept", keys)
    (raw,) = list(iter_batches(open_source(src), batch_size=100))
    assert raw.plain_wkb is not None and raw.plain_wkb.all()  # GDAL's WKB of GeoJSON polygons: every one plain
    for i, key in enumerate(keys):
        source = raw.wkb[i]
        if i == 4:
            repaired = shapely.from_wkb(got[key])
            assert got[key] != source and repaired.is_valid and repaired.geom_type == "MultiPolygon"
        else:
            assert got[key] == source
        assert got[key] == shapely.to_wkb(shapely.from_wkb(got[key]), output_dimension=3)
    # converted from a projected CRS: GEOS's bytes of the converted shapes, not the source's
    shp = write_shapefile(tmp_path / "gk.shp", grid_parcels(2), project_to="EPSG:4530")
    result = run_submission(engine, settings, shp, SubmitOptions(dataset_id="gk", unit="230102"))
    assert result.accepted, [f.message_en for f in result.findings]
    keys = [f["properties"]["BSM"] for f in grid_parcels(2)]
    got = stored_wkb(engine, "gk", keys)
    (raw,) = list(iter_batches(open_source(shp), batch_size=100))
    for i, key in enumerate(keys):
        lon_lat = shapely.from_wkb(got[key])
        assert got[key] != raw.wkb[i] and abs(lon_lat.centroid.x - X) < 0.01
        assert got[key] == shapely.to_wkb(lon_lat, output_dimension=3)
