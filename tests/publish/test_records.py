"""OGC API – Records over the catalogue, read by a real client (OWSLib) from a live server; DCAT JSON-LD."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import owslib.ogcapi
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from owslib.ogcapi.records import Records

from landcloud.app import api_routes, create_app
from landcloud.catalog import datasets as catalog
from landcloud.catalog.search_router import router as search_router
from landcloud.config import Settings
from landcloud.publish import records
from landcloud.publish.downloads_router import router as downloads_router
from landcloud.publish.records_router import router as records_router

from world import World, build

TITLES = {
    "hrb-dltb": ("哈尔滨市地类图斑", "Harbin land-use polygons"),
    "qqhr-dltb": ("齐齐哈尔市地类图斑", "Qiqihar land-use polygons"),
    "daoli-mine": ("道里区采矿权", "Daoli mining rights"),
    "open-dltb": ("公开地类图斑样例", "Open land-use sample"),
    "open-dltb-public": ("公开地类图斑样例（公开版）", "Open land-use sample (public edition)"),
}


def mount(app: FastAPI) -> FastAPI:
    paths = {r.path for r in api_routes(app)}
    # records first: an OGC API – Features /ogc/collections/{collectionId} must not take "catalog" for a dataset
    if "/ogc/collections/catalog" not in paths:
        app.router.routes[:0] = records_router.routes
    if "/api/search" not in paths:
        app.include_router(search_router)
    if "/api/datasets/{dataset_id}/download" not in paths:
        app.include_router(downloads_router)
    return app


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def world(engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None) -> World:
    (tmp_path / "in").mkdir()
    w = build(engine, settings, TestClient(mount(create_app(settings))), tmp_path / "in")
    for ds_id, (zh, en) in TITLES.items():
        catalog.update_metadata(engine, ds_id, {"title": zh, "title_en": en, "description": f"{zh}（测试）"})
    catalog.update_metadata(engine, "hrb-dltb", {"keywords": "三调,耕地", "theme": "land_survey"})
    return w


@pytest.fixture
def server(world: World) -> Iterator[str]:
    with live_server(world.client.app) as url:  # type: ignore[arg-type]
        yield url


@pytest.fixture
def owslib_client(monkeypatch: pytest.MonkeyPatch, server: str, world: World) -> Any:
    original = dict(owslib.ogcapi.REQUEST_HEADERS)

    def make(who: str | None) -> Records:
        # OWSLib keeps its request headers in one module-level dict: give every client its own
        monkeypatch.setattr(owslib.ogcapi, "REQUEST_HEADERS", dict(original))
        return Records(f"{server}/ogc", headers=world.headers(who) or None)

    return make


def ids(collection: dict[str, Any]) -> list[str]:
    return [f["id"] for f in collection["features"]]


def test_owslib_reads_the_catalogue(owslib_client: Any, server: str) -> None:
    hrb = owslib_client("hrb")
    coll = hrb.collection("catalog")
    assert coll["id"] == "catalog" and coll["itemType"] == "record"
    assert any(link["rel"] == "items" and link["href"] == f"{server}/ogc/collections/catalog/items" for link in coll["links"])

    items = hrb.collection_items("catalog")
    assert items["type"] == "FeatureCollection" and items["numberMatched"] == 5
    assert ids(items) == ["daoli-mine", "hrb-dltb", "open-dltb", "open-dltb-public", "qqhr-dltb"]

    found = hrb.collection_items("catalog", q="图斑")
    assert set(ids(found)) == {"hrb-dltb", "qqhr-dltb", "open-dltb", "open-dltb-public"}
    assert ids(hrb.collection_items("catalog", q="规划")) == []
    assert ids(hrb.collection_items("catalog", q="三调 耕地")) == ["hrb-dltb"]
    assert set(ids(hrb.collection_items("catalog", q="采矿,齐齐哈尔"))) == {"daoli-mine", "qqhr-dltb"}  # commas: OR
    assert ids(hrb.collection_items("catalog", q="mining")) == ["daoli-mine"]

    page = hrb.collection_items("catalog", limit=3, offset=0)
    assert page["numberReturned"] == 3 and page["numberMatched"] == 5
    nxt = next(link["href"] for link in page["links"] if link["rel"] == "next")
    second = httpx.get(nxt, headers=hrb.headers).json()
    assert ids(second) == ["open-dltb-public", "qqhr-dltb"] and not any(link["rel"] == "next" for link in second["links"])
    assert ids(hrb.collection_items("catalog", bbox=[126.5, 45.7, 126.7, 45.8])) == ["hrb-dltb", "open-dltb", "open-dltb-public"]
    assert ids(hrb.collection_items("catalog", type="service")) == []


def test_one_record_as_ogc_api_records_core(owslib_client: Any, server: str) -> None:
    hrb = owslib_client("hrb")
    rec = hrb.collection_item("catalog", "hrb-dltb")
    assert rec["type"] == "Feature" and rec["id"] == "hrb-dltb" and rec["geometry"]["type"] == "Polygon"
    assert rec["conformsTo"] == [records.CONFORMANCE[0]] and "time" in rec
    props = rec["properties"]
    assert props["type"] == "dataset" and props["title"] == "哈尔滨市地类图斑" and props["title_en"] == "Harbin land-use polygons"
    assert props["language"]["code"] == "zh-CN" and props["keywords"] == ["三调", "耕地"]
    assert props["themes"][0]["concepts"][0] == {"id": "land_survey", "title": "国土调查", "description": "land-use survey"}
    assert props["contacts"][0]["organization"] == "哈尔滨市" and props["contacts"][0]["identifier"] == "230100"
    assert props["created"] and props["updated"]
    assert {f["name"] for f in props["formats"]} >= {"GeoPackage", "GeoJSON", "ESRI Shapefile (zip)"}
    assert props["license"] == "other" and "有条件共享" in props["rights"]
    rels = {(link["rel"], link["href"]) for link in rec["links"]}
    assert ("data", f"{server}/ogc/collections/hrb-dltb") in rels
    assert ("items", f"{server}/ogc/collections/hrb-dltb/items") in rels
    assert ("enclosure", f"{server}/api/datasets/hrb-dltb/download?format=gpkg") in rels
    assert ("license", f"{server}/api/catalog/terms/conditional") in rels
    download = httpx.get(f"{server}/api/datasets/hrb-dltb/download?format=gpkg", headers=hrb.headers)
    assert download.status_code == 200 and download.content[:15] == b"SQLite format 3"
    assert "有条件共享" in httpx.get(f"{server}/api/catalog/terms/conditional").text

    listed_only = hrb.collection_item("catalog", "qqhr-dltb")  # an entry whose data hrb may not read
    assert listed_only["geometry"] is None
    assert not {link["rel"] for link in listed_only["links"]} & {"data", "items", "enclosure"}
    assert listed_only["properties"]["landcloud"]["access"]["rows"] == "none"


def test_anonymous_sees_open_public_records_only(owslib_client: Any, server: str) -> None:
    anonymous = owslib_client(None)
    items = anonymous.collection_items("catalog")
    assert ids(items) == ["open-dltb-public"] and items["numberMatched"] == 1  # the edition, never the master
    assert ids(anonymous.collection_items("catalog", q="图斑")) == ["open-dltb-public"]
    assert "开放数据" in anonymous.collection_item("catalog", "open-dltb-public")["properties"]["rights"]
    assert httpx.get(f"{server}/ogc/collections/catalog/items/open-dltb").status_code == 404
    with pytest.raises(RuntimeError):
        anonymous.collection_item("catalog", "hrb-dltb")  # 404, as for a missing record
    assert httpx.get(f"{server}/ogc/collections/catalog/items/hrb-dltb").status_code == 404


def test_collection_entry_and_conformance() -> None:
    coll = records.catalog_collection("https://gis.example.cn/")
    assert coll["id"] == "catalog" and coll["itemType"] == "record" and coll["type"] == "Catalog"
    assert {link["href"] for link in coll["links"]} >= {
        "https://gis.example.cn/ogc/collections/catalog", "https://gis.example.cn/ogc/collections/catalog/items"
    }
    assert all(uri.startswith("http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/") for uri in records.CONFORMANCE)


def test_dcat_catalogue(world: World) -> None:
    doc = world.get("/api/catalog/dcat", "hrb").json()
    assert doc["@type"] == "dcat:Catalog" and {"dcat", "dct"} <= set(doc["@context"])
    assert {"@value": "国土资源云数据目录", "@language": "zh"} in doc["dct:title"]
    entries = {d["dct:identifier"]: d for d in doc["dcat:dataset"]}
    assert sorted(entries) == ["daoli-mine", "hrb-dltb", "open-dltb", "open-dltb-public", "qqhr-dltb"] and doc["hydra:totalItems"] == 5
    hrb = entries["hrb-dltb"]
    assert hrb["@type"] == "dcat:Dataset"
    assert hrb["dct:title"] == [{"@value": "哈尔滨市地类图斑", "@language": "zh"}, {"@value": "Harbin land-use polygons", "@language": "en"}]
    assert hrb["dct:publisher"]["foaf:name"] == [{"@value": "哈尔滨市", "@language": "zh"}]
    assert hrb["dct:spatial"]["dcat:bbox"]["@value"].startswith("POLYGON((126.6")
    formats = {d["dct:format"]: d for d in hrb["dcat:distribution"]}
    assert set(formats) == {"GeoPackage", "GeoJSON", "ESRI Shapefile (zip)", "CSV (WKT)", "FlatGeobuf", "GeoParquet", "KML"}
    gpkg = formats["GeoPackage"]
    assert gpkg["dcat:downloadURL"]["@id"].endswith("/api/datasets/hrb-dltb/download?format=gpkg")
    assert gpkg["dcat:accessURL"]["@id"].endswith("/ogc/collections/hrb-dltb")
    assert gpkg["dcat:mediaType"]["@id"].endswith("application/geopackage+sqlite3")
    assert world.get(gpkg["dcat:downloadURL"]["@id"].split("testserver", 1)[1], "hrb").status_code == 200
    listed_only = entries["qqhr-dltb"]  # hrb may see the entry, not the data: no extent, no distributions
    assert "dct:spatial" not in listed_only and "dcat:distribution" not in listed_only
    anonymous = world.get("/api/catalog/dcat", None).json()
    assert [d["dct:identifier"] for d in anonymous["dcat:dataset"]] == ["open-dltb-public"]
    paged = world.get("/api/catalog/dcat", "hrb", params={"limit": 3}).json()
    assert len(paged["dcat:dataset"]) == 3 and "hydra:next" in paged["hydra:view"]
    resp = world.get("/api/catalog/dcat", "hrb")
    assert resp.headers["content-type"].startswith("application/ld+json")
