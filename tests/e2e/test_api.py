"""JSON API v1 over HTTP against a server of the test's own: the OpenAPI document is valid
(openapi-spec-validator) and every path it names is served; bearer tokens only (a page's session
cookie opens nothing here); every endpoint × role allowed or refused as the pages are, with
{error, message, rule, article}; a booking registered on the pages shows in the API; a meeting
opened and dialed over signaling shows with its attendance; bad input gets a JSON error naming
the field.

Run: scripts/in-netns.sh python3 -m pytest -q -p no:cacheprovider tests/e2e/test_api.py
"""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from openapi_spec_validator import validate

from aiortc_site import AiortcSite
from e2e_util import wait_for
from proto_util import OwnServer, Ws, api_login, browser_session, csrf_of, error_text, session

PASSWORD = "Api-matkhau-2026!"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
USERS = ["quantri", "dieuhanh", "so-tttt", "dc-hong-dan", "dc-vinh-loi"]


@pytest.fixture(scope="module")
def world(inside_netns):
    srv = OwnServer.fresh("api", PASSWORD).start()
    try:
        tokens = {u: api_login(srv.base, u, PASSWORD)["token"] for u in USERS}
        yield srv, tokens
    finally:
        srv.stop()
        print(f"\napi-test server log kept at {srv.log_path}")


def get(srv, token, path, **params):
    h = {"Authorization": f"Bearer {token}"} if token else {}
    return session().get(srv.base + path, headers=h, params=params, timeout=10)


def assert_error(r, status, error, rule=None, article=None, field=None):
    assert r.status_code == status, f"{r.request.method} {r.url}: HTTP {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert body["error"] == error and body["message"], body
    if rule is not None:
        assert (body.get("rule"), body.get("article")) == (rule, article), body
    if field is not None:
        assert body.get("field") == field, body
    return body


def register(srv, user, title, host, others, days=9):
    s = browser_session(srv.base, user, PASSWORD)
    unit = srv.query("SELECT id FROM units WHERE code = 'so-tttt'")[0][0]
    ids = {c: srv.query("SELECT id FROM sites WHERE code = ?", c)[0][0] for c in [host, *others]}
    d = (datetime.now(VN) + timedelta(days=days)).strftime("%d/%m/%Y")
    r = s.post(srv.base + "/bookings", allow_redirects=False, timeout=30, data=[
        ("csrf", csrf_of(s.get(srv.base + "/bookings/new", timeout=10).text)), ("title", title), ("kind", "hop"),
        ("host_unit", str(unit)), ("chair", "Bà B"), ("host_site", str(ids[host])),
        *[("sites", str(ids[o])) for o in others],
        ("date", d), ("start", "14:00"), ("end", "16:30"), ("action", "submit")])
    assert r.status_code == 303, f"registration refused: HTTP {r.status_code} {error_text(r.text)!r}"
    return int(r.headers["location"].rsplit("/", 1)[1]), d


def test_the_document_is_valid_and_every_path_is_served(world):
    srv, tokens = world
    r = session().get(srv.base + "/api/v1/openapi.json", timeout=10)
    assert r.status_code == 200, r.text[:200]
    doc = r.json()
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    validate(doc)  # raises on an invalid document
    paths = doc["paths"]
    for p in ["/api/v1/login", "/api/v1/sites", "/api/v1/sites/{id}", "/api/v1/technicians",
              "/api/v1/bookings", "/api/v1/bookings/{id}", "/api/v1/meetings", "/api/v1/meetings/{id}",
              "/api/v1/next-meetings", "/api/v1/openapi.json", "/api/v1/docs"]:
        assert p in paths, f"{p} not in the document: {sorted(paths)}"
    # Every documented operation is routed: neither 404 nor 405 (ids that do not exist are 404
    # with the API's JSON error, which names not_found). Writes name no object, so that this
    # probe changes nothing.
    for path, item in paths.items():
        for method in item:
            some = "1" if method == "get" else "999999"
            url = srv.base + path.replace("{id}", some).replace("{tech}", some)
            r = session().request(method.upper(), url, headers={"Authorization": f"Bearer {tokens['quantri']}"},
                                  json={} if method == "post" else None, timeout=10)
            assert r.status_code != 405, f"{method.upper()} {path}: 405"
            if r.status_code == 404:
                assert r.json()["error"] == "not_found", f"{method.upper()} {path}: unrouted 404 {r.text[:200]}"
    # The page that shows it, in Vietnamese by default.
    page = session().get(srv.base + "/api/v1/docs", timeout=10)
    assert page.status_code == 200 and "Giao diện lập trình (API) v1" in page.text
    for p in ["/api/v1/bookings/{id}", "/api/v1/meetings"]:
        assert f"<code>{p}</code>" in html.unescape(page.text), f"{p} not on the docs page"


def test_a_token_and_only_a_token(world):
    srv, tokens = world
    for path in ["/api/v1/sites", "/api/v1/technicians", "/api/v1/bookings", "/api/v1/meetings", "/api/v1/bookings/1"]:
        assert_error(get(srv, None, path), 401, "unauthenticated")
        assert_error(get(srv, "not-a-token", path), 401, "unauthenticated")
    # A page's session cookie is no token: another site's page could otherwise call the API
    # with it.
    s = browser_session(srv.base, "quantri", PASSWORD)
    r = s.get(srv.base + "/api/v1/bookings", timeout=10)
    assert_error(r, 401, "unauthenticated")
    # After logout the token opens nothing.
    t = api_login(srv.base, "so-tttt", PASSWORD)["token"]
    assert get(srv, t, "/api/v1/sites").status_code == 200


def test_registry_reads_for_everyone(world):
    srv, tokens = world
    for user in USERS:
        r = get(srv, tokens[user], "/api/v1/sites")
        assert r.status_code == 200, (user, r.text[:200])
        codes = {s["code"] for s in r.json()}
        assert {"ttdk", "hong-dan", "tinh-uy"} <= codes, codes
        assert get(srv, tokens[user], "/api/v1/technicians").status_code == 200
        providers = get(srv, tokens[user], "/api/v1/providers").json()
        assert providers and all(p["name"] and p["unit"] for p in providers), providers
    hd = srv.query("SELECT id FROM sites WHERE code = 'hong-dan'")[0][0]
    one = get(srv, tokens["dc-hong-dan"], f"/api/v1/sites/{hd}").json()
    assert one["code"] == "hong-dan" and one["name"] and isinstance(one["technicians"], list), one
    assert_error(get(srv, tokens["quantri"], "/api/v1/sites/99999"), 404, "not_found")
    assert_error(get(srv, tokens["quantri"], "/api/v1/sites/abc"), 400, "bad_request", field="id")


def test_a_booking_from_the_pages_in_the_api_with_the_pages_rights(world):
    srv, tokens = world
    bid, day = register(srv, "so-tttt", "Họp qua API", "hong-dan", ["tinh-uy"])
    dd, mm, yyyy = day.split("/")
    # The organizer (its unit), the control center and the booking's sites see it.
    for user in ["so-tttt", "quantri", "dieuhanh", "dc-hong-dan"]:
        r = get(srv, tokens[user], f"/api/v1/bookings/{bid}")
        assert r.status_code == 200, (user, r.text[:300])
        b = r.json()
        assert b["title"] == "Họp qua API" and b["status"] == "submitted", b
        assert b["official_start"] == f"{yyyy}-{mm}-{dd}T14:00:00+07:00", b["official_start"]
        assert b["official_end"].endswith("T16:30:00+07:00"), b
        listed = [x["id"] for x in get(srv, tokens[user], "/api/v1/bookings").json()]
        assert bid in listed, (user, listed)
    # A site not in the booking does not (A1, Art. 3), neither alone nor in the list.
    assert_error(get(srv, tokens["dc-vinh-loi"], f"/api/v1/bookings/{bid}"), 403, "not_permitted", "A1", "3")
    assert bid not in [x["id"] for x in get(srv, tokens["dc-vinh-loi"], "/api/v1/bookings").json()]
    # Filters.
    iso_day = f"{yyyy}-{mm}-{dd}"
    q = lambda **p: [x["id"] for x in get(srv, tokens["quantri"], "/api/v1/bookings", **p).json()]  # noqa: E731
    assert bid in q(status="submitted") and bid not in q(status="approved")
    assert bid in q(**{"from": iso_day, "to": iso_day})
    nxt = (datetime.strptime(iso_day, "%Y-%m-%d") + timedelta(days=1)).strftime("%Y-%m-%d")
    assert bid not in q(**{"from": nxt})
    hd = srv.query("SELECT id FROM sites WHERE code = 'hong-dan'")[0][0]
    vl = srv.query("SELECT id FROM sites WHERE code = 'vinh-loi'")[0][0]
    assert bid in q(site=hd) and bid not in q(site=vl)
    # The page shows what the API shows.
    page = browser_session(srv.base, "quantri", PASSWORD).get(f"{srv.base}/bookings/{bid}", timeout=10).text
    assert "Họp qua API" in page
    # Bad input: a JSON error naming the field, nothing else.
    assert_error(get(srv, tokens["quantri"], "/api/v1/bookings", status="approve"), 400, "bad_request", field="status")
    assert_error(get(srv, tokens["quantri"], "/api/v1/bookings", **{"from": "31/02/2026"}), 400, "bad_request",
                 field="from")
    assert_error(get(srv, tokens["quantri"], "/api/v1/bookings", site="x"), 400, "bad_request")
    assert_error(get(srv, tokens["quantri"], "/api/v1/bookings/0"), 404, "not_found")
    assert_error(get(srv, tokens["quantri"], "/api/v1/bookings/1e3"), 400, "bad_request", field="id")


def test_meetings_with_attendance_for_the_control_center(world):
    """Attendance is when a site's media was actually connected (C6), not when it was dialed:
    the site here is an independent aiortc peer that connects for real."""
    srv, tokens = world
    console = Ws.open(srv.base, tokens["dieuhanh"], "console")
    site = AiortcSite(srv.base, "dc-hong-dan", PASSWORD).start()
    try:
        console.expect_type("welcome")
        wait_for(lambda: site.snapshot()["welcome"], 20, "aiortc site: `welcome`", detail=site.snapshot)
        hd = srv.query("SELECT id FROM sites WHERE code = 'hong-dan'")[0][0]
        console.send({"type": "open_meeting", "title": "Giao ban qua API"})
        mid = console.expect(lambda m: m.get("type") == "meeting_opened"
                             and m["meeting"]["title"] == "Giao ban qua API", "meeting_opened")["meeting"]["id"]
        console.send({"type": "dial", "meeting": mid, "site": hd})
        console.expect_type("dialing", meeting=mid, site=hd)
        wait_for(lambda: site.snapshot()["pc"] == "connected", 30, "aiortc site: media connected",
                 detail=site.snapshot)
        for user in ["quantri", "dieuhanh"]:
            listed = get(srv, tokens[user], "/api/v1/meetings", open="true").json()
            assert [m["id"] for m in listed if m["title"] == "Giao ban qua API"] == [mid], listed
            d = wait_for(lambda: (lambda d: d if d["attendance"] else None)(
                get(srv, tokens[user], f"/api/v1/meetings/{mid}").json()),
                10, "the site's attendance recorded")
            assert d["closed_at"] is None and d["opened_by"] == "dieuhanh", d
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+07:00", d["opened_at"]), d
            assert [(a["site_id"], a["disconnected_at"]) for a in d["attendance"]] == [(hd, None)], d
        # The rest may not (A1: reports are the control center's and the leadership's).
        for user in ["so-tttt", "dc-hong-dan"]:
            assert_error(get(srv, tokens[user], "/api/v1/meetings"), 403, "not_permitted", "A1", "3")
            assert_error(get(srv, tokens[user], f"/api/v1/meetings/{mid}"), 403, "not_permitted", "A1", "3")
        assert_error(get(srv, tokens["quantri"], "/api/v1/meetings", limit="0"), 400, "bad_request", field="limit")
        assert_error(get(srv, tokens["quantri"], "/api/v1/meetings/424242"), 404, "not_found")
        console.send({"type": "close_meeting", "meeting": mid})
        console.expect_type("meeting_closed", meeting=mid)
        d = wait_for(lambda: (lambda d: d if d["closed_at"] and d["attendance"][0]["disconnected_at"] else None)(
            get(srv, tokens["quantri"], f"/api/v1/meetings/{mid}").json()),
            10, "the meeting closed and the site's disconnection recorded")
        assert mid not in [m["id"] for m in get(srv, tokens["quantri"], "/api/v1/meetings", open="true").json()]
    finally:
        console.conn.close()
        site.stop()


def test_next_meetings_of_a_site_with_its_cookie_or_a_token(world):
    srv, tokens = world
    # The site app reads it with its session cookie.
    s = browser_session(srv.base, "dc-hong-dan", PASSWORD)
    r = s.get(srv.base + "/api/v1/next-meetings", timeout=10)
    assert r.status_code == 200 and isinstance(r.json()["list"], list), r.text[:200]
    assert get(srv, tokens["dc-hong-dan"], "/api/v1/next-meetings").status_code == 200
    assert_error(get(srv, None, "/api/v1/next-meetings"), 401, "unauthenticated")


def test_login_refuses_bad_bodies_with_json(world):
    srv, _ = world
    for body in [None, [], {"username": "quantri"}, {"username": 7, "password": "x"}]:
        r = session().post(srv.base + "/api/v1/login", json=body, timeout=10)
        assert_error(r, 400, "bad_request")
    r = session().post(srv.base + "/api/v1/login", data="x" * (300 * 1024),
                       headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code in (400, 413), r.status_code


def test_the_audit_trail_and_the_violations(world):
    """/api/v1/audit and /api/v1/violations: what the audit page shows, with its filters and its
    rights (A3, R4), in English; bad filters name their field."""
    srv, tokens = world
    bid, _ = register(srv, "so-tttt", "Họp nhật ký API", "hong-dan", ["tinh-uy"], days=11)
    # The operator tries to make an administrator: refused (A1) and recorded (R4).
    op = browser_session(srv.base, "dieuhanh", PASSWORD)
    r = op.post(srv.base + "/admin/accounts", allow_redirects=False, timeout=30, data={
        "csrf": csrf_of(op.get(srv.base + "/admin/accounts", timeout=10).text), "username": "quan-tri-2",
        "display_name": "Quản trị 2", "role": "admin", "site": "", "unit": "", "password": PASSWORD})
    assert r.status_code == 403, f"escalation: HTTP {r.status_code}"
    q = lambda path, **p: get(srv, tokens["quantri"], path, **p)  # noqa: E731
    rows = q("/api/v1/audit").json()
    mine = [a for a in rows if a["entity"] == "booking" and a["entity_id"] == str(bid)]
    assert mine and mine[-1]["action"] == "create_booking" and mine[-1]["actor"] == "so-tttt", rows[:3]
    assert mine[-1]["entity_name"] == "Họp nhật ký API" and mine[-1]["after"]["title"] == "Họp nhật ký API", mine
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+07:00", mine[-1]["at"]), mine[-1]
    # Filters: by user, action, site and day (yyyy-mm-dd or dd/mm/yyyy).
    assert {a["actor"] for a in q("/api/v1/audit", user="so-tttt").json()} == {"so-tttt"}
    assert {a["action"] for a in q("/api/v1/audit", action="create_booking").json()} == {"create_booking"}
    hd = srv.query("SELECT id FROM sites WHERE code = 'hong-dan'")[0][0]
    vl = srv.query("SELECT id FROM sites WHERE code = 'vinh-loi'")[0][0]
    ids = lambda **p: [a["entity_id"] for a in q("/api/v1/audit", **p).json() if a["entity"] == "booking"]  # noqa: E731
    assert str(bid) in ids(site=hd) and str(bid) not in ids(site=vl)
    today = datetime.now(VN)
    tomorrow = today + timedelta(days=1)
    assert str(bid) in ids(**{"from": today.strftime("%Y-%m-%d"), "to": today.strftime("%d/%m/%Y")})
    assert str(bid) not in ids(**{"from": tomorrow.strftime("%Y-%m-%d")})
    assert len(q("/api/v1/audit", limit="1").json()) == 1
    # The violation, with its rule and article, in English.
    v = [x for x in q("/api/v1/violations", user="dieuhanh").json() if "Administrator" in x["detail"]]
    assert v and (v[0]["rule"], v[0]["article"], v[0]["account"]) == ("A1", "3", "dieuhanh"), v
    assert v[0]["detail"].isascii(), v[0]["detail"]
    # Rights: the control center (and the leadership) only.
    for user in ["so-tttt", "dc-hong-dan"]:
        for path in ["/api/v1/audit", "/api/v1/violations"]:
            assert_error(get(srv, tokens[user], path), 403, "not_permitted", "A1", "3")
    assert get(srv, tokens["dieuhanh"], "/api/v1/audit").status_code == 200
    # Bad filters.
    for params, field in [({"from": "31/02/2026"}, "from"), ({"to": "2026-13-01"}, "to"),
                          ({"from": "2026-03-02", "to": "2026-03-01"}, "to"), ({"site": "99999"}, "site"),
                          ({"action": "drop table"}, "action"), ({"action": "violation"}, "action"),
                          ({"limit": "0"}, "limit"), ({"limit": "5001"}, "limit")]:
        assert_error(q("/api/v1/audit", **params), 400, "bad_request", field=field)
    assert_error(q("/api/v1/audit", site="x"), 400, "bad_request")
    assert_error(q("/api/v1/violations", action="open_meeting"), 400, "bad_request", field="action")
    assert_error(q("/api/v1/violations", **{"from": "hôm qua"}), 400, "bad_request", field="from")
