"""The audit trail and the recorded violations on /admin/audit (A3, R4), over HTTP and in Chromium
against an own server: whoever the rules let view the audit trail (operators too) reads it; actions, objects and
changes are in Vietnamese (no raw keys or JSON), violations carry the rule, its article and a
Vietnamese description; the filters (dates dd/mm/yyyy, site, user, kind) narrow the list on the
server, and a malformed filter is answered with a Vietnamese message, not an error page.

Run: scripts/in-netns.sh python3 -m pytest -q -p no:cacheprovider tests/e2e/test_audit.py
"""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from e2e_util import T_PAGE, BrowserFactory, Page, wait_for
from proto_util import OwnServer, Ws, api_login, browser_session, csrf_of, error_text

PASSWORD = "Audit-matkhau-2026!"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
MEETING = "Họp kiểm tra nhật ký"
BOOKING = "Hội nghị kiểm tra nhật ký thay đổi"


def today(offset: int = 0) -> str:
    return (datetime.now(VN) + timedelta(days=offset)).strftime("%d/%m/%Y")


@pytest.fixture(scope="module")
def world(inside_netns):
    srv = OwnServer.fresh("audit", PASSWORD).start()
    try:
        ids = {code: i for i, code in srv.query("SELECT id, code FROM sites")}
        admin = browser_session(srv.base, "quantri", PASSWORD)
        op = browser_session(srv.base, "dieuhanh", PASSWORD)
        org = browser_session(srv.base, "so-tttt", PASSWORD)
        # create_account by quantri: a technician of Hồng Dân
        r = admin.post(srv.base + "/admin/accounts", allow_redirects=False, timeout=30, data={
            "csrf": csrf_of(admin.get(srv.base + "/admin/accounts", timeout=10).text), "username": "kt-nhat-ky",
            "display_name": "Kỹ thuật nhật ký", "role": "site_technician", "site": str(ids["hong-dan"]),
            "unit": "", "password": PASSWORD})
        assert r.status_code == 303, f"creating kt-nhat-ky: HTTP {r.status_code}"
        # open_meeting by dieuhanh (no site in it)
        console = Ws.open(srv.base, api_login(srv.base, "dieuhanh", PASSWORD)["token"], "console")
        console.expect_type("welcome")
        console.send({"type": "open_meeting", "title": MEETING})
        meeting = console.expect(lambda m: m.get("type") == "meeting_opened", "meeting_opened")["meeting"]["id"]
        # create_booking by so-tttt (host tinh-uy, with hong-dan), booking_approve by dieuhanh
        unit = srv.query("SELECT id FROM units WHERE code = 'so-tttt'")[0][0]
        d = today(9)
        r = org.post(srv.base + "/bookings", allow_redirects=False, timeout=30, data=[
            ("csrf", csrf_of(org.get(srv.base + "/bookings/new", timeout=10).text)), ("title", BOOKING),
            ("kind", "hoi_nghi"), ("host_unit", str(unit)), ("chair", "Ông A"), ("host_site", str(ids["tinh-uy"])),
            ("sites", str(ids["hong-dan"])), ("date", d), ("start", "08:00"), ("end", "09:00"), ("action", "submit")])
        assert r.status_code == 303, f"booking refused: {r.status_code}"
        bid = int(r.headers["location"].rsplit("/", 1)[1])
        page = op.get(f"{srv.base}/bookings/{bid}", timeout=10).text
        r = op.post(f"{srv.base}/bookings/{bid}/approve", data={"csrf": csrf_of(page)}, allow_redirects=False,
                    timeout=30)
        assert r.status_code == 303, f"approve: HTTP {r.status_code}"
        # A C6 violation (R4): the site device of Hồng Dân tries to dial.
        site = Ws.open(srv.base, api_login(srv.base, "dc-hong-dan", PASSWORD)["token"], "site")
        site.expect_type("welcome")
        site.send({"type": "dial", "meeting": meeting, "site": ids["hong-dan"]})
        e = site.expect_error("dial")
        assert e["code"] == "forbidden", e
        site.close()
        console.close()
        yield {"srv": srv, "admin": admin, "op": op, "org": org, "ids": ids, "bid": bid}
    finally:
        srv.stop()
        print(f"\naudit-test server log kept at {srv.log_path}")


@pytest.fixture(scope="module")
def browsers(world):
    with BrowserFactory(base=world["srv"].base, password=PASSWORD) as f:
        yield f


JS_TABLES = r"""
const rows = (id) => Array.from(document.querySelectorAll('#' + id + ' tbody tr'))
  .map(tr => Array.from(tr.cells).map(td => td.innerText.trim()));
const heads = (id) => Array.from(document.querySelectorAll('#' + id + ' thead th')).map(th => th.innerText.trim());
return {audit: rows('audit'), violations: rows('violations'), audit_heads: heads('audit'),
        violation_heads: heads('violations'), url: location.search};
"""


def filter_in_browser(page: Page, **choices: str) -> dict:
    """Fill the audit page's filter form as the operator would (dates typed, the rest chosen by
    their Vietnamese labels), press Lọc and read both tables once the page has reloaded."""
    drv = page.driver
    form = drv.find_element(By.ID, "audit-filters")
    for name in ("from", "to"):
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(choices.get(name, ""))
    for name in ("site", "user", "kind"):
        select = Select(form.find_element(By.NAME, name))
        if name in choices:
            select.select_by_visible_text(choices[name])
        else:
            select.select_by_index(0)  # all sites, users, kinds
    old = drv.find_element(By.ID, "audit-filters")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: not _attached(old) and drv.find_elements(By.ID, "audit-filters"), T_PAGE,
             f"audit page: reloaded with the filter {choices}", detail=lambda: page.text()[:400])
    return page.js(JS_TABLES)


def _attached(el) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException
    try:
        el.is_enabled()
        return True
    except StaleElementReferenceException:
        return False


def test_in_the_browser_the_operator_reads_and_filters_the_audit_trail(world, browsers):
    """The operator, in Chromium, opens the audit page from its navigation: Vietnamese headings,
    actions and objects, each change as old → new; then filters by date, site, user and kind
    with the form, and each filter narrows both tables on the server."""
    srv = world["srv"]
    page = browsers.new("operator dieuhanh")
    page.sign_in("dieuhanh", PASSWORD, "/console")
    page.open("/bookings", "nav a[href='/admin/audit']")
    page.driver.find_element(By.CSS_SELECTOR, "nav a[href='/admin/audit']").click()
    wait_for(lambda: page.path() == "/admin/audit" and page.driver.find_elements(By.ID, "audit"), T_PAGE,
             "operator: the audit page from the navigation", detail=lambda: page.text()[:400])
    t = page.js(JS_TABLES)
    assert t["audit_heads"] == ["Thời gian", "Người thực hiện", "Thao tác", "Đối tượng", "Thay đổi (trước → sau)"]
    assert t["violation_heads"] == ["Thời gian", "Quy tắc", "Điểm cầu", "Người thực hiện", "Chi tiết"]
    shown = page.text()
    for raw in ["open_meeting", "create_account", "booking_approve", "booking #", '{"']:
        assert raw not in shown, f"raw {raw!r} on the audit page"
    by_action = {r[2]: r for r in t["audit"]}
    assert len(t["audit"]) == srv.query("SELECT COUNT(*) FROM audit")[0][0], t["audit"]
    assert MEETING in by_action["Mở cuộc họp"][3], by_action
    assert by_action["Phê duyệt đăng ký họp"][4] == "Trạng thái: Chờ duyệt → Đã duyệt", by_action
    # Date, site, user and kind together: the approval of the booking with Hồng Dân.
    t = filter_in_browser(page, **{"from": today(), "to": today(), "site": "Huyện Hồng Dân", "user": "dieuhanh",
                                   "kind": "Phê duyệt đăng ký họp"})
    assert [r[2] for r in t["audit"]] == ["Phê duyệt đăng ký họp"] and BOOKING in t["audit"][0][3], t
    assert t["violations"] == [], t
    # The kind "violations": the site device's dial (C6), with the site.
    t = filter_in_browser(page, site="Huyện Hồng Dân", kind="Vi phạm quy chế (Điều 14)")
    assert t["audit"] == [] and [(v[1], v[2], v[3]) for v in t["violations"]] == \
        [("C6", "Huyện Hồng Dân", "dc-hong-dan")], t
    # A user alone; another site; a day with nothing.
    t = filter_in_browser(page, user="quantri")
    assert t["audit"] and {r[1] for r in t["audit"]} == {"quantri"} and t["violations"] == [], t
    t = filter_in_browser(page, site="Huyện Đông Hải")
    assert t["audit"] == [] and t["violations"] == [], t
    t = filter_in_browser(page, **{"from": today(1)})
    assert t["audit"] == [] and page.driver.find_element(By.ID, "audit-empty").text == "Không có mục nào."
    assert page.driver.find_element(By.NAME, "from").get_attribute("value") == today(1), "the form forgot the date"


def text_of(cell: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", cell))).strip()


def tables(page: str) -> tuple[list[list[str]], list[list[str]]]:
    """The audit rows and the violation rows, each a list of cell texts."""
    bodies = re.findall(r"<tbody>(.*?)</tbody>", page, re.S)
    assert len(bodies) == 2, f"expected the audit and the violations tables, got {len(bodies)} tbody"
    return tuple([[text_of(c) for c in re.findall(r"<td>(.*?)</td>", tr, re.S)]
                  for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)] for body in bodies)


def audit(s, srv, **params):
    return s.get(srv.base + "/admin/audit", params=params, allow_redirects=False, timeout=10)


def visible(page: str) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return text_of(body)


def test_operator_reads_the_audit_trail_in_vietnamese(world):
    srv = world["srv"]
    r = audit(world["op"], srv)
    assert r.status_code == 200, f"/admin/audit as the operator: HTTP {r.status_code}"
    assert error_text(r.text) is None, error_text(r.text)
    rows, violations = tables(r.text)
    text = visible(r.text)
    for raw in ["open_meeting", "create_account", "booking_approve", "create_booking", "meeting #", "booking #",
                '{"', "may not"]:
        assert raw not in text, f"raw {raw!r} on the audit page"
    by_action = {row[2]: row for row in rows}
    assert "Mở cuộc họp" in by_action, f"actions shown: {sorted(by_action)}"
    assert MEETING in by_action["Mở cuộc họp"][3], by_action["Mở cuộc họp"]
    assert "Cuộc họp" in by_action["Mở cuộc họp"][3]
    assert "Tạo tài khoản" in by_action and "kt-nhat-ky" in by_action["Tạo tài khoản"][3]
    created = by_action["Tạo tài khoản"][4]
    assert "Vai trò: Cán bộ kỹ thuật điểm cầu" in created and "Huyện Hồng Dân" in created, created
    approved = by_action["Phê duyệt đăng ký họp"]
    assert approved[1] == "dieuhanh" and BOOKING in approved[3], approved
    # Only what changed, field: old → new, in Vietnamese.
    assert approved[4] == "Trạng thái: Chờ duyệt → Đã duyệt", approved
    # The emergency opened from the console registers a booking of its own (B5): this is ours.
    registered = [row for row in rows if row[2] == "Đăng ký họp" and BOOKING in row[3]]
    assert len(registered) == 1, [row for row in rows if row[2] == "Đăng ký họp"]
    booking = registered[0][4]
    assert "Hình thức: Hội nghị" in booking and "Họp chính thức lúc: " + today(9) + " 08:00" in booking, booking
    # The violation: rule, article and a Vietnamese description.
    c6 = [v for v in violations if v[1] == "C6"]
    assert len(c6) == 1, violations
    at, rule, site, account, detail = c6[0]
    assert site == "Huyện Hồng Dân" and account == "dc-hong-dan", c6[0]
    assert "Chỉ Trung tâm điều khiển kết nối các điểm cầu" in detail and "điểm c khoản 2 Điều 7" in detail, detail
    assert "không được kết nối các điểm cầu" in detail, detail
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d", at), at
    assert "Lọc" in text and "Từ ngày" in text


def test_leadership_and_administrator_read_it_a_site_device_does_not(world):
    srv = world["srv"]
    assert audit(world["admin"], srv).status_code == 200
    assert audit(world["org"], srv).status_code == 403
    device = browser_session(srv.base, "dc-hong-dan", PASSWORD)
    assert audit(device, srv).status_code == 403


def test_filters_narrow_the_list(world):
    srv, op = world["srv"], world["op"]
    all_rows, all_violations = tables(audit(op, srv).text)
    assert len(all_rows) == srv.query("SELECT COUNT(*) FROM audit")[0][0]
    # by user
    rows, violations = tables(audit(op, srv, user="quantri").text)
    assert rows and all(r[1] == "quantri" for r in rows), rows
    assert len(rows) == srv.query("SELECT COUNT(*) FROM audit WHERE actor = 'quantri'")[0][0] < len(all_rows)
    assert violations == [], "violations of someone else shown when filtering by quantri"
    rows, violations = tables(audit(op, srv, user="dc-hong-dan").text)
    assert rows == [] and [v[3] for v in violations] == ["dc-hong-dan"]
    # by kind
    rows, violations = tables(audit(op, srv, kind="open_meeting").text)
    assert [r[2] for r in rows] == ["Mở cuộc họp"] and violations == [], rows
    rows, violations = tables(audit(op, srv, kind="violation").text)
    assert rows == [] and len(violations) == len(all_violations) == 1
    # by site: the booking with Hồng Dân, the account of Hồng Dân and the site's own violation
    rows, violations = tables(audit(op, srv, site=str(world["ids"]["hong-dan"])).text)
    assert sorted(r[2] for r in rows) == ["Phê duyệt đăng ký họp", "Tạo tài khoản", "Đăng ký họp"], rows
    assert len(violations) == 1
    rows, violations = tables(audit(op, srv, site=str(world["ids"]["dong-hai"])).text)
    assert rows == [] and violations == []
    # by date (dd/mm/yyyy, Asia/Ho_Chi_Minh)
    rows, violations = tables(audit(op, srv, **{"from": today(), "to": today()}).text)
    assert len(rows) == len(all_rows) and len(violations) == 1
    rows, violations = tables(audit(op, srv, **{"from": today(1)}).text)
    assert rows == [] and violations == []
    rows, violations = tables(audit(op, srv, to=today(-1)).text)
    assert rows == [] and violations == []
    # combined
    rows, _ = tables(audit(op, srv, user="dieuhanh", kind="booking_approve", **{"from": today(-3)}).text)
    assert [r[2] for r in rows] == ["Phê duyệt đăng ký họp"]
    # the filter form keeps what was asked
    page = html.unescape(audit(op, srv, user="dieuhanh", **{"from": today(-3)}).text)
    assert f'value="{today(-3)}"' in page and re.search(r'<option value="dieuhanh"\s+selected', page)


@pytest.mark.parametrize("params,want", [
    ({"from": "31/02/2026"}, "dd/mm/yyyy"),
    ({"from": "2026-01-01"}, "dd/mm/yyyy"),
    ({"to": "hôm qua"}, "dd/mm/yyyy"),
    ({"from": "10/01/2026", "to": "01/01/2026"}, "Từ ngày"),
    ({"site": "abc"}, "điểm cầu"),
    ({"kind": "drop_table"}, "loại thao tác"),
    ({"limit": "x"}, "số dòng"),
])
def test_bad_filter_input_is_explained_in_vietnamese(world, params, want):
    r = audit(world["op"], world["srv"], **params)
    assert r.status_code == 422, f"{params}: HTTP {r.status_code}"
    msg = html.unescape(error_text(r.text) or "")
    assert want in msg, f"{params}: {msg!r}"
    assert 'lang="vi"' in r.text and "<form" in r.text, "the filter form is not shown again"
