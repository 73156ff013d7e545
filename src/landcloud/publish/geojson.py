"""GeoJSON encoding of stored features, streamed in chunks.

Geometry text comes from GEOS (shapely.to_geojson, vectorised per chunk) and is spliced into
the feature text, so a million features never become a million Python dicts at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import shapely

from landcloud.store.features import StoredFeature


def feature_id(feat: StoredFeature) -> str:
    return feat.fkey


def encode_features(features: Iterable[StoredFeature], chunk: int = 2000, extra: dict[str, Any] | None = None) -> Iterator[str]:
    """One GeoJSON Feature text per stored feature (no separators)."""
    it = iter(features)
    while batch := list(islice(it, chunk)):
        geoms = shapely.from_wkb(np.array([f.wkb for f in batch], dtype=object), on_invalid="ignore")
        texts = shapely.to_geojson(geoms)
        for feat, gtext in zip(batch, texts):
            props = dict(feat.props)
            if extra:
                props.update(extra)
            yield (
                '{"type":"Feature","id":' + json.dumps(feature_id(feat), ensure_ascii=False)
                + ',"properties":' + json.dumps(props, ensure_ascii=False, default=str)
                + ',"geometry":' + (gtext if gtext is not None else "null") + "}"
            )


def feature_collection(features: Iterable[StoredFeature], members: dict[str, Any] | None = None) -> Iterator[bytes]:
    """A FeatureCollection as a byte stream; `members` are written before the features."""
    head = '{"type":"FeatureCollection"'
    for key, value in (members or {}).items():
        head += "," + json.dumps(key) + ":" + json.dumps(value, ensure_ascii=False, default=str)
    yield (head + ',"features":[').encode()
    first = True
    for text in encode_features(features):
        yield ((" " if first else ",") + text).encode()
        first = False
    yield b"]}"
