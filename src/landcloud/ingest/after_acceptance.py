"""What follows an accepted version's commit that its acceptance need not wait for: its low-zoom tile copies, and (SQLite)
the commit's WAL checkpoint, run beside them.

Why apart from the submission: once the version is committed it is whole, checked and served (its tiles simplify on the
fly until its copies exist, `store.tilegeoms`), and the copies only make low-zoom tiles cheaper; they took 6-9 s of a
1M-parcel submission on SQLite (7-8 s on PostGIS), the time its submitter waited for an answer that was already known.
An entry point that says "accepted" (the HTTP submission's row, `landcloud ingest`'s summary) asks the pipeline for
the version without them (`run_submission(..., copies_after=True)`), says so, then runs `AfterAcceptance.run`, as it
rebuilds the dataset's edition after it (`publish.editions_jobs`). Other writers leave `copies_after` off and get the
version with its copies, as before. If `run` is never called the version stands; its copies are made by `landcloud
tiles build`, and the checkpoint thread ends of itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from landcloud.ingest.timing import StageClock
from landcloud.store import tilegeoms


@dataclass
class AfterAcceptance:
    engine: Engine
    dataset_id: str
    version: int
    streamed: tilegeoms.StreamedRows | None  # which rows need copies, noted as a direct load wrote them
    checkpoint: threading.Thread | None  # SQLite: the commit's WAL checkpoint (`store.db.commit_checkpoint_beside`)
    clock: StageClock = field(default_factory=StageClock)
    built: tilegeoms.Built | None = None  # what the copies' build made (None: not run, or failed and logged)
    done: bool = False

    def run(self) -> dict[str, dict[str, float]]:
        """Build the version's tile copies (a failure logged, never raised), then wait for the checkpoint; the time
        of each ({stage: {"wall_s", "cpu_s"}}). Once: a second call does nothing and gives the same times."""
        if self.done:
            return self.clock.as_dict()
        self.done = True
        try:
            with self.clock.stage("tile_copies"):  # committed: a failure leaves tiles simplifying on the fly
                self.built = tilegeoms.build_quietly(self.engine, self.dataset_id, self.version, self.streamed)
        finally:
            if self.checkpoint is not None:
                with self.clock.stage("checkpoint"):
                    self.checkpoint.join()
        self.streamed = None  # (its noted places: ~8 bytes a row)
        return self.clock.as_dict()
