"""Helpers for the protocol-level tests (test_http.py, test_signaling.py): plain HTTP with
`requests` and the signaling WebSocket with `websocket-client`, no browser.

Every wait has a deadline (socket timeouts or e2e_util.wait_for); nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
import websocket  # websocket-client

from e2e_util import NETNS_ADDR, Abort, BrowserFactory, free_port, harness_settings, http_get, wait_for

REPO = Path(__file__).resolve().parent.parent.parent
T_WS = 10.0  # deadline for one expected signaling message
T_START = 90.0  # deadline for a fresh server to answer /healthz (debug build, argon2 seeding)

SITE_CODES = ["tinh-uy", "tp-bac-lieu", "tx-gia-rai", "hong-dan", "phuoc-long", "vinh-loi", "hoa-binh", "dong-hai"]

MSG_INVALID_VI = "Tên đăng nhập hoặc mật khẩu không đúng."
MSG_CSRF_VI = "Phiên làm việc của biểu mẫu đã hết hạn. Vui lòng tải lại trang và thử lại."
MSG_LOCKED_VI = "Tài khoản tạm khóa do nhập sai mật khẩu nhiều lần"
MSG_FORBIDDEN_VI = "Tài khoản của bạn không có quyền truy cập trang này"


def binary() -> str:
    path = os.environ.get("HNTH_BIN") or str(REPO / "target" / "debug" / "hnth")
    assert os.path.isfile(path) and os.access(path, os.X_OK), \
        f"hnth server binary not found/executable at {path}: build it first (cargo build) or set HNTH_BIN"
    return path


# --------------------------------------------------------------------------------------------
# A private server (own data dir) for tests that need isolation (lockout, restart).


@dataclass
class OwnServer:
    data_dir: str
    password: str
    log_path: str
    http_port: int = 0
    udp_port: int = 0
    proc: subprocess.Popen | None = None
    _log: Any = None
    # More `hnth demo` options, appended to every start (e.g. ["--smtp", "127.0.0.1:2525"]).
    extra_args: list[str] = field(default_factory=list)
    # The media address announced to sites (a relay's, to put loss and delay in their path).
    announce: str = NETNS_ADDR

    @classmethod
    def fresh(cls, prefix: str, password: str, extra_args: list[str] | None = None) -> "OwnServer":
        """A server (not started yet) with a new data folder and log folder under /tmp."""
        data = tempfile.mkdtemp(prefix=f"hnth-{prefix}-data-")
        logs = tempfile.mkdtemp(prefix=f"hnth-{prefix}-log-")
        return cls(data_dir=data, password=password, log_path=f"{logs}/server.log", extra_args=extra_args or [])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "hnth.db")

    def log_tail(self, lines: int = 60) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"

    def start(self, same_ports: bool = False) -> "OwnServer":
        """Start (again): on new free ports, or on the last run's (`same_ports`: open pages
        reconnect to the server they knew, as after a restart of the box)."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        if not (same_ports and self.http_port):
            self.http_port = free_port(socket.SOCK_STREAM, "127.0.0.1")
            self.udp_port = free_port(socket.SOCK_DGRAM, NETNS_ADDR)
        extra = list(self.extra_args)
        if "--config" not in extra:
            path = os.path.join(self.data_dir, "hnth-harness.toml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(harness_settings())
            extra += ["--config", path]
        cmd = [binary(), "demo", "--data-dir", self.data_dir,
               "--http", f"127.0.0.1:{self.http_port}", "--udp", f"{NETNS_ADDR}:{self.udp_port}",
               "--announce", self.announce, "--tls", "off", "--demo-password", self.password, *extra]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self._log = open(self.log_path, "ab")
        self._log.write(("\n$ " + " ".join(cmd) + "\n").encode())
        self._log.flush()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        proc = self.proc

        def healthy():
            if proc.poll() is not None:
                raise Abort(f"hnth exited with status {proc.returncode} before /healthz answered\n{self.log_tail()}")
            try:
                status, _ = http_get(self.base + "/healthz", timeout=1.0)
            except OSError:
                return False
            return status == 200

        wait_for(healthy, T_START, f"own hnth server on {self.base} to answer /healthz", detail=self.log_tail)
        return self

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # graceful (ctrl-c handler)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def query(self, sql: str, *args) -> list[tuple]:
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


def close_world(srv: "OwnServer", console: "Ws | None", sites: dict) -> None:
    """The end of a test with its own server: the console's WebSocket closed, every (aiortc)
    site stopped, the server stopped, its log kept."""
    if console is not None:
        console.conn.close()
    for s in sites.values():
        s.stop()
    srv.stop()
    print(f"\nserver log kept at {srv.log_path}")


@contextlib.contextmanager
def own_server(name: str, password: str, extra_args: list[str] | None = None, settings: str | None = None):
    """A started OwnServer with fresh data and log directories, stopped at the end (its log kept);
    `settings`, the text of a settings file (`--config`)."""
    data = tempfile.mkdtemp(prefix=f"hnth-{name}-data-")
    logs = tempfile.mkdtemp(prefix=f"hnth-{name}-log-")
    extra = list(extra_args or [])
    if settings is not None:
        path = os.path.join(data, "hnth.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(harness_settings(settings))
        extra += ["--config", path]
    s = OwnServer(data_dir=data, password=password, log_path=f"{logs}/server.log", extra_args=extra).start()
    try:
        yield s
    finally:
        s.stop()
        print(f"\n{name}-test server log kept at {s.log_path}")


def own_server_fixtures(name: str, password: str, settings: str | None = None):
    """A test module's `srv` (its own server, with the settings file `settings` if given) and
    `browsers` (Chromiums on it) fixtures: `srv, browsers = own_server_fixtures("kiosk", PASSWORD)`."""

    @pytest.fixture(scope="module")
    def srv(inside_netns):
        with own_server(name, password, settings=settings) as s:
            yield s

    @pytest.fixture(scope="module")
    def browsers(srv):
        with BrowserFactory(base=srv.base, password=password) as f:
            yield f

    return srv, browsers


# --------------------------------------------------------------------------------------------
# HTTP


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never a proxy for 127.0.0.1
    return s


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]*)"', html)
    assert m, f"no csrf hidden field in page: {html[:400]!r}"
    return m.group(1)


def error_text(html: str) -> str | None:
    m = re.search(r'<p class="error" role="alert">(.*?)</p>', html, re.S)
    return m.group(1).strip() if m else None


def form_login(base: str, user: str, password: str, s: requests.Session | None = None) -> tuple[requests.Session, requests.Response]:
    """Log in through the /login form (GET for the CSRF token + cookie, then POST)."""
    s = s or session()
    r = s.get(base + "/login", timeout=10)
    assert r.status_code == 200, f"GET /login -> {r.status_code}"
    token = csrf_of(r.text)
    r = s.post(base + "/login", data={"username": user, "password": password, "csrf": token},
               allow_redirects=False, timeout=30)
    return s, r


def browser_session(base: str, user: str, password: str) -> requests.Session:
    s, r = form_login(base, user, password)
    assert r.status_code == 303, f"form login of {user}: HTTP {r.status_code} {error_text(r.text)!r}"
    assert s.cookies.get("hnth_session"), f"form login of {user}: no hnth_session cookie"
    return s


# Accounts of every role the demo lacks, for the tests that try every route × role:
# (username, role, site code, unit code).
EXTRA_ROLES = [
    ("kt-hong-dan", "site_technician", "hong-dan", None),
    ("ct-hong-dan", "chair", "hong-dan", None),
    ("lanh-dao", "leadership", None, None),
    ("vnpt-kt", "provider_technician", None, "vnpt"),
]
# One account of each role: the demo's and EXTRA_ROLES.
EVERY_ROLE = ["quantri", "dieuhanh", "so-tttt", "dc-hong-dan", "kt-hong-dan", "ct-hong-dan", "lanh-dao", "vnpt-kt"]


def add_accounts(srv: "OwnServer", accounts: list[tuple[str, str, str | None, str | None]]) -> None:
    """Creates each (username, role, site code, unit code) on /admin/accounts as `quantri`, with the
    server's password."""
    admin = browser_session(srv.base, "quantri", srv.password)
    csrf = csrf_of(admin.get(srv.base + "/admin/accounts", timeout=10).text)
    for user, role, site, unit in accounts:
        site_id = srv.query("SELECT id FROM sites WHERE code = ?", site)[0][0] if site else ""
        unit_id = srv.query("SELECT id FROM units WHERE code = ?", unit)[0][0] if unit else ""
        r = admin.post(srv.base + "/admin/accounts", timeout=10, data={
            "csrf": csrf, "username": user, "display_name": user, "role": role,
            "site": str(site_id), "unit": str(unit_id), "password": srv.password})
        assert r.status_code == 200 and user in r.text, f"creating {user}: HTTP {r.status_code}"


def api_login(base: str, user: str, password: str) -> dict:
    r = session().post(base + "/api/v1/login", json={"username": user, "password": password}, timeout=30)
    assert r.status_code == 200, f"POST /api/v1/login as {user}: HTTP {r.status_code} {r.text[:300]}"
    body = r.json()
    assert body.get("token"), f"no token in {body}"
    return body


def assert_api_error(r, status, error=None, rule=None, article=None, field=None):
    """An error of the JSON API: its status, JSON `{error, message}`, and the code, rule (with its
    article) and field asked for (the field may be the body's or one of `errors`)."""
    assert r.status_code == status, f"{r.request.method} {r.url}: HTTP {r.status_code} {r.text[:400]}"
    assert r.headers["content-type"].startswith("application/json"), (r.headers["content-type"], r.text[:200])
    b = r.json()
    assert b["error"] and b["message"], b
    if error is not None:
        assert b["error"] == error, b
    if rule is not None:
        assert (b.get("rule"), b.get("article")) == (rule, article), b
    if field is not None:
        assert b.get("field") == field or field in [e.get("field") for e in b.get("errors", [])], b
    return b


# --------------------------------------------------------------------------------------------
# WebSocket


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"


def ws_status(base: str, header: list[str] | None = None, cookie: str | None = None,
              origin: str | None = None, query: str = "") -> int:
    """Try to open /ws; return the HTTP status of a refused handshake (101 when it opened)."""
    try:
        ws = websocket.create_connection(ws_url(base) + query, timeout=T_WS, header=header or [],
                                         cookie=cookie, origin=origin, suppress_origin=origin is None)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    ws.close()
    return 101


@dataclass
class Ws:
    """One signaling client. Every received message is kept in `log` (in order)."""

    name: str
    conn: websocket.WebSocket
    log: list[dict] = field(default_factory=list)
    cursor: int = 0  # messages before this index were consumed by next()/expect()

    @classmethod
    def open(cls, base: str, token: str, name: str) -> "Ws":
        conn = websocket.create_connection(ws_url(base), timeout=T_WS, header=[f"Authorization: Bearer {token}"],
                                           suppress_origin=True)
        return cls(name=name, conn=conn)

    def send(self, msg: Any) -> None:
        self.conn.send(msg if isinstance(msg, str) else json.dumps(msg))

    def send_binary(self, data: bytes) -> None:
        self.conn.send_binary(data)

    def _recv_one(self, deadline: float) -> dict | None:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.conn.settimeout(left)
        try:
            opcode, data = self.conn.recv_data(control_frame=False)
        except websocket.WebSocketTimeoutException:
            return None
        except websocket.WebSocketConnectionClosedException as exc:
            raise AssertionError(f"{self.name}: the server closed the WebSocket ({exc}); "
                                 f"last messages: {self.tail()}") from exc
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise AssertionError(f"{self.name}: the server closed the WebSocket; last messages: {self.tail()}")
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        msg = json.loads(text)
        assert isinstance(msg, dict), f"{self.name}: server sent a non-object frame {text!r}"
        self.log.append(msg)
        return msg

    def expect(self, pred: Callable[[dict], bool], what: str, timeout: float = T_WS) -> dict:
        """The first not yet consumed message matching `pred` (waits until the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self.cursor, len(self.log)):
                if pred(self.log[i]):
                    self.cursor = i + 1
                    return self.log[i]
            if self._recv_one(deadline) is None and time.monotonic() >= deadline:
                raise AssertionError(f"{self.name}: timed out after {timeout:.0f}s waiting for {what}; "
                                     f"unconsumed messages: {self.tail(start=self.cursor)}")

    def expect_type(self, typ: str, timeout: float = T_WS, **fields) -> dict:
        return self.expect(lambda m: m.get("type") == typ and all(m.get(k) == v for k, v in fields.items()),
                           f"a {typ!r} message with {fields}", timeout)

    def expect_error(self, ref: str | None = None, timeout: float = T_WS) -> dict:
        """The next error message (optionally with `ref`)."""
        return self.expect(lambda m: m.get("type") == "error" and (ref is None or m.get("ref") == ref),
                           f"an error with ref={ref!r}", timeout)

    def drain(self) -> None:
        """Mark everything received so far as consumed."""
        self.cursor = len(self.log)

    def log_of(self, typ: str) -> list[dict]:
        return [m for m in self.log if m.get("type") == typ]

    def errors_since(self, start: int) -> list[dict]:
        return [m for m in self.log[start:] if m.get("type") == "error"]

    def tail(self, n: int = 8, start: int | None = None) -> str:
        items = self.log[start:] if start is not None else self.log[-n:]
        return json.dumps(items[-n:], ensure_ascii=False)[:2000]

    def alive(self) -> None:
        """Prove the socket is still open and served: a request that must be answered is answered.
        (An `answer` for an offer that was never made: bad_state, and nothing is recorded.)"""
        self.send({"type": "answer", "sdp": "v=0", "seq": 987654321})
        e = self.expect_error("answer")
        assert e["code"] == "bad_state", f"{self.name}: liveness probe (stray answer) answered {e}"

    def close(self) -> None:
        try:
            self.conn.close(timeout=2)
        except Exception:  # noqa: BLE001
            pass
