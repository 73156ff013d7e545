"""Geodesy for landcloud: CRS decisions, GK zones, GCJ-02, datum shifts and ellipsoidal areas.

Pure functions without I/O. Conventions everywhere: coordinates in
longitude-latitude / easting-northing order (x = east), pyproj transformers
with ``always_xy=True``, canonical storage CRS CGCS2000 geographic (EPSG:4490).
"""

from landcloud.geo.area import (
    M2_PER_HA,
    M2_PER_MU,
    ellipsoidal_area,
    ellipsoidal_areas,
    to_hectares,
    to_mu,
    trapezoid_area,
)
from landcloud.geo.crs import (
    GCJ02,
    CoordinateTransformer,
    CRSRefused,
    TransformationSet,
    datum_of,
    make_transformer,
    parse_crs,
)
from landcloud.geo.ellipsoid import (
    BEIJING54_A,
    BEIJING54_F,
    CGCS2000_A,
    CGCS2000_F,
    EPSG_CGCS2000,
    KRASSOWSKY_A,
    KRASSOWSKY_F,
    XIAN80_A,
    XIAN80_F,
    geocentric,
    geodetic,
)
from landcloud.geo.gcj02 import (
    gcj02_to_wgs84,
    geometry_gcj02_to_wgs84,
    geometry_wgs84_to_gcj02,
    in_mainland_china,
    wgs84_to_gcj02,
)
from landcloud.geo.helmert import Helmert4, Helmert7, estimate_helmert4, estimate_helmert7
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

__all__ = [
    "BEIJING54_A",
    "BEIJING54_F",
    "CGCS2000_A",
    "CGCS2000_F",
    "EPSG_CGCS2000",
    "GCJ02",
    "KRASSOWSKY_A",
    "KRASSOWSKY_F",
    "M2_PER_HA",
    "M2_PER_MU",
    "XIAN80_A",
    "XIAN80_F",
    "CRSRefused",
    "CoordinateTransformer",
    "GKZone",
    "Helmert4",
    "Helmert7",
    "TransformationSet",
    "central_meridian",
    "cgcs2000_zone_for_point",
    "datum_of",
    "ellipsoidal_area",
    "ellipsoidal_areas",
    "estimate_helmert4",
    "estimate_helmert7",
    "gcj02_to_wgs84",
    "geocentric",
    "geodetic",
    "geometry_gcj02_to_wgs84",
    "geometry_wgs84_to_gcj02",
    "gk_epsg",
    "gk_zone_of_epsg",
    "in_mainland_china",
    "infer_cgcs2000_gk_from_eastings",
    "make_transformer",
    "parse_crs",
    "to_hectares",
    "to_mu",
    "trapezoid_area",
    "wgs84_to_gcj02",
    "zone_3deg",
    "zone_6deg",
    "zone_from_prefixed_easting",
]
