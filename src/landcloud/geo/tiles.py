"""Tile matrix sets (OGC TMS 2.0): WebMercatorQuad and WorldCRS84Quad, as pure arithmetic.

A tile is addressed by (z, x, y) = (tileMatrix, tileCol, tileRow), rows counted from the top
(north) as OGC, XYZ and MapLibre all do. Two sets are served:

* WebMercatorQuad — EPSG:3857, 1×1 tiles at z0, the grid of every web basemap;
* WorldCRS84Quad — lon/lat (CRS84), 2×1 tiles at z0 each 180° wide, the grid of the
  geographic basemaps used in China (天地图 "c" layers); its level z has the cell size of
  WebMercatorQuad's level z + 1 at the equator.

Data are stored in CGCS2000 lon/lat (EPSG:4490). CGCS2000 and WGS 84 agree at the decimetre
level, far below a tile pixel at any useful zoom, so lon/lat are used as they are (as the
platform does for WGS 84 input: no datum shift), and the Web Mercator projection is the
spherical formula EPSG:3857 defines.

Nothing here touches a database or the network.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from landcloud.messages import LandcloudError, NotFound

BBox = tuple[float, float, float, float]

EARTH_RADIUS = 6378137.0  # the sphere of EPSG:3857 (WGS 84 semi-major axis)
ORIGIN_SHIFT = math.pi * EARTH_RADIUS  # 20037508.342789244
MAX_LATITUDE = math.degrees(2.0 * math.atan(math.exp(math.pi)) - math.pi / 2.0)  # 85.0511287798066
METERS_PER_DEGREE = 2.0 * math.pi * EARTH_RADIUS / 360.0
STANDARD_PIXEL = 0.00028  # metres: the OGC "standardized rendering pixel size"
TILE_SIZE = 256  # pixels per tile side in the published matrices (cellSize = span / 256)
MIN_ZOOM = 0
MAX_ZOOM = 24
EDGE_EPS = 1e-6  # tile units: a bbox edge this close to a tile edge does not reach into the next tile


@dataclass(frozen=True)
class TileMatrixSet:
    """One tile matrix set: how tiles at each zoom divide its extent."""

    id: str
    title: str
    uri: str
    crs: str
    ordered_axes: tuple[str, str]
    well_known_scale_set: str
    extent: BBox  # in the set's CRS
    z0_cols: int
    z0_rows: int
    geographic: bool  # lon/lat tiling (CRS84), else Web Mercator metres

    # -- the matrix at a zoom ---------------------------------------------------------------
    def matrix_size(self, z: int) -> tuple[int, int]:
        """(columns, rows) of tile matrix z."""
        return self.z0_cols << z, self.z0_rows << z

    def tile_span(self, z: int) -> tuple[float, float]:
        """Width and height of one tile at zoom z, in the set's CRS units (metres or degrees)."""
        cols, rows = self.matrix_size(z)
        minx, miny, maxx, maxy = self.extent
        return (maxx - minx) / cols, (maxy - miny) / rows

    def cell_size(self, z: int) -> float:
        """Size of one pixel of a 256-pixel tile at zoom z (the OGC cellSize), in CRS units."""
        return self.tile_span(z)[0] / TILE_SIZE

    def scale_denominator(self, z: int) -> float:
        metres = self.cell_size(z) * (METERS_PER_DEGREE if self.geographic else 1.0)
        return metres / STANDARD_PIXEL

    def pixel_size_m(self, z: int, lat: float = 0.0) -> float:
        """Ground size of one 256-tile pixel at zoom z and latitude `lat`, in metres (east-west)."""
        if self.geographic:
            return self.cell_size(z) * METERS_PER_DEGREE * math.cos(math.radians(lat))
        return self.cell_size(z) * math.cos(math.radians(lat))

    # -- projection --------------------------------------------------------------------------
    def to_tms(self, lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Lon/lat (EPSG:4490 / CRS84) to the set's CRS; latitudes beyond Web Mercator's ±85.05° are clamped."""
        lon_a = np.asarray(lon, dtype=np.float64)
        lat_a = np.asarray(lat, dtype=np.float64)
        if self.geographic:
            return lon_a.copy(), lat_a.copy()
        lat_c = np.clip(lat_a, -MAX_LATITUDE, MAX_LATITUDE)
        x = lon_a * (ORIGIN_SHIFT / 180.0)
        y = EARTH_RADIUS * np.log(np.tan(np.pi / 4.0 + np.radians(lat_c) / 2.0))
        return x, y

    def to_lonlat(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The set's CRS back to lon/lat."""
        x_a = np.asarray(x, dtype=np.float64)
        y_a = np.asarray(y, dtype=np.float64)
        if self.geographic:
            return x_a.copy(), y_a.copy()
        lon = x_a * (180.0 / ORIGIN_SHIFT)
        lat = np.degrees(2.0 * np.arctan(np.exp(y_a / EARTH_RADIUS)) - np.pi / 2.0)
        return lon, lat

    def point_to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        """`to_lonlat` of one point, in plain floats: every tile's plan needs a few, and numpy's set-up for a pair
        of values was most of a cached tile's plan (benchmarks/profiles/tiles-decisions.txt)."""
        if self.geographic:
            return float(x), float(y)
        return x * (180.0 / ORIGIN_SHIFT), math.degrees(2.0 * math.atan(math.exp(y / EARTH_RADIUS)) - math.pi / 2.0)

    # -- tiles -------------------------------------------------------------------------------
    def is_valid(self, z: int, x: int, y: int) -> bool:
        if not MIN_ZOOM <= z <= MAX_ZOOM:
            return False
        cols, rows = self.matrix_size(z)
        return 0 <= x < cols and 0 <= y < rows

    def check(self, z: int, x: int, y: int) -> None:
        """Raise a 400 LandcloudError unless (z, x, y) is a tile of this set."""
        if not MIN_ZOOM <= z <= MAX_ZOOM:
            raise LandcloudError(
                "tile.bad_zoom",
                f"瓦片层级 {z} 无效：{self.id} 的层级为 {MIN_ZOOM}–{MAX_ZOOM}",
                f"invalid tile matrix {z}: {self.id} has tile matrices {MIN_ZOOM}–{MAX_ZOOM}",
                tileMatrixSet=self.id,
            )
        cols, rows = self.matrix_size(z)
        if not (0 <= x < cols and 0 <= y < rows):
            raise LandcloudError(
                "tile.bad_index",
                f"瓦片行列号无效：层级 {z} 的列号应为 0–{cols - 1}，行号应为 0–{rows - 1}（收到列 {x}、行 {y}）",
                f"invalid tile index: at tile matrix {z} columns are 0–{cols - 1} and rows 0–{rows - 1} (got column {x}, row {y})",
                tileMatrixSet=self.id,
            )

    def tile_bounds(self, z: int, x: int, y: int) -> BBox:
        """The tile's bounds in the set's CRS (minx, miny, maxx, maxy)."""
        w, h = self.tile_span(z)
        minx, _, _, maxy = self.extent
        return (minx + x * w, maxy - (y + 1) * h, minx + (x + 1) * w, maxy - y * h)

    def tile_bounds_lonlat(self, z: int, x: int, y: int) -> BBox:
        """The tile's bounds in EPSG:4490 lon/lat (a Web Mercator tile is a lon/lat rectangle too)."""
        minx, miny, maxx, maxy = self.tile_bounds(z, x, y)
        return (*self.point_to_lonlat(minx, miny), *self.point_to_lonlat(maxx, maxy))

    def fractional_tile(self, lon: float, lat: float, z: int) -> tuple[float, float]:
        """Position of a lon/lat point in tile units at zoom z (column, row; row 0 at the top)."""
        px, py = self.to_tms(lon, lat)
        w, h = self.tile_span(z)
        minx, _, _, maxy = self.extent
        return (float(px) - minx) / w, (maxy - float(py)) / h

    def tile_for_lonlat(self, lon: float, lat: float, z: int) -> tuple[int, int]:
        """(x, y) of the tile holding a lon/lat point at zoom z (points outside are clamped in)."""
        fx, fy = self.fractional_tile(lon, lat, z)
        cols, rows = self.matrix_size(z)
        return _clamp(math.floor(fx), cols), _clamp(math.floor(fy), rows)

    def tile_range(self, bbox: BBox, z: int) -> tuple[int, int, int, int]:
        """(min x, min y, max x, max y), inclusive, of the tiles a lon/lat bbox touches at zoom z.

        A bbox edge lying on a tile edge does not pull in the neighbouring tile, so the bounds of
        a tile give back that one tile.
        """
        minx, miny, maxx, maxy = bbox
        if minx > maxx or miny > maxy:
            raise ValueError(f"bad bbox {bbox}")
        fx0, fy0 = self.fractional_tile(minx, maxy, z)
        fx1, fy1 = self.fractional_tile(maxx, miny, z)
        cols, rows = self.matrix_size(z)
        # an edge within EDGE_EPS of a tile edge does not reach across it, but the range never
        # leaves the tiles the corners themselves lie in (a point just short of an edge keeps its tile)
        x0 = _clamp(min(math.floor(fx0 + EDGE_EPS), math.floor(fx1)), cols)
        y0 = _clamp(min(math.floor(fy0 + EDGE_EPS), math.floor(fy1)), rows)
        x1 = _clamp(math.ceil(fx1 - EDGE_EPS) - 1, cols)
        y1 = _clamp(math.ceil(fy1 - EDGE_EPS) - 1, rows)
        return x0, y0, max(x0, x1), max(y0, y1)

    def tiles_covering(self, bbox: BBox, z: int) -> Iterator[tuple[int, int]]:
        """Every (x, y) at zoom z whose tile meets a lon/lat bbox, row by row."""
        x0, y0, x1, y1 = self.tile_range(bbox, z)
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                yield x, y

    def limits(self, bbox: BBox | None, minzoom: int, maxzoom: int) -> list[dict[str, Any]]:
        """OGC tileMatrixSetLimits for the zooms minzoom..maxzoom of data within a lon/lat bbox."""
        out = []
        for z in range(minzoom, maxzoom + 1):
            if bbox is None:
                cols, rows = self.matrix_size(z)
                x0, y0, x1, y1 = 0, 0, cols - 1, rows - 1
            else:
                x0, y0, x1, y1 = self.tile_range(bbox, z)
            out.append({"tileMatrix": str(z), "minTileRow": y0, "maxTileRow": y1, "minTileCol": x0, "maxTileCol": x1})
        return out

    # -- documents ---------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """The OGC Two Dimensional Tile Matrix Set 2.0 JSON document of this set."""
        minx, miny, maxx, maxy = self.extent
        matrices = []
        for z in range(MIN_ZOOM, MAX_ZOOM + 1):
            cols, rows = self.matrix_size(z)
            matrices.append({
                "id": str(z),
                "scaleDenominator": self.scale_denominator(z),
                "cellSize": self.cell_size(z),
                "cornerOfOrigin": "topLeft",
                "pointOfOrigin": [minx, maxy],
                "tileWidth": TILE_SIZE,
                "tileHeight": TILE_SIZE,
                "matrixWidth": cols,
                "matrixHeight": rows,
            })
        return {
            "id": self.id,
            "title": self.title,
            "uri": self.uri,
            "crs": self.crs,
            "orderedAxes": list(self.ordered_axes),
            "wellKnownScaleSet": self.well_known_scale_set,
            "boundingBox": {"lowerLeft": [minx, miny], "upperRight": [maxx, maxy], "crs": self.crs},
            "tileMatrices": matrices,
        }


def _clamp(i: int, n: int) -> int:
    return min(max(i, 0), n - 1)


WEB_MERCATOR_QUAD = TileMatrixSet(
    id="WebMercatorQuad",
    title="Google Maps Compatible for the World",
    uri="http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
    crs="http://www.opengis.net/def/crs/EPSG/0/3857",
    ordered_axes=("X", "Y"),
    well_known_scale_set="http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible",
    extent=(-ORIGIN_SHIFT, -ORIGIN_SHIFT, ORIGIN_SHIFT, ORIGIN_SHIFT),
    z0_cols=1,
    z0_rows=1,
    geographic=False,
)

WORLD_CRS84_QUAD = TileMatrixSet(
    id="WorldCRS84Quad",
    title="CRS84 for the World",
    uri="http://www.opengis.net/def/tilematrixset/OGC/1.0/WorldCRS84Quad",
    crs="http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    ordered_axes=("Lon", "Lat"),
    well_known_scale_set="http://www.opengis.net/def/wkss/OGC/1.0/GoogleCRS84Quad",
    extent=(-180.0, -90.0, 180.0, 90.0),
    z0_cols=2,
    z0_rows=1,
    geographic=True,
)

TILE_MATRIX_SETS: dict[str, TileMatrixSet] = {t.id: t for t in (WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD)}


def get_tms(tms_id: str) -> TileMatrixSet:
    """The tile matrix set with this id (404 LandcloudError when unknown)."""
    tms = TILE_MATRIX_SETS.get(tms_id)
    if tms is None:
        known = ", ".join(TILE_MATRIX_SETS)
        raise NotFound(
            "tiles.unknown_tms",
            f"不支持瓦片矩阵集“{tms_id}”；支持：{known}",
            f"unknown tile matrix set '{tms_id}'; supported: {known}",
            supported=list(TILE_MATRIX_SETS),
        )
    return tms
