"""The signed-in pages in headless Chromium: submission with its report, applications and grants, administration."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from builders import grid_parcels, write_geojson
from portal_site import Site, sign_in

pytestmark = pytest.mark.xdist_group("browser")
PARCELS = "harbin-dltb-demo"
UPLOADED = "web-upload-dltb"


def bearer(site: Site, name: str) -> dict[str, str]:
    data = {"username": name, "password": site.accounts[name][0]}
    if site.otp(name):
        data["otp"] = site.otp(name)
    resp = httpx.post(f"{site.url}/api/auth/token", data=data)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def sign_out(page: Any) -> None:
    page.click("#signout")
    page.wait_for_selector("[data-testid=signin-link]")


def submit_file(page: Any, path: Path) -> None:
    page.set_input_files("#sub-file", str(path))
    page.click("#sub-send")
    page.wait_for_selector("[data-testid=submit-result][data-ready=true]", timeout=60_000)


def test_an_upload_shows_its_report_and_a_rejected_one_its_findings_on_the_map(page: Any, site: Site, tmp_path: Path) -> None:
    good = write_geojson(tmp_path / "dltb.geojson", grid_parcels(3, county="230102"))
    sign_in(page, site, "hrb-submitter", "/submit")
    page.wait_for_selector("#sub-dataset[data-ready=true]")
    assert page.locator(f"#sub-dataset option[value={PARCELS}]").count() == 1  # the unit's own dataset is offered
    page.select_option("#sub-dataset", "__new__")
    page.fill("#sub-new-id", "catalog")  # reserved: the API refuses the upload itself, in its own words
    page.set_input_files("#sub-file", str(good))
    page.click("#sub-send")
    page.wait_for_selector("#sub-error:has-text('数据集标识“catalog”无效')")
    assert page.locator("[data-testid=submit-result]").is_hidden()
    page.fill("#sub-new-id", UPLOADED)
    page.fill("#sub-title", "上传测试图斑")
    page.select_option("#sub-schema", "DLTB")
    page.select_option("#sub-crs", "EPSG:4490")
    submit_file(page, good)
    assert page.locator("[data-testid=upload-percent]").inner_text() == "100%"
    assert page.eval_on_selector("[data-testid=upload-progress]", "p => p.value") == 100
    assert page.get_attribute("[data-testid=verdict]", "data-status") == "accepted"
    summary = page.locator("[data-testid=report-summary]").inner_text()
    assert UPLOADED in summary and "v1" in summary and "错误 0，警告 0" in summary and "EPSG:4490" in summary
    assert re.search(r"要素数\s+9\b", summary)
    page.click("[data-testid=dataset-link]")
    page.wait_for_url(f"**/datasets/{UPLOADED}")
    page.wait_for_selector("[data-testid=dataset][data-ready=true]")
    assert page.locator("h1").first.inner_text() == "上传测试图斑"
    assert page.locator("[data-testid=versions] tbody tr").count() == 1

    # the same parcels with an unknown land-use code and a self-intersecting (bow-tie) parcel
    features = grid_parcels(3, county="230102")
    features[4]["properties"]["DLBM"] = "9999"
    x0, y0, x1, y1 = 126.604, 45.744, 126.606, 45.746  # the square of parcel 9, drawn as a bow tie
    features[8]["geometry"] = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y1], [x1, y0], [x0, y1], [x0, y0]]]}
    bad = write_geojson(tmp_path / "dltb-bad.geojson", features)
    page.goto(f"{site.url}/submit?dataset={UPLOADED}")
    page.wait_for_selector("#sub-dataset[data-ready=true]")
    assert page.input_value("#sub-dataset") == UPLOADED
    page.select_option("#sub-schema", "DLTB")
    page.select_option("#sub-mode", "incremental")
    page.fill("#sub-key", "BSM")
    submit_file(page, bad)
    assert page.get_attribute("[data-testid=verdict]", "data-status") == "rejected"
    rules = page.locator("[data-testid=report-rules]").inner_text()
    assert "code.dlbm_invalid" in rules and "geometry.invalid" in rules
    code_row = page.locator("[data-testid=findings] tbody tr[data-rule='code.dlbm_invalid']")
    assert code_row.count() == 1
    text = code_row.inner_text()
    assert "错误" in text and "230102000005" in text and "9999" in text and "不是" in text  # message in the page language
    geom_row = page.locator("[data-testid=findings] tbody tr[data-rule='geometry.invalid']")
    assert "230102000009" in geom_row.inner_text() and "Self-intersection" in geom_row.inner_text()
    # the findings map draws both findings where they are
    page.wait_for_selector("[data-testid=findings-map][data-ready=true]", timeout=30_000)
    drawn = page.evaluate("""() => window.lcFindingsMap.queryRenderedFeatures({layers: ['findings-points']})
                             .map(f => ({rule: f.properties.rule, severity: f.properties.severity, xy: f.geometry.coordinates}))""")
    by_rule = {d["rule"]: d for d in drawn}
    assert set(by_rule) == {"code.dlbm_invalid", "geometry.invalid"} and {d["severity"] for d in drawn} == {"error"}
    lon, lat = by_rule["geometry.invalid"]["xy"]
    assert lon == pytest.approx(126.605, abs=1e-6) and lat == pytest.approx(45.745, abs=1e-6)  # where the edges cross
    assert page.evaluate("() => window.lcFindingsMap.queryRenderedFeatures({layers: ['context-outline']}).length") > 0  # v1's parcels around
    geom_row.locator("button").click()
    assert "geometry.invalid" in page.locator("[data-testid=finding-popup]").inner_text()
    # what to do next: correct and submit again, with the options kept; the store did not change
    assert "数据库未作任何修改" in page.locator("[data-testid=submit-result]").inner_text()
    page.click("[data-testid=submit-again]")
    assert page.evaluate("document.activeElement.id") == "sub-file"
    assert [page.input_value(s) for s in ("#sub-dataset", "#sub-schema", "#sub-mode", "#sub-key")] == [UPLOADED, "DLTB", "incremental", "BSM"]
    versions = httpx.get(f"{site.url}/api/datasets/{UPLOADED}/versions", headers=bearer(site, "hrb-submitter")).json()["versions"]
    assert [v["version"] for v in versions] == [1]
    # in English, the same report speaks English; on a phone, the page fits the screen
    page.goto(f"{site.url}/submit?lang=en&dataset={UPLOADED}")
    page.wait_for_selector("#sub-dataset[data-ready=true]")
    page.select_option("#sub-schema", "DLTB")
    submit_file(page, bad)
    assert page.locator("[data-testid=verdict] h2").inner_text() == "Rejected: the data was returned"
    english = page.locator("[data-testid=findings] tbody tr[data-rule='code.dlbm_invalid']").inner_text()
    assert "error" in english and "is not a valid class" in english
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_an_application_is_approved_in_the_inbox_and_becomes_a_grant(page: Any, site: Site) -> None:
    sign_in(page, site, "bank-viewer", f"/datasets/{PARCELS}")
    page.wait_for_selector("[data-testid=dataset][data-ready=true]")
    page.fill("[data-testid=apply] textarea", "贷款抵押物核查")
    page.click("[data-testid=apply] button[type=submit]")
    page.wait_for_selector("text=申请已提交")
    page.goto(f"{site.url}/work")
    page.wait_for_selector("[data-testid=work][data-ready=true]")
    assert page.locator("nav a[href='/work']").count() == 1 and page.locator("nav a[href='/submit']").count() == 0
    row = page.locator("[data-testid=my-applications] tbody tr", has_text="贷款抵押物核查")
    app_id = row.get_attribute("data-application")
    assert "待审批" in row.inner_text()
    page.goto(f"{site.url}/submit")  # not a submitter: told so, before choosing a file
    assert "不能汇交数据" in page.locator("[data-testid=submit-status]").inner_text() and page.is_disabled("#sub-send")
    sign_out(page)

    sign_in(page, site, "hrb-admin", "/work")
    page.wait_for_selector("[data-testid=work][data-ready=true]")
    item = page.locator(f"[data-testid=inbox] [data-application='{app_id}']")
    assert "贷款抵押物核查" in item.inner_text() and "演示银行哈尔滨分行" in item.inner_text()
    assert page.locator(f"[data-testid=my-datasets] tr[data-dataset={PARCELS}] a[href='/datasets/{PARCELS}#versions']").count() == 1
    item.locator("textarea").fill("同意，限贷款审核使用")
    item.locator("button[data-action=approve]").click()
    page.wait_for_selector("[data-testid=work-message]")
    assert page.locator("[data-testid=work-message]").inner_text() == "已批准"
    assert page.locator(f"[data-application='{app_id}']").count() == 0  # out of the inbox
    given = page.locator(f"[data-testid=given-grants] tbody tr[data-dataset={PARCELS}]", has_text="BANK-HRB-DEMO")
    assert given.count() >= 1 and "有效" in given.first.inner_text()
    sign_out(page)

    sign_in(page, site, "bank-viewer", "/work")
    page.wait_for_selector("[data-testid=work][data-ready=true]")
    mine = page.locator(f"[data-testid=my-applications] tr[data-application='{app_id}']").inner_text()
    assert "已批准" in mine and "同意，限贷款审核使用" in mine and "hrb-admin" in mine
    held = page.locator(f"[data-testid=my-grants] tbody tr[data-dataset={PARCELS}]")
    assert held.count() >= 1 and "有效" in held.first.inner_text()
    assert held.first.locator("button").count() == 0  # the holder cannot revoke
    grant_id = held.first.get_attribute("data-grant")
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # tables scroll inside, the page does not
    sign_out(page)

    # the owner's data administrator revokes it (after confirming)
    page.set_viewport_size({"width": 1280, "height": 860})
    sign_in(page, site, "hrb-admin", "/work")
    page.wait_for_selector("[data-testid=work][data-ready=true]")
    page.once("dialog", lambda d: d.accept())
    page.click(f"[data-testid=given-grants] tr[data-grant='{grant_id}'] button")
    page.wait_for_selector(f"[data-testid=given-grants] tr[data-grant='{grant_id}'] [data-state=revoked]")
    assert page.locator("[data-testid=work-message]").inner_text() == "授权已撤销"
    # "my datasets" leads to the versions, where the data administrator may roll back
    page.click(f"[data-testid=my-datasets] tr[data-dataset={PARCELS}] a[href$='#versions']")
    page.wait_for_selector("[data-testid=dataset][data-ready=true]")
    assert page.locator("#versions [data-version='1'] button").inner_text() == "回退到此版本"


def test_administration_shows_each_administrator_only_their_section(page: Any, site: Site) -> None:
    # security administrator: units and users, no audit, no system settings
    sign_in(page, site, "security-admin", "/admin")
    page.wait_for_selector("[data-testid=admin][data-ready=true]")
    assert page.locator("[data-testid=audit-search]").count() == 0 and page.locator("[data-testid=settings]").count() == 0
    assert page.locator("nav a[href='/admin']").count() == 1 and page.locator("nav a[href='/work']").count() == 0
    add_unit = page.locator("[data-testid=add-unit]")
    add_unit.locator("input[name=code]").fill("TAX-HRB-WEB")
    add_unit.locator("input[name=name]").fill("哈尔滨税务（测试）")
    add_unit.locator("input[name=region]").fill("230100")
    add_unit.locator("button").click()
    page.wait_for_selector("[data-testid=departments] tr[data-unit=TAX-HRB-WEB]")
    assert "哈尔滨税务（测试）" in page.locator("[data-testid=departments] tr[data-unit=TAX-HRB-WEB]").inner_text()
    form = page.locator("[data-testid=add-user]")
    form.locator("input[name=username]").fill("web-daoli-viewer")
    form.locator("input[name=display_name]").fill("道里查看员二")
    form.locator("input[name=unit]").fill("230102")
    form.locator("input[name=password]").fill("Web-Test-Passw0rd!")
    form.locator("label", has_text="查看员").locator("input").check()
    form.locator("button[type=submit]").click()
    row = page.locator("[data-testid=user-list] tr[data-user=web-daoli-viewer]")
    row.wait_for()
    text = row.inner_text()
    assert "道里查看员二" in text and "230102" in text and "查看员" in text and "启用" in text
    row.locator("button[data-action=disable]").click()
    page.wait_for_selector("[data-testid=user-list] tr[data-user=web-daoli-viewer][data-active=false]")
    # a second factor enrolled after confirming: the secret is shown once and works
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("[data-testid=user-list] tr[data-user=web-daoli-viewer] button[data-action=totp]").click()
    secret = page.locator("[data-testid=totp-secret] code[data-secret]")
    secret.wait_for()
    assert pyotp.TOTP(secret.inner_text()).now().isdigit() and "web-daoli-viewer" in page.locator("[data-testid=totp-secret]").inner_text()
    # the list is read again after the secret is shown: wait for it (reading the row at once raced the refresh)
    page.wait_for_selector("[data-testid=user-list] tr[data-user=web-daoli-viewer]:has-text('已绑定')")
    # a refused change shows the API's own message: separation of duties
    form.locator("input[name=username]").fill("web-two-hats")
    form.locator("input[name=unit]").fill("230000")
    form.locator("input[name=password]").fill("Web-Test-Passw0rd!")
    form.locator("label", has_text="系统管理员").locator("input").check()
    form.locator("label", has_text="审计管理员").locator("input").check()
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".form-message.error")
    assert "三员分立" in page.locator(".form-message.error").inner_text()
    sign_out(page)

    # system administrator: status and the effective settings, secrets never shown
    sign_in(page, site, "system-admin", "/admin")
    page.wait_for_selector("[data-testid=admin][data-ready=true]")
    assert page.locator("[data-testid=users]").count() == 0 and page.locator("[data-testid=audit-search]").count() == 0
    status = page.locator("[data-testid=system-status]").inner_text()
    assert "sqlite" in status
    assert str(site.data_dir) in page.locator("[data-testid=settings] tr[data-setting=LANDCLOUD_DATA_DIR]").inner_text()
    assert "已设置（不显示）" in page.locator("[data-testid=settings] tr[data-setting=LANDCLOUD_SECRET_KEY]").inner_text()
    assert "每批流式处理的要素数" in page.locator("[data-testid=settings] tr[data-setting=LANDCLOUD_BATCH_SIZE]").inner_text()
    assert "browser-test-secret" not in page.content()
    sign_out(page)

    # audit administrator: the log with the approval decision, an intact chain, CSV export
    apply = httpx.post(f"{site.url}/api/applications", headers=bearer(site, "bank-viewer"),
                       json={"dataset_id": PARCELS, "purpose": "审计页测试", "region": "230103"})
    assert apply.status_code == 201, apply.text
    app_id = apply.json()["id"]
    decided = httpx.post(f"{site.url}/api/applications/{app_id}/decision", headers=bearer(site, "hrb-admin"),
                         json={"approve": True, "comment": "审计页测试同意"})
    assert decided.status_code == 200, decided.text
    sign_in(page, site, "audit-admin", "/admin")
    page.wait_for_selector("[data-testid=audit-entries]")
    assert page.locator("[data-testid=users]").count() == 0 and page.locator("[data-testid=settings]").count() == 0
    search = page.locator("[data-testid=audit-search]")
    search.locator("input[name=action]").fill("application.*")
    search.locator("button").click()
    page.wait_for_selector("[data-testid=audit-entries] tbody tr[data-action='application.decision']")
    actions = page.eval_on_selector_all("[data-testid=audit-entries] tbody tr", "rows => rows.map(r => r.dataset.action)")
    assert actions and all(a.startswith("application.") for a in actions)
    decision = page.locator("[data-testid=audit-entries] tbody tr[data-action='application.decision']", has_text=app_id)
    assert "hrb-admin" in decision.inner_text() and "审计页测试同意" in decision.inner_text() and PARCELS in decision.inner_text()
    page.click("[data-testid=audit-verify-button]")
    page.wait_for_selector("[data-testid=audit-verify][data-ok]")
    assert page.get_attribute("[data-testid=audit-verify]", "data-ok") == "true"
    assert "审计链完整" in page.locator("[data-testid=audit-verify]").inner_text()
    href = page.get_attribute("[data-testid=audit-export]", "href")
    assert href == "/api/audit/export.csv?action=application.*"
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    csv = page.request.get(f"{site.url}{href}")
    assert csv.status == 200 and app_id in csv.text() and "auth.signin" not in csv.text()
