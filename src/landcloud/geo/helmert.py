"""Locally determined datum transformations (七参数 / 四参数) for Xian 1980 and Beijing 1954 data.

PROJ/EPSG hold no real transformation from Xian 1980 or Beijing 1954 to
CGCS2000, only a zero "ballpark" offset (DOMAIN.md §3.3). In practice the
parameters are estimated from common control points for a region and
registered by an administrator; they are classified configuration, never
code. This module holds the models, their application and their least-squares
estimation from common points.

Units follow surveying practice: translations in metres, rotations in
arc-seconds, scale in ppm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ARCSEC",
    "Helmert4",
    "Helmert7",
    "RotationConvention",
    "estimate_helmert4",
    "estimate_helmert7",
]

RotationConvention = Literal["position_vector", "coordinate_frame"]

#: One arc-second in radians.
ARCSEC: Final[float] = math.pi / (180.0 * 3600.0)

_Arr = NDArray[np.float64]


def _as_arrays(*values: ArrayLike) -> tuple[_Arr, ...]:
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    return tuple(np.array(a, dtype=np.float64) for a in arrays)


@dataclass(frozen=True)
class Helmert7:
    """Bursa-Wolf 7-parameter transformation of ECEF coordinates (三维七参数).

    X' = T + (1 + ds·1e-6) · R · X with the small-angle rotation matrix
    (EPSG methods 1033/1032, PROJ ``+proj=helmert``):

    position_vector  R = [[1, -rz, ry], [rz, 1, -rx], [-ry, rx, 1]]
    coordinate_frame R = transpose of the above (same numbers, opposite sense).

    The convention must be recorded with the numbers: reading a coordinate
    frame set as position vector flips the rotations and misplaces points by
    metres. The common Chinese textbook ("布尔莎") form with
    [[0, εz, -εy], [-εz, 0, εx], [εy, -εx, 0]] is the coordinate frame convention.
    """

    tx: float
    ty: float
    tz: float
    rx: float
    ry: float
    rz: float
    ds: float
    convention: RotationConvention = "position_vector"

    def __post_init__(self) -> None:
        if self.convention not in ("position_vector", "coordinate_frame"):
            raise ValueError(f"unknown rotation convention {self.convention!r}")
        values = (self.tx, self.ty, self.tz, self.rx, self.ry, self.rz, self.ds)
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError("Helmert7 parameters must be finite numbers")

    def _rotation_radians(self) -> tuple[float, float, float]:
        sign = 1.0 if self.convention == "position_vector" else -1.0
        return (sign * self.rx * ARCSEC, sign * self.ry * ARCSEC, sign * self.rz * ARCSEC)

    def matrix(self) -> _Arr:
        """The 3x3 matrix (1 + ds) R, position-vector form after applying the convention."""
        rx, ry, rz = self._rotation_radians()
        rot = np.array([[1.0, -rz, ry], [rz, 1.0, -rx], [-ry, rx, 1.0]])
        return (1.0 + self.ds * 1e-6) * rot

    def apply(self, x: ArrayLike, y: ArrayLike, z: ArrayLike) -> tuple[_Arr, _Arr, _Arr]:
        """Transform ECEF coordinates (m); arrays broadcast, shape preserved."""
        x_a, y_a, z_a = _as_arrays(x, y, z)
        m = self.matrix()
        xo = self.tx + m[0, 0] * x_a + m[0, 1] * y_a + m[0, 2] * z_a
        yo = self.ty + m[1, 0] * x_a + m[1, 1] * y_a + m[1, 2] * z_a
        zo = self.tz + m[2, 0] * x_a + m[2, 1] * y_a + m[2, 2] * z_a
        return xo, yo, zo

    def apply_inverse(self, x: ArrayLike, y: ArrayLike, z: ArrayLike) -> tuple[_Arr, _Arr, _Arr]:
        """Exact inverse of :meth:`apply` (solves the 3x3 system), for round trips."""
        x_a, y_a, z_a = _as_arrays(x, y, z)
        inv = np.linalg.inv(self.matrix())
        dx = x_a - self.tx
        dy = y_a - self.ty
        dz = z_a - self.tz
        return (
            inv[0, 0] * dx + inv[0, 1] * dy + inv[0, 2] * dz,
            inv[1, 0] * dx + inv[1, 1] * dy + inv[1, 2] * dz,
            inv[2, 0] * dx + inv[2, 1] * dy + inv[2, 2] * dz,
        )

    def inverse(self) -> Helmert7:
        """Parameters of the reverse direction (same convention).

        Rotations are negated, the scale inverted exactly and the translation
        rotated back, so the only approximation left is the small-angle one:
        the error is about |r|²·6.4e6 m (≈1 mm for 3" rotations). Use
        :meth:`apply_inverse` where an exact round trip matters.
        """
        k = 1.0 + self.ds * 1e-6
        ds_inv = (1.0 / k - 1.0) * 1e6
        rx, ry, rz = -self.rx, -self.ry, -self.rz
        reverse = Helmert7(0.0, 0.0, 0.0, rx, ry, rz, ds_inv, self.convention)
        tx, ty, tz = reverse.apply(-self.tx, -self.ty, -self.tz)
        return Helmert7(float(tx), float(ty), float(tz), rx, ry, rz, ds_inv, self.convention)


@dataclass(frozen=True)
class Helmert4:
    """Plane similarity transformation on GK coordinates (二维四参数).

    e' = dx + k (cos θ · e − sin θ · n)
    n' = dy + k (sin θ · e + cos θ · n),   k = 1 + ds·1e-6

    ``dx``/``dy`` are the shifts in easting/northing (x = east, as everywhere
    in this package), ``rotation`` θ is in arc-seconds, counter-clockwise in
    the (east, north) plane. Chinese surveying software writes the same model
    with X = north, Y = east; use :meth:`from_survey` for such parameter sheets.
    The parameters are tied to how the plane coordinates were written: the
    platform always applies them to coordinates *without* zone prefix
    (false easting 500 000 m).
    """

    dx: float
    dy: float
    rotation: float
    ds: float

    def __post_init__(self) -> None:
        values = (self.dx, self.dy, self.rotation, self.ds)
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError("Helmert4 parameters must be finite numbers")

    @classmethod
    def from_survey(
        cls, dx_north: float, dy_east: float, alpha_arcsec: float, m_ppm: float
    ) -> Helmert4:
        """Build from the X(north)/Y(east) form used on Chinese parameter sheets.

        That form is X' = ΔX + (1+m)(X cos α − Y sin α), Y' = ΔY + (1+m)(X sin α + Y cos α);
        swapping the axes reverses the sense of rotation, hence θ = −α.
        Check with one common point: sheets from some software already use the other sign.
        """
        return cls(dx=dy_east, dy=dx_north, rotation=-alpha_arcsec, ds=m_ppm)

    def apply(self, e: ArrayLike, n: ArrayLike) -> tuple[_Arr, _Arr]:
        """Transform plane coordinates (easting, northing in m); arrays broadcast."""
        e_a, n_a = _as_arrays(e, n)
        k = 1.0 + self.ds * 1e-6
        theta = self.rotation * ARCSEC
        ca = k * math.cos(theta)
        sa = k * math.sin(theta)
        return self.dx + ca * e_a - sa * n_a, self.dy + sa * e_a + ca * n_a

    def inverse(self) -> Helmert4:
        """Exact reverse transformation (a similarity's inverse is a similarity)."""
        k = 1.0 + self.ds * 1e-6
        theta = self.rotation * ARCSEC
        k_inv = 1.0 / k
        c = k_inv * math.cos(-theta)
        s = k_inv * math.sin(-theta)
        dx = -(c * self.dx - s * self.dy)
        dy = -(s * self.dx + c * self.dy)
        return Helmert4(dx=dx, dy=dy, rotation=-self.rotation, ds=(k_inv - 1.0) * 1e6)


def _points(values: ArrayLike, dims: int, name: str) -> _Arr:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != dims:
        raise ValueError(f"{name} must be an (n, {dims}) array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def estimate_helmert7(
    src_xyz: ArrayLike,
    dst_xyz: ArrayLike,
    convention: RotationConvention = "position_vector",
) -> tuple[Helmert7, float]:
    """Least-squares 7 parameters from ≥3 common points given in ECEF metres.

    Returns the parameters and the RMS residual, i.e. sqrt(mean |r_i|²) of the
    3-D point residuals in metres - the figure a surveyor compares with the
    accuracy requirement before a set is registered. Gauss-Newton on the exact
    model of :meth:`Helmert7.apply` (the product of scale and rotation makes
    it slightly non-linear); columns are scaled so that translations and
    rotations are solved together without loss of precision.
    Over a small area rotations and translations are strongly correlated, so
    individual parameters may differ from a published set while the
    transformed coordinates agree; judge a set by its residuals.
    """
    src = _points(src_xyz, 3, "src_xyz")
    dst = _points(dst_xyz, 3, "dst_xyz")
    if src.shape != dst.shape:
        raise ValueError("src_xyz and dst_xyz must have the same shape")
    n = src.shape[0]
    if n < 3:
        raise ValueError("a 7-parameter transformation needs at least 3 common points")
    centred = src - src.mean(axis=0)
    if np.linalg.matrix_rank(centred, tol=1e-6 * max(1.0, float(np.abs(centred).max()))) < 2:
        raise ValueError("common points are collinear; rotations are undetermined")
    if convention not in ("position_vector", "coordinate_frame"):
        raise ValueError(f"unknown rotation convention {convention!r}")
    sign = 1.0 if convention == "position_vector" else -1.0

    x, y, z = src[:, 0], src[:, 1], src[:, 2]
    zeros = np.zeros(n)
    ones = np.ones(n)
    # Rotation/scale columns carry Earth-radius-sized lever arms; scale them to ~1.
    col_scale = np.array([1.0, 1.0, 1.0, 1 / 6.4e6, 1 / 6.4e6, 1 / 6.4e6, 1 / 6.4e6])
    # p = [tx, ty, tz, rx, ry, rz (rad, position-vector sense), s (unitless)]
    p = np.zeros(7)
    for _ in range(10):
        h = Helmert7(p[0], p[1], p[2], sign * p[3] / ARCSEC, sign * p[4] / ARCSEC,
                     sign * p[5] / ARCSEC, p[6] * 1e6, convention)
        pred = np.column_stack(h.apply(x, y, z))
        resid = (dst - pred).reshape(-1)
        k = 1.0 + p[6]
        rx, ry, rz = p[3], p[4], p[5]
        # Jacobian rows interleaved per point (X, Y, Z).
        jac = np.empty((3 * n, 7))
        jac[0::3] = np.column_stack([ones, zeros, zeros, zeros, k * z, -k * y,
                                     x - rz * y + ry * z])
        jac[1::3] = np.column_stack([zeros, ones, zeros, -k * z, zeros, k * x,
                                     rz * x + y - rx * z])
        jac[2::3] = np.column_stack([zeros, zeros, ones, k * y, -k * x, zeros,
                                     -ry * x + rx * y + z])
        scaled_step, *_ = np.linalg.lstsq(jac * col_scale, resid, rcond=None)
        step = scaled_step * col_scale
        p = p + step
        if np.all(np.abs(step[:3]) < 1e-6) and np.all(np.abs(step[3:]) < 1e-13):
            break
    result = Helmert7(
        tx=float(p[0]),
        ty=float(p[1]),
        tz=float(p[2]),
        rx=float(sign * p[3] / ARCSEC),
        ry=float(sign * p[4] / ARCSEC),
        rz=float(sign * p[5] / ARCSEC),
        ds=float(p[6] * 1e6),
        convention=convention,
    )
    final = np.column_stack(result.apply(x, y, z))
    rms = float(np.sqrt(np.mean(np.sum((dst - final) ** 2, axis=1))))
    return result, rms


def estimate_helmert4(src_en: ArrayLike, dst_en: ArrayLike) -> tuple[Helmert4, float]:
    """Least-squares 4 parameters from ≥2 common points (easting, northing in m).

    The model is linear in (dx, dy, k cos θ, k sin θ), so this is a single
    solve on centroid-reduced coordinates (GK eastings/northings are 10^5-10^7
    m; reducing keeps full precision). Returns the parameters and the RMS of
    the 2-D point residuals in metres (0 for exactly 2 points).
    """
    src = _points(src_en, 2, "src_en")
    dst = _points(dst_en, 2, "dst_en")
    if src.shape != dst.shape:
        raise ValueError("src_en and dst_en must have the same shape")
    if src.shape[0] < 2:
        raise ValueError("a 4-parameter transformation needs at least 2 common points")
    src_c = src.mean(axis=0)
    dst_c = dst.mean(axis=0)
    s = src - src_c
    d = dst - dst_c
    denom = float(np.sum(s * s))
    if denom <= 0.0:
        raise ValueError("common points coincide; rotation and scale are undetermined")
    # Closed-form least squares for e' = a e - b n, n' = b e + a n (centred).
    a = float(np.sum(s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]) / denom)
    b = float(np.sum(s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]) / denom)
    dx = float(dst_c[0] - (a * src_c[0] - b * src_c[1]))
    dy = float(dst_c[1] - (b * src_c[0] + a * src_c[1]))
    k = math.hypot(a, b)
    result = Helmert4(dx=dx, dy=dy, rotation=math.atan2(b, a) / ARCSEC, ds=(k - 1.0) * 1e6)
    e2, n2 = result.apply(src[:, 0], src[:, 1])
    rms = float(np.sqrt(np.mean((dst[:, 0] - e2) ** 2 + (dst[:, 1] - n2) ** 2)))
    return result, rms
