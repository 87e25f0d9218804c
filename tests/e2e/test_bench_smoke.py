"""Smoke run of the load generator (`hnth-bench --smoke`): three synthetic str0m sites join a
meeting through the real signaling and dialing, send Opus and simulcast VP8 over real UDP, and
every site must receive audio and video frames from every other. No timing is asserted: the
figures it prints are for people (see BENCHMARKS.md for the full scenarios)."""

from __future__ import annotations

import json
import os
import subprocess

from proto_util import REPO, OwnServer

PASSWORD = "Bench-Smoke-matkhau-2024!"


def bench_server(extra_args: list[str] | None = None) -> tuple[OwnServer, str]:
    """A started server of its own (`hnth demo` with `extra_args`) and the load generator's path."""
    srv = OwnServer.fresh("bench", PASSWORD, extra_args=extra_args).start()
    return srv, os.environ.get("HNTH_BENCH_BIN") or str(REPO / "target" / "debug" / "hnth-bench")


def test_bench_smoke(inside_netns):
    srv, bench = bench_server()
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
    srv, bench = bench_server(["--bench-sites", "2", "--view-size", "3"])
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
    srv, bench = bench_server(["--bench-sites", "2", "--view-size", "3"])
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
    srv, bench = bench_server(["--media-workers", "2"])
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


def test_bench_soak_short_sites_drop_and_rejoin_while_the_floor_and_frame_change(inside_netns):
    """The soak (`hnth-bench --soak-minutes`, bench/soak.sh) in short: ten sites in one meeting
    for about 40 s while the operator cycles the floor throughout, changes the frame (layout,
    filled from the floor or placed by hand) every 5 s, and drops one site every 8 s (it closes
    its WebSocket and its peer, comes back 3 s later, every other time with a new login, and is
    joined again by the server). Functional outcomes only: the server stays up, every dropped
    site receives audio and video again on its new peer, every floor and frame change shows in a
    `meeting_state`, and the server's memory, open files and threads are read at the start, the
    warm-up mark and the end (the figures are printed, not asserted)."""
    srv, bench = bench_server(["--bench-sites", "2"])
    try:
        run = subprocess.run(
            [bench, "--server", srv.base, "--password", PASSWORD, "--sites", "10", "--layout", "1+7",
             "--soak-minutes", "0.67", "--drop-every", "8", "--offline-secs", "3", "--frame-every", "5",
             "--sample-every", "15", "--warmup-secs", "10", "--bind-ip", "10.77.0.2",
             "--server-pid", str(srv.proc.pid)],
            capture_output=True, text=True, timeout=300,
        )
        print(run.stdout)
        detail = (f"hnth-bench exited {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
                  f"\n--- server log\n{srv.log_tail()}")
        assert srv.proc.poll() is None, f"the server exited during the soak\n{detail}"
        assert run.returncode == 0, detail
        line = next(l for l in run.stdout.splitlines() if l.startswith("SOAK-JSON "))
        soak = json.loads(line.split(" ", 1)[1])
        assert soak["server_alive"] and soak["healthz"] == 200, soak
        assert soak["sites_reported"] == 10, soak
        # Drops every 8 s from 8 s after dialing: at least three in 40 s, each one back with media.
        assert soak["drops"] >= 3, soak
        assert soak["drops"] == soak["drops_ordered"], soak
        assert soak["rejoins_media_back"] == soak["drops"], soak
        assert soak["rejoins_failed"] == 0 and soak["rejoins_cut_short"] == 0, soak
        assert soak["relogins"] >= 1, soak
        # The floor went round and the frame changed, each change shown to the operator.
        assert soak["floor_sent"] >= 4 and soak["floor_acked"] == soak["floor_sent"], soak
        assert soak["frame_sent"] >= 3 and soak["frame_acked"] == soak["frame_sent"], soak
        assert soak["unacked"] == 0, soak
        # No site lost its WebSocket otherwise, and every one was in the meeting at the end.
        assert soak["server_closed_websockets"] == 0, soak
        assert soak["connected_end"] == 10, soak
        labels = [s["label"] for s in soak["samples"]]
        assert labels[0] == "start (before dialing)" and "warm-up mark" in labels and labels[-1] == "end", labels
        assert all(s["rss_kib"] > 0 and s["fds"] > 0 and s["threads"] > 0 for s in soak["samples"]), soak
        assert soak["growth"] is not None, soak
        assert any(l.startswith("| end |") for l in run.stdout.splitlines()), run.stdout
    finally:
        srv.stop()
