"""Every page and every form × every role: allowed (200, or a redirect to the role's own page)
or refused (403; a workflow step refused by the rules may answer 422), checked on the server
(A1). A refused POST changes nothing. Without a session, pages send the browser to /login and
the API answers 401. Every API read, and every registry write beside the page form that does
the same, × every role: the API lets past its role check exactly whom the page lets past."""

from __future__ import annotations

import re
import tempfile
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from proto_util import (EVERY_ROLE, EXTRA_ROLES, OwnServer, add_accounts, api_login, browser_session, csrf_of,
                        session)

PASSWORD = "Matrix-matkhau-2026!"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
ROLES = EVERY_ROLE
CONTROL = {"quantri", "dieuhanh"}
ALL = set(ROLES)


@pytest.fixture(scope="module")
def world(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-matrix-data-")
    logs = tempfile.mkdtemp(prefix="hnth-matrix-log-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log").start()
    try:
        add_accounts(srv, EXTRA_ROLES)
        # One approved booking of the department with the host site hong-dan and tinh-uy.
        org = browser_session(srv.base, "so-tttt", PASSWORD)
        form = org.get(srv.base + "/bookings/new", timeout=10).text
        unit = srv.query("SELECT id FROM units WHERE code = 'so-tttt'")[0][0]
        hd = srv.query("SELECT id FROM sites WHERE code = 'hong-dan'")[0][0]
        tu = srv.query("SELECT id FROM sites WHERE code = 'tinh-uy'")[0][0]
        d = (datetime.now(VN) + timedelta(days=9)).strftime("%d/%m/%Y")
        r = org.post(srv.base + "/bookings", allow_redirects=False, timeout=30, data=[
            ("csrf", csrf_of(form)), ("title", "Họp ma trận quyền"), ("kind", "hop"), ("host_unit", str(unit)),
            ("chair", "Ông A"), ("host_site", str(hd)), ("sites", str(tu)), ("date", d), ("start", "08:00"),
            ("end", "09:00"), ("action", "submit")])
        assert r.status_code == 303, f"booking refused: {r.status_code}"
        bid = int(r.headers["location"].rsplit("/", 1)[1])
        op = browser_session(srv.base, "dieuhanh", PASSWORD)
        page = op.get(f"{srv.base}/bookings/{bid}", timeout=10).text
        assert op.post(f"{srv.base}/bookings/{bid}/approve", data={"csrf": csrf_of(page)}, timeout=10).status_code == 200
        sessions = {u: browser_session(srv.base, u, PASSWORD) for u in ROLES}
        yield {"srv": srv, "bid": bid, "hd": hd, "tu": tu, "s": sessions}
    finally:
        srv.stop()


def pages(w):
    b, hd = w["bid"], w["hd"]
    view = ALL  # the booking concerns hong-dan and the department: everyone here may see it
    return [
        ("/console", CONTROL),
        ("/site", {"dc-hong-dan"}),
        ("/chair", {"ct-hong-dan"}),  # the chair's view: the chair's role only (C3, C4)
        ("/admin/audit", CONTROL | {"lanh-dao"}),  # ViewAudit: control center, province-wide leadership
        ("/admin/accounts", CONTROL),
        ("/bookings", ALL),
        ("/bookings/new", CONTROL | {"so-tttt"}),
        ("/calendar", ALL),
        ("/registry", ALL),
        ("/directory", ALL),
        (f"/registry/sites/{hd}", CONTROL | {"kt-hong-dan"}),
        (f"/bookings/{b}", view),
        (f"/bookings/{b}/letter", view),
        (f"/bookings/{b}/invitation.ics", view),
        (f"/bookings/{b}/edit", CONTROL | {"so-tttt"}),
        ("/api/v1/next-meetings", ALL),
    ]


def test_every_page_for_every_role(world):
    srv, wrong = world["srv"], []
    for path, allowed in pages(world):
        for user in ROLES:
            r = world["s"][user].get(srv.base + path, allow_redirects=False, timeout=10)
            want = 200 if user in allowed else 403
            if r.status_code != want:
                wrong.append(f"{user:12} GET {path}: HTTP {r.status_code}, expected {want}")
            if want == 403 and "không có quyền" not in r.text:
                wrong.append(f"{user:12} GET {path}: the refusal does not say why in Vietnamese")
    assert not wrong, "\n".join(wrong)


def test_home_sends_each_role_to_its_page(world):
    srv = world["srv"]
    where = {"quantri": "/console", "dieuhanh": "/console", "dc-hong-dan": "/site", "ct-hong-dan": "/chair"}
    for user in ROLES:
        r = world["s"][user].get(srv.base + "/", allow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["location"] == where.get(user, "/bookings"), (user, r.headers)


def test_without_a_session(world):
    srv, anon = world["srv"], session()
    for path, _ in pages(world):
        r = anon.get(srv.base + path, allow_redirects=False, timeout=10)
        if path.startswith("/api/") or path.endswith(".ics"):
            assert r.status_code in (401, 303), f"{path}: {r.status_code}"
        else:
            assert r.status_code in (303, 401), f"{path}: HTTP {r.status_code}"
            if r.status_code == 303:
                assert r.headers["location"] == "/login", path


def test_every_form_for_every_role(world):
    """Refused roles get 403 (or 422 for a workflow step the rules refuse) and nothing changes;
    allowed roles get past the role check (their deliberately incomplete form is refused 422)."""
    srv, b, hd = world["srv"], world["bid"], world["hd"]
    forms = [
        ("/registry/sites", {"code": "", "name": ""}, CONTROL),
        ("/registry/providers", {"name": "", "action": "save"}, CONTROL),
        (f"/registry/sites/{hd}/technicians", {"name": "", "phone": "", "action": "save"}, CONTROL | {"kt-hong-dan"}),
        ("/admin/accounts", {"username": "", "role": ""}, CONTROL),
        (f"/bookings/{b}/costs", {"category": "", "amount": "x"}, CONTROL | {"so-tttt"}),
        (f"/bookings/{b}/reject", {"reason": ""}, CONTROL),
    ]
    wrong = []
    for path, data, allowed in forms:
        for user in ROLES:
            s = world["s"][user]
            csrf = csrf_of(s.get(srv.base + "/directory", timeout=10).text)
            audit_before = srv.query("SELECT COUNT(*) FROM audit")[0][0]
            r = s.post(srv.base + path, data={"csrf": csrf, **data}, allow_redirects=False, timeout=10)
            if user in allowed:
                if r.status_code != 422:
                    wrong.append(f"{user:12} POST {path}: HTTP {r.status_code}, expected 422 (past the role check)")
            elif r.status_code not in (403, 422) or (r.status_code == 422 and "/bookings/" not in path):
                wrong.append(f"{user:12} POST {path}: HTTP {r.status_code}, expected 403")
            if srv.query("SELECT COUNT(*) FROM audit")[0][0] != audit_before:
                wrong.append(f"{user:12} POST {path}: something was changed")
    assert srv.query("SELECT status FROM bookings WHERE id = ?", b)[0][0] == "approved"
    assert not wrong, "\n".join(wrong)


def api_reads(w):
    """Every read of the JSON API with the roles the pages let read the same thing."""
    b, hd = w["bid"], w["hd"]
    reports = CONTROL | {"lanh-dao"}  # ViewReports, ViewAudit: control center, province-wide leadership
    return [
        ("/api/v1/sites", ALL),
        (f"/api/v1/sites/{hd}", ALL),
        ("/api/v1/technicians", ALL),
        ("/api/v1/providers", ALL),
        ("/api/v1/bookings", ALL),
        (f"/api/v1/bookings/{b}", ALL),
        (f"/api/v1/bookings/{b}/invitation", ALL),  # approved: its .ics, for whoever sees it
        ("/api/v1/meetings", reports),
        ("/api/v1/meetings/424242", reports),  # allowed: 404 (no such meeting); refused: 403 first
        ("/api/v1/audit", reports),
        ("/api/v1/violations", reports),
        ("/api/v1/next-meetings", ALL),
    ]


def test_every_api_read_for_every_role(world):
    """The API answers each role as the pages do: 200 (or 404 for an id that does not exist)
    where the pages let the role read, 403 with rule A1 and article 3 where they do not; every
    path the OpenAPI document names for GET is in this table."""
    srv, wrong = world["srv"], []
    tokens = {u: api_login(srv.base, u, PASSWORD)["token"] for u in ROLES}
    table = api_reads(world)
    doc = session().get(srv.base + "/api/v1/openapi.json", timeout=10).json()
    covered = {re.sub(r"/\d+(?=/|$)", "/{id}", p) for p, _ in table} | {"/api/v1/openapi.json", "/api/v1/docs"}
    gets = {p for p, item in doc["paths"].items() if "get" in item}
    assert gets <= covered, f"GET routes of the document missing from this matrix: {sorted(gets - covered)}"
    for path, allowed in table:
        for user in ROLES:
            r = session().get(srv.base + path, headers={"Authorization": f"Bearer {tokens[user]}"}, timeout=10)
            if user in allowed:
                want = 404 if "424242" in path else 200
                if r.status_code != want:
                    wrong.append(f"{user:12} GET {path}: HTTP {r.status_code}, expected {want}: {r.text[:120]}")
            else:
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                if (r.status_code, body.get("rule"), body.get("article")) != (403, "A1", "3"):
                    wrong.append(f"{user:12} GET {path}: HTTP {r.status_code} {body}, expected 403 A1 (Art. 3)")
    assert not wrong, "\n".join(wrong)


def api_writes(w):
    """Every registry write of the API, with the page form that does the same and the roles both let
    past their role check (A1). Bodies and forms are deliberately wrong (or name no object), so
    that who gets past the check is refused for them (400, 404, 422) and nothing is written."""
    hd, tu = w["hd"], w["tu"]
    roster = CONTROL | {"kt-hong-dan"}  # EditRoster: the control center, the site's technicians
    unknown = "424242"
    return [
        ("POST", "/api/v1/sites", {}, "/registry/sites", {"code": ""}, CONTROL),
        ("PUT", f"/api/v1/sites/{hd}", {"language": "xx"}, f"/registry/sites/{hd}", {"language": "xx"}, CONTROL),
        ("POST", f"/api/v1/sites/{hd}/technicians", {}, f"/registry/sites/{hd}/technicians",
         {"name": "", "action": "save"}, roster),
        ("POST", f"/api/v1/sites/{tu}/technicians", {}, f"/registry/sites/{tu}/technicians",
         {"name": "", "action": "save"}, CONTROL),  # A1: a site's technician, its own site only
        ("PUT", f"/api/v1/sites/{hd}/technicians/{unknown}", {"name": "X", "phone": "1"},
         f"/registry/sites/{hd}/technicians", {"id": unknown, "name": "X", "phone": "1", "action": "save"}, roster),
        ("DELETE", f"/api/v1/sites/{hd}/technicians/{unknown}", None, f"/registry/sites/{hd}/technicians",
         {"id": unknown, "action": "remove"}, roster),
        ("POST", "/api/v1/providers", {}, "/registry/providers", {"name": "", "action": "save"}, CONTROL),
        ("PUT", f"/api/v1/providers/{unknown}", {"unit": 1, "name": "X", "phone": "1"}, "/registry/providers",
         {"id": unknown, "unit": "1", "name": "X", "phone": "1", "action": "save"}, CONTROL),
        ("DELETE", f"/api/v1/providers/{unknown}", None, "/registry/providers",
         {"id": unknown, "action": "remove"}, CONTROL),
    ]


# Written and matrix-tested in test_api_bookings.py (every route × role, as the pages).
BOOKING_WRITES = {("post", "/api/v1/bookings"), ("put", "/api/v1/bookings/{id}"), ("post", "/api/v1/bookings/check"),
                  ("post", "/api/v1/bookings/{id}/steps")}


def test_every_api_write_for_every_role(world):
    """Each registry write of the API × every role, beside its page form: refused by both (403;
    the API with rule A1 and article 3) or let past the role check by both; nothing is written
    either way. Every write of the OpenAPI document is in this table or in BOOKING_WRITES."""
    srv, wrong = world["srv"], []
    tokens = {u: api_login(srv.base, u, PASSWORD)["token"] for u in ROLES}
    table = api_writes(world)
    doc = session().get(srv.base + "/api/v1/openapi.json", timeout=10).json()
    id_of = lambda p: re.sub(r"/\d+(?=/|$)", "/{id}", p).replace("/technicians/{id}", "/technicians/{tech}")  # noqa: E731
    covered = {(m.lower(), id_of(p)) for m, p, *_ in table} | BOOKING_WRITES | {("post", "/api/v1/login")}
    writes = {(m, p) for p, item in doc["paths"].items() for m in item if m in ("post", "put", "delete", "patch")}
    assert writes <= covered, f"writes of the document missing from the matrices: {sorted(writes - covered)}"
    before = srv.query("SELECT COUNT(*) FROM audit")[0][0]
    for method, path, body, page_path, form, allowed in table:
        for user in ROLES:
            s = world["s"][user]
            csrf = csrf_of(s.get(srv.base + "/directory", timeout=10).text)
            page = s.post(srv.base + page_path, data={"csrf": csrf, **form}, allow_redirects=False, timeout=10)
            r = session().request(method, srv.base + path, json=body, timeout=10,
                                  headers={"Authorization": f"Bearer {tokens[user]}"})
            api = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if user in allowed:
                if page.status_code not in (404, 422) or r.status_code not in (400, 404, 422):
                    wrong.append(f"{user:12} {method} {path}: API {r.status_code}, page POST {page_path}: "
                                 f"{page.status_code}; expected both past the role check")
            elif (page.status_code, r.status_code, api.get("rule"), api.get("article")) != (403, 403, "A1", "3"):
                wrong.append(f"{user:12} {method} {path}: API {r.status_code} {api}, page POST {page_path}: "
                             f"{page.status_code}; expected both 403 (A1, Art. 3)")
    assert srv.query("SELECT COUNT(*) FROM audit")[0][0] == before, "a refused write changed something"
    assert not wrong, "\n".join(wrong)
