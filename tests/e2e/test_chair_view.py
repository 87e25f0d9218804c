"""Speak requests (C8 → C3), the floor (C4) and the roll call as the people of a meeting use them,
in headless Chromium: a site's technician types a delegate's request on the site app; it reaches
the chair's view (`chutri`, the chair of the control center's meetings) with its waiting time,
the ones the control center passed on first; the chair's grant opens that site's floor and its
sound decodes at another site, where nothing of it decoded before; the site withdraws a request,
the chair declines and clears; bad input is refused in Vietnamese and changes nothing; the roll
call typed on the site shows on the chair's view, can be corrected, and is kept on the booking's
page after the meeting; a chair of another site may not run this meeting (C4); the calendar
marks the booking as held and links to its meetings.

The meeting is the demo's meeting of the day, opened from the console page (`open_meeting` with
its booking, as the operator would). The tests are consecutive steps and run in file order.
HNTH_E2E_SCREENSHOTS=/some/dir keeps what the chair's view and the site app showed.

Run: scripts/in-netns.sh python3 -m pytest -q tests/e2e/test_chair_view.py
"""

from __future__ import annotations

import contextlib
import re

import pytest
from selenium.webdriver.common.by import By

from e2e_util import T_MEDIA, T_PAGE, T_SIGNAL, BrowserFactory, Page, describe_stats, site_ids, wait_for
from proto_util import add_accounts, browser_session, own_server
from site_util import Steps, audio_energy, decoded, full_screen, meeting_state, screenshot, screenshots

PASSWORD = "Chu-tri-matkhau-2026!"
A, B = "hong-dan", "dong-hai"  # A asks for the floor, B listens
OTHER_CHAIR = "ct-hong-dan"  # the chair of Hồng Dân's own meetings
MIN_FRAMES = 30  # A's video frames B decodes while A's sound must not reach it

MSG_NO_MEETING = "Hiện không có cuộc họp nào do điểm cầu của bạn chủ trì."
MSG_MIC_CLOSED = "Micro đang tắt (chờ chủ trì mời)"
MSG_MIC_OPEN = "Micro đang mở — được mời phát biểu"


@pytest.fixture(scope="module")
def srv(inside_netns):
    with own_server("chair", PASSWORD) as s:
        add_accounts(s, [(OTHER_CHAIR, "chair", A, None)])
        yield s


class World(Steps):
    console: Page
    a: Page
    b: Page
    chair: Page
    other: Page
    ids: dict[str, int]
    meeting: int
    booking: int

    def state(self) -> dict:
        return meeting_state(self.console, self.meeting) or {}


@pytest.fixture(scope="module")
def w(srv):
    with BrowserFactory(base=srv.base, password=srv.password) as f:
        world = World()
        world.console = f.console()
        world.a = f.site(A)
        world.b = f.site(B)
        full_screen(world.a)
        world.chair = f.new("chair chutri")
        world.chair.login("chutri", srv.password, "/chair")
        full_screen(world.chair)
        world.other = f.new(f"chair {OTHER_CHAIR}")
        world.other.login(OTHER_CHAIR, srv.password, "/chair")
        world.ids = site_ids(world.console, [A, B])
        yield world
        with contextlib.suppress(Exception):
            world.console.send({"type": "close_meeting", "meeting": world.meeting})


# ---------------------------------------------------------------------------- page helpers


def text(page: Page, css: str) -> str:
    return page.js("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", css) or ""


def fill(page: Page, css: str, value: str) -> None:
    el = page.driver.find_element(By.CSS_SELECTOR, css)
    el.clear()
    if value:
        el.send_keys(value)


def queue_on_chair(w: World) -> list[dict]:
    """The speak requests as the chair's view lists them, top first."""
    return w.chair.js("""return [...document.querySelectorAll('#chair-queue > li')].map((li) => ({
        id: Number(li.dataset.request), passed: li.classList.contains('passed'),
        delegate: li.querySelector('.delegate').innerText, site: li.querySelector('.site').innerText,
        wait: li.querySelector('.wait').innerText}));""")


def requests_on_site(w: World) -> list[dict]:
    return w.a.js("""return [...document.querySelectorAll('#my-requests > li')].map((li) => ({
        id: Number(li.dataset.request), state: li.querySelector('.state').innerText,
        delegate: li.querySelector('strong').innerText}));""")


def a_stream_at_b(w: World) -> str:
    return f"site-{w.ids[A]}"


def audio_packets(page: Page, stream: str) -> int:
    e = page.stream_stats()["streams"].get(stream) or {}
    return (e.get("audio") or {}).get("packetsReceived") or 0


def request_on_site(w: World, delegate: str, position: str) -> None:
    """The technician of A types a request and sends it; it shows in A's list."""
    if w.a.js("return document.getElementById('requests-panel').hidden"):
        w.a.click("#open-requests")
    fill(w.a, "#request-form input[name=delegate]", delegate)
    fill(w.a, "#request-form input[name=position]", position)
    w.a.click("#request-form button[type=submit]")
    wait_for(lambda: any(r["delegate"] == delegate for r in requests_on_site(w)), T_SIGNAL,
             f"site A: the request of {delegate} in its list", detail=lambda: text(w.a, "#requests-panel"))


# ---------------------------------------------------------------------------- the steps


def test_the_chair_view_waits_for_a_meeting_of_its_site(w):
    with w.step("waiting"):
        for page in (w.chair, w.other):
            wait_for(lambda p=page: MSG_NO_MEETING in p.text(), T_PAGE, f"{page.name}: 'no meeting' in Vietnamese",
                     detail=lambda p=page: p.text()[:300])
        assert w.chair.driver.title.startswith("Điều hành cuộc họp")


def test_the_operator_opens_the_meeting_of_the_day_and_the_chair_follows_it(w):
    with w.step("open"):
        c = w.console
        booking = wait_for(lambda: next((b for b in c.hnth("last.bookings.list") or [] if not b["meeting"]), None),
                           T_SIGNAL, "console: the meeting of the day in `bookings`", detail=lambda: c.hnth("last.bookings"))
        w.booking = booking["id"]
        c.send({"type": "open_meeting", "booking": w.booking})
        w.meeting = wait_for(lambda: (c.hnth("last.meeting_opened") or {}).get("meeting", {}).get("id"), T_SIGNAL,
                             "console: meeting_opened", detail=lambda: c.errors())
        for page in (w.a, w.b):
            page.wait_state("in_meeting")
        wait_for(lambda: {w.ids[A], w.ids[B]} <= {s["id"] for s in w.state().get("sites", []) if s["connected"]},
                 T_MEDIA, "sites A and B connected", detail=w.state)
        wait_for(lambda: text(w.chair, "#chair-meeting-title") == booking["title"], T_SIGNAL,
                 "chair: the meeting's title", detail=lambda: w.chair.text()[:300])
        wait_for(lambda: "Huyện Hồng Dân" in text(w.chair, "#chair-site-list"), T_SIGNAL, "chair: the sites")
        # The chair of Hồng Dân does not follow a meeting chaired at the control center.
        assert MSG_NO_MEETING in w.other.text()
        assert w.other.hnth(f"states[{w.meeting}]") is None
        wait_for(lambda: text(w.a, "#floor-state") == MSG_MIC_CLOSED, T_SIGNAL, "site A: its microphone closed")


def test_a_request_typed_on_the_site_reaches_the_chair_and_nothing_of_A_is_heard(w):
    with w.step("requests"):
        request_on_site(w, "Nguyễn Văn An", "Phó Chủ tịch UBND huyện")
        request_on_site(w, "Trần Thị Bình", "Trưởng phòng Nội vụ")
        assert all(r["state"] == "Chờ Trung tâm điều khiển" for r in requests_on_site(w)), requests_on_site(w)
        wait_for(lambda: [q["delegate"] for q in queue_on_chair(w)] == ["Nguyễn Văn An", "Trần Thị Bình"], T_SIGNAL,
                 "chair: both requests, oldest first", detail=lambda: queue_on_chair(w))
        assert all(q["site"] == "Huyện Hồng Dân" and re.search(r"\d+:\d\d", q["wait"]) for q in queue_on_chair(w))
        # The control center passes Bình's on (C3): it goes first on the chair's view, marked.
        binh = next(q for q in w.state()["queue"] if q["delegate"] == "Trần Thị Bình")
        w.console.send({"type": "command", "meeting": w.meeting, "command": {"type": "pass", "request": binh["id"]}})
        wait_for(lambda: [(q["delegate"], q["passed"]) for q in queue_on_chair(w)]
                 == [("Trần Thị Bình", True), ("Nguyễn Văn An", False)], T_SIGNAL,
                 "chair: the passed request first and marked", detail=lambda: queue_on_chair(w))
        wait_for(lambda: {r["delegate"]: r["state"] for r in requests_on_site(w)}.get("Trần Thị Bình")
                 == "Đã chuyển tới chủ trì", T_SIGNAL, "site A: Bình's request shown as passed on",
                 detail=lambda: requests_on_site(w))
        screenshots(w.chair, "chair-queue")
        screenshot(w.a, "kiosk-request-panel")
        # B sees A (the frame fills itself from the floor order) but hears nothing of it (C4).
        sid = a_stream_at_b(w)
        wait_for(lambda: decoded(w.b).get(sid, 0) > 0, T_MEDIA, "site B: A's video decoding",
                 detail=lambda: describe_stats(w.b.stream_stats()))
        first = decoded(w.b)[sid]

        def seen_long_enough_or_heard():
            heard = audio_energy(w.b, sid) > 0 or audio_packets(w.b, sid) > 0
            return heard or decoded(w.b)[sid] >= first + MIN_FRAMES

        wait_for(seen_long_enough_or_heard, T_MEDIA, f"site B: {MIN_FRAMES} more frames of A's video",
                 detail=lambda: describe_stats(w.b.stream_stats()))
        assert audio_energy(w.b, sid) == 0 and audio_packets(w.b, sid) == 0, \
            f"B hears A before the chair gave A the floor:\n{describe_stats(w.b.stream_stats())}"


def test_the_chairs_grant_opens_As_floor_and_B_hears_A(w):
    with w.step("grant"):
        binh = next(q for q in queue_on_chair(w) if q["delegate"] == "Trần Thị Bình")
        w.chair.click(f'#chair-queue li[data-request="{binh["id"]}"] button.grant')
        wait_for(lambda: text(w.a, "#floor-state") == MSG_MIC_OPEN, T_SIGNAL, "site A: its microphone open",
                 detail=lambda: text(w.a, "#floor-state"))
        wait_for(lambda: "Huyện Hồng Dân" in text(w.chair, "#chair-floor-list"), T_SIGNAL, "chair: A holds the floor")
        assert [q["delegate"] for q in queue_on_chair(w)] == ["Nguyễn Văn An"], queue_on_chair(w)
        wait_for(lambda: [r["delegate"] for r in requests_on_site(w)] == ["Nguyễn Văn An"], T_SIGNAL,
                 "site A: Bình's request gone from its list", detail=lambda: requests_on_site(w))
        sid = a_stream_at_b(w)
        wait_for(lambda: audio_energy(w.b, sid) > 0, T_MEDIA, "site B: A's sound decoded (totalAudioEnergy > 0)",
                 detail=lambda: describe_stats(w.b.stream_stats()))
        e1 = audio_energy(w.b, sid)
        wait_for(lambda: audio_energy(w.b, sid) > e1, T_MEDIA, "site B: A's sound energy growing")
        screenshots(w.chair, "chair-floor")


def test_the_site_withdraws_and_the_chair_declines_and_clears(w):
    with w.step("withdraw, decline, clear"):
        an = next(r for r in requests_on_site(w) if r["delegate"] == "Nguyễn Văn An")
        w.a.click(f'#my-requests li[data-request="{an["id"]}"] button.withdraw')
        wait_for(lambda: not requests_on_site(w) and not queue_on_chair(w), T_SIGNAL,
                 "the withdrawn request gone from the site and the chair", detail=lambda: w.state().get("queue"))
        request_on_site(w, "Lê Văn Cường", "")
        cuong = wait_for(lambda: next((q for q in queue_on_chair(w) if q["delegate"] == "Lê Văn Cường"), None), T_SIGNAL,
                         "chair: Cường's request")
        w.chair.click(f'#chair-queue li[data-request="{cuong["id"]}"] button[data-action=decline]')
        wait_for(lambda: not queue_on_chair(w) and not requests_on_site(w), T_SIGNAL, "the declined request gone")
        request_on_site(w, "Phạm Thị Dung", "Chánh Văn phòng")
        request_on_site(w, "Võ Văn Em", "")
        wait_for(lambda: len(queue_on_chair(w)) == 2, T_SIGNAL, "chair: two requests")
        w.chair.click_and_confirm("#chair-clear")
        wait_for(lambda: not queue_on_chair(w) and not w.state()["queue"] and not requests_on_site(w), T_SIGNAL,
                 "every request cleared")


def test_bad_requests_are_refused_in_vietnamese_and_change_nothing(w):
    with w.step("bad input"):
        a = w.a
        before = w.state()["queue"]
        errors = len(a.errors())
        # On the form: an empty name, then one over 120 characters (typed past the field's limit).
        fill(a, "#request-form input[name=delegate]", "")
        a.click("#request-form button[type=submit]")
        wait_for(lambda: text(a, "#request-form .form-error") == "Họ tên đại biểu: bắt buộc nhập.", T_SIGNAL,
                 "site A: the empty name refused", detail=lambda: text(a, "#request-form .form-error"))
        a.js("document.querySelector('#request-form input[name=delegate]').value = arguments[0]", "Đ" * 121)
        a.click("#request-form button[type=submit]")
        wait_for(lambda: text(a, "#request-form .form-error") == "Họ tên đại biểu: tối đa 120 ký tự.", T_SIGNAL,
                 "site A: the long name refused", detail=lambda: text(a, "#request-form .form-error"))
        assert len(a.errors()) == errors, "the page sent what it refused"
        # Through the protocol, past the page: the server refuses with the reason in Vietnamese.
        for delegate, want in [("  ", "Họ tên đại biểu: bắt buộc nhập"), ("Đ" * 121, "Họ tên đại biểu: tối đa 120 ký tự")]:
            n = len(a.errors())
            a.send({"type": "command", "meeting": w.meeting,
                    "command": {"type": "request_floor", "site": w.ids[A], "delegate": delegate, "position": ""}})
            err = wait_for(lambda n=n: a.errors()[n:] and a.errors()[n], T_SIGNAL, "site A: the server's refusal")
            assert err["code"] == "refused" and want in err.get("message_vi", ""), err
            wait_for(lambda want=want: want in text(a, "#site-error"), T_SIGNAL, "site A: the refusal shown in Vietnamese",
                     detail=lambda: text(a, "#site-error"))
        assert w.state()["queue"] == before
        a.click("#requests-panel button.close")


def test_the_roll_call_typed_on_the_site_shows_on_the_chair_view_and_can_be_corrected(w):
    with w.step("roll call"):
        a, sid = w.a, w.ids[A]
        a.click("#open-roll-call")
        fill(a, "#present-rows li:nth-child(1) input[name=name]", "Nguyễn Văn An")
        fill(a, "#present-rows li:nth-child(1) input[name=position]", "Phó Chủ tịch UBND huyện")
        a.click("#add-present")
        fill(a, "#present-rows li:nth-child(2) input[name=name]", "Lê Văn Cường")
        a.click("#add-absent")
        fill(a, "#absent-rows li:nth-child(1) input[name=name]", "Phạm Thị Dung")
        fill(a, "#absent-rows li:nth-child(1) input[name=position]", "Chánh Văn phòng")
        a.click("#roll-call-form button[type=submit]")
        wait_for(lambda: "Lý do vắng: bắt buộc nhập." in text(a, "#roll-call-form .form-error"), T_SIGNAL,
                 "site A: an absence without a reason refused", detail=lambda: text(a, "#roll-call-form .form-error"))
        assert str(sid) not in (w.state().get("roll_call") or {})
        fill(a, "#absent-rows li:nth-child(1) input[name=reason]", "Đi công tác")
        a.click("#roll-call-form button[type=submit]")
        wait_for(lambda: text(a, "#roll-call-form .form-done").startswith("Đã gửi điểm danh lúc"), T_SIGNAL,
                 "site A: the roll call sent", detail=lambda: text(a, "#roll-call-panel"))
        report = w.state()["roll_call"][str(sid)]
        assert [(d["name"], d["position"]) for d in report["present"]] == \
            [("Nguyễn Văn An", "Phó Chủ tịch UBND huyện"), ("Lê Văn Cường", "")], report
        assert [(d["name"], d["reason"]) for d in report["absent"]] == [("Phạm Thị Dung", "Đi công tác")], report
        row = f'#chair-site-list li[data-site="{sid}"]'
        wait_for(lambda: "2 có mặt, 1 vắng mặt" in text(w.chair, row + " .roll summary"), T_SIGNAL,
                 "chair: A's roll call", detail=lambda: text(w.chair, row))
        w.chair.click(row + " .roll summary")
        assert "Phạm Thị Dung (Chánh Văn phòng): Đi công tác" in text(w.chair, row + " .roll")
        screenshots(w.chair, "chair-roll-call")
        screenshot(a, "kiosk-roll-call-panel")
        # Corrected after a reload of the site app: the last report comes back into the form.
        a.driver.refresh()
        a.wait_live_page()
        a.wait_state("in_meeting")
        wait_for(lambda: a.js("return !document.getElementById('roll-call-done').hidden"), T_SIGNAL,
                 "site A: its roll call marked as sent after the reload")
        a.click("#open-roll-call")
        names = lambda: a.js("return [...document.querySelectorAll('#roll-call-form input[name=name]')].map(i => i.value)")  # noqa: E731
        assert names() == ["Nguyễn Văn An", "Lê Văn Cường", "Phạm Thị Dung"], names()
        a.click("#present-rows li:nth-child(2) button.remove")
        a.click("#roll-call-form button[type=submit]")
        wait_for(lambda: "1 có mặt, 1 vắng mặt" in text(w.chair, row + " .roll summary"), T_SIGNAL,
                 "chair: the corrected roll call", detail=lambda: text(w.chair, row))


def test_a_chair_of_another_site_may_not_run_this_meeting(w):
    with w.step("scope"):
        o = w.other
        floor = w.state()["floor"]
        n = len(o.errors())
        o.send({"type": "command", "meeting": w.meeting, "command": {"type": "close_all"}})
        err = wait_for(lambda: o.errors()[n:] and o.errors()[n], T_SIGNAL, "the other chair: a refusal")
        assert (err["code"], err["article"]) == ("forbidden", "C4"), err
        wait_for(lambda: "điểm a khoản 2 Điều 7" in text(o, "#chair-error"), T_SIGNAL,
                 "the other chair: the refusal in Vietnamese with its article", detail=lambda: text(o, "#chair-error"))
        assert w.state()["floor"] == floor == [w.ids[A]]


def test_the_chairs_switches_and_buttons(w):
    with w.step("switches"):
        ch, a, b = w.chair, w.ids[A], w.ids[B]
        ch.click("#chair-debate")
        wait_for(lambda: w.state().get("debate") is True, T_SIGNAL, "debate on")
        wait_for(lambda: ch.js("return document.getElementById('chair-debate').getAttribute('aria-checked')") == "true",
                 T_SIGNAL, "chair: the debate switch on")
        ch.click(f'#chair-site-list li[data-site="{b}"] button[data-action=give]')
        wait_for(lambda: sorted(w.state()["floor"]) == sorted([a, b]), T_SIGNAL, "A and B hold the floor together",
                 detail=lambda: w.state()["floor"])
        ch.click("#chair-lecture")
        wait_for(lambda: w.state().get("lecture") is True and not w.state()["floor"], T_SIGNAL, "lecture: no floor")
        wait_for(lambda: ch.js(f"return document.querySelector('#chair-site-list li[data-site=\"{b}\"] button[data-action=give]').disabled"),
                 T_SIGNAL, "chair: 'call on' disabled for B during the lecture")
        wait_for(lambda: text(w.a, "#floor-state").startswith("Micro đang tắt (giảng bài"), T_SIGNAL,
                 "site A: closed by the lecture", detail=lambda: text(w.a, "#floor-state"))
        ch.click("#chair-lecture")
        ch.click(f'#chair-site-list li[data-site="{a}"] button[data-action=give]')
        wait_for(lambda: w.state()["floor"] == [a], T_SIGNAL, "A holds the floor again")
        ch.click("#chair-close-all")
        wait_for(lambda: not w.state()["floor"] and text(w.a, "#floor-state") == MSG_MIC_CLOSED, T_SIGNAL,
                 "every microphone closed", detail=lambda: text(w.a, "#floor-state"))


def test_after_the_meeting_its_booking_keeps_the_roll_call_and_the_calendar_marks_it(w, srv):
    with w.step("after"):
        w.console.send({"type": "close_meeting", "meeting": w.meeting})
        wait_for(lambda: MSG_NO_MEETING in w.chair.text(), T_SIGNAL, "chair: no meeting any more")
        w.a.wait_state("idle")
        op = browser_session(srv.base, "dieuhanh", srv.password)
        page = op.get(f"{srv.base}/bookings/{w.booking}", timeout=10).text
        section = page[page.index('id="meetings"'):]
        assert "Nguyễn Văn An (Phó Chủ tịch UBND huyện)" in section and "Phạm Thị Dung (Chánh Văn phòng): Đi công tác" \
            in section, section[:2000]
        assert "Lê Văn Cường" not in section, "the corrected roll call is not the one kept"
        cal = op.get(f"{srv.base}/calendar?view=day", timeout=10).text
        item = re.search(rf'<a class="item[^"]*meeting-held[^"]*" href="/bookings/{w.booking}#meetings" data-meeting="held">(.*?)</a>',
                         cal, re.S)
        assert item and "Đã họp trực tuyến" in item.group(1), cal[cal.find('class="calendar'):][:1500]
