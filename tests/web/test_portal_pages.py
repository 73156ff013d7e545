"""The portal's pages, catalogue and portal JSON, without a browser: languages, errors, regions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from landcloud.access import units
from landcloud.app import create_app
from landcloud.config import Settings
from landcloud.messages import LandcloudError
from landcloud.web import colours, i18n

from conftest import REFERENCE

WEB = Path(i18n.__file__).parent
KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_0-9]+)["']""")
PREFIXED = re.compile(r"""\bt\(`([a-z_]+)\.\$\{""")
LITERAL = re.compile(r"""["']([a-z_]+\.[a-z_0-9]+)["']""")


def test_both_languages_have_every_message_and_every_used_key_exists() -> None:
    zh, en = i18n.catalogue("zh"), i18n.catalogue("en")
    assert zh.keys() == en.keys() and len(zh) > 150
    assert all(v.strip() for v in [*zh.values(), *en.values()])
    sources = [*WEB.glob("templates/portal/*.html"), *WEB.glob("static/js/*.js")]
    used = {k for p in sources for k in KEY.findall(p.read_text(encoding="utf-8"))}
    assert len(used) > 100 and used - zh.keys() == set()
    for prefix in {k for p in sources for k in PREFIXED.findall(p.read_text(encoding="utf-8"))}:
        assert any(k.startswith(prefix + ".") for k in zh), prefix
    # keys handed around as strings (table headers, labels) before t() sees them
    prefixes = {k.split(".")[0] for k in zh}
    literal = {k for p in sources for k in LITERAL.findall(p.read_text(encoding="utf-8")) if k.split(".")[0] in prefixes}
    assert len(literal) > 100 and literal - zh.keys() == set()
    # the placeholders agree between the languages
    for k in zh:
        assert set(re.findall(r"\{(\w+)\}", zh[k])) == set(re.findall(r"\{(\w+)\}", en[k])), k


@given(st.one_of(st.none(), st.text(max_size=8)), st.one_of(st.none(), st.text(max_size=8)))
def test_language_is_always_one_we_have_and_an_explicit_choice_wins(query: str | None, cookie: str | None) -> None:
    lang = i18n.negotiate(query, cookie)
    assert lang in i18n.LANGS
    if query and query.lower()[:2] in i18n.LANGS:
        assert lang == query.lower()[:2]
    elif not (cookie and cookie.lower()[:2] in i18n.LANGS):
        assert lang == "zh"


def test_translator_falls_back_to_chinese_then_the_key() -> None:
    t = i18n.translator("en")
    assert t("nav.map") == "One Map"
    assert t("home.results", n=3, q="x") == "3 results for “x”"
    assert t("no.such.key") == "no.such.key"


def test_colour_table_override(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"01": "#ffff00", "0101": "#00ffff"}), encoding="utf-8")
    table = {e["code"]: e for e in colours.legend(colours.load_overrides(path))}
    assert table["01"]["colour"] == "#ffff00" and table["0101"]["colour"] == "#00ffff" and table["0101"]["name_zh"] == "水田"
    assert table["03"]["colour"] == colours.DEFAULT_COLOURS["03"]
    path.write_text(json.dumps({"01": "yellow"}), encoding="utf-8")
    with pytest.raises(LandcloudError) as err:
        colours.load_overrides(path)
    assert err.value.message.code == "config.colours"


@pytest.fixture
def client(settings: Settings, engine: sa.Engine) -> TestClient:
    units.load_divisions(engine, REFERENCE / "admin_heilongjiang.csv")
    units.set_boundary(engine, "230102", shapely.box(126.3, 45.6, 126.7, 45.9))
    return TestClient(create_app(settings))


def test_pages_render_in_the_chosen_language(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 200 and '<html lang="zh-CN">' in home.text and "一张图" in home.text
    boot = json.loads(re.search(r'<script id="lc-boot" type="application/json">(.*?)</script>', home.text, re.S).group(1))
    assert boot["lang"] == "zh" and boot["messages"]["nav.map"] == "一张图" and boot["user"] == {"signed_in": False}
    en = client.get("/map?lang=en")
    assert '<html lang="en">' in en.text and "One Map" in en.text and en.cookies.get("landcloud_lang") == "en"
    assert '<html lang="en">' in client.get("/here").text  # remembered
    assert '"next": "/"' in client.get("/signin?next=//evil.example").text


def test_errors_are_pages_for_people_and_json_for_programs(client: TestClient) -> None:
    page = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "页面不存在" in page.text and "<html" in page.text
    api = client.get("/api/no-such", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    missing = client.get("/api/datasets/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "dataset.not_found"


def test_regions_by_name_code_and_level(client: TestClient) -> None:
    r = client.get("/api/regions", params={"q": "道里"}).json()
    assert r["regions"][0]["code"] == "230102" and r["regions"][0]["bbox"] == [126.3, 45.6, 126.7, 45.9]
    by_code = client.get("/api/regions", params={"q": "2301"}).json()["regions"]
    assert by_code[0]["code"] == "230100" and all(g["code"].startswith("2301") for g in by_code)
    prefectures = client.get("/api/regions", params={"level": "prefecture", "limit": 50}).json()["regions"]
    assert len(prefectures) == 13 and {g["level"] for g in prefectures} == {"prefecture"}
    assert client.get("/api/regions", params={"q": "%"}).json()["regions"] == []  # LIKE wildcards are literal
    bad = client.get("/api/regions")
    assert bad.status_code == 400 and bad.json()["error"] == "regions.no_query" and bad.json()["message_zh"]


def test_portal_config_and_static_assets(client: TestClient) -> None:
    cfg = client.get("/api/portal/config").json()
    assert cfg["basemap"] is None and {e["code"] for e in cfg["landuse_legend"]} >= {"01", "0101", "03", "11"}
    # the map colours by the fields every tile carries, low zooms included
    from landcloud.publish.tiles import LOW_ZOOM_FIELDS

    assert cfg["landuse_fields"] == ["DLBM", "dlbm"] and tuple(cfg["landuse_fields"]) == LOW_ZOOM_FIELDS
    assert client.get("/static/js/map.js").status_code == 200
    lib = client.get("/static/vendor/maplibre-gl/maplibre-gl.js")
    assert lib.status_code == 200 and len(lib.content) > 100_000
    assert client.get("/static/vendor/maplibre-gl/../../package.json").status_code == 404


def test_signed_in_pages_send_anonymous_callers_to_sign_in(client: TestClient) -> None:
    for path in ("/submit", "/work", "/admin"):
        resp = client.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == f"/signin?next={path}", path
        page = client.get(path)  # followed: the sign-in page, which returns there afterwards
        assert page.status_code == 200 and f'"next": "{path}"' in page.text and 'id="signin-form"' in page.text
    nav = client.get("/").text
    assert 'href="/submit"' not in nav and 'href="/work"' not in nav and 'href="/admin"' not in nav


def test_system_settings_are_for_the_system_administrator_and_never_show_secrets(
    engine: sa.Engine, settings: Settings, tmp_path: Path, cheap_passwords: None
) -> None:
    from world import build

    world = build(engine, settings, TestClient(create_app(settings)), tmp_path)
    for who in (None, "sec", "aud", "hrbadmin"):
        assert world.get("/api/system/settings", who).status_code in (401, 403), who
    resp = world.get("/api/system/settings", "sys")
    assert resp.status_code == 200
    items = {s["env"]: s for s in resp.json()["settings"]}
    assert items["LANDCLOUD_DATA_DIR"]["value"] == str(settings.data_dir) and items["LANDCLOUD_MAX_UPLOAD_MB"]["value"] == 2048
    assert items["LANDCLOUD_SECRET_KEY"] == {**items["LANDCLOUD_SECRET_KEY"], "value": None, "secret": True, "set": True}
    assert items["LANDCLOUD_OIDC_CLIENT_SECRET"]["value"] is None and items["LANDCLOUD_OIDC_CLIENT_SECRET"]["set"] is False
    assert "test-secret" not in resp.text
    # every setting is described in both languages for the administrator reading the page
    assert all(s["description"] and s["description_zh"] for s in items.values()), [k for k, s in items.items() if not s["description_zh"]]
    assert items["LANDCLOUD_BATCH_SIZE"]["description_zh"] == "汇交和导出时每批流式处理的要素数"
    if settings.database_url and "@" in settings.database_url and ":" in settings.database_url.split("@")[0].split("//")[-1]:
        assert "***" in items["LANDCLOUD_DATABASE_URL"]["value"]


def test_a_deployment_basemap_and_colour_table_reach_the_map(settings: Settings, engine: sa.Engine, tmp_path: Path) -> None:
    colours_file = tmp_path / "colours.json"
    colours_file.write_text(json.dumps({"0101": "#123456"}), encoding="utf-8")
    configured = settings.model_copy(update={
        "basemap_url": "https://t0.tianditu.gov.cn/vec_w/wmts?tk=KEY&x={x}&y={y}&l={z}", "basemap_attribution": "天地图 审图号 GS(2024)0001号",
        "landuse_colours_file": colours_file,
    })
    resp = TestClient(create_app(configured)).get("/api/portal/config")
    cfg = resp.json()
    csp = resp.headers["content-security-policy"]  # the map may fetch the basemap's tiles, and nothing else outside
    assert "img-src 'self' https://t0.tianditu.gov.cn" in csp and "connect-src 'self' https://t0.tianditu.gov.cn" in csp
    assert "default-src 'self';" in csp and "script-src" not in csp
    assert cfg["basemap"] == {"url": configured.basemap_url, "attribution": "天地图 审图号 GS(2024)0001号"}
    assert {e["code"]: e["colour"] for e in cfg["landuse_legend"]}["0101"] == "#123456"
