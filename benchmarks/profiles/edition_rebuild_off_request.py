"""CPU per OGC one-feature edit: what the answer waited for before (edit + edition rebuild) and now (edit only)."""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from landcloud.access import gate
from landcloud.access.principal import system_principal
from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.publish import editions, editions_jobs, transactions
from landcloud.publish.ogc_crs import parse_crs_uri
from landcloud.store.engine import get_engine
from landcloud.store.migrate import upgrade

from builders import grid_parcels, write_geojson

tmp = Path(tempfile.mkdtemp())
(tmp / "data").mkdir()
settings = Settings(data_dir=tmp / "data")
engine = get_engine(settings)
upgrade(engine)
feats = grid_parcels(40)
path = write_geojson(tmp / "v1.geojson", feats)
assert run_submission(engine, settings, path, SubmitOptions(dataset_id="dltb", unit="230102", key="BSM")).accepted
me = system_principal("bench")
editions.set_profile(engine, me, "dltb", {"fields": ["BSM", "DLBM", "DLMC"], "class_field": "DLBM", "remove_classes": ["07"], "tolerance_m": 50})
edit_cpu, build_cpu = [], []
for k in range(5):
    ds, access = gate.dataset_for_read(engine, me, "dltb")
    f = {**feats[k], "properties": {**feats[k]["properties"], "DLMC": f"改{k}"}}
    t0 = time.process_time()
    transactions.apply(engine, settings, me, ds, access, "modify", [f], parse_crs_uri(None))
    t1 = time.process_time()
    assert editions_jobs.build_now(engine, settings, "dltb") is not None
    t2 = time.process_time()
    edit_cpu.append(t1 - t0)
    build_cpu.append(t2 - t1)


def med(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


print("1,600-parcel master, 5 one-feature edits (SQLite), CPU seconds (time.process_time), median:")
print(f"  before: edit + synchronous edition rebuild = {med(edit_cpu) + med(build_cpu):.3f} s per answer")
print(f"  after:  edit only (rebuild after the response) = {med(edit_cpu):.3f} s per answer; rebuild {med(build_cpu):.3f} s in the background")
print(f"  ratio before/after: {(med(edit_cpu) + med(build_cpu)) / med(edit_cpu):.1f}x")
