"""The pair test of the overlap rule (图斑不得重叠): which pairs of shapes overlap, and by what.

One place for both ways the rule is decided — pairs of stored rows (`FeatureStore.overlapping_pairs`)
and pairs of a version streaming in (`ingest.overlap_stream`) — so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import shapely

from landcloud.geo.parallel import in_parts

# DE-9IM: the interiors meet. Neighbours of a tessellation touch along their shared edges, which does not count.
INTERIORS_MEET = "T********"


def interiors_meeting(
    ga: np.ndarray, gb: np.ndarray, *, threads: bool = True, apart: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the pairs (ga[i], gb[i]) whose interiors meet, their intersections).

    `threads`: spread GEOS over the machine's cores (`geo.parallel`); False on a thread that is itself
    the parallel part. `apart`: pairs already known not to meet (`geo.separation`), left out of relate.
    """
    todo = np.flatnonzero(~apart) if apart is not None else None
    if todo is not None:
        ga, gb = ga[todo], gb[todo]
    if threads:
        hit = np.flatnonzero(in_parts(lambda a, b: shapely.relate_pattern(a, b, INTERIORS_MEET), ga, gb))
        inter = in_parts(shapely.intersection, ga[hit], gb[hit], cost=10)
    else:
        hit = np.flatnonzero(shapely.relate_pattern(ga, gb, INTERIORS_MEET))
        inter = shapely.intersection(ga[hit], gb[hit])
    return (todo[hit] if todo is not None else hit), inter
