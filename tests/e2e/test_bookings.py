"""Booking registration (Art. 5 of Decision 561/QĐ-UBND, rules B1-B5 and P1) against a real server:

  * in headless Chromium: an organizer registers (check for conflicts, then submit), an operator
    approves, the organizer downloads the iCalendar invitation (B4);
  * e-mail really delivered over SMTP to an aiosmtpd server run by the test: the provider notice
    (B2) and one technician notice per technician of the booking's sites (P1), both with the .ics;
    an emergency booking (B5) is accepted less than 5 days ahead and alerts at once by e-mail and
    on the console WebSocket, and displaces a planned meeting (recorded; a draft displaces nothing);
  * the rules at their boundaries over HTTP (lead time B1, overlaps B3 also under concurrent
    requests, touching windows, form validation, CSRF, invitation only when approved, reasons, the
    role matrix A1), checking the SQLite file that nothing was saved when something was refused;
  * bookings and their status survive a restart;
  * the printable invitation letter (B4: only when approved, administrative layout, one A4 page
    when Chromium prints it), editing through the registration form (roles, status, B1 only when
    the start or the sites change, B3 without itself, an approved booking back to submitted with
    change notices over SMTP and its reminders withdrawn), held and closed by the control center,
    the provider's on-duty technician per meeting (L2), and the written notice PDF (type by
    content, 5 MiB, nothing saved on a refusal, other routes keeping the 256 KiB body limit);
  * the form as a user sees it, in Chromium: date and time fields with hints that are not values
    and a calendar, the written notice dated today in Vietnam, the preparation following the
    start unless set by hand, every error (fields and rules) at once, the conflict check in its
    own box (green when free), and the ISO date a date input posts accepted.

The server runs on the real clock, so every date is computed from "now" in Asia/Ho_Chi_Minh and
chosen clearly on one side of a boundary (the form has minute granularity).

Run: scripts/in-netns.sh python3 -m pytest -q tests/e2e/test_bookings.py
"""

from __future__ import annotations

import base64
import email
import email.policy
import html
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from e2e_util import T_PAGE, Abort, BrowserFactory, Page, free_port, wait_for
from proto_util import (
    MSG_CSRF_VI,
    MSG_FORBIDDEN_VI,
    OwnServer,
    Ws,
    api_login,
    binary,
    browser_session,
    csrf_of,
    error_text,
    session,
)

try:  # the RFC 5545 parser from PyPI (pip install icalendar); a minimal one below otherwise
    import icalendar
except ImportError:  # pragma: no cover - depends on the environment
    icalendar = None

PASSWORD = "Proto-Bookings-matkhau-2024!"
# Vietnam has kept UTC+07:00 all year since 1975: a fixed offset is Asia/Ho_Chi_Minh.
VN = timezone(timedelta(hours=7), "ICT")
T_MAIL = 20.0  # deadline for notices to arrive over SMTP
T_ALERT = 10.0  # "at once" (B5): the outbox is woken by the registration itself

PROVIDER = "truc.kythuat@vnpt.hnth.local"

MSG_NO_CONFLICT = "Không trùng lịch: có thể gửi đăng ký."
MSG_NOT_APPROVED = "Chỉ cuộc họp đã được phê duyệt mới có giấy mời (khoản 2 Điều 5, quy tắc B4)."
MSG_ERR = {
    "title": "Nhập tên cuộc họp (1–200 ký tự).",
    "kind": "Chọn hình thức cuộc họp.",
    "host_unit": "Chọn đơn vị chủ trì.",
    "chair": "Nhập người chủ trì.",
    "host_site": "Chọn điểm cầu chủ trì.",
    "sites": "Chọn ít nhất một điểm cầu tham dự ngoài điểm cầu chủ trì.",
    "date": "Ngày không hợp lệ: nhập theo dạng dd/mm/yyyy, ví dụ 15/12/2026.",
    "time": "Giờ không hợp lệ: nhập theo dạng HH:MM (24 giờ), ví dụ 08:00.",
}
MSG_END_BEFORE_START = "Thời gian kết thúc phải sau thời gian họp chính thức"


# --------------------------------------------------------------------------------------------
# SMTP: an aiosmtpd server on 127.0.0.1 that keeps every message it is given.


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    msg: email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.msg["Subject"] or "")

    @property
    def to(self) -> str:
        return str(self.msg["To"] or "")


class Mailbox:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mails: list[Mail] = []

    async def handle_DATA(self, server, session_, envelope):  # aiosmtpd handler hook
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self._lock:
            self._mails.append(Mail(envelope.mail_from, [r.lower() for r in envelope.rcpt_tos], msg))
        return "250 Message accepted for delivery"

    def all(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def about(self, title: str) -> list[Mail]:
        return [m for m in self.all() if title in m.subject]

    def describe(self) -> list[str]:
        return [f"{','.join(m.rcpt_tos)}: {m.subject}" for m in self.all()]


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    box.port = port
    try:
        yield box
    finally:
        ctl.stop()


# --------------------------------------------------------------------------------------------
# The server (own data dir, SMTP to the mailbox) and sessions


def _new_server(prefix: str, extra: list[str] | None = None) -> OwnServer:
    data = tempfile.mkdtemp(prefix=f"hnth-{prefix}-data-")
    logs = tempfile.mkdtemp(prefix=f"hnth-{prefix}-log-")
    return OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log", extra_args=extra or [])


@pytest.fixture(scope="module")
def srv(inside_netns, mailbox):
    s = _new_server("bookings", ["--smtp", f"127.0.0.1:{mailbox.port}"]).start()
    try:
        yield s
    finally:
        s.stop()
        print(f"\nbookings-test server log kept at {s.log_path}")


@pytest.fixture(autouse=True)
def _server_log_on_failure(request):
    yield
    s = request.node.funcargs.get("srv")
    if isinstance(s, OwnServer):
        print(f"--- own hnth server log tail ({s.log_path}) ---\n{s.log_tail(60)}")


@pytest.fixture(scope="module")
def ids(srv) -> dict[str, int]:
    """Site code -> id, from the database."""
    return {code: i for i, code in srv.query("SELECT id, code FROM sites")}


@pytest.fixture(scope="module")
def org(srv):
    return browser_session(srv.base, "so-tttt", PASSWORD)


@pytest.fixture(scope="module")
def op(srv):
    return browser_session(srv.base, "dieuhanh", PASSWORD)


# --------------------------------------------------------------------------------------------
# Dates


def now_vn() -> datetime:
    return datetime.now(VN)


def day(n: int) -> date:
    """The local (Asia/Ho_Chi_Minh) date n days from today."""
    return now_vn().date() + timedelta(days=n)


def dmy(d: date) -> str:
    return d.strftime("%d/%m/%Y")


def epoch(d: date, hhmm: str) -> int:
    h, m = map(int, hhmm.split(":"))
    return int(datetime(d.year, d.month, d.day, h, m, tzinfo=VN).timestamp())


# --------------------------------------------------------------------------------------------
# HTTP helpers


def form_choices(base: str, s) -> dict:
    r = s.get(base + "/bookings/new", timeout=10)
    assert r.status_code == 200, f"GET /bookings/new -> {r.status_code}"
    m = re.search(r'<select name="host_unit">(.*?)</select>', r.text, re.S)
    assert m, "no host_unit select on /bookings/new"
    units = re.findall(r'<option value="(\d+)"', m.group(1))
    return {"csrf": csrf_of(r.text), "units": units}


def booking_form(s, base: str, *, title: str, d: date | str, start: str, end: str, host: int, sites: list[int],
                 prep: str = "", emergency: bool = False, action: str = "submit", **over) -> list[tuple[str, str]]:
    ch = form_choices(base, s)
    fields = {
        "csrf": ch["csrf"], "title": title, "kind": "hop", "host_unit": ch["units"][0],
        "chair": "Ông Nguyễn Văn A, Phó Chủ tịch UBND tỉnh", "host_site": str(host),
        "date": d if isinstance(d, str) else dmy(d), "start": start, "end": end, "prep": prep,
        "notice_number": "123/STTTT-VP", "notice_date": dmy(day(0)), "action": action,
    }
    fields.update(over)
    pairs = [(k, v) for k, v in fields.items() if v is not None]
    pairs += [("sites", str(x)) for x in sites]
    if emergency:
        pairs.append(("emergency", "1"))
    return pairs


def post_booking(s, base: str, **kw):
    return s.post(base + "/bookings", data=booking_form(s, base, **kw), allow_redirects=False, timeout=30)


def created_id(r) -> int:
    assert r.status_code == 303, (f"registration refused: HTTP {r.status_code}; rules: {rules_error(r.text)!r}; "
                                  f"fields: {field_errors(r.text)}; {error_text(r.text)!r}")
    m = re.fullmatch(r"/bookings/(\d+)", r.headers.get("location", ""))
    assert m, f"registration redirected to {r.headers.get('location')!r}, not /bookings/<id>"
    return int(m.group(1))


def register(s, base: str, **kw) -> int:
    return created_id(post_booking(s, base, **kw))


def field_errors(page: str) -> dict[str, str]:
    return {k: html.unescape(v).strip()
            for k, v in re.findall(r'<span class="field-error" id="error-([a-z_]+)">(.*?)</span>', page, re.S)}


def rules_error(page: str) -> str | None:
    m = re.search(r'id="error-rules">.*?<pre>(.*?)</pre>', page, re.S)
    return html.unescape(m.group(1)).strip() if m else None


def alert_text(page: str) -> str | None:
    t = error_text(page)
    return html.unescape(t) if t is not None else None


def csrf_for(s, base: str, bid: int) -> str:
    r = s.get(f"{base}/bookings/{bid}", timeout=10)
    assert r.status_code == 200, f"GET /bookings/{bid} -> {r.status_code}"
    return csrf_of(r.text)


def step(s, base: str, bid: int, what: str, reason: str = "", csrf: str | None = None):
    token = csrf_for(s, base, bid) if csrf is None else csrf
    return s.post(f"{base}/bookings/{bid}/{what}", data={"csrf": token, "reason": reason},
                  allow_redirects=False, timeout=30)


def status_of(srv: OwnServer, bid: int) -> str:
    rows = srv.query("SELECT status FROM bookings WHERE id = ?", bid)
    assert rows, f"booking #{bid} is not in the database"
    return rows[0][0]


def counts(srv: OwnServer) -> tuple[int, int]:
    return (srv.query("SELECT COUNT(*) FROM bookings")[0][0], srv.query("SELECT COUNT(*) FROM booking_sites")[0][0])


# --------------------------------------------------------------------------------------------
# iCalendar


def unfold(text: str) -> list[str]:
    return re.sub(r"\r?\n[ \t]", "", text).replace("\r\n", "\n").split("\n")


def check_ics(text: str, title: str, d: date, start: str, end: str, where: str) -> None:
    """SUMMARY has the title; DTSTART/DTEND carry TZID=Asia/Ho_Chi_Minh and the chosen local times;
    a VTIMEZONE for Asia/Ho_Chi_Minh exists."""
    want_start = f"{d:%Y%m%d}T{start.replace(':', '')}00"
    want_end = f"{d:%Y%m%d}T{end.replace(':', '')}00"
    lines = unfold(text)
    assert lines[0] == "BEGIN:VCALENDAR", f"{where}: not an iCalendar file: {text[:200]!r}"
    # Raw form as asked by the invitation's readers (Outlook, Thunderbird): no UTC conversion.
    assert f"DTSTART;TZID=Asia/Ho_Chi_Minh:{want_start}" in lines, \
        f"{where}: no DTSTART;TZID=Asia/Ho_Chi_Minh:{want_start} in\n{text}"
    assert f"DTEND;TZID=Asia/Ho_Chi_Minh:{want_end}" in lines, f"{where}: no DTEND {want_end} in\n{text}"
    if icalendar is not None:
        cal = icalendar.Calendar.from_ical(text)
        events = cal.walk("VEVENT")
        assert len(events) == 1, f"{where}: {len(events)} VEVENTs"
        ev = events[0]
        assert title in str(ev.get("SUMMARY")), f"{where}: SUMMARY {ev.get('SUMMARY')!r} lacks {title!r}"
        assert ev["DTSTART"].params.get("TZID") == "Asia/Ho_Chi_Minh", ev["DTSTART"].params
        dt = ev.decoded("DTSTART")
        h, m = map(int, start.split(":"))
        assert (dt.date(), dt.hour, dt.minute) == (d, h, m), f"{where}: DTSTART decodes to {dt}"
        assert dt.utcoffset() == timedelta(hours=7), f"{where}: DTSTART offset {dt.utcoffset()}"
        tzs = [str(z.get("TZID")) for z in cal.walk("VTIMEZONE")]
        assert "Asia/Ho_Chi_Minh" in tzs, f"{where}: VTIMEZONE TZIDs {tzs}"
    else:
        summary = [ln for ln in lines if ln.startswith("SUMMARY")]
        assert summary and title in summary[0].split(":", 1)[1].replace("\\,", ",").replace("\\;", ";"), \
            f"{where}: SUMMARY {summary} lacks {title!r}"
        assert "BEGIN:VTIMEZONE" in lines and "TZID:Asia/Ho_Chi_Minh" in lines, f"{where}: no VTIMEZONE in\n{text}"
        assert lines.index("BEGIN:VTIMEZONE") < lines.index("END:VTIMEZONE")


# --------------------------------------------------------------------------------------------
# 1. The browser: register (check, submit), approve, download the invitation


def browser_login(page: Page, user: str) -> None:
    page.sign_in(user, PASSWORD)


def path_of(page: Page) -> str:
    return page.path()


def body_text(page: Page) -> str:
    return page.text()


def test_browser_register_check_submit_approve_and_download_invitation(srv, ids):
    title = "Hội nghị trực tuyến triển khai chuyển đổi số"
    d = day(6)
    start, end, prep = "08:30", "10:00", "08:00"
    guests = ["tp-bac-lieu", "hoa-binh"]
    before = counts(srv)
    downloads = tempfile.mkdtemp(prefix="hnth-e2e-downloads-")
    browsers = BrowserFactory(base=srv.base, password=PASSWORD)
    try:
        org = browsers.new("organizer so-tttt")
        org.driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
        browser_login(org, "so-tttt")
        org.driver.get(srv.base + "/bookings/new")
        wait_for(lambda: org.driver.find_elements(By.CSS_SELECTOR, "form.booking-form input[name=title]"), T_PAGE,
                 "organizer: the registration form", detail=lambda: body_text(org)[:400])
        drv = org.driver
        drv.find_element(By.NAME, "title").send_keys(title)
        Select(drv.find_element(By.NAME, "kind")).select_by_value("hoi_nghi")
        unit = Select(drv.find_element(By.NAME, "host_unit"))
        assert [o.text for o in unit.options] == ["Sở Thông tin và Truyền thông"], \
            f"an organizer may host only for its own unit; offered {[o.text for o in unit.options]}"
        drv.find_element(By.NAME, "chair").send_keys("Giám đốc Sở Thông tin và Truyền thông")
        Select(drv.find_element(By.NAME, "host_site")).select_by_value(str(ids["tinh-uy"]))
        for code in guests:
            drv.find_element(By.CSS_SELECTOR, f"input[name=sites][value='{ids[code]}']").click()
        drv.find_element(By.NAME, "date").send_keys(dmy(d))
        drv.find_element(By.NAME, "start").send_keys(start)
        drv.find_element(By.NAME, "end").send_keys(end)
        drv.find_element(By.NAME, "prep").send_keys(prep)
        drv.find_element(By.NAME, "notice_number").send_keys("45/STTTT-VP")

        # "Kiểm tra trùng lịch": the same form comes back with the check's box (free), nothing saved.
        assert not drv.find_elements(By.ID, "conflict-check")
        drv.find_element(By.CSS_SELECTOR, "button[name=action][value=check]").click()
        wait_for(lambda: any(MSG_NO_CONFLICT in e.text for e in drv.find_elements(By.CSS_SELECTOR, "#conflict-check.ok")),
                 T_PAGE, f"organizer: the check's box saying {MSG_NO_CONFLICT!r}",
                 detail=lambda: body_text(org)[:600])
        assert counts(srv) == before, "checking for conflicts saved something"
        assert drv.find_element(By.NAME, "title").get_attribute("value") == title
        assert drv.find_element(By.NAME, "date").get_attribute("value") == dmy(d)
        for code in guests:
            assert drv.find_element(By.CSS_SELECTOR, f"input[name=sites][value='{ids[code]}']").is_selected(), \
                f"site {code} lost its tick after the check"

        drv.find_element(By.ID, "submit-booking").click()
        bid = int(wait_for(lambda: (re.fullmatch(r"/bookings/(\d+)", path_of(org)) or [None, None])[1], T_PAGE,
                           "organizer: redirect to the new booking's page",
                           detail=lambda: {"url": drv.current_url, "body": body_text(org)[:600]}))
        wait_for(lambda: drv.find_elements(By.CSS_SELECTOR, "#booking[data-status=submitted]"), T_PAGE,
                 "organizer: the booking page shows status submitted", detail=lambda: body_text(org)[:600])
        assert not drv.find_elements(By.ID, "approve"), "an organizer is offered the approve button"
        assert not drv.find_elements(By.ID, "invitation"), "an invitation link before approval"
        row = srv.query("SELECT title, kind, status, official_start, official_end, preparation_start, emergency "
                        "FROM bookings WHERE id = ?", bid)
        assert row == [(title, "hoi_nghi", "submitted", epoch(d, start), epoch(d, end), epoch(d, prep), 0)], row
        sites = {r[0] for r in srv.query("SELECT site_id FROM booking_sites WHERE booking_id = ?", bid)}
        assert sites == {ids["tinh-uy"], ids["tp-bac-lieu"], ids["hoa-binh"]}, sites

        # An operator, in another browser, approves.
        oper = browsers.new("operator dieuhanh")
        browser_login(oper, "dieuhanh")
        oper.driver.get(f"{srv.base}/bookings/{bid}")
        oper.click("#approve")
        wait_for(lambda: oper.driver.find_elements(By.CSS_SELECTOR, "#booking[data-status=approved]"), T_PAGE,
                 "operator: the booking page shows status approved", detail=lambda: body_text(oper)[:600])
        assert status_of(srv, bid) == "approved"

        # The organizer downloads the invitation.
        drv.get(f"{srv.base}/bookings/{bid}")
        org.click("#invitation")
        target = os.path.join(downloads, f"hop-{bid}.ics")

        def downloaded():
            names = os.listdir(downloads)
            return os.path.exists(target) and not any(n.endswith(".crdownload") for n in names) \
                and os.path.getsize(target) > 0
        wait_for(downloaded, T_PAGE, f"organizer: the invitation downloaded as {target}",
                 detail=lambda: os.listdir(downloads))
        with open(target, encoding="utf-8") as f:
            check_ics(f.read(), title, d, start, end, "downloaded invitation")
    finally:
        browsers.quit_all()
        shutil.rmtree(downloads, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# 2. E-mail over SMTP: approval notices (B2, P1) and emergency alerts (B5)


def technicians(srv: OwnServer, site_codes: list[str]) -> set[str]:
    marks = ",".join("?" * len(site_codes))
    return {r[0].lower() for r in srv.query(
        f"SELECT t.email FROM technicians t JOIN sites s ON s.id = t.site_id WHERE s.code IN ({marks}) "
        "AND t.active = 1 AND t.email != ''", *site_codes)}


def ics_attachments(m: Mail) -> list[tuple[str, str]]:
    out = []
    for part in m.msg.walk():
        if part.get_content_type() == "text/calendar":
            out.append((part.get_filename() or "", part.get_content()))
    return out


def test_approval_mails_provider_and_each_technician_with_the_invitation(srv, mailbox, ids, org, op):
    title = "Giao ban trực tuyến quý IV"
    d = day(7)
    start, end = "09:00", "11:00"
    codes = ["tinh-uy", "hoa-binh", "dong-hai", "tp-bac-lieu"]
    techs = technicians(srv, codes)
    # The demo's technicians: Hòa Bình has two, Đông Hải none.
    assert techs == {"kythuat1.tinh-uy@hnth.local", "kythuat1.hoa-binh@hnth.local",
                     "kythuat2.hoa-binh@hnth.local", "kythuat1.tp-bac-lieu@hnth.local"}, techs
    bid = register(org, srv.base, title=title, d=d, start=start, end=end, host=ids["tinh-uy"],
                   sites=[ids[c] for c in codes[1:]])
    assert status_of(srv, bid) == "submitted"
    assert srv.query("SELECT COUNT(*) FROM notices WHERE booking_id = ?", bid) == [(0,)], \
        "notices queued for a booking that is not approved"

    r = step(op, srv.base, bid, "approve")
    assert r.status_code == 303, f"operator approve: HTTP {r.status_code} {alert_text(r.text)!r}"
    assert status_of(srv, bid) == "approved"

    want = techs | {PROVIDER}

    def delivered():
        got = [rc for m in mailbox.about(title) for rc in m.rcpt_tos]
        return set(got) >= want and got

    got = wait_for(delivered, T_MAIL, f"notices for {title!r} to {sorted(want)} over SMTP",
                   detail=lambda: {"mailbox": mailbox.describe(),
                                   "outbox": srv.query("SELECT kind, to_addr, sent_at, attempts, last_error "
                                                       "FROM notices WHERE booking_id = ?", bid)})
    assert sorted(got) == sorted(want), f"one notice each expected, got {sorted(got)}"
    mails = mailbox.about(title)
    for m in mails:
        who = m.rcpt_tos[0]
        assert len(m.rcpt_tos) == 1 and who in m.to.lower(), f"{who}: envelope {m.rcpt_tos} vs To {m.to!r}"
        body = m.msg.get_body(preferencelist=("plain",)).get_content()
        if who == PROVIDER:
            assert "khoản 1 Điều 5" in body, f"provider notice does not cite B2: {body!r}"
        else:
            assert "khoản 1 Điều 6" in body, f"technician notice does not cite P1: {body!r}"
        assert f"{int(start[:2]):02d}:{start[3:]}" in body and dmy(d) in body, \
            f"{who}: the notice does not give the official time {dmy(d)} {start}: {body!r}"
        atts = ics_attachments(m)
        assert len(atts) == 1, f"{who}: {len(atts)} text/calendar attachments"
        name, text = atts[0]
        assert name == f"hop-{bid}.ics", f"{who}: attachment named {name!r}"
        # iMIP (RFC 6047 §2.4): a `method` on the MIME part must be the calendar's METHOD.
        part = next(p for p in m.msg.walk() if p.get_content_type() == "text/calendar")
        mime_method = part.get_param("method")
        ics_method = next((ln.split(":", 1)[1] for ln in unfold(text) if ln.startswith("METHOD:")), None)
        if mime_method is not None or ics_method is not None:
            assert mime_method is not None and ics_method is not None and \
                mime_method.upper() == ics_method.upper(), \
                f"{who}: Content-Type method={mime_method!r} but the calendar's METHOD is {ics_method!r}"
        check_ics(text, title, d, start, end, f"invitation attached for {who}")
    # The outbox agrees: every immediate notice sent, the reminders still waiting for their time.
    # (A notice is marked sent once the SMTP server has answered the end of its data, which may
    # be just after the mailbox holds it.)
    def outbox():
        return srv.query("SELECT kind, to_addr, sent_at IS NOT NULL, due_at <= strftime('%s','now') "
                         "FROM notices WHERE booking_id = ? ORDER BY id", bid)

    wait_for(lambda: sorted(r[1].lower() for r in outbox() if r[2]) == sorted(want), T_MAIL,
             "every immediate notice marked sent in the outbox", detail=outbox)
    rows = outbox()
    assert {r[0] for r in rows if r[2]} == {"provider_notice", "technician_notice"}, rows
    reminders = [r for r in rows if r[0] == "reminder"]
    assert reminders and all(not r[2] and not r[3] for r in reminders), f"reminders: {reminders}"


def test_emergency_booking_under_five_days_is_accepted_and_alerts_at_once(srv, mailbox, ids, org):
    title = "Họp khẩn ứng phó bão số 9"
    d = day(2)
    codes = ["tinh-uy", "phuoc-long", "vinh-loi"]
    console = Ws.open(srv.base, api_login(srv.base, "dieuhanh", PASSWORD)["token"], "console dieuhanh")
    try:
        console.expect_type("welcome")
        console.drain()
        before = counts(srv)
        # Without the checkbox the same request is refused (B1) ...
        r = post_booking(org, srv.base, title=title, d=d, start="14:00", end="16:00", host=ids["tinh-uy"],
                         sites=[ids[c] for c in codes[1:]])
        assert r.status_code == 422 and "khoản 1 Điều 5" in (rules_error(r.text) or ""), \
            f"non-emergency 2 days ahead: HTTP {r.status_code} {rules_error(r.text)!r}"
        assert counts(srv) == before
        # ... with it, accepted at once.
        bid = register(org, srv.base, title=title, d=d, start="14:00", end="16:00", host=ids["tinh-uy"],
                       sites=[ids[c] for c in codes[1:]], emergency=True)
        assert srv.query("SELECT status, emergency FROM bookings WHERE id = ?", bid) == [("submitted", 1)]
        alert = console.expect_type("alert", timeout=T_ALERT)
        assert alert.get("kind") == "emergency" and alert.get("booking") == bid and alert.get("title") == title, alert

        want = technicians(srv, codes) | {PROVIDER}
        assert len(want) == 4, want

        def delivered():
            got = [rc for m in mailbox.about(title) for rc in m.rcpt_tos]
            return set(got) >= want and got

        got = wait_for(delivered, T_ALERT, f"emergency alerts for {title!r} to {sorted(want)} by e-mail",
                       detail=lambda: {"mailbox": mailbox.describe(),
                                       "outbox": srv.query("SELECT kind, to_addr, sent_at, last_error FROM notices "
                                                           "WHERE booking_id = ?", bid)})
        assert sorted(got) == sorted(want), f"one alert each expected, got {sorted(got)}"
        for m in mailbox.about(title):
            assert "KHẨN" in m.subject, m.subject
            body = m.msg.get_body(preferencelist=("plain",)).get_content()
            assert "khoản 3 Điều 5" in body, f"alert does not cite B5: {body!r}"
    finally:
        console.close()


def test_emergency_displaces_a_planned_meeting_and_that_is_recorded(srv, ids, org, op):
    d = day(16)
    planned_title = "Hội nghị sơ kết 6 tháng"
    planned = register(org, srv.base, title=planned_title, d=d, start="09:00", end="11:00", host=ids["tinh-uy"],
                       sites=[ids["hong-dan"]])
    assert step(op, srv.base, planned, "approve").status_code == 303
    # A draft is not a registration: saving an emergency draft cancels nobody's meeting.
    draft = register(org, srv.base, title="Bản nháp họp khẩn về hạn mặn", d=d, start="09:30", end="10:30",
                     host=ids["hong-dan"], sites=[ids["phuoc-long"]], emergency=True, action="draft")
    assert status_of(srv, draft) == "draft"
    assert status_of(srv, planned) == "approved", "an emergency *draft* displaced a planned meeting"

    title = "Họp khẩn ứng phó sạt lở bờ biển"
    # Checking first: the check's box says which meeting it would displace (B5), nothing changes.
    r = post_booking(org, srv.base, title=title, d=d, start="09:30", end="10:30", host=ids["hong-dan"],
                     sites=[ids["phuoc-long"]], emergency=True, action="check")
    assert r.status_code == 200 and check_result(r.text) == ("displaces", [f"{planned_title} (#{planned})"]), \
        f"checking the emergency: HTTP {r.status_code} {check_result(r.text)}"
    assert status_of(srv, planned) == "approved", "checking displaced a meeting"
    # Without a valid time there is nothing to check against: it says so.
    r = post_booking(org, srv.base, title=title, d=d, start="9 giờ", end="10:30", host=ids["hong-dan"],
                     sites=[ids["phuoc-long"]], emergency=True, action="check")
    assert r.status_code == 422 and (check_result(r.text) or ("",))[0] == "unchecked", check_result(r.text)
    bid = register(org, srv.base, title=title, d=d, start="09:30", end="10:30", host=ids["hong-dan"],
                   sites=[ids["phuoc-long"]], emergency=True)
    assert status_of(srv, bid) == "submitted"
    (status, reason), = srv.query("SELECT status, reason FROM bookings WHERE id = ?", planned)
    assert status == "cancelled", f"the planned meeting sharing Hồng Dân is {status}"
    assert reason and title in reason and f"#{bid}" in reason and "khoản 3 Điều 5" in reason, \
        f"the displacement is not recorded in Vietnamese with the emergency and the article: {reason!r}"
    audit = srv.query("SELECT actor, after_json FROM audit WHERE action = 'displace_booking' AND entity_id = ?",
                      str(planned))
    assert len(audit) == 1 and audit[0][0] == "so-tttt" and f'"displaced_by":{bid}' in audit[0][1].replace(" ", ""), \
        f"audit of the displacement: {audit}"
    page = html.unescape(org.get(f"{srv.base}/bookings/{planned}", timeout=10).text)
    assert 'data-status="cancelled"' in page and title in page, "the planned booking's page does not show why"


# --------------------------------------------------------------------------------------------
# 3. Rules at the boundary, over HTTP


def test_lead_time_four_days_ahead_is_refused_citing_article_5_1(srv, ids, org):
    before = counts(srv)
    r = post_booking(org, srv.base, title="Họp đăng ký muộn", d=day(4), start="12:00", end="13:00",
                     host=ids["hong-dan"], sites=[ids["dong-hai"]])
    assert r.status_code == 422, f"4 days ahead: HTTP {r.status_code}"
    text = rules_error(r.text)
    assert text and "khoản 1 Điều 5" in text and "5 ngày" in text, f"refusal text: {text!r}"
    assert counts(srv) == before, "a refused registration was saved"
    # The check button says the same (nothing saved either).
    r = post_booking(org, srv.base, title="Họp đăng ký muộn", d=day(4), start="12:00", end="13:00",
                     host=ids["hong-dan"], sites=[ids["dong-hai"]], action="check")
    assert r.status_code == 422 and "khoản 1 Điều 5" in (rules_error(r.text) or "")
    assert counts(srv) == before


def _local_slot(at: datetime, step_min: int) -> tuple[date, str, str]:
    """(date, start, end) for a meeting starting at `at` floored to the minute (moved by step_min
    minutes while it is 23:59, so that a 1-minute-or-more meeting fits in the same day)."""
    at = at.astimezone(VN).replace(second=0, microsecond=0)
    while at.hour == 23 and at.minute == 59:
        at += timedelta(minutes=step_min)
    end = min(at + timedelta(minutes=60), at.replace(hour=23, minute=59))
    return at.date(), f"{at:%H:%M}", f"{end:%H:%M}"


def test_lead_time_just_under_and_just_over_five_days(srv, ids, org):
    before = counts(srv)
    d, start, end = _local_slot(now_vn() + timedelta(days=5) - timedelta(minutes=3), -1)
    r = post_booking(org, srv.base, title="Họp sát hạn, thiếu vài phút", d=d, start=start, end=end,
                     host=ids["hong-dan"], sites=[ids["dong-hai"]])
    assert r.status_code == 422 and "khoản 1 Điều 5" in (rules_error(r.text) or ""), \
        f"5 days minus 3 minutes ({dmy(d)} {start}): HTTP {r.status_code} {rules_error(r.text)!r}"
    assert counts(srv) == before
    d, start, end = _local_slot(now_vn() + timedelta(days=5) + timedelta(minutes=4), +1)
    bid = register(org, srv.base, title="Họp sát hạn, dư vài phút", d=d, start=start, end=end,
                   host=ids["hong-dan"], sites=[ids["dong-hai"]])
    assert status_of(srv, bid) == "submitted"


def register_first(srv, org, ids, title: str, d: date, site: str) -> tuple[int, int]:
    """A submitted booking from 08:00 to 10:00 of the Party office's site and `site`, for others
    to overlap; the database's counts once it is in."""
    register(org, srv.base, title=title, d=d, start="08:00", end="10:00", host=ids["tinh-uy"], sites=[ids[site]])
    return counts(srv)


def test_overlap_at_a_shared_site_is_refused_citing_the_first_booking(srv, ids, org):
    d = day(8)
    first = "Hội nghị tổng kết ngành nông nghiệp"
    before = register_first(srv, org, ids, first, d, "tx-gia-rai")
    for label, start, end, prep in [("official times overlap", "09:00", "11:00", ""),
                                    ("only the preparation overlaps", "10:15", "11:00", "09:45")]:
        for action in ("check", "submit"):
            r = post_booking(org, srv.base, title="Họp trùng điểm cầu Giá Rai", d=d, start=start, end=end, prep=prep,
                             host=ids["hong-dan"], sites=[ids["tx-gia-rai"]], action=action)
            if action == "check":
                # The check answers (200) in its own box, listing the conflict; it refuses nothing.
                assert r.status_code == 200, f"{label} (check): HTTP {r.status_code}"
                state, items = check_result(r.text) or (None, [])
                assert state == "conflicts" and any(first in x and "khoản 2 Điều 5" in x for x in items), \
                    f"{label} (check): {state} {items}"
                assert rules_error(r.text) is None, f"{label} (check): a refusal {rules_error(r.text)!r}"
            else:
                text = rules_error(r.text) or ""
                assert r.status_code == 422, f"{label} ({action}): HTTP {r.status_code}"
                assert first in text and "khoản 2 Điều 5" in text, f"{label} ({action}): refusal {text!r}"
                assert check_result(r.text) is None, f"{label} ({action}): the check's box without a check"
            assert counts(srv) == before, f"{label} ({action}): the refused booking was saved"
    # Another day, same sites: fine.
    register(org, srv.base, title="Họp trùng điểm cầu Giá Rai, hôm sau", d=d + timedelta(days=1), start="13:00",
             end="14:00", host=ids["hong-dan"], sites=[ids["tx-gia-rai"]])


def test_concurrent_overlapping_registrations_let_only_one_through(srv, ids):
    """B3 holds under concurrency: N organizer sessions submit overlapping bookings of one site at
    the same instant; exactly one is accepted, the others are refused citing it."""
    n = 6
    d = day(14)
    sessions = [browser_session(srv.base, "so-tttt", PASSWORD) for _ in range(n)]
    forms = [booking_form(x, srv.base, title=f"Họp đăng ký đồng thời số {i + 1}", d=d, start="09:00", end="11:00",
                          host=ids["tinh-uy"], sites=[ids["tp-bac-lieu"]]) for i, x in enumerate(sessions)]
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def go(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = sessions[i].post(srv.base + "/bookings", data=forms[i], allow_redirects=False, timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert all(not t.is_alive() for t in threads), "a registration request did not finish"
    codes = [getattr(r, "status_code", repr(r)) for r in results]
    assert sorted(codes) == [303] + [422] * (n - 1), f"statuses of {n} simultaneous overlapping registrations: {codes}"
    rows = srv.query("SELECT b.title FROM bookings b JOIN booking_sites s ON s.booking_id = b.id "
                     "WHERE s.site_id = ? AND b.official_start = ?", ids["tp-bac-lieu"], epoch(d, "09:00"))
    assert len(rows) == 1, f"overlapping bookings saved: {rows}"
    for r in results:
        if r.status_code == 422:
            assert rows[0][0] in (rules_error(r.text) or ""), f"refusal does not cite the winner: {rules_error(r.text)!r}"


def test_concurrent_approvals_approve_once_and_notify_once(srv, ids, org):
    d = day(15)
    bid = register(org, srv.base, title="Họp duyệt đồng thời", d=d, start="09:00", end="10:00",
                   host=ids["tinh-uy"], sites=[ids["vinh-loi"]])
    ops = [browser_session(srv.base, "dieuhanh", PASSWORD) for _ in range(4)]
    tokens = [csrf_for(s, srv.base, bid) for s in ops]
    barrier = threading.Barrier(len(ops))
    results: list = [None] * len(ops)

    def go(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = step(ops[i], srv.base, bid, "approve", csrf=tokens[i]).status_code
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(ops))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert sorted(map(str, results)) == ["303"] + ["422"] * (len(ops) - 1), f"simultaneous approvals: {results}"
    rows = srv.query("SELECT kind, to_addr, COUNT(*) FROM notices WHERE booking_id = ? AND kind != 'reminder' "
                     "GROUP BY kind, to_addr", bid)
    assert rows and all(r[2] == 1 for r in rows), f"notices queued more than once: {rows}"


def test_touching_bookings_are_both_accepted(srv, ids, org):
    d = day(10)
    a = register(org, srv.base, title="Họp buổi sáng kết thúc 10 giờ", d=d, start="08:00", end="10:00",
                 host=ids["tinh-uy"], sites=[ids["phuoc-long"]])
    b = register(org, srv.base, title="Họp chuẩn bị từ 10 giờ", d=d, start="10:30", end="11:30", prep="10:00",
                 host=ids["phuoc-long"], sites=[ids["tinh-uy"]])
    rows = srv.query("SELECT id, status, preparation_start, official_end FROM bookings WHERE id IN (?, ?) ORDER BY id",
                     a, b)
    assert rows == [(a, "submitted", epoch(d, "07:30"), epoch(d, "10:00")),
                    (b, "submitted", epoch(d, "10:00"), epoch(d, "11:30"))], rows


INVALID = [
    # label, overrides, (status, where the message is, expected text)
    ("missing title", {"title": ""}, (422, "title", MSG_ERR["title"])),
    ("missing chair", {"chair": "  "}, (422, "chair", MSG_ERR["chair"])),
    ("unknown kind", {"kind": "tiec"}, (422, "kind", MSG_ERR["kind"])),
    ("missing date", {"date": ""}, (422, "date", MSG_ERR["date"])),
    ("31 February", {"date": "31/02/2027"}, (422, "date", MSG_ERR["date"])),
    ("month first (US order)", {"date": "12/31/2027"}, (422, "date", MSG_ERR["date"])),
    ("missing start", {"start": ""}, (422, "start", MSG_ERR["time"])),
    ("start 25:00", {"start": "25:00"}, (422, "start", MSG_ERR["time"])),
    ("bad preparation", {"prep": "7h30"}, (422, "prep", MSG_ERR["time"])),
    ("end before start", {"start": "10:00", "end": "09:00"}, (422, "rules", MSG_END_BEFORE_START)),
    ("end equals start", {"start": "10:00", "end": "10:00"}, (422, "rules", MSG_END_BEFORE_START)),
    ("unknown site id", {"sites": ["999999"]}, (422, "sites", MSG_ERR["sites"])),
    ("no site but the host", {"sites": []}, (422, "sites", MSG_ERR["sites"])),
    ("unknown host site", {"host_site": "999999"}, (422, "host_site", MSG_ERR["host_site"])),
    ("another unit", {"host_unit": "1"}, (422, "host_unit", MSG_ERR["host_unit"])),
    ("no CSRF", {"csrf": None}, (403, "form", MSG_CSRF_VI)),
    ("wrong CSRF", {"csrf": "x" * 32}, (403, "form", MSG_CSRF_VI)),
]


@pytest.mark.parametrize("label,over,want", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_registration_is_refused_with_the_field_message_and_nothing_saved(srv, ids, org, label, over, want):
    status, where, text = want
    before = counts(srv)
    over = dict(over)
    sites = [ids["vinh-loi"]]
    if "sites" in over:
        sites = [int(x) for x in over.pop("sites")]
    if over.get("host_unit") == "1":
        own = form_choices(srv.base, org)["units"]
        assert own != ["1"], "the organizer's own unit has id 1; pick another 'foreign' unit"
    kw = {"title": "Họp biểu mẫu sai", "d": day(12), "start": "08:00", "end": "09:00", "host": ids["tinh-uy"],
          "sites": sites}
    kw.update(over)
    pairs = booking_form(org, srv.base, **kw)
    r = org.post(srv.base + "/bookings", data=pairs, allow_redirects=False, timeout=30)
    assert r.status_code == status, f"{label}: HTTP {r.status_code}, fields {field_errors(r.text)}, " \
                                    f"rules {rules_error(r.text)!r}"
    if where == "form":
        got = alert_text(r.text)
    elif where == "rules":
        got = rules_error(r.text)
    else:
        got = field_errors(r.text).get(where)
    assert got and text in got, f"{label}: message at {where!r} is {got!r}; all fields: {field_errors(r.text)}"
    assert counts(srv) == before, f"{label}: something was saved"
    # The form comes back with what was typed (the title, when there was one).
    if over.get("title", "x") and status == 422:
        assert 'value="Họp biểu mẫu sai"' in r.text, f"{label}: the form did not keep the title"


def test_invitation_only_when_approved_and_reasons_required(srv, ids, org, op):
    d = day(11)
    title = "Tập huấn sử dụng hệ thống hội nghị truyền hình"
    bid = register(org, srv.base, title=title, d=d, start="14:00", end="16:00", host=ids["tinh-uy"],
                   sites=[ids["hong-dan"], ids["vinh-loi"]], action="draft", kind="tap_huan")
    assert status_of(srv, bid) == "draft"
    for who, s in (("organizer", org), ("operator", op)):
        r = s.get(f"{srv.base}/bookings/{bid}/invitation.ics", timeout=10)
        assert r.status_code == 409 and MSG_NOT_APPROVED in (alert_text(r.text) or ""), \
            f"invitation of a draft for the {who}: HTTP {r.status_code} {alert_text(r.text)!r}"
    r = step(org, srv.base, bid, "submit")
    assert r.status_code == 303 and status_of(srv, bid) == "submitted", f"submit: HTTP {r.status_code}"
    r = org.get(f"{srv.base}/bookings/{bid}/invitation.ics", timeout=10)
    assert r.status_code == 409, f"invitation of a submitted booking: HTTP {r.status_code}"

    # Rejecting (or cancelling) needs a reason; without one nothing changes.
    for what, who, s in (("reject", "operator", op), ("cancel", "organizer", org)):
        for reason in ("", "   "):
            r = step(s, srv.base, bid, what, reason=reason)
            assert r.status_code == 422, f"{what} by the {who} with reason {reason!r}: HTTP {r.status_code}"
            assert "Phải nêu lý do" in (alert_text(r.text) or ""), alert_text(r.text)
            assert status_of(srv, bid) == "submitted"
    # Approve without CSRF: refused.
    r = step(op, srv.base, bid, "approve", csrf="")
    assert r.status_code == 403 and status_of(srv, bid) == "submitted", f"approve without CSRF: {r.status_code}"

    r = step(op, srv.base, bid, "approve")
    assert r.status_code == 303 and status_of(srv, bid) == "approved", f"approve: HTTP {r.status_code}"
    r = org.get(f"{srv.base}/bookings/{bid}/invitation.ics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar"), \
        f"invitation once approved: HTTP {r.status_code} {r.headers.get('content-type')}"
    assert f'filename="hop-{bid}.ics"' in r.headers.get("content-disposition", "")
    check_ics(r.content.decode("utf-8"), title, d, "14:00", "16:00", "invitation over HTTP")
    # Approving twice is refused; a rejection with a reason is kept.
    r = step(op, srv.base, bid, "approve")
    assert r.status_code == 422 and status_of(srv, bid) == "approved", f"second approve: {r.status_code}"

    other = register(org, srv.base, title="Họp sẽ bị từ chối", d=d, start="17:00", end="18:00",
                     host=ids["hong-dan"], sites=[ids["vinh-loi"]])
    r = step(op, srv.base, other, "reject", reason="Trùng lịch công tác của lãnh đạo tỉnh")
    assert r.status_code == 303, f"reject with a reason: HTTP {r.status_code} {alert_text(r.text)!r}"
    assert srv.query("SELECT status, reason FROM bookings WHERE id = ?", other) == \
        [("rejected", "Trùng lịch công tác của lãnh đạo tỉnh")]
    r = org.get(f"{srv.base}/bookings/{other}/invitation.ics", timeout=10)
    assert r.status_code == 409, f"invitation of a rejected booking: HTTP {r.status_code}"


def _add_leadership(srv: OwnServer, username: str) -> None:
    res = subprocess.run([binary(), "user", "add", "--username", username, "--name", "Lãnh đạo UBND tỉnh",
                          "--role", "leadership", "--data-dir", srv.data_dir],
                         input=PASSWORD + "\n", capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"hnth user add: {res.returncode}\n{res.stdout}\n{res.stderr}"


def test_role_matrix(srv, ids, org, op):
    d = day(13)
    bid = register(org, srv.base, title="Họp kiểm tra phân quyền", d=d, start="08:00", end="09:00",
                   host=ids["tinh-uy"], sites=[ids["hong-dan"]])
    _add_leadership(srv, "lanhdao")
    device = browser_session(srv.base, "dc-hong-dan", PASSWORD)
    leader = browser_session(srv.base, "lanhdao", PASSWORD)
    admin = browser_session(srv.base, "quantri", PASSWORD)
    for who, s in (("site device", device), ("leadership", leader)):
        r = s.get(srv.base + "/bookings/new", allow_redirects=False, timeout=10)
        assert r.status_code == 403 and MSG_FORBIDDEN_VI in (alert_text(r.text) or ""), \
            f"{who} GET /bookings/new: HTTP {r.status_code} {alert_text(r.text)!r}"
        before = counts(srv)
        token = csrf_of(s.get(srv.base + "/bookings", timeout=10).text)
        r = s.post(srv.base + "/bookings", data=[("csrf", token), ("title", f"Họp do {who} đăng ký"),
                                                 ("kind", "hop"), ("action", "submit")],
                   allow_redirects=False, timeout=10)
        assert r.status_code == 403, f"{who} POST /bookings: HTTP {r.status_code}"
        assert counts(srv) == before
    for who, s in (("organizer", org), ("operator", op), ("admin", admin)):
        r = s.get(srv.base + "/bookings/new", allow_redirects=False, timeout=10)
        assert r.status_code == 200, f"{who} GET /bookings/new: HTTP {r.status_code}"
    # Only the control center approves.
    for who, s in (("organizer", org), ("leadership", leader)):
        r = step(s, srv.base, bid, "approve", csrf=csrf_of(s.get(srv.base + "/bookings", timeout=10).text))
        assert r.status_code in (403, 422), f"{who} approve: HTTP {r.status_code}"
        assert status_of(srv, bid) == "submitted", f"{who} approve changed the status"
    r = step(org, srv.base, bid, "approve")
    assert "Điều 3" in (alert_text(r.text) or ""), f"organizer approve refusal: {alert_text(r.text)!r}"
    r = step(op, srv.base, bid, "approve")
    assert r.status_code == 303 and status_of(srv, bid) == "approved", f"operator approve: HTTP {r.status_code}"
    assert srv.query("SELECT a.username FROM bookings b JOIN accounts a ON a.id = b.decided_by WHERE b.id = ?",
                     bid) == [("dieuhanh",)]


# --------------------------------------------------------------------------------------------
# 4. Restart


def test_bookings_survive_a_restart(inside_netns):
    s = _new_server("bookings-restart").start()
    try:
        org = browser_session(s.base, "so-tttt", PASSWORD)
        op = browser_session(s.base, "dieuhanh", PASSWORD)
        sid = {code: i for i, code in s.query("SELECT id, code FROM sites")}
        d = day(9)
        approved = register(org, s.base, title="Họp trước khởi động lại (duyệt)", d=d, start="08:00", end="09:30",
                            host=sid["tinh-uy"], sites=[sid["hoa-binh"], sid["dong-hai"]])
        assert step(op, s.base, approved, "approve").status_code == 303
        waiting = register(org, s.base, title="Họp trước khởi động lại (chờ duyệt)", d=d, start="13:00",
                           end="14:00", host=sid["tinh-uy"], sites=[sid["vinh-loi"]])
        rejected = register(org, s.base, title="Họp trước khởi động lại (từ chối)", d=d, start="15:00",
                            end="16:00", host=sid["tinh-uy"], sites=[sid["vinh-loi"]])
        assert step(op, s.base, rejected, "reject", reason="Không đủ điểm cầu").status_code == 303
        # Ours only: the demo books a meeting of the day of its own at each start.
        ours = f"({approved}, {waiting}, {rejected})"
        table = f"SELECT id, title, status, reason, official_start, official_end FROM bookings WHERE id IN {ours} ORDER BY id"
        before = s.query(table)
        sites_q = f"SELECT booking_id, site_id FROM booking_sites WHERE booking_id IN {ours} ORDER BY 1, 2"
        sites_before = s.query(sites_q)
        notices_q = f"SELECT booking_id, kind, to_addr, sent_at FROM notices WHERE booking_id IN {ours} ORDER BY id"
        notices_before = s.query(notices_q)
        assert [r[2] for r in before] == ["approved", "submitted", "rejected"], before
        # No SMTP configured here: the approval's notices wait in the outbox.
        assert notices_before and all(n[3] is None for n in notices_before), notices_before

        s.stop()
        assert s.proc.returncode is not None
        s.start()  # same data dir, new ports

        assert s.query(table) == before
        assert s.query(sites_q) == sites_before
        assert s.query(notices_q) == notices_before
        org2 = browser_session(s.base, "so-tttt", PASSWORD)
        r = org2.get(s.base + "/bookings", timeout=10)
        assert r.status_code == 200
        listed = {b: st for b, st in re.findall(r'data-booking-id="(\d+)" data-status="([a-z]+)"', r.text)
                  if int(b) in (approved, waiting, rejected)}
        assert listed == {str(approved): "approved", str(waiting): "submitted", str(rejected): "rejected"}, listed
        r = org2.get(f"{s.base}/bookings/{rejected}", timeout=10)
        assert "Không đủ điểm cầu" in html.unescape(r.text)
        r = org2.get(f"{s.base}/bookings/{approved}/invitation.ics", timeout=10)
        assert r.status_code == 200, f"invitation after restart: HTTP {r.status_code}"
        check_ics(r.text, "Họp trước khởi động lại (duyệt)", d, "08:00", "09:30", "invitation after restart")
        # The workflow goes on where it stopped: the waiting one can still be approved.
        r = step(op, s.base, waiting, "approve")  # the old cookie session survived too
        assert r.status_code == 303 and s.query("SELECT status FROM bookings WHERE id = ?", waiting) == [("approved",)]
    finally:
        s.stop()
        print(f"restart-test server log kept at {s.log_path}\n{s.log_tail(40)}")


# --------------------------------------------------------------------------------------------
# 5. The printable letter (B4), editing, held and closed, the on-duty provider technician (L2),
#    the written notice file (B1)

MSG_FILE_TYPE = "Tệp công văn phải là tệp PDF"
MSG_FILE_SIZE = "Tệp công văn quá lớn: tối đa 5 MB."
MSG_EDIT_REFUSED = 'Không thể thực hiện thao tác "sửa"'
NOTICE_MAX = 5 * 1024 * 1024
EMPTY_FILE = ("", b"", "application/octet-stream")  # what a browser sends for an empty file input


def pdf_bytes(size: int | None = None, mark: str = "") -> bytes:
    """A small PDF (padded with a PDF comment to exactly `size` bytes when given)."""
    head = (b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
            b"2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\n% " + mark.encode() + b"\n")
    tail = b"trailer <</Root 1 0 R>>\n%%EOF\n"
    if size is None:
        return head + tail
    pad = size - len(head) - len(tail) - 2
    assert pad >= 0
    return head + b"%" + b"x" * pad + b"\n" + tail


def post_form(s, url: str, pairs, file=EMPTY_FILE):
    """The registration/edit form as the page sends it: multipart, the file input last."""
    return s.post(url, data=pairs, files={"notice_file": file}, allow_redirects=False, timeout=60)


def edit(s, base: str, bid: int, file=EMPTY_FILE, action: str = "save", **kw):
    return post_form(s, f"{base}/bookings/{bid}/edit", booking_form(s, base, action=action, **kw), file)


def file_count(srv: OwnServer) -> int:
    return srv.query("SELECT COUNT(*) FROM booking_files")[0][0]


def letter_date(t: int) -> str:
    """The place-and-date line of Decree 30/2020/NĐ-CP: day with 2 digits, months 1 and 2 too."""
    d = datetime.fromtimestamp(t, VN)
    month = f"{d.month:02d}" if d.month <= 2 else str(d.month)
    return f"Bạc Liêu, ngày {d.day:02d} tháng {month} năm {d.year}"


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_letter_only_for_an_approved_booking_in_administrative_style(srv, ids, org, op):
    d = day(17)
    title = "Hội nghị trực tuyến tổng kết công tác cải cách hành chính"
    bid = register(org, srv.base, title=title, d=d, start="08:00", end="10:30", prep="07:15",
                   host=ids["tinh-uy"], sites=[ids["hong-dan"], ids["dong-hai"]], kind="hoi_nghi",
                   notice_number="77/STTTT-VP", notice_date="20/11/2026")
    for who, s in (("organizer", org), ("operator", op)):
        r = s.get(f"{srv.base}/bookings/{bid}/letter", timeout=10)
        assert r.status_code == 409 and MSG_NOT_APPROVED in (alert_text(r.text) or ""), \
            f"letter of a submitted booking for the {who}: HTTP {r.status_code} {alert_text(r.text)!r}"
    assert 'id="letter"' not in org.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    assert step(op, srv.base, bid, "approve").status_code == 303

    page = org.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    assert f'href="/bookings/{bid}/letter"' in page and f'href="/bookings/{bid}/invitation.ics"' in page, \
        "the booking page does not link the letter beside the .ics"
    r = org.get(f"{srv.base}/bookings/{bid}/letter", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.status_code
    text = text_of(r.text)
    (decided,), = srv.query("SELECT decided_at FROM bookings WHERE id = ?", bid)
    for want in ["SỞ THÔNG TIN VÀ TRUYỀN THÔNG", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
                 "Độc lập - Tự do - Hạnh phúc", letter_date(decided), "GIẤY MỜI", "hội nghị trực tuyến", title,
                 f"vào lúc 08 giờ 00 phút, ngày {dmy(d)}", "đến 10 giờ 30 phút",
                 f"từ 07 giờ 15 phút, ngày {dmy(d)}", "Chủ trì: Ông Nguyễn Văn A, Phó Chủ tịch UBND tỉnh",
                 "Điểm cầu chủ trì: Văn phòng Tỉnh ủy", "Huyện Hồng Dân", "Huyện Đông Hải",
                 "Công văn số 77/STTTT-VP ngày 20/11/2026", f"đăng ký họp số {bid}",
                 "Quy chế ban hành kèm theo Quyết định số 561/QĐ-UBND ngày 15/4/2014 của Chủ tịch UBND tỉnh Bạc Liêu"]:
        assert want in text, f"the letter lacks {want!r}:\n{text[:3000]}"
    # Its print styles for A4, in the stylesheet it links (the pages' CSP allows no inline style).
    assert '<link rel="stylesheet" href="/static/letter.css">' in r.text
    css = op.get(f"{srv.base}/static/letter.css", timeout=10).text
    assert "@media print" in css and "size: A4" in css, "the letter has no print styles for A4"

    # Same view permission as the booking: a site of the meeting yes, another site no, no session no.
    assert browser_session(srv.base, "dc-hong-dan", PASSWORD).get(
        f"{srv.base}/bookings/{bid}/letter", timeout=10).status_code == 200
    r = browser_session(srv.base, "dc-vinh-loi", PASSWORD).get(f"{srv.base}/bookings/{bid}/letter", timeout=10)
    assert r.status_code == 403, f"a site outside the meeting reads the letter: HTTP {r.status_code}"
    r = session().get(f"{srv.base}/bookings/{bid}/letter", allow_redirects=False, timeout=10)
    assert r.status_code in (303, 307) and r.headers["location"] == "/login", r.status_code
    assert org.get(f"{srv.base}/bookings/999999/letter", timeout=10).status_code == 404

    # Chromium prints it on one A4 page (595 x 842 pt).
    browsers = BrowserFactory(base=srv.base, password=PASSWORD)
    try:
        p = browsers.new("organizer prints the letter")
        browser_login(p, "so-tttt")
        p.driver.get(f"{srv.base}/bookings/{bid}/letter")
        wait_for(lambda: p.driver.find_elements(By.ID, "letter"), T_PAGE, "the letter page")
        pdf = base64.b64decode(p.driver.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True})["data"])
        boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
        assert boxes, "no page in the printed letter"
        assert all(abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2 for w, h in boxes), boxes
        assert len(boxes) == 1, f"the letter prints on {len(boxes)} pages"
    finally:
        browsers.quit_all()


def test_edit_form_is_the_registration_form_and_follows_roles_and_status(srv, ids, org, op):
    d = day(18)
    bid = register(org, srv.base, title="Họp giao ban khối văn xã", d=d, start="14:00", end="15:00",
                   host=ids["tinh-uy"], sites=[ids["phuoc-long"]], action="draft")
    r = org.get(f"{srv.base}/bookings/{bid}", timeout=10)
    assert f'href="/bookings/{bid}/edit"' in r.text, "no edit link for the organizer"
    r = org.get(f"{srv.base}/bookings/{bid}/edit", timeout=10)
    assert r.status_code == 200, r.status_code
    form = html.unescape(r.text)
    assert f'action="/bookings/{bid}/edit"' in form and 'enctype="multipart/form-data"' in form
    assert 'value="Họp giao ban khối văn xã"' in form and f'value="{dmy(d)}"' in form and 'value="14:00"' in form
    assert re.search(rf'name="sites" value="{ids["phuoc-long"]}" checked', form), "sites not ticked on the edit form"
    assert "chỉ áp dụng lại khi đổi thời gian họp chính thức" in html.unescape(form), "no B1 hint on the edit form"

    # Roles: leadership (reads everything) and a site device may not edit.
    _add_leadership_once(srv)
    for who, s in (("leadership", browser_session(srv.base, "lanhdao2", PASSWORD)),
                   ("site device", browser_session(srv.base, "dc-phuoc-long", PASSWORD))):
        assert s.get(f"{srv.base}/bookings/{bid}/edit", timeout=10).status_code == 403, who
        token = csrf_of(s.get(srv.base + "/bookings", timeout=10).text)
        r = post_form(s, f"{srv.base}/bookings/{bid}/edit",
                      [("csrf", token), ("title", "Sửa trái phép"), ("action", "save")])
        assert r.status_code == 403, f"{who} POST edit: HTTP {r.status_code}"
    # CSRF.
    pairs = [(k, v) for k, v in booking_form(org, srv.base, title="Sửa không có CSRF", d=d, start="14:00",
                                             end="15:00", host=ids["tinh-uy"], sites=[ids["phuoc-long"]],
                                             action="save") if k != "csrf"]
    r = post_form(org, f"{srv.base}/bookings/{bid}/edit", pairs)
    assert r.status_code == 403 and MSG_CSRF_VI in (alert_text(r.text) or ""), r.status_code
    # Validation is the registration's: the same field messages, nothing changed.
    r = edit(org, srv.base, bid, title="", d=d, start="14:00", end="15:00", host=ids["tinh-uy"],
             sites=[ids["phuoc-long"]])
    assert r.status_code == 422 and field_errors(r.text).get("title") == MSG_ERR["title"], field_errors(r.text)
    r = edit(org, srv.base, bid, title="Họp giao ban", d="31/02/2027", start="14:00", end="15:00",
             host=ids["tinh-uy"], sites=[ids["phuoc-long"]])
    assert r.status_code == 422 and field_errors(r.text).get("date") == MSG_ERR["date"], field_errors(r.text)
    assert srv.query("SELECT title, status FROM bookings WHERE id = ?", bid) == [("Họp giao ban khối văn xã", "draft")]

    # A draft stays a draft.
    r = edit(org, srv.base, bid, title="Họp giao ban khối văn xã (sửa)", d=d, start="14:00", end="15:00",
             host=ids["tinh-uy"], sites=[ids["phuoc-long"]])
    assert r.status_code == 303 and r.headers["location"] == f"/bookings/{bid}", (r.status_code, field_errors(r.text))
    assert srv.query("SELECT title, status FROM bookings WHERE id = ?", bid) == [("Họp giao ban khối văn xã (sửa)",
                                                                                   "draft")]
    # Rejected, cancelled, held, closed: not editable (B4 message).
    assert step(org, srv.base, bid, "cancel", reason="Lãnh đạo bận công tác").status_code == 303
    assert 'id="edit"' not in org.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    r = org.get(f"{srv.base}/bookings/{bid}/edit", timeout=10)
    assert r.status_code == 422 and MSG_EDIT_REFUSED in html.unescape(alert_text(r.text) or ""), r.status_code
    r = edit(org, srv.base, bid, title="Sửa cuộc họp đã hủy", d=d, start="14:00", end="15:00",
             host=ids["tinh-uy"], sites=[ids["phuoc-long"]])
    assert r.status_code == 422 and status_of(srv, bid) == "cancelled"
    assert srv.query("SELECT title FROM bookings WHERE id = ?", bid) == [("Họp giao ban khối văn xã (sửa)",)]


_LEADER = []


def _add_leadership_once(srv: OwnServer) -> None:
    if not _LEADER:
        _add_leadership(srv, "lanhdao2")
        _LEADER.append(True)


def test_edit_conflicts_exclude_the_booking_itself_and_refuse_overlaps(srv, ids, org, op):
    d = day(19)
    other = "Hội nghị triển khai kế hoạch phòng chống hạn mặn"
    register(org, srv.base, title=other, d=d, start="14:00", end="16:00", host=ids["tinh-uy"],
             sites=[ids["vinh-loi"]])
    bid = register(org, srv.base, title="Họp sẽ được dời giờ", d=d, start="08:00", end="09:00",
                   host=ids["hong-dan"], sites=[ids["vinh-loi"]])
    # Unchanged times: its own slot is no conflict.
    r = edit(org, srv.base, bid, title="Họp sẽ được dời giờ (đã sửa tên)", d=d, start="08:00", end="09:00",
             host=ids["hong-dan"], sites=[ids["vinh-loi"]], action="check")
    assert r.status_code == 200 and MSG_NO_CONFLICT in html.unescape(r.text), rules_error(r.text)
    # Moving it onto the other meeting's site and time: refused, citing it (B3); nothing changes.
    before = srv.query("SELECT title, official_start, status FROM bookings WHERE id = ?", bid)
    r = edit(org, srv.base, bid, title="Họp sẽ được dời giờ", d=d, start="15:00", end="16:00",
             host=ids["hong-dan"], sites=[ids["vinh-loi"]])
    assert r.status_code == 422 and other in (rules_error(r.text) or "") and "khoản 2 Điều 5" in rules_error(r.text)
    assert srv.query("SELECT title, official_start, status FROM bookings WHERE id = ?", bid) == before


def test_edit_lead_time_applies_only_when_the_start_or_the_sites_change(inside_netns, mailbox):
    """B1 on an edit, as interpreted: a booking registered under a 1-day lead time (config) and
    approved; the server restarts with the regulation's 5 days. Two days before the meeting a
    typo fix is accepted (back to submitted, reminders withdrawn, no change notice), moving the
    start or changing the sites is refused citing Art. 5.1."""
    cfg_dir = tempfile.mkdtemp(prefix="hnth-edit-cfg-")
    cfg = os.path.join(cfg_dir, "hnth.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write("[booking]\nlead_time_minutes = 1440\n")
    smtp = ["--smtp", f"127.0.0.1:{mailbox.port}"]
    s = _new_server("bookings-edit", ["--config", cfg, *smtp]).start()
    try:
        org = browser_session(s.base, "so-tttt", PASSWORD)
        op = browser_session(s.base, "dieuhanh", PASSWORD)
        sid = {code: i for i, code in s.query("SELECT id, code FROM sites")}
        d = day(2)
        title = "Họp chuẩn bị Tết Nguyên đán"
        kw = dict(d=d, start="09:00", end="10:00", host=sid["tinh-uy"], sites=[sid["hoa-binh"]])
        bid = register(org, s.base, title=title, **kw)
        assert step(op, s.base, bid, "approve").status_code == 303
        assert s.query("SELECT COUNT(*) FROM notices WHERE booking_id = ? AND kind = 'reminder' AND sent_at IS NULL",
                       bid)[0][0] > 0, "no reminders queued on approval"

        s.stop()
        s.extra_args = smtp  # the regulation's 5 days again
        s.start()

        r = edit(org, s.base, bid, title=title + " năm 2027", chair="Chủ tịch UBND tỉnh", **kw)
        assert r.status_code == 303, f"typo fix 2 days ahead: HTTP {r.status_code} {rules_error(r.text)!r} " \
                                     f"{field_errors(r.text)}"
        assert s.query("SELECT title, status FROM bookings WHERE id = ?", bid) == [(title + " năm 2027", "submitted")]
        assert s.query("SELECT COUNT(*) FROM notices WHERE booking_id = ? AND kind = 'reminder' AND sent_at IS NULL",
                       bid) == [(0,)], "reminders of a booking no longer approved are still queued"
        assert s.query("SELECT COUNT(*) FROM notices WHERE booking_id = ? AND kind = 'changed'", bid) == [(0,)], \
            "a title fix sent a change notice"
        (before, after), = s.query("SELECT before_json, after_json FROM audit WHERE action = 'edit_booking' "
                                   "AND entity_id = ?", str(bid))
        assert title in before and '"approved"' in before and title + " năm 2027" in after and '"submitted"' in after
        # Approved again (approval checks overlaps, not the lead time).
        assert step(op, s.base, bid, "approve").status_code == 303

        for label, over in (("start moved by an hour", dict(start="10:00", end="11:00")),
                            ("a site added", dict(sites=[sid["hoa-binh"], sid["dong-hai"]]))):
            args = {**kw, **over}
            r = edit(org, s.base, bid, title=title, **args)
            assert r.status_code == 422 and "khoản 1 Điều 5" in (rules_error(r.text) or ""), \
                f"{label} 2 days ahead: HTTP {r.status_code} {rules_error(r.text)!r}"
            assert s.query("SELECT status, official_start FROM bookings WHERE id = ?", bid) == \
                [("approved", epoch(d, "09:00"))]
            assert s.query("SELECT COUNT(*) FROM booking_sites WHERE booking_id = ?", bid) == [(2,)]
        # An emergency registered 2 days ahead cannot become a planned meeting by an edit.
        em = register(org, s.base, title="Họp khẩn phòng chống dịch", d=d, start="14:00", end="15:00",
                      host=sid["tinh-uy"], sites=[sid["vinh-loi"]], emergency=True)
        r = edit(org, s.base, em, title="Họp phòng chống dịch", d=d, start="14:00", end="15:00",
                 host=sid["tinh-uy"], sites=[sid["vinh-loi"]])
        assert r.status_code == 422 and "khoản 1 Điều 5" in (rules_error(r.text) or ""), r.status_code
        assert s.query("SELECT emergency FROM bookings WHERE id = ?", em) == [(1,)]
    finally:
        s.stop()
        print(f"edit-test server log kept at {s.log_path}\n{s.log_tail(40)}")
        shutil.rmtree(cfg_dir, ignore_errors=True)


def test_edit_of_an_approved_booking_moves_it_back_and_notifies_the_change(srv, mailbox, ids, org, op):
    d = day(20)
    title = "Hội nghị trực tuyến sơ kết chương trình nông thôn mới"
    bid = register(org, srv.base, title=title, d=d, start="09:00", end="11:00", host=ids["tinh-uy"],
                   sites=[ids["tp-bac-lieu"]])
    assert step(op, srv.base, bid, "approve").status_code == 303
    first = technicians(srv, ["tinh-uy", "tp-bac-lieu"]) | {PROVIDER}
    wait_for(lambda: {rc for m in mailbox.about(title) for rc in m.rcpt_tos} >= first, T_MAIL,
             f"approval notices of {title!r}", detail=mailbox.describe)
    reminders = srv.query("SELECT COUNT(*) FROM notices WHERE booking_id = ? AND kind = 'reminder' "
                          "AND sent_at IS NULL", bid)[0][0]
    assert reminders > 0

    # New time and a site swapped: Thành phố Bạc Liêu out, Hòa Bình in.
    r = edit(org, srv.base, bid, title=title, d=d, start="13:30", end="15:00", prep="13:00", host=ids["tinh-uy"],
             sites=[ids["hoa-binh"]])
    assert r.status_code == 303, f"edit: HTTP {r.status_code} {rules_error(r.text)!r} {field_errors(r.text)}"
    assert srv.query("SELECT status, official_start, preparation_start FROM bookings WHERE id = ?", bid) == \
        [("submitted", epoch(d, "13:30"), epoch(d, "13:00"))]
    assert {x for x, in srv.query("SELECT site_id FROM booking_sites WHERE booking_id = ?", bid)} == \
        {ids["tinh-uy"], ids["hoa-binh"]}
    assert srv.query("SELECT COUNT(*) FROM notices WHERE booking_id = ? AND kind = 'reminder' AND sent_at IS NULL",
                     bid) == [(0,)], "unsent reminders not withdrawn"
    # The technicians of the sites before and after, and the provider, are told at once.
    want = technicians(srv, ["tinh-uy", "tp-bac-lieu", "hoa-binh"]) | {PROVIDER}

    def changed():
        got = [rc for m in mailbox.about(title) if "Thay đổi lịch họp" in m.subject for rc in m.rcpt_tos]
        return set(got) >= want and got

    got = wait_for(changed, T_MAIL, f"change notices to {sorted(want)}",
                   detail=lambda: {"mailbox": mailbox.describe(),
                                   "outbox": srv.query("SELECT kind, to_addr, sent_at, last_error FROM notices "
                                                       "WHERE booking_id = ? AND kind = 'changed'", bid)})
    assert sorted(got) == sorted(want), f"one change notice each expected: {sorted(got)}"
    m = next(m for m in mailbox.about(title) if "Thay đổi lịch họp" in m.subject)
    body = m.msg.get_body(preferencelist=("plain",)).get_content()
    assert f"{dmy(d)} 09:00" in body and f"{dmy(d)} 13:30" in body and "Huyện Hòa Bình" in body, body
    (before, after), = srv.query("SELECT before_json, after_json FROM audit WHERE action = 'edit_booking' "
                                 "AND entity_id = ?", str(bid))
    before, after = json.loads(before), json.loads(after)
    utc = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()  # noqa: E731
    assert (before["official_start"], before["status"], before["sites"]) == \
        (utc(epoch(d, "09:00")), "approved", sorted([ids["tinh-uy"], ids["tp-bac-lieu"]])), before
    assert (after["official_start"], after["status"], after["sites"]) == \
        (utc(epoch(d, "13:30")), "submitted", sorted([ids["tinh-uy"], ids["hoa-binh"]])), after
    page = html.unescape(op.get(f"{srv.base}/bookings/{bid}", timeout=10).text)
    assert 'data-status="submitted"' in page and "Báo thay đổi" in page, "the change notices are not listed"


def test_held_and_closed_by_the_control_center_only(srv, ids, org, op):
    d = day(21)
    bid = register(org, srv.base, title="Họp kiểm tra quy trình bắt đầu, kết thúc", d=d, start="08:00",
                   end="09:00", host=ids["tinh-uy"], sites=[ids["dong-hai"]])
    r = step(op, srv.base, bid, "held")
    assert r.status_code == 422 and status_of(srv, bid) == "submitted", "held before approval"
    assert step(op, srv.base, bid, "approve").status_code == 303
    assert 'id="mark-held"' not in org.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    assert 'id="mark-held"' in op.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    r = step(org, srv.base, bid, "held")
    assert r.status_code in (403, 422) and status_of(srv, bid) == "approved", f"organizer held: {r.status_code}"
    r = step(op, srv.base, bid, "close")
    assert r.status_code == 422 and status_of(srv, bid) == "approved", "closed without being held"
    r = step(op, srv.base, bid, "held", csrf="")
    assert r.status_code == 403 and status_of(srv, bid) == "approved"
    assert step(op, srv.base, bid, "held").status_code == 303 and status_of(srv, bid) == "held"
    page = op.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    assert 'id="close"' in page and 'id="mark-held"' not in page and 'id="edit"' not in page
    r = step(org, srv.base, bid, "close")
    assert r.status_code in (403, 422) and status_of(srv, bid) == "held"
    assert step(op, srv.base, bid, "close").status_code == 303 and status_of(srv, bid) == "closed"
    rows = srv.query("SELECT action, actor, before_json, after_json FROM audit WHERE entity = 'booking' "
                     "AND entity_id = ? AND action IN ('booking_held', 'booking_close') ORDER BY id", str(bid))
    assert [(a, who) for a, who, _, _ in rows] == [("booking_held", "dieuhanh"), ("booking_close", "dieuhanh")], rows
    assert '"approved"' in rows[0][2] and '"held"' in rows[0][3] and '"held"' in rows[1][2] and '"closed"' in rows[1][3]
    assert 'id="close"' not in op.get(f"{srv.base}/bookings/{bid}", timeout=10).text


def _second_provider_contact(srv: OwnServer) -> int:
    """A second on-duty candidate at the provider (phone only, so no other test's mail changes)."""
    con = sqlite3.connect(srv.db_path, timeout=10)
    try:
        row = con.execute("SELECT id FROM provider_contacts WHERE name = 'Lê Thị Đêm'").fetchone()
        if row:
            return row[0]
        cur = con.execute("INSERT INTO provider_contacts (unit_id, name, phone, email) "
                          "SELECT id, 'Lê Thị Đêm', '0291 3999 999', '' FROM units WHERE code = 'vnpt'")
        con.commit()
        return cur.lastrowid
    finally:
        con.close()


def test_on_duty_provider_technician_per_meeting(srv, mailbox, ids, org, op):
    contact = _second_provider_contact(srv)
    d = day(22)
    title = "Hội nghị trực tuyến về an toàn giao thông"
    bid = register(org, srv.base, title=title, d=d, start="08:00", end="10:00", host=ids["tinh-uy"],
                   sites=[ids["hoa-binh"]])
    page = op.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    m = re.search(r'<form[^>]*id="on-duty-form".*?</form>', page, re.S)
    assert m, "no on-duty select for the operator"
    assert "Phạm Văn Trực" in m.group(0) and "Lê Thị Đêm" in m.group(0), m.group(0)
    assert 'id="on-duty-form"' not in org.get(f"{srv.base}/bookings/{bid}", timeout=10).text

    def duty(s, value, csrf=None):
        token = csrf_for(s, srv.base, bid) if csrf is None else csrf
        return s.post(f"{srv.base}/bookings/{bid}/duty", data={"csrf": token, "contact": value},
                      allow_redirects=False, timeout=30)

    def on_duty():
        return srv.query("SELECT on_duty_contact_id FROM bookings WHERE id = ?", bid)[0][0]

    assert duty(org, str(contact)).status_code == 403 and on_duty() is None, "an organizer chose the on-duty"
    assert duty(op, str(contact), csrf="").status_code == 403 and on_duty() is None
    r = duty(op, "999999")
    assert r.status_code == 422 and on_duty() is None, r.status_code
    assert duty(op, str(contact)).status_code == 303 and on_duty() == contact
    assert "Lê Thị Đêm" in html.unescape(org.get(f"{srv.base}/bookings/{bid}", timeout=10).text)
    rows = srv.query("SELECT before_json, after_json FROM audit WHERE action = 'booking_on_duty' AND entity_id = ?",
                     str(bid))
    assert len(rows) == 1 and "Lê Thị Đêm" in rows[0][1], rows

    # Approval: the technicians' notices name the on-duty technician; so does the letter.
    assert step(op, srv.base, bid, "approve").status_code == 303
    bodies = srv.query("SELECT body FROM notices WHERE booking_id = ? AND kind = 'technician_notice'", bid)
    assert bodies and all("Lê Thị Đêm" in b and "0291 3999 999" in b for b, in bodies), bodies
    assert "Lê Thị Đêm" in text_of(org.get(f"{srv.base}/bookings/{bid}/letter", timeout=10).text)
    # Changed after approval: the technicians (and the provider) are told.
    assert duty(op, "1" if contact != 1 else "").status_code == 303
    want = technicians(srv, ["tinh-uy", "hoa-binh"]) | {PROVIDER}
    wait_for(lambda: {rc for m in mailbox.about(title) if "Cán bộ trực" in m.subject for rc in m.rcpt_tos} >= want,
             T_MAIL, f"on-duty notices to {sorted(want)}", detail=mailbox.describe)


def test_notice_file_upload_download_and_refusals(srv, ids, org, op):
    d = day(23)
    base_kw = dict(d=d, host=ids["tinh-uy"], sites=[ids["phuoc-long"]])
    pdf = pdf_bytes(mark="Công văn 88/STTTT-VP")
    r = post_form(org, srv.base + "/bookings/new",
                  booking_form(org, srv.base, title="Họp có công văn", start="08:00", end="09:00", **base_kw),
                  ("Công văn 88-STTTT.pdf", pdf, "application/pdf"))
    bid = created_id(r)
    assert srv.query("SELECT filename, size, content_type FROM booking_files WHERE booking_id = ?", bid) == \
        [("Công văn 88-STTTT.pdf", len(pdf), "application/pdf")]
    page = org.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    assert f'href="/bookings/{bid}/notice.pdf"' in page, "no download link on the booking page"
    r = org.get(f"{srv.base}/bookings/{bid}/notice.pdf", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf" and r.content == pdf
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert browser_session(srv.base, "dc-vinh-loi", PASSWORD).get(
        f"{srv.base}/bookings/{bid}/notice.pdf", timeout=10).status_code == 403
    assert browser_session(srv.base, "dc-phuoc-long", PASSWORD).get(
        f"{srv.base}/bookings/{bid}/notice.pdf", timeout=10).content == pdf

    # Refusals beside the field, nothing saved (neither the booking nor the file).
    before, files = counts(srv), file_count(srv)
    cases = [
        ("text renamed .pdf", ("cong-van.pdf", b"Day khong phai PDF", "application/pdf"), 422, MSG_FILE_TYPE),
        ("PDF named .docx", ("cong-van.docx", pdf, "application/pdf"), 422, MSG_FILE_TYPE),
        ("HTML posing as PDF", ("cv.pdf", b"<html><script>alert(1)</script>%PDF-", "application/pdf"), 422,
         MSG_FILE_TYPE),
        ("5 MiB + 1 byte", ("lon.pdf", pdf_bytes(NOTICE_MAX + 1), "application/pdf"), 413, MSG_FILE_SIZE),
        ("9 MiB", ("rat-lon.pdf", pdf_bytes(9 * 1024 * 1024), "application/pdf"), 413, MSG_FILE_SIZE),
    ]
    for label, file, status, text in cases:
        r = post_form(org, srv.base + "/bookings/new",
                      booking_form(org, srv.base, title=f"Họp công văn sai: {label}", start="10:00", end="11:00",
                                   **base_kw), file)
        assert r.status_code == status, f"{label}: HTTP {r.status_code} {field_errors(r.text)}"
        assert text in field_errors(r.text).get("notice_file", ""), f"{label}: {field_errors(r.text)}"
        assert 'value="Họp công văn sai' in r.text, f"{label}: the form did not keep what was typed"
        assert (counts(srv), file_count(srv)) == (before, files), f"{label}: something was saved"
    # A good file with a refused registration (overlap): nothing saved either.
    r = post_form(org, srv.base + "/bookings/new",
                  booking_form(org, srv.base, title="Họp trùng giờ có công văn", start="08:30", end="09:30",
                               **base_kw), ("cv.pdf", pdf, "application/pdf"))
    assert r.status_code == 422 and "khoản 2 Điều 5" in (rules_error(r.text) or "")
    assert (counts(srv), file_count(srv)) == (before, files)
    # Exactly 5 MiB is accepted.
    big = pdf_bytes(NOTICE_MAX)
    big_id = created_id(post_form(org, srv.base + "/bookings/new",
                                  booking_form(org, srv.base, title="Họp công văn đúng 5 MB", start="13:00",
                                               end="14:00", **base_kw), ("5mb.pdf", big, "application/pdf")))
    assert srv.query("SELECT size FROM booking_files WHERE booking_id = ?", big_id) == [(NOTICE_MAX,)]

    # Editing: no file keeps it, a new one replaces it, the box removes it; audited.
    kw = dict(title="Họp có công văn", start="08:00", end="09:00", **base_kw)
    assert edit(org, srv.base, bid, **kw).status_code == 303
    assert org.get(f"{srv.base}/bookings/{bid}/notice.pdf", timeout=10).content == pdf
    pdf2 = pdf_bytes(mark="bản sửa")
    assert edit(org, srv.base, bid, file=("cv-sua.pdf", pdf2, "application/pdf"), **kw).status_code == 303
    assert org.get(f"{srv.base}/bookings/{bid}/notice.pdf", timeout=10).content == pdf2
    r = edit(org, srv.base, bid, file=("x.pdf", b"not a pdf", "application/pdf"), **kw)
    assert r.status_code == 422 and MSG_FILE_TYPE in field_errors(r.text).get("notice_file", "")
    assert org.get(f"{srv.base}/bookings/{bid}/notice.pdf", timeout=10).content == pdf2
    assert edit(org, srv.base, bid, remove_notice_file="1", **kw).status_code == 303
    assert org.get(f"{srv.base}/bookings/{bid}/notice.pdf", timeout=10).status_code == 404
    audits = [a for a, in srv.query("SELECT after_json FROM audit WHERE action = 'edit_booking' AND entity_id = ? "
                                    "ORDER BY id", str(bid))]
    assert "cv-sua.pdf" in audits[1] and '"notice_file":null' in audits[-1].replace(" ", ""), audits

    # Other routes keep the small body limit (256 KiB).
    token = csrf_for(org, srv.base, bid)
    r = org.post(f"{srv.base}/bookings/{bid}/costs", data={"csrf": token, "description": "x" * (300 * 1024)},
                 allow_redirects=False, timeout=30)
    assert r.status_code == 413, f"a 300 KiB cost form: HTTP {r.status_code}"
    r = post_form(org, srv.base + "/bookings",
                  booking_form(org, srv.base, title="Họp qua đường cũ", start="15:00", end="16:00", **base_kw),
                  ("cv.pdf", pdf_bytes(300 * 1024), "application/pdf"))
    assert r.status_code == 413, f"300 KiB to POST /bookings: HTTP {r.status_code}"


def test_browser_edit_with_a_notice_file(srv, ids, org):
    d = day(24)
    bid = register(org, srv.base, title="Họp tập huấn phần mềm một cửa", d=d, start="08:00", end="09:00",
                   host=ids["tinh-uy"], sites=[ids["hong-dan"]], kind="tap_huan")
    tmp = tempfile.mkdtemp(prefix="hnth-e2e-upload-")
    good, bad = os.path.join(tmp, "cong-van.pdf"), os.path.join(tmp, "anh.pdf")
    with open(good, "wb") as f:
        f.write(pdf_bytes(mark="trình duyệt"))
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not a pdf")
    browsers = BrowserFactory(base=srv.base, password=PASSWORD)
    try:
        p = browsers.new("organizer edits")
        drv = p.driver
        browser_login(p, "so-tttt")
        drv.get(f"{srv.base}/bookings/{bid}")
        p.click("#edit")
        wait_for(lambda: drv.find_elements(By.ID, "save-booking"), T_PAGE, "the edit form",
                 detail=lambda: body_text(p)[:400])
        title = drv.find_element(By.NAME, "title")
        title.clear()
        title.send_keys("Họp tập huấn phần mềm một cửa điện tử")
        drv.find_element(By.NAME, "notice_file").send_keys(bad)
        drv.find_element(By.ID, "save-booking").click()
        wait_for(lambda: drv.find_elements(By.ID, "error-notice_file"), T_PAGE, "the file error beside the field",
                 detail=lambda: body_text(p)[:600])
        assert MSG_FILE_TYPE in drv.find_element(By.ID, "error-notice_file").text
        assert srv.query("SELECT title FROM bookings WHERE id = ?", bid) == [("Họp tập huấn phần mềm một cửa",)]
        assert drv.find_element(By.NAME, "title").get_attribute("value") == "Họp tập huấn phần mềm một cửa điện tử"
        drv.find_element(By.NAME, "notice_file").send_keys(good)
        drv.find_element(By.ID, "save-booking").click()
        wait_for(lambda: drv.find_elements(By.ID, "notice-file"), T_PAGE, "the booking page with the notice link",
                 detail=lambda: body_text(p)[:600])
        assert path_of(p) == f"/bookings/{bid}"
        assert srv.query("SELECT b.title, f.filename FROM bookings b JOIN booking_files f ON f.booking_id = b.id "
                         "WHERE b.id = ?", bid) == [("Họp tập huấn phần mềm một cửa điện tử", "cong-van.pdf")]
    finally:
        browsers.quit_all()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# 6. Notices that can no longer serve, the language of notices, another province (issue 12)

MSG_NOTICE_EXPIRED = "Hết hạn, không gửi"


def _write_db(srv: OwnServer, sql: str, *args) -> None:
    """Change rows of the running server's database (WAL: the server keeps working)."""
    con = sqlite3.connect(srv.db_path, timeout=10)
    try:
        with con:
            con.execute(sql, args)
    finally:
        con.close()


def test_reminders_of_a_meeting_already_held_expire_instead_of_being_sent(srv, mailbox, ids, org, op):
    """The server (or its mail server) was down when the reminders were due, and the meeting has
    been held since: on the next round they are marked expired, not sent, and the booking page
    says so."""
    title = "Họp trực tuyến đã diễn ra khi máy chủ thư ngừng"
    bid = register(org, srv.base, title=title, d=day(31), start="08:00", end="09:00",
                   host=ids["tinh-uy"], sites=[ids["hoa-binh"]])
    assert step(op, srv.base, bid, "approve").status_code == 303
    reminders = srv.query("SELECT id FROM notices WHERE booking_id = ? AND kind = 'reminder'", bid)
    assert reminders, "the approval queued no reminders"
    wait_for(lambda: srv.query("SELECT COUNT(*) FROM notices WHERE booking_id = ? AND kind != 'reminder' "
                               "AND sent_at IS NULL", bid) == [(0,)],
             T_MAIL, "the approval's immediate notices to be sent")
    # Move the clock: the meeting was three days ago, the reminders were due four days ago.
    start = int(now_vn().timestamp()) - 3 * 86400
    _write_db(srv, "UPDATE bookings SET preparation_start = ?, official_start = ?, official_end = ? WHERE id = ?",
              start - 1800, start, start + 3600, bid)
    _write_db(srv, "UPDATE notices SET due_at = ? WHERE booking_id = ? AND kind = 'reminder'", start - 86400, bid)

    def expired():
        sent = srv.query("SELECT id, to_addr, sent_at FROM notices WHERE booking_id = ? AND kind = 'reminder' "
                         "AND sent_at IS NOT NULL", bid)
        if sent:
            raise Abort(f"reminders of a meeting held 3 days ago were sent: {sent}; mailbox: {mailbox.describe()}")
        rows = srv.query("SELECT expired_at FROM notices WHERE booking_id = ? AND kind = 'reminder'", bid)
        return all(exp is not None for exp, in rows) and rows

    wait_for(expired, T_MAIL, "the stale reminders to be marked expired (the outbox runs every 15 s)",
             detail=lambda: srv.query("SELECT * FROM notices WHERE booking_id = ?", bid))
    assert not [m for m in mailbox.about(title) if "Nhắc lịch" in m.subject], mailbox.describe()
    page = html.unescape(op.get(f"{srv.base}/bookings/{bid}", timeout=10).text)  # the control center's view
    rows = re.findall(r"<tr><td>Nhắc lịch</td>.*?</tr>", page)
    assert rows and all(MSG_NOTICE_EXPIRED in r for r in rows), f"reminders on the booking page: {rows}"


def test_approval_in_the_english_ui_sends_vietnamese_notices(srv, mailbox, ids, org):
    """Notices go to units, sites and the provider: Vietnamese subject and body, whatever the
    language of the operator who approved."""
    title = "Họp trực tuyến duyệt bằng giao diện tiếng Anh"
    bid = register(org, srv.base, title=title, d=day(33), start="14:00", end="15:00",
                   host=ids["tinh-uy"], sites=[ids["tp-bac-lieu"]], kind="giao_ban")
    op_en = browser_session(srv.base, "dieuhanh", PASSWORD)
    op_en.cookies.set("hnth_lang", "en")
    page = op_en.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    assert '<html lang="en"' in page, "the operator's page is not in English"
    r = step(op_en, srv.base, bid, "approve")
    assert r.status_code == 303, f"approve in English: HTTP {r.status_code}"
    want = technicians(srv, ["tinh-uy", "tp-bac-lieu"]) | {PROVIDER}
    got = wait_for(lambda: len(mailbox.about(title)) >= len(want) and mailbox.about(title), T_MAIL,
                   f"the approval notices of {title!r}", detail=mailbox.describe)
    for m in got:
        assert m.subject == f"[HNTH] Giao ban: {title}", f"{m.rcpt_tos}: subject {m.subject!r}"
        body = m.msg.get_body(preferencelist=("plain",)).get_content()
        assert "Văn phòng UBND tỉnh thông báo" in body, body
        for name, text in ics_attachments(m):
            assert f"SUMMARY:Giao ban: {title}" in unfold(text), f"{name}: {unfold(text)}"


def test_another_province_prints_its_own_place_on_the_letter(inside_netns):
    """[province] in the settings file: the letter is dated at that province's place and names its
    People's Committee office, and cites Bạc Liêu's decision only where the settings name it; the
    page header names the province."""
    cfg_dir = tempfile.mkdtemp(prefix="hnth-province-cfg-")
    cfg = os.path.join(cfg_dir, "hnth.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write('[province]\nname = "Tỉnh Cà Mau"\noffice = "Văn phòng UBND tỉnh Cà Mau"\nplace = "Cà Mau"\n')
    s = _new_server("province", ["--config", cfg]).start()
    try:
        org = browser_session(s.base, "so-tttt", PASSWORD)
        op = browser_session(s.base, "dieuhanh", PASSWORD)
        sid = {code: i for i, code in s.query("SELECT id, code FROM sites")}
        bid = register(org, s.base, title="Họp trực tuyến của tỉnh Cà Mau", d=day(12), start="08:00",
                       end="09:00", host=sid["tinh-uy"], sites=[sid["hoa-binh"]])
        assert step(op, s.base, bid, "approve").status_code == 303
        r = org.get(f"{s.base}/bookings/{bid}/letter", timeout=10)
        assert r.status_code == 200, f"letter: HTTP {r.status_code}"
        text = text_of(r.text)
        (decided,), = s.query("SELECT decided_at FROM bookings WHERE id = ?", bid)
        place_date = letter_date(decided).replace("Bạc Liêu", "Cà Mau")
        assert place_date in text, f"the letter lacks {place_date!r}:\n{text[:1500]}"
        assert "Văn phòng UBND tỉnh Cà Mau" in text, text[:3000]
        assert "Bạc Liêu" not in text, f"Bạc Liêu on another province's letter:\n{text}"
        assert "561" not in text and "khoản 2 Điều 5 Quy chế)" in text, \
            f"a letter of a province whose settings name no decision cites one:\n{text}"
        page = html.unescape(org.get(f"{s.base}/bookings", timeout=10).text)
        assert re.search(r'class="brand".*?Tỉnh Cà Mau', page, re.S), "the page header does not name the province"
    finally:
        s.stop()
        shutil.rmtree(cfg_dir, ignore_errors=True)
# Issue 12: the registration form as a user sees it (dates and times, hints, the preparation
# following the start, every error at once, the conflict check's own box)

MSG_CHECK_TITLE = "Kiểm tra trùng lịch"
MSG_RULES_TITLE = "Đăng ký không hợp lệ"


def check_result(page: str) -> tuple[str, list[str]] | None:
    """The conflict check's box: its state (ok, conflicts, displaces, unchecked) and its items."""
    m = re.search(r'<section id="conflict-check" class="check-result ([a-z]+)"[^>]*>(.*?)</section>', page, re.S)
    if not m:
        return None
    items = [html.unescape(re.sub(r"<[^>]+>", "", x)).strip() for x in re.findall(r"<li>(.*?)</li>", m.group(2), re.S)]
    return m.group(1), items


def open_new_form(page: Page, base: str) -> None:
    page.driver.get(base + "/bookings/new")
    wait_for(lambda: page.driver.find_elements(By.CSS_SELECTOR, "form.booking-form input[name=title]"), T_PAGE,
             f"{page.name}: the registration form", detail=lambda: body_text(page)[:400])


def retype(el, text: str) -> None:
    el.clear()
    el.send_keys(text)


@pytest.fixture(scope="module")
def form_page(srv):
    """One organizer's browser on the registration form (reloaded by each test)."""
    browsers = BrowserFactory(base=srv.base, password=PASSWORD)
    try:
        p = browsers.new("organizer: the form's inputs")
        browser_login(p, "so-tttt")
        yield p
    finally:
        browsers.quit_all()


def test_browser_form_dates_and_times_have_hints_not_values_and_a_calendar(srv, form_page):
    p = form_page
    open_new_form(p, srv.base)
    drv = p.driver
    # Hints are not values: no placeholder with a digit, and a hint text beside each field.
    for name in ("date", "start", "end", "prep", "notice_date"):
        el = drv.find_element(By.NAME, name)
        ph = el.get_attribute("placeholder") or ""
        assert not re.search(r"\d", ph), f"{name}: the placeholder {ph!r} looks like a filled-in value"
        hint_id = el.get_attribute("aria-describedby")
        assert hint_id, f"{name}: no hint (aria-describedby)"
        hint = drv.find_element(By.ID, hint_id)
        assert hint.is_displayed() and hint.text.strip(), f"{name}: the hint #{hint_id} is empty or hidden"
    date_hint = drv.find_element(By.ID, drv.find_element(By.NAME, "date").get_attribute("aria-describedby")).text
    time_hint = drv.find_element(By.ID, drv.find_element(By.NAME, "start").get_attribute("aria-describedby")).text
    assert "dd/mm/yyyy" in date_hint and "24" in time_hint, (date_hint, time_hint)
    # A calendar beside the date: what is picked there lands in the field as dd/mm/yyyy.
    d = day(30)
    assert drv.find_element(By.CSS_SELECTOR, "button.calendar-button[data-for=date]").is_displayed()
    p.js("const i = document.querySelector('input.calendar-input[data-for=date]');"
         "i.value = arguments[0]; i.dispatchEvent(new Event('change', {bubbles: true}));", d.isoformat())
    assert drv.find_element(By.NAME, "date").get_attribute("value") == dmy(d)


def test_browser_written_notice_dated_today_in_vietnam(srv, form_page):
    # Today in Asia/Ho_Chi_Minh, not in UTC (before 07:00 that would be yesterday; the unit test
    # `default_notice_date_is_today_in_vietnam` pins that hour).
    open_new_form(form_page, srv.base)
    assert form_page.driver.find_element(By.NAME, "notice_date").get_attribute("value") == dmy(day(0))


def test_browser_preparation_follows_the_start_unless_set_by_hand(srv, form_page):
    p = form_page
    open_new_form(p, srv.base)
    drv = p.driver
    start, prep = drv.find_element(By.NAME, "start"), drv.find_element(By.NAME, "prep")
    # 30 minutes before by default, then keeping its offset...
    start.send_keys("09:00")
    wait_for(lambda: prep.get_attribute("value") == "08:30", T_PAGE, "the preparation at 08:30 after 09:00",
             detail=lambda: prep.get_attribute("value"))
    retype(start, "10:15")
    wait_for(lambda: prep.get_attribute("value") == "09:45", T_PAGE, "the preparation at 09:45 after 10:15",
             detail=lambda: prep.get_attribute("value"))
    retype(prep, "09:30")
    retype(start, "10:45")
    wait_for(lambda: prep.get_attribute("value") == "09:30", T_PAGE, "a preparation set by hand to stay",
             detail=lambda: prep.get_attribute("value"))
    assert start.get_attribute("value") == "10:45"
    # ... also once the form came back from the server (a refused field), it is still by hand.
    drv.find_element(By.ID, "submit-booking").click()
    wait_for(lambda: drv.find_elements(By.ID, "error-title"), T_PAGE, "the form back with the title's error")
    start, prep = drv.find_element(By.NAME, "start"), drv.find_element(By.NAME, "prep")
    assert (start.get_attribute("value"), prep.get_attribute("value")) == ("10:45", "09:30")
    retype(start, "11:00")
    wait_for(lambda: start.get_attribute("value") == "11:00", T_PAGE, "the start typed")
    assert prep.get_attribute("value") == "09:30", "a preparation set by hand was moved after the round trip"
    # Emptied, it follows the start again.
    prep.clear()
    retype(start, "14:00")
    wait_for(lambda: prep.get_attribute("value") == "13:30", T_PAGE, "an emptied preparation to follow again",
             detail=lambda: prep.get_attribute("value"))


def test_browser_every_error_at_once_and_the_conflict_check_in_its_own_box(srv, ids, org):
    d = day(31)
    first = "Hội nghị giao ban trực tuyến quý IV"
    before = register_first(srv, org, ids, first, d, "dong-hai")
    title = "Họp kiểm tra hiển thị lỗi"
    browsers = BrowserFactory(base=srv.base, password=PASSWORD)
    try:
        p = browsers.new("organizer: errors")
        browser_login(p, "so-tttt")
        open_new_form(p, srv.base)
        drv = p.driver
        drv.find_element(By.NAME, "title").send_keys(title)
        Select(drv.find_element(By.NAME, "host_site")).select_by_value(str(ids["hong-dan"]))
        drv.find_element(By.CSS_SELECTOR, f"input[name=sites][value='{ids['dong-hai']}']").click()
        drv.find_element(By.NAME, "date").send_keys(dmy(day(2)))
        drv.find_element(By.NAME, "start").send_keys("09:00")
        drv.find_element(By.NAME, "end").send_keys("10:00")
        # No chair, and only 2 days ahead: both errors at once (the field and the rule, B1).
        drv.find_element(By.ID, "submit-booking").click()
        wait_for(lambda: drv.find_elements(By.ID, "error-chair"), T_PAGE, "the chair's error beside the field",
                 detail=lambda: body_text(p)[:800])
        assert MSG_ERR["chair"] in drv.find_element(By.ID, "error-chair").text
        rules = drv.find_elements(By.ID, "error-rules")
        assert rules and rules[0].is_displayed() and "khoản 1 Điều 5" in rules[0].text, \
            f"the lead-time refusal is not shown with the field error: {body_text(p)[:800]!r}"
        assert counts(srv) == before, "a refused registration was saved"
        assert drv.find_element(By.NAME, "title").get_attribute("value") == title
        assert drv.find_element(By.NAME, "date").get_attribute("value") == dmy(day(2))

        # The conflict check: its own box and heading, listing the conflict.
        drv.find_element(By.NAME, "chair").send_keys("Chánh Văn phòng UBND huyện Hồng Dân")
        retype(drv.find_element(By.NAME, "date"), dmy(d))
        drv.find_element(By.CSS_SELECTOR, "button[name=action][value=check]").click()
        box = wait_for(lambda: drv.find_elements(By.ID, "conflict-check"), T_PAGE, "the conflict check's box",
                       detail=lambda: body_text(p)[:800])[0]
        assert "conflicts" in box.get_attribute("class").split(), box.get_attribute("outerHTML")[:400]
        assert box.find_element(By.TAG_NAME, "h2").text.strip() == MSG_CHECK_TITLE
        items = [li.text for li in box.find_elements(By.TAG_NAME, "li")]
        assert any(first in x and "khoản 2 Điều 5" in x for x in items), f"conflicts listed: {items}"
        assert MSG_RULES_TITLE not in body_text(p), "the conflict check reports under the refusal's heading"
        assert counts(srv) == before, "checking saved something"

        # A free time: the box is green and says so.
        retype(drv.find_element(By.NAME, "start"), "13:00")
        retype(drv.find_element(By.NAME, "end"), "14:00")
        drv.find_element(By.CSS_SELECTOR, "button[name=action][value=check]").click()
        wait_for(lambda: drv.find_elements(By.CSS_SELECTOR, "#conflict-check.ok"), T_PAGE,
                 "the conflict check's box saying the time is free", detail=lambda: body_text(p)[:800])
        box = drv.find_element(By.ID, "conflict-check")
        assert MSG_NO_CONFLICT in box.text
        rgb = [int(x) for x in re.findall(r"\d+", box.value_of_css_property("background-color"))[:3]]
        assert rgb[1] > rgb[0] and rgb[1] > rgb[2], f"the free box is not green: {rgb}"
        assert counts(srv) == before
    finally:
        browsers.quit_all()


def test_iso_date_as_a_date_input_posts_it_is_accepted(srv, ids, org):
    d = day(32)
    bid = register(org, srv.base, title="Họp đăng ký với ngày ISO", d=d.isoformat(), start="08:00", end="09:00",
                   host=ids["tinh-uy"], sites=[ids["hong-dan"]], notice_date=day(1).isoformat())
    assert srv.query("SELECT official_start, notice_date FROM bookings WHERE id = ?", bid) == \
        [(epoch(d, "08:00"), dmy(day(1)))]


def test_the_control_center_runs_meetings_up_to_its_capacity(srv, ids, org):
    """B3 (Art. 5.2): meetings at the control center's own site do not conflict with each other
    site by site (every meeting runs through it); its capacity (2 by default) decides. Their
    other sites still conflict."""
    d = day(40)
    cc, hd, vl, gr = ids["ttdk"], ids["hong-dan"], ids["vinh-loi"], ids["tx-gia-rai"]
    first = register(org, srv.base, title="Giao ban tại Trung tâm 1", d=d, start="08:00", end="10:00",
                     host=cc, sites=[hd])
    second = register(org, srv.base, title="Giao ban tại Trung tâm 2", d=d, start="09:00", end="11:00",
                      host=cc, sites=[vl])
    assert {status_of(srv, first), status_of(srv, second)} == {"submitted"}
    before = counts(srv)
    # A third at once is beyond the capacity: refused, citing it, nothing written.
    r = post_booking(org, srv.base, title="Giao ban tại Trung tâm 3", d=d, start="09:30", end="10:30",
                     host=cc, sites=[gr])
    text = rules_error(r.text) or ""
    assert r.status_code == 422 and "tối đa 2 cuộc họp" in text and "khoản 2 Điều 5" in text, \
        f"third meeting: HTTP {r.status_code} {text!r}"
    assert counts(srv) == before
    # A district already in one of them still conflicts.
    r = post_booking(org, srv.base, title="Trùng điểm cầu", d=d, start="10:30", end="12:00",
                     host=cc, sites=[vl])
    text = rules_error(r.text) or ""
    assert r.status_code == 422 and "Huyện Vĩnh Lợi" in text, f"shared district: HTTP {r.status_code} {text!r}"
    assert counts(srv) == before


def test_notices_queued_before_a_crash_are_sent_once_after_it(inside_netns, mailbox):
    """The outbox across `kill -9` (issue: nothing lost): notices queued with the approval (in its
    transaction) while no SMTP server is set survive the crash, and the next start sends each
    exactly once, each under its own Message-ID (the same on any retry)."""
    s = _new_server("bookings-crash").start()
    try:
        org = browser_session(s.base, "so-tttt", PASSWORD)
        op = browser_session(s.base, "dieuhanh", PASSWORD)
        sid = {code: i for i, code in s.query("SELECT id, code FROM sites")}
        title = "Họp trước khi máy chủ hỏng"
        bid = register(org, s.base, title=title, d=day(8), start="08:00", end="09:00",
                       host=sid["tinh-uy"], sites=[sid["vinh-loi"]])
        assert step(op, s.base, bid, "approve").status_code == 303
        queued = s.query("SELECT id FROM notices WHERE booking_id = ? AND sent_at IS NULL "
                         "AND due_at <= strftime('%s','now')", bid)
        assert queued, "the approval queued no notice due now"
        s.proc.kill()  # SIGKILL: no shutdown of any kind
        s.proc.wait(timeout=10)
        s.extra_args = ["--smtp", f"127.0.0.1:{mailbox.port}"]
        s.start()
        ids = {n for (n,) in queued}
        wait_for(lambda: not s.query("SELECT id FROM notices WHERE booking_id = ? AND sent_at IS NULL "
                                     "AND due_at <= strftime('%s','now')", bid),
                 T_MAIL, "every due notice sent after the restart", detail=mailbox.describe)
        # (The mailbox is the module's: this server's mails are those about this booking.)
        sent = [m for m in mailbox.all() if str(m.msg["Message-ID"] or "").startswith("<hnth-notice-")
                and title in (m.subject + m.msg.get_body(preferencelist=("plain",)).get_content())]
        got = sorted(int(str(m.msg["Message-ID"]).split("-")[2].split("@")[0]) for m in sent)
        assert got == sorted(ids), (got, sorted(ids), mailbox.describe())
    finally:
        s.stop()
