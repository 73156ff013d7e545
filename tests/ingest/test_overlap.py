"""The overlap rule (图斑不得重叠) against a brute-force reference, on both stores.

The store finds the pairs (envelope index, then GEOS decides); these tests hold it to the
definition: every pair of current polygons, one of them new in the version, whose interiors
meet and whose intersection has a survey area above the tolerance — no more, no fewer, with
the same areas and messages. Random tessellations get overlaps and slivers injected on either
side of the 1 m² tolerance, polygons that contain others, and shifted copies of whole blocks.

The last two are the cases where GEOS's coverage validation (`shapely.coverage_invalid_edges`)
flags neither polygon of an overlapping pair: a polygon containing others without touching
their boundaries, and the inner cells of two overlaid clean grids (their shared edges all
match within each grid, so GEOS skips them). Coverage flags therefore cannot pre-filter the
pairs; the tests pin that down so such a filter is never taken for an equivalent one.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from landcloud.catalog import datasets as catalog
from landcloud.geo import parallel
from landcloud.geo.area import survey_areas
from landcloud.ingest import overlap
from landcloud.ingest.overlap import find_overlaps
from landcloud.ingest.pipeline import _stage_rows
from landcloud.store.features import feature_store_for

TOLERANCE = 1.0
ORIGIN = (126.60, 45.74)
MIN_WORK = parallel.MIN_WORK
CELL = 0.001  # ~80 m × 110 m at Harbin: ~8,700 m² a cell


def jittered_grid(nx: int, ny: int, seed: int, jitter: float = 0.3) -> list[shapely.Geometry]:
    """A clean tessellation: quads over a lattice whose inner vertices are moved at random."""
    rng = np.random.default_rng(seed)
    xs = ORIGIN[0] + CELL * np.arange(nx + 1)
    ys = ORIGIN[1] + CELL * np.arange(ny + 1)
    px, py = np.meshgrid(xs, ys, indexing="ij")
    inner = (slice(1, nx), slice(1, ny))
    px[inner] += rng.uniform(-jitter, jitter, px[inner].shape) * CELL
    py[inner] += rng.uniform(-jitter, jitter, py[inner].shape) * CELL
    cells = []
    for i in range(nx):
        for j in range(ny):
            ring = [(px[i, j], py[i, j]), (px[i + 1, j], py[i + 1, j]), (px[i + 1, j + 1], py[i + 1, j + 1]), (px[i, j + 1], py[i, j + 1])]
            cells.append(shapely.Polygon(ring))
    return cells


def push_vertex(poly: shapely.Geometry, vertex: int, dx: float, dy: float) -> shapely.Geometry:
    """The polygon with one vertex moved: an overlap (or a gap) with the neighbours there."""
    xy = np.asarray(poly.exterior.coords)[:-1].copy()
    xy[vertex % len(xy)] += (dx, dy)
    moved = shapely.Polygon(xy)
    return moved if moved.is_valid else poly


def reference(geoms: list[shapely.Geometry], keys: list[str], new: set[str]) -> set[tuple[frozenset[str], float]]:
    """Every pair by brute force: interiors meet, one of them new, survey area of the intersection above the tolerance."""
    out = set()
    for i, j in itertools.combinations(range(len(geoms)), 2):
        if keys[i] not in new and keys[j] not in new:
            continue
        if shapely.relate_pattern(geoms[i], geoms[j], "T********"):
            area = float(survey_areas(np.array([shapely.intersection(geoms[i], geoms[j])]))[0])
            if area > TOLERANCE:
                out.add((frozenset((keys[i], keys[j])), round(area, 2)))
    return out


def load_and_check(
    engine: sa.Engine, versions: list[tuple[str, list[tuple[str, shapely.Geometry]]]]
) -> tuple[list, list[tuple[str, shapely.Geometry]], set[str]]:
    """Merge the versions (mode, [(key, geometry)]) of one dataset, then run the overlap rule on the last.

    Returns the findings, the current (key, geometry) rows and the keys new in the last version;
    everything is rolled back.
    """
    store = feature_store_for(engine)
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            catalog.create_dataset(conn, "ov", "230102")
            current: dict[str, shapely.Geometry] = {}
            new: set[str] = set()
            for version, (mode, rows) in enumerate(versions, start=1):
                geoms = np.array([g for _, g in rows], dtype=object)
                props = [{"K": k} for k, _ in rows]
                store.begin_stage(conn)
                store.stage(conn, _stage_rows(geoms, survey_areas(geoms), props, "K", None))
                store.merge_stage(conn, "ov", version, mode)  # type: ignore[arg-type]
                if mode == "replace":
                    new = {k for k, g in rows if k not in current or not shapely.equals_exact(current[k], g, 0)}
                    current = dict(rows)
                else:
                    new = {k for k, g in rows if k not in current or not shapely.equals_exact(current[k], g, 0)}
                    current.update(rows)
            findings = find_overlaps(conn, store, "ov", len(versions), TOLERANCE)
        finally:
            trans.rollback()
    return findings, list(current.items()), new


def as_set(findings: list) -> set[tuple[frozenset[str], float]]:
    return {(frozenset((f.feature_key, f.details["other_key"])), f.details["overlap_m2"]) for f in findings}


def assert_same_as_reference(findings: list, rows: list[tuple[str, shapely.Geometry]], new: set[str]) -> None:
    keys = [k for k, _ in rows]
    geoms = [g for _, g in rows]
    assert len(findings) == len(as_set(findings)), "a pair reported twice"
    assert as_set(findings) == reference(geoms, keys, new)
    by_key = dict(rows)
    for f in findings:
        a, b, area = f.feature_key, f.details["other_key"], f.details["overlap_m2"]
        assert (f.rule, f.severity) == ("topology.overlap", "error")
        assert f.message_zh == f"图斑 {a} 与 {b} 重叠 {area:.2f} 平方米"
        assert f.message_en.startswith(f"polygon {a} overlaps {b} by ")
        assert a in new or b in new
        inter = shapely.intersection(by_key[a], by_key[b])
        assert f.location is not None and shapely.intersects(inter, shapely.Point(f.location).buffer(1e-9))


def keyed(geoms: list[shapely.Geometry], prefix: str = "p") -> list[tuple[str, shapely.Geometry]]:
    return [(f"{prefix}{i}", g) for i, g in enumerate(geoms)]


def test_clean_tessellation_has_no_overlap(engine: sa.Engine) -> None:
    findings, rows, new = load_and_check(engine, [("replace", keyed(jittered_grid(8, 6, seed=3)))])
    assert findings == []
    assert_same_as_reference(findings, rows, new)


def test_container_without_boundary_contact(engine: sa.Engine) -> None:
    """A polygon over a 3×3 block of cells, not touching them: GEOS flags neither it nor the middle cell."""
    cells = [shapely.box(ORIGIN[0] + i * CELL, ORIGIN[1] + j * CELL, ORIGIN[0] + (i + 1) * CELL, ORIGIN[1] + (j + 1) * CELL)
             for i in range(4, 7) for j in range(4, 7)]
    container = shapely.box(ORIGIN[0], ORIGIN[1], ORIGIN[0] + 10 * CELL, ORIGIN[1] + 10 * CELL)
    geoms = [container, *cells]
    flagged = ~shapely.is_empty(shapely.coverage_invalid_edges(geoms))
    assert not flagged[0] and not flagged[5]  # the container and the middle cell: coverage-valid, yet they overlap
    findings, rows, new = load_and_check(engine, [("replace", keyed(geoms))])
    assert {"p0", "p5"} in [{f.feature_key, f.details["other_key"]} for f in findings]
    assert len(findings) == 9
    assert_same_as_reference(findings, rows, new)


def test_two_overlaid_clean_grids(engine: sa.Engine) -> None:
    """A block submitted twice, shifted: inside each copy every edge matches, so GEOS flags only the rims."""
    a = [shapely.box(ORIGIN[0] + i * CELL, ORIGIN[1] + j * CELL, ORIGIN[0] + (i + 1) * CELL, ORIGIN[1] + (j + 1) * CELL)
         for i in range(5) for j in range(5)]
    b = [shapely.affinity.translate(g, 0.5 * CELL, 0.3 * CELL) for g in a]
    geoms = a + b
    flagged = ~shapely.is_empty(shapely.coverage_invalid_edges(geoms))
    pairs = [(i, j) for i, j in itertools.combinations(range(len(geoms)), 2) if shapely.relate_pattern(geoms[i], geoms[j], "T********")]
    assert sum(1 for i, j in pairs if not flagged[i] and not flagged[j]) > 0  # overlapping pairs GEOS does not flag
    findings, rows, new = load_and_check(engine, [("replace", keyed(geoms))])
    assert len(findings) == len(pairs) == 81
    assert_same_as_reference(findings, rows, new)


def test_hole_holds_a_polygon_without_overlap(engine: sa.Engine) -> None:
    outer = shapely.box(ORIGIN[0], ORIGIN[1], ORIGIN[0] + 3 * CELL, ORIGIN[1] + 3 * CELL)
    island = shapely.box(ORIGIN[0] + CELL, ORIGIN[1] + CELL, ORIGIN[0] + 2 * CELL, ORIGIN[1] + 2 * CELL)
    ring = outer.difference(island)
    inside_island = shapely.box(ORIGIN[0] + 1.2 * CELL, ORIGIN[1] + 1.2 * CELL, ORIGIN[0] + 1.8 * CELL, ORIGIN[1] + 1.8 * CELL)
    findings, rows, new = load_and_check(engine, [("replace", keyed([ring, island]))])
    assert findings == []
    findings, rows, new = load_and_check(engine, [("replace", keyed([ring, island, inside_island]))])
    assert {frozenset((f.feature_key, f.details["other_key"])) for f in findings} == {frozenset(("p1", "p2"))}
    assert_same_as_reference(findings, rows, new)


def test_multipolygon_part_over_a_neighbour(engine: sa.Engine) -> None:
    cells = jittered_grid(4, 4, seed=5)
    multi = shapely.MultiPolygon([cells[0], shapely.affinity.translate(cells[15], 0.2 * CELL, 0)])
    geoms = [multi, *cells[1:15], cells[15]]
    findings, rows, new = load_and_check(engine, [("replace", keyed(geoms))])
    assert len(findings) >= 1
    assert_same_as_reference(findings, rows, new)


@pytest.mark.parametrize("chunk", [1, 3, 50, 20_000])
def test_chunking_and_incremental_edit(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Small chunks (geometries kept across them) and an incremental edit over stored polygons."""
    monkeypatch.setattr(overlap, "CHUNK", chunk)
    monkeypatch.setattr(parallel, "MIN_WORK", 1)  # GEOS in parts on 3 threads, even for a few pairs
    monkeypatch.setenv("LANDCLOUD_GEOS_THREADS", "3")
    cells = jittered_grid(6, 5, seed=11)
    v1 = keyed(cells)
    stored_overlap = [("p0", cells[0]), ("p1", push_vertex(cells[1], 0, 0, -3e-5))]  # old rows overlapping: not reported again
    v2 = [("p7", push_vertex(cells[7], 2, 2e-5, 2e-5)), ("x1", shapely.box(ORIGIN[0] + 2.2 * CELL, ORIGIN[1] + 2.2 * CELL,
                                                                            ORIGIN[0] + 2.6 * CELL, ORIGIN[1] + 2.6 * CELL))]
    findings, rows, new = load_and_check(engine, [("replace", v1[2:] + stored_overlap), ("incremental", v2)])
    assert new == {"p7", "x1"}
    assert findings and all("p7" in (f.feature_key, f.details["other_key"]) or "x1" in (f.feature_key, f.details["other_key"])
                            for f in findings)
    assert_same_as_reference(findings, rows, new)


@st.composite
def damaged_tessellations(draw: st.DrawFn) -> tuple[list[shapely.Geometry], int]:
    nx, ny = draw(st.integers(2, 7)), draw(st.integers(2, 6))
    cells = jittered_grid(nx, ny, seed=draw(st.integers(0, 10_000)))
    extra: list[shapely.Geometry] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["push", "push", "buffer", "container", "shifted_copy", "duplicate"]))
        i = draw(st.integers(0, len(cells) - 1))
        if kind == "push":  # a vertex moved by 1e-8 … 3e-5 degrees: overlaps from ~0.01 m² to ~100 m²
            size = 10 ** draw(st.floats(-8, -4.5))
            angle = draw(st.floats(0, 2 * np.pi))
            cells[i] = push_vertex(cells[i], draw(st.integers(0, 3)), size * np.cos(angle), size * np.sin(angle))
        elif kind == "buffer":  # slivers all around, on either side of the tolerance
            cells[i] = shapely.buffer(cells[i], 10 ** draw(st.floats(-9, -6)), join_style="mitre")
        elif kind == "container":
            shrink = draw(st.sampled_from([0.0, 0.1 * CELL]))
            minx, miny, maxx, maxy = shapely.total_bounds(cells[: max(1, len(cells) // 2)])
            extra.append(shapely.box(minx + shrink, miny + shrink, maxx - shrink, maxy - shrink))
        elif kind == "shifted_copy":
            dx, dy = draw(st.floats(-0.7, 0.7)) * CELL, draw(st.floats(-0.7, 0.7)) * CELL
            extra += [shapely.affinity.translate(g, dx, dy) for g in cells[i : i + 4]]
        else:
            extra.append(cells[i])
    return cells + extra, draw(st.sampled_from([2, 7, 20_000]))


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=damaged_tessellations())
def test_random_tessellations_match_the_reference(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch,
                                                  case: tuple[list[shapely.Geometry], int]) -> None:
    geoms, chunk = case
    monkeypatch.setattr(overlap, "CHUNK", chunk)
    monkeypatch.setattr(parallel, "MIN_WORK", 1 if chunk == 7 else MIN_WORK)
    monkeypatch.setenv("LANDCLOUD_GEOS_THREADS", "3")
    findings, rows, new = load_and_check(engine, [("replace", keyed(geoms))])
    assert_same_as_reference(findings, rows, new)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=damaged_tessellations(), edits=st.sets(st.integers(0, 60), max_size=6))
def test_random_incremental_edits_match_the_reference(engine: sa.Engine, case: tuple[list[shapely.Geometry], int],
                                                      edits: set[int]) -> None:
    geoms, _ = case
    v1 = keyed(geoms)
    v2 = [(k, push_vertex(g, 1, 2e-5, -1e-5)) for i, (k, g) in enumerate(v1) if i in edits]
    findings, rows, new = load_and_check(engine, [("replace", v1), ("incremental", v2)])
    assert_same_as_reference(findings, rows, new)
