"""An independent site written with aiortc, speaking only the documented protocol
(docs/SIGNALING.md §2.4, §2.5), goes through the meeting's course like a district's room: it
requests the floor, the control center passes the request to the chair and grants it, the
site's tone is heard at another aiortc site only while it holds the floor (C4, C8, C3), and it
reports its roll call, which the control center sees and the booking keeps.

No browser: the console here is a plain WebSocket client of the operator.

Run: scripts/in-netns.sh python3 -m pytest -q -p no:cacheprovider tests/e2e/test_aiortc_floor.py
"""

from __future__ import annotations

import time

import pytest

from aiortc_site import AiortcSite
from e2e_util import wait_for
from proto_util import OwnServer, Ws, api_login, close_world, session

PASSWORD = "Aiortc-san-matkhau-2026!"
A, B = "dc-hong-dan", "dc-vinh-loi"
T = 30


@pytest.fixture(scope="module")
def world(inside_netns):
    srv = OwnServer.fresh("aiortc-floor", PASSWORD).start()
    sites = {u: AiortcSite(srv.base, u, PASSWORD).start() for u in (A, B)}
    console = Ws.open(srv.base, api_login(srv.base, "dieuhanh", PASSWORD)["token"], "console")
    try:
        yield srv, console, sites
    finally:
        close_world(srv, console, sites)


def snap(site: AiortcSite) -> dict:
    s = site.snapshot()
    assert not s["fatal"], f"aiortc site crashed: {s['fatal']}"
    return s


def energy_from(receiver: AiortcSite, stream: str) -> float:
    return (snap(receiver)["streams"].get(stream) or {}).get("audio_energy", 0.0)


def command(console: Ws, meeting: int, cmd: dict) -> None:
    console.send({"type": "command", "meeting": meeting, "command": cmd})


def steady(read, what: str):
    """Waits until `read()` gives the same value at two readings at least a second apart (the
    sound has stopped arriving), with a deadline; returns it."""
    last = {"v": None, "at": 0.0}

    def cond():
        v, now = read(), time.monotonic()
        if last["v"] is not None and v == last["v"] and now - last["at"] >= 1.0:
            return (v,)
        if v != last["v"]:
            last.update(v=v, at=now)
        return None

    return wait_for(cond, T, what)[0]


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of `name{labels}` in a Prometheus text (labels in any order), None if absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        rest = head[len(name):]
        if rest and not rest.startswith("{"):
            continue  # another metric whose name begins the same
        have = dict(kv.split("=", 1) for kv in rest.strip("{}").split(",") if kv)
        if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return None


def assert_metrics(srv) -> None:
    """/metrics (from this machine) shows what the IT staff watch: the open meeting, both sites'
    media connected, packets and bytes both ways, each site's loss and RTT, the audio the floor
    dropped of the site that never held it, the logins, and the notices' states."""
    url = srv.base + "/metrics"

    def scrape() -> str:
        r = session().get(url, timeout=10)
        assert r.status_code == 200, r.status_code
        return r.text

    def ready():
        t = scrape()
        # aiortc reports jitter at once; RTT and loss come with the RTCP it sends later, if at all.
        links = [metric(t, "hnth_site_jitter_seconds", site=s) for s in ("hong-dan", "vinh-loi")]
        return t if all(v is not None for v in links) else None

    text = wait_for(ready, T, "both sites' link figures on /metrics",
                    detail=lambda: [x for x in scrape().splitlines() if x.startswith("hnth_site") or "_open" in x])
    assert metric(text, "hnth_meetings_open") >= 1, text[:2000]
    assert metric(text, "hnth_sites_connected") >= 2, text[:2000]
    for name in ("hnth_media_packets_received_total", "hnth_media_bytes_received_total",
                 "hnth_media_packets_sent_total", "hnth_media_bytes_sent_total"):
        assert metric(text, name) > 0, name
    for site in ("hong-dan", "vinh-loi"):
        for direction in ("in", "out"):
            loss = metric(text, "hnth_site_loss_ratio", site=site, direction=direction)
            assert loss is None or 0.0 <= loss <= 1.0, (site, direction, loss)
    # B sent its tone all along and never held the floor: dropped at the server.
    assert metric(text, "hnth_floor_dropped_audio_packets_total", site="vinh-loi") > 0
    assert metric(text, "hnth_logins_total", result="ok") >= 3  # two sites and the operator
    assert metric(text, "hnth_site_connections_total", site="hong-dan") >= 1
    assert metric(text, "hnth_notices", state="queued") is not None
    assert metric(text, "hnth_server_start_time_seconds") > 1.7e9
    # The delay histograms are still there, and every family has its HELP once.
    assert "hnth_media_server_delay_seconds_bucket" in text
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
    assert len(helps) == len(set(helps)), helps
    # Every figure the Grafana dashboard of docs/ reads is on the page.
    import json
    import re

    from proto_util import REPO

    dash = json.loads((REPO / "docs" / "grafana-hnth.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = {re.sub(r"_bucket$", "", n) for e in exprs for n in re.findall(r"hnth_[a-z_]+", e)}
    # (A site's RTT and loss appear once its RTCP tells them; aiortc's does not.)
    missing = sorted(n for n in names - {"hnth_site_loss_ratio", "hnth_site_rtt_seconds"} if n not in helps)
    assert not missing, missing


def test_an_aiortc_site_requests_the_floor_is_heard_only_while_it_holds_it_and_reports_its_roll_call(world):
    srv, console, sites = world
    a, b = sites[A], sites[B]
    console.expect_type("welcome")
    for s in (a, b):
        wait_for(lambda s=s: snap(s)["welcome"], T, f"{s.user}: welcome")
    ida, idb = snap(a)["welcome"]["site"]["id"], snap(b)["welcome"]["site"]["id"]
    console.send({"type": "open_meeting", "title": "Họp kiểm thử điểm cầu aiortc", "sites": [ida, idb]})
    meeting = console.expect(lambda m: m.get("type") == "meeting_opened", "meeting_opened")["meeting"]["id"]
    for s in (a, b):
        wait_for(lambda s=s: snap(s)["pc"] == "connected", T, f"{s.user}: media connected", detail=lambda s=s: snap(s))
    wait_for(lambda: all({ida, idb} <= {x["id"] for x in (snap(s)["meeting_state"] or {}).get("sites", [])
                             if x["connected"]} for s in (a, b)),
             T, "both sites connected in the meeting_state they follow")
    stream_a = f"site-{ida}"
    wait_for(lambda: stream_a in snap(b)["streams"], T, "B has A's stream negotiated", detail=lambda: snap(b))

    # 1. A's microphone is closed at the server: its tone does not reach B.
    assert snap(a)["meeting_state"]["floor"] == [], snap(a)["meeting_state"]
    silent = steady(lambda: energy_from(b, stream_a), "B: A's sound (none) settled")
    assert silent == 0.0, f"B heard A without the floor: energy {silent}"

    # 2. A asks for the floor through the protocol; the request queues at the control center.
    a.send_threadsafe({"type": "command", "meeting": meeting, "command": {
        "type": "request_floor", "site": ida, "delegate": "Lê Văn Cường", "position": "Chủ tịch UBND huyện"}})
    st = console.expect(lambda m: m.get("type") == "meeting_state" and m["meeting"] == meeting and m["queue"],
                        "the request in the console's meeting_state")
    (req,) = st["queue"]
    assert (req["site"], req["delegate"], req["state"]) == (ida, "Lê Văn Cường", "waiting"), req
    # A site may not give itself the floor (C4): refused with the article, nothing changes.
    a.send_threadsafe({"type": "command", "meeting": meeting, "command": {"type": "give_floor", "site": ida}})
    wait_for(lambda: any(e.get("ref") == "command" and e.get("article") for e in snap(a)["errors"]), T,
             "A: its own give_floor refused", detail=lambda: snap(a)["errors"])
    assert snap(a)["meeting_state"]["floor"] == []

    # 3. The control center passes it to the chair and grants it on the chair's behalf.
    command(console, meeting, {"type": "pass", "request": req["id"]})
    console.expect(lambda m: m.get("type") == "meeting_state" and any(q["passed"] for q in m["queue"]), "passed")
    command(console, meeting, {"type": "grant", "request": req["id"]})
    console.expect(lambda m: m.get("type") == "meeting_state" and m["floor"] == [ida] and not m["queue"],
                   "A holds the floor, the queue is empty")
    wait_for(lambda: snap(a)["meeting_state"]["floor"] == [ida], T, "A's own meeting_state shows its floor")
    wait_for(lambda: energy_from(b, stream_a) > 0, T, "B: A's tone heard with the floor",
             detail=lambda: snap(b)["streams"].get(stream_a))

    # 4. Taken back: A's tone stops reaching B.
    command(console, meeting, {"type": "take_floor", "site": ida})
    console.expect(lambda m: m.get("type") == "meeting_state" and m["floor"] == [], "the floor taken back")
    after = steady(lambda: energy_from(b, stream_a), "B: A's sound stopped after the take-back")
    assert after > 0
    # B sends its tone all along and never held the floor: A heard nothing of it.
    assert energy_from(a, f"site-{idb}") == 0.0, snap(a)["streams"]

    # 5. The roll call, reported by the site, seen by the control center, kept on disk.
    a.send_threadsafe({"type": "command", "meeting": meeting, "command": {
        "type": "report_roll_call", "site": ida,
        "present": [{"name": "Lê Văn Cường", "position": "Chủ tịch UBND huyện"}],
        "absent": [{"name": "Phạm Thị Dung", "position": "Phó Chủ tịch", "reason": "Đi công tác"}]}})
    st = console.expect(lambda m: m.get("type") == "meeting_state" and str(ida) in m["roll_call"], "the roll call")
    rc = st["roll_call"][str(ida)]
    assert [d["name"] for d in rc["present"]] == ["Lê Văn Cường"], rc
    assert [(d["name"], d["reason"]) for d in rc["absent"]] == [("Phạm Thị Dung", "Đi công tác")], rc
    # A roll call without the reason of an absence is refused and changes nothing.
    a.send_threadsafe({"type": "command", "meeting": meeting, "command": {
        "type": "report_roll_call", "site": ida, "present": [], "absent": [{"name": "Ai đó", "position": ""}]}})
    wait_for(lambda: sum(e.get("ref") == "command" for e in snap(a)["errors"]) >= 2, T,
             "A: the roll call without a reason refused", detail=lambda: snap(a)["errors"])
    assert snap(a)["meeting_state"]["roll_call"][str(ida)] == rc

    # 6. What the IT staff watch on /metrics, the meeting still open.
    assert_metrics(srv)

    console.send({"type": "close_meeting", "meeting": meeting})
    console.expect_type("meeting_closed", meeting=meeting)

