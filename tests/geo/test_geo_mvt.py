"""The vectorised MVT layer encoder writes the bytes mapbox-vector-tile writes for the same features."""

from __future__ import annotations

from typing import Any

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from landcloud.geo.mvt import _FEW_IDS, LayerEncoder, _id_fields, _ragged, geometry_commands, type_table, varint, varints

OPTIONS = {"extents": 4096, "y_coord_down": True, "check_winding_order": False}


def reference(name: str, features: list[tuple[shapely.Geometry | None, dict[str, Any], int | None]]) -> bytes:
    layer = [{"geometry": g, "properties": p, "id": fid} for g, p, fid in features]
    return mapbox_vector_tile.encode([{"name": name, "features": layer}], default_options=OPTIONS)


def ours(name: str, features: list[tuple[shapely.Geometry | None, dict[str, Any], int | None]], batch: int = 7) -> bytes:
    enc = LayerEncoder(name, 4096)
    for i in range(0, len(features), batch):
        part = features[i : i + batch]
        enc.add([g for g, _, _ in part], [(fid, p) for _, p, fid in part])
    return enc.tile()


def random_features(seed: int, n: int = 300) -> list[tuple[shapely.Geometry | None, dict[str, Any], int | None]]:
    rng = np.random.default_rng(seed)

    def ring(cx: float, cy: float, r: float, k: int, snap: bool) -> list[tuple[float, float]]:
        a = np.sort(rng.uniform(0, 2 * np.pi, k))
        pts = np.column_stack([cx + r * np.cos(a), cy + r * np.sin(a)])
        if snap:  # integer and half-integer coordinates: repeated points and rounding ties
            pts = np.round(pts * 2) / 2
        pts = np.repeat(pts, rng.integers(1, 3, len(pts)), axis=0)  # some points twice in a row
        return [tuple(p) for p in pts]

    def polygon() -> shapely.Geometry:
        cx, cy = rng.uniform(-100, 4200, 2)
        r = float(rng.choice([0.2, 0.6, 3, 40, 400]))
        shell = ring(cx, cy, r, int(rng.integers(3, 12)), bool(rng.integers(2)))
        holes = [ring(cx, cy, r / 3, 5, bool(rng.integers(2)))] if r > 10 and rng.integers(2) else []
        return shapely.orient_polygons(shapely.Polygon(shell, holes), exterior_cw=False)

    def line() -> shapely.Geometry:
        pts = rng.uniform(-64, 4160, (int(rng.integers(2, 8)), 2))
        if rng.integers(3) == 0:
            pts = np.round(pts / 50) * 50  # repeated points; sometimes a line of one point repeated
            pts[1:] = pts[0] if rng.integers(4) == 0 else pts[1:]
        return shapely.LineString(pts)

    makers = {
        "polygon": polygon,
        "multipolygon": lambda: shapely.MultiPolygon([polygon() for _ in range(int(rng.integers(2, 4)))]),
        "line": line,
        "multiline": lambda: shapely.MultiLineString([line() for _ in range(int(rng.integers(2, 4)))]),
        "point": lambda: shapely.Point(rng.uniform(-64, 4160, 2)),
        "multipoint": lambda: shapely.MultiPoint(rng.uniform(0, 4096, (int(rng.integers(2, 5)), 2))),
        "empty": lambda: shapely.Polygon(),
        "none": lambda: None,
    }
    values: list[Any] = ["水田", "", "0702", 0, 1, -1, 7, 2**40, -(2**62), 1.0, 0.5, -0.0, 3.25, True, False, None, "true"]
    kinds = list(makers)
    out = []
    for i in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=[0.4, 0.1, 0.15, 0.05, 0.1, 0.05, 0.05, 0.1]))]
        props = {k: values[int(rng.integers(len(values)))] for k in ("DLBM", "名称", "N", "flag") if rng.integers(4)}
        fid = [None, 0, i, 10**17 + i, -5][int(rng.integers(5))]
        out.append((makers[kind](), props, fid))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_same_bytes_as_mapbox_vector_tile(seed: int) -> None:
    feats = random_features(seed)
    assert ours("图层", feats) == reference("图层", feats)
    assert ours("图层", feats, batch=1000) == reference("图层", feats)


def test_degenerate_shapes_are_left_out_as_the_reference_leaves_them_out() -> None:
    tiny = shapely.Polygon([(10.2, 10.2), (10.3, 10.2), (10.3, 10.3)])  # all one point once rounded
    dot_line = shapely.LineString([(5, 5), (5.2, 5.1), (4.9, 5)])
    hole_collapsed = shapely.Polygon([(0, 0), (0, 100), (100, 100), (100, 0)], [[(50, 50), (50.2, 50.1), (50.1, 50.3)]])
    shell_collapsed = shapely.MultiPolygon([tiny, shapely.box(200, 200, 300, 300)])
    feats = [(g, {"k": i}, i) for i, g in enumerate([tiny, dot_line, hole_collapsed, shell_collapsed, shapely.box(1, 1, 2, 2)])]
    assert ours("x", feats) == reference("x", feats)
    assert [t for t, _ in geometry_commands([tiny, dot_line])] == [0, 0]


def test_varints() -> None:
    for v in (0, 1, 127, 128, 300, 2**32 - 1, 2**63, 2**64 - 1):
        blob, n = varints(np.array([v], dtype=np.uint64))
        assert blob == varint(v) and n[0] == len(blob)
    mixed = np.array([0, 2**64 - 1, 127, 128, 16383, 16384, 5, 2**35, 1], dtype=np.uint64)
    blob, n = varints(mixed)
    assert blob == b"".join(varint(int(v)) for v in mixed) and n.tolist() == [len(varint(int(v))) for v in mixed]
    assert varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1, as protobuf writes it


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 20000), max_size=60))
def test_varints_are_varint_each(values: list[int]) -> None:
    blob, n = varints(np.array(values, dtype=np.uint64))
    assert blob == b"".join(varint(v) for v in values) and n.tolist() == [len(varint(v)) for v in values]


@given(st.lists(st.integers(-1, 7), max_size=50), st.sets(st.integers(0, 7)))
def test_a_type_table_answers_as_isin(types: list[int], kinds: set[int]) -> None:
    """-1 (a missing shape) is never of a kind; every GEOS type id is looked up as np.isin would answer."""
    arr = np.array(types, dtype=np.int64)
    assert type_table(kinds)[arr].tolist() == np.isin(arr, sorted(kinds)).tolist()


_coordinate = st.integers(-64, 4160).map(float)


@st.composite
def _shapes_of_one_type(draw: st.DrawFn) -> list[shapely.Geometry]:
    """Lines, or polygons with or without holes, or their multi-shapes: the batches `geometry_commands` hands on."""
    kind = draw(st.sampled_from(["line", "polygon", "multiline", "multipolygon"]))

    def polygon() -> shapely.Geometry:
        x, y = draw(_coordinate), draw(_coordinate)
        w, h = draw(st.integers(4, 400)), draw(st.integers(4, 400))
        holes = [[(x + 1, y + 1), (x + 2, y + 1), (x + 2, y + 2)]] if draw(st.booleans()) else []
        return shapely.Polygon([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], holes)

    def line() -> shapely.Geometry:
        return shapely.LineString(draw(st.lists(st.tuples(_coordinate, _coordinate), min_size=2, max_size=6)))

    one = {"line": line, "polygon": polygon, "multiline": lambda: shapely.MultiLineString([line(), line()]),
           "multipolygon": lambda: shapely.MultiPolygon([polygon()])}[kind]
    return [one() for _ in range(draw(st.integers(1, 6)))]


@given(_shapes_of_one_type())
def test_the_ragged_arrays_of_one_arc_shapes_are_shapelys(shapes: list[shapely.Geometry]) -> None:
    """The lean offsets of lines and unholed polygons are those of shapely.to_ragged_array (holes and multi-shapes
    are its own)."""
    geoms = np.array(shapes, dtype=object)
    coords, offsets = _ragged(geoms)
    _, want_coords, want_offsets = shapely.to_ragged_array(geoms)
    assert coords.tolist() == want_coords.tolist()
    assert [o.tolist() for o in offsets] == [o.tolist() for o in want_offsets]


def test_ids_of_few_and_of_many_features_are_the_same_varints() -> None:
    """Below `_FEW_IDS` the ids are written one by one, from it packed in numpy: the same bytes either way."""
    fids = [None, 0, 1, 127, 128, 2**14, 2301020000001234, 2**63 - 1, -5] * 20
    assert len(fids) > _FEW_IDS
    packed = _id_fields(fids)
    assert packed == [b"\x08" + varint(f) if f is not None and f >= 0 else b"" for f in fids]
    assert [p for i in range(0, len(fids), 9) for p in _id_fields(fids[i : i + 9])] == packed
