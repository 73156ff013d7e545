"""Journeys through the portal in headless Chromium, checked on what the browser drew and showed."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import shapely
from pyproj import Geod, Transformer

from landcloud.web.colours import DEFAULT_COLOURS

from portal_site import ARTIFACTS, Site, colour_pixels, rendered, sign_in, wait_for_map

pytestmark = pytest.mark.xdist_group("browser")
PARCELS = "harbin-dltb-demo"
BOUNDARIES = "hlj-xzq"
BACKGROUND = (0xF3, 0xF1, 0xEA)


def token(site: Site, name: str) -> str:
    data = {"username": name, "password": site.accounts[name][0]}
    if site.otp(name):
        data["otp"] = site.otp(name)
    resp = httpx.post(f"{site.url}/api/auth/token", data=data)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def parcels_of(site: Site, name: str, **params: Any) -> list[dict[str, Any]]:
    resp = httpx.get(f"{site.url}/ogc/collections/{PARCELS}/items", params={"f": "json", "limit": 2000, **params},
                     headers={"Authorization": f"Bearer {token(site, name)}"})
    assert resp.status_code == 200, resp.text
    return resp.json()["features"]


def blended(hex_colour: str, opacity: float) -> str:
    """The colour a fill of `opacity` over the map background shows on screen."""
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    mix = [round(c * opacity + b * (1 - opacity)) for c, b in zip(rgb, BACKGROUND)]
    return "#" + "".join(f"{c:02x}" for c in mix)


def class_colours() -> list[str]:
    """The on-screen land-class colours that cannot be mistaken for the background."""
    out = []
    for c in DEFAULT_COLOURS.values():
        b = blended(c, 0.85)
        if max(abs(int(b[i:i + 2], 16) - v) for i, v in zip((1, 3, 5), BACKGROUND)) > 30:
            out.append(b)
    return out


def open_map(page: Any, site: Site, who: str | None, center: tuple[float, float], zoom: float) -> None:
    """The map page (signed in as `who`, or public), at a view, with every tile drawn."""
    if who:
        sign_in(page, site, who, "/map")
    else:
        page.goto(f"{site.url}/map")
    wait_for_map(page)
    page.evaluate("([c, z]) => window.lcMap.jumpTo({center: c, zoom: z})", [list(center), zoom])
    wait_for_map(page)


def only_layers(page: Any, *keep: str) -> None:
    """Switches every other layer off in the layer tree (the zoning layers are drawn over the parcels)."""
    for box in page.locator("[data-testid=layer-tree] input[type=checkbox]").all():
        if box.get_attribute("data-dataset") not in keep:
            box.uncheck()
    wait_for_map(page)


def click_at(page: Any, lon: float, lat: float) -> None:
    x, y = page.evaluate("([lon, lat]) => { const p = window.lcMap.project([lon, lat]); return [p.x, p.y]; }", [lon, lat])
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)


def big_parcel(features: list[dict[str, Any]], zl_prefix: str) -> tuple[dict[str, Any], shapely.Point]:
    """A large parcel of a county, and a point well inside it."""
    mine = [f for f in features if f["properties"]["ZLDWDM"].startswith(zl_prefix)]
    f = max(mine, key=lambda f: f["properties"]["TBMJ"])
    return f, shapely.geometry.shape(f["geometry"]).representative_point()


def test_map_draws_parcels_coloured_by_land_class(page: Any, site: Site) -> None:
    open_map(page, site, "hrb-submitter", (126.62, 45.76), 11)
    only_layers(page, PARCELS, BOUNDARIES)
    drawn = rendered(page, PARCELS)
    assert len(drawn) > 20
    codes = {p["DLBM"] for p in drawn}
    assert len(codes) >= 3 and all(re.fullmatch(r"\d{4}[A-Z0-9]*", c) for c in codes)
    # real pixels in the class colours (fill opacity 0.85 over the background), not just DOM
    colours = class_colours()
    shown = colour_pixels(page, colours)
    assert shown > 50_000  # of the ~900×800 map
    # the legend lists the land-use classes, the layer tree groups by theme
    assert "0101 水田" in page.locator(f"[data-testid=legend-{PARCELS}]").inner_text()
    tree = page.locator("[data-testid=layer-tree]").inner_text()
    assert all(theme in tree for theme in ("国土调查", "国土空间规划", "地质灾害", "行政区划"))
    assert "公开版" not in tree  # staff reading the master boundaries are not shown its public edition as well
    # switching the layer off removes its pixels
    page.uncheck(f"input[data-dataset={PARCELS}]")
    wait_for_map(page)
    assert colour_pixels(page, colours) < shown / 50  # what is left: antialiased edges of other layers


def test_map_on_postgis_draws_the_same_parcels(page: Any, pg_site: Site) -> None:
    open_map(page, pg_site, "hrb-submitter", (126.62, 45.76), 11)
    only_layers(page, PARCELS, BOUNDARIES)
    drawn = rendered(page, PARCELS)
    assert len(drawn) > 20
    assert colour_pixels(page, class_colours()) > 5_000


def test_identify_and_what_is_here_show_the_right_parcel(page: Any, site: Site) -> None:
    feature, point = big_parcel(parcels_of(site, "hrb-submitter"), "230102")
    props = feature["properties"]
    open_map(page, site, "hrb-submitter", (point.x, point.y), 14)
    click_at(page, point.x, point.y)
    popup = page.locator("[data-testid=identify]")
    popup.wait_for(timeout=15_000)
    text = popup.inner_text()
    assert props["BSM"] in text and f"{props['DLBM']} {props['DLMC']}" in text
    assert "标识码" in text  # the Chinese alias of BSM
    # the full, printable report for the same point
    link = popup.get_by_role("link", name="查看完整报告（可打印）")
    page.goto(site.url + link.get_attribute("href"))
    page.wait_for_selector("[data-testid=here-report][data-ready=true]")
    report = page.locator("[data-testid=here-report]").inner_text()
    assert props["BSM"] in report and props["DLMC"] in report and "v2" not in report.split(props["BSM"])[0][-5:]
    assert "道里区" in report and "3° 带 42" in report
    # every layer at the point, each with its dataset and version: parcels, planning zone, hazard zone, boundary
    for dataset in (PARCELS, "harbin-ghfq-demo", "harbin-dzzh-yfq-demo", BOUNDARIES):
        assert page.locator(f"[data-testid=here-report] [data-dataset='{dataset}']").count() == 1, dataset
    assert re.search(r"(城镇发展区|农田保护区|乡村发展区|生态控制区|生态保护区|矿产能源发展区)", report)
    assert re.search(r"(高|中|低|不)易发区", report) and "规划分区名称" in report
    area = abs(Geod(ellps="GRS80").geometry_area_perimeter(shapely.geometry.shape(feature["geometry"]))[0])
    shown = float(re.search(r"面积\s*([\d,]+\.\d+)\s*平方米", report).group(1).replace(",", ""))
    assert shown == pytest.approx(area, rel=1e-3)


def test_what_is_here_takes_gauss_kruger_coordinates(page: Any, site: Site) -> None:
    feature, point = big_parcel(parcels_of(site, "hrb-submitter"), "230103")
    north, east = Transformer.from_crs("EPSG:4490", "EPSG:4530").transform(point.y, point.x)
    sign_in(page, site, "hrb-submitter", "/here")
    page.select_option("#here-crs", "gk")
    page.fill("#here-a", f"{north:.3f}")
    page.fill("#here-b", f"{east:.3f}")
    page.click("#here-form button[type=submit]")
    page.wait_for_selector("[data-testid=here-report][data-ready=true]")
    assert feature["properties"]["BSM"] in page.locator("[data-testid=here-report]").inner_text()


def test_a_county_user_sees_only_its_own_parcels_on_the_map(page: Any, site: Site) -> None:
    everyone = parcels_of(site, "hrb-submitter")
    _, nangang = big_parcel(everyone, "230103")
    # Daoli and Nangang side by side, at z12: the first zoom whose tiles carry every field (below it only DLBM)
    open_map(page, site, "daoli-viewer", (126.62, 45.76), 12)
    view = shapely.box(*page.evaluate("() => window.lcMap.getBounds().toArray().flat()"))
    assert any(f["properties"]["ZLDWDM"].startswith("230103") and view.intersects(shapely.geometry.shape(f["geometry"]))
               for f in everyone)  # Nangang's parcels are in view, for a caller who may see them
    drawn = rendered(page, PARCELS)
    assert drawn and all(p["ZLDWDM"].startswith("230102") for p in drawn)
    # in Nangang itself: nothing of the parcels layer is drawn, and identify finds no parcel
    page.evaluate("([lon, lat]) => window.lcMap.jumpTo({center: [lon, lat], zoom: 15})", [nangang.x, nangang.y])
    wait_for_map(page)
    assert [p for p in rendered(page, PARCELS) if p["ZLDWDM"].startswith("230103")] == []
    click_at(page, nangang.x, nangang.y)
    page.wait_for_selector("[data-testid=identify]")
    popup = page.locator("[data-testid=identify]")
    assert "南岗区" in popup.inner_text()  # the open boundaries layer answers there …
    assert popup.locator(f"[data-dataset={PARCELS}]").count() == 0  # … the parcels layer does not


def test_zoom_to_region_cursor_coordinates_and_measurement(page: Any, site: Site) -> None:
    page.goto(f"{site.url}/map")
    wait_for_map(page)
    page.fill("#goto-q", "道里区")
    page.click("#goto button[type=submit]")
    page.wait_for_function("() => document.body.dataset.region === '230102'")
    b = page.evaluate("() => window.lcMap.getBounds().toArray().flat()")
    assert 126.0 < b[0] < 126.7 and 45.4 < b[1] < 45.9 and b[2] > 126.6 and b[3] > 45.8
    # keyboard: Enter on the focused map identifies its centre
    page.focus("canvas.maplibregl-canvas")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=identify]")
    assert "道里区" in page.locator("[data-testid=identify]").inner_text()
    page.keyboard.press("Escape")
    # cursor coordinates: CGCS2000 and the 3° Gauss-Kruger zone of the point
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    coords = page.locator("[data-testid=coords]").inner_text()
    lon, lat = (float(v) for v in re.search(r"经度 ([\d.]+)° 纬度 ([\d.]+)°", coords).groups())
    north, east = Transformer.from_crs("EPSG:4490", "EPSG:4530").transform(lat, lon)
    x, y = (float(v.replace(",", "")) for v in re.search(r"X=([\d,.]+) Y=([\d,.]+)", coords).groups())
    assert "3° 带 42" in coords and "EPSG:4530" in coords
    assert x == pytest.approx(north, abs=0.05) and y == pytest.approx(east, abs=0.05)
    # distance, ellipsoidal: two clicks then a double click
    page.click("[data-tool=distance]")
    cx, cy = page.evaluate("() => window.lcMap.getCenter().toArray()")
    p1, p2 = (cx - 0.03, cy - 0.02), (cx + 0.03, cy + 0.02)
    click_at(page, *p1)
    page.wait_for_timeout(600)  # a person's two clicks, not a double click
    click_at(page, *p2)
    result = page.locator("[data-testid=measure-result]")
    metres = float(result.get_attribute("data-metres"))
    # clicks land on whole pixels: compare with the points the map took, which lie where we clicked
    a, c = json.loads(result.get_attribute("data-points"))
    assert a == pytest.approx(p1, abs=1e-3) and c == pytest.approx(p2, abs=1e-3)
    cgcs2000 = Geod(a=6378137, rf=298.257222101)
    assert metres == pytest.approx(cgcs2000.inv(a[0], a[1], c[0], c[1])[2], rel=1e-6)
    assert f"{metres:,.2f} 米" in result.inner_text()
    # area of a triangle
    page.click("[data-tool=area]")
    triangle = [(cx - 0.03, cy - 0.02), (cx + 0.03, cy - 0.02), (cx, cy + 0.02)]
    for p in triangle:
        click_at(page, *p)
        page.wait_for_timeout(600)
    m2 = float(result.get_attribute("data-m2"))
    taken = json.loads(result.get_attribute("data-points"))
    assert [c for p in taken for c in p] == pytest.approx([c for p in triangle for c in p], abs=1e-3)
    assert m2 == pytest.approx(abs(cgcs2000.geometry_area_perimeter(shapely.Polygon(taken))[0]), rel=1e-6)
    assert "亩" in result.inner_text()


def test_public_home_search_and_catalogue(page: Any, site: Site) -> None:
    page.goto(site.url)
    assert page.locator("nav").inner_text().startswith("首页")
    page.wait_for_selector("#catalogue .card")
    catalogue = page.locator("#catalogue").inner_text()
    assert "行政区划" in catalogue
    page.fill("#q", "行政区")
    page.click("#search button")
    page.wait_for_selector("[data-testid=search-results] .card")
    results = page.locator("[data-testid=search-results]").inner_text()
    assert "黑龙江省县级行政区" in results
    # the public sees no internal parcels anywhere: not in the catalogue, not on the map
    assert "哈尔滨" not in catalogue or "parcels" not in catalogue
    page.goto(f"{site.url}/map")
    wait_for_map(page)
    assert page.locator(f"input[data-dataset={PARCELS}]").count() == 0
    # the public map shows the published edition of the boundaries, never the master
    assert page.locator(f"input[data-dataset={BOUNDARIES}]").count() == 0
    assert len(rendered(page, f"{BOUNDARIES}-public")) > 0
    assert "公开版" in page.locator("[data-testid=layer-tree]").inner_text()


def test_dataset_page_versions_differences_and_links(page: Any, site: Site) -> None:
    sign_in(page, site, "hrb-submitter", f"/datasets/{PARCELS}")
    page.wait_for_selector("[data-testid=dataset][data-ready=true]")
    schema = page.locator("[data-testid=schema]").inner_text()
    assert "地类编码" in schema and "DLBM" in schema
    versions = page.locator("[data-testid=versions]").inner_text()
    assert "v1" in versions and "v2" in versions
    page.click("text=比较")
    page.wait_for_selector("[data-testid=diff] tbody tr")
    rows = page.locator("[data-testid=diff] tbody tr").count()
    assert 0 < rows <= 25
    page.wait_for_selector("#diffmap[data-ready=true]")
    assert page.locator("a[data-format=gpkg]").get_attribute("href") == f"/api/datasets/{PARCELS}/download?format=gpkg"
    assert page.locator(f"a[href='/ogc/collections/{PARCELS}']").count() == 1


def test_language_switch(page: Any, site: Site) -> None:
    page.goto(site.url)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.click("[data-testid=lang-switch]")
    page.wait_for_url("**lang=en")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("nav").inner_text().split("\n")[0].strip() == "Home"
    page.goto(f"{site.url}/map")  # the choice is remembered
    wait_for_map(page)
    assert "Layers" in page.locator(".sidebar").inner_text()
    assert "Administrative boundaries" in page.locator("[data-testid=layer-tree]").inner_text()
    page.click("[data-testid=lang-switch]")
    page.wait_for_url("**lang=zh")
    assert "图层" in page.locator(".sidebar").inner_text()


def test_phone_layout_and_error_page(browser: Any, site: Site) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="zh-CN", is_mobile=True, has_touch=True)
    pg = context.new_page()
    try:
        pg.goto(site.url)
        assert not pg.locator("nav#nav").is_visible()
        pg.click(".menu-toggle")
        assert pg.locator("nav#nav").is_visible()
        assert pg.evaluate("document.documentElement.scrollWidth") <= 375
        resp = pg.goto(f"{site.url}/no-such-page")
        assert resp.status == 404
        body = pg.locator("main").inner_text()
        assert "页面不存在" in body and "Traceback" not in pg.content()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "phone-404.png"))
    finally:
        context.close()
