"""CPU per request of one landcloud server, and where it goes (py-spy), for a fixed request set.

    python benchmarks/reqprofile.py URL DATADIR TOKEN {items-dltb,items-osm,here,tile-empty} [--n 300] [--conc 1] [--spy OUT.txt] [--full]

Starts `uvicorn landcloud.app:create_app` on URL (a store built by `run.py --keep` or by
`store.py`), warms it up, then replays N requests with `run.py`'s load generator and reads the
server's CPU time from /proc/<pid>/stat: on a shared machine CPU per request is the figure to
compare, not latency. With `--spy`, py-spy samples the server meanwhile and the raw stacks are
summed into the cumulative and own shares of the busy samples (idle event-loop waits left out).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PY, bbox_side, landcloud_server, run_load, sample_points  # noqa: E402

BENCH = Path(__file__).resolve().parent
IDLE = ("select (selectors.py", "Runner.run (asyncio", "Condition.wait (threading.py", "Queue.get (queue.py")  # idle leaves
PLUMBING = ("threading.py", "anyio/", "uvicorn/main.py", "click/", "<frozen runpy>", "asyncio/runners.py", "uvicorn/__main__")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paths_for(kind: str, n: int, full: bool = False) -> list[str]:
    """The same requests as run.py's smoke profile (`full`: its full profile): bbox pages of 100 of a
    layer, points for /api/here, or distinct dltb tiles far outside the data (`tile-empty`: empty without
    a query, each one cold — what is left is the route's fixed cost)."""
    data = BENCH / ".data"
    if kind == "tile-empty":
        return [f"/ogc/collections/bench-dltb/tiles/WebMercatorQuad/14/{1000 + i // 100}/{1000 + i % 100}" for i in range(n)]
    if kind == "here":
        pts = sample_points(Path(os.environ.get("HERE_LAYER", "/tmp/reqpath/here_layer.gpkg")), n, seed=13)
        return [f"/api/here?lon={x:.6f}&lat={y:.6f}" for x, y in pts]
    key = kind.split("-", 1)[1]
    if full:
        path = data / ("dltb_100000_hlj_s1.gpkg" if key == "dltb" else "harbin_osm_valid.gpkg")
        side = bbox_side(path)
    else:
        path = data / ("dltb_2000_2301_s1.gpkg" if key == "dltb" else "harbin_osm_valid_126.60_45.74_126.64_45.77.gpkg")
        side = {"dltb": 0.6677, "osm": 0.0076}[key]
    pts = sample_points(path, n, seed=11)
    return [
        f"/ogc/collections/bench-{key}/items?bbox={x - side / 2:.6f},{y - side / 2:.6f},{x + side / 2:.6f},{y + side / 2:.6f}&limit=100"
        for x, y in pts
    ]


def summarise(raw: Path, top: int = 25) -> str:
    """Cumulative and own shares of the busy samples of a py-spy `--format raw` file."""
    cum: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.split(":")[0] + ")" if ":" in f else f for f in stack.split(";")]
        if not frames or any(frames[-1].startswith(i) for i in IDLE):
            continue
        n = int(count)
        total += n
        for f in set(frames):
            cum[f] += n
        own[frames[-1]] += n
    lines = [f"busy samples: {total}", "cumulative:"]
    lines += [f"{100 * c / total:6.1f}%  {f}" for f, c in cum.most_common(top * 2) if not any(p in f for p in PLUMBING)][:top]
    lines += ["own:"] + [f"{100 * c / total:6.1f}%  {f}" for f, c in own.most_common(top // 2)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("datadir")
    ap.add_argument("token")
    ap.add_argument("kind", choices=["items-dltb", "items-osm", "here", "tile-empty"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--conc", type=int, default=1)
    ap.add_argument("--spy", help="write the py-spy summary here (the raw stacks beside it, .raw)")
    ap.add_argument("--full", action="store_true", help="the full profile's data files and bbox sides (a store built from them)")
    a = ap.parse_args()
    paths = paths_for(a.kind, a.n, a.full)
    with tempfile.TemporaryDirectory() as tmp:
        server = landcloud_server("landcloud", a.url, Path(a.datadir), Path(tmp))
        try:
            server.wait()
            warm = paths_for(a.kind, a.n + 30, a.full)[a.n:] if a.kind == "tile-empty" else paths[:30]  # tiles: others, still cold
            run_load(server.port, warm, 1, 30, a.token)  # warm-up
            spy = None
            if a.spy:
                raw = Path(a.spy).with_suffix(".raw")
                spy = subprocess.Popen(
                    [
                        str(Path(PY).parent / "py-spy"),
                        "record",
                        "-r",
                        "300",
                        "--format",
                        "raw",
                        "-o",
                        str(raw),
                        "--pid",
                        str(server.proc.pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
            c0 = cpu_seconds(server.proc.pid)
            r = run_load(server.port, paths, a.conc, 300, a.token)
            cpu = cpu_seconds(server.proc.pid) - c0
            n = len(paths) - sum(r["errors"].values())
            head = (
                f"{a.kind} conc={a.conc} {a.url.split(':')[0]}: {n} requests, errors {r['errors']}, "
                f"CPU {1000 * cpu / max(n, 1):.2f} ms/request, median {r['median_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                f"{r['throughput_rps']:.1f} req/s"
            )
            print(head)
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
                text = head + "\n" + summarise(raw)
                Path(a.spy).write_text(text + "\n")
                print(text)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
