"""Flood limits and security headers over HTTP (docs/security.md).

A server of its own with small limits: login tries per address and per account (the form says
so in Vietnamese, the API in English, both with Retry-After), signaling connections per account;
and the headers every page carries (a CSP without inline script, no framing)."""

from __future__ import annotations

import re

import pytest

from e2e_util import wait_for
from proto_util import (
    api_login,
    assert_api_error,
    csrf_of,
    error_text,
    own_server,
    session,
    ws_status,
)

PASSWORD = "Limits-matkhau-2024!"
SETTINGS = """[security]
login_per_minute_per_address = 4
login_per_minute_per_account = 2
ws_per_minute_per_address = 100
ws_per_minute_per_account = 2
"""


@pytest.fixture(scope="module")
def srv(inside_netns):
    with own_server("limits", PASSWORD, settings=SETTINGS) as s:
        yield s


def form_try(base: str, user: str, password: str):
    s = session()
    token = csrf_of(s.get(base + "/login", timeout=10).text)
    return s.post(base + "/login", data={"username": user, "password": password, "csrf": token},
                  allow_redirects=False, timeout=30)


def test_login_tries_are_limited_per_account_then_per_address(srv):
    # Two tries at one name (its limit), from this address (4 a minute).
    for _ in range(2):
        r = form_try(srv.base, "dieuhanh", "wrong-password")
        assert r.status_code == 401, (r.status_code, error_text(r.text))
    r = form_try(srv.base, "dieuhanh", PASSWORD)
    assert r.status_code == 429, (r.status_code, error_text(r.text))
    msg = error_text(r.text) or ""
    assert msg.startswith("Đăng nhập quá nhiều lần trong thời gian ngắn. Vui lòng chờ "), msg
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 30 and f"chờ {wait} giây" in msg, (wait, msg)
    # The refused try did not count as a wrong password (A2): no lockout was recorded.
    assert srv.query("SELECT failed_logins FROM accounts WHERE username = 'dieuhanh'")[0][0] == 2

    # Another name still passes (the address has 1 try left) ...
    r = form_try(srv.base, "quantri", PASSWORD)
    assert r.status_code == 303, (r.status_code, error_text(r.text))
    # ... and then this address is held back at any name, over the API too (in English).
    r = session().post(srv.base + "/api/v1/login", json={"username": "so-tttt", "password": PASSWORD}, timeout=30)
    b = assert_api_error(r, 429, error="too_many_requests")
    assert "address" in b["message"] and b["retry_after"] == int(r.headers["Retry-After"]) >= 1, b


def test_signaling_connections_are_limited_per_account(srv):
    token = api_login_when_allowed(srv)
    header = [f"Authorization: Bearer {token}"]
    assert [ws_status(srv.base, header=header) for _ in range(2)] == [101, 101]
    assert ws_status(srv.base, header=header) == 429


def api_login_when_allowed(srv) -> str:
    """The site device's token. The test before used up this address's login tries: this login
    waits for the limit (with a deadline), as a client that follows Retry-After does."""
    got: dict = {}

    def attempt():
        r = session().post(srv.base + "/api/v1/login", json={"username": "dc-hong-dan", "password": PASSWORD},
                           timeout=30)
        if r.status_code == 200:
            got["token"] = r.json()["token"]
            return True
        assert r.status_code == 429, (r.status_code, r.text[:300])
        return False

    wait_for(attempt, 45, "a login allowed again after Retry-After")
    return got["token"]


def test_every_page_carries_the_security_headers(srv):
    s = session()
    r = s.get(srv.base + "/login", timeout=10)
    csp = r.headers["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"], csp
    assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"], csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "same-origin"
    # Plain HTTP (tls off): no HSTS, no Secure cookie (test_start.py checks both under TLS).
    assert "Strict-Transport-Security" not in r.headers
    assert "Secure" not in r.headers["Set-Cookie"]
    # No page of ours has an inline script left: each <script> has a src or is a JSON block.
    for line in re.findall(r"<script[^>]*>", r.text):
        assert "src=" in line or 'type="application/json"' in line, line
    # The JSON API and the assets carry the hardening headers too (the CSP is for pages).
    r = s.get(srv.base + "/static/live.js", timeout=10)
    assert r.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" not in r.headers


def csp_reports(page) -> list[str]:
    return [line for line in page.console_log(last=200) if "Content Security Policy" in line]


def test_the_live_pages_and_the_letter_run_under_the_policy(server, browser_factory):
    """The console and the site app connect (WebSocket, media) and the printable letter takes its
    style and its print button, with Chromium reporting no CSP violation on any of them."""
    import sqlite3

    console = browser_factory.console()
    site = browser_factory.site("hong-dan")
    for page in (console, site):
        assert csp_reports(page) == [], csp_reports(page)
    con = sqlite3.connect(f"file:{server.data_dir}/hnth.db?mode=ro", uri=True, timeout=5)
    try:
        booking = con.execute("SELECT id FROM bookings WHERE status = 'approved' ORDER BY id LIMIT 1").fetchone()[0]
    finally:
        con.close()
    console.open(f"/bookings/{booking}/letter", "#print-letter")
    font = console.js("return getComputedStyle(document.body).fontFamily")
    assert "Times New Roman" in font, font
    # The button's handler is the module's: replace print() to see it called.
    console.js("window.print = () => { window.__printed = true; }")
    console.click("#print-letter")
    wait_for(lambda: console.js("return window.__printed === true"), 10, "the letter's print button to call print()")
    assert csp_reports(console) == [], csp_reports(console)


def test_a_signaling_connection_ends_with_its_session(inside_netns):
    """An operator's open WebSocket does not outlive its session: once an administrator disables
    the account, the server closes it (4401) within a ping (10 s), and a new one is refused."""
    import struct

    import websocket

    from proto_util import add_accounts, browser_session, own_server, Ws

    with own_server("session-end", PASSWORD) as s:
        add_accounts(s, [("dh-tam-thoi", "operator", None, None)])
        token = api_login(s.base, "dh-tam-thoi", PASSWORD)["token"]
        ws = Ws.open(s.base, token, "operator")
        ws.expect_type("welcome")
        admin = browser_session(s.base, "quantri", PASSWORD)
        acc = s.query("SELECT id FROM accounts WHERE username = 'dh-tam-thoi'")[0][0]
        csrf = csrf_of(admin.get(s.base + "/admin/accounts", timeout=10).text)
        r = admin.post(f"{s.base}/admin/accounts/{acc}/disable", data={"csrf": csrf}, timeout=10,
                       allow_redirects=False)
        assert r.status_code == 303, r.status_code
        closed = {}

        def close_frame():
            ws.conn.settimeout(1.0)
            try:
                opcode, data = ws.conn.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                return False
            except websocket.WebSocketConnectionClosedException:
                closed["code"] = None
                return True
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                closed["code"] = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                return True
            return False

        wait_for(close_frame, 25, "the disabled operator's WebSocket closed by the server")
        assert closed["code"] == 4401, closed
        assert ws_status(s.base, header=[f"Authorization: Bearer {token}"]) == 401
