"""Routing of submission CRSs to CGCS2000 and the refusals."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer
from pyproj.crs import ProjectedCRS
from pyproj.crs.coordinate_operation import TransverseMercatorConversion

from landcloud.geo.crs import (
    GCJ02,
    CoordinateTransformer,
    CRSRefused,
    TransformationSet,
    datum_of,
    make_transformer,
    parse_crs,
)
from landcloud.geo.ellipsoid import CGCS2000_A, CGCS2000_F, KRASSOWSKY_A, KRASSOWSKY_F, geocentric, geodetic
from landcloud.geo.gcj02 import wgs84_to_gcj02
from landcloud.geo.helmert import Helmert4, Helmert7

HARBIN = (126.6, 45.75)
H7 = Helmert7(tx=-15.4, ty=118.2, tz=65.3, rx=0.31, ry=-1.12, rz=2.05, ds=-2.6)
SET80_7 = TransformationSet("hrb-80-2000", "xian80", "230100", "helmert7", helmert7=H7)
H4 = Helmert4(dx=35.2, dy=-48.7, rotation=1.8, ds=4.4)
SET80_4 = TransformationSet("hrb-80-2000-4p", "xian80", "230100", "helmert4", helmert4=H4)

ESRI_CGCS2000 = (
    'GEOGCS["GCS_China_Geodetic_Coordinate_System_2000",DATUM["D_China_2000",'
    'SPHEROID["CGCS2000",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],'
    'UNIT["Degree",0.0174532925199433]]'
)
ESRI_XIAN80_GK42 = (
    'PROJCS["Xian_1980_3_Degree_GK_Zone_42",GEOGCS["GCS_Xian_1980",DATUM["D_Xian_1980",'
    'SPHEROID["Xian_1980",6378140.0,298.257]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],'
    'PROJECTION["Gauss_Kruger"],PARAMETER["False_Easting",42500000.0],PARAMETER["False_Northing",0.0],'
    'PARAMETER["Central_Meridian",126.0],PARAMETER["Scale_Factor",1.0],PARAMETER["Latitude_Of_Origin",0.0],'
    'UNIT["Meter",1.0]]'
)
ESRI_BEIJING54 = (
    'GEOGCS["GCS_Beijing_1954",DATUM["D_Beijing_1954",SPHEROID["Krasovsky_1940",6378245.0,298.3]],'
    'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]'
)


# ----------------------------------------------------------------------------- parse_crs

@pytest.mark.parametrize(
    ("text", "epsg"),
    [
        ("EPSG:4490", 4490),
        ("4490", 4490),
        (" epsg:4530 ", 4530),
        ("CGCS2000", 4490),
        ("cgcs2000", 4490),
        ("WGS84", 4326),
        ("WGS 84", 4326),
        ("CGCS2000_3_Degree_GK_Zone_42", 4530),
        ("CGCS2000_3_Degree_GK_CM_126E", 4551),
        ("cgcs2000_3_degree_gk_zone_42", 4530),
        ("CGCS2000_GK_Zone_22", 4500),
        ("Xian_1980_3_Degree_GK_Zone_42", 2366),
        ("Beijing_1954_3_Degree_GK_CM_126E", 2439),
        ("CGCS2000 / 3-degree Gauss-Kruger zone 42", 4530),
        ("EPSG:3857", 3857),
        ("32652", 32652),
        (ESRI_CGCS2000, 4490),
        (CRS.from_epsg(4530).to_wkt(), 4530),
    ],
)
def test_parse_crs_accepts(text: str, epsg: int) -> None:
    crs = parse_crs(text)
    assert isinstance(crs, CRS)
    assert crs.to_epsg() == epsg


def test_parse_crs_crs84_and_proj_strings() -> None:
    crs84 = parse_crs("CRS84")
    assert isinstance(crs84, CRS) and crs84.to_authority() == ("OGC", "CRS84")
    proj = parse_crs("+proj=tmerc +lon_0=126 +x_0=500000 +ellps=GRS80 +units=m")
    assert isinstance(proj, CRS) and proj.is_projected


@pytest.mark.parametrize("text", ["GCJ02", "GCJ-02", "gcj02", "gcj-02", " GCJ02 "])
def test_parse_crs_gcj02(text: str) -> None:
    assert parse_crs(text) == GCJ02 == "GCJ02"


@pytest.mark.parametrize("text", ["", "   ", "foo bar", "EPSG:99999999", "CGCS2000_3_Degree_GK_Zone_99", "4490x"])
def test_parse_crs_unknown(text: str) -> None:
    with pytest.raises(CRSRefused) as info:
        parse_crs(text)
    assert info.value.code == "crs.unknown"
    assert "坐标" in info.value.message_zh
    assert "coordinate reference system" in info.value.message_en
    assert isinstance(info.value, ValueError)
    assert str(info.value) == info.value.message_en


def test_crs_refused_pickles() -> None:
    err = CRSRefused("crs.x", "中文", "english")
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, back.message_zh, back.message_en) == ("crs.x", "中文", "english")


# ----------------------------------------------------------------------------- datum_of

@pytest.mark.parametrize(
    ("crs", "datum"),
    [
        ("EPSG:4490", "cgcs2000"),
        ("EPSG:4530", "cgcs2000"),
        ("EPSG:4511", "cgcs2000"),
        ("EPSG:4326", "wgs84"),
        ("OGC:CRS84", "wgs84"),
        ("EPSG:3857", "wgs84"),
        ("EPSG:32652", "wgs84"),
        ("EPSG:4610", "xian80"),
        ("EPSG:2366", "xian80"),
        ("EPSG:4214", "beijing54"),
        ("EPSG:2401", "beijing54"),
        ("EPSG:21413", "beijing54"),
        ("EPSG:4555", "beijing54"),
        ("EPSG:4258", "other"),
        ("EPSG:4284", "other"),  # Pulkovo 1942: Krassowsky ellipsoid, not Beijing 1954
        ("+proj=longlat +ellps=GRS80", "other"),
        ("+proj=tmerc +lon_0=126 +x_0=500000 +ellps=krass", "other"),
        (ESRI_CGCS2000, "cgcs2000"),
        (ESRI_XIAN80_GK42, "xian80"),
        (ESRI_BEIJING54, "beijing54"),
    ],
)
def test_datum_of(crs: str, datum: str) -> None:
    assert datum_of(CRS.from_user_input(crs)) == datum


def test_datum_of_mislabelled_ellipsoid_is_other() -> None:
    wkt = ESRI_BEIJING54.replace("6378245.0,298.3", "6378137.0,298.257222101")
    assert datum_of(CRS.from_user_input(wkt)) == "other"


# ----------------------------------------------------------------------------- CGCS2000 / WGS84 / GCJ02

def test_identity_for_4490() -> None:
    t = make_transformer(CRS.from_epsg(4490))
    assert isinstance(t, CoordinateTransformer)
    x = np.array([126.6, 130.0])
    y = np.array([45.75, 47.0])
    lon, lat = t.transform_xy(x, y)
    assert lon.tolist() == x.tolist() and lat.tolist() == y.tolist()
    assert "unchanged" in t.description


@pytest.mark.parametrize(("epsg", "prefix"), [(4530, 42), (4551, None), (4500, 22), (4511, None)])
def test_harbin_gk_round_trip(epsg: int, prefix: int | None) -> None:
    fwd = Transformer.from_crs(4490, epsg, always_xy=True)
    e, n = fwd.transform(*HARBIN)
    if prefix is not None:
        assert int(e // 1_000_000) == prefix
    else:
        assert 0 < e < 1_000_000
    t = make_transformer(CRS.from_epsg(epsg))
    lon, lat = t.transform_xy(np.array([e]), np.array([n]))
    assert abs(lon[0] - HARBIN[0]) < 1e-7
    assert abs(lat[0] - HARBIN[1]) < 1e-7
    assert f"(EPSG:{epsg}) → EPSG:4490 inverse projection" in t.description
    assert "GK" in t.description


def test_description_example_from_brief() -> None:
    t = make_transformer(parse_crs("EPSG:4530"))  # type: ignore[arg-type]
    assert t.description == "CGCS2000 3° GK zone 42 (EPSG:4530) → EPSG:4490 inverse projection"


@pytest.mark.parametrize("epsg", [4326, 3857, 32652])
def test_wgs84_is_taken_as_cgcs2000(epsg: int) -> None:
    e, n = Transformer.from_crs(4326, epsg, always_xy=True).transform(*HARBIN)
    t = make_transformer(CRS.from_epsg(epsg))
    lon, lat = t.transform_xy(e, n)
    assert float(lon) == pytest.approx(HARBIN[0], abs=1e-9)
    assert float(lat) == pytest.approx(HARBIN[1], abs=1e-9)
    assert "decimetre" in t.description and "no datum shift" in t.description


def test_gcj02_path_inverts_wgs84_to_gcj02() -> None:
    g_lon, g_lat = wgs84_to_gcj02(np.array([HARBIN[0], 116.42079]), np.array([HARBIN[1], 39.90105]))
    for source in (GCJ02, "GCJ-02"):
        t = make_transformer(source)
        lon, lat = t.transform_xy(g_lon, g_lat)
        np.testing.assert_allclose(lon, [HARBIN[0], 116.42079], atol=1e-8, rtol=0)
        np.testing.assert_allclose(lat, [HARBIN[1], 39.90105], atol=1e-8, rtol=0)
        assert "GCJ-02" in t.description


# ----------------------------------------------------------------------------- Xian 1980 / Beijing 1954

def _xian80_gk42_point() -> tuple[float, float]:
    # Some Xian 1980 plane coordinates near Harbin (pure projection on the IAG 1975 ellipsoid).
    return Transformer.from_crs(4610, 2366, always_xy=True).transform(*HARBIN)


def test_xian80_helmert7_matches_independent_proj_pipeline() -> None:
    e, n = _xian80_gk42_point()
    assert int(e // 1_000_000) == 42
    t = make_transformer(CRS.from_epsg(2366), SET80_7)
    lon, lat = t.transform_xy(np.array([e]), np.array([n]))
    pipeline = Transformer.from_pipeline(
        "+proj=pipeline "
        "+step +inv +proj=tmerc +lat_0=0 +lon_0=126 +k=1 +x_0=42500000 +y_0=0 +a=6378140 +rf=298.257 "
        "+step +proj=cart +a=6378140 +rf=298.257 "
        f"+step +proj=helmert +x={H7.tx} +y={H7.ty} +z={H7.tz} +rx={H7.rx} +ry={H7.ry} +rz={H7.rz} "
        f"+s={H7.ds} +convention=position_vector "
        f"+step +inv +proj=cart +a={CGCS2000_A} +rf=298.257222101 "
        "+step +proj=unitconvert +xy_in=rad +xy_out=deg"
    )
    exp_lon, exp_lat, _ = pipeline.transform(e, n, 0.0)
    assert abs(lon[0] - exp_lon) < 1e-9
    assert abs(lat[0] - exp_lat) < 1e-9
    # The datum shift was applied: tens of metres away from the untransformed position.
    assert abs(lon[0] - HARBIN[0]) + abs(lat[0] - HARBIN[1]) > 1e-4
    assert "7-parameter" in t.description and "hrb-80-2000" in t.description
    assert "EPSG:2366" in t.description


def test_esri_prj_xian80_behaves_like_epsg() -> None:
    e, n = _xian80_gk42_point()
    a = make_transformer(CRS.from_user_input(ESRI_XIAN80_GK42), SET80_7).transform_xy(e, n)
    b = make_transformer(CRS.from_epsg(2366), SET80_7).transform_xy(e, n)
    assert float(a[0]) == pytest.approx(float(b[0]), abs=1e-10)
    assert float(a[1]) == pytest.approx(float(b[1]), abs=1e-10)


def test_beijing54_geographic_helmert7() -> None:
    tset = TransformationSet("bj54", "beijing54", "230000", "helmert7", helmert7=H7)
    t = make_transformer(CRS.from_epsg(4214), tset)
    lon, lat = t.transform_xy(np.array([HARBIN[0]]), np.array([HARBIN[1]]))
    x, y, z = geocentric(HARBIN[0], HARBIN[1], 0.0, KRASSOWSKY_A, KRASSOWSKY_F)
    exp_lon, exp_lat, _ = geodetic(*H7.apply(x, y, z), CGCS2000_A, CGCS2000_F)
    assert lon[0] == pytest.approx(float(exp_lon), abs=1e-10)
    assert lat[0] == pytest.approx(float(exp_lat), abs=1e-10)


def test_xian80_helmert4_on_gk_plane() -> None:
    e, n = _xian80_gk42_point()
    t = make_transformer(CRS.from_epsg(2366), SET80_4)
    lon, lat = t.transform_xy(np.array([e]), np.array([n]))
    # Independent: 4 parameters on unprefixed coordinates, then CGCS2000 zone 42 inverse projection.
    e2, n2 = H4.apply(e - 42_000_000.0, n)
    exp = Transformer.from_crs(4530, 4490, always_xy=True).transform(float(e2) + 42_000_000.0, float(n2))
    assert lon[0] == pytest.approx(exp[0], abs=1e-10)
    assert lat[0] == pytest.approx(exp[1], abs=1e-10)
    assert "4-parameter" in t.description and "EPSG:4530" in t.description
    # Same set, same point written without zone prefix (EPSG:2387, CM 126E): same result.
    e_cm, n_cm = Transformer.from_crs(4610, 2387, always_xy=True).transform(*HARBIN)
    assert e_cm == pytest.approx(e - 42_000_000.0, abs=1e-6)
    lon_cm, lat_cm = make_transformer(CRS.from_epsg(2387), SET80_4).transform_xy(e_cm, n_cm)
    assert float(lon_cm) == pytest.approx(lon[0], abs=1e-10)
    assert float(lat_cm) == pytest.approx(lat[0], abs=1e-10)


def test_helmert4_on_non_table_projection_uses_cgcs2000_twin() -> None:
    # A local Xian 1980 TM with CM 126.5E: not in the EPSG GK tables.
    conversion = TransverseMercatorConversion(longitude_natural_origin=126.5, false_easting=500_000.0)
    custom = ProjectedCRS(conversion=conversion, geodetic_crs=CRS.from_epsg(4610), name="Xian 1980 / local TM 126.5E")
    assert datum_of(custom) == "xian80"
    t = make_transformer(custom, SET80_4)
    e2, n2 = H4.apply(510_000.0, 5_070_000.0)
    exp = Transformer.from_proj("+proj=tmerc +lat_0=0 +lon_0=126.5 +k=1 +x_0=500000 +y_0=0 +a=6378137 +rf=298.257222101", "EPSG:4490", always_xy=True).transform(float(e2), float(n2))
    got = t.transform_xy(510_000.0, 5_070_000.0)
    assert float(got[0]) == pytest.approx(exp[0], abs=1e-9)
    assert float(got[1]) == pytest.approx(exp[1], abs=1e-9)


@pytest.mark.parametrize("epsg", [2366, 4610, 2401, 4214, 4555, 21413])
def test_54_80_without_set_refused(epsg: int) -> None:
    with pytest.raises(CRSRefused) as info:
        make_transformer(CRS.from_epsg(epsg))
    err = info.value
    assert err.code == "crs.needs_transformation"
    assert "PROJ has no real transformation" in err.message_en
    assert "7- or 4-parameter" in err.message_en
    assert "administrator" in err.message_en
    assert "七参数" in err.message_zh and "四参数" in err.message_zh and "PROJ" in err.message_zh


def test_set_for_other_datum_refused() -> None:
    with pytest.raises(CRSRefused) as info:
        make_transformer(CRS.from_epsg(2401), SET80_7)  # Beijing 1954 data, Xian 1980 set
    assert info.value.code == "crs.needs_transformation"
    assert "hrb-80-2000" in info.value.message_en


def test_helmert4_on_geographic_refused() -> None:
    with pytest.raises(CRSRefused) as info:
        make_transformer(CRS.from_epsg(4610), SET80_4)
    assert info.value.code == "crs.helmert4_needs_plane"
    assert info.value.message_zh and info.value.message_en


@pytest.mark.parametrize("crs", ["EPSG:4258", "EPSG:4284", "+proj=tmerc +lon_0=126 +x_0=500000 +ellps=GRS80"])
def test_other_datums_refused(crs: str) -> None:
    with pytest.raises(CRSRefused) as info:
        make_transformer(CRS.from_user_input(crs), SET80_7)
    assert info.value.code == "crs.unsupported_datum"
    assert "CGCS2000" in info.value.message_en and "CGCS2000" in info.value.message_zh


def test_make_transformer_accepts_text() -> None:
    t = make_transformer("EPSG:4551")
    e, n = Transformer.from_crs(4490, 4551, always_xy=True).transform(*HARBIN)
    lon, lat = t.transform_xy(e, n)
    assert float(lon) == pytest.approx(HARBIN[0], abs=1e-9) and float(lat) == pytest.approx(HARBIN[1], abs=1e-9)
    with pytest.raises(CRSRefused):
        make_transformer("not a crs")


# ----------------------------------------------------------------------------- TransformationSet

def test_transformation_set_json_round_trip() -> None:
    for tset in (SET80_7, SET80_4):
        data = json.loads(json.dumps(tset.to_dict()))
        assert TransformationSet.from_dict(data) == tset
    d7 = SET80_7.to_dict()
    assert d7["helmert7"]["convention"] == "position_vector" and "helmert4" not in d7
    assert SET80_4.to_dict()["helmert4"] == {"dx": 35.2, "dy": -48.7, "rotation": 1.8, "ds": 4.4}


def test_transformation_set_from_dict_rejects_unknown_keys() -> None:
    data = SET80_7.to_dict()
    data["helmert7"]["conventon"] = data["helmert7"].pop("convention")
    with pytest.raises(ValueError, match="conventon"):
        TransformationSet.from_dict(data)
    data = SET80_4.to_dict()
    data["regoin_code"] = "230100"
    with pytest.raises(ValueError, match="regoin_code"):
        TransformationSet.from_dict(data)
    cf = SET80_7.to_dict()
    cf["helmert7"]["convention"] = "coordinate_frame"
    assert TransformationSet.from_dict(cf).helmert7.convention == "coordinate_frame"  # type: ignore[union-attr]


def test_transformation_set_validation() -> None:
    with pytest.raises(ValueError):
        TransformationSet("x", "xian80", "230100", "helmert7")
    with pytest.raises(ValueError):
        TransformationSet("x", "xian80", "230100", "helmert4", helmert7=H7)
    with pytest.raises(ValueError):
        TransformationSet("x", "cgcs2000", "230100", "helmert7", helmert7=H7)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TransformationSet("x", "xian80", "230100", "affine", helmert7=H7)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- geometries

def test_transform_geometries_vectorised_keeps_none_and_z() -> None:
    fwd = Transformer.from_crs(4490, 4530, always_xy=True)
    ring = [(126.6, 45.75), (126.603, 45.75), (126.603, 45.752), (126.6, 45.752)]
    plane = [fwd.transform(x, y) for x, y in ring]
    poly = shapely.Polygon(plane)
    pt = shapely.Point(*fwd.transform(127.0, 46.0), 88.0)
    t = make_transformer(CRS.from_epsg(4530))
    out = t.transform_geometries(np.array([poly, None, pt], dtype=object))
    assert out.shape == (3,)
    assert out[1] is None
    assert shapely.equals_exact(out[0], shapely.Polygon(ring), tolerance=1e-7)
    assert out[2].has_z and out[2].z == 88.0
    assert out[2].x == pytest.approx(127.0, abs=1e-7) and out[2].y == pytest.approx(46.0, abs=1e-7)
    single = t.transform_geometries(poly)
    assert isinstance(single, shapely.Polygon)


def test_lonlat_sources_keep_their_geometries() -> None:
    """CGCS2000 or WGS 84 lon/lat: nothing to convert, so the geometries themselves come back (not rebuilt)."""
    poly = shapely.Polygon([(126.6, 45.75), (126.603, 45.75), (126.603, 45.752)])
    pt = shapely.Point(127.0, 46.0, 88.0)
    for code in (4490, 4326):
        t = make_transformer(CRS.from_epsg(code))
        given = np.array([poly, None, pt], dtype=object)
        out = t.transform_geometries(given)
        assert out is not given and out.dtype == object
        assert out[0] is poly and out[1] is None and out[2] is pt
        assert t.transform_geometries(poly) is poly
    projected = make_transformer(CRS.from_epsg(4530)).transform_geometries(np.array([poly], dtype=object))
    assert projected[0] is not poly  # a conversion makes new ones


def test_transform_xy_keeps_shape() -> None:
    t = make_transformer(CRS.from_epsg(4530))
    fwd = Transformer.from_crs(4490, 4530, always_xy=True)
    lon = np.array([[126.6, 126.7], [126.8, 126.9]])
    lat = np.full((2, 2), 45.75)
    e, n = fwd.transform(lon, lat)
    out_lon, out_lat = t.transform_xy(e, n)
    assert out_lon.shape == (2, 2) and out_lat.shape == (2, 2)
    np.testing.assert_allclose(out_lon, lon, atol=1e-9)
    np.testing.assert_allclose(out_lat, lat, atol=1e-9)
