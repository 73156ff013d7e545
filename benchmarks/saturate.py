"""Cached tiles a second on one core, measured as such: the server confined to one CPU, wrk on the others, as many
requests in flight as keep that core busy.

The rows "8 clients" read the server's CPU a tile off a light load (eight Python clients on the same two cores, the
clients the bottleneck: the server often idles between requests) and divide a core by it. At that load every request
pays its own wake-ups (epoll returning for one request, the answer's send waking one client), and on PostgreSQL a
signed-in tile's access-generation read serves ~1.4 tiles: what a busy core shares between many requests is charged to
each. A server asked for "tiles a second on one core" is asked what the core gives when kept busy; this measures that
directly (benchmarks/profiles/tiles-saturated.txt), on every cached row and on the floor alike.

wrk (Debian's package, `scripts/system-deps.sh`) runs one thread with `CONNECTIONS` keep-alive connections, walking
the same tile paths in turn, with the same credential. The store's own processes (the benchmark's PostgreSQL cluster)
are moved off the server's CPU for the run: they are the store, not the server, as in every other server-CPU figure
here. Without wrk or a second CPU the rows are left out (and the log says why).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

CONNECTIONS = 64  # requests in flight: a dozen browsers' six connections each; enough to keep one core busy

_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write("SATURATED " .. string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"p50_us": %d, "p95_us": %d, "p99_us": %d, "bytes": %d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.bytes) .. "\\n")
end
"""


def wrk_script(paths: list[str], token: str | None) -> str:
    """wrk's Lua: the paths in turn (one thread: one walk shared by its connections), the credential, and a JSON line
    with what the run counted."""
    lines = ["paths = {" + ",".join(json.dumps(p) for p in paths) + "}", "local i = 0",
             'wrk.headers["Accept"] = "application/vnd.mapbox-vector-tile, */*"']
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    lines += ["request = function()", "  i = i % #paths + 1", '  return wrk.format("GET", paths[i])', "end"]
    return "\n".join(lines) + _REPORT


def pin(pid: int, cpus: set[int]) -> bool:
    """Every thread of `pid` onto `cpus` (threads made later take their maker's); False when the process is gone."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except ProcessLookupError:
                pass
    except FileNotFoundError:
        return False
    return True


def cluster_pids(datadir: Path) -> list[int]:
    """The processes of the PostgreSQL cluster of data directory `datadir` (its postmaster and every child), none when
    not running."""
    try:
        master = int((datadir / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return []
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            if ppid == master:
                pids.append(int(entry))
    return pids


def why_not() -> str | None:
    """Why the one-core runs cannot be made here (None: they can)."""
    if shutil.which("wrk") is None:
        return "wrk is not installed (Debian package wrk; make bench installs it when running as root)"
    if len(os.sched_getaffinity(0)) < 2:
        return "one CPU only: the server's core and wrk's would be the same"
    return None


def one_core(pid: int, port: int, paths: list[str], token: str | None, seconds: float, work: Path,
             store_pids: list[int], cpu_seconds: Callable[[int], float]) -> dict:
    """The server `pid` (listening on `port`) on one CPU, loaded by wrk on the others for `seconds`: a row with the
    tiles it answered a second, the latency percentiles wrk saw, the errors, and how much of its core it used."""
    cpus = sorted(os.sched_getaffinity(0))
    core, others = {cpus[0]}, set(cpus[1:])
    script = work / f"wrk-{port}.lua"
    script.write_text(wrk_script(paths, token))
    pin(pid, core)
    moved = [p for p in store_pids if pin(p, others)]
    try:
        cpu0 = cpu_seconds(pid)
        run = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                              "-s", str(script), f"http://127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=seconds + 60,
                             preexec_fn=lambda: os.sched_setaffinity(0, others))
        cpu = cpu_seconds(pid) - cpu0
    finally:
        pin(pid, set(cpus))
        for p in moved:
            pin(p, set(cpus))
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("SATURATED ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
    got = json.loads(line.removeprefix("SATURATED "))
    wall = got["duration_us"] / 1e6
    errors = {k: got[k] for k in ("connect", "read", "write", "status", "timeout") if got[k]}
    answered = got["requests"] - got["status"]
    per_tile = cpu * 1000 / got["requests"] if got["requests"] else None
    return {
        "n": answered, "concurrency": CONNECTIONS, "planned": len(paths), "errors": errors, "wall_s": wall,
        "throughput_rps": answered / wall if wall else None, "bytes": got["bytes"],
        "median_ms": got["p50_us"] / 1000, "p95_ms": got["p95_us"] / 1000, "p99_ms": got["p99_us"] / 1000,
        "one_core": True, "one_core_cpu_ms_per_tile": per_tile, "server_core_used": cpu / wall if wall else None,
        "extra": f"on one core ({cpu / wall:.2f} of it used): {answered / wall:,.0f} tiles/s"
                 + (f", {per_tile:.3f} ms server CPU/tile" if per_tile else ""),
    }


def against_floor(rows: list[dict], floor: dict) -> None:
    """Each one-core row's tiles a second said as a fraction of the floor's, measured the same way in the same run."""
    base = floor.get("throughput_rps")
    if not base:
        return
    for r in rows:
        if r.get("one_core") and r is not floor and r.get("throughput_rps"):
            r["one_core_vs_floor"] = r["throughput_rps"] / base
            r["extra"] = f"{r.get('extra', '')}; {r['throughput_rps'] / base:.2f}× the floor's tiles/s"
