"""Time `store/tilegeoms.build` of a whole dataset after `drop`, some rounds: profiles/tiles-copies-parallel.txt.

    python benchmarks/profiles/tiles_copies_parallel.py URL DATASET [ROUNDS [VERSION]]

Run it with PYTHONPATH pointing at the code to measure (another worktree's src for "before");
LANDCLOUD_GEOS_THREADS=1 gives this code's one-at-a-time build. VERSION: the rows of that version only (what a
submission builds); default every row (what `landcloud tiles build` does). Prints one JSON line per round.
"""

from __future__ import annotations

import json
import os
import sys
import time

from landcloud.store import tilegeoms
from landcloud.store.db import create_engine


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (/proc/stat): beside the process's own CPU, how much else ran."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def main(url: str, dataset: str, rounds: int = 3, version: int | None = None) -> None:
    engine = create_engine(url)
    for _ in range(rounds):
        dropped = tilegeoms.drop(engine, dataset)
        cpu, busy = time.process_time(), machine_busy()
        built = tilegeoms.build(engine, dataset, version)
        print(json.dumps({"dataset": dataset, "version": version, "dropped": dropped, "copies": built.copies, "wall_s": round(built.seconds, 3),
                          "cpu_s": round(time.process_time() - cpu, 3), "machine_busy_s": round(machine_busy() - busy, 2)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
