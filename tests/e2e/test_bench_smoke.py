"""Smoke run of the load generator (`hnth-bench --smoke`): three synthetic str0m sites join a
meeting through the real signaling and dialing, send Opus and simulcast VP8 over real UDP, and
every site must receive audio and video frames from every other. No timing is asserted: the
figures it prints are for people (see BENCHMARKS.md for the full scenarios)."""

from __future__ import annotations

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
