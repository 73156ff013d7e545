"""Pre-generalised tile geometry: a stored copy of a shape, projected to Web Mercator and simplified once per
generalisation level, so a low-zoom vector tile does not simplify it again on every request.

The tile code (`publish/tiles.py`) simplifies a shape of more than SIMPLIFY_ABOVE_POINTS points, and of more points
than pixels in its stored envelope's width + height, with a tolerance of SIMPLIFY_CELLS pixels of the tile's zoom.
That was most of a full low-zoom tile's statement beyond the raw ST_AsMVT (profiles/tiles-gen.txt). A copy made for
level L (EPSG:3857, simplified at SIMPLIFY_CELLS pixels of zoom L: `simplified`) serves the tiles of the zooms
z with `level_for(z) == L`: L is the nearest level >= z, so the copy is finer than z needs (never coarser: within the
tolerance the tile would have used), and the snapping to the tile's grid drops what a finer copy keeps beyond it.

LEVELS: one per zoom from 8 to 14 (profiles/tiles-gen.txt, tiles-fixed.txt). A level per zoom keeps every tile's
tolerance what it was (no tile larger than on the fly), and costs little more to build than fewer levels: a copy is
made only for the shapes a tile of that zoom draws and simplifies (100k DLTB parcels: 11.1k, 7.1k, 3.8k, 1.0k copies
for z8-z11, then 110, 5, 0; 22.7k shapes of > 8 points; the Harbin OSM extract's 19k polygons: 0.4k-4.9k a level).
Zooms 0-7 simplify on the fly: a copy for them would be built for nearly every shape of > 8 points (DLTB: 22.7k for
each of z5-z7) for a handful of tiles over a whole province. At z12-z14 few shapes have more points than pixels, but
simplifying those few on every request was ~0.6 ms of a 600-feature OSM z14 tile's ~8 ms statement (tiles-fixed.txt).
Zooms from 15 simplify on the fly.

Which shapes get a copy at level L: those some tile of a zoom served by L would draw and simplify. A tile's pixel in
latitude is never more degrees than its pixel in longitude (Web Mercator stretches latitudes), so a shape with no more
points than (width + height) / (pixel in longitude) of the lowest zoom L serves is simplified by no tile of those
zooms; and a shape narrower than a pixel of zoom L in longitude and lower than the least degrees of latitude a pixel
of a zoom-L tile near it spans is left out of every tile of those zooms (the size rule).

CGCS2000 lon/lat is taken as WGS 84 (no datum shift), as the tile code does.
"""

from __future__ import annotations

import numpy as np
import shapely

from landcloud.geo.tiles import EARTH_RADIUS, MAX_LATITUDE, ORIGIN_SHIFT, TILE_SIZE

SIMPLIFY_CELLS = 0.5  # simplification tolerance, in pixels (1/256 of a tile) of the zoom
# Shapes of at most this many points (most parcels and buildings) are not simplified, only snapped: see publish/tiles.py
SIMPLIFY_ABOVE_POINTS = 8
LEVELS: tuple[int, ...] = (8, 9, 10, 11, 12, 13, 14)
# WKB of a shape of more than SIMPLIFY_ABOVE_POINTS points is at least this long (a 5-byte header and 16 bytes a
# point): a cheap first cut in SQL where the store cannot count points (SQLite)
MIN_WKB_BYTES = 5 + 16 * (SIMPLIFY_ABOVE_POINTS + 1)


def level_for(z: int) -> int | None:
    """The level whose copies serve Web Mercator tiles of zoom z, or None (simplified on the fly)."""
    if z < LEVELS[0]:
        return None
    for level in LEVELS:
        if level >= z:
            return level
    return None


def lowest_zoom(level: int) -> int:
    """The lowest zoom `level` serves."""
    i = LEVELS.index(level)
    return level if i == 0 else LEVELS[i - 1] + 1


def cell_m(z: int) -> float:
    """One pixel (1/256 of a tile) of Web Mercator zoom z, in metres of EPSG:3857."""
    return 2 * ORIGIN_SHIFT / (1 << z) / TILE_SIZE


def tolerance_m(level: int) -> float:
    """The simplification tolerance of a level's copies, in EPSG:3857 metres."""
    return SIMPLIFY_CELLS * cell_m(level)


def pixel_deg(z: int) -> float:
    """One pixel of zoom z in degrees of longitude (and the most degrees of latitude one spans)."""
    return 360.0 / (1 << z) / TILE_SIZE


def least_pixel_lat(level: int, envelopes: np.ndarray) -> np.ndarray:
    """A lower bound of the degrees of latitude one pixel spans in any zoom-`level` tile a shape (its envelope) meets:
    the pixel in longitude times the cosine of the farthest latitude such a tile reaches (a tile is at most
    360 / 2^level degrees high)."""
    far = np.maximum(np.abs(envelopes[:, 1]), np.abs(envelopes[:, 3])) + 360.0 / (1 << level)
    return pixel_deg(level) * np.cos(np.radians(np.minimum(far, 90.0)))


def needs_copy(level: int, points: np.ndarray, envelopes: np.ndarray) -> np.ndarray:
    """Which shapes (their point counts, (n, 4) stored lon/lat envelopes) some tile served by `level` would draw and
    simplify."""
    dx, dy = envelopes[:, 2] - envelopes[:, 0], envelopes[:, 3] - envelopes[:, 1]
    drawn = (dx >= pixel_deg(level)) | (dy >= least_pixel_lat(level, envelopes))
    return (points > SIMPLIFY_ABOVE_POINTS) & (points > (dx + dy) / pixel_deg(lowest_zoom(level))) & drawn


def needs_any(points: np.ndarray, envelopes: np.ndarray) -> np.ndarray:
    """Which shapes (their point counts, (n, 4) lon/lat envelopes) some level needs a copy of: those `copies` makes a
    copy of, told without GEOS (a missing or empty shape has no points: none)."""
    out = np.zeros(len(points), dtype=bool)
    many = np.flatnonzero(points > SIMPLIFY_ABOVE_POINTS)  # (most parcels have fewer: the levels' tests for the rest)
    if len(many):
        out[many] = np.logical_or.reduce([needs_copy(level, points[many], envelopes[many]) for level in LEVELS])
    return out


def to_mercator(xy: np.ndarray) -> np.ndarray:
    """Lon/lat coordinates (n, 2) in EPSG:3857 (latitudes clamped to Web Mercator's ±85.05°), as `geo.tiles` does."""
    lat = np.clip(xy[:, 1], -MAX_LATITUDE, MAX_LATITUDE)
    return np.column_stack((xy[:, 0] * (ORIGIN_SHIFT / 180.0), EARTH_RADIUS * np.log(np.tan(np.pi / 4.0 + np.radians(lat) / 2.0))))


def copies(geoms: np.ndarray, envelopes: np.ndarray) -> list[tuple[int, int, shapely.Geometry]]:
    """The copies lon/lat shapes need: (index in `geoms`, level, EPSG:3857 shape simplified for the level).

    Each shape is projected once, then simplified per level (GEOS, vectorised); missing or empty shapes get none.
    """
    present = ~shapely.is_missing(geoms)
    present[present] = ~shapely.is_empty(geoms[present])
    points = np.zeros(len(geoms), dtype=np.int64)
    points[present] = shapely.get_num_coordinates(geoms[present])
    wanted = {level: needs_copy(level, points, envelopes) & present for level in LEVELS}
    anyone = np.logical_or.reduce(list(wanted.values()))
    if not anyone.any():
        return []
    idx = np.flatnonzero(anyone)
    projected = np.empty(len(geoms), dtype=object)
    projected[idx] = shapely.transform(geoms[idx], to_mercator)
    out: list[tuple[int, int, shapely.Geometry]] = []
    for level, mask in wanted.items():
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        made = simplified(projected[rows], tolerance_m(level))
        out += [(int(i), level, g) for i, g in zip(rows.tolist(), made)]
    return out


def simplified(shapes: np.ndarray, tolerance: float) -> np.ndarray:
    """Shapes simplified for a copy: a polygon of one ring by Douglas-Peucker where the result is a valid polygon, any
    other shape (and such a polygon where it is not) topology-preservingly — the PostGIS build's rule (DP kept when
    valid with every part and ring), at about half the CPU of the topology-preserving simplifier for all.

    The ring is simplified as a ring alone: GEOS's Douglas-Peucker on a polygon mends an invalid result itself
    (buffer(0)), which could drop a part of it unseen; a ring alone is not mended, so an invalid result shows as such
    (a ring of fewer than 4 points comes back a line). Every point Douglas-Peucker drops lies within the tolerance of
    the ring it keeps, and the polygon's vertices are its own. (Parcels are almost all of one ring: 98.5% of DLTB's
    copies; profiles/ingest-sqlite-1m.txt §19.)
    """
    out = np.empty(len(shapes), dtype=object)
    one_ring = np.flatnonzero((shapely.get_type_id(shapes) == 3) & (shapely.get_num_interior_rings(shapes) == 0))
    if len(one_ring):
        rings = shapely.simplify(shapely.get_exterior_ring(shapes[one_ring]), tolerance, preserve_topology=False)
        closed = shapely.get_type_id(rings) == 2  # a LinearRing still
        polygons = shapely.polygons(rings[closed])
        valid = shapely.is_valid(polygons)
        out[one_ring[closed][valid]] = polygons[valid]
    rest = shapely.is_missing(out)
    out[rest] = shapely.simplify(shapes[rest], tolerance, preserve_topology=True)
    return out
