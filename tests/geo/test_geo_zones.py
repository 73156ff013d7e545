"""GK zone arithmetic and the EPSG tables of DOMAIN.md §3.2."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

from landcloud.geo.zones import (
    GKZone,
    central_meridian,
    cgcs2000_zone_for_point,
    gk_epsg,
    gk_zone_of_epsg,
    infer_cgcs2000_gk_from_eastings,
    zone_3deg,
    zone_6deg,
    zone_from_prefixed_easting,
)

DATUM_NAMES = {"cgcs2000": "China 2000", "xian80": "Xian 1980", "beijing54": "Beijing 1954"}


def test_harbin_zones() -> None:
    assert zone_3deg(126.6) == 42
    assert zone_6deg(126.6) == 22
    assert central_meridian(42, 3) == 126.0
    assert central_meridian(22, 6) == 129.0
    assert gk_epsg("cgcs2000", 3, 42, True) == 4530
    assert gk_epsg("cgcs2000", 3, 42, False) == 4551
    assert gk_epsg("cgcs2000", 6, 22, True) == 4500
    # DOMAIN.md §3.2's prose says 4510 here, but its own table formula (4502 + 22 - 13) and
    # the EPSG database give 4511 = "CGCS2000 / Gauss-Kruger CM 129E"; 4510 is CM 123E.
    assert gk_epsg("cgcs2000", 6, 22, False) == 4511
    assert gk_zone_of_epsg(4510) == GKZone("cgcs2000", 6, 21, False, 123.0, 4510)


def test_zone_edges_are_deterministic() -> None:
    # 3° zones: half-up rounding, an edge meridian belongs to the eastern zone.
    assert zone_3deg(127.5) == 43
    assert zone_3deg(127.4999999) == 42
    assert zone_3deg(124.5) == 42
    # 6° zones: floor, zone 22 is [126, 132).
    assert zone_6deg(126.0) == 22
    assert zone_6deg(125.9999999) == 21
    assert zone_6deg(132.0) == 23


def test_central_meridian_rejects_bad_width() -> None:
    with pytest.raises(ValueError):
        central_meridian(42, 4)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(lon=st.floats(73.0, 135.0))
def test_zone_contains_its_longitude(lon: float) -> None:
    z3 = zone_3deg(lon)
    assert abs(central_meridian(z3, 3) - lon) <= 1.5
    z6 = zone_6deg(lon)
    cm6 = central_meridian(z6, 6)
    assert cm6 - 3.0 <= lon < cm6 + 3.0
    assert 24 <= z3 <= 45
    assert 13 <= z6 <= 23


def test_table_bases_from_domain() -> None:
    assert [gk_epsg("cgcs2000", 3, z, True) for z in (25, 45)] == [4513, 4533]
    assert [gk_epsg("cgcs2000", 3, z, False) for z in (25, 45)] == [4534, 4554]
    assert [gk_epsg("cgcs2000", 6, z, True) for z in (13, 23)] == [4491, 4501]
    assert [gk_epsg("cgcs2000", 6, z, False) for z in (13, 23)] == [4502, 4512]
    assert [gk_epsg("xian80", 3, z, True) for z in (25, 45)] == [2349, 2369]
    assert [gk_epsg("xian80", 3, z, False) for z in (25, 45)] == [2370, 2390]
    assert [gk_epsg("xian80", 6, z, True) for z in (13, 23)] == [2327, 2337]
    assert [gk_epsg("xian80", 6, z, False) for z in (13, 23)] == [2338, 2348]
    assert [gk_epsg("beijing54", 3, z, True) for z in (25, 45)] == [2401, 2421]
    assert [gk_epsg("beijing54", 3, z, False) for z in (25, 45)] == [2422, 2442]
    assert [gk_epsg("beijing54", 6, z, True) for z in (13, 23)] == [21413, 21423]
    assert [gk_epsg("beijing54", 6, z, False) for z in (13, 23)] == [21473, 21483]


@pytest.mark.parametrize(
    ("datum", "width", "zone"),
    [("cgcs2000", 3, 24), ("cgcs2000", 3, 46), ("xian80", 6, 12), ("beijing54", 6, 24), ("wgs84", 3, 42)],
)
def test_gk_epsg_rejects_out_of_table(datum: str, width: int, zone: int) -> None:
    with pytest.raises(ValueError):
        gk_epsg(datum, width, zone, True)  # type: ignore[arg-type]


@pytest.mark.parametrize("datum", ["cgcs2000", "xian80", "beijing54"])
@pytest.mark.parametrize("width", [3, 6])
@pytest.mark.parametrize("prefixed", [True, False])
def test_every_table_entry_matches_proj(datum: str, width: int, prefixed: bool) -> None:
    first, last = (25, 45) if width == 3 else (13, 23)
    for zone in range(first, last + 1):
        code = gk_epsg(datum, width, zone, prefixed)  # type: ignore[arg-type]
        crs = CRS.from_epsg(code)
        params = {p.name: p.value for p in crs.coordinate_operation.params}
        cm = central_meridian(zone, width)  # type: ignore[arg-type]
        assert params["Longitude of natural origin"] == cm
        assert params["Scale factor at natural origin"] == 1.0
        assert params["False easting"] == (zone * 1e6 + 5e5 if prefixed else 5e5)
        assert params["False northing"] == 0.0
        assert crs.datum.name == DATUM_NAMES[datum]
        back = gk_zone_of_epsg(code)
        assert back == GKZone(datum, width, zone, prefixed, cm, code)  # type: ignore[arg-type]


def test_gk_zone_of_epsg_other_codes() -> None:
    assert gk_zone_of_epsg(4490) is None
    assert gk_zone_of_epsg(4326) is None
    assert gk_zone_of_epsg(32652) is None
    assert gk_zone_of_epsg(2368) == GKZone("xian80", 3, 44, True, 132.0, 2368)
    # Current (non-deprecated) Beijing 1954 6° CM codes are recognised too.
    assert gk_zone_of_epsg(21461) == GKZone("beijing54", 6, 21, False, 123.0, 21461)
    assert gk_zone_of_epsg(4530).false_easting == 42_500_000.0  # type: ignore[union-attr]
    assert gk_zone_of_epsg(4551).false_easting == 500_000.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (42_512_345.67, (42, 3)),
        (42_000_000.0, (42, 3)),
        (25_999_999.9, (25, 3)),
        (45_100_000.0, (45, 3)),
        (21_500_000.0, (21, 6)),
        (13_400_000.0, (13, 6)),
        (23_600_000.0, (23, 6)),
        (512_345.67, None),
        (24_500_000.0, None),
        (12_500_000.0, None),
        (46_500_000.0, None),
        (99_999_999.0, None),
        (100_000_000.0, None),
        (-42_500_000.0, None),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_zone_from_prefixed_easting(x: float, expected: tuple[int, int] | None) -> None:
    assert zone_from_prefixed_easting(x) == expected


def test_infer_from_eastings() -> None:
    xs = np.array([42_512_345.1, 42_499_000.0, 42_650_000.0])
    assert infer_cgcs2000_gk_from_eastings(xs) == GKZone("cgcs2000", 3, 42, True, 126.0, 4530)
    assert infer_cgcs2000_gk_from_eastings(np.array([22_400_000.0, 22_600_000.0])) == GKZone(
        "cgcs2000", 6, 22, True, 129.0, 4500
    )
    assert infer_cgcs2000_gk_from_eastings(np.array([42_512_345.1, 43_100_000.0])) is None
    assert infer_cgcs2000_gk_from_eastings(np.array([512_345.1, 499_000.0])) is None
    assert infer_cgcs2000_gk_from_eastings(np.array([])) is None
    assert infer_cgcs2000_gk_from_eastings(np.array([42_512_345.1, np.nan])) is None
    assert infer_cgcs2000_gk_from_eastings([42_512_345.1]) == GKZone("cgcs2000", 3, 42, True, 126.0, 4530)


def test_zone_for_point_variants() -> None:
    assert cgcs2000_zone_for_point(126.6, 45.75).epsg == 4530
    assert cgcs2000_zone_for_point(126.6, 45.75, prefixed=False).epsg == 4551
    assert cgcs2000_zone_for_point(126.6, 45.75, 6).epsg == 4500
    assert cgcs2000_zone_for_point(126.6, 45.75, 6, prefixed=False).epsg == 4511
    z = cgcs2000_zone_for_point(134.3, 48.36)
    assert (z.zone, z.central_meridian, z.prefixed, z.datum) == (45, 135.0, True, "cgcs2000")
    with pytest.raises(ValueError):
        cgcs2000_zone_for_point(10.0, 45.0)
    with pytest.raises(ValueError):
        cgcs2000_zone_for_point(126.0, 95.0)


@cache
def _to_zone(epsg: int) -> Transformer:
    return Transformer.from_crs(4490, epsg, always_xy=True)


@settings(max_examples=40, deadline=None)
@given(lon=st.floats(73.5, 135.05), lat=st.floats(18.0, 53.5), width=st.sampled_from([3, 6]))
def test_zone_for_point_puts_eastings_in_their_zone(lon: float, lat: float, width: int) -> None:
    zone = cgcs2000_zone_for_point(lon, lat, width)  # type: ignore[arg-type]
    e, _ = _to_zone(zone.epsg).transform(lon, lat)
    assert zone_from_prefixed_easting(e) == (zone.zone, width)
    assert infer_cgcs2000_gk_from_eastings([e]) == zone
    # Within half a zone width of the CM: at most ~170 km (3°) / ~340 km (6°) at these latitudes.
    assert abs(e - zone.false_easting) < (170_000 if width == 3 else 340_000)
