"""A site that nobody receives pauses its camera, in a real browser: with no console in the meeting
(a console watches every site), the operator sets a frame of one cell showing the first site; the
two others are on no screen, so the server sends them `send_video` off and their site apps turn
their video encodings off; when a frame of four cells brings one of them back on screen, its
encodings come back on, and the other stays paused (C1)."""

from __future__ import annotations

import tempfile

from e2e_util import BrowserFactory, T_SIGNAL, wait_for
from proto_util import OwnServer, Ws, api_login

PASSWORD = "Send-Video-matkhau-2024!"
ORDER = ["tinh-uy", "hong-dan", "dong-hai"]

# The active flags of the site's video encodings (null before it sends video).
JS_ENCODINGS = """
const pc = window.hnth && window.hnth.pc;
if (!pc) return null;
const s = pc.getSenders().find((x) => x.track && x.track.kind === 'video');
if (!s) return null;
return s.getParameters().encodings.map((e) => e.active !== false);
"""


def site_entry(msg: dict, code: str) -> dict | None:
    if msg.get("type") != "sites":
        return None
    return next((s for s in msg.get("list", []) if s.get("code") == code), None)


def test_a_site_nobody_receives_pauses_its_camera_and_resumes(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-sendvideo-")
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{data}/server.log").start()
    f = BrowserFactory(base=srv.base, password=PASSWORD)
    try:
        pages = {c: f.site(c) for c in ORDER}
        for p in pages.values():
            p.wait_state("idle")
        op = Ws.open(srv.base, api_login(srv.base, "dieuhanh", PASSWORD)["token"], "operator")
        first = op.expect(lambda m: all(site_entry(m, c) for c in ORDER), "the site list")
        ids = {c: site_entry(first, c)["id"] for c in ORDER}
        op.send({"type": "open_meeting", "title": "Kiểm thử tạm dừng hình"})
        meeting = op.expect_type("meeting_opened")["meeting"]["id"]
        # One after the other: each connected before the next is called.
        for code in ORDER:
            op.send({"type": "dial", "meeting": meeting, "site": ids[code]})
            op.expect(lambda m, c=code: (site_entry(m, c) or {}).get("media") == "connected",
                      f"{code} connected", timeout=T_SIGNAL)

        def encodings(code):
            return pages[code].js(JS_ENCODINGS)

        def frame(layout, codes):
            op.send({"type": "command", "meeting": meeting, "command": {"type": "set_frame", "frame": {
                "layout": layout, "fill": {"kind": "manual", "cells": [ids[c] for c in codes]}}}})
            op.expect(lambda m: m.get("type") == "meeting_state" and m["frame"]["layout"] == layout,
                      f"the frame {layout} in the meeting's state")

        def paused(code):
            return pages[code].js("return !document.getElementById('video-paused').hidden;")

        shown, hidden = ORDER[0], ORDER[1:]
        frame("1x1", [shown])
        for code in hidden:
            wait_for(lambda c=code: encodings(c) and not any(encodings(c)), T_SIGNAL,
                     f"{code}'s video encodings turned off (on no screen)",
                     detail=lambda: {c: [encodings(c), pages[c].hnth("sendVideo")] for c in ORDER})
        assert encodings(shown) and all(encodings(shown)), f"{shown} is on every other screen: its video stays on"
        # The site's screen says so, in Vietnamese; the one on screen shows no such notice.
        for code in hidden:
            notice = wait_for(lambda c=code: pages[c].js("const e = document.getElementById('video-paused');"
                                                         "return e && !e.hidden ? e.textContent : null;"),
                              T_SIGNAL, f"the paused notice on {code}'s screen")
            assert "tạm dừng" in notice, notice
        assert not paused(shown), shown

        # Four cells: the last site is on screen again and turns its video back on; the middle
        # one is still on no screen.
        back, still = ORDER[2], ORDER[1]
        frame("2x2", [shown, back])
        wait_for(lambda: encodings(back) and all(encodings(back)), T_SIGNAL,
                 f"{back}'s video encodings back on", detail=lambda: {c: encodings(c) for c in ORDER})
        wait_for(lambda: not paused(back), T_SIGNAL, f"the paused notice gone from {back}'s screen")
        assert encodings(still) and not any(encodings(still)), f"{still} is still on no screen"
        op.close()
    finally:
        f.quit_all()
        srv.stop()
