"""Separation of duties in the booking workflow (interpretation of A1, Art. 3): by default
(`[booking] separate_approval = true`) a booking is approved by someone other than the account
that registered it. Over HTTP against own servers: the operator who registered a booking is
refused approving it (and not offered the button), the booking stays submitted; the
administrator approves it; the setting in force is shown to administrators; with the setting
off (a settings file) the registrant may approve.

Run: scripts/in-netns.sh python3 -m pytest -q -p no:cacheprovider tests/e2e/test_approval.py
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from selenium.webdriver.common.by import By

from e2e_util import T_PAGE, BrowserFactory, wait_for
from proto_util import OwnServer, browser_session, csrf_of, error_text

PASSWORD = "Approval-matkhau-2026!"
VN = ZoneInfo("Asia/Ho_Chi_Minh")


def start(settings: str | None = None) -> OwnServer:
    srv = OwnServer.fresh("approval", PASSWORD)
    if settings is not None:
        path = os.path.join(srv.data_dir, "hnth.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(settings)
        srv.extra_args = ["--config", path]
    return srv.start()


@pytest.fixture(scope="module")
def srv(inside_netns):
    s = start()
    try:
        yield s
    finally:
        s.stop()
        print(f"\napproval-test server log kept at {s.log_path}")


def register(s, srv: OwnServer, title: str, days: int) -> int:
    unit = srv.query("SELECT id FROM units WHERE code = 'so-tttt'")[0][0]
    host = srv.query("SELECT id FROM sites WHERE code = 'tinh-uy'")[0][0]
    other = srv.query("SELECT id FROM sites WHERE code = 'vinh-loi'")[0][0]
    d = (datetime.now(VN) + timedelta(days=days)).strftime("%d/%m/%Y")
    r = s.post(srv.base + "/bookings", allow_redirects=False, timeout=30, data=[
        ("csrf", csrf_of(s.get(srv.base + "/bookings/new", timeout=10).text)), ("title", title), ("kind", "hop"),
        ("host_unit", str(unit)), ("chair", "Ông A"), ("host_site", str(host)), ("sites", str(other)),
        ("date", d), ("start", "08:00"), ("end", "09:00"), ("action", "submit")])
    assert r.status_code == 303, f"registration refused: HTTP {r.status_code} {error_text(r.text)!r}"
    return int(r.headers["location"].rsplit("/", 1)[1])


def approve(s, srv: OwnServer, bid: int):
    page = s.get(f"{srv.base}/bookings/{bid}", timeout=10)
    assert page.status_code == 200
    return page.text, s.post(f"{srv.base}/bookings/{bid}/approve", data={"csrf": csrf_of(page.text)},
                             allow_redirects=False, timeout=30)


def status(srv: OwnServer, bid: int) -> str:
    return srv.query("SELECT status FROM bookings WHERE id = ?", bid)[0][0]


def test_the_registrant_may_not_approve_its_own_booking(srv):
    op = browser_session(srv.base, "dieuhanh", PASSWORD)
    bid = register(op, srv, "Họp do cán bộ điều hành đăng ký", 10)
    assert status(srv, bid) == "submitted"
    audit_before = srv.query("SELECT COUNT(*) FROM audit")[0][0]
    page, r = approve(op, srv, bid)
    assert r.status_code == 403, f"registrant approving its own booking: HTTP {r.status_code}"
    msg = html.unescape(error_text(r.text) or "")
    assert "tự phê duyệt" in msg and "(Điều 3)" in msg, f"refusal does not name the reason: {msg!r}"
    assert status(srv, bid) == "submitted", "the booking changed status"
    assert srv.query("SELECT decided_by FROM bookings WHERE id = ?", bid) == [(None,)]
    assert srv.query("SELECT COUNT(*) FROM audit")[0][0] == audit_before, "something was recorded as changed"
    assert srv.query("SELECT COUNT(*) FROM notices WHERE booking_id = ?", bid) == [(0,)], "notices were queued"
    assert 'id="approve"' not in page, "the registrant is offered the approve button"
    assert 'id="approve-by-other"' in page and "cán bộ khác" in html.unescape(page), \
        "the booking page does not say that someone else approves it"
    # Another control-center account approves it.
    admin = browser_session(srv.base, "quantri", PASSWORD)
    page, r = approve(admin, srv, bid)
    assert 'id="approve"' in page
    assert r.status_code == 303 and status(srv, bid) == "approved", f"administrator approve: HTTP {r.status_code}"
    qid = srv.query("SELECT id FROM accounts WHERE username = 'quantri'")[0][0]
    assert srv.query("SELECT decided_by FROM bookings WHERE id = ?", bid) == [(qid,)]


def test_in_the_browser_the_registrant_sees_its_approval_refused(srv):
    op = browser_session(srv.base, "dieuhanh", PASSWORD)
    bid = register(op, srv, "Họp do cán bộ điều hành đăng ký, xem trên trình duyệt", 12)
    with BrowserFactory(base=srv.base, password=PASSWORD) as browsers:
        page = browsers.new("registrant dieuhanh")
        page.sign_in("dieuhanh", PASSWORD, "/console")
        page.open(f"/bookings/{bid}", "#booking[data-status=submitted]")
        drv = page.driver
        assert not drv.find_elements(By.ID, "approve"), "the registrant is offered the approve button"
        note = drv.find_element(By.ID, "approve-by-other").text
        assert "cán bộ khác" in note, f"the page does not say who approves: {note!r}"
        # The approval the button would send, forged from the page (with its CSRF token).
        page.js("""const f = document.createElement('form');
                   f.method = 'post'; f.action = '/bookings/' + arguments[0] + '/approve';
                   const c = document.createElement('input');
                   c.type = 'hidden'; c.name = 'csrf'; c.value = document.querySelector('input[name=csrf]').value;
                   f.appendChild(c); document.body.appendChild(f); f.submit();""", bid)
        alert = wait_for(lambda: [e.text for e in drv.find_elements(By.CSS_SELECTOR, "p.error[role=alert]")],
                         T_PAGE, "registrant: the refusal of its own approval", detail=lambda: page.text()[:600])
        assert "tự phê duyệt" in alert[0] and "(Điều 3)" in alert[0], f"refusal without its reason: {alert}"
        assert page.path() == f"/bookings/{bid}/approve"
    assert status(srv, bid) == "submitted", "the booking changed status"


def test_the_administrator_may_not_approve_its_own_booking_either(srv):
    admin = browser_session(srv.base, "quantri", PASSWORD)
    bid = register(admin, srv, "Họp do quản trị đăng ký", 11)
    _, r = approve(admin, srv, bid)
    assert r.status_code == 403 and status(srv, bid) == "submitted"
    _, r = approve(browser_session(srv.base, "dieuhanh", PASSWORD), srv, bid)
    assert r.status_code == 303 and status(srv, bid) == "approved"


def test_the_setting_in_force_is_shown_to_administrators(srv):
    admin = browser_session(srv.base, "quantri", PASSWORD)
    page = html.unescape(admin.get(srv.base + "/admin/accounts", timeout=10).text)
    assert 'id="settings-in-force"' in page, "no box with the settings in force on /admin/accounts"
    assert "separate_approval = true" in page and "Điều 3" in page


def test_with_the_setting_off_the_registrant_may_approve(inside_netns):
    s = start("[booking]\nseparate_approval = false\n")
    try:
        op = browser_session(s.base, "dieuhanh", PASSWORD)
        bid = register(op, s, "Họp tự duyệt khi tắt thiết lập", 10)
        page, r = approve(op, s, bid)
        assert 'id="approve"' in page
        assert r.status_code == 303 and status(s, bid) == "approved", f"HTTP {r.status_code}"
        admin = browser_session(s.base, "quantri", PASSWORD)
        assert "separate_approval = false" in admin.get(s.base + "/admin/accounts", timeout=10).text
    finally:
        s.stop()
