"""Property tests of one edition batch (editions.apply_profile): no class leak, whitelist only, valid, on the grid."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given
from hypothesis import strategies as st
from test_desensitise import FAST, polygons, tolerances

from landcloud.geo.gcj02 import geometry_wgs84_to_gcj02
from landcloud.publish import desensitise
from landcloud.publish.editions import GCJ02_CHECK_EPS_M, ReleaseProfile, Tally, apply_profile, gcj02_output_check

CLASSES = ["0101", "0702", "0901", "0906", "1001", "09", "", None]
REMOVED = ["09", "0702"]  # 09: the whole first-level class 特殊用地, 0702 on its own


def removed(code: str | None) -> bool:
    return code is not None and (code == "0702" or code.startswith("09"))


@FAST
@given(st.lists(st.tuples(polygons, st.sampled_from(CLASSES), st.sampled_from(["保留", "删除"])), min_size=1, max_size=10),
       tolerances, st.booleans())
def test_a_batch_keeps_no_removed_class_no_other_field_and_valid_geometry_on_the_grid(items: list, tol: float, gcj: bool) -> None:
    geoms = np.array([g for g, _, _ in items], dtype=object)
    props = [{"DLBM": code, "MC": f"图斑{k}", "QLRZJH": "230102199001011111", "ZT": zt} for k, (_, code, zt) in enumerate(items)]
    keys = [str(k) for k in range(len(items))]
    profile = ReleaseProfile(fields=["DLBM", "MC"], class_field="DLBM", remove_classes=REMOVED, tolerance_m=tol, gcj02=gcj,
                             remove_where=[{"field": "ZT", "values": ["删除"]}])
    epsg = desensitise.layer_epsg(geoms)
    tally = Tally()
    rows = apply_profile(keys, props, geoms, profile, epsg, tally)
    by_class = sum(removed(p["DLBM"]) for p in props)
    by_filter = sum(not removed(p["DLBM"]) and p["ZT"] == "删除" for p in props)
    assert (tally.source_count, tally.removed_class, tally.removed_filter) == (len(items), by_class, by_filter)
    assert len(rows) + tally.collapsed == len(items) - by_class - by_filter  # every feature is published, removed or collapsed
    for key, p, _ in rows:
        assert not removed(p["DLBM"]) and props[int(key)]["ZT"] != "删除"
        assert set(p) <= {"DLBM", "MC"} and p["DLBM"] == props[int(key)]["DLBM"]
    out = np.array([g for _, _, g in rows], dtype=object)
    if not rows:
        return
    assert shapely.is_valid(out).all() and np.isin(shapely.get_type_id(out), [3, 6]).all()
    # stored in CGCS2000 whatever the profile says (GCJ-02 is an output): on the tolerance grid
    assert desensitise.check_precision(out, tol, epsg, eps_m=1e-6) == 0
    if gcj:  # the GCJ-02 output is valid, really shifted (hundreds of metres around Harbin) and maps back to within 1 mm
        assert gcj02_output_check(out)[0] == 0 and gcj02_output_check(out)[1] <= GCJ02_CHECK_EPS_M
        assert shapely.hausdorff_distance(geometry_wgs84_to_gcj02(out[0]), out[0]) > 1e-3


@FAST
@given(st.lists(st.tuples(polygons, st.sampled_from(["0101", "0301", "0901"])), min_size=1, max_size=8), st.sampled_from([250.0, 1000.0]))
def test_a_statistics_only_batch_keeps_the_area_of_the_kept_classes(items: list, cell: float) -> None:
    geoms = np.array([g for g, _ in items], dtype=object)
    props = [{"DLBM": code} for _, code in items]
    profile = ReleaseProfile(class_field="DLBM", remove_classes=["09"], aggregate={"kind": "grid", "cell_m": cell})
    tally = Tally()
    assert apply_profile([str(k) for k in range(len(items))], props, geoms, profile, desensitise.layer_epsg(geoms), tally) == []
    assert not any(code.startswith("09") for (_, code) in tally.grid)
    for code in {"0101", "0301"}:
        before = tally.area_before.get(code, 0.0)
        assert abs(sum(a for (_, c), a in tally.grid.items() if c == code) - before) <= 1e-3 * before + 1.0  # cut in the plane: slivers move a little
