"""A site whose network drops during a meeting comes back into it by itself (issue: live
conference core). The drop is real: the site's process is frozen (SIGSTOP), so nothing it
sends or answers reaches the server, UDP or WebSocket; the server expires its media peer, and
once the process runs again the site is back in the meeting without anyone dialing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

from aiortc_site import AiortcSite
from e2e_util import wait_for
from proto_util import OwnServer, Ws, api_login

PASSWORD = "LinkDrop-matkhau-2026!"
HERE = os.path.dirname(os.path.abspath(__file__))


def test_site_returns_after_its_link_drops(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-drop-data-")
    logs = tempfile.mkdtemp(prefix="hnth-drop-log-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log").start()
    viewer = AiortcSite(srv.base, "dc-tinh-uy", PASSWORD).start()
    dropper = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "aiortc_site.py"), "--server", srv.base, "--user", "dc-hong-dan",
         "--password", PASSWORD, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    console = Ws.open(srv.base, api_login(srv.base, "dieuhanh", PASSWORD)["token"], "console")
    stopped = False
    try:
        def site(code):
            msgs = [m for m in console.log_of("sites")]
            return next((s for s in (msgs[-1]["list"] if msgs else []) if s["code"] == code), None)

        def wait_site(code, pred, what, timeout=30):
            return console.expect(lambda m: m.get("type") == "sites" and any(
                s["code"] == code and pred(s) for s in m["list"]), what, timeout=timeout)

        for code in ("tinh-uy", "hong-dan"):
            wait_site(code, lambda s: s["presence"] == "idle", f"{code} online and idle")
        console.send({"type": "open_meeting", "title": "Kiểm thử mất đường truyền"})
        meeting = console.expect_type("meeting_opened")["meeting"]
        console.send({"type": "dial_all", "meeting": meeting["id"]})
        wait_site("hong-dan", lambda s: s["media"] == "connected", "hong-dan media connected")
        stream = f"site-{site('hong-dan')['id']}"

        def frames():
            c = viewer.snapshot()["streams"].get(stream) or {}
            return c.get("video_frames", 0)

        wait_for(lambda: frames() > 30, 60, f"tinh-uy decodes {stream}", detail=viewer.snapshot)

        # The link drops: nothing leaves or reaches the site any more.
        console.drain()
        os.killpg(dropper.pid, signal.SIGSTOP)
        stopped = True
        wait_site("hong-dan", lambda s: s["media"] != "connected",
                  "the server notices the dead link and drops hong-dan's media", timeout=30)
        assert site("hong-dan")["presence"] == "in_meeting", "the site must stay connected to the meeting"
        before = frames()

        # The link comes back: the site rejoins by itself, nobody dials it again.
        os.killpg(dropper.pid, signal.SIGCONT)
        stopped = False
        wait_site("hong-dan", lambda s: s["media"] == "connected", "hong-dan media connected again", timeout=60)
        wait_for(lambda: frames() > before + 30, 60, f"tinh-uy decodes {stream} again after the drop",
                 detail=viewer.snapshot)
        dials = [m for m in console.log_of("dialing")]
        assert len(dials) == 2, f"expected the two dials of dial_all only, got {dials}"
    finally:
        if stopped:
            os.killpg(dropper.pid, signal.SIGCONT)
        dropper.terminate()
        try:
            dropper.wait(10)
        except subprocess.TimeoutExpired:
            dropper.kill()
        viewer.stop()
        console.close()
        srv.stop()
