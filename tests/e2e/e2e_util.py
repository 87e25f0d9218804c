"""Shared helpers for the hnth end-to-end tests (imported by conftest.py and the tests).

Rules followed here (project non-negotiables):
  * no sleep is ever used as synchronisation: every wait polls a condition until a deadline
    (`wait_for`) and raises naming what did not happen;
  * assertions are made on what Chromium actually decoded (getStats of the receivers).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

NETNS_ADDR = "10.77.0.1"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Defensive: never route 127.0.0.1 through a proxy picked up from the environment.
    "--no-proxy-server",
]

# Deadlines (seconds). Generous: 2 cores, a debug server and 4-5 Chromiums encoding VP8.
T_PAGE = 30.0
T_MEDIA = 60.0
T_SIGNAL = 20.0


class WaitTimeout(AssertionError):
    pass


class Abort(AssertionError):
    """Raised by a wait_for condition to stop waiting at once (e.g. the server process died)."""


def wait_for(cond: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.25, detail: Callable[[], Any] | None = None) -> Any:
    """Poll `cond()` until it returns a truthy value (returned) or `timeout` expires.

    On timeout raises WaitTimeout("timed out after Ns waiting for: <what>"), including the last
    exception raised by cond (if any) and `detail()` (a description of the last observed state).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
            last_exc = None
        except (WaitTimeout, Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - reported below if the deadline expires
            last_exc = exc
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout:.0f}s waiting for: {what}"
            if last_exc is not None:
                msg += f"\n  last error: {type(last_exc).__name__}: {last_exc}"
            if detail is not None:
                try:
                    d = detail()
                    msg += "\n  last observed: " + (d if isinstance(d, str) else json.dumps(d, default=str, ensure_ascii=False))
                except Exception as exc:  # noqa: BLE001
                    msg += f"\n  (could not describe state: {exc})"
            raise WaitTimeout(msg)
        time.sleep(interval)  # poll interval, not synchronisation


# The suite logs in and opens signaling connections hundreds of times a minute from one address
# (127.0.0.1 and 10.77.0.2): every server it starts lifts the flood limits, except where a test
# sets its own `[security]` (test_limits.py tests the limits themselves).
HARNESS_SETTINGS = """[security]
login_per_minute_per_address = 0
login_per_minute_per_account = 0
ws_per_minute_per_address = 0
ws_per_minute_per_account = 0
"""


def harness_settings(settings: str | None = None) -> str:
    """The settings file's text of a test server: the harness's `[security]`, then `settings`."""
    settings = settings or ""
    return settings if "[security]" in settings else HARNESS_SETTINGS + settings


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def netns_addresses() -> list[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    addrs = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            addrs.append(parts[parts.index("inet") + 1].split("/")[0])
    return addrs


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --------------------------------------------------------------------------------------------
# JavaScript run in the pages (execute_async_script: the last argument is the callback).

JS_STREAM_STATS = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const h = window.hnth;
  if (!h) return {error: 'window.hnth is missing'};
  const out = {
    state: h.state === undefined ? null : h.state,
    meeting: h.meeting || null,
    pc: h.pc ? {connectionState: h.pc.connectionState, iceConnectionState: h.pc.iceConnectionState,
                signalingState: h.pc.signalingState} : null,
    ws: h.ws ? h.ws.readyState : null,
    streams: {},
    errors: (h.errors || []).length,
  };
  if (h.pc) {  // what this page itself sends (diagnostics: "not sending" vs "not forwarded")
    const rep = await h.pc.getStats();
    out.outbound = [];
    rep.forEach(s => { if (s.type === 'outbound-rtp') out.outbound.push({kind: s.kind, rid: s.rid || null,
      packetsSent: s.packetsSent || 0, framesEncoded: s.framesEncoded, frameWidth: s.frameWidth,
      frameHeight: s.frameHeight,
      qualityLimitationReason: s.qualityLimitationReason, pliCount: s.pliCount, nackCount: s.nackCount}); });
  }
  if (!h.streams) return out;
  const receivers = h.pc ? h.pc.getReceivers() : [];
  const media = Array.from(document.querySelectorAll('audio, video'));
  for (const [sid, ms] of h.streams) {
    const entry = {video: null, audio: null, tracks: [], playing_audio: false};
    const tracks = (ms && ms.getTracks) ? ms.getTracks() : [];
    const ids = new Set(tracks.map(t => t.id));
    for (const t of tracks) entry.tracks.push({kind: t.kind, readyState: t.readyState, muted: t.muted});
    // Is this stream's audio rendered by an unmuted, playing element? (Chromium only decodes
    // remote audio that is played out; a muted element yields totalAudioEnergy == 0.)
    for (const el of media) {
      if (el.srcObject === ms && !el.muted && !el.paused && tracks.some(t => t.kind === 'audio'))
        entry.playing_audio = true;
    }
    for (const r of receivers) {
      if (!r.track || !ids.has(r.track.id)) continue;
      const live = r.track.readyState === 'live';
      const rep = await r.getStats();
      rep.forEach(s => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') {
          const v = {framesDecoded: s.framesDecoded || 0, framesReceived: s.framesReceived || 0,
                     packetsReceived: s.packetsReceived || 0, keyFramesDecoded: s.keyFramesDecoded || 0,
                     frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
                     pliCount: s.pliCount || 0, ssrc: s.ssrc, live};
          // Prefer the live receiver, then the one that decoded most.
          if (!entry.video || (live && !entry.video.live) ||
              (live === entry.video.live && v.framesDecoded > entry.video.framesDecoded)) entry.video = v;
        } else if (s.kind === 'audio') {
          const a = {totalAudioEnergy: s.totalAudioEnergy || 0, audioLevel: s.audioLevel || 0,
                     packetsReceived: s.packetsReceived || 0,
                     totalSamplesReceived: s.totalSamplesReceived || 0, ssrc: s.ssrc, live};
          if (!entry.audio || (live && !entry.audio.live) ||
              (live === entry.audio.live && a.packetsReceived > entry.audio.packetsReceived)) entry.audio = a;
        }
      });
    }
    out.streams[String(sid)] = entry;
  }
  return out;
})().then(done, e => done({error: String((e && e.stack) || e)}));
"""

JS_HNTH_SUMMARY = r"""
const h = window.hnth;
if (!h) return null;
return {
  state: h.state === undefined ? null : h.state,
  meeting: h.meeting || null,
  participants: h.participants || null,
  errors: h.errors || [],
  ws: h.ws ? h.ws.readyState : null,
  pc: h.pc ? h.pc.connectionState : null,
  streams: h.streams ? Array.from(h.streams.keys()).map(String) : null,
  sites: h.sites ? Object.fromEntries(h.sites.map(s => [s.code + '#' + s.id, s.presence])) : undefined,
  path: location.pathname,
};
"""


# --------------------------------------------------------------------------------------------
# Scenarios


class Steps:
    """The consecutive steps of one scenario (the tests of a module, in file order): once a step
    fails, each later one fails at once, naming it."""

    def __init__(self) -> None:
        self.failed: str | None = None

    @contextlib.contextmanager
    def step(self, name: str):
        import pytest
        if self.failed:
            pytest.fail(f"not run: earlier step {self.failed!r} failed", pytrace=False)
        try:
            yield
        except BaseException:
            self.failed = name
            raise


# --------------------------------------------------------------------------------------------
# Browsers


@dataclass
class Page:
    """One headless Chromium logged in as one hnth user."""

    name: str  # label for messages, e.g. "console" or "site tinh-uy"
    driver: webdriver.Chrome
    base: str
    user: str | None = None
    profile: str | None = None

    # ---- raw access
    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def summary(self) -> dict | None:
        return self.js(JS_HNTH_SUMMARY)

    def hnth(self, expr: str) -> Any:
        """Evaluate `window.hnth.<expr>` (JSON-able result)."""
        return self.js(f"return window.hnth ? window.hnth.{expr} : undefined;")

    def send(self, obj: dict) -> None:
        self.js("window.hnth.send(arguments[0]);", obj)

    def stream_stats(self) -> dict:
        res = self.driver.execute_async_script(JS_STREAM_STATS)
        if not isinstance(res, dict):
            raise AssertionError(f"{self.name}: stats script returned {res!r}")
        if res.get("error"):
            raise AssertionError(f"{self.name}: stats script failed: {res['error']}")
        return res

    def state(self) -> str | None:
        return self.hnth("state")

    def errors(self) -> list[dict]:
        return self.hnth("errors") or []

    def participants(self) -> list[dict]:
        return self.hnth("participants") or []

    def console_log(self, last: int = 40) -> list[str]:
        try:
            entries = self.driver.get_log("browser")
        except WebDriverException as exc:
            return [f"(no browser log: {exc})"]
        return [f"{e.get('level')} {e.get('message')}" for e in entries[-last:]]

    # ---- navigation
    def path(self) -> str:
        return urllib.parse.urlparse(self.driver.current_url).path

    def text(self) -> str:
        """What the page shows (document.body.innerText)."""
        return self.js("return document.body ? document.body.innerText : ''") or ""

    def sign_in(self, username: str, password: str, expect_path: str | None = None) -> None:
        """Log in through the login form; wait to land on `expect_path` (or anywhere but /login)."""
        self.user = username
        self.driver.get(self.base + "/login")
        wait_for(lambda: self.driver.find_elements(By.CSS_SELECTOR, "input[name=username]"),
                 T_PAGE, f"{self.name}: login form (input[name=username]) at {self.base}/login")
        u = self.driver.find_element(By.CSS_SELECTOR, "input[name=username]")
        p = self.driver.find_element(By.CSS_SELECTOR, "input[name=password]")
        u.clear()
        u.send_keys(username)
        p.clear()
        p.send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        landed = (lambda: self.path().rstrip("/") == expect_path) if expect_path else \
            (lambda: self.path() not in ("/login", ""))
        wait_for(landed, T_PAGE, f"{self.name}: login as {username} to land on {expect_path or 'a page'}",
                 detail=lambda: {"url": self.driver.current_url, "body": self.text()[:400]})

    def login(self, username: str, password: str, expect_path: str) -> None:
        """Log in and wait for the live page (console, site app) to open its WebSocket."""
        self.sign_in(username, password, expect_path)
        self.wait_live_page()

    def open(self, path: str, ready_css: str) -> None:
        """Load `path` and wait until an element `ready_css` is there."""
        self.driver.get(self.base + path)
        wait_for(lambda: self.driver.find_elements(By.CSS_SELECTOR, ready_css), T_PAGE,
                 f"{self.name}: {ready_css} on {path}", detail=lambda: {"url": self.driver.current_url,
                                                                      "body": self.text()[:400]})

    def wait_live_page(self) -> None:
        wait_for(lambda: self.js("return !!(window.hnth && window.hnth.ws && window.hnth.ws.readyState === 1 "
                                 "&& typeof window.hnth.send === 'function' && window.hnth.streams)"),
                 T_PAGE, f"{self.name}: window.hnth with an open WebSocket (readyState 1) and a streams Map",
                 detail=self.summary)

    def wait_state(self, state: str, timeout: float = T_SIGNAL) -> None:
        wait_for(lambda: self.state() == state, timeout, f"{self.name}: window.hnth.state == {state!r}",
                 detail=self.summary)

    def click(self, css: str) -> None:
        el = wait_for(lambda: self._enabled(css), T_SIGNAL, f"{self.name}: enabled element {css}")
        el.click()

    def click_and_confirm(self, css: str) -> None:
        """Click a button that asks for confirmation (window.confirm) and accept it."""
        self.click(css)
        alert = wait_for(lambda: _alert(self.driver), T_SIGNAL, f"{self.name}: confirmation dialog after {css}")
        alert.accept()

    def _enabled(self, css: str):
        els = self.driver.find_elements(By.CSS_SELECTOR, css)
        for el in els:
            if el.is_displayed() and el.is_enabled():
                return el
        return None

    def quit(self) -> None:
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class BrowserFactory:
    base: str
    password: str
    pages: list[Page] = field(default_factory=list)

    def new(self, name: str) -> Page:
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        profile = tempfile.mkdtemp(prefix="hnth-e2e-chromium-")
        for f in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", "--window-size=1280,900"]:
            opts.add_argument(f)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        if not os.path.exists(CHROMIUM) or not os.path.exists(CHROMEDRIVER):
            raise AssertionError(f"{CHROMIUM} and {CHROMEDRIVER} are required (apt-get install chromium chromium-driver)")
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
        driver.set_script_timeout(30)
        driver.set_page_load_timeout(T_PAGE)
        page = Page(name=name, driver=driver, base=self.base, profile=profile)
        self.pages.append(page)
        return page

    def console(self, user: str = "dieuhanh") -> Page:
        page = self.new("console")
        page.login(user, self.password, "/console")
        return page

    def site(self, code: str) -> Page:
        page = self.new(f"site {code}")
        page.login(f"dc-{code}", self.password, "/site")
        return page

    def __enter__(self) -> "BrowserFactory":
        return self

    def __exit__(self, *exc) -> None:
        self.quit_all()

    def quit_all(self) -> None:
        import shutil

        for p in self.pages:
            p.quit()
            if p.profile:
                shutil.rmtree(p.profile, ignore_errors=True)
        self.pages.clear()


# --------------------------------------------------------------------------------------------
# Console helpers


def site_ids(console: Page, codes: list[str]) -> dict[str, int]:
    """code -> id from the console's `sites` list (waits for it)."""

    def lookup():
        sites = console.hnth("sites") or []
        by_code = {s.get("code"): s.get("id") for s in sites}
        if all(c in by_code for c in codes):
            return {c: by_code[c] for c in codes}
        return None

    return wait_for(lookup, T_SIGNAL, f"console: window.hnth.sites to list {codes}",
                    detail=lambda: console.hnth("sites"))


def presence(console: Page, site_id: int) -> dict:
    return console.js(
        """
        const row = document.querySelector('[data-site-id="' + arguments[0] + '"]');
        const badge = row ? row.querySelector('.presence') : null;
        const s = ((window.hnth && window.hnth.sites) || []).find(x => String(x.id) === String(arguments[0]));
        return {row: !!row, dom: badge ? badge.getAttribute('data-presence') : null,
                sites: s ? s.presence : null};
        """,
        site_id,
    )


def wait_presence(console: Page, site_id: int, want: str, label: str, timeout: float = T_SIGNAL) -> None:
    wait_for(lambda: (lambda p: p["dom"] == want and p["sites"] == want)(presence(console, site_id)), timeout,
             f"console: site {label} (id {site_id}) presence == {want!r} in both the .presence badge "
             f"(data-presence) and window.hnth.sites",
             detail=lambda: presence(console, site_id))


def new_errors(page: Page, since: int) -> list[dict]:
    return page.errors()[since:]


def console_state(console: Page) -> dict | None:
    """The `meeting_state` of the meeting the console follows (window.hnth.meetingState)."""
    return console.hnth("meetingState")


def wait_console_state(console: Page, cond: Callable[[dict], Any], what: str, timeout: float = T_SIGNAL) -> dict:
    """Waits until the console's meeting_state satisfies `cond`; returns that state."""
    def ok():
        st = console_state(console)
        return st if st and cond(st) else None
    return wait_for(ok, timeout, f"console: meeting_state where {what}", detail=lambda: console_state(console))


def wait_console_meeting(console: Page) -> dict:
    """The console's media in the meeting it just entered: window.hnth.meeting and its state."""
    m = wait_for(lambda: console.hnth("meeting"), T_SIGNAL, "console: window.hnth.meeting", detail=console.summary)
    console.wait_state("in_meeting")
    wait_console_state(console, lambda st: st["meeting"] == m["id"], f"the state of meeting {m['id']}")
    return m


def open_booking(console: Page, booking: int) -> dict:
    """The operator opens a booking's meeting from today's list ("Mở cuộc họp")."""
    console.js("document.getElementById('today').open = true;")
    console.click(f'#bookings li[data-booking="{booking}"] button.open-booking')
    return wait_console_meeting(console)


def open_emergency(console: Page, title: str, sites: list[int] | None = None) -> dict:
    """The operator opens an emergency from its form: `sites` ticked (None: as the form ticks
    them, every online site), confirmed."""
    from selenium.webdriver.common.by import By
    console.js("document.getElementById('today').open = true;")
    field = console.driver.find_element(By.CSS_SELECTOR, "#em-title")
    field.clear()
    field.send_keys(title)
    if sites is not None:
        for box in console.driver.find_elements(By.CSS_SELECTOR, '#em-sites input[name="em-site"]'):
            if box.is_selected() != (int(box.get_attribute("value")) in sites):
                box.click()
    console.click_and_confirm("#em-open")
    return wait_console_meeting(console)


def floor_button(site: int) -> str:
    return f'#site-rows tr[data-site-id="{site}"] button.floor-button'


def set_floor(console: Page, site: int, give: bool) -> dict:
    """The operator gives ("Mời phát biểu") or takes back ("Thu hồi") a site's floor (C4)."""
    want = "give_floor" if give else "take_floor"
    console.click(f'{floor_button(site)}[data-command="{want}"]')
    return wait_console_state(console, lambda st: (site in st["floor"]) == give,
                              f"site {site} {'holds' if give else 'no longer holds'} the floor")


def set_switch(console: Page, css: str, on: bool, field: str) -> dict:
    """Ticks or unticks one of the console's switches (#debate, #lecture) and waits for the state."""
    from selenium.webdriver.common.by import By
    box = wait_for(lambda: console._enabled(css), T_SIGNAL, f"console: enabled {css}")
    if box.is_selected() != on:
        box.click()
    return wait_console_state(console, lambda st: st[field] == on, f"{field} == {on}")


# A drag and drop as a person's mouse makes it (WebDriver cannot drive HTML5 drag and drop):
# dragstart on the source, dragover and drop on the target, one DataTransfer between them.
JS_DRAG = """
const [from, to] = arguments;
const dt = new DataTransfer();
const fire = (el, type) => el.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
fire(from, 'dragstart');
fire(to, 'dragenter');
fire(to, 'dragover');
fire(to, 'drop');
fire(from, 'dragend');
return dt.getData('text/plain');
"""


def drag_site_to_cell(console: Page, site: int, cell: int) -> None:
    """Drags a site's chip from the console's list onto cell `cell` of the frame's preview."""
    from selenium.webdriver.common.by import By
    chip = wait_for(lambda: console._enabled(f'#palette .chip[data-site="{site}"][draggable="true"]'), T_SIGNAL,
                    f"console: a draggable chip of site {site}")
    target = console.driver.find_element(By.CSS_SELECTOR, f'#preview .cell[data-index="{cell}"]')
    dragged = console.js(JS_DRAG, chip, target)
    assert dragged == str(site), f"the chip carried {dragged!r}, not site {site}"


# --------------------------------------------------------------------------------------------
# Media assertions


def expected_remote_streams(page: Page, self_site_id: int | None) -> dict[str, str]:
    """stream id -> label, for every participant except `page` itself (console: kind 'control')."""
    out = {}
    for p in page.participants():
        is_self = (p.get("kind") == "control") if self_site_id is None else (p.get("site_id") == self_site_id)
        if not is_self:
            out[str(p.get("stream"))] = f"{p.get('kind')} {p.get('name')} (site_id {p.get('site_id')})"
    return out


def describe_stats(stats: dict) -> str:
    """Compact, one line per remote stream, for failure messages."""
    pc = stats.get("pc") or {}
    lines = [f"state={stats.get('state')} pc={pc.get('connectionState')}/ice={pc.get('iceConnectionState')}"
             f"/sig={pc.get('signalingState')} ws={stats.get('ws')}"]
    outs = []
    for o in stats.get("outbound") or []:
        extra = f" frames={o.get('framesEncoded')} w={o.get('frameWidth')} limit={o.get('qualityLimitationReason')} pli={o.get('pliCount')}" \
            if o.get("kind") == "video" else ""
        outs.append(f"{o.get('kind')}{'/' + o['rid'] if o.get('rid') else ''} pkts={o.get('packetsSent')}{extra}")
    lines.append("  sending: " + ("; ".join(outs) if outs else "no outbound-rtp"))
    for sid, e in (stats.get("streams") or {}).items():
        v, a = e.get("video"), e.get("audio")
        vs = (f"video framesDecoded={v['framesDecoded']} received={v['framesReceived']} pkts={v['packetsReceived']} "
              f"{v['frameWidth']}x{v['frameHeight']} key={v['keyFramesDecoded']} pli={v['pliCount']}"
              f"{'' if v['live'] else ' (ended)'}") if v else "video: no inbound-rtp"
        as_ = (f"audio energy={a['totalAudioEnergy']:.4g} level={a['audioLevel']:.3g} pkts={a['packetsReceived']} "
               f"samples={a['totalSamplesReceived']}") if a else "audio: no inbound-rtp"
        tr = ",".join(f"{t['kind']}:{t['readyState']}{'/muted' if t['muted'] else ''}" for t in e.get("tracks", []))
        lines.append(f"  {sid}: {vs}; {as_}; tracks[{tr}] playing_audio={e.get('playing_audio')}")
    return "\n".join(lines)


def describe_all(last: dict[str, dict], missing: list[str]) -> str:
    out = ["missing:"] + [f"  - {m}" for m in missing] + ["stats:"]
    for name, st in last.items():
        out.append(f" [{name}] " + describe_stats(st).replace("\n", "\n   "))
    return "\n".join(out)


def audio_hint(entry: dict | None) -> str:
    if not entry:
        return "stream not present in window.hnth.streams"
    a = entry.get("audio")
    if not a:
        return "no audio receiver/inbound-rtp found for this stream"
    if a["packetsReceived"] == 0:
        return "no audio RTP packets received"
    if a["totalSamplesReceived"] == 0 or not entry.get("playing_audio"):
        return ("audio packets arrive but nothing is played out: Chromium only decodes remote audio that "
                "is attached to a playing, UNMUTED <audio>/<video> element (playing_audio=%s)"
                % entry.get("playing_audio"))
    return "audio decoded but energy is still 0 (silence?)"


def assert_mutual_media(viewers: list[tuple[Page, int | None]], min_frames: int = 10,
                        timeout: float = T_MEDIA, expect_count: int | None = None) -> dict:
    """For every viewer page and every other participant (from its `participants` list):
    video framesDecoded rises by >= min_frames over a first sample, and totalAudioEnergy > 0.

    viewers: (page, own site_id or None for the console).  Returns the last stats per viewer.
    """
    # 1. every viewer knows the expected participants and has a stream for each of them
    expected: dict[str, dict[str, str]] = {}

    def all_streams_present():
        for page, sid in viewers:
            exp = expected_remote_streams(page, sid)
            if expect_count is not None and len(exp) != expect_count:
                return False
            have = set(page.hnth("streams ? Array.from(window.hnth.streams.keys()).map(String) : []") or [])
            if not exp or not set(exp) <= have:
                return False
            expected[page.name] = exp
        return True

    wait_for(all_streams_present, timeout,
             "every participant to list the others in `participants`"
             + (f" ({expect_count} remote each)" if expect_count is not None else "")
             + " and to have a MediaStream for each in window.hnth.streams",
             detail=lambda: {p.name: p.summary() for p, _ in viewers})

    # 2. first sample: something decoded for each pair
    first: dict[tuple[str, str], int] = {}
    last: dict[str, dict] = {}

    def sample_missing(baseline: dict | None):
        missing = []
        for page, _ in viewers:
            st = page.stream_stats()
            last[page.name] = st
            for sid, label in expected[page.name].items():
                e = st["streams"].get(sid)
                v = (e or {}).get("video") or {}
                a = (e or {}).get("audio") or {}
                frames = v.get("framesDecoded", 0)
                key = (page.name, sid)
                if baseline is None:
                    if frames > 0:
                        first.setdefault(key, frames)
                    else:
                        missing.append(f"{page.name} <- {label}: video framesDecoded=0 {v or '(no inbound-rtp)'}")
                else:
                    if frames < baseline[key] + min_frames:
                        missing.append(f"{page.name} <- {label}: framesDecoded {frames} has not risen "
                                       f"by {min_frames} over {baseline[key]}")
                if a.get("totalAudioEnergy", 0) <= 0:
                    missing.append(f"{page.name} <- {label}: totalAudioEnergy=0 ({audio_hint(e)}) {a}")
        return missing

    state = {"missing": []}

    def ok(baseline):
        state["missing"] = sample_missing(baseline)
        return not state["missing"]

    wait_for(lambda: ok(None), timeout, "first decoded video frame and audio energy > 0 for every pair",
             detail=lambda: describe_all(last, state["missing"]))
    baseline = dict(first)
    wait_for(lambda: ok(baseline), timeout,
             f"video framesDecoded to keep rising (+{min_frames}) for every pair, with audio energy > 0",
             detail=lambda: describe_all(last, state["missing"]))
    return last


def wait_decoding(page: Page, stream_of: Callable[[], str | None], label: str, min_frames: int = 10,
                  timeout: float = T_MEDIA, audio: bool = True) -> None:
    """At `page`, the stream currently returned by stream_of() decodes video (framesDecoded rises by
    min_frames after first being > 0) and, if audio, has totalAudioEnergy > 0."""
    st: dict[str, Any] = {"base": None, "sid": None, "last": None, "why": ""}

    def cond():
        sid = stream_of()
        if sid is None:
            st["why"] = "participant not (yet) in window.hnth.participants"
            return False
        stats = page.stream_stats()
        st["last"] = describe_stats(stats)
        e = stats["streams"].get(sid)
        if e is None:
            st["why"] = f"stream {sid} not in window.hnth.streams"
            return False
        frames = ((e.get("video") or {}).get("framesDecoded")) or 0
        if sid != st["sid"]:
            st["sid"], st["base"] = sid, None
        if frames <= 0:
            st["why"] = "framesDecoded == 0"
            return False
        if st["base"] is None or frames < st["base"]:
            st["base"] = frames
        if frames < st["base"] + min_frames:
            st["why"] = f"framesDecoded {frames} not yet {min_frames} above first sample {st['base']}"
            return False
        if audio and ((e.get("audio") or {}).get("totalAudioEnergy") or 0) <= 0:
            st["why"] = f"totalAudioEnergy == 0: {audio_hint(e)}"
            return False
        return True

    wait_for(cond, timeout, f"{page.name}: decoding {label} (framesDecoded rising"
             + (", audio energy > 0)" if audio else ")"), detail=lambda: f"{st['why']}\n{st['last']}")


def audio_from(page: Page, sid: str) -> dict:
    """What `page` decoded of stream `sid`'s sound: packetsReceived, totalAudioEnergy (0 if none)."""
    return ((page.stream_stats()["streams"].get(sid) or {}).get("audio")) or {}


def wait_heard(listener: Page, sid: str, label: str, timeout: float = T_MEDIA) -> None:
    """`listener` decodes `sid`'s sound: its packets and its energy rise."""
    before = audio_from(listener, sid)
    wait_for(lambda: (lambda a: a.get("packetsReceived", 0) > before.get("packetsReceived", 0) + 50
                      and a.get("totalAudioEnergy", 0) > before.get("totalAudioEnergy", 0))(audio_from(listener, sid)),
             timeout, f"{listener.name}: {label}'s sound decoded (packets and energy rising)",
             detail=lambda: f"before {before}, now {audio_from(listener, sid)}\n{describe_stats(listener.stream_stats())}")


def wait_silent(listener: Page, sid: str, label: str, never: bool = False, quiet_for: float = 3.0,
                min_frames: int = 10, timeout: float = T_MEDIA) -> None:
    """`listener` gets none of `sid`'s sound for `quiet_for` seconds (no audio packet arrives; with
    `never`, none ever arrived) while that site's video keeps decoding (`min_frames` more): the
    silence is the server's gate, not a dead connection."""
    st: dict[str, Any] = {"key": None, "since": None, "frames": 0, "last": None}

    def ok():
        stats = listener.stream_stats()
        e = stats["streams"].get(sid) or {}
        a = e.get("audio") or {}
        frames = (e.get("video") or {}).get("framesDecoded", 0)
        st["last"] = describe_stats(stats)
        if never and (a.get("packetsReceived", 0) or a.get("totalAudioEnergy", 0)):
            raise Abort(f"{listener.name} received sound of {label} before it was given the floor: {a}")
        key = (a.get("packetsReceived", 0), a.get("totalAudioEnergy", 0))
        now = time.monotonic()
        if key != st["key"]:
            st.update(key=key, since=now, frames=frames)
            return False
        return now - st["since"] >= quiet_for and frames >= st["frames"] + min_frames

    wait_for(ok, timeout, f"{listener.name}: no sound of {label} for {quiet_for:.0f} s while its video decodes",
             detail=lambda: st["last"])


def stream_for_site(page: Page, site_id: int | None) -> str | None:
    for p in page.participants():
        if (site_id is None and p.get("kind") == "control") or (site_id is not None and p.get("site_id") == site_id):
            return str(p.get("stream"))
    return None


def wait_stream_gone_or_frozen(page: Page, sid: str, label: str, timeout: float = T_SIGNAL,
                               frozen_for: float = 3.0) -> str:
    """Poll until `sid` is gone from window.hnth.streams, or its video framesDecoded has not
    changed for `frozen_for` seconds (measured across polls). Returns 'gone' or 'frozen'."""
    st: dict[str, Any] = {"frames": None, "since": None, "last": None}

    def cond():
        stats = page.stream_stats()
        st["last"] = describe_stats(stats)
        e = stats["streams"].get(sid)
        if e is None:
            return "gone"
        frames = ((e.get("video") or {}).get("framesDecoded")) or 0
        now = time.monotonic()
        if frames != st["frames"]:
            st["frames"], st["since"] = frames, now
            return False
        if now - st["since"] >= frozen_for:
            return "frozen"
        return False

    return wait_for(cond, timeout, f"{page.name}: stream {sid} of {label} to leave window.hnth.streams "
                    f"(or its framesDecoded to stop rising for {frozen_for:.0f}s)",
                    detail=lambda: st["last"])


def _alert(driver):
    from selenium.common.exceptions import NoAlertPresentException
    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None
