"""HTTP submission (汇交): upload a file with the same options as `landcloud ingest`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, File, Form, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from landcloud.access import audit, gate
from landcloud.deps import EngineDep, PrincipalDep, SettingsDep
from landcloud.ingest import submissions
from landcloud.ingest.pipeline import SubmitOptions, validate_options
from landcloud.ingest.report_html import render_report
from landcloud.messages import LandcloudError, NotFound

router = APIRouter(prefix="/api/submissions", tags=["submissions"])
SAFE_NAME = "".join(chr(c) for c in range(128) if chr(c).isalnum()) + "._-"


class PayloadTooLarge(LandcloudError):
    status = 413


def _safe_filename(name: str | None) -> str:
    base = Path(name or "upload").name
    cleaned = "".join(ch if ch in SAFE_NAME or ord(ch) > 127 else "_" for ch in base).lstrip(".")
    return cleaned or "upload"


@router.post("", status_code=202)
def create_submission(
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    background: BackgroundTasks,
    file: Annotated[UploadFile, File(description="Shapefile (.zip), GeoPackage, GeoJSON, FlatGeobuf, KML, CSV or GeoParquet")],
    dataset: Annotated[str, Form()],
    unit: Annotated[str | None, Form()] = None,
    layer: Annotated[str | None, Form()] = None,
    crs: Annotated[str | None, Form()] = None,
    encoding: Annotated[str | None, Form()] = None,
    mode: Annotated[Literal["replace", "incremental"], Form()] = "replace",
    key: Annotated[str | None, Form()] = None,
    standard_schema: Annotated[str | None, Form(alias="schema", description="Standard schema, e.g. DLTB")] = None,
    repair: Annotated[bool, Form()] = False,
    title: Annotated[str | None, Form()] = None,
    dlbm_system: Annotated[Literal["any", "gbt21010", "sandiao"], Form(description="Land-use classification for DLBM")] = "any",
    overlap_check: Annotated[
        bool | None,
        Form(description="Check that polygons do not overlap (default: the dataset's setting; always on for a standard schema)"),
    ] = None,
) -> JSONResponse:
    opts = SubmitOptions(
        dataset_id=dataset, unit=gate.submitting_unit(principal, unit), layer=layer or None, crs=crs or None, encoding=encoding or None,
        mode=mode, key=key or None, schema=standard_schema or None, repair=repair, title=title or None, dlbm_system=dlbm_system,
        overlap_check=overlap_check,
    )
    validate_options(opts)
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="sub-", dir=settings.uploads_dir))
    target = folder / _safe_filename(file.filename)
    limit = settings.max_upload_mb * 1024 * 1024
    size = 0
    with target.open("wb") as out:
        while chunk := file.file.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                out.close()
                shutil.rmtree(folder, ignore_errors=True)
                raise PayloadTooLarge(
                    "submission.too_large",
                    f"文件超过 {settings.max_upload_mb} MB 的上限",
                    f"the file exceeds the {settings.max_upload_mb} MB limit",
                )
            out.write(chunk)
    sid = submissions.create(engine, opts, target.name)
    audit.record(engine, principal, "submission.create", dataset_id=dataset, detail={"submission": sid, "file": target.name, "size": size})
    background.add_task(submissions.process, engine, settings, sid, target)
    return JSONResponse(
        status_code=202,
        content={"id": sid, "status": "pending", "links": {"self": f"/api/submissions/{sid}", "report": f"/api/submissions/{sid}/report.html"}},
    )


def _visible_submission(engine: Any, principal: Any, submission_id: str) -> dict[str, Any]:
    """A submission is seen by its unit's submitters, reviewers and data administrators only."""
    gate.require_signed_in(principal)
    sub = submissions.get(engine, submission_id)
    if not gate.may_see_submissions_of(principal, sub["unit"]):
        raise NotFound("submission.not_found", f"汇交 {submission_id} 不存在", f"submission {submission_id} does not exist")
    return sub


@router.get("/{submission_id}")
def get_submission(submission_id: str, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    return _visible_submission(engine, principal, submission_id)


@router.get("/{submission_id}/report.html", response_class=HTMLResponse)
def submission_report_html(submission_id: str, engine: EngineDep, principal: PrincipalDep) -> HTMLResponse:
    sub = _visible_submission(engine, principal, submission_id)
    return HTMLResponse(render_report(sub.get("report") or {"status": sub["status"], "summary": {}, "findings": []}))
