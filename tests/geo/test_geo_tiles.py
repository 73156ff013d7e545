"""Tile matrix sets: WebMercatorQuad and WorldCRS84Quad arithmetic, against OGC and PROJ."""

from __future__ import annotations

import math

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from landcloud.geo.tiles import (
    EDGE_EPS,
    MAX_LATITUDE,
    MAX_ZOOM,
    ORIGIN_SHIFT,
    TILE_MATRIX_SETS,
    WEB_MERCATOR_QUAD,
    WORLD_CRS84_QUAD,
    TileMatrixSet,
    get_tms,
)
from landcloud.messages import LandcloudError, NotFound

BOTH = [WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD]
lons = st.floats(-179.999, 179.999, allow_nan=False)
lats = st.floats(-85.0, 85.0, allow_nan=False)
zooms = st.integers(0, 22)
tms_st = st.sampled_from(BOTH)


def test_matrices_follow_the_ogc_definitions() -> None:
    # scale denominators and cell sizes of the OGC TMS 2.0 registry documents
    assert WEB_MERCATOR_QUAD.matrix_size(0) == (1, 1)
    assert WORLD_CRS84_QUAD.matrix_size(0) == (2, 1)  # 天地图-style lon/lat grid: two tiles at z0
    assert WORLD_CRS84_QUAD.matrix_size(3) == (16, 8)
    assert WEB_MERCATOR_QUAD.scale_denominator(0) == pytest.approx(559082264.028717, rel=1e-12)
    assert WEB_MERCATOR_QUAD.cell_size(0) == pytest.approx(156543.033928041, rel=1e-12)
    assert WEB_MERCATOR_QUAD.scale_denominator(24) == pytest.approx(33.3238997476528, rel=1e-12)
    assert WORLD_CRS84_QUAD.scale_denominator(0) == pytest.approx(279541132.014358, rel=1e-12)
    assert WORLD_CRS84_QUAD.cell_size(0) == pytest.approx(0.703125)
    assert WORLD_CRS84_QUAD.scale_denominator(17) == pytest.approx(2132.72958384978, rel=1e-12)
    for tms in BOTH:
        doc = tms.document()
        assert doc["id"] == tms.id and doc["uri"].endswith(tms.id) and doc["crs"] == tms.crs
        assert [m["id"] for m in doc["tileMatrices"]] == [str(z) for z in range(MAX_ZOOM + 1)]
        for z, m in enumerate(doc["tileMatrices"]):
            assert (m["matrixWidth"], m["matrixHeight"]) == tms.matrix_size(z)
            assert m["pointOfOrigin"] == [tms.extent[0], tms.extent[3]] and m["tileWidth"] == 256
            if z:
                assert m["cellSize"] == pytest.approx(doc["tileMatrices"][z - 1]["cellSize"] / 2)
    assert WORLD_CRS84_QUAD.document()["orderedAxes"] == ["Lon", "Lat"]
    assert set(TILE_MATRIX_SETS) == {"WebMercatorQuad", "WorldCRS84Quad"}


def test_world_crs84_z0_splits_the_world_at_lon_0() -> None:
    assert WORLD_CRS84_QUAD.tile_bounds_lonlat(0, 0, 0) == (-180.0, -90.0, 0.0, 90.0)
    assert WORLD_CRS84_QUAD.tile_bounds_lonlat(0, 1, 0) == (0.0, -90.0, 180.0, 90.0)
    assert WORLD_CRS84_QUAD.tile_for_lonlat(126.6, 45.7, 0) == (1, 0)
    assert WORLD_CRS84_QUAD.tile_for_lonlat(-0.001, 45.7, 0) == (0, 0)
    assert WORLD_CRS84_QUAD.tile_bounds_lonlat(1, 3, 0) == (90.0, 0.0, 180.0, 90.0)


def test_web_mercator_known_tiles() -> None:
    minx, miny, maxx, maxy = WEB_MERCATOR_QUAD.tile_bounds_lonlat(0, 0, 0)
    assert (minx, maxx) == (-180.0, 180.0)
    assert maxy == pytest.approx(MAX_LATITUDE, abs=1e-12) and miny == pytest.approx(-MAX_LATITUDE, abs=1e-12)
    assert WEB_MERCATOR_QUAD.tile_bounds(0, 0, 0) == (-ORIGIN_SHIFT, -ORIGIN_SHIFT, ORIGIN_SHIFT, ORIGIN_SHIFT)
    # Harbin (central street) at z10 and z14, as every XYZ slippy-map tool computes it
    for z in (10, 14):
        n = 2**z
        lon, lat = 126.6168, 45.7731
        x = int((lon + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
        assert WEB_MERCATOR_QUAD.tile_for_lonlat(lon, lat, z) == (x, y)
    assert WEB_MERCATOR_QUAD.tile_for_lonlat(126.6168, 45.7731, 10) == (872, 365)


@settings(max_examples=200, deadline=None)
@given(lons, lats)
def test_web_mercator_matches_proj(lon: float, lat: float) -> None:
    tr = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x, y = WEB_MERCATOR_QUAD.to_tms(lon, lat)
    ex, ey = tr.transform(lon, lat)
    assert float(x) == pytest.approx(ex, abs=1e-6) and float(y) == pytest.approx(ey, abs=1e-6)
    back = WEB_MERCATOR_QUAD.to_lonlat(x, y)
    assert float(back[0]) == pytest.approx(lon, abs=1e-9) and float(back[1]) == pytest.approx(lat, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(tms_st, lons, lats, zooms)
def test_the_tile_of_a_point_holds_it(tms: TileMatrixSet, lon: float, lat: float, z: int) -> None:
    x, y = tms.tile_for_lonlat(lon, lat, z)
    assert tms.is_valid(z, x, y)
    minx, miny, maxx, maxy = tms.tile_bounds_lonlat(z, x, y)
    eps = 1e-9
    assert minx - eps <= lon <= maxx + eps and miny - eps <= lat <= maxy + eps
    # and the TMS-CRS bounds hold its projection
    px, py = tms.to_tms(lon, lat)
    bx0, by0, bx1, by1 = tms.tile_bounds(z, x, y)
    tol = 1e-6 * (bx1 - bx0)
    assert bx0 - tol <= float(px) <= bx1 + tol and by0 - tol <= float(py) <= by1 + tol


@settings(max_examples=200, deadline=None)
@given(tms_st, st.integers(0, 20), st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True))
def test_a_tile_covers_exactly_itself_and_its_children_partition_it(tms: TileMatrixSet, z: int, fx: float, fy: float) -> None:
    cols, rows = tms.matrix_size(z)
    x, y = int(fx * cols), int(fy * rows)
    bounds = tms.tile_bounds_lonlat(z, x, y)
    assert list(tms.tiles_covering(bounds, z)) == [(x, y)]
    children = [(2 * x + i, 2 * y + j) for j in (0, 1) for i in (0, 1)]
    assert sorted(tms.tiles_covering(bounds, z + 1)) == sorted(children)
    union = shapely.union_all([shapely.box(*tms.tile_bounds(z + 1, cx, cy)) for cx, cy in children])
    parent = shapely.box(*tms.tile_bounds(z, x, y))
    assert union.symmetric_difference(parent).area <= 1e-9 * parent.area


@settings(max_examples=150, deadline=None)
@given(tms_st, st.integers(0, 12), lons, lats, st.floats(0, 3), st.floats(0, 3))
def test_tiles_covering_a_bbox_are_exactly_those_meeting_it(
    tms: TileMatrixSet, z: int, lon: float, lat: float, w: float, h: float
) -> None:
    bbox = (lon, lat, min(lon + w, 179.999), min(lat + h, 85.0))
    covering = set(tms.tiles_covering(bbox, z))
    x0, y0, x1, y1 = tms.tile_range(bbox, z)
    assert len(covering) == (x1 - x0 + 1) * (y1 - y0 + 1)
    box = shapely.box(*bbox)
    cols, rows = tms.matrix_size(z)
    # every tile in the range meets the bbox; the ring of tiles around it does not overlap it
    for x, y in covering:
        assert shapely.box(*tms.tile_bounds_lonlat(z, x, y)).buffer(1e-9).intersects(box)
    w, h = tms.tile_span(z)
    for x in range(x0 - 1, x1 + 2):
        for y in range(y0 - 1, y1 + 2):
            if (x, y) in covering or not (0 <= x < cols and 0 <= y < rows):
                continue
            # at most a touch, or an overlap thinner than EDGE_EPS of a tile (in the set's CRS)
            ix0, iy0, ix1, iy1 = tms.tile_bounds(z, x, y)
            bx0, by0 = tms.to_tms(bbox[0], bbox[1])
            bx1, by1 = tms.to_tms(bbox[2], bbox[3])
            overlap_w = min(ix1, float(bx1)) - max(ix0, float(bx0))
            overlap_h = min(iy1, float(by1)) - max(iy0, float(by0))
            assert overlap_w <= 2 * EDGE_EPS * w or overlap_h <= 2 * EDGE_EPS * h, (x, y)


def test_validation_and_lookup() -> None:
    for tms in BOTH:
        tms.check(0, 0, 0)
        tms.check(MAX_ZOOM, 0, 0)
        for bad in [(-1, 0, 0), (MAX_ZOOM + 1, 0, 0), (1, -1, 0), (1, 0, -1), (0, 0, 1)]:
            with pytest.raises(LandcloudError) as err:
                tms.check(*bad)
            assert err.value.status == 400 and err.value.message.code.startswith("tile.")
            assert not tms.is_valid(*bad)
    WORLD_CRS84_QUAD.check(0, 1, 0)
    with pytest.raises(LandcloudError):
        WEB_MERCATOR_QUAD.check(0, 1, 0)
    assert get_tms("WorldCRS84Quad") is WORLD_CRS84_QUAD
    with pytest.raises(NotFound) as err:
        get_tms("GoogleCRS84Quad")
    assert err.value.status == 404 and "WebMercatorQuad" in err.value.message.en


def test_pixel_sizes_and_limits() -> None:
    # a z18 Web Mercator pixel is about 0.42 m at Harbin's latitude; a WorldCRS84Quad z17 pixel about the same at the equator
    assert WEB_MERCATOR_QUAD.pixel_size_m(18, 45.75) == pytest.approx(0.5972 * math.cos(math.radians(45.75)), rel=1e-3)
    assert WORLD_CRS84_QUAD.pixel_size_m(17) == pytest.approx(WEB_MERCATOR_QUAD.pixel_size_m(18), rel=1e-9)
    harbin = (126.14, 45.54, 126.63, 45.79)
    limits = WEB_MERCATOR_QUAD.limits(harbin, 8, 10)
    assert [lim["tileMatrix"] for lim in limits] == ["8", "9", "10"]
    for lim in limits:
        z = int(lim["tileMatrix"])
        assert (lim["minTileCol"], lim["minTileRow"]) == WEB_MERCATOR_QUAD.tile_for_lonlat(harbin[0], harbin[3], z)
        assert (lim["maxTileCol"], lim["maxTileRow"]) == WEB_MERCATOR_QUAD.tile_for_lonlat(harbin[2], harbin[1], z)
    whole = WORLD_CRS84_QUAD.limits(None, 0, 1)
    assert whole[0] == {"tileMatrix": "0", "minTileRow": 0, "maxTileRow": 0, "minTileCol": 0, "maxTileCol": 1}
    with pytest.raises(ValueError):
        WEB_MERCATOR_QUAD.tile_range((1.0, 0.0, 0.0, 1.0), 3)


@given(st.floats(-20037508.0, 20037508.0), st.floats(-20037508.0, 20037508.0))
def test_one_points_lonlat_is_the_arrays(x: float, y: float) -> None:
    """`point_to_lonlat` (plain floats, for a tile's plan) agrees with `to_lonlat` (numpy) in both sets."""
    for tms in (WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD):
        lon, lat = tms.to_lonlat([x], [y])
        got = tms.point_to_lonlat(x, y)
        assert got == pytest.approx((float(lon[0]), float(lat[0])), rel=1e-12, abs=1e-12)
