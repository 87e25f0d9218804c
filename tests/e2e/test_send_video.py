"""A site that nobody receives pauses its camera, in a real browser: with a view of one other
site (`--view-size 1`) and no control-center media, the third site dialed is received by nobody,
so the server sends it `send_video` off and the site app turns its video encodings off; when a
site before it hangs up, it is received again and its encodings come back on."""

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
    srv = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{data}/server.log",
                    extra_args=["--view-size", "1"]).start()
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
        # One after the other, so that the joining order is known.
        for code in ORDER:
            op.send({"type": "dial", "meeting": meeting, "site": ids[code]})
            op.expect(lambda m, c=code: (site_entry(m, c) or {}).get("media") == "connected",
                      f"{code} connected", timeout=T_SIGNAL)

        def encodings(code):
            return pages[code].js(JS_ENCODINGS)

        last = ORDER[-1]
        wait_for(lambda: encodings(last) and not any(encodings(last)), T_SIGNAL,
                 f"{last}'s video encodings turned off (nobody receives it)",
                 detail=lambda: {c: [encodings(c), pages[c].hnth("sendVideo")] for c in ORDER})
        for code in ORDER[:-1]:
            assert encodings(code) and all(encodings(code)), f"{code} is received: its video stays on"
        # The site's screen says so, in Vietnamese; the others show no such notice.
        notice = wait_for(lambda: pages[last].js("const e = document.getElementById('video-paused');"
                                                 "return e && !e.hidden ? e.textContent : null;"),
                          T_SIGNAL, f"the paused notice on {last}'s screen")
        assert "tạm dừng" in notice, notice
        for code in ORDER[:-1]:
            assert pages[code].js("return document.getElementById('video-paused').hidden;"), code

        # The first site hangs up: the last one is received again and turns its video back on.
        op.send({"type": "hangup", "meeting": meeting, "site": ids[ORDER[0]]})
        wait_for(lambda: encodings(last) and all(encodings(last)), T_SIGNAL,
                 f"{last}'s video encodings back on",
                 detail=lambda: {c: encodings(c) for c in ORDER})
        wait_for(lambda: pages[last].js("return document.getElementById('video-paused').hidden;"),
                 T_SIGNAL, f"the paused notice gone from {last}'s screen")
        op.close()
    finally:
        f.quit_all()
        srv.stop()
