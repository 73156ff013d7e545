"""PMTiles export (GDAL's PMTiles driver through pyogrio), read back with pyogrio, on both stores."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pyogrio.raw
import pytest
import sqlalchemy as sa
from test_tiles import load_parcels, pg_url  # noqa: F401 (pg_url: a database of our own)
from typer.testing import CliRunner

from landcloud.access import audit
from landcloud.access.principal import system_principal
from landcloud.catalog import datasets as catalog
from landcloud.config import Settings
from landcloud.messages import LandcloudError, NotFound
from landcloud.publish import editions
from landcloud.publish.pmtiles import export_pmtiles
from landcloud.publish.tiles_cli import tiles_app


def read_back(path: Path, layer: str, zoom: int) -> tuple[list[str], dict[str, list]]:
    meta, _, geometry, fields = pyogrio.raw.read(str(path), layer=layer, ZOOM_LEVEL=str(zoom))
    assert len(geometry) > 0 and all(g is not None for g in geometry)
    return list(meta["fields"]), dict(zip(meta["fields"], (list(f) for f in fields)))


def test_export_writes_every_feature_at_every_zoom(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    feats = load_parcels(engine, settings, tmp_path, n=120)
    catalog.update_metadata(engine, "daoli-dltb", {"sensitive_fields": "QSDWMC"})
    out = tmp_path / "out" / "daoli.pmtiles"
    n = export_pmtiles(engine, "daoli-dltb", None, out, minzoom=8, maxzoom=12, master=True)
    assert n == len(feats) == 120
    assert pyogrio.list_layers(str(out))[0][0] == "daoli-dltb"
    info = pyogrio.read_info(str(out), layer="daoli-dltb", ZOOM_LEVEL="12")
    assert info["crs"] == "EPSG:3857"
    all_keys = {f["properties"]["BSM"] for f in feats}
    names, columns = read_back(out, "daoli-dltb", 12)
    assert "DLBM" in names and "TBMJ" in names and "QSDWMC" not in names  # a file cannot mask: sensitive fields stay out
    assert set(columns["_key"]) == all_keys  # every parcel is in the z12 tiles (some in several)
    _, low = read_back(out, "daoli-dltb", 8)
    assert set(low["_key"]) <= all_keys and len(set(low["_key"])) >= 0.9 * len(all_keys)
    entries = audit.query(engine, action="data.export", dataset_id="daoli-dltb")
    assert entries and entries[0]["actor"] == "system:tiles-cli" and entries[0]["detail"]["format"] == "pmtiles"
    assert entries[0]["detail"]["count"] == 120
    # asked for, the sensitive field is written; the old version is exported as it was
    full = tmp_path / "full.pmtiles"
    assert export_pmtiles(engine, "daoli-dltb", 1, full, 10, 10, include_sensitive=True, master=True) == 120
    assert "QSDWMC" in read_back(full, "daoli-dltb", 10)[0]
    with pytest.raises(LandcloudError):
        export_pmtiles(engine, "daoli-dltb", None, tmp_path / "x.pmtiles", 12, 8, master=True)
    with pytest.raises(LandcloudError):
        export_pmtiles(engine, "daoli-dltb", None, tmp_path / "x.pmtiles", 0, 23, master=True)
    with pytest.raises(NotFound):
        export_pmtiles(engine, "nope", None, tmp_path / "x.pmtiles", master=True)
    with pytest.raises(NotFound):
        export_pmtiles(engine, "daoli-dltb", 5, tmp_path / "x.pmtiles", master=True)
    assert not (tmp_path / "x.pmtiles").exists() and not list(tmp_path.glob(".*.tmp.pmtiles"))


def test_export_tiles_command(engine: sa.Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import landcloud.config

    load_parcels(engine, settings, tmp_path, n=40)
    monkeypatch.setattr(landcloud.config, "get_settings", lambda: settings)
    out = tmp_path / "cli.pmtiles"
    runner = CliRunner()
    # a master is for internal hosting only: refused unless --master says so
    refused = runner.invoke(tiles_app, ["export", "daoli-dltb", str(out), "--minzoom", "10", "--maxzoom", "11"])
    assert refused.exit_code == 2 and not out.exists()
    assert "主数据集" in refused.output and "master dataset" in refused.output and "daoli-dltb-public" in refused.output
    ok = runner.invoke(tiles_app, ["export", "daoli-dltb", str(out), "--minzoom", "10", "--maxzoom", "11", "--version", "1", "--master"])
    assert ok.exit_code == 0, ok.output
    assert "40 features" in ok.output and out.exists()
    assert len(set(read_back(out, "daoli-dltb", 11)[1]["_key"])) == 40
    missing = runner.invoke(tiles_app, ["export", "nope", str(tmp_path / "n.pmtiles")])
    assert missing.exit_code == 2 and "nope" in missing.output
    bad = runner.invoke(tiles_app, ["export", "daoli-dltb", str(tmp_path / "b.pmtiles"), "--maxzoom", "30"])
    assert bad.exit_code == 2 and "maxzoom" in bad.output


def test_an_edition_exports_its_published_version(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    load_parcels(engine, settings, tmp_path, n=40)
    out = tmp_path / "public.pmtiles"
    me = system_principal("test")
    editions.set_profile(engine, me, "daoli-dltb", {"fields": ["BSM", "DLBM"], "tolerance_m": 1})
    pending = editions.build(engine, settings, me, "daoli-dltb")
    with pytest.raises(LandcloudError) as exc:  # nothing approved yet: nothing for the public
        export_pmtiles(engine, "daoli-dltb-public", None, out, 10, 11)
    assert exc.value.message.code == "tiles.edition_not_published" and not out.exists()
    editions.approve(engine, me, pending["id"])
    # a newer edition with fewer fields, pending approval: the export still writes the published one
    editions.set_profile(engine, me, "daoli-dltb", {"fields": ["BSM"], "tolerance_m": 1})
    newer = editions.build(engine, settings, me, "daoli-dltb")
    assert catalog.require_dataset(engine, "daoli-dltb-public").current_version == newer["version"] == 2
    assert export_pmtiles(engine, "daoli-dltb-public", None, out, 10, 11) == 40
    names, columns = read_back(out, "daoli-dltb-public", 11)
    assert "DLBM" in names and len(set(columns["_key"])) == 40
    with pytest.raises(LandcloudError) as exc:
        export_pmtiles(engine, "daoli-dltb-public", newer["version"], tmp_path / "n.pmtiles", 10, 11)
    assert exc.value.message.code == "tiles.edition_version_not_published"
