"""Submissions received over HTTP: recorded first, then checked and loaded in the background.

The row in `submissions` is the only state: any server process can answer for it, and a
submission whose process died while running is marked failed at the next start (its load
transaction never committed, so the store is unchanged).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from landcloud.config import Settings
from landcloud.ingest.pipeline import SubmitOptions, run_submission
from landcloud.ingest.tables import submissions
from landcloud.messages import LandcloudError, NotFound

log = logging.getLogger(__name__)


def create(engine: Engine, opts: SubmitOptions, filename: str) -> str:
    sid = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            submissions.insert().values(
                id=sid,
                dataset_id=opts.dataset_id,
                unit=opts.unit,
                status="pending",
                filename=filename,
                options=opts.to_dict(),
                created_at=datetime.now(UTC),
            )
        )
    return sid


def _finish(engine: Engine, sid: str, status: str, report: dict[str, Any] | None, version: int | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            submissions.update()
            .where(submissions.c.id == sid)
            .values(status=status, report=report, version=version, finished_at=datetime.now(UTC))
        )


def process(engine: Engine, settings: Settings, sid: str, path: Path) -> None:
    """Run one stored submission to its end; every outcome is written to its row."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(submissions).where(submissions.c.id == sid)).one()
        conn.execute(submissions.update().where(submissions.c.id == sid).values(status="running"))
    opts = SubmitOptions(**row.options)
    try:
        result = run_submission(engine, settings, path, opts, submission_id=sid, copies_after=True)
        _finish(engine, sid, "accepted" if result.accepted else "rejected", result.report, result.version)
        if result.after is not None:  # the version's tile copies once its row says accepted (ingest/after_acceptance.py)
            result.after.run()
        if result.accepted:  # already a background job: the edition is rebuilt after the submission is recorded
            from landcloud.publish import editions_jobs

            editions_jobs.build_now(engine, settings, result.dataset_id)
    except LandcloudError as exc:
        _finish(engine, sid, "rejected", {"status": "rejected", "error": exc.to_dict(), "findings": [], "summary": {"errors": 1, "warnings": 0}}, None)
    except Exception as exc:  # noqa: BLE001 - the row must say what happened, whatever it was
        log.exception("submission %s failed", sid)
        _finish(engine, sid, "failed", {"status": "failed", "error": {"error": "internal", "message_en": type(exc).__name__}}, None)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def get(engine: Engine, sid: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(submissions).where(submissions.c.id == sid)).first()
    if row is None:
        raise NotFound("submission.not_found", f"汇交 {sid} 不存在", f"submission {sid} does not exist")
    data = dict(row._mapping)
    for key in ("created_at", "finished_at"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


def mark_interrupted(engine: Engine) -> int:
    """At start-up: submissions left pending/running by a dead process are failed, not lost silently."""
    with engine.begin() as conn:
        return conn.execute(
            submissions.update()
            .where(submissions.c.status.in_(("pending", "running")))
            .values(
                status="failed",
                finished_at=datetime.now(UTC),
                report={"status": "failed", "error": {"error": "submission.interrupted", "message_zh": "服务重启，汇交被中断，数据未改变，请重新提交", "message_en": "the server restarted and interrupted this submission; nothing was changed; submit again"}},
            )
        ).rowcount
