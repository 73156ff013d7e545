"""GeoJSON encoding of stored features, streamed in chunks.

Geometry text comes from GEOS (shapely.to_geojson, vectorised per chunk) and is spliced into
the feature text, so a million features never become a million Python dicts at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import shapely

from landcloud.store.features import StoredFeature

# json.dumps with options builds a JSONEncoder per call: two per feature, made once here instead
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


def feature_id(feat: StoredFeature) -> str:
    return feat.fkey


GeometryTransform = Callable[[np.ndarray], np.ndarray]


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
    keeps only the named properties.
    """
    it = iter(features)
    while batch := list(islice(it, chunk)):
        if skip_geometry:
            texts: Any = [None] * len(batch)
        else:
            geoms = shapely.from_wkb(np.array([f.wkb for f in batch], dtype=object), on_invalid="ignore")
            texts = shapely.to_geojson(transform(geoms) if transform is not None else geoms)
        for feat, gtext in zip(batch, texts):
            props = feat.props if properties is None else {k: v for k, v in feat.props.items() if k in properties}
            yield (
                '{"type":"Feature","id":' + _encode(feature_id(feat))
                + ',"properties":' + _encode(props)
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
