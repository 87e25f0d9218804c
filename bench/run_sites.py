"""Driver of bench/sites.sh (inside the namespace): server on CPU 0, load generator on CPU 1."""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sites, secs = int(sys.argv[1]), float(sys.argv[2])
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
hnth = os.path.join(repo, "target/release/hnth")
bench = os.path.join(repo, "target/release/hnth-bench")
pw = "Bench-matkhau-2026"
data = tempfile.mkdtemp(prefix="hnth-bench-")
tick = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


log = open(os.path.join(data, "server.log"), "wb")
server = subprocess.Popen(
    ["taskset", "-c", "0", hnth, "demo", "--data-dir", data, "--http", "127.0.0.1:18443",
     "--udp", "10.77.0.1:18444", "--announce", "10.77.0.1", "--tls", "off", "--demo-password", pw],
    stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, RUST_LOG="warn"))
deadline = time.monotonic() + 30
while True:  # wait for the server with a deadline
    try:
        urllib.request.urlopen("http://127.0.0.1:18443/healthz", timeout=1)
        break
    except OSError:
        if time.monotonic() > deadline or server.poll() is not None:
            sys.exit(f"server did not start; log in {data}/server.log")
        time.sleep(0.05)
cpu0, rss0 = cpu_seconds(server.pid), rss_kib(server.pid)
t0 = time.monotonic()
run = subprocess.run(["taskset", "-c", "1", bench, "--server", "http://127.0.0.1:18443", "--password", pw,
                      "--sites", str(sites), "--duration", str(secs)], capture_output=True, text=True)
wall = time.monotonic() - t0
cpu1, rss1 = cpu_seconds(server.pid), rss_kib(server.pid)
server.terminate()
server.wait(10)
print(run.stdout)
if run.returncode != 0:
    print(run.stderr)
    sys.exit(run.returncode)
# Packets the sites received = packets the server forwarded (plus its RTCP and STUN).
pkts = 0
for line in run.stdout.splitlines():
    parts = line.split()
    if len(parts) > 5 and parts[3].count("/") == 1 and parts[4].isdigit():
        pkts += int(parts[4])
cpu = cpu1 - cpu0
print(f"server: {cpu:.2f} CPU s over {wall:.1f} s wall ({100 * cpu / wall:.0f} % of one core), "
      f"{pkts} packets to the sites, {1e6 * cpu / max(pkts, 1):.1f} µs CPU per forwarded packet, "
      f"RSS {rss0 / 1024:.1f} → {rss1 / 1024:.1f} MiB ({(rss1 - rss0) / max(sites, 1) / 1024:.2f} MiB per site)")
