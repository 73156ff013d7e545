"""The `landcloud` command: initialise, serve, load reference and demo data, submit, manage datasets.

Exit codes follow one rule across commands: 0 done/accepted, 1 rejected by the rules,
2 a usage error (bad option, unknown dataset or unit). Messages a person reads are bilingual.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from landcloud.config import get_settings
from landcloud.messages import LandcloudError

if TYPE_CHECKING:  # (the command's modules load when it runs: `landcloud --help` stays quick)
    from landcloud.ingest.after_acceptance import AfterAcceptance

app = typer.Typer(help="landcloud 国土资源云 — the land-resources cloud", no_args_is_help=True, add_completion=False)
datasets_app = typer.Typer(help="Datasets: list, show, set metadata, versions, diff, rollback, export", no_args_is_help=True)
units_app = typer.Typer(help="Units: load the administrative division list and unit boundaries", no_args_is_help=True)
tr_app = typer.Typer(help="Xi'an-80 / Beijing-54 → CGCS2000 transformation sets", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(units_app, name="units")
app.add_typer(tr_app, name="transformations")


def _mount_access_commands() -> None:
    from landcloud.access.audit_cli import audit_app
    from landcloud.access.users_cli import users_app
    from landcloud.publish.editions_cli import editions_app, trace_command
    from landcloud.publish.tiles_cli import export_tiles, tiles_app

    app.add_typer(users_app, name="users", help="Users: add, list, roles, TOTP, disable")
    app.add_typer(audit_app, name="audit", help="The audit chain: verify, export")
    app.command("export-tiles", help="Export a public edition's published version to PMTiles for static hosting (--master: a master, internal hosting only)")(export_tiles)
    app.add_typer(tiles_app, name="tiles", help="Vector tiles: export to PMTiles, build the pre-generalised low-zoom copies")
    app.add_typer(editions_app, name="editions", help="Public editions (公开版): release profile, build, approve, list")
    app.command("trace", help="Name the recipient of a leaked, fingerprinted copy (SHP/GeoJSON/GPKG)")(trace_command)


def _engine() -> Any:
    from landcloud.store.engine import get_engine

    return get_engine(get_settings())


def _fail(exc: LandcloudError, code: int = 2) -> None:
    typer.echo(f"错误 error: {exc.message.zh}\n{exc.message.en}", err=True)
    if exc.details:
        typer.echo(json.dumps(exc.details, ensure_ascii=False, default=str), err=True)
    raise typer.Exit(code)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@app.command()
def init() -> None:
    """Create or upgrade the store (migrations) — safe to run again."""
    from landcloud.access.secrets import secret_key
    from landcloud.store.db import backend_of
    from landcloud.store.migrate import upgrade

    settings = get_settings()
    engine = _engine()
    upgrade(engine)
    secret_key(settings)
    typer.echo(f"store ready / 存储已就绪: {backend_of(engine)} ({engine.url.render_as_string(hide_password=True)})")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the platform over HTTP."""
    import uvicorn

    from landcloud.store.migrate import upgrade

    upgrade(_engine())
    from landcloud.web import http_protocol

    uvicorn.run("landcloud.app:create_app", factory=True, host=host, port=port, workers=workers, http=http_protocol.NAME)


@app.command()
def demo(force: bool = typer.Option(False, help="Load again even if demo datasets exist")) -> None:
    """Load the demo data (real public boundaries; labelled synthetic parcels)."""
    from landcloud.demo.load import load_demo
    from landcloud.store.migrate import upgrade

    engine = _engine()
    upgrade(engine)
    try:
        for line in load_demo(engine, get_settings(), force=force):
            typer.echo(line)
    except LandcloudError as exc:
        _fail(exc, 1)


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="File, folder or .zip to submit")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset id (slug)")],
    layer: Annotated[Optional[str], typer.Option(help="Layer of a multi-layer source")] = None,
    crs: Annotated[Optional[str], typer.Option(help="Source CRS when the file has none, e.g. EPSG:4530 or GCJ02")] = None,
    encoding: Annotated[Optional[str], typer.Option(help="Attribute encoding, e.g. GBK")] = None,
    mode: Annotated[str, typer.Option(help="replace | incremental")] = "replace",
    key: Annotated[Optional[str], typer.Option(help="Stable feature key field, e.g. BSM")] = None,
    unit: Annotated[Optional[str], typer.Option(help="Submitting unit (administrative code)")] = None,
    schema: Annotated[Optional[str], typer.Option(help="Standard schema, e.g. DLTB")] = None,
    repair: Annotated[bool, typer.Option(help="Repair invalid polygons (reported as warnings)")] = False,
    title: Annotated[Optional[str], typer.Option(help="Title of a new dataset")] = None,
    dlbm_system: Annotated[str, typer.Option(help="DLBM classification: any | gbt21010 | sandiao")] = "any",
    overlap_check: Annotated[
        Optional[bool],
        typer.Option(
            "--overlap-check/--no-overlap-check",
            help="Check that polygons do not overlap (default: the dataset's setting, on for a new one; "
            "never off for a standard schema; off on an existing dataset only by its `overlap_check` setting)",
        ),
    ] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the full JSON report here")] = None,
    report_html: Annotated[Optional[Path], typer.Option("--report-html", help="Write the HTML report here")] = None,
) -> None:
    """Submit a file (汇交): exit 0 accepted, 1 rejected, 2 usage error."""
    from landcloud.ingest.pipeline import SubmitOptions, run_submission, stderr_progress
    from landcloud.ingest.report_html import render_report
    from landcloud.store.migrate import upgrade

    if not path.exists():
        _fail(LandcloudError("source.not_found", f"找不到文件 {path}", f"no such file: {path}"))
    engine = _engine()
    upgrade(engine)
    opts = SubmitOptions(
        dataset_id=dataset, unit=unit, layer=layer, crs=crs, encoding=encoding, mode=mode,  # type: ignore[arg-type]
        key=key, schema=schema, repair=repair, title=title, dlbm_system=dlbm_system,  # type: ignore[arg-type]
        overlap_check=overlap_check,
    )
    try:
        result = run_submission(engine, get_settings(), path, opts, progress=stderr_progress, copies_after=True)
    except LandcloudError as exc:
        _fail(exc, 2)
        return
    if report:
        report.write_text(json.dumps(result.report, ensure_ascii=False, indent=2, default=str))
    if report_html:
        report_html.write_text(render_report(result.report))
    _print_summary(result.report)
    if result.after is not None:  # said accepted first: the low-zoom tile copies follow (ingest/after_acceptance.py)
        _build_copies(result.after)
    if result.accepted:
        _rebuild_edition(engine, dataset)
    raise typer.Exit(0 if result.accepted else 1)


def _build_copies(after: AfterAcceptance) -> None:
    """The accepted version's tile copies, said as they start and end (a 1M-parcel layer: seconds)."""
    typer.echo("building the low-zoom tile copies / 正在生成低层级瓦片概化副本 …")
    after.run()
    if after.built is None:
        typer.echo(
            f"tile copies not built (logged); tiles simplify on the fly until `landcloud tiles build {after.dataset_id}` / "
            f"瓦片概化副本未生成（已记录日志），瓦片暂时实时概化，可运行 `landcloud tiles build {after.dataset_id}` 补建",
            err=True,
        )
        return
    typer.echo(f"tile copies ready / 瓦片概化副本已生成: {after.built.copies}, {after.built.seconds:.1f} s")


def _rebuild_edition(engine: Any, dataset_id: str) -> None:
    """A new master version in a batch command: its edition is rebuilt right after (pending approval), and said so."""
    from landcloud.publish import editions_jobs

    edition = editions_jobs.build_now(engine, get_settings(), dataset_id)
    if edition is not None:
        typer.echo(f"edition {edition['id']} built, pending approval / 新公开版待批准")
        return
    built = editions_jobs.state(engine, dataset_id)
    if built is not None and built["status"] == "failed":
        typer.echo(f"edition build failed / 公开版生成失败: {built['error']['message_zh']} / {built['error']['message_en']}", err=True)


def _print_summary(report: dict[str, Any]) -> None:
    s = report.get("summary", {})
    src = report.get("source", {})
    if report["status"] == "accepted":
        typer.echo(
            f"已接受 accepted: {report['dataset_id']} 版本 version {s.get('version')} — {s.get('feature_count')} 个要素 features "
            f"(新增 added {s.get('added')}, 删除 removed {s.get('removed')}, 修改 changed {s.get('changed')})"
        )
    else:
        typer.echo(f"已拒绝 rejected: {report['dataset_id']} — 错误 errors {s.get('errors')}, 警告 warnings {s.get('warnings')}")
    if src.get("encoding"):
        typer.echo(f"编码 encoding: {src['encoding']['encoding']} — {src['encoding']['message_zh']} / {src['encoding']['message_en']}")
    if src.get("crs"):
        typer.echo(f"坐标系 CRS: {src['crs']['message_zh']} / {src['crs']['message_en']}")
    for name, n in s.get("by_rule", {}).items():
        typer.echo(f"  {name}: {n}")
    for f in report.get("findings", [])[:20]:
        where = f.get("feature_key") or (f"#{f['feature_index']}" if f.get("feature_index") is not None else "")
        typer.echo(f"  [{f['severity']}] {f['rule']} {where}: {f['message_zh']} / {f['message_en']}")
    more = len(report.get("findings", [])) - 20
    if more > 0:
        typer.echo(f"  … 另有 {more} 条 / {more} more (see --report)")


# -- datasets -------------------------------------------------------------------------------
@datasets_app.command("list")
def datasets_list() -> None:
    """All datasets with owner, version and feature count."""
    from landcloud.catalog.datasets import list_datasets

    for ds in list_datasets(_engine()):
        typer.echo(f"{ds.id}\t{ds.title}\t{ds.owner_unit}\tv{ds.current_version}\t{ds.feature_count}\t{ds.openness}/{ds.security_level}")


@datasets_app.command("show")
def datasets_show(dataset_id: str) -> None:
    from landcloud.catalog.datasets import require_dataset

    try:
        _echo_json(require_dataset(_engine(), dataset_id).to_dict())
    except LandcloudError as exc:
        _fail(exc)


@datasets_app.command("set")
def datasets_set(dataset_id: str, assignments: Annotated[list[str], typer.Argument(help="key=value …")]) -> None:
    """Edit metadata, e.g. `openness=open security_level=public title=…`."""
    from landcloud.access import audit
    from landcloud.access.principal import system_principal
    from landcloud.catalog.datasets import update_metadata

    changes: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            _fail(LandcloudError("cli.bad_assignment", f"“{item}”应写成 key=value", f"'{item}' must be key=value"))
        key, value = item.split("=", 1)
        changes[key.strip()] = value
    try:
        ds = update_metadata(
            _engine(), dataset_id, changes,
            lambda conn: audit.record(_engine(), system_principal(), "dataset.update", dataset_id=dataset_id,
                                      detail={"changes": changes}, conn=conn),
        )
    except LandcloudError as exc:
        _fail(exc)
        return
    typer.echo(f"updated / 已更新 {ds.id}: " + ", ".join(f"{k}={getattr(ds, k)}" for k in changes))


@datasets_app.command("versions")
def datasets_versions(dataset_id: str) -> None:
    from landcloud.catalog.datasets import list_versions

    try:
        for v in list_versions(_engine(), dataset_id):
            typer.echo(
                f"v{v.version}\t{v.created_at:%Y-%m-%d %H:%M}\t{v.mode}\t{v.feature_count}\t+{v.added} -{v.removed} ~{v.changed}\t{v.note}"
            )
    except LandcloudError as exc:
        _fail(exc)


@datasets_app.command("diff")
def datasets_diff(dataset_id: str, a: int, b: int, limit: int = 50) -> None:
    """Added, removed and changed features between two versions."""
    from landcloud.catalog import history
    from landcloud.catalog.datasets import require_dataset

    engine = _engine()
    try:
        ds = require_dataset(engine, dataset_id)
        counts = history.diff_counts(engine, ds, a, b)
        typer.echo(f"v{a} → v{b}: 新增 added {counts['added']}, 删除 removed {counts['removed']}, 修改 changed {counts['changed']}")
        for e in history.iter_diff(engine, ds, a, b, limit=limit):
            extra = f" ({', '.join(history.changed_fields(e))})" if e.kind == "changed" else ""
            typer.echo(f"  {e.kind}\t{e.fkey}{extra}")
    except LandcloudError as exc:
        _fail(exc)


@datasets_app.command("rollback")
def datasets_rollback(dataset_id: str, to: Annotated[int, typer.Option("--to", help="Version to return to")]) -> None:
    """A new version equal to an old one (nothing is deleted)."""
    from landcloud.access import audit
    from landcloud.access.principal import system_principal
    from landcloud.catalog.history import rollback

    try:
        result = rollback(
            _engine(), dataset_id, to,
            in_transaction=lambda conn, r: audit.record(_engine(), system_principal(), "dataset.rollback", dataset_id=dataset_id,
                                                        version=r["version"], detail=r, conn=conn),
        )
    except LandcloudError as exc:
        _fail(exc)
        return
    typer.echo(f"version {result['version']} = version {result['rollback_to']} ({result['feature_count']} features)")
    _rebuild_edition(_engine(), dataset_id)


@datasets_app.command("export")
def datasets_export(
    dataset_id: str,
    out: Path,
    version: Optional[int] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="gpkg | geojson | shp (zipped) | csv | fgb | parquet | kml; default from OUT's suffix")] = None,
    crs: Annotated[Optional[str], typer.Option(help="EPSG:4490 (default), CRS84, EPSG:4326, EPSG:4491–4554, EPSG:3857")] = None,
    encoding: Annotated[str, typer.Option(help="Shapefile attribute encoding (UTF-8 or GBK)")] = "UTF-8",
) -> None:
    """Export a version (as the operator) to a file: the same writers, CRSs and checks as a download, audited as an export."""
    from landcloud.access.principal import system_principal
    from landcloud.publish import downloads

    try:
        spec = downloads.format_for_path(out, fmt)
        dl = downloads.prepare(_engine(), get_settings(), system_principal(), dataset_id, spec, crs, version, encoding,
                               action="data.export")
        size = downloads.save(dl, out)
    except LandcloudError as exc:
        _fail(exc)
        return
    typer.echo(f"exported / 已导出 {dl.headers['X-Landcloud-Dataset']} v{dl.headers['X-Landcloud-Version']} "
               f"({dl.headers['X-Landcloud-CRS']}, {size:,} bytes) to {out}")


# -- units ----------------------------------------------------------------------------------
@units_app.command("load")
def units_load(path: Path) -> None:
    """Load the administrative division list (CSV: code,name,level,parent)."""
    from landcloud.access.units import load_divisions
    from landcloud.store.migrate import upgrade

    engine = _engine()
    upgrade(engine)
    try:
        n = load_divisions(engine, path)
    except (LandcloudError, ValueError, OSError) as exc:
        typer.echo(f"错误 error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"loaded / 已加载 {n} units")


@units_app.command("boundaries")
def units_boundaries(
    path: Path,
    code_field: Annotated[str, typer.Option(help="Field holding the unit code")] = "adcode",
    crs: Annotated[Optional[str], typer.Option(help="Source CRS when the file has none (GCJ02 for Amap data)")] = None,
) -> None:
    """Attach boundaries to loaded units (used by the extent rule)."""
    from landcloud.access.boundaries import load_boundaries

    try:
        n, missing = load_boundaries(_engine(), path, code_field, crs)
    except LandcloudError as exc:
        _fail(exc)
        return
    typer.echo(f"boundaries set / 已设置边界: {n}" + (f"; unknown codes / 未知代码: {', '.join(missing[:10])}" if missing else ""))


# -- transformations ------------------------------------------------------------------------
@tr_app.command("add")
def transformations_add(
    name: str,
    datum: Annotated[str, typer.Option(help="xian80 | beijing54")],
    region: Annotated[str, typer.Option(help="Region (administrative code) the set is valid for")],
    method: Annotated[str, typer.Option(help="helmert7 | helmert4")] = "helmert7",
    params: Annotated[str, typer.Option(help="helmert7: tx,ty,tz,rx,ry,rz,ds (m, arc-seconds, ppm); helmert4: dx,dy,rotation,ds")] = "",
    convention: Annotated[str, typer.Option(help="position_vector | coordinate_frame")] = "position_vector",
    replace: bool = False,
) -> None:
    """Register a 7- or 4-parameter set (classified configuration: keep it out of code)."""
    from landcloud.geo.crs import TransformationSet
    from landcloud.geo.helmert import Helmert4, Helmert7
    from landcloud.ingest.transformations import register

    try:
        values = [float(x) for x in params.split(",") if x.strip()]
    except ValueError:
        values = []
    need = 7 if method == "helmert7" else 4
    if method not in ("helmert7", "helmert4") or len(values) != need:
        _fail(LandcloudError(
            "transformation.bad_params",
            f"方法 {method} 需要 {need} 个以逗号分隔的参数",
            f"method {method} needs {need} comma-separated parameters",
        ))
    h7 = Helmert7(*values, convention=convention) if method == "helmert7" else None  # type: ignore[arg-type]
    h4 = Helmert4(*values) if method == "helmert4" else None
    tset = TransformationSet(name=name, source_datum=datum, region_code=region, method=method, helmert7=h7, helmert4=h4)  # type: ignore[arg-type]
    try:
        register(_engine(), tset, replace=replace)
    except LandcloudError as exc:
        _fail(exc)
    typer.echo(f"registered / 已登记 {name}: {datum} → CGCS2000 ({method}) for region {region}")


@tr_app.command("list")
def transformations_list() -> None:
    from landcloud.ingest.transformations import list_sets

    for t in list_sets(_engine()):
        typer.echo(f"{t.name}\t{t.source_datum}\t{t.region_code}\t{t.method}")


def main() -> None:
    _mount_access_commands()
    try:
        app()
    except LandcloudError as exc:  # pragma: no cover - last resort: never a stack trace for a user error
        typer.echo(f"错误 error: {exc.message.zh}\n{exc.message.en}", err=True)
        sys.exit(2)


@units_app.command("add")
def units_add(
    code: str,
    name: str,
    kind: Annotated[str, typer.Option(help="department (administrative units come from the division list)")] = "department",
    region: Annotated[str, typer.Option(help="The region (administrative code) the department belongs to")] = "",
) -> None:
    """Add an external department (court, tax, bank …) attached to a region."""
    from landcloud.access import audit
    from landcloud.access.principal import system_principal
    from landcloud.access.units import add_department

    if kind != "department":
        _fail(LandcloudError("unit.bad_kind", "只能添加部门；行政单位请用 units load 加载区划表",
                             "only departments can be added; load administrative units with `units load`"))
    try:
        unit = add_department(_engine(), code, name, region)
    except LandcloudError as exc:
        _fail(exc)
        return
    audit.record(_engine(), system_principal(), "unit.create", detail={"code": code, "name": name, "region": region})
    typer.echo(f"added / 已添加 {unit['code']} {unit['name']} (department of {unit['parent']})")


if __name__ == "__main__":
    main()
