"""Reference ellipsoids used in Chinese land data and geodetic <-> ECEF conversion.

Three ellipsoids matter for provincial land data: CGCS2000 (the only accepted
storage datum since 2018-07-01), IAG 1975 (Xian 1980, the 二调 era) and
Krassowsky 1940 (Beijing 1954 / New Beijing). Datum transformations between
them are done in Earth-centred Cartesian space (Bursa-Wolf), which is why the
geodetic <-> ECEF conversions live next to the constants.

All angles are in degrees, all lengths in metres, longitude first.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BEIJING54_A",
    "BEIJING54_F",
    "CGCS2000_A",
    "CGCS2000_F",
    "EPSG_BEIJING54",
    "EPSG_CGCS2000",
    "EPSG_NEW_BEIJING",
    "EPSG_WGS84",
    "EPSG_XIAN80",
    "KRASSOWSKY_A",
    "KRASSOWSKY_F",
    "WGS84_A",
    "WGS84_F",
    "XIAN80_A",
    "XIAN80_F",
    "geocentric",
    "geodetic",
]

# CGCS2000: same semi-major axis as GRS80/WGS84; the inverse flattening is
# fixed at 298.257222101 (GRS80's is 298.257222100882...), so use these exact
# numbers rather than "GRS80" when areas must match the survey software.
CGCS2000_A: Final[float] = 6378137.0
CGCS2000_F: Final[float] = 1 / 298.257222101
EPSG_CGCS2000: Final[int] = 4490

# Xian 1980 uses the IAG 1975 ellipsoid (PROJ calls it "IAU76").
XIAN80_A: Final[float] = 6378140.0
XIAN80_F: Final[float] = 1 / 298.257
IAG1975_A: Final[float] = XIAN80_A
IAG1975_F: Final[float] = XIAN80_F
EPSG_XIAN80: Final[int] = 4610

# Beijing 1954 and New Beijing both use Krassowsky 1940.
KRASSOWSKY_A: Final[float] = 6378245.0
KRASSOWSKY_F: Final[float] = 1 / 298.3
BEIJING54_A: Final[float] = KRASSOWSKY_A
BEIJING54_F: Final[float] = KRASSOWSKY_F
EPSG_BEIJING54: Final[int] = 4214
EPSG_NEW_BEIJING: Final[int] = 4555

WGS84_A: Final[float] = 6378137.0
WGS84_F: Final[float] = 1 / 298.257223563
EPSG_WGS84: Final[int] = 4326


def _as_float_arrays(*values: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    return tuple(np.array(a, dtype=np.float64) for a in arrays)


def geocentric(
    lon: ArrayLike,
    lat: ArrayLike,
    h: ArrayLike,
    a: float = CGCS2000_A,
    f: float = CGCS2000_F,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Geodetic (lon, lat in degrees, ellipsoidal height h in m) -> ECEF X, Y, Z.

    Needed because a 7-parameter datum shift is only defined on Cartesian
    coordinates of the ellipsoid the source data was computed on; the ellipsoid
    is therefore an explicit argument, never implied.
    Inputs broadcast against each other; outputs are float arrays of the
    broadcast shape (0-d for scalars).
    """
    lon_a, lat_a, h_a = _as_float_arrays(lon, lat, h)
    lam = np.radians(lon_a)
    phi = np.radians(lat_a)
    e2 = f * (2.0 - f)
    sin_phi = np.sin(phi)
    cos_phi = np.cos(phi)
    n = a / np.sqrt(1.0 - e2 * sin_phi * sin_phi)
    x = (n + h_a) * cos_phi * np.cos(lam)
    y = (n + h_a) * cos_phi * np.sin(lam)
    z = (n * (1.0 - e2) + h_a) * sin_phi
    return x, y, z


def geodetic(
    x: ArrayLike,
    y: ArrayLike,
    z: ArrayLike,
    a: float = CGCS2000_A,
    f: float = CGCS2000_F,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """ECEF X, Y, Z (m) -> geodetic lon, lat (degrees) and ellipsoidal height (m).

    Bowring's parametric-latitude iteration: starting from Bowring's estimate,
    three refinements reach ~1e-15 rad for any point within a few hundred km of
    the surface, which covers everything a land database holds. Vectorised, no
    per-point Python loop, so it can run over every vertex of a layer.
    """
    x_a, y_a, z_a = _as_float_arrays(x, y, z)
    e2 = f * (2.0 - f)
    b = a * (1.0 - f)
    ep2 = e2 / (1.0 - e2)
    p = np.hypot(x_a, y_a)
    lam = np.arctan2(y_a, x_a)

    # Parametric (reduced) latitude start value, then iterate.
    beta = np.arctan2(z_a * a, p * b)
    phi = np.arctan2(z_a + ep2 * b * np.sin(beta) ** 3, p - e2 * a * np.cos(beta) ** 3)
    for _ in range(3):
        beta = np.arctan2((1.0 - f) * np.sin(phi), np.cos(phi))
        phi = np.arctan2(z_a + ep2 * b * np.sin(beta) ** 3, p - e2 * a * np.cos(beta) ** 3)

    sin_phi = np.sin(phi)
    cos_phi = np.cos(phi)
    n = a / np.sqrt(1.0 - e2 * sin_phi * sin_phi)
    # Use the better-conditioned height formula depending on latitude.
    with np.errstate(divide="ignore", invalid="ignore"):
        h_eq = p / cos_phi - n
        h_pol = z_a / sin_phi - n * (1.0 - e2)
    h = np.where(np.abs(cos_phi) > 0.5, h_eq, h_pol)
    return np.degrees(lam), np.degrees(phi), h
