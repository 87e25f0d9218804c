"""Driver of bench/janus.sh (inside the namespace): Janus on CPU 0, load generator on CPU 1.

Janus's utime+stime and RSS from /proc before and after the
generator's run; forwarded packets = packets the sites received (the rx_pkts column)."""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

smoke = sys.argv[1] == "smoke"
sites, secs = (3, 5.0) if smoke else (int(sys.argv[1]), float(sys.argv[2]))
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
bench = os.path.join(repo, "target/release/hnth-bench")
conf = os.path.join(repo, "bench/janus")
url = "http://10.77.0.1:8088/janus"
data = tempfile.mkdtemp(prefix="hnth-janus-")
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


log = open(os.path.join(data, "janus.log"), "wb")
janus = subprocess.Popen(["taskset", "-c", "0", "janus", "-F", conf, "-C", os.path.join(conf, "janus.jcfg")],
                         stdout=log, stderr=subprocess.STDOUT)
deadline = time.monotonic() + 30
while True:  # wait for Janus's HTTP API with a deadline
    try:
        urllib.request.urlopen(url + "/info", timeout=1)
        break
    except OSError:
        if time.monotonic() > deadline or janus.poll() is not None:
            janus.kill()
            sys.exit(f"janus did not start; log in {data}/janus.log")
        time.sleep(0.05)
cpu0, rss0 = cpu_seconds(janus.pid), rss_kib(janus.pid)
t0 = time.monotonic()
args = ["--smoke"] if smoke else ["--sites", str(sites), "--duration", str(secs)]
run = subprocess.run(["taskset", "-c", "1", bench, "--target", "janus", "--janus-url", url] + args,
                     capture_output=True, text=True)
wall = time.monotonic() - t0
cpu1, rss1 = cpu_seconds(janus.pid), rss_kib(janus.pid)
janus.terminate()
try:
    janus.wait(10)
except subprocess.TimeoutExpired:
    janus.kill()
print(run.stdout)
if run.returncode != 0:
    print(run.stderr)
    print(f"janus log: {data}/janus.log")
    sys.exit(run.returncode)
# Packets the sites received = packets Janus forwarded (plus its RTCP and STUN).
pkts = 0
rx_bytes = 0.0
for line in run.stdout.splitlines():
    parts = line.split()
    if len(parts) > 5 and parts[3].count("/") == 1 and parts[4].isdigit():
        pkts += int(parts[4])
cpu = cpu1 - cpu0
mbit = 0.0
for line in run.stdout.splitlines():  # rx_kbps x seconds of each site, as the table gives it
    parts = line.split()
    if len(parts) > 5 and parts[3].count("/") == 1 and parts[4].isdigit():
        mbit += float(parts[5]) * secs / 1000
print(f"janus: {cpu:.2f} CPU s over {wall:.1f} s wall ({100 * cpu / wall:.0f} % of one core), "
      f"{pkts} packets to the sites, {1e6 * cpu / max(pkts, 1):.1f} µs CPU per forwarded packet, "
      f"{cpu / max(mbit, 1e-9):.4f} CPU s per forwarded Mbit ({mbit:.0f} Mbit), "
      f"RSS {rss0 / 1024:.1f} → {rss1 / 1024:.1f} MiB ({(rss1 - rss0) / max(sites, 1) / 1024:.2f} MiB per site)")
