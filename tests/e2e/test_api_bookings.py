"""JSON API v1, booking writes, against a server of the test's own: registering, editing, each
workflow step, the conflict check and the invitation go through the same use cases as the pages
(services::bookings), so a booking registered through the API shows on the pages and one
registered on the pages shows in the API; every write route × every role is allowed or refused
as the pages are; bad input gets a JSON error naming the field or the rule, and nothing is
written.

Run: scripts/in-netns.sh python3 -m pytest -q -p no:cacheprovider tests/e2e/test_api_bookings.py
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from openapi_spec_validator import validate

from proto_util import (EVERY_ROLE, EXTRA_ROLES, OwnServer, add_accounts, api_login, browser_session, csrf_of,
                        error_text, session)
from proto_util import assert_api_error as assert_error

PASSWORD = "Api-ghi-matkhau-2026!"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
ROLES = EVERY_ROLE
REGISTRANTS = {"quantri", "dieuhanh", "so-tttt"}


@pytest.fixture(scope="module")
def world(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-apiw-data-")
    logs = tempfile.mkdtemp(prefix="hnth-apiw-log-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log").start()
    try:
        add_accounts(srv, EXTRA_ROLES)
        tokens = {u: api_login(srv.base, u, PASSWORD)["token"] for u in ROLES}
        yield srv, tokens
    finally:
        srv.stop()
        print(f"\napi-write server log kept at {srv.log_path}")


def site(srv, code):
    return srv.query("SELECT id FROM sites WHERE code = ?", code)[0][0]


def unit(srv, code="so-tttt"):
    return srv.query("SELECT id FROM units WHERE code = ?", code)[0][0]


def at(days, hhmm):
    d = (datetime.now(VN) + timedelta(days=days)).date()
    h, m = map(int, hhmm.split(":"))
    return datetime(d.year, d.month, d.day, h, m, tzinfo=VN).isoformat()


def body(srv, title, days, start="14:00", end="15:00", host="hong-dan", others=("tinh-uy",), **extra):
    b = {"title": title, "kind": "hop", "host_unit": unit(srv), "chair": "Bà B", "host_site": site(srv, host),
         "sites": [site(srv, o) for o in others], "official_start": at(days, start),
         "official_end": at(days, end), "notice_number": "12/STTTT", "notice_date": "2026-12-01"}
    b.update(extra)
    return b


def call(srv, token, method, path, headers=None, **kw):
    h = {"Authorization": f"Bearer {token}"} if token else {}
    return session().request(method, srv.base + path, headers={**h, **(headers or {})}, timeout=30, **kw)


def counts(srv):
    return tuple(srv.query(f"SELECT COUNT(*) FROM {t}")[0][0]
                 for t in ["bookings", "booking_sites", "audit", "notices"])


def status_of(srv, bid):
    return srv.query("SELECT status FROM bookings WHERE id = ?", bid)[0][0]


def create(srv, token, b):
    r = call(srv, token, "POST", "/api/v1/bookings", json=b)
    assert r.status_code == 201, f"HTTP {r.status_code} {r.text[:400]}"
    return r.json()


def step(srv, token, bid, name, reason=None):
    return call(srv, token, "POST", f"/api/v1/bookings/{bid}/steps",
                json={"step": name, **({"reason": reason} if reason else {})})


def test_the_document_lists_the_write_routes(world):
    srv, _ = world
    doc = session().get(srv.base + "/api/v1/openapi.json", timeout=10).json()
    validate(doc)
    paths = doc["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/bookings"]), paths["/api/v1/bookings"].keys()
    assert {"get", "put"} <= set(paths["/api/v1/bookings/{id}"]), paths["/api/v1/bookings/{id}"].keys()
    for p, m in [("/api/v1/bookings/check", "post"), ("/api/v1/bookings/{id}/steps", "post"),
                 ("/api/v1/bookings/{id}/invitation", "get")]:
        assert m in paths.get(p, {}), f"{m.upper()} {p} not in the document"


def test_a_booking_from_the_api_shows_on_the_pages(world):
    srv, tokens = world
    b = create(srv, tokens["so-tttt"], body(srv, "Họp đăng ký qua API", 9))
    assert b["status"] == "submitted" and b["title"] == "Họp đăng ký qua API", b
    assert b["official_start"] == at(9, "14:00") and b["official_end"] == at(9, "15:00"), b
    assert sorted(b["sites"]) == sorted([site(srv, "hong-dan"), site(srv, "tinh-uy")]), b
    assert b["notice_date"] == "01/12/2026", b
    # P2: the preparation starts the configured time before, as on the form.
    assert b["preparation_start"] < b["official_start"], b
    for user in ["quantri", "so-tttt"]:
        s = browser_session(srv.base, user, PASSWORD)
        assert "Họp đăng ký qua API" in s.get(srv.base + "/bookings", timeout=10).text, user
        page = s.get(f"{srv.base}/bookings/{b['id']}", timeout=10)
        assert page.status_code == 200 and "Họp đăng ký qua API" in page.text, user
    # The audit trail names the account of the token (A3).
    assert srv.query("SELECT actor FROM audit WHERE action = 'create_booking' AND entity_id = ?",
                     str(b["id"])) == [("so-tttt",)]


def test_a_booking_from_the_pages_shows_in_the_api(world):
    srv, tokens = world
    s = browser_session(srv.base, "so-tttt", PASSWORD)
    d = (datetime.now(VN) + timedelta(days=10)).strftime("%d/%m/%Y")
    r = s.post(srv.base + "/bookings", allow_redirects=False, timeout=30, data=[
        ("csrf", csrf_of(s.get(srv.base + "/bookings/new", timeout=10).text)), ("title", "Họp đăng ký trên trang"),
        ("kind", "hop"), ("host_unit", str(unit(srv))), ("chair", "Ông A"), ("host_site", str(site(srv, "hong-dan"))),
        ("sites", str(site(srv, "tinh-uy"))), ("date", d), ("start", "09:00"), ("end", "10:00"), ("action", "submit")])
    assert r.status_code == 303, f"HTTP {r.status_code} {error_text(r.text)!r}"
    bid = int(r.headers["location"].rsplit("/", 1)[1])
    listed = {x["id"]: x for x in call(srv, tokens["so-tttt"], "GET", "/api/v1/bookings").json()}
    assert listed[bid]["title"] == "Họp đăng ký trên trang" and listed[bid]["official_start"] == at(10, "09:00")


def test_edit_and_every_step_through_the_api(world):
    srv, tokens = world
    org, op = tokens["so-tttt"], tokens["dieuhanh"]
    b = create(srv, org, body(srv, "Họp nháp qua API", 11, draft=True))
    bid = b["id"]
    assert b["status"] == "draft", b
    # Editing: every field, as on the edit page; a draft stays a draft.
    r = call(srv, org, "PUT", f"/api/v1/bookings/{bid}",
             json=body(srv, "Họp đã sửa qua API", 11, start="14:30", end="16:00", chair="Ông C"))
    assert r.status_code == 200, r.text[:400]
    e = r.json()
    assert (e["title"], e["chair"], e["status"], e["official_start"]) == \
        ("Họp đã sửa qua API", "Ông C", "draft", at(11, "14:30")), e
    page = browser_session(srv.base, "so-tttt", PASSWORD).get(f"{srv.base}/bookings/{bid}", timeout=10).text
    assert "Họp đã sửa qua API" in page and "Ông C" in page
    # The invitation exists only once approved (B4).
    assert_error(call(srv, org, "GET", f"/api/v1/bookings/{bid}/invitation"), 409, "not_approved")
    assert step(srv, org, bid, "submit").json()["status"] == "submitted"
    # Approving is the control center's (A1).
    assert_error(step(srv, org, bid, "approve"), 403, "role_not_allowed", "A1", "3")
    assert status_of(srv, bid) == "submitted"
    r = step(srv, op, bid, "approve")
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text[:300]
    assert r.json()["decided_at"], r.json()
    inv = call(srv, org, "GET", f"/api/v1/bookings/{bid}/invitation")
    assert inv.status_code == 200 and inv.headers["content-type"].startswith("text/calendar"), inv.headers
    assert "BEGIN:VCALENDAR" in inv.text and "Họp đã sửa qua API" in inv.text
    # Editing an approved booking sends it back for approval (B4).
    r = call(srv, org, "PUT", f"/api/v1/bookings/{bid}",
             json=body(srv, "Họp đã sửa qua API", 11, start="14:30", end="16:30", chair="Ông C"))
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.text[:300]
    assert step(srv, op, bid, "approve").json()["status"] == "approved"
    assert step(srv, op, bid, "held").json()["status"] == "held"
    assert_error(step(srv, op, bid, "approve"), 422, "invalid_transition", "B4", "5.2")
    assert step(srv, op, bid, "close").json()["status"] == "closed"
    assert_error(call(srv, org, "GET", f"/api/v1/bookings/{bid}/invitation"), 409, "not_approved")
    actions = [a for (a,) in srv.query("SELECT action FROM audit WHERE entity = 'booking' AND entity_id = ? "
                                       "ORDER BY id", str(bid))]
    assert actions == ["create_booking", "edit_booking", "booking_submit", "booking_approve", "edit_booking",
                       "booking_approve", "booking_held", "booking_close"], actions
    # Rejecting and cancelling need a reason (B4).
    r2 = create(srv, org, body(srv, "Họp bị từ chối", 11, start="08:00", end="09:00", host="vinh-loi"))["id"]
    assert_error(step(srv, op, r2, "reject"), 422, "reason_required", "B4", "5.2")
    assert step(srv, op, r2, "reject", "Trùng lịch lãnh đạo").json()["reason"] == "Trùng lịch lãnh đạo"
    c = create(srv, org, body(srv, "Họp bị hủy", 11, start="10:00", end="11:00", host="vinh-loi"))["id"]
    assert_error(step(srv, org, c, "cancel"), 422, "reason_required", "B4", "5.2")
    assert step(srv, org, c, "cancel", "Đổi kế hoạch").json()["status"] == "cancelled"
    # Separation of duties (A1, Art. 3): the registrant does not approve its own booking.
    own = create(srv, tokens["quantri"], body(srv, "Họp tự duyệt", 11, start="19:00", end="20:00",
                                              host="vinh-loi"))["id"]
    b = assert_error(step(srv, tokens["quantri"], own, "approve"), 403)
    assert b.get("rule") == "A1", b
    assert status_of(srv, own) == "submitted"
    assert step(srv, op, own, "approve").json()["status"] == "approved"


def test_the_conflict_check_writes_nothing(world):
    srv, tokens = world
    org = tokens["so-tttt"]
    a = create(srv, org, body(srv, "Họp giữ lịch", 12, start="10:00", end="11:00"))
    before = counts(srv)
    # Another meeting of tinh-uy at that time overlaps (B3, Art. 5.2).
    other = body(srv, "Họp trùng", 12, start="10:30", end="11:30", host="tinh-uy", others=["vinh-loi"])
    r = call(srv, org, "POST", "/api/v1/bookings/check", json=other)
    assert r.status_code == 200, r.text[:300]
    c = r.json()
    assert (c["ok"], c["state"]) == (False, "conflicts") and c["errors"] == [], c
    assert c["conflicts"][0]["rule"] == "B3", c
    # Registering it is refused the same way, with every error at once.
    r = call(srv, org, "POST", "/api/v1/bookings", json={**other, "title": ""})
    e = assert_error(r, 422, field="title")
    assert "B3" in [x.get("rule") for x in e["errors"]], e
    # Free an hour later; and a booking is no conflict of itself (checking an edit).
    free = call(srv, org, "POST", "/api/v1/bookings/check",
                json=body(srv, "Họp sau", 12, start="14:00", end="15:00", host="tinh-uy", others=["vinh-loi"])).json()
    assert (free["ok"], free["state"], free["conflicts"]) == (True, "free", []), free
    same = call(srv, org, "POST", "/api/v1/bookings/check",
                json={**body(srv, "Họp giữ lịch", 12, start="10:00", end="11:00"), "booking": a["id"]}).json()
    assert (same["ok"], same["state"]) == (True, "free"), same
    # B5: an emergency would displace the planned meeting (it is only checked here).
    em = call(srv, tokens["dieuhanh"], "POST", "/api/v1/bookings/check",
              json={**other, "emergency": True}).json()
    assert em["state"] == "displaces" and [d["id"] for d in em["displaces"]] == [a["id"]], em
    # Field errors and the rules' other refusals come back too.
    bad = call(srv, org, "POST", "/api/v1/bookings/check",
               json=body(srv, "", 2, start="10:00", end="11:00", host="tinh-uy", others=[])).json()
    assert bad["ok"] is False and {"title", "sites"} <= {x.get("field") for x in bad["errors"]}, bad
    assert "B1" in [x.get("rule") for x in bad["errors"]], bad
    assert counts(srv) == before
    assert status_of(srv, a["id"]) == "submitted"


def test_bad_input_gets_a_json_error_and_writes_nothing(world):
    srv, tokens = world
    org = tokens["so-tttt"]
    good = body(srv, "Họp hợp lệ", 13)
    bid = create(srv, org, body(srv, "Họp để sửa sai", 13, start="08:00", end="09:00"))["id"]
    before = counts(srv)
    post = lambda **kw: call(srv, org, "POST", "/api/v1/bookings", **kw)  # noqa: E731
    assert_error(post(), 415)
    assert_error(post(data="{not json", headers={"content-type": "application/json"}), 400, "bad_request")
    assert_error(post(json=[good]), 400, "bad_request", field="body")
    e = assert_error(post(json={"title": "x"}), 400, "bad_request")
    assert {"host_unit", "chair", "host_site", "sites", "official_start", "official_end"} <= \
        {x["field"] for x in e["errors"]}, e
    assert_error(post(json={**good, "host_unit": "so-tttt"}), 400, "bad_request", field="host_unit")
    assert_error(post(json={**good, "sites": "1,2"}), 400, "bad_request", field="sites")
    assert_error(post(json={**good, "emergency": "yes"}), 400, "bad_request", field="emergency")
    assert_error(post(json={**good, "official_start": at(13, "14:00")[:16]}), 400, "bad_request",
                 field="official_start")
    assert_error(post(json={**good, "notice_date": "31/02/2026"}), 400, "bad_request", field="notice_date")
    assert_error(post(json={**good, "start": "14:00"}), 400, "bad_request", field="start")
    # Well-formed but refused: by the fields' checks and by the rules (422).
    assert_error(post(json={**good, "title": "  "}), 422, "invalid", field="title")
    assert_error(post(json={**good, "sites": [999999]}), 422, "invalid", field="sites")
    assert_error(post(json={**good, "host_unit": 999999}), 422, "invalid", field="host_unit")
    assert_error(post(json={**good, "kind": "party"}), 422, "invalid", field="kind")
    assert_error(post(json={**good, "official_end": at(13, "13:00")}), 422, "end_not_after_start", "B3", "5.2")
    assert_error(post(json=body(srv, "Họp gấp", 2)), 422, "lead_time", "B1", "5.1")
    # Too large: over the 256 KiB of every route, with its size declared or not.
    assert_error(post(json={**good, "title": "x" * (300 * 1024)}), 413, "too_large")
    big = json.dumps({**good, "title": "x" * (300 * 1024)}).encode()
    assert_error(post(data=iter([big]), headers={"content-type": "application/json"}), 413, "too_large")
    # Unknown ids are 404, ids that are no number 400.
    assert_error(call(srv, org, "PUT", "/api/v1/bookings/999999", json=good), 404, "not_found")
    assert_error(step(srv, org, 999999, "submit"), 404, "not_found")
    assert_error(call(srv, org, "GET", "/api/v1/bookings/999999/invitation"), 404, "not_found")
    assert_error(call(srv, org, "POST", "/api/v1/bookings/abc/steps", json={"step": "submit"}), 400, field="id")
    assert_error(step(srv, org, bid, "approve!"), 400, "bad_request", field="step")
    assert_error(call(srv, org, "POST", f"/api/v1/bookings/{bid}/steps", json={}), 400, field="step")
    assert_error(call(srv, org, "PUT", f"/api/v1/bookings/{bid}", json={**good, "title": ""}), 422, field="title")
    assert_error(call(srv, org, "PUT", f"/api/v1/bookings/{bid}", json={**good, "sites": ["a"]}), 400,
                 field="sites")
    assert counts(srv) == before
    assert srv.query("SELECT title FROM bookings WHERE id = ?", bid) == [("Họp để sửa sai",)]


def test_every_write_route_by_role_as_the_pages(world):
    srv, tokens = world
    pages = {u: browser_session(srv.base, u, PASSWORD) for u in ROLES}
    # Registering: the roles that get the registration form.
    for i, user in enumerate(ROLES):
        form = pages[user].get(srv.base + "/bookings/new", timeout=10, allow_redirects=False).status_code
        before = counts(srv)
        b = body(srv, f"Họp của {user}", 20 + i, start="08:00", end="09:00")
        check = call(srv, tokens[user], "POST", "/api/v1/bookings/check", json=b)
        r = call(srv, tokens[user], "POST", "/api/v1/bookings", json=b)
        if user in REGISTRANTS:
            assert form == 200 and check.status_code == 200 and r.status_code == 201, \
                (user, form, check.status_code, r.text[:300])
        else:
            assert form == 403, (user, form)
            assert_error(check, 403, "not_permitted", "A1", "3")
            assert_error(r, 403, "not_permitted", "A1", "3")
            assert counts(srv) == before, user
    # Editing a draft of the department, and its steps, by everyone.
    org = tokens["so-tttt"]
    draft = create(srv, org, body(srv, "Họp nháp ma trận", 30, draft=True))["id"]
    for user in ROLES:
        page = pages[user].get(f"{srv.base}/bookings/{draft}/edit", timeout=10).status_code
        r = call(srv, tokens[user], "PUT", f"/api/v1/bookings/{draft}", json=body(srv, "Họp nháp ma trận", 30))
        assert (page, r.status_code) in [(200, 200), (403, 403)], (user, page, r.text[:300])
        if r.status_code == 403:
            assert_error(r, 403, rule="A1", article="3")
    # Every workflow step, on a booking in the status it applies to, × every role the workflow
    # refuses it to (A1: organizers submit and cancel, the rest is the control center's):
    # refused on the page (in Vietnamese, citing Art. 3) and in the API alike, and nothing
    # changes.
    op = tokens["dieuhanh"]
    sub = create(srv, org, body(srv, "Họp chờ duyệt ma trận", 31))["id"]
    drafted = create(srv, org, body(srv, "Họp nháp chờ gửi", 32, draft=True))["id"]
    approved = create(srv, org, body(srv, "Họp đã duyệt ma trận", 33))["id"]
    held = create(srv, org, body(srv, "Họp đang diễn ra ma trận", 34))["id"]
    for bid in (approved, held):
        assert step(srv, op, bid, "approve").json()["status"] == "approved"
    assert step(srv, op, held, "held").json()["status"] == "held"
    steps = {"submit": drafted, "approve": sub, "reject": sub, "cancel": sub, "held": approved, "close": held}
    # Every step the server knows (it names them when refusing an unknown one) is tried here.
    known = assert_error(step(srv, op, sub, "unknown"), 400, field="step")["message"]
    assert set(steps) == set(re.search(r"\(([a-z, ]+)\)", known).group(1).split(", ")), known
    for name, bid in steps.items():
        allowed = REGISTRANTS if name in ("submit", "cancel") else {"quantri", "dieuhanh"}
        for user in ROLES:
            if user in allowed:
                continue
            was, before = status_of(srv, bid), counts(srv)
            csrf = csrf_of(pages[user].get(srv.base + "/bookings", timeout=10).text)
            page = pages[user].post(f"{srv.base}/bookings/{bid}/{name}", data={"csrf": csrf, "reason": "Lý do"},
                                    allow_redirects=False, timeout=10)
            b = assert_error(step(srv, tokens[user], bid, name, "Lý do"), 403, rule="A1", article="3")
            assert page.status_code in (403, 422) and "Điều 3" in html.unescape(page.text), \
                (name, user, page.status_code, error_text(page.text))
            assert (status_of(srv, bid), counts(srv)) == (was, before), (name, user, b)
    assert step(srv, op, sub, "approve").json()["status"] == "approved"
    # The invitation: whoever sees the booking on the pages gets it in the API.
    for user in ROLES:
        page = pages[user].get(f"{srv.base}/bookings/{sub}/invitation.ics", timeout=10).status_code
        r = call(srv, tokens[user], "GET", f"/api/v1/bookings/{sub}/invitation")
        assert page == r.status_code and page in (200, 403), (user, page, r.status_code)
    # Without a token nothing is written.
    before = counts(srv)
    for method, path in [("POST", "/api/v1/bookings"), ("PUT", f"/api/v1/bookings/{sub}"),
                         ("POST", "/api/v1/bookings/check"), ("POST", f"/api/v1/bookings/{sub}/steps")]:
        assert_error(call(srv, None, method, path, json={}), 401, "unauthenticated")
    assert counts(srv) == before
