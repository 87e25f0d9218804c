"""HTTP spoken directly, no browser: the login form (CSRF, wrong password, lockout A2), the JSON
login, which role may open which page (A1), logout, the English UI, and what survives a restart.

Run: scripts/in-netns.sh python3 -m pytest -q tests/e2e/test_http.py
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time

import pytest

from e2e_util import wait_for
from proto_util import (
    MSG_CSRF_VI,
    MSG_FORBIDDEN_VI,
    MSG_INVALID_VI,
    MSG_LOCKED_VI,
    OwnServer,
    Ws,
    api_login,
    browser_session,
    csrf_of,
    error_text,
    form_login,
    session,
    ws_status,
)

PASSWORD = "Proto-Http-matkhau-2024!"
MAX_FAILED = 5  # security.max_failed_logins (default)


def _new_server(prefix: str) -> OwnServer:
    data = tempfile.mkdtemp(prefix=f"hnth-{prefix}-data-")
    logs = tempfile.mkdtemp(prefix=f"hnth-{prefix}-log-")
    return OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log")


@pytest.fixture(scope="module")
def srv(inside_netns):
    s = _new_server("http").start()
    try:
        yield s
    finally:
        s.stop()
        print(f"\nhttp-test server log kept at {s.log_path}")


@pytest.fixture(autouse=True)
def _server_log_on_failure(srv):
    yield
    print(f"--- own hnth server log tail ({srv.log_path}) ---\n{srv.log_tail(60)}")


@pytest.fixture(scope="module")
def sessions(srv):
    """Browser-like (cookie) sessions of an admin, an operator and a site device."""
    return {
        "admin": browser_session(srv.base, "quantri", PASSWORD),
        "operator": browser_session(srv.base, "dieuhanh", PASSWORD),
        "site_device": browser_session(srv.base, "dc-hong-dan", PASSWORD),
    }


# --------------------------------------------------------------------------------------------
# The login form


def test_login_form_without_or_with_wrong_csrf_is_refused(srv):
    # No token, no cookie.
    s = session()
    r = s.post(srv.base + "/login", data={"username": "dieuhanh", "password": PASSWORD},
               allow_redirects=False, timeout=30)
    assert r.status_code == 403, f"POST /login without CSRF: HTTP {r.status_code}"
    assert error_text(r.text) == MSG_CSRF_VI, f"POST /login without CSRF: message {error_text(r.text)!r}"
    assert "hnth_session" not in r.cookies

    # The cookie from GET /login, but an empty / wrong token in the form.
    s = session()
    good = csrf_of(s.get(srv.base + "/login", timeout=10).text)
    for bad in ("", "0" * 64, good[:-1], good.upper() if good.upper() != good else good + "0"):
        r = s.post(srv.base + "/login", data={"username": "dieuhanh", "password": PASSWORD, "csrf": bad},
                   allow_redirects=False, timeout=30)
        assert r.status_code == 403, f"POST /login with csrf={bad!r}: HTTP {r.status_code}"
        assert error_text(r.text) == MSG_CSRF_VI, f"csrf={bad!r}: message {error_text(r.text)!r}"
        assert "hnth_session" not in r.cookies, f"csrf={bad!r} opened a session"
        good = csrf_of(r.text)  # each rendering of the form sets a fresh token

    # A token copied from somebody else's form (the cookie does not match it).
    other = csrf_of(session().get(srv.base + "/login", timeout=10).text)
    r = s.post(srv.base + "/login", data={"username": "dieuhanh", "password": PASSWORD, "csrf": other},
               allow_redirects=False, timeout=30)
    assert r.status_code == 403, f"POST /login with another form's token: HTTP {r.status_code}"

    # And the form does work with its own token.
    s, r = form_login(srv.base, "dieuhanh", PASSWORD)
    assert r.status_code == 303 and r.headers.get("location") == "/console", (r.status_code, r.headers)


def test_wrong_password_is_401_with_the_vietnamese_message(srv):
    for user, pw in [("dc-vinh-loi", "sai-mat-khau-123"), ("dc-vinh-loi", PASSWORD.upper()),
                     ("khong-ton-tai", PASSWORD), ("dc-vinh-loi", "")]:
        s, r = form_login(srv.base, user, pw)
        if pw == "":
            assert r.status_code == 422, f"empty password: HTTP {r.status_code}"
            continue
        assert r.status_code == 401, f"login {user}/{pw!r}: HTTP {r.status_code}"
        assert error_text(r.text) == MSG_INVALID_VI, f"login {user}: message {error_text(r.text)!r}"
        assert 'lang="vi"' in r.text
        assert not s.cookies.get("hnth_session"), f"a failed login of {user} set a session cookie"
    # A success resets the failure count (3 failures above, well under the lockout).
    browser_session(srv.base, "dc-vinh-loi", PASSWORD)
    assert srv.query("SELECT failed_logins FROM accounts WHERE username = 'dc-vinh-loi'") == [(0,)]


def test_lockout_after_five_failures(srv):
    user = "dc-dong-hai"
    for i in range(1, MAX_FAILED):
        _, r = form_login(srv.base, user, f"sai-lan-thu-{i}")
        assert r.status_code == 401, f"failure {i} of {user}: HTTP {r.status_code} {error_text(r.text)!r}"
    _, r = form_login(srv.base, user, f"sai-lan-thu-{MAX_FAILED}")
    assert r.status_code == 423, f"failure {MAX_FAILED} of {user} must lock the account: HTTP {r.status_code}"
    assert (error_text(r.text) or "").startswith(MSG_LOCKED_VI), f"lock message: {error_text(r.text)!r}"
    assert "A2" in error_text(r.text)

    # The right password is refused while locked, by the form and by the API.
    s, r = form_login(srv.base, user, PASSWORD)
    assert r.status_code == 423, f"right password while locked: HTTP {r.status_code}"
    assert not s.cookies.get("hnth_session"), "a locked account got a session"
    r = session().post(srv.base + "/api/v1/login", json={"username": user, "password": PASSWORD}, timeout=30)
    assert r.status_code == 423 and r.json().get("error") == "locked", (r.status_code, r.text)
    (until,) = srv.query("SELECT locked_until FROM accounts WHERE username = ?", user)[0]
    assert until is not None and until > time.time() + 60, f"locked_until={until}"

    # Other accounts are not affected.
    browser_session(srv.base, "dc-hoa-binh", PASSWORD)


MSG_UNAVAILABLE_VI = "Máy chủ tạm thời không ghi nhận được lần đăng nhập này"


def test_login_that_cannot_be_counted_is_refused_with_503(srv):
    """A2: when the database refuses to count a try (read-only disk, here a trigger on one
    account), the login is refused with an error, the right password included: no uncounted
    guessing."""
    user = "dc-phuoc-long"
    con = sqlite3.connect(srv.db_path, timeout=10)
    try:
        with con:
            con.execute(f"CREATE TRIGGER e2e_refuse_count BEFORE UPDATE OF failed_logins ON accounts "
                        f"WHEN OLD.username = '{user}' BEGIN SELECT RAISE(ABORT, 'disk is read-only'); END")
        for pw in ["sai-mat-khau-1", "sai-mat-khau-2", PASSWORD]:
            s, r = form_login(srv.base, user, pw)
            assert r.status_code == 503, f"form login {pw!r}: HTTP {r.status_code} {error_text(r.text)!r}"
            assert (error_text(r.text) or "").startswith(MSG_UNAVAILABLE_VI), error_text(r.text)
            assert not s.cookies.get("hnth_session")
            r = session().post(srv.base + "/api/v1/login", json={"username": user, "password": pw}, timeout=30)
            assert r.status_code == 503 and r.json().get("error") == "unavailable", (r.status_code, r.text)
    finally:
        with con:
            con.execute("DROP TRIGGER IF EXISTS e2e_refuse_count")
        con.close()
    assert srv.query("SELECT COUNT(*) FROM sessions s JOIN accounts a ON a.id = s.account_id "
                     "WHERE a.username = ?", user) == [(0,)]
    browser_session(srv.base, user, PASSWORD)  # and once the database writes again, it works


def test_api_login_bad_json_is_400(srv):
    url = srv.base + "/api/v1/login"
    s = session()
    cases = [
        ("{not json", {"Content-Type": "application/json"}, "malformed JSON"),
        ("", {"Content-Type": "application/json"}, "empty body"),
        ('["dieuhanh", "x"]', {"Content-Type": "application/json"}, "an array"),
        ('{"username": "dieuhanh"}', {"Content-Type": "application/json"}, "no password"),
        ('{"username": 5, "password": "x"}', {"Content-Type": "application/json"}, "username a number"),
        ('{"username": "dieuhanh", "password": "x"}', {"Content-Type": "text/plain"}, "not declared JSON"),
        ('{"username": "dieuhanh", "password": "x"}', {}, "no content type"),
    ]
    for body, headers, what in cases:
        r = s.post(url, data=body.encode(), headers=headers, timeout=30)
        assert r.status_code == 400, f"POST /api/v1/login with {what}: HTTP {r.status_code} {r.text[:200]}"
        assert r.json().get("error") == "bad_request", f"{what}: {r.text[:200]}"
    r = s.post(url, json={"username": "dieuhanh", "password": "sai-mat-khau"}, timeout=30)
    assert r.status_code == 401 and r.json().get("error") == "invalid_credentials", (r.status_code, r.text)
    body = api_login(srv.base, "dc-tinh-uy", PASSWORD)
    assert body["role"] == "site_device" and body["site"]["code"] == "tinh-uy", body


# --------------------------------------------------------------------------------------------
# Pages by role


@pytest.mark.parametrize("path,role,want", [
    ("/console", "admin", 200),
    ("/console", "operator", 200),
    ("/console", "site_device", 403),
    ("/site", "site_device", 200),
    ("/site", "operator", 403),
    ("/site", "admin", 403),
    ("/admin/audit", "admin", 200),
    ("/admin/audit", "operator", 200),
    ("/admin/audit", "site_device", 403),
])
def test_page_by_role(srv, sessions, path, role, want):
    r = sessions[role].get(srv.base + path, allow_redirects=False, timeout=10)
    assert r.status_code == want, f"GET {path} as {role}: HTTP {r.status_code}, expected {want}"
    if want == 403:
        assert MSG_FORBIDDEN_VI in (error_text(r.text) or ""), f"{path} as {role}: {error_text(r.text)!r}"
    else:
        assert 'lang="vi"' in r.text and error_text(r.text) is None


def test_home_sends_each_role_to_its_page(srv, sessions):
    for role, where in [("admin", "/console"), ("operator", "/console"), ("site_device", "/site")]:
        r = sessions[role].get(srv.base + "/", allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303, 307) and r.headers.get("location") == where, \
            f"GET / as {role}: {r.status_code} -> {r.headers.get('location')}"


@pytest.mark.parametrize("path", ["/", "/console", "/site", "/admin/audit"])
def test_unauthenticated_page_redirects_to_login(srv, path):
    for label, cookies in [("no cookie", {}), ("unknown session", {"hnth_session": "0" * 64})]:
        r = session().get(srv.base + path, cookies=cookies, allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303, 307), f"GET {path} ({label}): HTTP {r.status_code}"
        assert r.headers.get("location") == "/login", f"GET {path} ({label}) -> {r.headers.get('location')}"


def test_logout_requires_csrf(srv):
    s = browser_session(srv.base, "quantri", PASSWORD)
    token = s.cookies.get("hnth_session")
    page = s.get(srv.base + "/console", timeout=10)
    csrf = csrf_of(page.text)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body, what in [(b"", "no csrf"), (b"csrf=", "empty csrf"), (f"csrf={csrf[::-1]}".encode(), "wrong csrf"),
                       (f"csrf={csrf}x".encode(), "csrf with a suffix")]:
        r = s.post(srv.base + "/logout", data=body, headers=form, allow_redirects=False, timeout=10)
        assert r.status_code == 403, f"POST /logout with {what}: HTTP {r.status_code}"
        assert s.get(srv.base + "/console", allow_redirects=False, timeout=10).status_code == 200, \
            f"the session ended after a refused logout ({what})"
    r = s.post(srv.base + "/logout", data={"csrf": csrf}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers.get("location") == "/login", (r.status_code, r.headers)
    r = s.get(srv.base + "/console", allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303) and r.headers.get("location") == "/login", "session still open after logout"
    r = session().get(srv.base + "/console", cookies={"hnth_session": token}, allow_redirects=False, timeout=10)
    assert r.headers.get("location") == "/login", "the old cookie still opens the console after logout"
    assert ws_status(srv.base, header=[f"Authorization: Bearer {token}"]) == 401, "logged-out token opens /ws"


def test_english_via_lang_cookie(srv):
    s = session()
    r = s.get(srv.base + "/lang/en", headers={"Referer": srv.base + "/login"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers.get("location") == "/login", (r.status_code, r.headers)
    assert s.cookies.get("hnth_lang") == "en", f"cookies: {s.cookies}"
    r = s.get(srv.base + "/login", timeout=10)
    assert 'lang="en"' in r.text and "Log in" in r.text, r.text[:500]
    assert "Đăng nhập" not in r.text, "Vietnamese text on the English login page"
    s, r = form_login(srv.base, "dc-vinh-loi", "wrong-password-123", s=s)
    assert r.status_code == 401 and error_text(r.text) == "Wrong username or password.", error_text(r.text)
    s, r = form_login(srv.base, "dc-vinh-loi", PASSWORD, s=s)
    assert r.status_code == 303
    r = s.get(srv.base + "/console", allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "Your account may not open this page" in (error_text(r.text) or ""), \
        error_text(r.text)
    # And back to Vietnamese.
    s.get(srv.base + "/lang/vi", allow_redirects=False, timeout=10)
    r = s.get(srv.base + "/console", allow_redirects=False, timeout=10)
    assert r.status_code == 403 and MSG_FORBIDDEN_VI in (error_text(r.text) or ""), error_text(r.text)


# --------------------------------------------------------------------------------------------
# Persistence across a restart


def test_state_survives_restart(inside_netns):
    s = _new_server("restart").start()
    try:
        # Before: an API token, a cookie session, a meeting with a site, a locked account.
        op_token = api_login(s.base, "dieuhanh", PASSWORD)["token"]
        site = browser_session(s.base, "dc-tinh-uy", PASSWORD)
        site_cookie = site.cookies.get("hnth_session")
        console = Ws.open(s.base, op_token, "console")
        console.expect_type("welcome")
        sites = console.expect_type("sites")
        tinh_uy = next(x["id"] for x in sites["list"] if x["code"] == "tinh-uy")
        console.send({"type": "open_meeting", "title": "Họp trước khi khởi động lại"})
        meeting = console.expect_type("meeting_opened")["meeting"]["id"]
        console.send({"type": "dial", "meeting": meeting, "site": tinh_uy})
        console.expect_type("dialing", meeting=meeting, site=tinh_uy)
        console.close()

        def participants():
            (state,) = s.query("SELECT state FROM meetings WHERE id = ?", meeting)[0]
            return json.loads(state)["participants"] if state else {}

        # The meeting's course (its sites, floor, frame) is written at every change (Art. 7).
        wait_for(lambda: str(tinh_uy) in participants(), 10, "the dialed site in the meeting's saved state",
                 detail=participants)
        for i in range(MAX_FAILED):
            form_login(s.base, "dc-hoa-binh", f"sai-{i}-matkhau")
        _, r = form_login(s.base, "dc-hoa-binh", PASSWORD)
        assert r.status_code == 423, f"dc-hoa-binh not locked before the restart: HTTP {r.status_code}"

        s.stop()
        assert s.proc.returncode is not None
        # On disk, with the server down.
        rows = s.query("SELECT title, closed_at FROM meetings WHERE id = ?", meeting)
        assert rows == [("Họp trước khi khởi động lại", None)], f"meetings row: {rows}"
        assert str(tinh_uy) in participants(), participants()
        assert s.query("SELECT COUNT(*) FROM sessions")[0][0] >= 2
        (until,) = s.query("SELECT locked_until FROM accounts WHERE username = 'dc-hoa-binh'")[0]
        assert until and until > time.time(), f"locked_until={until}"

        s.start()  # same data dir, new ports
        # The sessions still open /ws and the pages.
        ws = Ws.open(s.base, op_token, "console after restart")
        w = ws.expect_type("welcome")
        assert w["role"] == "operator" and w["user"]["username"] == "dieuhanh", w
        ws.close()
        r = session().get(s.base + "/site", cookies={"hnth_session": site_cookie}, allow_redirects=False,
                          timeout=10)
        assert r.status_code == 200, f"site cookie session after restart: HTTP {r.status_code}"
        assert ws_status(s.base, cookie=f"hnth_session={site_cookie}", origin=s.base) == 101
        # The lockout too.
        _, r = form_login(s.base, "dc-hoa-binh", PASSWORD)
        assert r.status_code == 423, f"lockout lost in the restart: HTTP {r.status_code}"
        # The demo seed did not run again (no duplicate accounts, password unchanged).
        assert s.query("SELECT COUNT(*) FROM accounts WHERE username = 'dieuhanh'") == [(1,)]
        api_login(s.base, "quantri", PASSWORD)
        assert s.query("SELECT title FROM meetings WHERE id = ?", meeting) == [("Họp trước khi khởi động lại",)]
    finally:
        s.stop()
        print(f"restart-test server log kept at {s.log_path}\n{s.log_tail(40)}")
