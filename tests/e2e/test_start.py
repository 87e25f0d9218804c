"""What the README's first command does (`demo --simulated-sites all`), on a fresh data folder: HTTPS with a self-signed
certificate made on first run, the URLs and the demo logins printed, the same password on the
next start; and a bad settings file stops the server with one clear line."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time

import requests
import urllib3

from e2e_util import wait_for
from proto_util import NETNS_ADDR, binary, free_port

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def start(data: str, out: str) -> tuple[subprocess.Popen, int]:
    port = free_port(socket.SOCK_STREAM, "127.0.0.1")
    udp = free_port(socket.SOCK_DGRAM, NETNS_ADDR)
    proc = subprocess.Popen([binary(), "demo", "--data-dir", data, "--http", f"127.0.0.1:{port}",
                             "--udp", f"{NETNS_ADDR}:{udp}", "--simulated-sites", "all"],
                            stdout=open(out, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, port


def healthy(port: int) -> bool:
    try:
        return requests.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2).text == "ok"
    except requests.RequestException:
        return False


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_first_start_makes_a_certificate_and_prints_logins(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-start-")
    outputs = []
    for run in range(2):
        out = os.path.join(data, f"out{run}.txt")
        proc, port = start(data, out)
        try:
            wait_for(lambda: healthy(port) or proc.poll() is not None, 30, "HTTPS /healthz")
            assert proc.poll() is None, open(out).read()
            page = requests.get(f"https://127.0.0.1:{port}/login", verify=False, timeout=5)
            assert page.status_code == 200 and "Đăng nhập" in page.text
            # Under TLS: HSTS, and the cookies only ever go back over TLS (docs/security.md).
            assert page.headers["Strict-Transport-Security"].startswith("max-age="), page.headers
            assert "Content-Security-Policy" in page.headers
            assert "; Secure" in page.headers["Set-Cookie"], page.headers["Set-Cookie"]
            # plain HTTP on the HTTPS port is not served
            try:
                plain = requests.get(f"http://127.0.0.1:{port}/login", timeout=5)
                assert plain.status_code != 200
            except requests.RequestException:
                pass
        finally:
            stop(proc)
        outputs.append(open(out, encoding="utf-8").read())
    first, second = outputs
    assert "self-signed certificate" in first and os.path.exists(os.path.join(data, "tls-cert.pem")), first
    assert f"Control-center console: https://127.0.0.1:" in first, first
    assert "dieuhanh" in first and "dc-hong-dan" in first, first
    pw = [line for line in first.splitlines() if "password for all" in line]
    assert pw and pw[0] in second, "the demo password changed between two starts"
    key = os.path.join(data, "tls-key.pem")
    assert oct(os.stat(key).st_mode & 0o777) == "0o600", "the TLS key must be readable by its owner only"


def test_bad_settings_stop_with_one_clear_line(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-badcfg-")
    cfg = os.path.join(data, "hnth.toml")
    with open(cfg, "w") as f:
        f.write('[http]\nbnd = "0.0.0.0:1"\n')
    run = subprocess.run([binary(), "--config", cfg, "serve", "--data-dir", data], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 1
    lines = [x for x in run.stderr.splitlines() if x.startswith("hnth:")]
    assert lines and "line 2" in lines[0] and "unknown field" in lines[0] and "bnd" in lines[0], run.stderr
    assert "backtrace" not in run.stderr.lower()


def test_serve_without_the_province_stops_with_one_clear_line(inside_netns):
    """`hnth serve` assumes no province: without [province] it says which settings are missing."""
    data = tempfile.mkdtemp(prefix="hnth-noprovince-")
    cfg = os.path.join(data, "hnth.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write('[province]\nname = "Tỉnh Cà Mau"\n')
    for args in (["serve"], ["--config", cfg, "serve"]):
        run = subprocess.run([binary(), *args, "--data-dir", data, "--tls", "off"], capture_output=True,
                             text=True, timeout=30)
        assert run.returncode == 1, f"{args}: exit {run.returncode}\n{run.stdout}\n{run.stderr}"
        lines = [x for x in run.stderr.splitlines() if x.startswith("hnth:")]
        assert lines and "province.office" in lines[0] and "province.place" in lines[0], run.stderr
        assert ("province.name" in lines[0]) == (args == ["serve"]), lines[0]
        assert not os.path.exists(os.path.join(data, "hnth.db")), "the database was made before refusing"
