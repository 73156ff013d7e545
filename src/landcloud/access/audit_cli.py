"""`landcloud audit …`: verify the audit chain, export the audit log as CSV.

Exit codes: 0 done (chain intact), 1 the chain is broken, 2 a usage error.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

audit_app = typer.Typer(help="Audit log 审计日志: verify the hash chain, export as CSV", no_args_is_help=True, add_completion=False)


def _engine() -> Any:
    from landcloud.config import get_settings
    from landcloud.store.engine import get_engine
    from landcloud.store.migrate import upgrade

    engine = get_engine(get_settings())
    upgrade(engine)
    return engine


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        typer.echo(
            f"错误 error: {option} 不是有效的 ISO-8601 时间：{value}\n{option} is not an ISO-8601 date/time: {value}",
            err=True,
        )
        raise typer.Exit(2) from None


@audit_app.command()
def verify() -> None:
    """Verify the hash chain: exit 0 intact, 1 broken (naming the first broken entry)."""
    from landcloud.access import audit
    from landcloud.access.principal import system_principal

    engine = _engine()
    result = audit.verify(engine)
    if result.ok:
        typer.echo(f"audit chain intact / 审计链完整: {result.checked} entries")
    else:
        typer.echo(f"审计链已损坏：{result.reason_zh}\naudit chain broken: {result.reason_en}")
        typer.echo(f"first broken entry / 首个损坏记录: {result.first_broken_seq}; intact before it / 此前完好: {result.checked}")
    try:
        audit.record(engine, system_principal(), "audit.verify",
                     detail={"ok": result.ok, "checked": result.checked, "first_broken_seq": result.first_broken_seq})
    except Exception as exc:  # the verdict stands even if the log cannot take the entry
        typer.echo(f"警告 warning: 无法记录本次校验 / could not record this verification: {exc}", err=True)
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command()
def export(
    since: Annotated[Optional[str], typer.Option(help="From (inclusive), ISO-8601; without an offset, UTC")] = None,
    until: Annotated[Optional[str], typer.Option(help="Until (exclusive), ISO-8601; without an offset, UTC")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the CSV here (default: standard output)")] = None,
) -> None:
    """Export the audit log as CSV (UTF-8 with BOM, one header row, in seq order)."""
    from landcloud.access import audit
    from landcloud.access.principal import system_principal

    start, end = _when(since, "--since"), _when(until, "--until")
    engine = _engine()
    shown = {k: audit.iso_at(v) for k, v in (("since", start), ("until", end)) if v is not None}
    audit.record(engine, system_principal(), "audit.export", detail={"filter": shown, "format": "csv", "out": str(out) if out else "-"})
    chunks = audit.to_csv_stream(engine, since=start, until=end)
    if out is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk.encode("utf-8"))
        sys.stdout.buffer.flush()
        return
    with out.open("w", encoding="utf-8", newline="") as fh:
        for chunk in chunks:
            fh.write(chunk)
    typer.echo(f"exported / 已导出: {out}", err=True)
