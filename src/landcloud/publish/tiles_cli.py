"""`landcloud export-tiles DATASET OUT.pmtiles`: a version as a PMTiles file, as the local operator; `landcloud tiles
build DATASET`: the pre-generalised low-zoom tile copies of a dataset's rows (store/tilegeoms.py).

Mount with `app.command("export-tiles")(export_tiles)` (or `app.add_typer(tiles_app, name="tiles")`
for `landcloud tiles export`). Exit codes: 0 written, 2 refused (unknown dataset or version,
bad zoom range, a master without --master, an edition not yet approved).

The file is for static hosting behind a CDN, where the public reads it: an edition is exported
at its published version; a master only with `--master`, for internal hosting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from landcloud.messages import LandcloudError

tiles_app = typer.Typer(help="Vector tiles: export to PMTiles, build the pre-generalised copies / 矢量瓦片", no_args_is_help=True, add_completion=False)


@tiles_app.callback()
def tiles() -> None:
    """Vector tiles: export to PMTiles, build the pre-generalised copies / 矢量瓦片"""


@tiles_app.command("build")
def build_copies(
    dataset: Annotated[str, typer.Argument(help="Dataset id / 数据集标识")],
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the dataset's copies first and make them all anew / 重建")] = False,
) -> None:
    """Make the pre-generalised tile copies (z8-z14) every row of a dataset lacks (all versions): for a store migrated
    from before them, or after a build that failed. A row with copies of some zooms counts as done: after a release
    that adds zooms (z12-z14 in 2026-12), `--rebuild`. Tiles of rows without copies are correct, only slower.

    Exit codes: 0 built, 2 unknown dataset.
    """
    from landcloud.catalog import datasets as catalog
    from landcloud.config import get_settings
    from landcloud.store import tilegeoms
    from landcloud.store.engine import get_engine

    engine = get_engine(get_settings())
    if catalog.get_dataset(engine, dataset) is None:
        typer.echo(f"错误 error: 没有数据集“{dataset}” / no dataset '{dataset}'", err=True)
        raise typer.Exit(2)
    dropped = tilegeoms.drop(engine, dataset) if rebuild else 0
    built = tilegeoms.build(engine, dataset)
    typer.echo(
        f"tile copies of {dataset} / 瓦片概化副本: {built.copies} made"
        + (f" ({dropped} dropped first)" if rebuild else "")
        + f", {built.seconds:.2f} s; per level {tilegeoms.count(engine, dataset)}"
    )


@tiles_app.command("export")
def export_tiles(
    dataset: Annotated[str, typer.Argument(help="Dataset id / 数据集标识")],
    out: Annotated[Path, typer.Argument(help="Output .pmtiles file / 输出文件")],
    version: Annotated[Optional[int], typer.Option(help="Version (default: the current one) / 版本")] = None,
    minzoom: Annotated[int, typer.Option(help="Lowest zoom level / 最小层级")] = 0,
    maxzoom: Annotated[int, typer.Option(help="Highest zoom level (≤ 22) / 最大层级")] = 14,
    include_sensitive: Annotated[bool, typer.Option(help="Also write sensitive fields / 包含敏感字段")] = False,
    master: Annotated[bool, typer.Option("--master", help="Export a master dataset, for internal hosting only / 导出主数据集（仅限内部托管）")] = False,
) -> None:
    """Export a version as PMTiles (Web Mercator vector tiles) — audited as the local operator.

    An edition is exported at its published version; a master is refused unless --master (internal hosting only).
    """
    from landcloud.config import get_settings
    from landcloud.publish.pmtiles import export_pmtiles
    from landcloud.store.engine import get_engine

    engine = get_engine(get_settings())
    try:
        n = export_pmtiles(engine, dataset, version, out, minzoom, maxzoom, include_sensitive=include_sensitive, master=master)
    except LandcloudError as exc:
        typer.echo(f"错误 error: {exc.message.zh}\n{exc.message.en}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"exported / 已导出 {n} features of {dataset} to {out} (zoom {minzoom}–{maxzoom})")
