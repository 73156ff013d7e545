"""Gauss-Krüger zone arithmetic and the EPSG code tables for Chinese GK CRSs.

Submissions routinely arrive as bare GK plane coordinates ("Y = 42 512 345.67")
with a missing or wrong .prj. The zone number hidden in the first two digits of
an 8-digit easting, and the fixed EPSG numbering per datum/width/prefix, are
what lets the platform name the CRS precisely instead of guessing. The tables
follow DOMAIN.md §3.2 (read from the PROJ 9.5.1 EPSG database).

Zone formulas (L = longitude in degrees):
  3° zone n = round(L/3) (half-up), CM = 3n, n = 25..45 for China;
  6° zone n = floor(L/6) + 1,       CM = 6n - 3, n = 13..23.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "GKZone",
    "Datum",
    "Width",
    "ZONE_RANGE",
    "central_meridian",
    "cgcs2000_zone_for_point",
    "gk_epsg",
    "gk_zone_of_epsg",
    "infer_cgcs2000_gk_from_eastings",
    "zone_3deg",
    "zone_6deg",
    "zone_from_prefixed_easting",
]

Datum = Literal["cgcs2000", "xian80", "beijing54"]
Width = Literal[3, 6]

#: Zones for which EPSG defines Chinese GK CRSs (CM 75°E .. 135°E).
ZONE_RANGE: Final[dict[int, tuple[int, int]]] = {3: (25, 45), 6: (13, 23)}

# First EPSG code of each (datum, width, prefixed) series; code = base + (zone - first zone).
# Source: DOMAIN.md §3.2 table.
_EPSG_BASE: Final[dict[tuple[str, int, bool], int]] = {
    ("cgcs2000", 3, True): 4513,
    ("cgcs2000", 3, False): 4534,
    ("cgcs2000", 6, True): 4491,
    ("cgcs2000", 6, False): 4502,
    ("xian80", 3, True): 2349,
    ("xian80", 3, False): 2370,
    ("xian80", 6, True): 2327,
    ("xian80", 6, False): 2338,
    ("beijing54", 3, True): 2401,
    ("beijing54", 3, False): 2422,
    ("beijing54", 6, True): 21413,
    # 21473-21483 "Beijing 1954 / Gauss-Kruger 13N..23N" is what DOMAIN.md lists; EPSG has
    # deprecated it in favour of 21453-21463 "... CM 75E..135E" (same parameters).
    ("beijing54", 6, False): 21473,
}

# Extra codes accepted by the inverse lookup only (same CRS definition as a table entry).
_EPSG_ALIAS_BASE: Final[dict[tuple[str, int, bool], int]] = {
    ("beijing54", 6, False): 21453,
}


def _build_inverse() -> dict[int, tuple[str, int, bool, int]]:
    table: dict[int, tuple[str, int, bool, int]] = {}
    for source in (_EPSG_BASE, _EPSG_ALIAS_BASE):
        for (datum, width, prefixed), base in source.items():
            first, last = ZONE_RANGE[width]
            for zone in range(first, last + 1):
                table[base + zone - first] = (datum, width, prefixed, zone)
    return table


_EPSG_INVERSE: Final[dict[int, tuple[str, int, bool, int]]] = _build_inverse()


def zone_3deg(lon: float) -> int:
    """3° zone number of a longitude: n = round(L/3), halves rounded up.

    Half-up (not Python's banker's rounding) so that a point exactly on a zone
    edge always goes to the eastern zone, deterministically.
    """
    return int(math.floor(float(lon) / 3.0 + 0.5))


def zone_6deg(lon: float) -> int:
    """6° zone number of a longitude: n = floor(L/6) + 1."""
    return int(math.floor(float(lon) / 6.0)) + 1


def central_meridian(zone: int, width: Width) -> float:
    """Central meridian (degrees east) of a GK zone: 3n for 3° zones, 6n-3 for 6° zones."""
    if width == 3:
        return 3.0 * zone
    if width == 6:
        return 6.0 * zone - 3.0
    raise ValueError(f"GK zone width must be 3 or 6, got {width!r}")


@dataclass(frozen=True)
class GKZone:
    """A fully identified Chinese Gauss-Krüger CRS.

    ``zone`` is the zone number even for unprefixed ("CM xxxE") CRSs, so that a
    zone can be compared across the prefixed/unprefixed variants.
    """

    datum: Datum
    width: Width
    zone: int
    prefixed: bool
    central_meridian: float
    epsg: int

    @property
    def false_easting(self) -> float:
        """False easting in metres (zone*1e6 + 500 000 when prefixed)."""
        return self.zone * 1_000_000.0 + 500_000.0 if self.prefixed else 500_000.0


def _check_zone(width: int, zone: int) -> None:
    if width not in ZONE_RANGE:
        raise ValueError(f"GK zone width must be 3 or 6, got {width!r}")
    first, last = ZONE_RANGE[width]
    if not first <= zone <= last:
        raise ValueError(
            f"{width}° GK zone {zone} has no EPSG code (China uses zones {first}..{last})"
        )


def gk_epsg(datum: Datum, width: Width, zone: int, prefixed: bool) -> int:
    """EPSG code of a CGCS2000 / Xian 1980 / Beijing 1954 GK CRS.

    Raises ValueError for an unknown datum or a zone outside the EPSG series,
    because a silently invented code would misplace data by hundreds of km.
    """
    key = (datum, int(width), bool(prefixed))
    if key not in _EPSG_BASE:
        raise ValueError(f"no GK EPSG table for datum {datum!r}, width {width!r}")
    _check_zone(int(width), int(zone))
    return _EPSG_BASE[key] + int(zone) - ZONE_RANGE[int(width)][0]


def gk_zone_of_epsg(epsg: int) -> GKZone | None:
    """Inverse of :func:`gk_epsg`; None for any code outside those tables.

    Also recognises EPSG 21453-21463 (the current, non-deprecated codes for
    unprefixed Beijing 1954 6° zones); the returned ``epsg`` is the code asked for.
    """
    entry = _EPSG_INVERSE.get(int(epsg))
    if entry is None:
        return None
    datum, width, prefixed, zone = entry
    w = cast(Width, width)
    return GKZone(
        datum=cast(Datum, datum),
        width=w,
        zone=zone,
        prefixed=prefixed,
        central_meridian=central_meridian(zone, w),
        epsg=int(epsg),
    )


def zone_from_prefixed_easting(x: float) -> tuple[int, Width] | None:
    """Read the zone out of an 8-digit (加带号) easting.

    3° zones 25-45 and 6° zones 13-23 do not overlap, so the two leading digits
    identify both zone and width. Anything that is not an 8-digit easting with
    such a prefix (unprefixed 6-digit eastings, NaN, negatives) gives None.
    """
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or not 10_000_000.0 <= value < 100_000_000.0:
        return None
    zone = int(value // 1_000_000.0)
    for width in (3, 6):
        first, last = ZONE_RANGE[width]
        if first <= zone <= last:
            return zone, cast(Width, width)
    return None


def infer_cgcs2000_gk_from_eastings(xs: ArrayLike) -> GKZone | None:
    """Guess the CGCS2000 prefixed GK CRS of a layer from its eastings alone.

    Only answers when every easting carries the same zone prefix, i.e. lies in
    zone*1e6 + [0, 1e6); mixed or unprefixed eastings give None because any
    guess would be a coin toss. The datum cannot be read from coordinates: the
    caller must still confirm that the data are CGCS2000.
    """
    arr = np.asarray(xs, dtype=np.float64).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    found = zone_from_prefixed_easting(float(arr[0]))
    if found is None:
        return None
    zone, width = found
    low = zone * 1_000_000.0
    if not (np.all(arr >= low) and np.all(arr < low + 1_000_000.0)):
        return None
    return GKZone(
        datum="cgcs2000",
        width=width,
        zone=zone,
        prefixed=True,
        central_meridian=central_meridian(zone, width),
        epsg=gk_epsg("cgcs2000", width, zone, True),
    )


def cgcs2000_zone_for_point(
    lon: float, lat: float, width: Width = 3, *, prefixed: bool = True
) -> GKZone:
    """CGCS2000 GK CRS whose zone contains the point (for showing plane coordinates).

    The portal shows cursor coordinates in the zone of the point itself, as
    field staff read them off their own zone's maps. ``lat`` is only validated;
    GK zones depend on longitude alone. Raises ValueError outside the zones
    EPSG defines for China.
    """
    lon_f = float(lon)
    lat_f = float(lat)
    if not (math.isfinite(lon_f) and math.isfinite(lat_f)) or not -90.0 <= lat_f <= 90.0:
        raise ValueError(f"invalid point lon={lon!r}, lat={lat!r}")
    if width == 3:
        zone = zone_3deg(lon_f)
    elif width == 6:
        zone = zone_6deg(lon_f)
    else:
        raise ValueError(f"GK zone width must be 3 or 6, got {width!r}")
    return GKZone(
        datum="cgcs2000",
        width=width,
        zone=zone,
        prefixed=prefixed,
        central_meridian=central_meridian(zone, width),
        epsg=gk_epsg("cgcs2000", width, zone, prefixed),
    )
