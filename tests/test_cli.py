"""The `landcloud` command as an operator runs it (a real subprocess), on both stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from landcloud.access import audit
from landcloud.config import Settings

from builders import grid_parcels, write_geojson
from conftest import REFERENCE, table_counts

LANDCLOUD = [sys.executable, "-m", "landcloud.cli"]


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LANDCLOUD_DATA_DIR=str(settings.data_dir), LANDCLOUD_DATABASE_URL=settings.resolved_database_url, **extra)
    return env


def run(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LANDCLOUD, *args], env=env_for(settings, **extra), capture_output=True, text=True, timeout=300)


def test_init_is_idempotent(engine: sa.Engine, settings: Settings) -> None:
    first, second = run(settings, "init"), run(settings, "init")
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert "store ready" in second.stdout


def test_ingest_exit_codes(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    good = write_geojson(tmp_path / "good.geojson", grid_parcels(2))
    ok = run(settings, "ingest", str(good), "--dataset", "dltb", "--unit", "230102", "--report", str(tmp_path / "r.json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "已接受 accepted" in ok.stdout and "version 1" in ok.stdout
    assert '"status": "accepted"' in (tmp_path / "r.json").read_text()
    feats = grid_parcels(2)
    feats[0]["properties"]["DLBM"] = "9999"
    bad = run(settings, "ingest", str(write_geojson(tmp_path / "bad.geojson", feats)), "--dataset", "dltb", "--unit", "230102")
    assert bad.returncode == 1
    assert "code.dlbm_invalid" in bad.stdout and "9999" in bad.stdout
    usage = run(settings, "ingest", str(good), "--dataset", "dltb", "--unit", "230102", "--mode", "sideways")
    assert usage.returncode == 2 and "replace" in usage.stderr
    missing = run(settings, "ingest", str(tmp_path / "nope.shp"), "--dataset", "dltb")
    assert missing.returncode == 2 and "nope.shp" in missing.stderr
    other_unit = run(settings, "ingest", str(good), "--dataset", "dltb", "--unit", "230103")
    assert other_unit.returncode == 2 and "一数一源" in other_unit.stderr


def test_datasets_commands(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = grid_parcels(2)
    run(settings, "ingest", str(write_geojson(tmp_path / "a.geojson", feats)), "--dataset", "dltb", "--unit", "230102")
    feats[0]["properties"].update(DLBM="0702", DLMC="农村宅基地")
    run(settings, "ingest", str(write_geojson(tmp_path / "b.geojson", feats)), "--dataset", "dltb", "--unit", "230102")
    setm = run(settings, "datasets", "set", "dltb", "openness=open", "security_level=public", "title=哈尔滨地类图斑")
    assert setm.returncode == 0, setm.stderr
    listed = run(settings, "datasets", "list").stdout
    assert "dltb\t哈尔滨地类图斑\t230102\tv2\t4\topen/public" in listed
    assert run(settings, "datasets", "set", "dltb", "openness=perhaps").returncode == 2
    diff = run(settings, "datasets", "diff", "dltb", "1", "2").stdout
    assert "added 0, 删除 removed 0, 修改 changed 1" in diff and "230102000001 (DLBM, DLMC)" in diff
    assert "v2" in run(settings, "datasets", "versions", "dltb").stdout
    rb = run(settings, "datasets", "rollback", "dltb", "--to", "1")
    assert rb.returncode == 0 and "version 3 = version 1" in rb.stdout
    out = tmp_path / "v1.gpkg"
    exp = run(settings, "datasets", "export", "dltb", str(out), "--version", "1")
    assert exp.returncode == 0, exp.stderr
    import pyogrio

    frame = pyogrio.read_dataframe(out)
    assert len(frame) == 4 and set(frame["DLBM"]) == {f["properties"]["DLBM"] for f in grid_parcels(2)}
    assert frame.crs.to_epsg() == 4490
    # the download writers: any of their formats and CRSs, the Shapefile zipped and in GBK on request
    shp = tmp_path / "v2.zip"
    exp = run(settings, "datasets", "export", "dltb", str(shp), "--version", "2", "--crs", "EPSG:4530", "--encoding", "GBK")
    assert exp.returncode == 0, exp.stderr
    frame = pyogrio.read_dataframe(f"/vsizip/{shp}", encoding="GBK")
    assert frame.crs.to_epsg() == 4530 and "农村宅基地" in set(frame["DLMC"])
    assert 42_000_000 < frame.geometry.bounds.minx.min() < 43_000_000  # zone 42, prefixed eastings
    fgb = tmp_path / "v3.fgb"
    assert run(settings, "datasets", "export", "dltb", str(fgb)).returncode == 0
    assert len(pyogrio.read_dataframe(fgb)) == 4
    # refused with a reason, and nothing written
    bad = run(settings, "datasets", "export", "dltb", str(tmp_path / "x.shp"))
    assert bad.returncode == 2 and ".zip" in bad.stderr and not (tmp_path / "x.shp").exists()
    bad = run(settings, "datasets", "export", "dltb", str(tmp_path / "y.gpkg"), "--crs", "EPSG:9999")
    assert bad.returncode == 2 and not list(tmp_path.glob("*y.gpkg*"))
    exports = audit.query(engine, action="data.export", dataset_id="dltb")
    assert [(e["version"], e["detail"]["format"], e["detail"]["count"]) for e in exports[::-1]] == [(1, "gpkg", 4), (2, "shp", 4), (3, "fgb", 4)]


def test_units_load_and_transformations(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    loaded = run(settings, "units", "load", str(REFERENCE / "admin_heilongjiang.csv"))
    assert loaded.returncode == 0 and "135 units" in loaded.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,level,parent\n23,黑龙江,province,\n", encoding="utf-8")
    assert run(settings, "units", "load", str(bad)).returncode == 2
    add = run(settings, "transformations", "add", "hrb", "--datum", "xian80", "--region", "230100",
              "--params", "1,2,3,0.1,0.2,0.3,1.5")
    assert add.returncode == 0, add.stderr
    assert "hrb\txian80\t230100\thelmert7" in run(settings, "transformations", "list").stdout
    assert run(settings, "transformations", "add", "x", "--datum", "xian80", "--region", "23", "--params", "1,2").returncode == 2


def test_killed_load_leaves_the_store_as_it_was(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    first = write_geojson(tmp_path / "v1.geojson", grid_parcels(3))
    assert run(settings, "ingest", str(first), "--dataset", "dltb", "--unit", "230102").returncode == 0
    before = table_counts(engine)
    big = write_geojson(tmp_path / "big.geojson", grid_parcels(60, size=0.0005))  # 3,600 parcels
    proc = subprocess.Popen(
        [*LANDCLOUD, "ingest", str(big), "--dataset", "dltb", "--unit", "230102"],
        env=env_for(settings, LANDCLOUD_BATCH_SIZE="50"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    seen = 0
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        if "features read" in line:
            seen += 1
            if seen >= 3:  # well inside the load transaction
                break
    assert seen >= 3, "the load never reported progress"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert table_counts(engine) == before
    # and the store still takes the next submission
    again = run(settings, "ingest", str(big), "--dataset", "dltb", "--unit", "230102")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3600" in again.stdout
