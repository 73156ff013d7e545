"""GeoJSON encoding of stored features, streamed in chunks.

Geometry text is written from the coordinate arrays (shapely.to_ragged_array per geometry type,
serialised by orjson), not by GEOS's GeoJSON writer, which cost ~0.3 µs per coordinate — two thirds
of a 100-feature page's encoding (benchmarks/profiles/items-encoding.txt). Geometry types the arrays
do not express plainly (collections, empty or Z/M geometries) still go through shapely.to_geojson;
either way the numbers are the shortest text that reads back to the same double. Properties are
serialised by orjson too. The text is spliced, so a million features never become a million
Python dicts at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import orjson
import shapely

from landcloud.store.features import StoredFeature

# orjson refuses what json writes (an integer beyond 64 bits): the stdlib encoder then, equally compact
_fallback = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
# type id → GeoJSON name, for the types whose coordinates to_ragged_array lays out as GeoJSON nests them
_ARRAY_TYPES = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString", 6: "MultiPolygon"}


def encode_json(value: Any) -> str:
    """Compact JSON text of a value (UTF-8 as is; unknown types as their str)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        return _fallback(value)


def feature_id(feat: StoredFeature) -> str:
    return feat.fkey


GeometryTransform = Callable[[np.ndarray], np.ndarray]


def _runs(coords: np.ndarray, bounds: np.ndarray) -> list[str]:
    """The text `[x,y],[x,y],…` of each run of positions coords[bounds[k]:bounds[k + 1]].

    All positions are serialised by orjson in one call (per-run calls cost more than the numbers),
    then cut where runs meet: the text is ASCII and `]` occurs only where a position closes, so the
    byte offsets of the `]`s are the character offsets of the positions' ends.
    """
    raw = orjson.dumps(coords, option=_NUMPY)
    text = raw.decode()
    closes = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 93)  # the last one closes the whole array
    lo, hi = bounds[:-1], bounds[1:]
    first = np.where(lo > 0, closes[np.maximum(lo - 1, 0)] + 2, 1)  # a run starts after the previous position and its ","
    last = closes[np.maximum(hi - 1, 0)] + 1
    return [text[i:j] if i < j else "" for i, j in zip(first.tolist(), np.where(hi > lo, last, first).tolist())]


def _nested(runs: list[str], offsets: tuple[np.ndarray, ...]) -> list[str]:
    """The coordinates text of each geometry: each run in brackets, then each level of nesting
    (polygons of rings, multi-geometries of parts) joined from the one below."""
    level = ["[" + r + "]" for r in runs]
    for up in offsets:
        b = up.tolist()
        level = ["[" + ",".join(level[lo:hi]) + "]" for lo, hi in zip(b[:-1], b[1:])]
    return level


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(counts)))


def _layout(geoms: np.ndarray, type_id: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]] | None:
    """Coordinates (x, y) of geometries of one type and the offsets that nest them as GeoJSON does:
    runs of positions (rings, lines) first, then polygons, then multi-geometries. None when a part
    is empty (GEOS's writer then decides how that looks)."""
    coords = shapely.get_coordinates(geoms)
    if type_id == 0:
        return coords, ()
    if type_id in (1, 4):  # a line, or points: one run
        return coords, (_offsets(shapely.get_num_coordinates(geoms)),)
    parts = shapely.get_parts(geoms) if type_id in (5, 6) else geoms
    if type_id in (5, 6) and shapely.is_empty(parts).any():
        return None
    if type_id == 5:
        return coords, (_offsets(shapely.get_num_coordinates(parts)), _offsets(shapely.get_num_geometries(geoms)))
    rings = _offsets(shapely.get_num_coordinates(shapely.get_rings(parts)))
    polygons = _offsets(shapely.get_num_interior_rings(parts) + 1)
    if type_id == 3:
        return coords, (rings, polygons)
    return coords, (rings, polygons, _offsets(shapely.get_num_geometries(geoms)))


def geometry_texts(geoms: np.ndarray) -> list[str | None]:
    """The GeoJSON geometry text of each geometry (None for a missing one), as shapely.to_geojson
    gives it in value: same type, same nesting, each coordinate the same double."""
    geoms = np.asarray(geoms, dtype=object)
    out: list[str | None] = [None] * len(geoms)
    if not len(geoms):
        return out
    types = shapely.get_type_id(geoms)
    plain = np.isin(types, list(_ARRAY_TYPES)) & ~shapely.is_empty(geoms) & ~shapely.has_z(geoms) & ~shapely.has_m(geoms)
    for type_id in np.unique(types[plain]).tolist():
        idx = np.flatnonzero(plain & (types == type_id))
        layout = _layout(geoms[idx], type_id)
        if layout is None or np.isnan(layout[0]).any():
            plain[idx] = False
            continue
        coords, offsets = layout
        head = '{"type":"' + _ARRAY_TYPES[type_id] + '","coordinates":'
        if type_id == 0:  # a point is one position, not a list of them
            texts = _runs(coords, np.arange(len(coords) + 1))
        else:
            texts = _nested(_runs(coords, offsets[0]), offsets[1:])
        for i, coordinates in zip(idx.tolist(), texts):
            out[i] = head + coordinates + "}"
    rest = np.flatnonzero(~plain & (types >= 0))
    if len(rest):
        for i, gtext in zip(rest.tolist(), shapely.to_geojson(geoms[rest])):
            out[i] = gtext
    return out


def encode_features(
    features: Iterable[StoredFeature],
    chunk: int = 2000,
    *,
    transform: GeometryTransform | None = None,
    properties: Sequence[str] | None = None,
    skip_geometry: bool = False,
) -> Iterator[str]:
    """One GeoJSON Feature text per stored feature (no separators).

    `transform` maps a chunk's geometries (EPSG:4490 lon/lat) to the output CRS; `properties`
    keeps only the named properties. Features read as text (`StoredFeature.props_text`, `.geojson`)
    are spliced as they are.
    """
    it = iter(features)
    while batch := list(islice(it, chunk)):
        texts: list[str | None] = [None] * len(batch) if skip_geometry else [f.geojson for f in batch]
        todo = [] if skip_geometry else [i for i, f in enumerate(batch) if f.geojson is None and f.wkb is not None]
        if transform is not None and any(t is not None for t in texts):
            raise ValueError("geometry read as GeoJSON is in EPSG:4490 and cannot be transformed: read it as WKB")
        if todo:
            geoms = shapely.from_wkb(np.array([batch[i].wkb for i in todo], dtype=object), on_invalid="ignore")
            for i, text in zip(todo, geometry_texts(transform(geoms) if transform is not None else geoms)):
                texts[i] = text
        for feat, gtext in zip(batch, texts):
            if feat.props_text is not None and properties is None:
                ptext = feat.props_text  # the stored JSON object, as the caller may see it whole
            else:
                props = json.loads(feat.props_text) if feat.props_text is not None else feat.props
                ptext = encode_json(props if properties is None else {k: v for k, v in props.items() if k in properties})
            yield (
                '{"type":"Feature","id":' + encode_json(feature_id(feat))
                + ',"properties":' + ptext
                + ',"geometry":' + (gtext if gtext is not None else "null") + "}"
            )


def feature_collection(
    features: Iterable[StoredFeature],
    members: dict[str, Any] | None = None,
    *,
    transform: GeometryTransform | None = None,
    per_chunk: int = 500,
) -> Iterator[bytes]:
    """A FeatureCollection as a byte stream, `per_chunk` features a piece; `members` come before the features."""
    head = '{"type":"FeatureCollection"'
    for key, value in (members or {}).items():
        head += "," + json.dumps(key) + ":" + json.dumps(value, ensure_ascii=False, default=str)
    yield (head + ',"features":[').encode()
    parts: list[str] = []
    first = True
    for text in encode_features(features, transform=transform):
        parts.append(text if first else "," + text)
        first = False
        if len(parts) >= per_chunk:
            yield "".join(parts).encode()
            parts = []
    if parts:
        yield "".join(parts).encode()
    yield b"]}"
