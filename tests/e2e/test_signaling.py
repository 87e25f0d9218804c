"""The signaling WebSocket spoken directly (docs/SIGNALING.md), no browser: bad input, role and
regulation refusals (A1, C6), violations recorded (R4), and WebSocket authentication.

Every refusal must be an `error` frame to the sender only; the socket stays open and other
clients go on as before.

Run: scripts/in-netns.sh python3 -m pytest -q tests/e2e/test_signaling.py
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import tempfile

import pytest

from proto_util import (
    T_WS,
    OwnServer,
    Ws,
    api_login,
    browser_session,
    ws_status,
)

PASSWORD = "Proto-Sig-matkhau-2024!"


@pytest.fixture(scope="module")
def srv(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-sig-data-")
    logs = tempfile.mkdtemp(prefix="hnth-sig-log-")
    s = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log").start()
    try:
        yield s
    finally:
        s.stop()
        print(f"\nsignaling-test server log kept at {s.log_path}")


@pytest.fixture(autouse=True)
def _server_log_on_failure(srv):
    yield
    # Printed in teardown: pytest shows it only with a failing test.
    print(f"--- own hnth server log tail ({srv.log_path}) ---\n{srv.log_tail(60)}")


@pytest.fixture
def clients(srv):
    """Factory of logged-in signaling clients; all closed at the end of the test."""
    opened: list[Ws] = []
    tokens: dict[str, str] = {}

    def connect(user: str) -> Ws:
        if user not in tokens:
            tokens[user] = api_login(srv.base, user, PASSWORD)["token"]
        ws = Ws.open(srv.base, tokens[user], user)
        opened.append(ws)
        welcome = ws.expect_type("welcome")
        assert welcome.get("user", {}).get("username") == user, welcome
        if welcome["role"] in ("operator", "admin"):
            ws.expect_type("sites")
            ws.expect_type("meetings")
        return ws

    yield connect
    for ws in opened:
        ws.close()


def site_ids(console: Ws) -> dict[str, int]:
    sites = console.log_of("sites")[-1]["list"]
    return {s["code"]: s["id"] for s in sites}


def open_meeting(console: Ws, title: str) -> int:
    console.send({"type": "open_meeting", "title": title})
    m = console.expect(lambda m: m.get("type") == "meeting_opened" and m["meeting"]["title"] == title,
                       f"meeting_opened for {title!r}")
    return m["meeting"]["id"]


def close_meeting(console: Ws, meeting: int) -> None:
    console.send({"type": "close_meeting", "meeting": meeting})
    console.expect_type("meeting_closed", meeting=meeting)


def assert_error(ws: Ws, ref: str, code: str, article: str | None = None, what: str = "") -> dict:
    e = ws.expect_error(ref)
    assert e["code"] == code, f"{ws.name}: {what or ref}: expected code {code!r}, got {e}"
    assert isinstance(e.get("message"), str) and e["message"], f"{ws.name}: error without a message: {e}"
    if article is not None:
        assert e.get("article") == article, f"{ws.name}: {what or ref}: expected article {article!r}, got {e}"
    return e


# Frames that are not valid requests: (frame, ref the error must carry, label)
MALFORMED = [
    ("{bad json", "", "malformed JSON"),
    ("", "", "empty text frame"),
    ('{"type": "dial", "meeting": 1, "site": 2', "", "truncated JSON"),
    ("[1, 2, 3]", "", "a JSON array"),
    ('"dial"', "", "a JSON string"),
    ("42", "", "a JSON number"),
    ("null", "", "JSON null"),
    ('{"meeting": 1, "site": 2}', "", "an object without type"),
    ('{"type": 5}', "", "a non-string type"),
    ('{"type": "subscribe_everything"}', "subscribe_everything", "an unknown type"),
    ('{"type": "DIAL", "meeting": 1, "site": 2}', "DIAL", "a type in the wrong case"),
    # missing fields
    ('{"type": "dial", "meeting": 1}', "dial", "dial without site"),
    ('{"type": "dial", "site": 2}', "dial", "dial without meeting"),
    ('{"type": "open_meeting"}', "open_meeting", "open_meeting without title"),
    ('{"type": "offer", "meeting": 1}', "offer", "offer without sdp"),
    ('{"type": "offer", "sdp": "v=0"}', "offer", "offer without meeting"),
    ('{"type": "answer", "sdp": "v=0"}', "answer", "answer without seq"),
    ('{"type": "hangup", "meeting": 1}', "hangup", "hangup without site"),
    ('{"type": "close_meeting"}', "close_meeting", "close_meeting without meeting"),
    ('{"type": "media_lost"}', "media_lost", "media_lost without meeting"),
    # wrong field types
    ('{"type": "dial", "meeting": "1", "site": 2}', "dial", "meeting as a string"),
    ('{"type": "dial", "meeting": 1.5, "site": 2}', "dial", "meeting as a float"),
    ('{"type": "dial", "meeting": 1, "site": null}', "dial", "site null"),
    ('{"type": "open_meeting", "title": 7}', "open_meeting", "title as a number"),
    ('{"type": "open_meeting", "title": ["a"]}', "open_meeting", "title as an array"),
    ('{"type": "offer", "meeting": 1, "sdp": null}', "offer", "sdp null"),
    ('{"type": "offer", "meeting": 1, "sdp": {"v": 0}}', "offer", "sdp as an object"),
    ('{"type": "answer", "sdp": "v=0", "seq": -1}', "answer", "negative seq"),
    ('{"type": "answer", "sdp": "v=0", "seq": "1"}', "answer", "seq as a string"),
    ('{"type": "dial_all", "meeting": [1]}', "dial_all", "meeting as an array"),
    ('{"type": "report", "width": "wide"}', "report", "report width as a string"),
    ('{"type": "dial", "meeting": 1, "site": 2, "priority": "high"}', "dial", "an unknown field"),
    # view: what the page shows, checked before it reaches the media core
    ('{"type": "view"}', "view", "view without tracks"),
    ('{"type": "view", "tracks": [{"stream": "a"}]}', "view", "view track without height"),
    ('{"type": "view", "tracks": [{"stream": "a", "height": -1}]}', "view", "negative view height"),
    ('{"type": "view", "tracks": [{"stream": "a", "height": 4321}]}', "view", "view taller than 8K"),
    ('{"type": "view", "tracks": [{"stream": "", "height": 10}]}', "view", "empty view stream id"),
    ('{"type": "view", "tracks": [{"stream": "a", "height": 10, "rid": "f"}]}', "view", "view track with a rid"),
    ('{"type": "view", "tracks": [' + ",".join(['{"stream": "a", "height": 1}'] * 65) + "]}",
     "view", "a view of 65 tracks"),
]


@pytest.mark.parametrize("user", ["dieuhanh", "dc-tinh-uy"])
def test_malformed_frames_are_bad_request_and_socket_stays_open(clients, user):
    observer = clients("quantri")  # a second console: must see nothing of it
    ws = clients(user)
    observer.drain()
    for frame, ref, label in MALFORMED:
        ws.send(frame)
        e = assert_error(ws, ref, "bad_request", what=label)
        assert e.get("article") is None, f"{label}: a malformed frame cites no rule: {e}"
        # exactly one answer per bad frame, and it comes before anything else we provoke
    ws.alive()
    assert len(ws.errors_since(0)) == len(MALFORMED) + 1, \
        f"{user}: expected one error per bad frame (+1 probe), got {ws.tail(n=len(MALFORMED) + 5)}"

    # Nothing leaked to the other console, which still follows presence changes.
    errors_before = observer.errors_since(0)
    assert not errors_before, f"errors of {user} reached another client: {errors_before}"
    observer.alive()  # exactly one error now: the answer to its own probe
    assert len(observer.errors_since(0)) == 1, f"errors of {user} reached another client: {observer.tail()}"
    late = clients("dc-dong-hai")
    observer.expect(lambda m: m.get("type") == "sites" and any(
        s["code"] == "dong-hai" and s["presence"] == "idle" for s in m["list"]),
        "a `sites` update showing dong-hai idle after it connected")
    late.close()
    observer.expect(lambda m: m.get("type") == "sites" and any(
        s["code"] == "dong-hai" and s["presence"] == "offline" for s in m["list"]),
        "a `sites` update showing dong-hai offline after it left")
    ws.alive()


@pytest.mark.parametrize("user", ["dieuhanh", "dc-tinh-uy"])
def test_binary_frame_is_bad_request(clients, user):
    ws = clients(user)
    ws.send_binary(b"\x00\x01\x02binary")
    assert_error(ws, "", "bad_request", what="binary frame")
    ws.send_binary(json.dumps({"type": "open_meeting", "title": "nhị phân"}).encode())
    assert_error(ws, "", "bad_request", what="JSON in a binary frame")
    ws.alive()


def test_answer_without_any_media_session_is_bad_state(clients):
    console = clients("dieuhanh")
    site = clients("dc-hong-dan")
    for ws in (console, site):
        ws.send({"type": "answer", "sdp": "v=0\r\n", "seq": 1})
        assert_error(ws, "answer", "bad_state", what="answer with no offer pending")
        ws.send({"type": "view", "tracks": [{"stream": "site-1", "height": 180}]})
        assert_error(ws, "view", "bad_state", what="view with no media session")
        ws.alive()


async def _aiortc_offer() -> tuple[str, object]:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp, pc


def test_answer_with_no_offer_pending_on_a_live_session_is_bad_state(clients):
    console = clients("dieuhanh")
    meeting = open_meeting(console, "Phiên họp kiểm tra answer")
    loop = asyncio.new_event_loop()
    try:
        sdp, pc = loop.run_until_complete(_aiortc_offer())
        console.send({"type": "offer", "meeting": meeting, "sdp": sdp})
        answer = console.expect_type("answer")
        assert answer.get("sdp", "").startswith("v=0"), f"server answer is not SDP: {answer}"
        # The server has not offered anything: an answer now is out of order.
        console.send({"type": "answer", "sdp": answer["sdp"], "seq": 424242})
        assert_error(console, "answer", "bad_state", what="answer with no server offer pending")
        console.alive()
        loop.run_until_complete(pc.close())
    finally:
        loop.close()
    close_meeting(console, meeting)


def test_offer_that_is_not_sdp_is_sdp_rejected(clients):
    console = clients("dieuhanh")
    ids = site_ids(console)
    site = clients("dc-phuoc-long")
    meeting = open_meeting(console, "Phiên họp kiểm tra SDP")

    console.send({"type": "offer", "meeting": meeting, "sdp": "this is not SDP at all"})
    e = assert_error(console, "offer", "sdp_rejected", what="console offer with garbage SDP")
    assert "0x" not in e["message"], f"the refusal leaks a memory address: {e['message']!r}"
    console.alive()

    console.send({"type": "dial", "meeting": meeting, "site": ids["phuoc-long"]})
    site.expect(lambda m: m.get("type") == "join" and m["meeting"]["id"] == meeting, "join after dial")
    site.send({"type": "offer", "meeting": meeting, "sdp": "v=0\r\nthis is not a session description\r\n"})
    assert_error(site, "offer", "sdp_rejected", what="site offer with garbage SDP")
    site.alive()

    # Too large to be an SDP: refused before it reaches the media core.
    site.send({"type": "offer", "meeting": meeting, "sdp": "v=0\r\n" + "a=x-padding\r\n" * 7000})
    assert_error(site, "offer", "bad_request", what="offer with 80 KiB of SDP")
    site.alive()
    close_meeting(console, meeting)
    site.expect_type("leave", meeting=meeting)


def test_dial_unknown_site_or_meeting_is_not_found(clients):
    console = clients("dieuhanh")
    ids = site_ids(console)
    meeting = open_meeting(console, "Phiên họp kiểm tra not_found")
    for msg, what in [
        ({"type": "dial", "meeting": meeting, "site": 99999}, "dial of an unknown site"),
        ({"type": "dial", "meeting": 99999, "site": ids["hong-dan"]}, "dial into an unknown meeting"),
        ({"type": "dial_all", "meeting": 99999}, "dial_all of an unknown meeting"),
        ({"type": "hangup", "meeting": 99999, "site": ids["hong-dan"]}, "hangup in an unknown meeting"),
        ({"type": "hangup", "meeting": meeting, "site": ids["hong-dan"]}, "hangup of a site not dialed"),
        ({"type": "close_meeting", "meeting": 99999}, "close of an unknown meeting"),
        ({"type": "offer", "meeting": 99999, "sdp": "v=0\r\n"}, "console offer into an unknown meeting"),
    ]:
        console.send(msg)
        assert_error(console, msg["type"], "not_found", what=what)
    console.alive()
    # The meeting is still there and nobody was dialed.
    console.send({"type": "dial", "meeting": meeting, "site": ids["hong-dan"]})
    console.expect_type("dialing", meeting=meeting, site=ids["hong-dan"])
    close_meeting(console, meeting)


def _violations(srv) -> list[dict]:
    """The rows of the violations table on /admin/audit, as the administrator sees it."""
    s = browser_session(srv.base, "quantri", PASSWORD)
    r = s.get(srv.base + "/admin/audit", params={"limit": 5000}, allow_redirects=False, timeout=10)
    assert r.status_code == 200, f"/admin/audit as quantri: HTTP {r.status_code}"
    tables = re.findall(r"<tbody>(.*?)</tbody>", r.text, re.S)
    assert len(tables) == 2, f"/admin/audit: expected the audit and the violations tables, got {len(tables)}"
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", tables[1], re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td>(.*?)</td>", tr, re.S)]
        assert len(cells) == 5, f"violation row with {len(cells)} cells: {tr!r}"
        rows.append(dict(zip(("at", "rule", "site", "account", "detail"), cells)))
    return rows


def test_site_device_may_not_act_for_the_control_center(srv, clients):
    console = clients("dieuhanh")
    ids = site_ids(console)
    meeting = open_meeting(console, "Phiên họp kiểm tra C6")
    other = open_meeting(console, "Phiên họp khác")
    site = clients("dc-vinh-loi")  # the offender
    bystander = clients("dc-hoa-binh")  # must never be joined by the offender's requests
    me, them = ids["vinh-loi"], ids["hoa-binh"]
    before = [v for v in _violations(srv) if v["account"] == "dc-vinh-loi"]
    console.drain()

    refused = [
        ({"type": "open_meeting", "title": "Điểm cầu tự mở họp"}, "A1", False),
        ({"type": "close_meeting", "meeting": meeting}, "A1", False),
        ({"type": "dial", "meeting": meeting, "site": them}, "C6", True),
        ({"type": "dial", "meeting": meeting, "site": me}, "C6", True),
        ({"type": "dial_all", "meeting": meeting}, "C6", True),
        ({"type": "hangup", "meeting": meeting, "site": them}, "C6", True),
        ({"type": "join_request", "meeting": meeting}, "C6", True),
        ({"type": "join_request"}, "C6", True),
        ({"type": "offer", "meeting": meeting, "sdp": "v=0\r\n"}, "C6", True),
        ({"type": "offer", "meeting": 99999, "sdp": "v=0\r\n"}, "C6", True),
    ]
    for msg, article, _ in refused:
        site.send(msg)
        assert_error(site, msg["type"], "forbidden", article, what=f"site device sending {msg}")
    site.alive()

    # None of it had any effect: no meeting opened or closed, nobody dialed or joined.
    console.send({"type": "dial", "meeting": other, "site": them})  # a real change, to sync on
    console.expect_type("dialing", meeting=other, site=them)
    for m in console.log:
        assert m.get("type") not in ("meeting_closed",), f"a site closed a meeting: {m}"
        assert not (m.get("type") == "meeting_opened" and m["meeting"]["title"] == "Điểm cầu tự mở họp"), \
            f"a site opened a meeting: {m}"
        assert not (m.get("type") == "dialing" and m.get("meeting") == meeting), f"a site dialed: {m}"
        assert m.get("type") != "error", f"the console got an error meant for the site: {m}"
    meetings = console.expect(lambda m: m.get("type") == "meetings" and any(
        x["id"] == other and them in x["sites"] for x in m["list"]), "`meetings` with hoa-binh in the other meeting")
    assert {x["id"]: x["sites"] for x in meetings["list"]}.get(meeting) == [], \
        f"the C6 meeting must have no sites: {meetings}"
    bystander.expect(lambda m: m.get("type") == "join" and m["meeting"]["id"] == other, "hoa-binh joined by the console")
    assert not [m for m in bystander.log if m.get("type") == "join" and m["meeting"]["id"] == meeting], \
        f"hoa-binh was joined into the meeting by a site: {bystander.log}"
    assert not [m for m in site.log if m.get("type") == "join"], f"the offender got a join: {site.log}"
    assert srv.query("SELECT COUNT(*) FROM meetings WHERE title = ?", "Điểm cầu tự mở họp")[0][0] == 0

    # Dialed into `meeting` by the control center, an offer for another meeting is still C6.
    console.send({"type": "dial", "meeting": meeting, "site": me})
    site.expect(lambda m: m.get("type") == "join" and m["meeting"]["id"] == meeting, "join after the console dialed")
    site.send({"type": "offer", "meeting": other, "sdp": "v=0\r\n"})
    assert_error(site, "offer", "forbidden", "C6", what="offer for a meeting the site was not dialed into")

    # Every C6 attempt is recorded (R4) and shown to the administrator.
    after = [v for v in _violations(srv) if v["account"] == "dc-vinh-loi"]
    new = after[: len(after) - len(before)]
    c6_expected = sum(1 for _, _, rec in refused if rec) + 1
    c6 = [v for v in new if v["rule"] == "C6"]
    assert len(c6) == c6_expected, \
        f"expected {c6_expected} new C6 violations of dc-vinh-loi on /admin/audit, got {len(c6)}: {new}"
    for typ in ("dial", "dial_all", "hangup", "join_request", "offer"):
        assert any(f"({typ})" in v["detail"] for v in c6), f"no C6 violation row for a site's {typ!r}: {c6}"
    for v in c6:
        assert v["site"] == "Huyện Vĩnh Lợi", f"violation not attributed to the site: {v}"

    close_meeting(console, meeting)
    close_meeting(console, other)


def test_operator_join_request_is_not_a_violation(srv, clients):
    console = clients("dieuhanh")
    before = len(_violations(srv))
    console.send({"type": "join_request", "meeting": 1})
    e = assert_error(console, "join_request", "bad_request", what="join_request from the console")
    assert e.get("article") is None, e
    console.alive()
    assert len(_violations(srv)) == before, "a console's join_request was recorded as a violation"


# --------------------------------------------------------------------------------------------
# WebSocket authentication


def test_ws_requires_a_valid_session(srv):
    token = api_login(srv.base, "dc-tx-gia-rai", PASSWORD)["token"]
    assert ws_status(srv.base) == 401, "/ws without any token must be 401"
    assert ws_status(srv.base, header=["Authorization: Bearer "]) == 401, "empty bearer token"
    assert ws_status(srv.base, header=["Authorization: Bearer 0123456789abcdef"]) == 401, "bad bearer token"
    assert ws_status(srv.base, header=[f"Authorization: Bearer {token}x"]) == 401, "altered bearer token"
    assert ws_status(srv.base, query="?token=not-a-session") == 401, "bad ?token="
    assert ws_status(srv.base, cookie="hnth_session=not-a-session", origin=srv.base) == 401, "bad cookie"
    # The genuine token opens it, by each of the three means.
    assert ws_status(srv.base, header=[f"Authorization: Bearer {token}"]) == 101
    assert ws_status(srv.base, query=f"?token={token}") == 101
    assert ws_status(srv.base, cookie=f"hnth_session={token}", origin=srv.base) == 101


def test_ws_cookie_session_from_a_foreign_origin_is_403(srv):
    s = browser_session(srv.base, "dieuhanh", PASSWORD)
    cookie = f"hnth_session={s.cookies.get('hnth_session')}"
    port = srv.http_port
    for origin in ("http://evil.example", f"http://evil.example:{port}", f"http://127.0.0.1:{port + 1}",
                   f"https://127.0.0.1.evil.example:{port}", "null"):
        assert ws_status(srv.base, cookie=cookie, origin=origin) == 403, f"cookie session from Origin {origin}"
    assert ws_status(srv.base, cookie=cookie) == 403, "cookie session without an Origin header"
    assert ws_status(srv.base, cookie=cookie, origin=srv.base) == 101, "cookie session from our own origin"


def test_ws_connection_works_after_refusals(clients):
    """A site refused many times over is still dialed and joined normally."""
    console = clients("dieuhanh")
    ids = site_ids(console)
    site = clients("dc-tp-bac-lieu")
    for _ in range(20):
        site.send({"type": "dial_all", "meeting": 1})
        assert_error(site, "dial_all", "forbidden", "C6")
    meeting = open_meeting(console, "Phiên họp sau các lần từ chối")
    console.send({"type": "dial", "meeting": meeting, "site": ids["tp-bac-lieu"]})
    site.expect(lambda m: m.get("type") == "join" and m["meeting"]["id"] == meeting, "join", timeout=T_WS)
    close_meeting(console, meeting)
    site.expect_type("leave", meeting=meeting)


def _close_frame(ws: Ws, timeout: float = T_WS) -> tuple[int, str]:
    """Read until the server's close frame; return its code and reason. Data frames before it
    are kept in the log; the socket ending without a close frame fails."""
    import struct
    import time

    import websocket

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"{ws.name}: no close frame within {timeout:.0f}s; last messages: {ws.tail()}"
        ws.conn.settimeout(left)
        try:
            frame = ws.conn.recv_frame()
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError) as exc:
            raise AssertionError(f"{ws.name}: the socket was dropped without a close frame ({exc!r}); "
                                 f"last messages: {ws.tail()}") from exc
        if frame is None:
            raise AssertionError(f"{ws.name}: the socket ended without a close frame; last messages: {ws.tail()}")
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data or b""
            assert len(data) >= 2, f"{ws.name}: a close frame without a status code: {data!r}"
            return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8")
        if frame.opcode == websocket.ABNF.OPCODE_TEXT:
            ws.log.append(json.loads(frame.data.decode("utf-8")))


@pytest.mark.parametrize("size_kib,binary", [(300, False), (300, True), (900, False)])
def test_a_message_over_256_kib_gets_close_1009(clients, size_kib, binary):
    """docs/SIGNALING.md: a message over 262144 bytes is answered with a close frame, code 1009
    (message too big), and the socket closes; other clients go on."""
    other = clients("quantri")
    ws = clients("dieuhanh")
    ws.alive()
    big = json.dumps({"type": "open_meeting", "title": "x" * (size_kib * 1024)})
    if binary:
        ws.send_binary(big.encode())
    else:
        ws.send(big)
    code, reason = _close_frame(ws)
    assert code == 1009, f"close code {code} ({reason!r}) for a {size_kib} KiB message"
    assert reason == "message over 262144 bytes", reason
    other.alive()
    # A new connection of the same account works as before.
    again = clients("dieuhanh")
    again.alive()


def test_a_frame_announcing_megabytes_gets_close_1009_on_its_header(clients):
    """A frame far over the limit is refused on its header, before its payload is read: the
    same close frame (here the payload is never sent)."""
    import struct

    ws = clients("dieuhanh")
    ws.alive()
    # A masked text frame (FIN, opcode 1) whose 64-bit length announces 8 MiB; no payload.
    ws.conn.sock.sendall(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 8 * 1024 * 1024) + b"\x00" * 4)
    code, reason = _close_frame(ws)
    assert (code, reason) == (1009, "message over 262144 bytes"), (code, reason)


def test_a_message_of_exactly_256_kib_is_served(clients):
    ws = clients("dieuhanh")
    # 262144 bytes in all: the limit itself is allowed (an over-long title is a bad_request).
    head, tail = '{"type": "open_meeting", "title": "', '"}'
    ws.send(head + "x" * (256 * 1024 - len(head) - len(tail)) + tail)
    e = ws.expect_error("open_meeting")
    assert e["code"] == "bad_request", e
    ws.alive()
