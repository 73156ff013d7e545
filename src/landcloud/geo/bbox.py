"""Bounding boxes given as text (minx,miny,maxx,maxy), as every API takes them."""

from __future__ import annotations

from landcloud.messages import LandcloudError

BBox = tuple[float, float, float, float]


def parse_bbox(value: str | None, *, allow_3d: bool = False, ordered_x: bool = True) -> BBox | None:
    """Four numbers (six with heights when `allow_3d`, which are dropped); None passes through.

    `ordered_x=False` admits minx > maxx (a box across the antimeridian, as OGC API allows).
    """
    if value is None:
        return None
    try:
        parts = [float(x) for x in value.split(",")]
    except ValueError:
        parts = []
    if allow_3d and len(parts) == 6:
        parts = [parts[0], parts[1], parts[3], parts[4]]
    if len(parts) != 4 or any(p != p for p in parts) or parts[1] > parts[3] or (ordered_x and parts[0] > parts[2]):
        raise LandcloudError(
            "request.bad_bbox",
            "bbox 应为 minx,miny,maxx,maxy 四个数（经度、纬度，CGCS2000）",
            "bbox must be four numbers minx,miny,maxx,maxy (longitude, latitude, CGCS2000)",
        )
    return parts[0], parts[1], parts[2], parts[3]
