"""The demo's simulated sites (`hnth demo --simulated-sites all`): one operator console in headless
Chromium opens an emergency with two simulated sites and gives them the floor (a debate); the
console must DECODE their real VP8 test pictures (640x360, framesDecoded rising) and their Opus
beeps (totalAudioEnergy > 0).

`all` simulates every demo site but hong-dan, which stays free for a real browser.
HNTH_E2E_SCREENSHOTS=/some/dir keeps a screenshot of the console with the pictures.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from e2e_util import (
    T_MEDIA,
    T_SIGNAL,
    BrowserFactory,
    describe_stats,
    open_emergency,
    set_floor,
    set_switch,
    site_ids,
    stream_for_site,
    wait_decoding,
    wait_for,
    wait_presence,
)
from proto_util import SITE_CODES, OwnServer

PASSWORD = "Hnth-E2E-sim-2024!"
FREE = "hong-dan"  # left for a browser by `all`
DIALED = ["tinh-uy", "dong-hai"]
CLIP_SIZE = (640, 360)  # crates/hnth-server/assets/sim/make.sh
TITLE = "Giao ban với các điểm cầu mô phỏng"


@pytest.fixture(scope="module")
def srv(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-sim-data-")
    logs = tempfile.mkdtemp(prefix="hnth-sim-log-")
    s = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log",
                  extra_args=["--simulated-sites", "all"]).start()
    try:
        yield s
    finally:
        s.stop()
        print(f"\nsimulated-sites server log kept at {s.log_path}")


@pytest.fixture(scope="module")
def console(srv):
    f = BrowserFactory(base=srv.base, password=srv.password)
    try:
        yield f.console()
    finally:
        for p in f.pages:
            print(f"--- browser console: {p.name} ---\n" + "\n".join(p.console_log(30)))
        f.quit_all()


def test_start_banner_names_the_simulated_sites(srv):
    def banner():
        log = srv.log_tail(200)
        return "Simulated sites" in log and "Văn phòng Tỉnh ủy" in log and "Huyện Đông Hải" in log
    wait_for(banner, T_SIGNAL, "the start-up banner to list the simulated sites", detail=lambda: srv.log_tail(40))
    line = next(line for line in srv.log_tail(200).splitlines() if line.startswith("Simulated sites"))
    assert "Huyện Hồng Dân" not in line, f"`all` must leave {FREE} free: {line}"


def test_simulated_sites_are_online_and_the_free_one_is_not(srv, console):
    ids = site_ids(console, SITE_CODES)
    for code in SITE_CODES:
        want = "offline" if code == FREE else "idle"
        wait_presence(console, ids[code], want, code)


def test_console_decodes_the_simulated_sites(srv, console):
    ids = site_ids(console, DIALED)
    open_emergency(console, TITLE, sites=[ids[c] for c in DIALED])
    for code in DIALED:
        wait_presence(console, ids[code], "in_meeting", code)
    # Their sound is heard only with the floor (C4): both at once, a debate.
    set_switch(console, "#debate", True, "debate")
    for code in DIALED:
        wait_for(lambda c=code: any(s["id"] == ids[c] and s["connected"] for s in console.hnth("meetingState")["sites"]),
                 T_MEDIA, f"simulated site {code} connected", detail=lambda: console.hnth("meetingState"))
        set_floor(console, ids[code], True)

    for code in DIALED:
        sid = ids[code]
        wait_decoding(console, lambda sid=sid: stream_for_site(console, sid), f"simulated site {code}",
                      min_frames=15, timeout=T_MEDIA)

    # The decoded picture is the clip's: real VP8 of its size, not a synthetic stand-in.
    last = {}

    def sizes_ok():
        st = console.stream_stats()
        last["st"] = st
        for code in DIALED:
            e = st["streams"].get(stream_for_site(console, ids[code]) or "")
            v = (e or {}).get("video") or {}
            if (v.get("frameWidth"), v.get("frameHeight")) != CLIP_SIZE or v.get("keyFramesDecoded", 0) < 1:
                return False
        return True

    wait_for(sizes_ok, T_SIGNAL, f"console: decoded frames of {CLIP_SIZE[0]}x{CLIP_SIZE[1]} from {DIALED}",
             detail=lambda: describe_stats(last.get("st") or {}))

    shots = os.environ.get("HNTH_E2E_SCREENSHOTS")
    if shots:
        console.driver.save_screenshot(os.path.join(shots, "console-simulated-sites.png"))

    # A simulated site hung up goes back to idle (its media stops), ready to be dialed again.
    console.click_and_confirm(f'#site-rows [data-site-id="{ids[DIALED[1]]}"] button.hangup')
    wait_presence(console, ids[DIALED[1]], "idle", DIALED[1])
    console.send({"type": "close_meeting", "meeting": console.hnth("meeting")["id"]})
    wait_presence(console, ids[DIALED[0]], "idle", DIALED[0])


def test_a_site_app_replaces_a_simulated_site(srv, console):
    """A real site app logging in as a simulated site takes its place; the simulated one steps
    aside for good (no fight over the site's connection)."""
    code = "vinh-loi"
    ids = site_ids(console, [code])
    f = BrowserFactory(base=srv.base, password=srv.password)
    try:
        page = f.site(code)
        page.wait_state("idle")
        def stopped():
            return any("the simulated site stops" in line and code in line
                       for line in srv.log_tail(400).splitlines())
        wait_for(stopped, T_SIGNAL, f"the server log to say simulated site {code} stopped",
                 detail=lambda: srv.log_tail(20))
        wait_presence(console, ids[code], "idle", code)
        # The site app keeps its connection: it is told nothing about being replaced.
        errors = [e for e in page.errors() if "replaced" in str(e)]
        assert not errors, f"the site app was replaced in turn: {errors}"
        assert page.hnth("ws.readyState") == 1, "the site app's WebSocket closed"
    finally:
        f.quit_all()
