"""The frame on every screen (C1), as a meeting room sees it: the control center sets the layout
and who is in which cell, and the site app (the kiosk, headless Chromium at 1600×1000) draws
exactly that, with each site's name on its cell, its own camera in its own cell, a calm
placeholder for a site that is not connected, and the floor holder's cell marked; it decodes
exactly the videos the frame names (the server forwards nothing else); a kiosk that reloads
gets the same frame at once; the bar says whether the room is heard (C4).

The other sites are the demo's simulated sites (`--simulated-sites`: real media over UDP, a
test picture bearing the site's name); the meeting is the demo's meeting of the day, opened
from the console page as the operator would (`open_meeting` with its booking). The tests are
consecutive steps and run in file order.
HNTH_E2E_SCREENSHOTS=/some/dir keeps what the kiosk showed (1600×1000 and 1920×1080).

Run: scripts/in-netns.sh python3 -m pytest -q tests/e2e/test_site_frame.py
"""

from __future__ import annotations

import contextlib

import pytest

from e2e_util import T_MEDIA, T_SIGNAL, BrowserFactory, Page, describe_stats, site_ids, wait_for
from proto_util import own_server
from site_util import Steps, decoded, frame_on_screen, full_screen, meeting_state, screenshots, wait_frame

PASSWORD = "Khung-hinh-matkhau-2026!"
KIOSK = "hong-dan"
SIMULATED = ["tinh-uy", "tp-bac-lieu", "tx-gia-rai", "phuoc-long", "vinh-loi"]
OFFLINE = "dong-hai"  # a site of the booking whose app is off
MIN_FRAMES = 20  # frames a named video decodes while an unnamed one may decode at most SLACK
SLACK = 5  # frames already on their way when the frame changed

MSG_MIC_CLOSED = "Micro đang tắt (chờ chủ trì mời)"
MSG_MIC_OPEN = "Micro đang mở — được mời phát biểu"


@pytest.fixture(scope="module")
def srv(inside_netns):
    with own_server("frame", PASSWORD, ["--simulated-sites", ",".join(SIMULATED)]) as s:
        yield s


class World(Steps):
    console: Page
    kiosk: Page
    ids: dict[str, int]
    cc: int
    meeting: int


@pytest.fixture(scope="module")
def w(srv):
    with BrowserFactory(base=srv.base, password=srv.password) as f:
        world = World()
        world.console = f.console()
        world.kiosk = f.site(KIOSK)
        full_screen(world.kiosk)
        world.ids = site_ids(world.console, [KIOSK, OFFLINE, *SIMULATED])
        world.cc = srv.query("SELECT id FROM sites WHERE is_control_center = 1")[0][0]
        yield world
        with contextlib.suppress(Exception):
            world.console.send({"type": "close_meeting", "meeting": world.meeting})


def set_frame(w: World, layout: str, cells: list[int | None]) -> None:
    errors = len(w.console.errors())
    w.console.send({"type": "command", "meeting": w.meeting,
                    "command": {"type": "set_frame", "frame": {"layout": layout, "fill": {"kind": "manual", "cells": cells}}}})
    wait_for(lambda: (meeting_state(w.console, w.meeting) or {}).get("frame", {}).get("layout") == layout
             or len(w.console.errors()) > errors, T_SIGNAL, f"console: the frame {layout} in the meeting's state")
    assert len(w.console.errors()) == errors, f"set_frame {layout} refused: {w.console.errors()[errors:]}"


def named_and_not(w: World) -> tuple[dict[str, int], set[str]]:
    """The streams the kiosk's frame names (site id by stream; itself apart), and every other
    remote stream the kiosk has."""
    f = w.kiosk.hnth("frame")
    named = {c["stream"]: c["site"] for c in f["cells"] if c["stream"] and c["site"] != w.ids[KIOSK]}
    others = {p["stream"] for p in w.kiosk.participants() if p["stream"] not in named and p.get("site_id") != w.ids[KIOSK]}
    return named, others


def assert_decodes_exactly_the_frame(w: World) -> None:
    """Every video the frame names decodes MIN_FRAMES more frames, while every other video of the
    meeting decodes at most SLACK (what was on its way when the frame changed)."""
    k = w.kiosk
    named, others = named_and_not(w)
    assert named, f"the frame names no remote video: {k.hnth('frame')}"
    wait_for(lambda: set(named) | others <= set(decoded(k)), T_MEDIA,
             "kiosk: a MediaStream for every participant", detail=lambda: describe_stats(k.stream_stats()))
    first = decoded(k)
    state = {"last": first}

    def enough():
        now = state["last"] = decoded(k)
        return all(now[s] >= first[s] + MIN_FRAMES for s in named)

    wait_for(enough, T_MEDIA, f"kiosk: each video of the frame ({sorted(named)}) decoding +{MIN_FRAMES} frames",
             detail=lambda: {"first": first, "now": state["last"], "stats": describe_stats(k.stream_stats())})
    now = state["last"]
    leaking = {s: now[s] - first[s] for s in others if now[s] - first[s] > SLACK}
    assert not leaking, f"kiosk decodes videos the frame does not name: {leaking} (frame {k.hnth('frame')})"


def test_the_meeting_of_the_day_calls_the_kiosk_and_the_simulated_sites(w):
    with w.step("open the meeting"):
        c = w.console
        booking = wait_for(lambda: next((b for b in c.hnth("last.bookings.list") or [] if not b["meeting"]), None),
                           T_SIGNAL, "console: the meeting of the day in the `bookings` message",
                           detail=lambda: c.hnth("last.bookings"))
        c.send({"type": "open_meeting", "booking": booking["id"]})
        w.meeting = wait_for(lambda: (c.hnth("last.meeting_opened") or {}).get("meeting", {}).get("id"), T_SIGNAL,
                             "console: meeting_opened", detail=lambda: c.errors())
        w.kiosk.wait_state("in_meeting")
        wanted = {w.ids[KIOSK], *(w.ids[s] for s in SIMULATED)}
        wait_for(lambda: wanted <= {s["id"] for s in (meeting_state(w.kiosk, w.meeting) or {}).get("sites", [])
                                    if s["connected"]},
                 T_MEDIA, "kiosk: itself and every simulated site connected in the meeting's state",
                 detail=lambda: meeting_state(w.kiosk, w.meeting))
        # Sites join with their microphone closed (C4): the room is told so.
        wait_for(lambda: w.kiosk.js("return document.getElementById('floor-state').innerText") == MSG_MIC_CLOSED,
                 T_SIGNAL, "kiosk: the closed microphone in its bar")


def test_the_kiosk_draws_1_plus_7_and_decodes_exactly_its_videos(w):
    with w.step("1+7"):
        ids, k = w.ids, w.kiosk
        cells = [ids["tinh-uy"], ids[KIOSK], ids["tp-bac-lieu"], ids["tx-gia-rai"], ids["phuoc-long"], ids[OFFLINE],
                 None, w.cc]
        set_frame(w, "1+7", cells)
        f = wait_frame(k, "1+7", cells)
        names = {s["id"]: s["name"] for s in meeting_state(k, w.meeting)["sites"]}
        by_site = {c["site"]: c for c in f["cells"]}
        large = by_site[ids["tinh-uy"]]
        assert large["size"] == "large" and all(c["size"] == "small" for c in f["cells"][1:]), f["cells"]
        # The large cell takes three quarters of the frame's width and height, the others one.
        assert abs(large["w"] - 0.75 * f["box"]["w"]) < 8 and abs(large["h"] - 0.75 * f["box"]["h"]) < 8, (large, f["box"])
        assert abs(f["box"]["w"] / f["box"]["h"] - 16 / 9) < 0.02, f"the frame is not 16:9: {f['box']}"
        assert not f["scrolls"], "the kiosk scrolls"
        # Each site's name on its cell; the kiosk's own cell shows its own camera.
        wait_for(lambda: all(c["caption"] == names[c["site"]] for c in frame_on_screen(k)["cells"]
                             if c["site"] in (ids["tinh-uy"], ids["tp-bac-lieu"], ids["tx-gia-rai"])),
                 T_MEDIA, "kiosk: the simulated sites' pictures captioned with their names",
                 detail=lambda: frame_on_screen(k))
        own = next(c for c in frame_on_screen(k)["cells"] if c["site"] == ids[KIOSK])
        assert "self" in own["classes"] and own["caption"].startswith(names[ids[KIOSK]]), own
        assert own["video"]["stream"] and own["video"]["stream"] not in {p["stream"] for p in k.participants()}, \
            f"the kiosk's own cell does not show its own camera: {own}"
        # A site of the meeting that is not connected: a placeholder with its name; an empty cell: nothing.
        off = by_site[ids[OFFLINE]]
        assert "offline" in off["classes"] and names[ids[OFFLINE]] in (off["placeholder"] or ""), off
        assert "Chưa kết nối" in off["placeholder"], off
        empty = f["cells"][6]
        assert "empty" in empty["classes"] and not empty["caption"] and not empty["placeholder"], empty
        assert_decodes_exactly_the_frame(w)
        # The sound of every participant plays, on the screen or not (the server decides who is heard).
        audio = set(frame_on_screen(k)["audio"])
        assert {p["stream"] for p in k.participants() if p.get("site_id") != ids[KIOSK]} <= audio, audio
        screenshots(k, "kiosk-1+7")


def test_the_kiosk_follows_a_new_frame_2x2(w):
    with w.step("2x2"):
        ids, k = w.ids, w.kiosk
        cells = [ids["vinh-loi"], ids["tinh-uy"], ids[KIOSK], None]
        set_frame(w, "2x2", cells)
        f = wait_frame(k, "2x2", cells)
        assert all(c["size"] == "medium" for c in f["cells"]), f["cells"]
        sizes = {(round(c["w"]), round(c["h"])) for c in f["cells"]}
        assert len(sizes) == 1, f"the four cells of 2×2 differ in size: {sizes}"
        assert_decodes_exactly_the_frame(w)
        screenshots(k, "kiosk-2x2")


def test_a_kiosk_that_reloads_gets_the_same_frame_at_once(w):
    with w.step("reload"):
        ids, k = w.ids, w.kiosk
        k.driver.refresh()
        k.wait_live_page()
        k.wait_state("in_meeting")
        wait_frame(k, "2x2", [ids["vinh-loi"], ids["tinh-uy"], ids[KIOSK], None], timeout=T_MEDIA)
        assert_decodes_exactly_the_frame(w)


def test_the_floor_holders_cell_is_marked_and_the_room_told_when_it_is_heard(w):
    with w.step("floor"):
        ids, k = w.ids, w.kiosk

        def cell_classes(site):
            return next((c["classes"] for c in frame_on_screen(k)["cells"] if c["site"] == site), [])

        def floor_text():
            return k.js("return document.getElementById('floor-state').innerText")

        w.console.send({"type": "command", "meeting": w.meeting, "command": {"type": "give_floor", "site": ids["tinh-uy"]}})
        wait_for(lambda: "floor" in cell_classes(ids["tinh-uy"]), T_SIGNAL, "kiosk: tinh-uy's cell marked as holding the floor",
                 detail=lambda: frame_on_screen(k))
        assert "floor" not in cell_classes(ids[KIOSK]) and floor_text() == MSG_MIC_CLOSED
        w.console.send({"type": "command", "meeting": w.meeting, "command": {"type": "give_floor", "site": ids[KIOSK]}})
        wait_for(lambda: floor_text() == MSG_MIC_OPEN, T_SIGNAL, "kiosk: its bar says its microphone is open",
                 detail=floor_text)
        wait_for(lambda: "floor" in cell_classes(ids[KIOSK]) and "floor" not in cell_classes(ids["tinh-uy"]), T_SIGNAL,
                 "kiosk: the mark moves to its own cell (no debate: one holder)", detail=lambda: frame_on_screen(k))
        screenshots(k, "kiosk-2x2-floor")
        w.console.send({"type": "command", "meeting": w.meeting, "command": {"type": "close_all"}})
        wait_for(lambda: floor_text() == MSG_MIC_CLOSED, T_SIGNAL, "kiosk: closed again after 'close every microphone'")


def test_a_frame_without_the_kiosk_leaves_its_camera_in_the_bar(w):
    with w.step("1x1 without the kiosk"):
        ids, k = w.ids, w.kiosk
        self_view = "const v = document.getElementById('self-view'); return !v.hidden && !!v.srcObject && v.videoWidth > 0;"
        assert not k.js(self_view), "the bar shows the kiosk's camera while its cell does"
        set_frame(w, "1x1", [ids["tinh-uy"]])
        f = wait_frame(k, "1x1", [ids["tinh-uy"]])
        assert f["cells"][0]["size"] == "large" and abs(f["cells"][0]["w"] - f["box"]["w"]) < 2, f
        wait_for(lambda: k.js(self_view), T_SIGNAL, "kiosk: its own camera in the bar")
        assert_decodes_exactly_the_frame(w)
        screenshots(k, "kiosk-1x1")
