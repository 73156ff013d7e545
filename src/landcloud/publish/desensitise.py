"""Pure geometry and attribute core for public editions (公开版) of datasets.

Why this exists: a public edition must not carry positions more precise than the public-map
limit (DOMAIN.md §5 quotes "not better than 50 m"; the exact number in force is UNCERTAIN, so
the tolerance is always a parameter, default ``DEFAULT_TOLERANCE_M``), must not contain
prohibited classes or sensitive attributes, and — because editions are handed to named
recipients — should let us find out which recipient leaked a copy.

This module is deliberately free of I/O and database access so that every rule can be
property-tested. It does NOT perform the state 保密技术处理 (DOMAIN.md §5: that is done by the
authorised body); it is the precision/content reduction we apply to our own public data.

Conventions: all geometries are shapely 2 arrays (``np.ndarray`` of objects, ``None``
allowed) in EPSG:4490 lon/lat. Metric work happens in the CGCS2000 3° Gauss-Krüger zone
(unprefixed, "CM xxxE") of the layer's centre, via pyproj with ``always_xy=True``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Transformer

from landcloud.geo.area import survey_areas
from landcloud.geo.zones import cgcs2000_zone_for_point

__all__ = [
    "DEFAULT_TOLERANCE_M",
    "GeneraliseResult",
    "aggregate_grid",
    "check_precision",
    "filter_fields",
    "fingerprint",
    "generalise",
    "layer_epsg",
    "remove_classes",
    "trace",
    "trace_matches",
]

DEFAULT_TOLERANCE_M = 50.0
"""Commonly quoted public-map position-precision limit (DOMAIN.md §5, UNCERTAIN)."""

GEOGRAPHIC_EPSG = 4490

_POINTAL = (0, 4)  # Point, MultiPoint
_LINEAL = (1, 2, 5)  # LineString, LinearRing, MultiLineString
_POLYGONAL = (3, 6)  # Polygon, MultiPolygon


# --------------------------------------------------------------------------- projection helpers


def _as_array(geoms: Any) -> NDArray[np.object_]:
    arr = np.asarray(geoms, dtype=object)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    return arr


def layer_epsg(geoms: Any) -> int:
    """EPSG of the unprefixed CGCS2000 3° GK zone containing the centre of the layer's bounds.

    One CRS for the whole layer (not per feature) so that grid snapping, shared boundaries and
    fingerprints are consistent across features; a 3° zone keeps scale error small
    (< ~1e-4 within a zone) so a metre in the plane is close to a metre on the ground.
    """
    arr = _as_array(geoms)
    xmin, ymin, xmax, ymax = shapely.total_bounds(arr)
    if not np.all(np.isfinite([xmin, ymin, xmax, ymax])):
        raise ValueError("layer has no coordinates; cannot choose a metric CRS")
    return cgcs2000_zone_for_point((xmin + xmax) / 2.0, (ymin + ymax) / 2.0, 3, prefixed=False).epsg


@lru_cache(maxsize=32)  # called per batch: building pyproj transformers is the slow part
def _transformers(epsg: int) -> tuple[Transformer, Transformer]:
    fwd = Transformer.from_crs(GEOGRAPHIC_EPSG, epsg, always_xy=True)
    inv = Transformer.from_crs(epsg, GEOGRAPHIC_EPSG, always_xy=True)
    return fwd, inv


def _project(geoms: NDArray[np.object_], tr: Transformer) -> NDArray[np.object_]:
    def apply(coords: NDArray[np.float64]) -> NDArray[np.float64]:
        if coords.shape[0] == 0:
            return coords
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, apply)


# --------------------------------------------------------------------------- generalise


@dataclass(frozen=True)
class GeneraliseResult:
    """Outcome of :func:`generalise`.

    ``geoms``: lon/lat geometries, ``None`` where the feature collapsed (nothing left that is
    meaningful at the tolerance) — callers must drop or report those features, never publish
    the original instead. ``area_before_m2``/``area_after_m2``: per-feature survey areas
    (ellipsoidal trapezoid, 0 for points/lines/collapsed) so an edition's check report can
    show how much area generalisation moved. ``epsg``: the metric CRS used, needed by
    :func:`check_precision`.
    """

    geoms: NDArray[np.object_]
    collapsed: NDArray[np.bool_]
    area_before_m2: NDArray[np.float64]
    area_after_m2: NDArray[np.float64]
    epsg: int


def _polygonal_part(g: Any, min_area: float) -> Any:
    """Keep only polygons of ``g`` whose area is >= ``min_area``; None if nothing remains.

    Collapsed slivers come out of snapping as lines/points or tiny polygons; publishing them
    would either be meaningless at the tolerance or leak detail below it.
    """
    if g is None or g.is_empty:
        return None
    parts = shapely.get_parts(g)
    polys: list[Any] = []
    for p in parts:
        tid = shapely.get_type_id(p)
        if tid == 3:
            if p.area >= min_area:
                polys.append(p)
        elif tid == 6 or tid == 7:
            sub = _polygonal_part(p, min_area)
            if sub is not None:
                polys.extend(shapely.get_parts(sub))
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def generalise(geoms: Any, tolerance_m: float = DEFAULT_TOLERANCE_M, *, epsg: int | None = None) -> GeneraliseResult:
    """Reduce positional precision to ``tolerance_m`` for a public edition.

    Steps (in the local GK plane, ``epsg`` or :func:`layer_epsg`):
    simplify (Douglas-Peucker, topology preserving per feature) with ``tolerance_m`` to drop
    detail below the limit; snap every coordinate to a ``tolerance_m`` grid with
    ``shapely.set_precision`` — this snapping is what guarantees that no published coordinate
    is finer than the tolerance, and the guarantee holds *in the projected plane* of ``epsg``
    (lon/lat values after back-projection are not round numbers); make valid; for polygon
    inputs keep only polygonal parts of at least ``tolerance_m² / 2``. Points are only snapped.
    Lines are simplified and snapped and collapse when shorter than ``tolerance_m``.
    A feature is ``collapsed`` when nothing remains. Result is projected back to EPSG:4490.
    """
    if not tolerance_m > 0:
        raise ValueError("tolerance_m must be positive")
    arr = _as_array(geoms)
    n = arr.shape[0]
    area_before = survey_areas(arr) if n else np.zeros(0)
    out = np.full(n, None, dtype=object)
    collapsed = np.zeros(n, dtype=bool)
    if n == 0:
        return GeneraliseResult(out, collapsed, area_before, np.zeros(0), epsg or 0)
    present = ~shapely.is_missing(arr) & ~shapely.is_empty(arr)
    collapsed[~present] = True
    if not present.any():
        return GeneraliseResult(out, collapsed, area_before, np.zeros(n), epsg or 0)
    epsg = epsg if epsg is not None else layer_epsg(arr[present])
    fwd, inv = _transformers(epsg)
    tid = shapely.get_type_id(arr)
    plane = _project(arr, fwd)

    # Points: snap only (simplifying a point is meaningless).
    pts = present & np.isin(tid, _POINTAL)
    if pts.any():
        out[pts] = shapely.set_precision(plane[pts], tolerance_m)

    # Lines and polygons: simplify, then snap (set_precision's default mode makes output valid).
    other = present & ~pts
    if other.any():
        simp = shapely.simplify(plane[other], tolerance_m, preserve_topology=True)
        snapped = shapely.set_precision(simp, tolerance_m)
        snapped = np.where(shapely.is_valid(snapped), snapped, shapely.make_valid(snapped))
        out[other] = snapped

    lines = present & np.isin(tid, _LINEAL)
    polys = present & np.isin(tid, _POLYGONAL)
    min_area = tolerance_m * tolerance_m / 2.0
    for i in np.nonzero(polys)[0]:
        out[i] = _polygonal_part(out[i], min_area)
    for i in np.nonzero(lines)[0]:
        g = out[i]
        if g is None or g.is_empty or shapely.length(g) < tolerance_m:
            out[i] = None
    for i in np.nonzero(pts)[0]:
        if out[i] is None or out[i].is_empty:
            out[i] = None

    collapsed |= present & shapely.is_missing(out)
    keep = ~collapsed
    out[keep] = _project(out[keep], inv)
    area_after = survey_areas(out)
    return GeneraliseResult(out, collapsed, area_before, area_after, epsg)


# --------------------------------------------------------------------------- check_precision


def check_precision(geoms_lonlat: Any, tolerance_m: float, epsg: int, *, eps_m: float = 1e-6) -> int:
    """Count coordinates that are NOT on the ``tolerance_m`` grid of ``epsg``.

    This is the check an edition's report quotes: 0 means every vertex, projected into the
    plane the generalisation used, lies on the grid. ``eps_m`` (default 1 µm) absorbs the
    float noise of the lon/lat -> plane -> lon/lat round trip; anything larger is a real
    off-grid coordinate (e.g. a vertex that was never generalised).
    """
    arr = _as_array(geoms_lonlat)
    coords = shapely.get_coordinates(arr)
    if coords.shape[0] == 0:
        return 0
    fwd, _ = _transformers(epsg)
    x, y = fwd.transform(coords[:, 0], coords[:, 1])
    xy = np.column_stack([x, y])
    off = np.abs(xy - np.round(xy / tolerance_m) * tolerance_m)
    return int(np.count_nonzero(np.any(off > eps_m, axis=1)))


# --------------------------------------------------------------------------- attributes


def remove_classes(props: Sequence[Mapping[str, Any]], field: str, classes: Iterable[str]) -> NDArray[np.bool_]:
    """Keep-mask (True = publish) that drops features of prohibited classes.

    A feature is dropped when its code (``props[i][field]``, compared as a stripped string)
    equals one of ``classes``, or when a class is a two-digit first-level code (e.g. ``"09"``,
    特殊用地) and the code starts with it — so a whole first-level class can be removed without
    listing every second-level code (0901…0906) and new sub-codes cannot leak. Features
    without the field are kept (nothing to match).
    """
    cls = [str(c).strip() for c in classes]
    exact = set(cls)
    prefixes = tuple(c for c in cls if len(c) == 2 and c.isdigit())
    keep = np.ones(len(props), dtype=bool)
    for i, p in enumerate(props):
        v = p.get(field)
        if v is None:
            continue
        code = str(v).strip()
        if code in exact or (prefixes and code.startswith(prefixes)):
            keep[i] = False
    return keep


def filter_fields(props: Sequence[Mapping[str, Any]], whitelist: Iterable[str]) -> list[dict[str, Any]]:
    """Copy of ``props`` with only whitelisted fields.

    A whitelist (not a blacklist) so that a sensitive attribute added to the master data later
    (elevation, capacity, voltage…, DOMAIN.md §5) is never published by default.
    """
    wl = frozenset(whitelist)
    return [{k: v for k, v in p.items() if k in wl} for p in props]


# --------------------------------------------------------------------------- fingerprint / trace


def _vertex_signs(xy: NDArray[np.float64], secret: bytes) -> NDArray[np.float64]:
    """±1 per axis per vertex from HMAC-SHA256(secret, plane coordinates rounded to 1 cm).

    Keyed on coordinates, not feature/vertex order, so the mark survives reordering, and a
    vertex shared by two features (or a ring's closing vertex) gets the same shift, keeping
    shared boundaries shared and rings closed.
    """
    keys = np.round(xy, 2)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    signs = np.empty((uniq.shape[0], 2), dtype=np.float64)
    for j, (x, y) in enumerate(uniq):
        d = hmac.new(secret, f"{x:.2f},{y:.2f}".encode(), hashlib.sha256).digest()
        signs[j, 0] = 1.0 if d[0] & 1 else -1.0
        signs[j, 1] = 1.0 if d[1] & 1 else -1.0
    return signs[np.asarray(inverse).reshape(-1)]


def fingerprint(
    geoms: Any,
    recipient_secret: bytes,
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    *,
    epsg: int | None = None,
) -> NDArray[np.object_]:
    """Recipient-specific, deterministic perturbation below the tolerance (leak tracing).

    Every vertex moves by ±``tolerance_m/10`` in x and y of the local GK plane (so at most
    ``tolerance_m·√2/10`` < ``tolerance_m/5``), signs from :func:`_vertex_signs`. The copy is
    therefore no more precise than the input and, at the default 50 m, invisible at public
    scales. A feature whose shifted version is invalid (thin spikes) is retried with half and
    quarter amplitude and left unshifted as a last resort; validity beats marking.
    Apply after :func:`generalise` (the shifted vertices are intentionally off-grid).
    """
    arr = _as_array(geoms)
    out = arr.copy()
    present = ~shapely.is_missing(arr) & ~shapely.is_empty(arr)
    if not present.any():
        return out
    epsg = epsg if epsg is not None else layer_epsg(arr[present])
    fwd, inv = _transformers(epsg)
    plane = _project(arr[present], fwd)
    xy = shapely.get_coordinates(plane)
    shift = _vertex_signs(xy, recipient_secret) * (tolerance_m / 10.0)
    result = np.full(plane.shape[0], None, dtype=object)
    todo = np.ones(plane.shape[0], dtype=bool)
    for factor in (1.0, 0.5, 0.25):
        moved = shapely.set_coordinates(plane.copy(), xy + shift * factor)
        ok = todo & shapely.is_valid(moved)
        result[ok] = moved[ok]
        todo &= ~ok
        if not todo.any():
            break
    result[todo] = plane[todo]
    out[present] = _project(result, inv)
    return out


def trace(
    geoms_original: Any,
    geoms_copy: Any,
    candidates: Mapping[str, bytes],
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    *,
    epsg: int | None = None,
) -> list[tuple[str, float]]:
    """Recipients ranked by score (see :func:`trace_matches` for how many vertices the scores rest on)."""
    return trace_matches(geoms_original, geoms_copy, candidates, tolerance_m, epsg=epsg)[0]


def trace_matches(
    geoms_original: Any,
    geoms_copy: Any,
    candidates: Mapping[str, bytes],
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    *,
    epsg: int | None = None,
) -> tuple[list[tuple[str, float]], int]:
    """Rank recipients by how well their fingerprint explains a leaked copy.

    Each original vertex is matched to the nearest copy vertex within ``tolerance_m/5`` in the
    plane (order-free, so reordered features, re-oriented rings or dropped features do not
    matter); the observed shift is correlated with each candidate's expected sign pattern.
    Score ≈ 1 for the recipient (less if some features were damped for validity), ≈ 0 ± 1/√(2N)
    for everyone else. Coordinate rounding to 1e-7° (~1 cm) is negligible against the
    ``tolerance_m/10`` shift. Returns ``([(name, score)]`` best first, number of matched vertices``)``:
    a score resting on few vertices (a copy that shares only a few positions by chance) says little.
    """
    orig = _as_array(geoms_original)
    copy = _as_array(geoms_copy)
    present = ~shapely.is_missing(orig) & ~shapely.is_empty(orig)
    epsg = epsg if epsg is not None else layer_epsg(orig[present])
    fwd, _ = _transformers(epsg)
    xy_o = shapely.get_coordinates(_project(orig[present], fwd))
    cp = copy[~shapely.is_missing(copy)]
    xy_c = shapely.get_coordinates(_project(cp, fwd)) if cp.size else np.zeros((0, 2))
    if xy_o.shape[0] == 0 or xy_c.shape[0] == 0:
        return [(name, 0.0) for name in candidates], 0
    xy_o = np.unique(np.round(xy_o, 2), axis=0)
    tree = shapely.STRtree(shapely.points(xy_c))
    src, dst = tree.query_nearest(shapely.points(xy_o), max_distance=tolerance_m / 5.0, all_matches=False)
    if src.size == 0:
        return [(name, 0.0) for name in candidates], 0
    amp = tolerance_m / 10.0
    observed = (xy_c[dst] - xy_o[src]) / amp
    scores: list[tuple[str, float]] = []
    for name, secret in candidates.items():
        expected = _vertex_signs(xy_o[src], secret)
        scores.append((name, float(np.sum(observed * expected) / (2 * src.size))))
    scores.sort(key=lambda t: t[1], reverse=True)
    return scores, int(src.size)


# --------------------------------------------------------------------------- statistics-only releases


def aggregate_grid(
    geoms: Any, codes: Sequence[Any], cell_m: float, *, epsg: int | None = None
) -> list[dict[str, Any]]:
    """Area per class per grid cell, for statistics-only releases (no parcel geometry leaves).

    Cells are ``cell_m`` squares aligned to multiples of ``cell_m`` in the local GK plane
    (``epsg`` or :func:`layer_epsg`), so a release never reveals boundaries finer than the cell.
    Areas are survey areas (m², ellipsoidal trapezoid of the lon/lat pieces) so per-class sums
    agree with the stored parcel areas. Returns one dict per (cell, code) with a non-zero area:
    ``{"cell": (col, row), "code": code, "area_m2": float, "geometry": cell polygon in lon/lat}``,
    sorted by cell then code.
    """
    if not cell_m > 0:
        raise ValueError("cell_m must be positive")
    arr = _as_array(geoms)
    if len(codes) != arr.shape[0]:
        raise ValueError("codes must have one entry per geometry")
    keep = np.isin(shapely.get_type_id(arr), _POLYGONAL) & ~shapely.is_empty(arr)
    if not keep.any():
        return []
    epsg = epsg if epsg is not None else layer_epsg(arr[keep])
    fwd, inv = _transformers(epsg)
    plane = _project(arr[keep], fwd)
    kept_codes = [codes[i] for i in np.nonzero(keep)[0]]
    piece_geoms: list[Any] = []
    piece_keys: list[tuple[tuple[int, int], Any]] = []
    for g, code in zip(plane, kept_codes):
        xmin, ymin, xmax, ymax = g.bounds
        cols = np.arange(math.floor(xmin / cell_m), math.floor(xmax / cell_m) + 1)
        rows = np.arange(math.floor(ymin / cell_m), math.floor(ymax / cell_m) + 1)
        cc, rr = np.meshgrid(cols, rows)
        cc, rr = cc.ravel(), rr.ravel()
        boxes = shapely.box(cc * cell_m, rr * cell_m, (cc + 1) * cell_m, (rr + 1) * cell_m)
        pieces = shapely.intersection(g, boxes)
        hit = ~shapely.is_empty(pieces) & np.isin(shapely.get_type_id(pieces), (3, 6, 7))
        for c, r, p in zip(cc[hit], rr[hit], pieces[hit]):
            piece_geoms.append(p)
            piece_keys.append(((int(c), int(r)), code))
    if not piece_geoms:
        return []
    areas = survey_areas(_project(np.array(piece_geoms, dtype=object), inv))
    totals: dict[tuple[tuple[int, int], Any], float] = {}
    for key, a in zip(piece_keys, areas):
        totals[key] = totals.get(key, 0.0) + float(a)
    out: list[dict[str, Any]] = []
    for (cell, code), a in sorted(totals.items(), key=lambda t: (t[0][0], str(t[0][1]))):
        if a <= 0:
            continue
        c, r = cell
        box = shapely.box(c * cell_m, r * cell_m, (c + 1) * cell_m, (r + 1) * cell_m)
        out.append({"cell": cell, "code": code, "area_m2": a, "geometry": _project(np.array([box], dtype=object), inv)[0]})
    return out
