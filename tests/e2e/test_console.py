"""The control center's console as an operator uses it (issue 13), on a server of this module's
own, in headless Chromium: today's meetings from the register (the demo's meeting of the day due
for preparation, a booking registered and approved through the API); opening that booking's
meeting connects exactly its sites, and the meeting shows on the booking's page; a speak request
sent by a site reaches the console's queue, is passed to the chair and granted, and the site's
sound is then heard at another site; a second console watches without camera or microphone and
can take the control center's seat; hanging a site up asks for confirmation; refusals are shown
in Vietnamese with their article.

The tests are consecutive steps of one meeting and run in file order; a failed step fails the
later ones at once.

Run: scripts/in-netns.sh python3 -m pytest -q -p no:cacheprovider tests/e2e/test_console.py
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.by import By

from e2e_util import (T_MEDIA, T_SIGNAL, Page, Steps, console_state, open_booking, set_switch, site_ids,
                      stream_for_site, wait_console_state, wait_decoding, wait_for, wait_heard, wait_presence,
                      wait_silent)
from proto_util import api_login, browser_session, own_server_fixtures, session

PASSWORD = "Console-matkhau-2026!"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
BOOKED = ["hong-dan", "phuoc-long"]
OUTSIDE = "tinh-uy"  # online, idle, not a site of the booking: it must not be called
TITLE = "Họp triển khai phòng chống hạn mặn (kiểm thử bàn điều khiển)"
DELEGATE = ("Nguyễn Văn An", "Phó Chủ tịch UBND huyện")

# C2: the province's own link thresholds, low enough that live figures cross them: the console
# colours at these, not at defaults of its own.
LINK = {"rtt_warn_ms": 1, "rtt_alarm_ms": 2, "loss_warn_percent": 0.5, "loss_alarm_percent": 3,
        "jitter_warn_ms": 0.5, "jitter_alarm_ms": 1000}
srv, browsers = own_server_fixtures(
    "console", PASSWORD, settings="[meeting]\n" + "".join(f"{k} = {float(v)}\n" for k, v in LINK.items()))


# Counts the page's requests for a camera or microphone, from before its first script runs.
COUNT_GET_USER_MEDIA = """
window.__getUserMedia = 0;
const md = navigator.mediaDevices;
if (md && md.getUserMedia) {
  const real = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => { window.__getUserMedia += 1; return real(c); };
}
"""
# What the page sends: the tracks of its peer connection's senders.
JS_SENDING = """
const pc = window.hnth && window.hnth.pc;
return pc ? pc.getSenders().filter(s => s.track).map(s => s.track.kind).sort() : null;
"""


class Scenario(Steps):
    def __init__(self, srv, browsers):
        super().__init__()
        self.srv = srv
        self.browsers = browsers
        self.console: Page | None = None
        self.second: Page | None = None
        self.sites: dict[str, Page] = {}
        self.ids: dict[str, int] = {}
        self.booking: int | None = None
        self.meeting: dict | None = None


@pytest.fixture(scope="module")
def sc(srv, browsers):
    s = Scenario(srv, browsers)
    yield s
    if s.console and s.meeting:
        with contextlib.suppress(Exception):
            s.console.send({"type": "close_meeting", "meeting": s.meeting["id"]})


def register_booking(srv, ids: dict[str, int]) -> int:
    """A booking of the control center with two sites, registered by the operator and approved by
    the administrator through the API (an emergency: no 5 days' lead), 8 hours from now: today's
    list offers it (its meeting opens from 12 hours before its preparation) but it is not due."""
    op = api_login(srv.base, "dieuhanh", PASSWORD)["token"]
    admin = api_login(srv.base, "quantri", PASSWORD)["token"]
    s = session()
    day = s.get(srv.base + "/api/v1/bookings", headers={"Authorization": f"Bearer {op}"}, timeout=30).json()
    cc = next(b for b in day if b["status"] == "approved")  # the demo's meeting of the day
    start = (datetime.now(VN) + timedelta(hours=8, minutes=30)).replace(second=0, microsecond=0)
    body = {
        "title": TITLE, "kind": "hop", "host_unit": cc["host_unit_id"], "host_site": cc["host_site_id"],
        "chair": "Phó Chủ tịch UBND tỉnh", "sites": [ids[c] for c in BOOKED], "emergency": True,
        "preparation_start": (start - timedelta(minutes=30)).isoformat(),
        "official_start": start.isoformat(), "official_end": (start + timedelta(hours=1)).isoformat(),
    }
    r = s.post(srv.base + "/api/v1/bookings", json=body, headers={"Authorization": f"Bearer {op}"}, timeout=30)
    assert r.status_code == 201, f"registering the booking: HTTP {r.status_code} {r.text[:500]}"
    bid = r.json()["id"]
    r = s.post(srv.base + f"/api/v1/bookings/{bid}/steps", json={"step": "approve"},
               headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "approved", f"approving: HTTP {r.status_code} {r.text[:500]}"
    return bid


def booking_item(console: Page, bid: int) -> dict | None:
    return console.js("""
        const li = document.querySelector(`#bookings li[data-booking="${arguments[0]}"]`);
        if (!li) return null;
        return {text: li.innerText, cls: li.className, open: !!li.querySelector('button.open-booking'),
                due: !!li.querySelector('.badge.due'), live: !!li.querySelector('.badge.live')};
    """, bid)


def test_todays_meetings_are_listed_with_their_times(sc):
    with sc.step("today's meetings"):
        sc.console = sc.browsers.console()
        for code in [*BOOKED, OUTSIDE]:
            sc.sites[code] = sc.browsers.site(code)
        sc.ids = site_ids(sc.console, [*BOOKED, OUTSIDE])
        for code in [*BOOKED, OUTSIDE]:
            wait_presence(sc.console, sc.ids[code], "idle", code)
        sc.booking = register_booking(sc.srv, sc.ids)
        # The list is refreshed every 20 s, and at once when a meeting opens or closes.
        item = wait_for(lambda: booking_item(sc.console, sc.booking), 45, f"booking {sc.booking} in today's list",
                        detail=lambda: sc.console.hnth("bookings"))
        b = next(x for x in sc.console.hnth("bookings") if x["id"] == sc.booking)
        fmt = lambda ts, f: datetime.fromtimestamp(ts, VN).strftime(f)  # noqa: E731
        for want in [TITLE, f"Chuẩn bị {fmt(b['preparation_start'], '%H:%M')}",
                     f"{fmt(b['official_start'], '%H:%M')}–{fmt(b['official_end'], '%H:%M')}",
                     fmt(b["official_start"], "%d/%m"), "Phó Chủ tịch UBND tỉnh", "Trung tâm điều khiển",
                     "Huyện Hồng Dân", "Huyện Phước Long", "Khẩn cấp"]:
            assert want in item["text"], f"booking {sc.booking}: {want!r} not in {item['text']!r}"
        assert item["open"] and not item["due"], f"8 hours ahead: openable, not due: {item}"
        # The demo's meeting of the day is due: highlighted, and said so.
        due = [x for x in sc.console.hnth("bookings") if x["due"]]
        assert due, f"the demo's meeting of the day is not due: {sc.console.hnth('bookings')}"
        shown = booking_item(sc.console, due[0]["id"])
        assert shown["due"] and "due" in shown["cls"].split() and "Đã đến giờ chuẩn bị" in shown["text"], shown
        # The old free-title box is gone; the emergency form registers a booking (B5).
        assert not sc.console.driver.find_elements(By.CSS_SELECTOR, "#meeting-title")
        sc.console.js("document.getElementById('today').open = true;")
        note = sc.console.driver.find_element(By.CSS_SELECTOR, "#emergency").text
        assert "Họp khẩn cấp" in note and "khoản 3 Điều 5" in note, note


def test_opening_a_booking_connects_exactly_its_sites(sc):
    with sc.step("open the booking's meeting"):
        c = sc.console
        sc.meeting = open_booking(c, sc.booking)
        assert sc.meeting.get("title") == TITLE, sc.meeting
        for code in BOOKED:
            sc.sites[code].wait_state("in_meeting")
            wait_presence(c, sc.ids[code], "in_meeting", code)
        st = wait_console_state(c, lambda st: all(s["connected"] for s in st["sites"]),
                                "every site of the booking (and the control center's seat) connected", T_MEDIA)
        assert {s["id"] for s in st["sites"] if not s["control_center"]} == {sc.ids[x] for x in BOOKED}, st["sites"]
        assert st["booking"] == sc.booking and st["seat"] == "dieuhanh", st
        assert c.hnth("mode") == "seat" and sorted(c.js(JS_SENDING)) == ["audio", "video"]
        # The site outside the booking was not called.
        assert sc.sites[OUTSIDE].state() == "idle" and sc.sites[OUTSIDE].hnth("meeting") is None
        wait_presence(c, sc.ids[OUTSIDE], "idle", OUTSIDE)
        # The console shows the booking live.
        wait_for(lambda: (booking_item(c, sc.booking) or {}).get("live"), T_SIGNAL, "the booking shown live")
        # The operator's own camera is a small self-view, not a tile of the wall.
        assert c.js("return !!document.querySelector('#self-view figure.self') "
                    "&& !document.querySelector('#grid figure.self')")
        # The booking's page has its meeting, live.
        page = browser_session(sc.srv.base, "dieuhanh", PASSWORD).get(sc.srv.base + f"/bookings/{sc.booking}", timeout=30).text
        assert 'id="meetings"' in page and f'data-meeting="{sc.meeting["id"]}"' in page, page[-3000:]
        assert "Cuộc họp" in page and "đang diễn ra" in page, page[-3000:]
        # The link figures, coloured at the province's thresholds, which the legend states.
        legend = c.driver.find_element(By.CSS_SELECTOR, "#link-legend").text
        assert "RTT 1 / 2 ms" in legend and "Mất gói 0,5 / 3 %" in legend and "Jitter 0,5 / 1.000 ms" in legend, legend
        wait_for(lambda: link_colours_follow_the_thresholds(c), T_MEDIA,
                 "amber and red figures, each at the thresholds", detail=lambda: link_cells(c))
        # "Kết nối tất cả" of an emergency booking would add every idle site online (the outside
        # one); once that one is gone, every site is connected and it has nothing to call.
        dial_all = "return document.getElementById('dial-all').disabled"
        assert not c.js(dial_all), "an idle site online: dial-all enabled for an emergency"
        sc.sites.pop(OUTSIDE).quit()  # fewer browsers for the media steps, too
        wait_presence(c, sc.ids[OUTSIDE], "offline", OUTSIDE)
        wait_for(lambda: c.js(dial_all), T_SIGNAL, "dial-all disabled once every site is connected")


def link_cells(console: Page) -> list[dict]:
    """Every figure of the sites table with its colour, read at one instant."""
    return console.js("""
        return [...document.querySelectorAll('#site-rows tr[data-site-id] td.num')]
          .filter(td => ['rtt', 'loss', 'jitter'].some(c => td.classList.contains(c)))
          .map(td => ({kind: ['rtt', 'loss', 'jitter'].find(c => td.classList.contains(c)), text: td.textContent,
                       warn: td.classList.contains('warn'), alarm: td.classList.contains('alarm')}));
    """)


def link_colours_follow_the_thresholds(console: Page) -> bool:
    limits = {"rtt": ("rtt_warn_ms", "rtt_alarm_ms"), "loss": ("loss_warn_percent", "loss_alarm_percent"),
              "jitter": ("jitter_warn_ms", "jitter_alarm_ms")}
    seen = set()
    for cell in link_cells(console):
        if cell["text"] == "–":
            assert not (cell["warn"] or cell["alarm"]), cell
            continue
        value = float(cell["text"].replace(".", "").replace(",", "."))  # Vietnamese: 1.234,5
        warn, alarm = (LINK[k] for k in limits[cell["kind"]])
        want = "alarm" if value >= alarm else "warn" if value >= warn else ""
        got = "alarm" if cell["alarm"] else "warn" if cell["warn"] else ""
        assert got == want, f"{cell}: {got or 'plain'}, not {want or 'plain'} at thresholds {warn} / {alarm}"
        seen.add(got)
    return {"warn", "alarm"} <= seen


def queue_items(console: Page) -> list[dict]:
    return console.js("""
        return [...document.querySelectorAll('#queue li[data-request]')].map(li => ({
          id: Number(li.dataset.request), text: li.innerText, passed: li.classList.contains('passed'),
          wait: (li.querySelector('.waited') || {}).textContent}));
    """)


def test_a_speak_request_is_passed_granted_and_heard(sc):
    with sc.step("speak request"):
        c, asker, listener = sc.console, sc.sites["hong-dan"], sc.sites["phuoc-long"]
        site = sc.ids["hong-dan"]
        asker.send({"type": "command", "meeting": sc.meeting["id"],
                    "command": {"type": "request_floor", "site": site, "delegate": DELEGATE[0], "position": DELEGATE[1]}})
        item = wait_for(lambda: (queue_items(c) or [None])[0], T_SIGNAL, "the request in the console's queue",
                        detail=lambda: console_state(c))
        for want in [DELEGATE[0], DELEGATE[1], "Huyện Hồng Dân"]:
            assert want in item["text"], f"{want!r} not in the queue's item {item['text']!r}"
        assert not item["passed"], item
        # The waiting time goes on, as mm:ss.
        first = item["wait"]
        assert re.fullmatch(r"\d\d:\d\d", first), first
        wait_for(lambda: queue_items(c)[0]["wait"] > first, T_SIGNAL, f"the waiting time to pass {first}")
        c.click(f'#queue li[data-request="{item["id"]}"] button.pass')
        wait_for(lambda: queue_items(c)[0]["passed"] and "Đã chuyển chủ trì" in queue_items(c)[0]["text"],
                 T_SIGNAL, "the request marked as passed to the chair", detail=lambda: queue_items(c))
        assert console_state(c)["queue"][0]["state"] == "passed"
        assert not c.driver.find_elements(By.CSS_SELECTOR, f'#queue li[data-request="{item["id"]}"] button.pass')
        # Granted on the chair's behalf: the queue empties and the site holds the floor.
        c.click(f'#queue li[data-request="{item["id"]}"] button.grant')
        wait_console_state(c, lambda st: not st["queue"] and st["floor"] == [site], "the request granted")
        wait_for(lambda: not queue_items(c), T_SIGNAL, "the queue empty on the page")
        mic = c.js(f'return document.querySelector(\'#site-rows tr[data-site-id="{site}"] .mic\').textContent')
        assert mic == "Micro mở", mic
        holders = c.driver.find_element(By.CSS_SELECTOR, "#floor-holders").text
        assert "Huyện Hồng Dân" in holders, holders
        sid = wait_for(lambda: stream_for_site(listener, site), T_SIGNAL, "hong-dan among phuoc-long's participants")
        wait_heard(listener, sid, "hong-dan (granted)")
        # The roll call a site reports shows with its counts, the names on demand.
        asker.send({"type": "command", "meeting": sc.meeting["id"], "command": {
            "type": "report_roll_call", "site": site,
            "present": [{"name": DELEGATE[0], "position": DELEGATE[1]}, {"name": "Lê Thị Bình", "position": ""}],
            "absent": [{"name": "Trần Văn Cường", "position": "Ủy viên", "reason": "Đi công tác"}]}})
        row = wait_for(lambda: c.js(f'const li = document.querySelector(\'#roll-call li[data-site="{site}"]\');'
                                    'return li && li.querySelector("details") ? li : null;'),
                       T_SIGNAL, "hong-dan's roll call on the console")
        assert "2 có mặt, 1 vắng" in row.text, row.text
        row.find_element(By.CSS_SELECTOR, "summary").click()
        wait_for(lambda: "Trần Văn Cường" in row.text and "Đi công tác" in row.text, T_SIGNAL,
                 "the roll call's names and the absence's reason", detail=lambda: row.text)


# A site page altered to speak without the floor: its microphone replaced by a steady tone.
JS_TONE = """
const done = arguments[arguments.length - 1];
(async () => {
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  const dst = ctx.createMediaStreamDestination();
  osc.frequency.value = 440;
  osc.connect(dst);
  osc.start();
  await ctx.resume();
  const s = window.hnth.pc.getSenders().find(x => x.track && x.track.kind === 'audio');
  await s.replaceTrack(dst.stream.getAudioTracks()[0]);
  window.__tone = {ctx, osc};
  return ctx.state;
})().then(done, e => done(String(e)));
"""


def test_speech_without_the_floor_is_flagged_and_not_heard(sc):
    with sc.step("speech without the floor"):
        c, speaker, listener = sc.console, sc.sites["phuoc-long"], sc.sites["hong-dan"]
        site = sc.ids["phuoc-long"]
        assert site not in console_state(c)["floor"]
        assert speaker.driver.execute_async_script(JS_TONE) == "running"
        row = f'#site-rows tr[data-site-id="{site}"]'
        tag = wait_for(lambda: c.js(f"const t = document.querySelector('{row}.unheard .unheard-tag');"
                                    "return t && t.offsetParent ? t.innerText : null;"), T_SIGNAL,
                       "phuoc-long flagged on the console as speaking without the floor")
        assert tag == "Đang nói", tag
        assert c.js(f"return document.querySelector('{row} .mic').textContent") != "Micro mở"
        # The server drops it: hong-dan gets none of that sound.
        sid = wait_for(lambda: stream_for_site(listener, site), T_SIGNAL, "phuoc-long among hong-dan's participants")
        wait_silent(listener, sid, "phuoc-long speaking without the floor", never=True)
        speaker.js("window.__tone.osc.stop();")


def test_a_second_console_watches_and_may_take_the_seat(sc):
    with sc.step("second console"):
        first = sc.console
        second = sc.second = sc.browsers.new("second console")
        second.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": COUNT_GET_USER_MEDIA})
        second.login("quantri", PASSWORD, "/console")
        wait_for(lambda: second.hnth("mode") == "watch" and second.hnth("pc"), T_MEDIA,
                 "the second console to watch", detail=second.summary)
        # It sees the sites, sends nothing and asked for no camera or microphone.
        wait_decoding(second, lambda: stream_for_site(second, sc.ids["phuoc-long"]), "phuoc-long at the watcher",
                      audio=False)
        assert second.js(JS_SENDING) == [] and second.js("return window.__getUserMedia") == 0
        assert console_state(second)["seat"] == "dieuhanh"
        assert "dieuhanh" in second.driver.find_element(By.CSS_SELECTOR, "#seat-status").text
        # Nobody else sees a second control center: the participants are the same.
        assert len([p for p in first.participants() if p["kind"] == "control"]) == 1
        # It takes the seat: its camera and microphone; the first console goes back to watching.
        second.click("#take-seat")
        wait_for(lambda: second.hnth("mode") == "seat" and sorted(second.js(JS_SENDING) or []) == ["audio", "video"],
                 T_MEDIA, "the second console in the seat, sending", detail=second.summary)
        assert second.js("return window.__getUserMedia") == 1
        wait_console_state(first, lambda st: st["seat"] == "quantri", "the seat is quantri's")
        wait_for(lambda: first.hnth("mode") == "watch" and first.js(JS_SENDING) == [], T_MEDIA,
                 "the first console watching after seat_lost", detail=first.summary)
        status = first.driver.find_element(By.CSS_SELECTOR, "#seat-status").text
        assert "quantri" in status and "theo dõi" in status, status
        assert first.js("return !!document.querySelector('#take-seat:not([hidden])')")
        # The sites see the control center from its new seat.
        listener = sc.sites["phuoc-long"]
        wait_decoding(listener, lambda: stream_for_site(listener, None), "the control center (second console)")
        # The operator takes it back.
        first.click("#take-seat")
        wait_for(lambda: first.hnth("mode") == "seat" and second.hnth("mode") == "watch", T_MEDIA,
                 "the seat back at the first console", detail=lambda: [first.summary(), second.summary()])
        second.quit()


def error_line(console: Page) -> str:
    return console.js("const e = document.getElementById('console-error'); return e.hidden ? '' : e.innerText;")


def test_refusals_are_shown_in_vietnamese_with_their_article(sc):
    with sc.step("refusals"):
        c = sc.console
        site = sc.ids["phuoc-long"]
        # In a lecture only the chair's site speaks: the floor to a site is refused (C4).
        set_switch(c, "#lecture", True, "lecture")
        c.click(f'#site-rows tr[data-site-id="{site}"] button.floor-button[data-command="give_floor"]')
        text = wait_for(lambda: "giảng bài" in error_line(c) and error_line(c), T_SIGNAL,
                        "the lecture refusal on the console", detail=lambda: error_line(c))
        assert "quy tắc C4" in text and "Điều 7" in text, text
        assert site not in console_state(c)["floor"]
        set_switch(c, "#lecture", False, "lecture")
        # P3: parameters out of range, forged past the form's limits.
        c.send({"type": "command", "meeting": sc.meeting["id"],
                "command": {"type": "set_params", "params": {"max_height": 720, "max_kbps": 99999, "rotate_secs": 20}}})
        text = wait_for(lambda: "8.000" in error_line(c) and error_line(c), T_SIGNAL,
                        "the parameters' refusal on the console", detail=lambda: error_line(c))
        assert "quy tắc P3" in text and "Điều 6" in text and "Tốc độ tối đa" in text, text
        assert console_state(c)["params"]["max_kbps"] != 99999
        # The operator dismisses it.
        c.click("#console-error-close")
        assert error_line(c) == ""


def test_hanging_up_asks_for_confirmation(sc):
    with sc.step("hang up"):
        c = sc.console
        site = sc.ids["phuoc-long"]
        row = f'#site-rows tr[data-site-id="{site}"]'
        # "Ngắt" is at the far end of the row, away from "Kết nối".
        cells = c.js(f"""const tds = [...document.querySelectorAll('{row} td')];
            return [tds.findIndex(td => td.querySelector('button.dial')), tds.findIndex(td => td.querySelector('button.hangup')), tds.length];""")
        assert cells[1] == cells[2] - 1 and cells[1] - cells[0] >= 5, f"dial cell, hangup cell, cells: {cells}"
        # Dismissed: nothing happens.
        c.click(f"{row} button.hangup")
        alert = wait_for(lambda: c.driver.switch_to.alert, T_SIGNAL, "the hang-up confirmation")
        assert "Huyện Phước Long" in alert.text, alert.text
        alert.dismiss()
        wait_console_state(c, lambda st: any(s["id"] == site and s["connected"] for s in st["sites"]),
                           "phuoc-long still connected after the dismissed confirmation")
        assert sc.sites["phuoc-long"].state() == "in_meeting"
        # Confirmed: the site leaves.
        c.click_and_confirm(f"{row} button.hangup")
        sc.sites["phuoc-long"].wait_state("idle")
        wait_presence(c, site, "idle", "phuoc-long")
        wait_console_state(c, lambda st: all(s["id"] != site for s in st["sites"]), "phuoc-long out of the meeting")


def test_closing_the_meeting_is_kept_on_its_booking(sc):
    with sc.step("close"):
        c = sc.console
        c.click_and_confirm("#close-meeting")
        wait_for(lambda: c.hnth("meeting") is None and c.state() == "idle", T_SIGNAL, "the console idle",
                 detail=c.summary)
        sc.sites["hong-dan"].wait_state("idle")
        page = browser_session(sc.srv.base, "dieuhanh", PASSWORD).get(sc.srv.base + f"/bookings/{sc.booking}", timeout=30).text
        assert f'data-meeting="{sc.meeting["id"]}"' in page and "kết thúc lúc" in page, page[-3000:]
        sc.meeting = None
