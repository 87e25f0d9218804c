"""Every page and every form × every role: allowed (200, or a redirect to the role's own page)
or refused (403; a workflow step refused by the rules may answer 422), checked on the server
(A1). A refused POST changes nothing. Without a session, pages send the browser to /login and
the API answers 401."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from proto_util import OwnServer, browser_session, csrf_of, session

PASSWORD = "Matrix-matkhau-2026!"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
# (username, role, site code, unit code) of the accounts the test creates besides the demo's
EXTRA = [
    ("kt-hong-dan", "site_technician", "hong-dan", None),
    ("ct-hong-dan", "chair", "hong-dan", None),
    ("lanh-dao", "leadership", None, None),
    ("vnpt-kt", "provider_technician", None, "vnpt"),
]
ROLES = ["quantri", "dieuhanh", "so-tttt", "dc-hong-dan", "kt-hong-dan", "ct-hong-dan", "lanh-dao", "vnpt-kt"]
CONTROL = {"quantri", "dieuhanh"}
ALL = set(ROLES)


@pytest.fixture(scope="module")
def world(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-matrix-data-")
    logs = tempfile.mkdtemp(prefix="hnth-matrix-log-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log").start()
    try:
        admin = browser_session(srv.base, "quantri", PASSWORD)
        csrf = csrf_of(admin.get(srv.base + "/admin/accounts", timeout=10).text)
        for user, role, site, unit in EXTRA:
            site_id = srv.query("SELECT id FROM sites WHERE code = ?", site)[0][0] if site else ""
            unit_id = srv.query("SELECT id FROM units WHERE code = ?", unit)[0][0] if unit else ""
            r = admin.post(srv.base + "/admin/accounts", timeout=10, data={
                "csrf": csrf, "username": user, "display_name": user, "role": role,
                "site": str(site_id), "unit": str(unit_id), "password": PASSWORD})
            assert r.status_code == 200 and user in r.text, f"creating {user}: HTTP {r.status_code}"
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
        yield {"srv": srv, "bid": bid, "hd": hd, "s": sessions}
    finally:
        srv.stop()


def pages(w):
    b, hd = w["bid"], w["hd"]
    view = ALL  # the booking concerns hong-dan and the department: everyone here may see it
    return [
        ("/console", CONTROL),
        ("/site", {"dc-hong-dan"}),
        ("/admin/audit", {"quantri"}),
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
    where = {"quantri": "/console", "dieuhanh": "/console", "dc-hong-dan": "/site"}
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
