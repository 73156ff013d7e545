"""GCJ-02 ("火星坐标") <-> WGS-84, for overlaying on and ingesting from Chinese web maps.

Coordinates digitised on AutoNavi/Tencent/Google-China tiles carry the GCJ-02
offset (a few hundred metres, non-linear). Authoritative data stays in
CGCS2000; GCJ-02 is only removed on the way in and applied on the way out to a
GCJ basemap (DOMAIN.md §4). The forward formula is the widely used
reverse-engineered one; the inverse has no closed form and is iterated.

The offset exists only in mainland China, so both directions leave points
outside a coarse mainland polygon unchanged. A bounding box is not enough: it
would shift Hong Kong, Macau, Taiwan and parts of every neighbouring country.
"""

from __future__ import annotations

from typing import Any, Final, overload

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "GCJ02_A",
    "GCJ02_EE",
    "MAINLAND_POLYGON_LONLAT",
    "gcj02_to_wgs84",
    "geometry_gcj02_to_wgs84",
    "geometry_wgs84_to_gcj02",
    "in_mainland_china",
    "wgs84_to_gcj02",
]

#: Krassowsky semi-major axis and eccentricity² baked into the GCJ-02 formula.
GCJ02_A: Final[float] = 6378245.0
GCJ02_EE: Final[float] = 0.00669342162296594323

#: Coarse outline (lon, lat) of the area where Chinese map providers apply GCJ-02.
#: Derived from the PRCoords "insane_is_in_china" polygon (CC0, Artoria2e5/PRCoords),
#: which cuts notches around Hong Kong and Macau and passes between Fujian and
#: Taiwan. Its north-east section was redrawn here, a little on the far side of
#: the Amur/Ussuri/Khanka border, because the original cuts off Mohe, Fuyuan,
#: Heixiazi Island, Dongning and Suifenhe - all inside our province. The Macau
#: notch was widened to exclude Taipa and Coloane too. This is an approximation
#: of where a distortion applies, not a boundary of anything.
MAINLAND_POLYGON_LONLAT: Final[tuple[tuple[float, float], ...]] = (
    # Hong Kong / Macau notch (south coast, west to east around HK)
    (114.433722, 22.064310),
    (114.009458, 22.182105),
    (113.620000, 22.090000),
    (113.547000, 22.105000),
    (113.535000, 22.150000),
    (113.527000, 22.178000),
    (113.527000, 22.219000),
    (113.613377, 22.227435),
    (113.938514, 22.483714),
    (114.043449, 22.500274),
    (114.138506, 22.550640),
    (114.222984, 22.550960),
    (114.366803, 22.524255),
    # East coast (between Fujian and Taiwan), Yellow Sea, Korean border
    (115.254019, 20.235733),
    (121.456316, 26.504442),
    (123.417261, 30.355685),
    (124.289197, 39.761103),
    (126.880509, 41.774504),
    (127.887261, 41.370015),
    (128.214602, 41.965359),
    (129.698745, 42.452788),
    (130.766139, 42.668534),
    # North-east (Heilongjiang): Russian border, redrawn
    (131.360000, 43.400000),
    (131.360000, 44.100000),
    (131.260000, 44.500000),
    (131.160000, 44.800000),
    (131.550000, 44.870000),
    (132.850000, 44.960000),
    (133.220000, 45.000000),
    (133.300000, 45.380000),
    (133.550000, 45.550000),
    (133.850000, 46.000000),
    (134.050000, 46.250000),
    (134.150000, 46.550000),
    (134.200000, 46.900000),
    (134.320000, 47.050000),
    (134.380000, 47.300000),
    (134.700000, 47.420000),
    (134.870000, 47.600000),
    (134.870000, 47.750000),
    (134.750000, 48.050000),
    (134.880000, 48.200000),
    (135.150000, 48.280000),
    (135.150000, 48.500000),
    (134.000000, 48.470000),
    (133.500000, 48.330000),
    (133.000000, 48.200000),
    (132.500000, 48.030000),
    (132.200000, 47.820000),
    (131.000000, 47.820000),
    (130.950000, 48.550000),
    (130.750000, 48.950000),
    (130.150000, 49.100000),
    (129.600000, 49.520000),
    (128.850000, 49.670000),
    (127.950000, 49.750000),
    (127.750000, 50.250000),
    (127.450000, 50.800000),
    (127.300000, 51.050000),
    (127.050000, 51.600000),
    (126.750000, 52.200000),
    (126.550000, 52.500000),
    (126.300000, 52.850000),
    (125.850000, 53.030000),
    (125.550000, 53.180000),
    (125.300000, 53.250000),
    (124.550000, 53.280000),
    (124.350000, 53.450000),
    (123.900000, 53.580000),
    (123.600000, 53.630000),
    (123.000000, 53.630000),
    (122.600000, 53.550000),
    (122.300000, 53.580000),
    (121.800000, 53.500000),
    (121.500000, 53.460000),
    (121.200000, 53.420000),
    (120.619316, 53.100485),
    # Mongolia, Central Asia, South Asia, South-East Asia, Hainan
    (119.403751, 50.105903),
    (117.070862, 49.690388),
    (115.586019, 47.995542),
    (118.599613, 47.927785),
    (118.260771, 46.707335),
    (113.534759, 44.735134),
    (112.093739, 45.001999),
    (111.431259, 43.489381),
    (105.206324, 41.809510),
    (96.485703, 42.778692),
    (94.167961, 44.991668),
    (91.130430, 45.192938),
    (90.694601, 47.754437),
    (87.356293, 49.232005),
    (85.375791, 48.263928),
    (85.876055, 47.109272),
    (82.935423, 47.285727),
    (81.929808, 45.506317),
    (79.919457, 45.108122),
    (79.841455, 42.178752),
    (73.334917, 40.076332),
    (73.241805, 39.062331),
    (79.031902, 34.206413),
    (78.738395, 31.578004),
    (80.715812, 30.453822),
    (81.821692, 30.585965),
    (85.501663, 28.208463),
    (92.096061, 27.754241),
    (94.699781, 29.357171),
    (96.079442, 29.429559),
    (98.910308, 27.140660),
    (97.404057, 24.494701),
    (99.400021, 23.168966),
    (100.697449, 21.475914),
    (102.976870, 22.616482),
    (105.476997, 23.244292),
    (108.565621, 20.907735),
    (107.730505, 18.193406),
    (110.669856, 17.754550),
)

#: Like PRCoords, nothing south of this latitude (South China Sea) is shifted.
_SOUTH_LIMIT: Final[float] = 17.75455

_MAINLAND: Final[shapely.Polygon] = shapely.Polygon(MAINLAND_POLYGON_LONLAT)
shapely.prepare(_MAINLAND)
_MIN_LON, _MIN_LAT, _MAX_LON, _MAX_LAT = _MAINLAND.bounds


def _arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lon_a, lat_a = np.broadcast_arrays(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    return np.array(lon_a, dtype=np.float64), np.array(lat_a, dtype=np.float64)


def _mainland_mask(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> NDArray[np.bool_]:
    shape = lon.shape
    x = lon.reshape(-1)
    y = lat.reshape(-1)
    # Cheap box pre-filter first: most calls are either all-inside or far away.
    mask = (
        (x >= _MIN_LON)
        & (x <= _MAX_LON)
        & (y > _SOUTH_LIMIT)
        & (y <= _MAX_LAT)
        & np.isfinite(x)
        & np.isfinite(y)
    )
    if mask.any():
        mask[mask] = shapely.intersects_xy(_MAINLAND, x[mask], y[mask])
    return mask.reshape(shape)


@overload
def in_mainland_china(lon: float, lat: float) -> bool: ...
@overload
def in_mainland_china(lon: ArrayLike, lat: ArrayLike) -> bool | NDArray[np.bool_]: ...
def in_mainland_china(lon: ArrayLike, lat: ArrayLike) -> bool | NDArray[np.bool_]:
    """True where GCJ-02 applies (mainland China per the coarse polygon).

    Scalars give a plain bool, arrays a boolean array of the broadcast shape.
    Points within a few km of a land border may be classified either way; the
    polygon errs on the side of including all of Heilongjiang.
    """
    lon_a, lat_a = _arrays(lon, lat)
    mask = _mainland_mask(lon_a, lat_a)
    if mask.ndim == 0:
        return bool(mask)
    return mask


def _delta(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """GCJ-02 offset (dlon, dlat) in degrees at WGS-84 (lon, lat), ignoring the mainland test."""
    x = lon - 105.0
    y = lat - 35.0
    pi = np.pi
    common = (20.0 * np.sin(6.0 * pi * x) + 20.0 * np.sin(2.0 * pi * x)) * 2.0 / 3.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    dlat = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * sqrt_abs_x
        + common
        + (20.0 * np.sin(pi * y) + 40.0 * np.sin(pi * y / 3.0)) * 2.0 / 3.0
        + (160.0 * np.sin(pi * y / 12.0) + 320.0 * np.sin(pi * y / 30.0)) * 2.0 / 3.0
    )
    dlon = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * sqrt_abs_x
        + common
        + (20.0 * np.sin(pi * x) + 40.0 * np.sin(pi * x / 3.0)) * 2.0 / 3.0
        + (150.0 * np.sin(pi * x / 12.0) + 300.0 * np.sin(pi * x / 30.0)) * 2.0 / 3.0
    )
    rad_lat = np.radians(lat)
    m = 1.0 - GCJ02_EE * np.sin(rad_lat) ** 2
    sqrt_m = np.sqrt(m)
    dlat_deg = dlat * 180.0 / ((GCJ02_A * (1.0 - GCJ02_EE)) / (m * sqrt_m) * pi)
    dlon_deg = dlon * 180.0 / (GCJ02_A / sqrt_m * np.cos(rad_lat) * pi)
    return dlon_deg, dlat_deg


def _shape_out(
    lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> tuple[Any, Any]:
    if lon.ndim == 0:
        return float(lon), float(lat)
    return lon, lat


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[Any, Any]:
    """WGS-84 (lon, lat) -> GCJ-02, only inside mainland China.

    Used when our CGCS2000/WGS-84 data must line up with a GCJ basemap; the
    result must never be written back to the master database.
    Returns floats for scalar input, arrays of the broadcast shape otherwise.
    """
    lon_a, lat_a = _arrays(lon, lat)
    mask = _mainland_mask(lon_a, lat_a)
    out_lon = lon_a.copy()
    out_lat = lat_a.copy()
    if mask.any():
        dlon, dlat = _delta(lon_a[mask], lat_a[mask])
        out_lon[mask] += dlon
        out_lat[mask] += dlat
    return _shape_out(out_lon, out_lat)


def gcj02_to_wgs84(
    lon: ArrayLike, lat: ArrayLike, tol: float = 1e-9, max_iter: int = 30
) -> tuple[Any, Any]:
    """GCJ-02 (lon, lat) -> WGS-84 by fixed-point iteration of the forward formula.

    The one-step inverse ``gcj - delta(gcj)`` is 1-2 m off, too much for parcel
    boundaries; iterating ``w <- w - (forward(w) - gcj)`` converges to ``tol``
    degrees in about three steps. The mainland test is made once on the input
    (as PRCoords does) and the raw offset is used inside the loop, so the
    iteration cannot flip-flop across the polygon edge.
    """
    lon_a, lat_a = _arrays(lon, lat)
    mask = _mainland_mask(lon_a, lat_a)
    out_lon = lon_a.copy()
    out_lat = lat_a.copy()
    if mask.any():
        g_lon = lon_a[mask]
        g_lat = lat_a[mask]
        dlon, dlat = _delta(g_lon, g_lat)
        w_lon = g_lon - dlon
        w_lat = g_lat - dlat
        active = np.ones(w_lon.shape, dtype=bool)
        for _ in range(max_iter):
            dlon, dlat = _delta(w_lon[active], w_lat[active])
            step_lon = w_lon[active] + dlon - g_lon[active]
            step_lat = w_lat[active] + dlat - g_lat[active]
            w_lon[active] -= step_lon
            w_lat[active] -= step_lat
            still = np.maximum(np.abs(step_lon), np.abs(step_lat)) >= tol
            idx = np.nonzero(active)[0]
            active[idx[~still]] = False
            if not active.any():
                break
        out_lon[mask] = w_lon
        out_lat[mask] = w_lat
    return _shape_out(out_lon, out_lat)


def _transform_coords(func: Any) -> Any:
    def apply(coords: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.array(coords, dtype=np.float64, copy=True)
        if out.shape[0]:
            x, y = func(out[:, 0], out[:, 1])
            out[:, 0] = x
            out[:, 1] = y
        return out

    return apply


def geometry_gcj02_to_wgs84(geom: Any) -> Any:
    """Remove the GCJ-02 offset from a shapely geometry or an array of geometries.

    Works per vertex (all vertices of all geometries in one vectorised call);
    None entries stay None and Z values are kept unchanged.
    """
    return shapely.transform(geom, _transform_coords(gcj02_to_wgs84), include_z=None)


def geometry_wgs84_to_gcj02(geom: Any) -> Any:
    """Apply the GCJ-02 offset to a shapely geometry or an array of geometries (for GCJ basemaps)."""
    return shapely.transform(geom, _transform_coords(wgs84_to_gcj02), include_z=None)
