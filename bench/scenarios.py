"""The benchmark scenarios (run by bench/scenarios.sh, inside the network namespace).

For each meeting size: a fresh `hnth demo` (release) pinned to CPU 0 with enough load-test sites,
`hnth-bench` pinned to CPU 1 with --server-pid so that the server's CPU and memory are measured
over the media window only (not the logins), then one table row from the generator's
BENCH-JSON line. With --limit, the minimal SRTP forwarder (`hnth-limit`) runs under the same
packet load right after each row, so the table shows hnth / limit in the same run, and the
delay the bare forwarder itself adds (this machine's floor for hnth's server-added delay).

    python3 bench/scenarios.py --sites 9,10,25,50 --seconds 20 [--view 8] [--limit] [--janus]

Other options go to hnth-bench as they are, e.g. `--layout 1+7 --floor-cycles 8` (the floor's
delays, C4).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(REPO, "target/release")
PW = "Bench-matkhau-2026"
HTTP = "127.0.0.1:18443"


def wait_healthy(proc, deadline_s, log):
    deadline = time.monotonic() + deadline_s
    while True:  # poll with a deadline
        try:
            urllib.request.urlopen(f"http://{HTTP}/healthz", timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit(f"server did not start; log in {log}")
            time.sleep(0.05)


def udp_counters():
    """The namespace's UDP counters (server and generator share it): datagrams the kernel
    dropped because a socket's receive buffer was full, and send-buffer errors."""
    with open("/proc/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Udp:")]
    names, values = lines[0][1:], [int(v) for v in lines[1][1:]]
    counters = dict(zip(names, values))
    # Drops at the server's media socket alone (the last column of /proc/net/udp, per socket).
    counters["ServerDrops"] = 0
    with open("/proc/net/udp") as f:
        for line in list(f)[1:]:
            cols = line.split()
            if int(cols[1].split(":")[1], 16) == 18444:
                counters["ServerDrops"] += int(cols[-1])
    return counters


def run_hnth(sites, secs, view, extra, estimation):
    data = tempfile.mkdtemp(prefix="hnth-scn-")
    log_path = os.path.join(data, "server.log")
    log = open(log_path, "wb")
    settings = os.path.join(data, "hnth.toml")
    with open(settings, "w") as f:
        f.write(f'[media]\nbandwidth_estimation = "{estimation}"\n')
    server = subprocess.Popen(
        ["taskset", "-c", "0", os.path.join(REL, "hnth"), "--config", settings, "demo",
         "--data-dir", data, "--http", HTTP,
         "--udp", "10.77.0.1:18444", "--announce", "10.77.0.1", "--tls", "off", "--demo-password", PW,
         "--bench-sites", str(max(sites - 8, 0)), "--view-size", str(view)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, RUST_LOG="warn"))
    try:
        wait_healthy(server, 60, log_path)
        udp0 = udp_counters()
        run = subprocess.run(
            ["taskset", "-c", "1", os.path.join(REL, "hnth-bench"), "--server", f"http://{HTTP}",
             "--password", PW, "--sites", str(sites), "--view", str(view), "--duration", str(secs),
             "--server-pid", str(server.pid), *extra],
            capture_output=True, text=True)
        udp1 = udp_counters()
    finally:
        server.terminate()
        server.wait(20)
    summary = None
    for line in run.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            summary = json.loads(line.split(" ", 1)[1])
    if summary is None:
        print(run.stdout)
        print(run.stderr)
        sys.exit(f"hnth-bench gave no summary (exit {run.returncode}); server log {log_path}")
    summary["ok"] = run.returncode == 0
    summary["kernel_udp"] = {k: udp1[k] - udp0[k] for k in ("InDatagrams", "RcvbufErrors", "SndbufErrors", "ServerDrops")}
    shutil.rmtree(data, ignore_errors=True)
    return summary, run.stdout


def run_janus(sites, secs, substream):
    """The same synthetic sites through Janus's VideoRoom (bench/janus/), same pinning."""
    data = tempfile.mkdtemp(prefix="hnth-scn-janus-")
    conf = os.path.join(REPO, "bench/janus")
    url = "http://10.77.0.1:8088/janus"
    log_path = os.path.join(data, "janus.log")
    janus = subprocess.Popen(["taskset", "-c", "0", "janus", "-F", conf, "-C", os.path.join(conf, "janus.jcfg")],
                             stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for Janus's HTTP API with a deadline
            try:
                urllib.request.urlopen(url + "/info", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or janus.poll() is not None:
                    sys.exit(f"janus did not start; log in {log_path}")
                time.sleep(0.05)
        run = subprocess.run(
            ["taskset", "-c", "1", os.path.join(REL, "hnth-bench"), "--target", "janus", "--janus-url", url,
             "--sites", str(sites), "--duration", str(secs), "--server-pid", str(janus.pid),
             "--janus-substream", str(substream)],
            capture_output=True, text=True)
    finally:
        janus.terminate()
        try:
            janus.wait(10)
        except subprocess.TimeoutExpired:
            janus.kill()
    for line in run.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            summary = json.loads(line.split(" ", 1)[1])
            summary["ok"] = run.returncode == 0
            return summary
    print(run.stdout, run.stderr)
    return None


def run_limit(summary, secs):
    """The minimal forwarder under the same packet load: same forwarded packets per second,
    same fan-out and mean packet size as the SFU row. Every site receives the same first
    view + 1 senders but itself, so each forwarded packet has sites × view / (view + 1)
    receivers once the meeting is larger than the view."""
    fwd = summary["forwarded"]
    pps_out = fwd["packets_per_s"]
    size = int(fwd["bytes"] / max(fwd["packets"], 1))
    sites, view = summary["sites"], summary["view"]
    fanout = max(round(sites * min(view, sites - 1) / min(view + 1, sites)), 1)
    pps_in = max(int(pps_out / fanout), 1)
    limit = os.path.join(REL, "hnth-limit")
    run = subprocess.run([limit, "run", "--pps-in", str(pps_in), "--fanout", str(fanout), "--size", str(size),
                          "--senders", str(min(view + 1, sites)),
                          "--seconds", str(min(secs, 10)), "--addr", "10.77.0.1", "--peer-addr", "10.77.0.2", "--json"],
                         capture_output=True, text=True)
    for line in reversed(run.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    print(run.stdout, run.stderr)
    return None


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", default="9,10,25,50,100,200")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--view", type=int, default=8)
    ap.add_argument("--estimation", choices=["loss", "delay"], default="loss",
                    help="hnth's media.bandwidth_estimation")
    ap.add_argument("--limit", action="store_true", help="also run hnth-limit at the same load")
    ap.add_argument("--janus", action="store_true", help="also run the same sites through Janus")
    ap.add_argument("--janus-only", action="store_true", help="only Janus (no hnth, no limit)")
    ap.add_argument("--janus-substream", type=int, default=1,
                    help="the layer Janus forwards (0 q, 1 h, 2 f); hnth chooses by estimate")
    ap.add_argument("--verbose", action="store_true", help="print the generator's full output")
    args, extra = ap.parse_known_args()
    rows = []
    ok = True
    for n in [int(x) for x in args.sites.split(",")]:
        print(f"--- {n} sites, view {args.view}, {args.seconds:.0f} s", flush=True)
        if args.janus_only:
            janus = run_janus(n, args.seconds, args.janus_substream)
            ok &= bool(janus and janus["ok"])
            rows.append({"sites": n, "janus": janus})
            print("    " + json.dumps(janus), flush=True)
            continue
        summary, out = run_hnth(n, args.seconds, args.view, extra, args.estimation)
        if args.verbose:
            print(out)
        summary["limit"] = run_limit(summary, args.seconds) if args.limit else None
        summary["janus"] = run_janus(n, args.seconds, args.janus_substream) if args.janus else None
        rows.append(summary)
        ok &= summary["ok"]
        print("    " + json.dumps(summary), flush=True)

    if not args.janus_only:
        print_hnth(rows)
        print_floor(rows)
    print_janus(rows)
    # Non-zero when media did not flow everywhere in some run (the tables say where).
    sys.exit(0 if ok else 1)


def print_hnth(rows):
    print()
    print("| sites | receives | fwd pkt/s | fwd Mbit/s | hnth µs/pkt | hnth CPU s/Mbit | hnth % core"
          " | limit µs/pkt | hnth/limit | RSS MiB/site | server-added delay p50/p99/p99.9 ms (≤): all ; after the joins"
          " | limit delay p50/p99/p99.9 ms"
          " | audio p50/p99 ms | video p50/p99 ms | steady audio p99 / video p99 ms"
          " | join p50/p99 ms (p50 of: join message, link up) | loss a/v % | video frames q/h/f % | muted sites (audio frames from them)"
          " | kernel drops (at the server) | generator % core | complete |")
    print("|" + "---|" * 22)
    for r in rows:
        s = r.get("server") or {}
        g = r.get("generator") or {}
        lim = r.get("limit") or {}
        lim_us = lim.get("us_per_out_packet")
        ratio = (s.get("us_per_packet") / lim_us) if (lim_us and s.get("us_per_packet")) else None
        print(f"| {r['sites']} | {min(r['view'], r['sites'] - 1)} "
              f"| {r['forwarded']['packets_per_s']:.0f} | {r['forwarded']['mbit_per_s']:.1f} "
              f"| {fmt(s.get('us_per_packet'))} | {fmt(s.get('cpu_s_per_mbit'), '.3f')} | {fmt(s.get('core_pct'), '.0f')} "
              f"| {fmt(lim_us)} | {fmt(ratio)} "
              f"| {fmt(s.get('rss_mib_per_site'), '.2f')} "
              f"| {delay(r.get('server_delay'))} ; {delay(r.get('server_delay_steady'))} "
              f"| {limit_delay(lim)} "
              f"| {fmt(r['audio']['delay_ms_p50'])}/{fmt(r['audio']['delay_ms_p99'])} "
              f"| {fmt(r['video']['delay_ms_p50'])}/{fmt(r['video']['delay_ms_p99'])} "
              f"| {fmt(r['audio']['steady_ms_p99'])} / {fmt(r['video']['steady_ms_p99'])} "
              f"| {fmt(r['join_ms']['p50'], '.0f')}/{fmt(r['join_ms']['p99'], '.0f')}"
              f" ({fmt(r['join_ms'].get('join_message_p50'), '.0f')}, {fmt(r['join_ms'].get('connected_p50'), '.0f')}) "
              f"| {fmt(r['audio']['loss_pct'], '.2f')}/{fmt(r['video']['loss_pct'], '.2f')} "
              f"| {'/'.join(fmt(x, '.0f') for x in r['video'].get('layer_frames_pct') or []) or '-'} "
              f"| {r.get('muted_sites', 0)} ({r.get('muted_audio_frames', 0)}) "
              f"| {r['kernel_udp']['RcvbufErrors'] + r['kernel_udp']['SndbufErrors']}"
              f" ({r['kernel_udp'].get('ServerDrops', 0)}) "
              f"| {fmt(g.get('core_pct'), '.0f')} | {r['complete_sites']}/{r['sites']} |")


def print_floor(rows):
    """The floor (C4) when hnth-bench cycled it (--floor-cycles N): from the operator's give to
    the first sound each other site heard, and from the take-back to when it stopped there (at
    most the last packet heard + the 20 ms to the next)."""
    rows = [r for r in rows if (r.get("floor") or {}).get("cycles")]
    if not rows:
        return
    print()
    print("| sites | floor cycles | receptions heard (none) | give → first audio p50/p99/max ms"
          " | take back → sound stopped (≤ last packet + 20 ms) p50/p99/max ms |")
    print("|" + "---|" * 5)
    for r in rows:
        f = r["floor"]
        g, t = f["grant_ms"], f["take_ms"]
        print(f"| {r['sites']} | {f['cycles']} | {f['heard']} ({f['not_heard']}) "
              f"| {fmt(g['p50'])}/{fmt(g['p99'])}/{fmt(g['max'])} | {fmt(t['p50'])}/{fmt(t['p99'])}/{fmt(t['max'])} |")


def delay(d):
    """The server's own delay histogram: bucket bounds, so each figure reads "at most"."""
    if not d:
        return "-"
    return "/".join(fmt(d.get(k), ".2f") if isinstance(d.get(k), (int, float)) else str(d.get(k))
                    for k in ("p50_ms_le", "p99_ms_le", "p999_ms_le"))


def limit_delay(lim):
    """hnth-limit's own delay (kernel arrival → sendmmsg returned), exact, in ms."""
    if lim.get("delay_us_p50") is None:
        return "-"
    return "/".join(fmt(lim[k] / 1000, ".2f") for k in ("delay_us_p50", "delay_us_p99", "delay_us_p999"))


def print_janus(rows):
    if any(r.get("janus") for r in rows):
        print()
        print("| sites | Janus fwd pkt/s | Janus fwd Mbit/s | Janus µs/pkt | hnth µs/pkt | hnth/Janus | Janus % core"
              " | Janus RSS MiB/site | Janus audio p50/p99 ms | Janus video p50/p99 ms | Janus loss a/v %"
              " | generator % core | complete |")
        print("|" + "---|" * 13)
        for r in rows:
            j = r.get("janus")
            if not j:
                continue
            js, hs = j.get("server") or {}, r.get("server") or {}
            ratio = (hs.get("us_per_packet") / js["us_per_packet"]) if js.get("us_per_packet") and hs.get("us_per_packet") else None
            print(f"| {j['sites']} | {j['forwarded']['packets_per_s']:.0f} | {j['forwarded']['mbit_per_s']:.1f} "
                  f"| {fmt(js.get('us_per_packet'))} | {fmt(hs.get('us_per_packet'))} | {fmt(ratio, '.2f')} "
                  f"| {fmt(js.get('core_pct'), '.0f')} | {fmt(js.get('rss_mib_per_site'), '.2f')} "
                  f"| {fmt(j['audio']['delay_ms_p50'])}/{fmt(j['audio']['delay_ms_p99'])} "
                  f"| {fmt(j['video']['delay_ms_p50'])}/{fmt(j['video']['delay_ms_p99'])} "
                  f"| {fmt(j['audio']['loss_pct'], '.2f')}/{fmt(j['video']['loss_pct'], '.2f')} "
                  f"| {fmt((j.get('generator') or {}).get('core_pct'), '.0f')} | {j['complete_sites']}/{j['sites']} |")


if __name__ == "__main__":
    main()
