"""The overlap rule decided while a first version streams in (`ingest.overlap_stream`), on both stores.

Held to the same brute-force reference as `find_overlaps` (tests/ingest/test_overlap.py), with the
features shuffled and cut into small batches and a small window, so that overlapping pairs fall
in batches far apart and are found only by the final pass (rows read back by key), and with
`find_overlaps` itself on the same rows: same pairs, same areas, same messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_overlap import CELL, ORIGIN, TOLERANCE, as_set, assert_same_as_reference, damaged_tessellations, jittered_grid, keyed

from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.geo import overlap_window
from landcloud.geo.area import survey_areas
from landcloud.geo.overlap_window import WindowOverlaps
from landcloud.ingest import overlap, overlap_process, overlap_stream
from landcloud.ingest.overlap import find_overlaps
from landcloud.ingest.overlap_stream import StreamedOverlaps
from landcloud.ingest.pipeline import SubmitOptions, _stage_rows, run_submission
from landcloud.store.features import feature_store_for

from builders import grid_parcels, write_geojson
from conftest import table_counts


def stream_and_check(
    engine: sa.Engine, rows: list[tuple[str, shapely.Geometry]], batch: int, window: int, sealed: bool = True,
    in_process: bool = False,
) -> tuple[list | None, list, int]:
    """Write `rows` as a dataset's first version (the pipeline's direct load) in batches of `batch`, fed to a
    StreamedOverlaps of `window` batches; returns its findings, `find_overlaps`'s on the same rows, and the
    number of pairs left to the final pass. `sealed`: the far pairs searched for before the writes end and the
    merge, as the pipeline does. `in_process`: the window decided in a process of its own, sent the stored WKBs.
    Everything is rolled back."""
    store = feature_store_for(engine)
    streamed = StreamedOverlaps(TOLERANCE, window=window, in_process=in_process)
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            catalog.create_dataset(conn, "ov", "230102")
            store.begin_stage(conn, ("ov", 1))
            for start in range(0, len(rows), batch):
                part = rows[start : start + batch]
                geoms = np.array([g for _, g in part], dtype=object)
                staged = _stage_rows(geoms, survey_areas(geoms), [{"K": k} for k, _ in part], "K", None)
                store.stage(conn, staged)
                streamed.add([r.fkey for r in staged], geoms, staged.wkbs if in_process else None)
            if sealed:
                streamed.seal()
            store.end_stage(conn)
            store.merge_stage(conn, "ov", 1, "replace")
            findings = streamed.finish(conn, store, "ov", 1)
            reference = find_overlaps(conn, store, "ov", 1, TOLERANCE)
        finally:
            streamed.close()
            trans.rollback()
    return findings, reference, streamed.far_pairs


@pytest.mark.parametrize("in_process", [False, True], ids=["thread", "process"])
def test_overlaps_between_batches_far_apart_are_found(engine: sa.Engine, in_process: bool) -> None:
    """A block and its shifted copy, the copy at the end of the file: every overlapping pair spans many batches."""
    block = jittered_grid(6, 6, seed=2)
    copy = [shapely.affinity.translate(g, 0.4 * CELL, 0.3 * CELL) for g in block[:8]]
    rows = keyed(block) + keyed(copy, prefix="c")
    findings, reference, far = stream_and_check(engine, rows, batch=3, window=2, in_process=in_process)
    assert far > 0
    assert findings is not None and len(findings) >= 8
    assert {("c" in f.feature_key, "c" in f.details["other_key"]) for f in findings} == {(False, True)}  # read first: the block
    assert as_set(findings) == as_set(reference)
    assert_same_as_reference(findings, rows, {k for k, _ in rows})
    # the same rows in one window: all decided in the stream, same verdicts
    whole, _, far = stream_and_check(engine, rows, batch=len(rows), window=1, in_process=in_process)
    assert far == 0 and as_set(whole) == as_set(findings)
    # the far pairs searched for only when `finish` asks: the same
    unsealed, _, far = stream_and_check(engine, rows, batch=3, window=2, sealed=False, in_process=in_process)
    assert far > 0 and unsealed == findings


@pytest.mark.parametrize("in_process", [False, True], ids=["thread", "process"])
def test_findings_are_in_file_order_and_capped(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, in_process: bool) -> None:
    monkeypatch.setattr(overlap_stream, "MAX_FINDINGS", 5)  # (the process is told the limit)
    cells = [shapely.box(ORIGIN[0] + i * CELL, ORIGIN[1], ORIGIN[0] + (i + 1) * CELL, ORIGIN[1] + CELL) for i in range(12)]
    rows = keyed(cells) + keyed([shapely.affinity.translate(g, 0.5 * CELL, 0) for g in cells], prefix="s")
    findings, _, _ = stream_and_check(engine, rows, batch=4, window=2, in_process=in_process)
    assert findings is not None and len(findings) == 5
    order = {k: i for i, (k, _) in enumerate(rows)}
    pairs = [(order[f.feature_key], order[f.details["other_key"]]) for f in findings]
    assert pairs == sorted(pairs) and all(a < b for a, b in pairs)


@pytest.mark.parametrize("in_process", [False, True], ids=["thread", "process"])
def test_a_shared_key_among_far_pairs_falls_back(engine: sa.Engine, in_process: bool) -> None:
    """Far pairs are read back by key: a key on two rows cannot say which, so the caller runs find_overlaps."""
    cells = jittered_grid(4, 3, seed=7)
    rows = keyed(cells) + [("p0", shapely.affinity.translate(cells[0], 0.3 * CELL, 0.2 * CELL))]
    findings, _, far = stream_and_check(engine, rows, batch=2, window=1, in_process=in_process)
    assert far > 0 and findings is None


def spy_relate(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int | None]]:
    """Record, for every call of the pair test the stream makes, its pairs and how many went to relate
    (None: no hulls were made for them)."""
    calls: list[tuple[int, int | None]] = []
    real = overlap_window.interiors_meeting

    def spy(ga: np.ndarray, gb: np.ndarray, **kw: object) -> tuple[np.ndarray, np.ndarray]:
        apart = kw.get("apart")
        calls.append((len(ga), None if apart is None else int((~apart).sum())))  # type: ignore[operator]
        return real(ga, gb, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(overlap_window, "interiors_meeting", spy)
    return calls


def test_a_tessellation_is_settled_by_hull_edges_in_the_stream_and_the_final_pass(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Convex neighbours sharing an edge need no relate, within a window and between batches far apart."""
    calls = spy_relate(monkeypatch)
    cells = [shapely.box(ORIGIN[0] + i * CELL, ORIGIN[1] + j * CELL, ORIGIN[0] + (i + 1) * CELL, ORIGIN[1] + (j + 1) * CELL)
             for i in range(10) for j in range(6)]
    rows = keyed(cells)
    rows = rows[:30] + rows[30:][::-1]  # the second half backwards: its neighbours in the first half are far in the file
    findings, reference, far = stream_and_check(engine, rows, batch=6, window=2)
    assert findings == [] and reference == [] and far > 0
    pairs = sum(n for n, _ in calls)
    related = sum(r for _, r in calls if r is not None)
    assert all(r is not None for _, r in calls)
    # 10 x 6 squares: 104 edge neighbours settled; the corner neighbours (90) share no edge and go to relate
    assert pairs == 104 + 90 and related == 90


def test_hulls_are_left_out_where_they_settle_nothing(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discs whose envelopes meet (no shared edges: buildings, not a tessellation): hulls are made for the first
    batch, then left out until a probe."""
    calls = spy_relate(monkeypatch)
    # along a diagonal, 0.9 cells apart in x and y: the envelopes meet, the discs (1.27 cells apart) do not
    discs = [shapely.Point(ORIGIN[0] + i * CELL * 0.9, ORIGIN[1] + i * CELL * 0.9).buffer(CELL * 0.5, 4) for i in range(60)]
    findings, _, _ = stream_and_check(engine, keyed(discs), batch=3, window=2)
    assert findings == []
    made = [r is not None for _, r in calls]
    assert made[0] and not any(made[1:15])
    assert all(r == n for n, r in calls if r is not None)  # none settled: all to relate


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=damaged_tessellations(), order_seed=st.integers(0, 1000), batch=st.integers(1, 9), window=st.integers(1, 3),
       chunk=st.sampled_from([3, 20_000]), sealed=st.booleans())
def test_random_layers_in_any_order_match_the_reference(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, case: tuple[list[shapely.Geometry], int],
    order_seed: int, batch: int, window: int, chunk: int, sealed: bool,
) -> None:
    monkeypatch.setattr(overlap, "CHUNK", chunk)  # the final pass reads its rows back in chunks of pairs
    geoms, _ = case
    rows = keyed(geoms)
    rows = [rows[i] for i in np.random.default_rng(order_seed).permutation(len(rows))]
    findings, reference, _ = stream_and_check(engine, rows, batch, window, sealed)
    assert findings is not None
    assert_same_as_reference(findings, rows, {k for k, _ in rows})
    assert as_set(findings) == as_set(reference)


@hsettings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 80), batch=st.integers(1, 9), window=st.integers(1, 4),
       spread=st.sampled_from([0.05, 1.0]), empty=st.floats(0, 0.3))
def test_far_pairs_are_every_envelope_pair_window_or_more_batches_apart(
    seed: int, n: int, batch: int, window: int, spread: float, empty: float
) -> None:
    """The final pass's pairs against brute force, on boxes in file order along a line (spread 0.05: a layer
    in spatial order) or anywhere, some geometries empty."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 1, n)) if spread < 1 else rng.uniform(0, 1, n)
    y = rng.uniform(0, spread, n)
    w = rng.uniform(0.001, 0.05, (n, 2))
    geoms = np.array([shapely.box(x[i], y[i], x[i] + w[i, 0], y[i] + w[i, 1]) for i in range(n)], dtype=object)
    geoms[rng.uniform(0, 1, n) < empty] = shapely.Polygon()
    decider = WindowOverlaps(TOLERANCE, window, limit=0)  # envelopes only: no GEOS work in the stream
    for start in range(0, n, batch):
        part = geoms[start : start + batch]
        decider.add(part[~shapely.is_empty(part)])
    usable = [i for i in range(n) if not geoms[i].is_empty]
    batch_of = {seq: i // batch for seq, i in enumerate(usable)}
    boxes = [geoms[i] for i in usable]
    expected = {(a, b) for a in range(len(usable)) for b in range(a + 1, len(usable))
                if batch_of[b] - batch_of[a] >= window and boxes[a].intersects(boxes[b])}
    a, b = decider.far_pairs()
    assert len(a) == len(set(zip(a.tolist(), b.tolist())))
    assert set(zip(a.tolist(), b.tolist())) == expected


def far_overlap_layer() -> list[dict]:
    """Six by six grid parcels, the last moved onto the first: the overlapping parcels are the file's first and last."""
    feats = grid_parcels(6)
    last = feats[-1]
    moved = shapely.affinity.translate(shapely.geometry.shape(feats[0]["geometry"]), 0.0005, 0)
    last["geometry"] = shapely.geometry.mapping(moved)
    last["properties"]["TBMJ"] = feats[0]["properties"]["TBMJ"]
    feats[-1] = last
    return feats


@pytest.mark.parametrize("process_from", [10**9, 0], ids=["thread", "process"])
def test_a_submission_rejects_an_overlap_between_the_first_and_last_batches(
    engine: sa.Engine, settings: Settings, tmp_path: Path, process_from: int
) -> None:
    """End to end with 5 features a batch, the window on a thread or in a process of its own."""
    feats = far_overlap_layer()
    before = table_counts(engine)
    small = settings.model_copy(update={"batch_size": 5, "overlap_process_min_features": process_from})
    result = run_submission(engine, small, write_geojson(tmp_path / "far.geojson", feats), SubmitOptions(dataset_id="dltb", unit="230102"))
    assert not result.accepted
    overlaps = [f for f in result.findings if f.rule == "topology.overlap"]
    first, last_key = feats[0]["properties"]["BSM"], feats[-1]["properties"]["BSM"]
    assert (overlaps[0].feature_key, overlaps[0].details["other_key"]) == (first, last_key)
    assert {f.details["other_key"] for f in overlaps} == {last_key}  # (and the first's neighbour it reaches into)
    expected = shapely.intersection(shapely.geometry.shape(feats[0]["geometry"]), shapely.geometry.shape(feats[-1]["geometry"]))
    assert overlaps[0].details["overlap_m2"] == pytest.approx(float(survey_areas(np.array([expected]))[0]), abs=0.01)
    assert result.timings["overlap_stream"]["cpu_s"] > 0
    assert table_counts(engine) == before


def test_a_large_layer_is_accepted_through_the_process(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(6)
    large = settings.model_copy(update={"batch_size": 5, "overlap_process_min_features": 36})
    result = run_submission(engine, large, write_geojson(tmp_path / "ok.geojson", feats), SubmitOptions(dataset_id="dltb", unit="230102"))
    assert result.accepted and result.version == 1
    assert result.timings["overlap_stream"]["cpu_s"] > 0.05  # the process's own CPU (its start included)


def test_when_the_process_fails_the_rule_is_decided_on_the_stored_rows(
    engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The process given bytes it cannot read (as a crash or the OOM killer would end it): logged, and the
    submission gets the same verdict from `find_overlaps`, its store unchanged."""
    monkeypatch.setattr(overlap_process, "joined_wkb", lambda wkbs: (np.array([3], dtype=np.int64), b"bad"))
    feats = far_overlap_layer()
    before = table_counts(engine)
    large = settings.model_copy(update={"batch_size": 5, "overlap_process_min_features": 0})
    with caplog.at_level("WARNING", logger="landcloud.ingest.overlap_stream"):
        result = run_submission(engine, large, write_geojson(tmp_path / "far.geojson", feats), SubmitOptions(dataset_id="dltb", unit="230102"))
    assert not result.accepted
    overlaps = [f for f in result.findings if f.rule == "topology.overlap"]
    assert (overlaps[0].feature_key, overlaps[0].details["other_key"]) == (feats[0]["properties"]["BSM"], feats[-1]["properties"]["BSM"])
    assert "overlap rule's process failed" in caplog.text and "overlap worker failed" in caplog.text
    assert table_counts(engine) == before
