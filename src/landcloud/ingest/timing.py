"""Where a submission spends its time, stage by stage (read, decode, CRS, rules, writes, merge, overlap …).

The benchmark (`benchmarks/store.py ingest`, its "stages") reads it to see which stage to work on next; the
stages of the streamed part (read → stage) interleave per batch, so each stage accumulates over
all batches. Wall time and CPU time are both kept: on PostGIS the difference is mostly the
server's work (and waiting on a busy machine). The CPU is the calling thread's (reading runs on a
thread of its own, beside the checks: `ingest.ahead`), or the whole process's for a stage that
spreads its work over threads itself (`all_threads`, the overlap check).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StageClock:
    """Accumulated wall and CPU seconds per named stage, in the order stages first ran."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, all_threads: bool = False) -> Iterator[None]:
        cpu = time.process_time if all_threads else time.thread_time
        w0, c0 = time.perf_counter(), cpu()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w0
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu() - c0

    def add(self, name: str, wall_s: float, cpu_s: float) -> None:
        """Time measured elsewhere (a worker thread's own clock) under a stage name."""
        self.wall[name] = self.wall.get(name, 0.0) + wall_s
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu_s

    def as_dict(self) -> dict[str, dict[str, float]]:
        """{stage: {"wall_s": …, "cpu_s": …}}, rounded to milliseconds."""
        return {k: {"wall_s": round(self.wall[k], 3), "cpu_s": round(self.cpu[k], 3)} for k in self.wall}
