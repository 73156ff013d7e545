"""Ellipsoidal (椭球面) areas of parcels on the CGCS2000 ellipsoid.

Land statistics (图斑面积 TBMJ, 控制面积, the transfer matrix) are defined as
areas on the ellipsoid, not plane GK areas: a plane area in a 3° zone is off
by up to ~1e-3 near the zone edge, far more than the 0.01 m² the attribute
tables carry. Two implementations are provided:

* :func:`ellipsoidal_area` / :func:`ellipsoidal_areas` - geodesic polygon area
  via GeographicLib (``pyproj.Geod``), the general-purpose path;
* :func:`trapezoid_area` - the 国土调查 series formula (国土调查办发〔2008〕32号),
  for reproducing the survey software's numbers exactly and cross-checking.

For parcel-sized polygons the two agree to far better than 1e-6 relative.
Geometries are expected in CGCS2000 longitude/latitude degrees.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj import Geod

from landcloud.geo.ellipsoid import CGCS2000_A, CGCS2000_F

__all__ = [
    "CGCS2000_GEOD",
    "M2_PER_HA",
    "M2_PER_MU",
    "ellipsoidal_area",
    "ellipsoidal_areas",
    "to_hectares",
    "to_mu",
    "trapezoid_area",
]

#: Square metres per 亩 (1 亩 = 10 000/15 m²; 15 亩 = 1 ha).
M2_PER_MU: Final[float] = 10000.0 / 15.0
#: Square metres per hectare (公顷).
M2_PER_HA: Final[float] = 10000.0

#: Geodesic calculator on the CGCS2000 ellipsoid (not GRS80: 1/f differs in the 10th digit).
CGCS2000_GEOD: Final[Geod] = Geod(a=CGCS2000_A, f=CGCS2000_F)

_AREAL_TYPES: Final[tuple[int, ...]] = (
    int(shapely.GeometryType.POLYGON),
    int(shapely.GeometryType.MULTIPOLYGON),
    int(shapely.GeometryType.GEOMETRYCOLLECTION),
)


def to_hectares(m2: ArrayLike) -> Any:
    """m² -> 公顷. Storage stays in m²; conversion happens only at reporting time."""
    return np.asarray(m2, dtype=np.float64) / M2_PER_HA if np.ndim(m2) else float(m2) / M2_PER_HA


def to_mu(m2: ArrayLike) -> Any:
    """m² -> 亩 (1 亩 = 666.67 m²), for bulletins that report 万亩."""
    return np.asarray(m2, dtype=np.float64) / M2_PER_MU if np.ndim(m2) else float(m2) / M2_PER_MU


def _ring_table(
    geoms: NDArray[np.object_],
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Flatten geometries to rings: coords, coord->ring, ring offsets, ring->geometry, ring sign.

    Exterior rings count +1, holes -1. Done with shapely's vectorised accessors so
    there is no Python loop over geometries or vertices.
    """
    multi = (int(shapely.GeometryType.MULTIPOLYGON), int(shapely.GeometryType.GEOMETRYCOLLECTION))
    parts = geoms
    owner = np.arange(len(geoms), dtype=np.intp)
    polys: list[NDArray[np.object_]] = []
    poly_owners: list[NDArray[np.intp]] = []
    # Peel collections level by level (a GeometryCollection may hold MultiPolygons).
    while parts.size:
        types = shapely.get_type_id(parts)
        keep = (types == int(shapely.GeometryType.POLYGON)) & ~shapely.is_empty(parts)
        polys.append(parts[keep])
        poly_owners.append(owner[keep])
        nested = np.isin(types, multi)
        if not nested.any():
            break
        sub, sub_idx = shapely.get_parts(parts[nested], return_index=True)
        parts, owner = sub, owner[nested][sub_idx]
    all_polys = np.concatenate(polys)
    all_owner = np.concatenate(poly_owners)
    rings, ring_poly = shapely.get_rings(all_polys, return_index=True)
    # get_rings lists each polygon's exterior first, then its holes.
    first_of_poly = np.ones(len(ring_poly), dtype=bool)
    first_of_poly[1:] = ring_poly[1:] != ring_poly[:-1]
    sign = np.where(first_of_poly, 1.0, -1.0)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    counts = np.bincount(coord_ring, minlength=len(rings))
    offsets = np.zeros(len(rings) + 1, dtype=np.intp)
    np.cumsum(counts, out=offsets[1:])
    return coords, coord_ring, offsets, all_owner[ring_poly], sign


def _geodesic_ring_areas(
    coords: NDArray[np.float64], offsets: NDArray[np.intp], geod: Geod
) -> NDArray[np.float64]:
    lons = np.ascontiguousarray(coords[:, 0])
    lats = np.ascontiguousarray(coords[:, 1])
    bounds = offsets.tolist()
    area_of = geod.polygon_area_perimeter
    # One GeographicLib call per ring; shapely rings are closed, drop the repeat.
    return np.abs(
        np.fromiter(
            (
                area_of(lons[bounds[r] : bounds[r + 1] - 1], lats[bounds[r] : bounds[r + 1] - 1])[0]
                for r in range(len(bounds) - 1)
            ),
            dtype=np.float64,
            count=len(bounds) - 1,
        )
    )


def _trapezoid_ring_areas(
    coords: NDArray[np.float64],
    coord_ring: NDArray[np.intp],
    offsets: NDArray[np.intp],
    a: float,
    f: float,
) -> NDArray[np.float64]:
    n_rings = len(offsets) - 1
    if coords.shape[0] < 2:
        return np.zeros(n_rings)
    same = coord_ring[1:] == coord_ring[:-1]
    ring_of_edge = coord_ring[:-1][same]
    lam = np.radians(coords[:, 0] - coords[offsets[coord_ring], 0])
    phi = np.radians(coords[:, 1])
    contrib = _trapezoid_terms(lam[:-1][same], lam[1:][same], phi[:-1][same], phi[1:][same], a, f)
    return np.abs(np.bincount(ring_of_edge, weights=contrib, minlength=n_rings))


def ellipsoidal_areas(
    geoms: ArrayLike,
    geod: Geod = CGCS2000_GEOD,
    *,
    method: Literal["geodesic", "trapezoid"] = "geodesic",
) -> NDArray[np.float64]:
    """Area in m² of every geometry in an array, on the CGCS2000 ellipsoid.

    Built for millions of small parcels: rings are extracted with vectorised
    shapely calls. ``method="geodesic"`` (default) makes one GeographicLib call
    per ring (~5 µs, ~10 s per million parcels); ``method="trapezoid"``
    evaluates the 国土调查 series formula for all edges at once in numpy (about
    3x faster, same result to ~1e-8 relative for parcels; uses ``geod.a`` and
    ``geod.f``).
    Polygons and multipolygons give |exterior| - Σ|holes| (orientation does
    not matter); points, lines, None and empty geometries give 0.0.
    Coordinates must be lon/lat degrees.
    """
    if method not in ("geodesic", "trapezoid"):
        raise ValueError(f"unknown area method {method!r}")
    arr = np.asarray(geoms, dtype=object)
    shape = arr.shape
    flat = arr.reshape(-1)
    out = np.zeros(flat.shape[0], dtype=np.float64)
    if flat.size == 0:
        return out.reshape(shape)
    type_ids = shapely.get_type_id(flat)  # -1 for None
    idx = np.nonzero(np.isin(type_ids, _AREAL_TYPES))[0]
    if idx.size:
        coords, coord_ring, offsets, owner, sign = _ring_table(flat[idx])
        if len(sign):
            if method == "geodesic":
                ring_area = _geodesic_ring_areas(coords, offsets, geod)
            else:
                ring_area = _trapezoid_ring_areas(coords, coord_ring, offsets, geod.a, geod.f)
            totals = np.bincount(owner, weights=sign * ring_area, minlength=idx.size)
            out[idx] = np.abs(totals)
    return out.reshape(shape)


def ellipsoidal_area(
    geom: Any,
    geod: Geod = CGCS2000_GEOD,
    *,
    method: Literal["geodesic", "trapezoid"] = "geodesic",
) -> float:
    """Area in m² of one geometry on the CGCS2000 ellipsoid (0.0 for non-areal, None, empty)."""
    if geom is None:
        return 0.0
    return float(ellipsoidal_areas(np.array([geom], dtype=object), geod, method=method)[0])


def _series_coefficients(e2: float) -> tuple[float, float, float, float, float]:
    e4 = e2 * e2
    e6 = e4 * e2
    e8 = e6 * e2
    ca = 1.0 + 3.0 / 6.0 * e2 + 30.0 / 80.0 * e4 + 35.0 / 112.0 * e6 + 630.0 / 2304.0 * e8
    cb = 1.0 / 6.0 * e2 + 15.0 / 80.0 * e4 + 21.0 / 112.0 * e6 + 420.0 / 2304.0 * e8
    cc = 3.0 / 80.0 * e4 + 7.0 / 112.0 * e6 + 180.0 / 2304.0 * e8
    cd = 1.0 / 112.0 * e6 + 45.0 / 2304.0 * e8
    ce = 5.0 / 2304.0 * e8
    return ca, cb, cc, cd, ce


def _trapezoid_terms(
    lam1: NDArray[np.float64],
    lam2: NDArray[np.float64],
    phi1: NDArray[np.float64],
    phi2: NDArray[np.float64],
    a: float,
    f: float,
) -> NDArray[np.float64]:
    """Signed area (m²) between each edge and the reference meridian λ = 0 (radians in)."""
    b_axis = a * (1.0 - f)
    ca, cb, cc, cd, ce = _series_coefficients(f * (2.0 - f))
    d_l = 0.5 * (lam1 + lam2)
    d_b = phi2 - phi1
    b_m = 0.5 * (phi1 + phi2)
    series = (
        ca * np.sin(d_b / 2.0) * np.cos(b_m)
        - cb * np.sin(3.0 * d_b / 2.0) * np.cos(3.0 * b_m)
        + cc * np.sin(5.0 * d_b / 2.0) * np.cos(5.0 * b_m)
        - cd * np.sin(7.0 * d_b / 2.0) * np.cos(7.0 * b_m)
        + ce * np.sin(9.0 * d_b / 2.0) * np.cos(9.0 * b_m)
    )
    # An edge going north east of the reference meridian encloses area on its
    # left when the ring is counter-clockwise: positive.
    return 2.0 * b_axis * b_axis * d_l * series


def trapezoid_area(
    lon: ArrayLike,
    lat: ArrayLike,
    a: float = CGCS2000_A,
    f: float = CGCS2000_F,
) -> float:
    """Signed ellipsoidal area (m²) of one ring by the 椭球面积 trapezoid series.

    Each edge contributes the ellipsoidal quadrangle between its latitudes,
    as wide as the distance from the edge's mean longitude to the first
    vertex's meridian; the sum telescopes to the ring area (DOMAIN.md §9):
    S = 2b²ΔL[A sin(ΔB/2)cos Bm − B sin(3ΔB/2)cos 3Bm + C sin(5ΔB/2)cos 5Bm
              − D sin(7ΔB/2)cos 7Bm + E sin(9ΔB/2)cos 9Bm].
    Signed: positive for counter-clockwise rings (lon east, lat north), the
    same convention as shapely and GeographicLib; take abs() for an area.
    The ring may be given open or closed (first vertex repeated).
    ``a``/``f`` default to CGCS2000; pass Xian 1980 constants to reproduce 二调 figures.
    """
    lon_a = np.asarray(lon, dtype=np.float64).ravel()
    lat_a = np.asarray(lat, dtype=np.float64).ravel()
    if lon_a.shape != lat_a.shape:
        raise ValueError("lon and lat must have the same length")
    if lon_a.size < 3:
        return 0.0
    if lon_a[0] != lon_a[-1] or lat_a[0] != lat_a[-1]:
        lon_a = np.append(lon_a, lon_a[0])
        lat_a = np.append(lat_a, lat_a[0])
    lam = np.radians(lon_a - lon_a[0])
    phi = np.radians(lat_a)
    return float(np.sum(_trapezoid_terms(lam[:-1], lam[1:], phi[:-1], phi[1:], a, f)))


def survey_areas(geoms: np.ndarray) -> np.ndarray:
    """Areas (m²) as the land surveys compute 图斑面积: the ellipsoidal-trapezoid series on CGCS2000.

    The 三调 and the annual change surveys sum ellipsoidal trapezoids between the (B, L) vertices
    (DOMAIN.md §9), not geodesic polygons; the two differ by ~1e-5 relative on raw vertices, so
    everything compared with a submitted TBMJ (and every stored area) uses this one. It is also
    about three times faster than the geodesic method.
    """
    return ellipsoidal_areas(geoms, method="trapezoid")
