"""Fixtures for the hnth end-to-end tests.

Run everything inside the private network namespace:

    scripts/in-netns.sh python3 -m pytest -v tests/e2e

The server binary is target/debug/hnth (override with HNTH_BIN); it is NOT built here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from e2e_util import (  # noqa: E402
    NETNS_ADDR,
    Abort,
    BrowserFactory,
    free_port,
    harness_settings,
    http_get,
    netns_addresses,
    wait_for,
)

REPO = HERE.parent.parent
DEMO_PASSWORD = os.environ.get("HNTH_DEMO_PASSWORD", "Hnth-E2E-matkhau-2024!")

# Never send 127.0.0.1 / localhost (selenium -> chromedriver, urllib -> server) through a proxy.
for _var in ("NO_PROXY", "no_proxy"):
    _cur = os.environ.get(_var, "")
    os.environ[_var] = ",".join(x for x in (_cur, "127.0.0.1", "localhost", NETNS_ADDR) if x)


@dataclass
class Server:
    proc: subprocess.Popen
    base: str  # http://127.0.0.1:PORT
    http_port: int
    udp_port: int
    password: str
    data_dir: str
    log_path: str

    def log_tail(self, lines: int = 80) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        text = data.decode("utf-8", "replace").splitlines()
        return "\n".join(text[-lines:])


_STATE: dict = {"server": None, "factories": []}


# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def inside_netns():
    addrs = netns_addresses()
    if NETNS_ADDR not in addrs:
        pytest.fail(
            f"{NETNS_ADDR} is not configured on any interface (have: {addrs}).\n"
            "The e2e tests must run inside the private network namespace; run them as\n"
            "    scripts/in-netns.sh python3 -m pytest -v tests/e2e",
            pytrace=False,
        )
    return NETNS_ADDR


def _binary() -> str:
    path = os.environ.get("HNTH_BIN") or str(REPO / "target" / "debug" / "hnth")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"hnth server binary not found/executable at {path}: build it first (cargo build) "
                    "or set HNTH_BIN", pytrace=False)
    return path


def _harness_config(data_dir: str) -> str:
    path = os.path.join(data_dir, "hnth-harness.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(harness_settings())
    return path


@pytest.fixture(scope="session")
def server(inside_netns) -> Server:
    binary = _binary()
    data_dir = tempfile.mkdtemp(prefix="hnth-e2e-data-")
    log_dir = tempfile.mkdtemp(prefix="hnth-e2e-log-")
    log_path = os.path.join(log_dir, "server.log")
    http_port = free_port(socket.SOCK_STREAM, "127.0.0.1")
    udp_port = free_port(socket.SOCK_DGRAM, NETNS_ADDR)
    cmd = [
        binary, "demo",
        "--data-dir", data_dir,
        "--http", f"127.0.0.1:{http_port}",
        "--udp", f"{NETNS_ADDR}:{udp_port}",
        "--announce", NETNS_ADDR,
        "--tls", "off",
        "--demo-password", DEMO_PASSWORD,
        "--config", _harness_config(data_dir),
    ]
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")
    env.setdefault("RUST_BACKTRACE", "1")
    log = open(log_path, "wb")
    log.write(("$ " + " ".join(cmd) + "\n").encode())
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    srv = Server(proc=proc, base=f"http://127.0.0.1:{http_port}", http_port=http_port, udp_port=udp_port,
                 password=DEMO_PASSWORD, data_dir=data_dir, log_path=log_path)
    _STATE["server"] = srv

    def healthy():
        if proc.poll() is not None:
            raise Abort(f"hnth exited with status {proc.returncode} before /healthz answered.\n"
                                 f"--- server log ({log_path}) ---\n{srv.log_tail()}")
        try:
            status, _ = http_get(srv.base + "/healthz", timeout=1.0)
        except OSError:
            return False
        return status == 200

    try:
        wait_for(healthy, 60, f"GET {srv.base}/healthz -> 200 from `{' '.join(cmd)}`",
                 detail=lambda: srv.log_tail(30))
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
        rc = proc.returncode
        if rc not in (0, -signal.SIGTERM, None):
            sys.stderr.write(f"\nhnth exited with status {rc}; log tail:\n{srv.log_tail()}\n")
        _STATE["server"] = None
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"\nhnth server log kept at {log_path}")


def _factory(server: Server):
    f = BrowserFactory(base=server.base, password=server.password)
    _STATE["factories"].append(f)
    try:
        yield f
    finally:
        f.quit_all()
        _STATE["factories"].remove(f)


@pytest.fixture(scope="module")
def browsers(server):
    """Module-scoped browser factory: browsers.console(), browsers.site('tinh-uy'), browsers.new(name)."""
    yield from _factory(server)


@pytest.fixture
def browser_factory(server):
    """Function-scoped browser factory (browsers are closed at the end of the test)."""
    yield from _factory(server)


# --------------------------------------------------------------------------------------------
# On failure, attach the server log tail and each open browser's console log to the report.


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    srv = _STATE.get("server")
    if srv is not None:
        alive = "running" if srv.proc.poll() is None else f"EXITED with status {srv.proc.returncode}"
        rep.sections.append((f"hnth server log tail ({alive}; full log {srv.log_path})", srv.log_tail(80)))
    for f in _STATE.get("factories", []):
        for p in f.pages:
            try:
                rep.sections.append((f"browser console: {p.name} ({p.driver.current_url})",
                                     "\n".join(p.console_log(30)) or "(empty)"))
            except Exception as exc:  # noqa: BLE001
                rep.sections.append((f"browser console: {p.name}", f"(unavailable: {exc})"))
