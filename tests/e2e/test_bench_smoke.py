"""Smoke run of the load generator (`hnth-bench --smoke`): three synthetic str0m sites join a
meeting through the real signaling and dialing, send Opus and simulcast VP8 over real UDP, and
every site must receive audio and video frames from every other. No timing is asserted: the
figures it prints are for people (see BENCHMARKS.md for the full scenarios)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

from proto_util import REPO, OwnServer

PASSWORD = "Bench-Smoke-matkhau-2024!"


def test_bench_smoke(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-bench-data-")
    logs = tempfile.mkdtemp(prefix="hnth-bench-log-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log").start()
    bench = os.environ.get("HNTH_BENCH_BIN") or str(REPO / "target" / "debug" / "hnth-bench")
    try:
        run = subprocess.run(
            [bench, "--server", srv.base, "--password", PASSWORD, "--smoke", "--bind-ip", "10.77.0.2"],
            capture_output=True, text=True, timeout=120,
        )
        print(run.stdout)
        assert run.returncode == 0, (
            f"hnth-bench --smoke exited {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
            f"\n--- server log\n{srv.log_tail()}"
        )
    finally:
        srv.stop()


def test_bench_view_limits_what_each_site_receives(inside_netns):
    """Ten sites (the demo's 8 and 2 load-test sites) with a view of 3: every site receives
    exactly 3 others, only the meeting's first 4 to join are forwarded at all, and the other 6
    are told to pause their video (`send_video` off)."""
    data = tempfile.mkdtemp(prefix="hnth-bench-data-")
    logs = tempfile.mkdtemp(prefix="hnth-bench-log-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log",
                    extra_args=["--bench-sites", "2", "--view-size", "3"]).start()
    bench = os.environ.get("HNTH_BENCH_BIN") or str(REPO / "target" / "debug" / "hnth-bench")
    try:
        run = subprocess.run(
            [bench, "--server", srv.base, "--password", PASSWORD, "--sites", "10", "--view", "3",
             "--duration", "6", "--bind-ip", "10.77.0.2", "--server-pid", str(srv.proc.pid)],
            capture_output=True, text=True, timeout=180,
        )
        print(run.stdout)
        assert run.returncode == 0, (
            f"hnth-bench exited {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
            f"\n--- server log\n{srv.log_tail()}"
        )
        line = next(l for l in run.stdout.splitlines() if l.startswith("BENCH-JSON "))
        summary = json.loads(line.split(" ", 1)[1])
        assert summary["complete_sites"] == 10, summary
        assert summary["speakers"] == 4, summary
        assert summary["video_paused_sites"] == 6, summary
        assert summary["server"]["cpu_s"] > 0, summary
        # The server's own delay histograms (/metrics, read from 127.0.0.1) counted the
        # window's datagrams; their figures are for people.
        assert summary["server_delay"]["datagrams"] > 0, summary
        assert summary["socket_wait"]["datagrams"] > 0, summary
    finally:
        srv.stop()


def test_bench_floor_cycles_open_and_close_a_sites_sound_for_everyone(inside_netns):
    """C4 under load: the operator of `hnth-bench --floor-cycles 2` gives the floor to two
    sites that are not speakers, one after the other, and takes it back; every other site hears
    each of them after the give (nothing before: the spurt begins after it), and the figures
    (give → first sound, take back → sound stopped) are printed, not asserted."""
    data = tempfile.mkdtemp(prefix="hnth-bench-data-")
    logs = tempfile.mkdtemp(prefix="hnth-bench-log-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log",
                    extra_args=["--bench-sites", "2", "--view-size", "3"]).start()
    bench = os.environ.get("HNTH_BENCH_BIN") or str(REPO / "target" / "debug" / "hnth-bench")
    try:
        run = subprocess.run(
            [bench, "--server", srv.base, "--password", PASSWORD, "--sites", "10", "--view", "3",
             "--duration", "10", "--floor-cycles", "2", "--bind-ip", "10.77.0.2"],
            capture_output=True, text=True, timeout=180,
        )
        print(run.stdout)
        assert run.returncode == 0, (
            f"hnth-bench exited {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
            f"\n--- server log\n{srv.log_tail()}"
        )
        line = next(l for l in run.stdout.splitlines() if l.startswith("BENCH-JSON "))
        floor = json.loads(line.split(" ", 1)[1])["floor"]
        assert floor["cycles"] == 2, floor
        assert (floor["heard"], floor["not_heard"]) == (2 * 9, 0), floor
        assert floor["grant_ms"]["p50"] is not None and floor["take_ms"]["p50"] is not None, floor
        assert any(l.startswith("floor (C4)") for l in run.stdout.splitlines()), run.stdout
    finally:
        srv.stop()


def test_two_media_workers_carry_meetings_one_after_the_other(inside_netns):
    """With two media workers (two UDP ports), two meetings in a row are placed on different
    workers (ties go round) and media flows in both."""
    data = tempfile.mkdtemp(prefix="hnth-bench-data-")
    logs = tempfile.mkdtemp(prefix="hnth-bench-log-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log",
                    extra_args=["--media-workers", "2"]).start()
    bench = os.environ.get("HNTH_BENCH_BIN") or str(REPO / "target" / "debug" / "hnth-bench")
    try:
        with open(srv.log_path, encoding="utf-8", errors="replace") as f:
            banner = f.read()
        assert f"port {srv.udp_port}, {srv.udp_port + 1}, 2 workers" in banner, banner[-2000:]
        for _ in range(2):
            run = subprocess.run(
                [bench, "--server", srv.base, "--password", PASSWORD, "--smoke", "--bind-ip", "10.77.0.2"],
                capture_output=True, text=True, timeout=120,
            )
            assert run.returncode == 0, (
                f"hnth-bench exited {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
                f"\n--- server log\n{srv.log_tail()}"
            )
    finally:
        srv.stop()
