"""`landcloud audit verify|export` as an operator runs it (a real subprocess), on both stores."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_audit_chain import ALICE, fill, fresh_audit, tamper

from landcloud.access import audit
from landcloud.config import Settings

AUDIT = [sys.executable, "-c", "from landcloud.access.audit_cli import audit_app; audit_app()"]


@pytest.fixture
def audit_engine(engine: sa.Engine) -> Iterator[sa.Engine]:
    yield from fresh_audit(engine)


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LANDCLOUD_DATA_DIR=str(settings.data_dir), LANDCLOUD_DATABASE_URL=settings.resolved_database_url)
    return subprocess.run([*AUDIT, *args], env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)


def test_verify_exit_codes(audit_engine: sa.Engine, settings: Settings) -> None:
    fill(audit_engine, 5)
    ok = run(settings, "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit chain intact / 审计链完整: 5 entries" in ok.stdout
    assert audit.query(audit_engine, limit=1)[0]["action"] == "audit.verify"  # seq 6, by the operator
    tamper(audit_engine, "UPDATE audit_log SET detail = :d WHERE seq = 3", d='{"features":0}')
    broken = run(settings, "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "entry 3 was altered" in broken.stdout and "第 3 条记录被篡改" in broken.stdout


def test_verify_names_a_gap_and_export_writes_csv(audit_engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    fill(audit_engine, 4)
    out = tmp_path / "audit.csv"
    exported = run(settings, "export", "--since", "2000-01-01", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfseq,at,actor,actor_unit,ip,action,dataset_id,version,detail,prev_hash,hash\r\n")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4", "5"] and rows[0]["actor"] == ALICE.actor and "水田" in rows[0]["detail"]
    assert rows[4]["action"] == "audit.export" and rows[4]["actor"] == "system:cli"
    assert run(settings, "export", "--until", "2000-01-01").stdout == "\ufeff" + ",".join(audit.CSV_COLUMNS) + "\n"
    assert run(settings, "export", "--since", "last tuesday").returncode == 2
    tamper(audit_engine, "DELETE FROM audit_log WHERE seq = 2")
    broken = run(settings, "verify")
    assert broken.returncode == 1 and "entry 2 is missing" in broken.stdout
