"""Unit boundaries from a file, converted to CGCS2000 the same way submissions are."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy.engine import Engine

from landcloud.access.units import set_boundary
from landcloud.geo.crs import CRSRefused, make_transformer
from landcloud.ingest.crs_detect import decide_crs
from landcloud.ingest.readers import iter_batches, open_source, sample_coordinates
from landcloud.messages import LandcloudError, NotFound


def load_boundaries(engine: Engine, path: str | Path, code_field: str, crs: str | None = None) -> tuple[int, list[str]]:
    """Set the boundary of every known unit found in the file; returns (count set, unknown codes)."""
    with tempfile.TemporaryDirectory() as work:
        info = open_source(path, workdir=Path(work))
        if code_field not in {f.name for f in info.fields}:
            raise LandcloudError(
                "unit.no_code_field", f"文件中没有单位代码字段“{code_field}”", f"the file has no unit code field '{code_field}'"
            )
        try:
            transformer = make_transformer(decide_crs(info, crs, sample_coordinates(info)).crs, None)
        except CRSRefused as exc:
            raise LandcloudError(exc.code, exc.message_zh, exc.message_en) from exc
        done, missing = 0, []
        for batch in iter_batches(info):
            geoms = transformer.transform_geometries(shapely.from_wkb(np.array(batch.wkb, dtype=object), on_invalid="ignore"))
            for props, geom in zip(batch.properties, geoms):
                code = str(props.get(code_field) or "").strip()
                try:
                    set_boundary(engine, code, shapely.make_valid(geom) if geom is not None else geom)
                    done += 1
                except NotFound:
                    missing.append(code)
    return done, missing
