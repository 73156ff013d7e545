"""Catalogue search: Chinese bigrams, English words, filters, ranking, self-healing, and the gate.

Every test runs on SQLite (FTS5, bm25) and PostgreSQL (tsvector, ts_rank).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from landcloud.access import gate, units
from landcloud.access.principal import ANONYMOUS, system_principal
from landcloud.app import api_routes, create_app
from landcloud.catalog import datasets as catalog
from landcloud.catalog import search
from landcloud.catalog.search_router import router as search_router
from landcloud.catalog.tables import datasets as datasets_table
from landcloud.config import Settings

from conftest import REFERENCE
from world import World, build

SYSTEM = system_principal("test")


def make(engine: sa.Engine, ds_id: str, owner: str = "230100", *, extent: list[float] | None = None, fields: list[dict[str, Any]] | None = None,
         **meta: Any) -> None:
    with engine.begin() as conn:
        catalog.create_dataset(conn, ds_id, owner, title=meta.pop("title", ds_id), fields=fields, theme=meta.pop("theme", "other"))
    if meta:
        catalog.update_metadata(engine, ds_id, meta)
    if extent is not None:
        with engine.begin() as conn:
            conn.execute(datasets_table.update().where(datasets_table.c.id == ds_id).values(extent=extent, updated_at=datetime.now(UTC)))


def ids(result: dict[str, Any]) -> list[str]:
    return [item["id"] for item in result["items"]]


@pytest.fixture
def province(engine: sa.Engine) -> sa.Engine:
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    make(engine, "hrb-ghfq", title="国土空间规划分区", title_en="Territorial spatial planning zones", theme="planning",
         keywords=["三区三线"], description="市级国土空间总体规划的规划分区", extent=[126.5, 45.6, 126.9, 45.9])
    make(engine, "hrb-dltb", title="哈尔滨市地类图斑", title_en="Harbin land-use polygons", theme="land_survey",
         keywords=["三调", "DLTB"], fields=[{"name": "BSM", "type": "string", "alias_zh": "标识码"},
                                          {"name": "QLRZJH", "type": "string", "alias_zh": "权利人证件号"}],
         extent=[126.6, 45.7, 126.7, 45.8])
    make(engine, "qqhr-dltb", "230200", title="齐齐哈尔市地类图斑", theme="land_survey", keywords=["DLTB"],
         extent=[123.9, 47.3, 124.0, 47.4])
    make(engine, "daoli-mine", "230102", title="道里区采矿权", title_en="Daoli mining rights", theme="mining", sharing_class="unconditional")
    make(engine, "prov-hazard", "230000", title="地质灾害隐患点", title_en="Geological hazard sites", theme="hazards",
         openness="open", security_level="public", sharing_class="unconditional")
    return engine


def test_tokens_are_bigrams_of_chinese_runs_and_whole_words() -> None:
    assert search.doc_tokens("国土空间 DLTB-2023 Planning") == ["国土", "土空", "空间", "间", "dltb", "2023", "planning"]
    assert search.doc_tokens("规") == ["规"]
    assert search.doc_tokens("ＤＬＴＢ（三调）") == ["dltb", "三调", "调"]  # NFKC: full-width letters, brackets
    groups = search.query_terms("规划 DLTB, 区")
    assert [[t.kind for t in g] for g in groups] == [["phrase", "word"], ["prefix"]]
    assert search.query_terms(" ，。 ") == []


def test_two_characters_find_their_records(province: sa.Engine) -> None:
    assert ids(search.search(province, SYSTEM, "规划")) == ["hrb-ghfq"]  # inside 国土空间规划分区, not 地类图斑
    assert set(ids(search.search(province, SYSTEM, "图斑"))) == {"hrb-dltb", "qqhr-dltb"}
    assert ids(search.search(province, SYSTEM, "空间规划分区")) == ["hrb-ghfq"]
    assert ids(search.search(province, SYSTEM, "规分")) == []  # not a substring: no match
    assert ids(search.search(province, SYSTEM, "哈尔滨 图斑")) == ["hrb-dltb"]  # spaces: all parts


def test_single_character_matches_anywhere(province: sa.Engine) -> None:
    assert ids(search.search(province, SYSTEM, "规")) == ["hrb-ghfq"]
    assert set(ids(search.search(province, SYSTEM, "区"))) == {"hrb-ghfq", "daoli-mine"}  # the last character of a run too
    assert set(ids(search.search(province, SYSTEM, "斑"))) == {"hrb-dltb", "qqhr-dltb"}


def test_english_words_keywords_themes_units_and_fields(province: sa.Engine) -> None:
    assert ids(search.search(province, SYSTEM, "planning zones")) == ["hrb-ghfq"]
    assert ids(search.search(province, SYSTEM, "MINING")) == ["daoli-mine"]  # title_en and theme name
    assert set(ids(search.search(province, SYSTEM, "dltb"))) == {"hrb-dltb", "qqhr-dltb"}
    assert ids(search.search(province, SYSTEM, "三区三线")) == ["hrb-ghfq"]  # keyword
    assert ids(search.search(province, SYSTEM, "地质灾害")) == ["prov-hazard"]
    assert ids(search.search(province, SYSTEM, "道里区")) == ["daoli-mine"]  # owner unit name
    assert ids(search.search(province, SYSTEM, "黑龙江 灾害")) == ["prov-hazard"]  # owner 230000 = 黑龙江省
    assert ids(search.search(province, SYSTEM, "证件号")) == ["hrb-dltb"]  # field alias
    assert ids(search.search(province, SYSTEM, "qlrzjh")) == ["hrb-dltb"]  # field name
    assert set(ids(search.search(province, SYSTEM, "规划, 采矿"))) == {"hrb-ghfq", "daoli-mine"}  # commas: any


def test_ranking_prefers_the_title(province: sa.Engine) -> None:
    make(province, "desc-only", title="其他数据", description="附带少量规划信息")
    result = search.search(province, SYSTEM, "规划")
    assert ids(result)[0] == "hrb-ghfq" and "desc-only" in ids(result)
    assert result["items"][0]["score"] > result["items"][-1]["score"]


def test_filters(province: sa.Engine) -> None:
    assert set(ids(search.search(province, SYSTEM, theme="land_survey"))) == {"hrb-dltb", "qqhr-dltb"}
    assert ids(search.search(province, SYSTEM, "图斑", unit="230200")) == ["qqhr-dltb"]
    assert set(ids(search.search(province, SYSTEM, region="230100"))) == {"hrb-ghfq", "hrb-dltb", "daoli-mine"}  # 2301xx
    assert set(ids(search.search(province, SYSTEM, region="230000"))) == {"hrb-ghfq", "hrb-dltb", "qqhr-dltb", "daoli-mine", "prov-hazard"}
    assert set(ids(search.search(province, SYSTEM, sharing_class="unconditional"))) == {"daoli-mine", "prov-hazard"}
    assert set(ids(search.search(province, SYSTEM, bbox=(126.65, 45.75, 126.66, 45.76)))) == {"hrb-ghfq", "hrb-dltb"}
    assert ids(search.search(province, SYSTEM, "图斑", bbox=(123.0, 47.0, 124.5, 48.0))) == ["qqhr-dltb"]
    page = search.search(province, SYSTEM, None, limit=2, offset=1)
    assert page["total"] == 5 and ids(page) == ["hrb-dltb", "hrb-ghfq"]
    with pytest.raises(Exception) as err:
        search.search(province, SYSTEM, theme="nope")
    assert getattr(err.value, "status", None) == 400


def test_search_heals_itself_and_reindex_is_explicit(province: sa.Engine) -> None:
    catalog.update_metadata(province, "qqhr-dltb", {"title": "齐齐哈尔市永久基本农田"})  # no reindex call: the query heals
    assert ids(search.search(province, SYSTEM, "基本农田")) == ["qqhr-dltb"]
    assert ids(search.search(province, SYSTEM, "图斑")) == ["hrb-dltb"]
    with province.begin() as conn:  # a change that keeps updated_at: only an explicit reindex sees it
        conn.execute(datasets_table.update().where(datasets_table.c.id == "hrb-dltb").values(description="耕地保护"))
        search.reindex(conn, "hrb-dltb")
    assert ids(search.search(province, SYSTEM, "耕地保护")) == ["hrb-dltb"]
    with province.begin() as conn:  # a dataset that disappears leaves the index on the next query
        conn.execute(datasets_table.delete().where(datasets_table.c.id == "daoli-mine"))
    assert ids(search.search(province, SYSTEM, "采矿")) == []
    assert search.reindex_all(province) == 4
    with province.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM search_docs")).scalar_one() == 4


def _as_edition(engine: sa.Engine, ds_id: str, master: str, published: bool) -> None:
    with engine.begin() as conn:  # what editions.build/approve leave behind, without building one
        conn.execute(datasets_table.update().where(datasets_table.c.id == ds_id).values(
            edition_of=master, published_version=1 if published else None, current_version=1, updated_at=datetime.now(UTC)))


def test_anonymous_sees_only_published_editions(province: sa.Engine) -> None:
    make(province, "prov-hazard-public", "230000", title="地质灾害隐患点（公开版）", openness="open", security_level="public")
    _as_edition(province, "prov-hazard-public", "prov-hazard", published=True)
    make(province, "hrb-dltb-public", title="哈尔滨市地类图斑（公开版）", openness="open", security_level="public")
    _as_edition(province, "hrb-dltb-public", "hrb-dltb", published=False)
    assert ids(search.search(province, ANONYMOUS, None)) == ["prov-hazard-public"]  # not the open, public master
    assert ids(search.search(province, ANONYMOUS, "图斑")) == []  # an edition pending approval is not listed
    assert ids(search.search(province, ANONYMOUS, "灾害")) == ["prov-hazard-public"]
    assert search.search(province, ANONYMOUS, "规划")["total"] == 0
    assert "hrb-dltb-public" in ids(search.search(province, SYSTEM, "图斑"))


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    app = create_app(settings)
    if not any(r.path == "/api/search" for r in api_routes(app)):
        app.include_router(search_router)
    return build(engine, settings, TestClient(app), tmp_path)


def test_results_are_exactly_the_callers_catalogue(world: World, engine: sa.Engine) -> None:
    """Every caller of the access matrix: search lists what gate.visible_datasets lists, with the same metadata."""
    for who in [None, "prov", "hrb", "hrbadmin", "qqhr", "daoli", "nangang", "bank", "sec"]:
        body = world.get("/api/search", who, params={"limit": 100}).json()
        listed = world.get("/api/datasets", who).json()["datasets"]
        assert ids(body) == sorted(d["id"] for d in listed), who
        by_id = {d["id"]: d for d in listed}
        for item in body["items"]:
            item.pop("score")
            assert item == by_id[item["id"]], (who, item["id"])
    anonymous = world.get("/api/search", None, params={"q": "图斑"}).json()
    assert ids(anonymous) == ["open-dltb-public"]
    assert world.get("/api/search", None, params={"theme": "nope"}).status_code == 400


def test_hidden_fields_do_not_match(world: World) -> None:
    """A listed-only caller sees no field list, so a field name must not find the dataset for it."""
    hrb = world.get("/api/search", "hrb", params={"q": "QLRZJH"}).json()
    assert "hrb-dltb" in ids(hrb)
    bank = world.get("/api/search", "bank", params={"q": "QLRZJH"}).json()
    assert "hrb-dltb" not in ids(bank) and "open-dltb" in ids(bank)  # the open dataset shows all its fields
    assert "hrb-dltb" in ids(world.get("/api/search", "bank", params={"q": "hrb"}).json())  # the title still does
    # a listed-only entry does not show where its data lies: bbox does not find it
    qqhr = world.get("/api/search", "qqhr", params={"bbox": "126.5,45.7,126.7,45.8"}).json()
    assert "hrb-dltb" not in ids(qqhr) and "open-dltb" in ids(qqhr)


def test_pages_and_totals_agree_for_every_caller(world: World) -> None:
    """Ranking, paging and the total come from the database: pages of two make up the whole list,
    and an offset past the end still says how many there are (for a caller whose listed-only
    entries match on their metadata only, too)."""
    for who in [None, "prov", "hrb", "qqhr", "bank"]:
        for q in [None, "图斑", "QLRZJH", "hrb"]:
            whole = world.get("/api/search", who, params={"q": q or "", "limit": 100}).json()
            offsets = range(0, len(ids(whole)) + 2, 2)
            pages = [world.get("/api/search", who, params={"q": q or "", "limit": 2, "offset": o}).json() for o in offsets]
            assert [i for p in pages for i in ids(p)] == ids(whole), (who, q)
            assert {p["total"] for p in pages} == {whole["total"]} and whole["total"] == len(ids(whole)), (who, q)
            past = world.get("/api/search", who, params={"q": q or "", "limit": 5, "offset": 50}).json()
            assert past["items"] == [] and past["total"] == whole["total"], (who, q)


def test_gate_agrees_for_every_entry(world: World, engine: sa.Engine) -> None:
    from landcloud.access.principal import Principal

    for principal in [ANONYMOUS, SYSTEM, Principal("user", username="x", unit="230102", roles=frozenset({"viewer"}))]:
        expected = sorted(ds.id for ds, _ in gate.visible_datasets(engine, principal))
        assert ids(search.search(engine, principal, None, limit=100)) == expected


def test_ten_thousand_records_answer_quickly(engine: sa.Engine) -> None:
    words = ["国土空间规划", "地类图斑", "永久基本农田", "城镇开发边界", "生态保护红线", "矿业权", "地质灾害隐患", "不动产登记"]
    counties = ["道里区", "南岗区", "香坊区", "平房区", "松北区"]
    now = datetime.now(UTC)
    rows = []
    for i in range(10_000):
        word = words[i % len(words)]
        rows.append(dict(
            id=f"ds-{i:05d}", title=f"{counties[i % 5]}{word}第{i}号", title_en=f"dataset {i} {'planning' if i % 8 == 0 else 'survey'}",
            description=f"{word}成果数据，批次{i % 97}", theme="planning" if i % 8 == 0 else "land_survey", owner_unit="230100",
            standard_schema=None, fields=[{"name": "BSM", "type": "string", "alias_zh": "标识码"}], update_frequency="yearly",
            sharing_class="unconditional" if i % 3 else "conditional", openness="open" if i % 10 == 0 else "not_open",
            security_level="public" if i % 10 == 0 else "internal", keywords=[word], key_field=None, jurisdiction_field=None,
            extent=[126.0 + (i % 100) * 0.01, 45.0, 126.01 + (i % 100) * 0.01, 45.01], feature_count=0, current_version=0, extra={},
            edition_of="ds-00001" if i % 10 == 0 else None, published_version=0 if i % 10 == 0 else None,  # published editions
            created_at=now - timedelta(days=1), updated_at=now - timedelta(days=1),
        ))
    with engine.begin() as conn:
        conn.execute(datasets_table.insert(), rows)
    started = time.perf_counter()
    assert search.reindex_all(engine) == 10_000
    indexing = time.perf_counter() - started
    search.search(engine, SYSTEM, "规划", limit=1)  # warm the connection pool and caches
    for principal, q, expected in [
        (SYSTEM, "规划", 1250),
        (SYSTEM, "南岗区 农田", 250),
        (ANONYMOUS, "规划", 250),  # published editions: i % 10 == 0, planning: i % 8 == 0
        (SYSTEM, "第4242号", 1),
    ]:
        started = time.perf_counter()
        result = search.search(engine, principal, q, limit=20)
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0, (q, elapsed)
        assert result["total"] == expected, q
        if principal is ANONYMOUS:
            assert all(item["openness"] == "open" for item in result["items"])
    assert indexing < 30
