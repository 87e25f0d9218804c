"""Control center + three sites in one live meeting, driven through the real pages in headless
Chromium with fake camera/microphone. Assertions are on what each browser actually decoded.

The tests in this module are consecutive steps of one scenario and run in file order:
  log in -> open meeting + dial all -> everyone decodes everyone -> a site reloads and comes back
  -> one site is hung up -> sites may not join/dial by themselves (C6) -> close the meeting.
If a step fails, the later steps fail immediately naming the failed step.
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest
from selenium.webdriver.common.by import By

from e2e_util import (
    T_MEDIA,
    T_SIGNAL,
    Page,
    assert_mutual_media,
    site_ids,
    stream_for_site,
    wait_decoding,
    wait_for,
    wait_presence,
    wait_stream_gone_or_frozen,
)

SITES = ["tinh-uy", "hong-dan", "dong-hai"]
RELOADED = "hong-dan"
HUNG_UP = "dong-hai"
TITLE = "Giao ban trực tuyến (kiểm thử E2E)"


class Scenario:
    def __init__(self, browsers):
        self.browsers = browsers
        self.console: Page | None = None
        self.sites: dict[str, Page] = {}
        self.ids: dict[str, int] = {}
        self.meeting: dict | None = None
        self.in_meeting: list[str] = []
        self.failed: str | None = None

    @contextlib.contextmanager
    def step(self, name: str):
        if self.failed:
            pytest.fail(f"not run: earlier step {self.failed!r} failed", pytrace=False)
        try:
            yield
        except BaseException:
            self.failed = name
            raise

    def viewers(self, codes=None):
        codes = self.in_meeting if codes is None else codes
        return [(self.console, None)] + [(self.sites[c], self.ids[c]) for c in codes]

    def close_meeting_quietly(self):
        if self.console and self.meeting:
            with contextlib.suppress(Exception):
                self.console.send({"type": "close_meeting", "meeting": self.meeting["id"]})


@pytest.fixture(scope="module")
def sc(browsers):
    s = Scenario(browsers)
    yield s
    s.close_meeting_quietly()


def test_sites_log_in_and_show_idle(sc):
    with sc.step("log in"):
        sc.console = sc.browsers.console()
        for code in SITES:
            sc.sites[code] = sc.browsers.site(code)
        sc.ids = site_ids(sc.console, SITES)
        for code in SITES:
            sc.sites[code].wait_state("idle")
            assert sc.sites[code].hnth("meeting") is None, f"site {code} has a meeting before being dialed"
            wait_presence(sc.console, sc.ids[code], "idle", code)
        for code in SITES:
            row = sc.console.driver.find_elements(By.CSS_SELECTOR, f'[data-site-id="{sc.ids[code]}"]')
            assert row, f"console: no row [data-site-id=\"{sc.ids[code]}\"] for {code}"
            assert row[0].find_elements(By.CSS_SELECTOR, "button.dial"), f"console row {code}: no button.dial"
            assert row[0].find_elements(By.CSS_SELECTOR, "button.hangup"), f"console row {code}: no button.hangup"


def test_open_meeting_and_dial_all(sc):
    with sc.step("open meeting + dial all"):
        c = sc.console
        title = c.driver.find_element(By.CSS_SELECTOR, "#meeting-title")
        title.clear()
        title.send_keys(TITLE)
        c.click("#open-meeting")
        sc.meeting = wait_for(lambda: c.hnth("meeting"), T_SIGNAL,
                              "console: window.hnth.meeting after #open-meeting", detail=c.summary)
        assert sc.meeting.get("title") == TITLE, f"meeting title {sc.meeting!r} != {TITLE!r}"
        c.wait_state("in_meeting")  # the control center is itself a participant
        c.click("#dial-all")
        for code in SITES:
            page = sc.sites[code]
            page.wait_state("in_meeting")
            m = page.hnth("meeting") or {}
            assert m.get("id") == sc.meeting["id"], f"site {code} joined meeting {m!r}, expected {sc.meeting!r}"
            wait_presence(c, sc.ids[code], "in_meeting", code)
        sc.in_meeting = list(SITES)


def test_everyone_decodes_everyone(sc):
    with sc.step("everyone decodes everyone"):
        assert_mutual_media(sc.viewers(), expect_count=len(SITES))
        # For a person to look at: HNTH_E2E_SCREENSHOTS=/some/dir keeps what the pages showed.
        shots = os.environ.get("HNTH_E2E_SCREENSHOTS")
        if shots:
            for page in [sc.console, *sc.sites.values()]:
                page.driver.save_screenshot(os.path.join(shots, page.name.replace(" ", "-") + ".png"))


JS_TILE_HEIGHT = """
const fig = document.querySelector(`figure[data-stream="${CSS.escape(arguments[0])}"]`);
if (!fig) return false;
const v = fig.querySelector('video');
if (arguments[1] === null) { v.style.removeProperty('height'); v.style.removeProperty('width'); }
else { v.style.setProperty('height', arguments[1] + 'px', 'important');
       v.style.setProperty('width', Math.round(arguments[1] * 16 / 9) + 'px', 'important'); }
return true;
"""


def test_tile_size_chooses_the_layer(sc):
    """A thumbnail receives the low simulcast layer, a large tile a higher one: the page tells
    the server how tall it shows each video (`view`), the server forwards the layer that fits.
    The sender's encoder rescales its layers under this machine's CPU load, so the decoded
    height is compared with what the sender's low layer is at that moment."""
    with sc.step("tile size chooses the layer"):
        page, sender = sc.sites["tinh-uy"], sc.sites["hong-dan"]
        sid = stream_for_site(page, sc.ids["hong-dan"])
        assert sid, "no stream of hong-dan at tinh-uy"

        def shows(low: bool, what: str):
            st: dict = {"base": None, "last": None}

            def ok():
                v = (page.stream_stats()["streams"].get(sid) or {}).get("video") or {}
                h, frames = v.get("frameHeight", 0), v.get("framesDecoded", 0)
                layers = sorted(o.get("frameHeight") or 0 for o in sender.stream_stats().get("outbound") or []
                                if o["kind"] == "video" and o.get("frameHeight"))
                st["last"] = (h, frames, layers, page.hnth("view"))
                if not layers or (h == layers[0]) != low:
                    st["base"] = None
                    return False
                st["base"] = frames if st["base"] is None else st["base"]
                return frames >= st["base"] + 10  # and it keeps decoding at that size
            wait_for(ok, T_MEDIA, f"tinh-uy: hong-dan's video {what}",
                     detail=lambda: f"(frameHeight, framesDecoded, sender's layer heights, view) = {st['last']}")

        shows(False, "above the sender's low layer in a large tile")
        assert page.js(JS_TILE_HEIGHT, sid, 60)
        shows(True, "at the sender's low layer in a 60-pixel thumbnail")
        view = {t["stream"]: t["height"] for t in page.hnth("view")}
        assert 0 < view.get(sid, -1) <= 60 * 2, f"view sent: {view}"
        assert page.js(JS_TILE_HEIGHT, sid, None)
        shows(False, "back above the sender's low layer in a large tile")


JS_MIC = """
const s = window.hnth && window.hnth.pc && window.hnth.pc.getSenders().find(x => x.track && x.track.kind === 'audio');
if (!s) return false;
s.track.enabled = arguments[0];
return true;
"""


def test_a_muted_microphone_is_not_forwarded(sc):
    """A site that mutes its microphone sends digital silence, which the server does not pass
    on (the others receive no audio packets from it); unmuted, its sound decodes again."""
    with sc.step("muted microphone"):
        page, speaker = sc.sites["tinh-uy"], sc.sites["dong-hai"]
        sid = stream_for_site(page, sc.ids["dong-hai"])
        assert sid, "no stream of dong-hai at tinh-uy"

        def audio():
            return (page.stream_stats()["streams"].get(sid) or {}).get("audio") or {}

        assert speaker.js(JS_MIC, False)
        # Packets already on their way arrive; then the count stands still for 3 s.
        st: dict = {"count": None, "since": None}

        def still():
            n = audio().get("packetsReceived", 0)
            now = time.monotonic()
            if n != st["count"]:
                st["count"], st["since"] = n, now
                return False
            return now - st["since"] >= 3.0
        wait_for(still, T_MEDIA, "tinh-uy: no audio packets from muted dong-hai for 3 s",
                 detail=lambda: f"packetsReceived {st['count']}")
        # Video goes on meanwhile.
        wait_decoding(page, lambda: sid, "dong-hai's video while muted", audio=False)
        assert speaker.js(JS_MIC, True)
        before = audio()
        wait_for(lambda: audio().get("packetsReceived", 0) > before.get("packetsReceived", 0) + 50
                 and audio().get("totalAudioEnergy", 0) > before.get("totalAudioEnergy", 0),
                 T_MEDIA, "tinh-uy: dong-hai's sound back after unmuting",
                 detail=lambda: f"before {before}, now {audio()}")


def test_site_reload_rejoins_by_itself(sc):
    with sc.step("site reload"):
        page = sc.sites[RELOADED]
        sid = sc.ids[RELOADED]
        page.driver.refresh()
        page.wait_live_page()  # same session cookie: back on /site without logging in again
        page.wait_state("in_meeting")  # the server sends `join` again by itself
        m = page.hnth("meeting") or {}
        assert m.get("id") == sc.meeting["id"], f"reloaded site is in meeting {m!r}, expected {sc.meeting!r}"
        # its media decodes again at the console and at another site ...
        wait_decoding(sc.console, lambda: stream_for_site(sc.console, sid), f"reloaded site {RELOADED}")
        other = sc.sites["tinh-uy"]
        wait_decoding(other, lambda: stream_for_site(other, sid), f"reloaded site {RELOADED}")
        # ... and it decodes everyone again
        assert_mutual_media([(page, sid)], expect_count=len(SITES))


def test_hangup_one_site(sc):
    with sc.step("hang up one site"):
        c = sc.console
        gone_id = sc.ids[HUNG_UP]
        remaining = [code for code in SITES if code != HUNG_UP]
        streams_before = {p.name: stream_for_site(p, gone_id) for p, _ in sc.viewers(remaining)}
        for name, s in streams_before.items():
            assert s is not None, f"{name}: {HUNG_UP} is not in participants before hangup"
        c.click(f'[data-site-id="{gone_id}"] button.hangup')
        sc.in_meeting = remaining

        # the hung-up site got `leave` and is idle again
        sc.sites[HUNG_UP].wait_state("idle")
        wait_for(lambda: sc.sites[HUNG_UP].hnth("pc") is None
                 or sc.sites[HUNG_UP].js("return window.hnth.pc.connectionState") == "closed",
                 T_SIGNAL, f"site {HUNG_UP}: peer connection closed/null after leave",
                 detail=sc.sites[HUNG_UP].summary)
        wait_presence(c, gone_id, "idle", HUNG_UP)

        # at the remaining participants its stream disappears (or at least stops decoding)
        for page, _ in sc.viewers(remaining):
            wait_stream_gone_or_frozen(page, streams_before[page.name], HUNG_UP)
            wait_for(lambda: stream_for_site(page, gone_id) is None, T_SIGNAL,
                     f"{page.name}: {HUNG_UP} removed from window.hnth.participants",
                     detail=page.participants)

        # and the others still see and hear each other
        assert_mutual_media(sc.viewers(remaining), expect_count=len(remaining))


def _wait_error(page: Page, since: int, ref: str) -> dict:
    def find():
        for e in page.errors()[since:]:
            if e.get("ref") == ref:
                return e
        return None

    err = wait_for(find, T_SIGNAL, f"{page.name}: an error with ref {ref!r} in window.hnth.errors",
                   detail=lambda: page.errors()[since:])
    assert err.get("type") == "error", err
    assert err.get("code") == "forbidden", f"{page.name}: expected code 'forbidden' for {ref}, got {err}"
    assert err.get("article") == "C6", f"{page.name}: expected article 'C6' for {ref}, got {err}"
    return err


def test_site_cannot_join_or_dial_by_itself(sc):
    with sc.step("site self-join / dial refused"):
        mid = sc.meeting["id"]
        outsider = sc.sites[HUNG_UP]  # hung up in the previous step: idle, not in the meeting
        member = sc.sites["tinh-uy"]  # in the meeting

        n = len(outsider.errors())
        outsider.send({"type": "join_request", "meeting": mid})
        _wait_error(outsider, n, "join_request")
        n = len(outsider.errors())
        outsider.send({"type": "dial", "meeting": mid, "site": sc.ids["tinh-uy"]})
        _wait_error(outsider, n, "dial")

        n = len(member.errors())
        member.send({"type": "dial", "meeting": mid, "site": sc.ids[HUNG_UP]})
        _wait_error(member, n, "dial")
        n = len(member.errors())
        member.send({"type": "join_request", "meeting": mid})
        _wait_error(member, n, "join_request")

        # refusals changed nothing: the outsider stays idle, the member stays in, sockets stay open
        assert outsider.state() == "idle", f"site {HUNG_UP} state after refused requests: {outsider.summary()}"
        assert outsider.hnth("meeting") is None, f"site {HUNG_UP} got a meeting: {outsider.summary()}"
        wait_presence(sc.console, sc.ids[HUNG_UP], "idle", HUNG_UP)
        for p in (outsider, member):
            assert p.hnth("ws.readyState") == 1, f"{p.name}: WebSocket closed after an error"
        assert member.state() == "in_meeting", f"site tinh-uy left the meeting: {member.summary()}"
        assert_mutual_media(sc.viewers(), expect_count=len(sc.in_meeting))


def test_close_meeting(sc):
    with sc.step("close meeting"):
        c = sc.console
        c.click_and_confirm("#close-meeting")
        for code in sc.in_meeting:
            sc.sites[code].wait_state("idle")
            wait_presence(c, sc.ids[code], "idle", code)
        wait_for(lambda: c.hnth("meeting") is None and c.state() == "idle", T_SIGNAL,
                 "console: meeting null and state 'idle' after #close-meeting", detail=c.summary)
        sc.meeting = None
