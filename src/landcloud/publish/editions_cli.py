"""`landcloud editions …` (profile, build, approve, list) and `landcloud trace FILE`, as the local operator.

Exit codes: 0 done, 1 `trace` found no recorded recipient, 2 refused (unknown dataset or edition, bad profile).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from landcloud.cli import _echo_json as _echo
from landcloud.cli import _engine, _fail
from landcloud.config import get_settings
from landcloud.messages import LandcloudError

editions_app = typer.Typer(help="Public editions (公开版): release profile, build, approve, list", no_args_is_help=True)


def _do(action: Callable[..., Any], *args: Any) -> Any:
    """Run one step as the local operator; a refusal is printed in both languages (exit 2)."""
    from landcloud.access.principal import system_principal

    try:
        return action(_engine(), system_principal(), *args)
    except LandcloudError as exc:
        _fail(exc)


@editions_app.command("profile")
def profile(
    dataset_id: str,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="JSON release profile to set (omit to show the current one)")] = None,
) -> None:
    """Show or set a dataset's release profile (JSON: fields, class_field, remove_classes, tolerance_m, gcj02, …)."""
    from landcloud.publish import editions

    if file is None:
        _echo(_do(editions.get_profile, dataset_id))
    else:
        _echo(_do(editions.set_profile, dataset_id, json.loads(file.read_text(encoding="utf-8"))))


@editions_app.command("build")
def build(dataset_id: str, version: Annotated[Optional[int], typer.Option("--version", help="source version (default newest)")] = None) -> None:
    """Build an edition of a version with the dataset's profile (pending approval); prints it with its check report."""
    from landcloud.publish import editions

    _echo(_do(lambda engine, me: editions.build(engine, get_settings(), me, dataset_id, version)))


@editions_app.command("approve")
def approve(edition_id: int) -> None:
    """Publish a pending edition; the previously published one is superseded."""
    from landcloud.publish import editions

    edition = _do(editions.approve, edition_id)
    typer.echo(f"edition {edition['id']} published: {edition['dataset_id']} v{edition['version']} / 公开版已发布")


@editions_app.command("list")
def list_editions(dataset_id: str) -> None:
    """The editions of a master dataset, newest first, and the state of its latest rebuild."""
    from landcloud.publish import editions, editions_jobs

    for e in _do(editions.list_editions, dataset_id):
        passed = "checks passed" if e["report"].get("passed") else "CHECKS FAILED"
        typer.echo(f"{e['id']}\t{e['status']}\t{e['dataset_id']} v{e['version']}\t← {e['source_dataset_id']} v{e['source_version']}\t{passed}")
    build = _do(editions_jobs.state_for, dataset_id)
    if build is not None:
        error = f"\t{build['error']['message_zh']} / {build['error']['message_en']}" if build["error"] else ""
        typer.echo(f"latest build / 最近一次生成: {build['status']} (source v{build['source_version']}){error}")


def trace_command(file: Path) -> None:
    """Name the recipient whose fingerprint a leaked copy carries (exit 1 when none matches)."""
    from landcloud.publish import fingerprints

    result = _do(lambda engine, _me: fingerprints.trace_copy(engine, fingerprints.read_copy(file)))
    _echo(result)
    if result["recipient"] is None:
        typer.echo("no recorded recipient matches / 未找到匹配的接收方", err=True)
        raise typer.Exit(1)
    m = result["match"]
    typer.echo(f"recipient / 接收方: {m['recipient']} ({m['dataset_id']} v{m['version']}, score {m['score']})")
