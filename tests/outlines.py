"""How far apart two outlines are, measured the way GEOS's discrete Hausdorff distance measures it, in O(n log m).

`shapely.hausdorff_distance` takes each vertex of one geometry to every segment of the other: on the real county
boundaries (thousands of vertices a county, 122 counties) two such comparisons were 180 s of a 210 s test, the
longest in the suite. The same distances come from a tree of the other geometry's segments, each vertex's nearest
segment found in logarithmic time (tests/test_outlines.py holds them equal to GEOS's).
"""

from __future__ import annotations

import numpy as np
import shapely


def vertex_distances(g: shapely.Geometry, outline: shapely.Geometry) -> np.ndarray:
    """Each vertex of `g`'s distance to the linework of `outline` (a polygon's rings, a line's segments, points)."""
    points = shapely.points(shapely.get_coordinates(g))
    parts = segments(outline)
    if len(points) == 0 or len(parts) == 0:
        return np.zeros(0) if len(points) == 0 else np.full(len(points), np.inf)
    _, distances = shapely.STRtree(parts).query_nearest(points, return_distance=True, all_matches=False)
    return distances


def segments(g: shapely.Geometry) -> np.ndarray:
    """The segments of `g`'s linework as two-point lines (a point stays a point): what a vertex's distance is taken to."""
    parts = shapely.get_parts(g)
    dimensions = shapely.get_dimensions(parts)
    lines = np.concatenate([shapely.get_parts(shapely.boundary(parts[dimensions == 2])), parts[dimensions == 1]])
    coords, index = shapely.get_coordinates(lines, return_index=True)
    same = index[:-1] == index[1:]  # consecutive vertices of one line: a segment
    pairs = np.stack([coords[:-1][same], coords[1:][same]], axis=1)
    return np.concatenate([shapely.linestrings(pairs), parts[dimensions == 0]])


def farthest_vertex(g: shapely.Geometry, outline: shapely.Geometry) -> float:
    """How far the farthest vertex of `g` lies from `outline`'s linework."""
    distances = vertex_distances(g, outline)
    return float(distances.max()) if len(distances) else 0.0


def hausdorff(a: shapely.Geometry, b: shapely.Geometry) -> float:
    """GEOS's discrete Hausdorff distance of `a` and `b` (each one's vertices against the other's linework)."""
    return max(farthest_vertex(a, b), farthest_vertex(b, a))
