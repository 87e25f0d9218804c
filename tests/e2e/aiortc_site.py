#!/usr/bin/env python3
"""An independent hnth *site* client written with aiortc + aiohttp (docs/SIGNALING.md).

It logs in with POST /api/v1/login, opens /ws?token=..., waits for `join`, sends the initial
offer with synthetic audio (a tone) and video (a moving test pattern), answers the server's
renegotiation `offer`s, and counts what it actually decodes per remote stream (msid).

It follows the meeting's course (`meeting_state`, `frame`) and can send any message of the
protocol with send_threadsafe (a speak request, a roll call: `command`, §2.4).

Library use (tests):     site = AiortcSite(base, "dc-vinh-loi", pw); site.start(); ...; site.snapshot(); site.stop()
Command line:            python3 tests/e2e/aiortc_site.py --server http://127.0.0.1:PORT --user dc-vinh-loi --password ...

Run it inside scripts/in-netns.sh: aiortc ignores loopback for ICE and uses the veth address.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import sys
import threading
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

# --------------------------------------------------------------------------------------------
# Synthetic sources (aiortc's MediaPlayer needs files; these need nothing)


class ToneTrack(MediaStreamTrack):
    """48 kHz mono s16 sine tone, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, freq: float = 440.0, amplitude: float = 0.3, rate: int = 48000, ptime: float = 0.02):
        super().__init__()
        self.freq, self.amplitude, self.rate = freq, amplitude, rate
        self.samples = int(rate * ptime)
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._pts += self.samples
            wait = self._start + self._pts / self.rate - time.time()
            if wait > 0:
                await asyncio.sleep(wait)  # real-time pacing of the source
        t = (np.arange(self.samples) + self._pts) / self.rate
        pcm = (self.amplitude * 32767 * np.sin(2 * math.pi * self.freq * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        return frame


class PatternTrack(VideoStreamTrack):
    """A moving test pattern (yuv420p), 30 fps, paced by VideoStreamTrack.next_timestamp()."""

    def __init__(self, width: int = 320, height: int = 240):
        super().__init__()
        self.width, self.height = width, height
        self.count = 0
        x = np.arange(width, dtype=np.uint16)
        self._ramp = np.tile(x, (height, 1))

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.count += 1
        h, w = self.height, self.width
        y = ((self._ramp + self.count * 4) % 256).astype(np.uint8)
        bar = (self.count * 3) % w
        y[:, bar:bar + 12] = 235
        u = np.full((h // 2, w // 2), 128 + int(60 * math.sin(self.count / 20)), dtype=np.uint8)
        v = np.full((h // 2, w // 2), 128 + int(60 * math.cos(self.count / 25)), dtype=np.uint8)
        yuv = np.concatenate([y, u.reshape(h // 4, w), v.reshape(h // 4, w)])
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


# --------------------------------------------------------------------------------------------


def sdp_sending_streams(sdp: str) -> dict[str, str]:
    """mid -> stream id (msid) for every m-section in which the SDP's author *sends* media."""
    out: dict[str, str] = {}
    sections: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            cur = {"mid": None, "msid": None, "dir": "sendrecv", "port": line.split()[1] if len(line.split()) > 1 else "9"}
            sections.append(cur)
        elif cur is None:
            continue
        elif line.startswith("a=mid:"):
            cur["mid"] = line[6:]
        elif line.startswith("a=msid:"):
            cur["msid"] = line[7:].split()[0]
        elif line.startswith("a=ssrc:") and " msid:" in line and cur["msid"] is None:
            cur["msid"] = line.split(" msid:", 1)[1].split()[0]
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and line.startswith("a="):
            cur["dir"] = line[2:]
    for s in sections:
        if s["mid"] is not None and s["msid"] and s["msid"] != "-" and s["dir"] in ("sendrecv", "sendonly") \
                and s["port"] != "0":
            out[s["mid"]] = s["msid"]
    return out


class AiortcSite:
    def __init__(self, server: str, user: str, password: str, *, send_reports: bool = True,
                 video_size: tuple[int, int] = (320, 240), log=None):
        self.server = server.rstrip("/")
        self.user, self.password = user, password
        self.send_reports = send_reports
        self.video_size = video_size
        self.log = log or (lambda msg: None)
        self._lock = threading.Lock()
        self._st: dict[str, Any] = {
            "connected": False, "welcome": None, "site": None, "state": "idle", "meeting": None,
            "participants": [], "errors": [], "pc": None, "received": [], "fatal": None,
            "offers_answered": 0, "joins": 0, "meeting_state": None, "frame": None,
        }
        # stream id -> counters (cumulative over the session)
        self._streams: dict[str, dict[str, Any]] = {}
        self._mid_stream: dict[str, str] = {}
        self.pc: RTCPeerConnection | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._video_track: PatternTrack | None = None

    # ---------------------------------------------------------------- public (thread-safe)
    def snapshot(self) -> dict:
        with self._lock:
            st = json.loads(json.dumps(self._st, default=str))
            st["streams"] = json.loads(json.dumps(self._streams, default=str))
            st["active_streams"] = sorted(set(self._mid_stream.values()))
        return st

    def start(self) -> "AiortcSite":
        """Run the client in a background thread with its own event loop."""

        def runner():
            try:
                asyncio.run(self.run())
            except BaseException as exc:  # noqa: BLE001
                self._set(fatal=f"{type(exc).__name__}: {exc}")

        self._thread = threading.Thread(target=runner, name=f"aiortc-{self.user}", daemon=True)
        self._thread.start()
        return self

    def send_threadsafe(self, obj: dict) -> None:
        if self._loop is None:
            raise RuntimeError("not running")
        asyncio.run_coroutine_threadsafe(self._send(obj), self._loop).result(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        # The loop is closed already when the client ended by itself (the server went away).
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # closed in between
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    # ---------------------------------------------------------------- internals
    def _set(self, **kw) -> None:
        with self._lock:
            self._st.update(kw)

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _send(self, obj: dict) -> None:
        if self._ws is None or self._ws.closed:
            raise RuntimeError("websocket not open")
        await self._ws.send_str(json.dumps(obj))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession(trust_env=False) as http:
            async with http.post(f"{self.server}/api/v1/login",
                                 json={"username": self.user, "password": self.password}) as r:
                body = await r.text()
                if r.status != 200:
                    raise RuntimeError(f"login {self.user}: HTTP {r.status}: {body}")
                login = json.loads(body)
            if login.get("role") != "site_device":
                raise RuntimeError(f"login {self.user}: role {login.get('role')!r}, expected site_device")
            self._set(site=login.get("site"))
            ws_url = self.server.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
            async with http.ws_connect(ws_url, params={"token": login["token"]}, autoping=True,
                                       heartbeat=None) as ws:
                self._ws = ws
                self._set(connected=True)
                queue: asyncio.Queue = asyncio.Queue()
                self._spawn(self._reader(ws, queue))
                if self.send_reports:
                    self._spawn(self._reporter())
                worker = asyncio.create_task(self._worker(queue))
                stopper = asyncio.create_task(self._stop.wait())
                await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
                worker.cancel()
                stopper.cancel()
                self._set(connected=False)
        await self._close_pc()
        for t in list(self._tasks):
            t.cancel()

    async def _reader(self, ws, queue: asyncio.Queue) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await queue.put(json.loads(msg.data))
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
        await queue.put(None)

    async def _worker(self, queue: asyncio.Queue) -> None:
        while True:
            msg = await queue.get()
            if msg is None:
                self.log("websocket closed")
                return
            t = msg.get("type")
            with self._lock:
                self._st["received"].append(t)
                del self._st["received"][:-200]
            try:
                await self._handle(t, msg)
            except Exception as exc:  # noqa: BLE001
                self.log(f"error handling {t}: {exc!r}")
                with self._lock:
                    self._st["errors"].append({"type": "client_exception", "ref": t, "message": repr(exc)})

    async def _handle(self, t: str, msg: dict) -> None:
        if t == "welcome":
            self._set(welcome=msg, meeting=msg.get("meeting"))
        elif t == "join":
            self.log(f"join {msg.get('meeting')}")
            with self._lock:
                self._st["joins"] += 1
            self._set(meeting=msg.get("meeting"), state="in_meeting")
            await self._start_media(msg["meeting"])
        elif t == "leave":
            self.log(f"leave {msg}")
            await self._close_pc()
            self._set(state="idle", meeting=None)
        elif t == "answer":
            if self.pc is None:
                return
            self._map_streams(msg["sdp"])
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
        elif t == "offer":
            if self.pc is None:
                raise RuntimeError("server offer without a peer connection")
            self._map_streams(msg["sdp"])
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            await self._send({"type": "answer", "sdp": self.pc.localDescription.sdp, "seq": msg.get("seq")})
            with self._lock:
                self._st["offers_answered"] += 1
        elif t == "participants":
            self._set(participants=msg.get("list") or [])
        elif t == "meeting_state":
            # The meeting's course (docs/SIGNALING.md §2.5): the floor, the queue, the frame.
            self._set(meeting_state=msg)
        elif t == "frame":
            self._set(frame=msg)
        elif t == "error":
            self.log(f"server error {msg}")
            with self._lock:
                self._st["errors"].append(msg)

    def _map_streams(self, sdp: str) -> None:
        mapping = sdp_sending_streams(sdp)
        with self._lock:
            self._mid_stream = mapping
            for sid in mapping.values():
                self._streams.setdefault(sid, {"video_frames": 0, "video_size": None, "audio_frames": 0,
                                               "audio_energy": 0.0, "audio_rms_max": 0.0})

    async def _start_media(self, meeting: dict) -> None:
        await self._close_pc()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: host candidates only
        self.pc = pc
        self._set(pc="new")

        @pc.on("connectionstatechange")
        async def on_state():
            self._set(pc=pc.connectionState)
            self.log(f"pc {pc.connectionState}")
            if pc.connectionState == "failed" and self.pc is pc:
                await self._send({"type": "media_lost", "meeting": meeting["id"]})

        @pc.on("track")
        def on_track(track):
            tr = next((x for x in pc.getTransceivers() if x.receiver.track is track), None)
            self._spawn(self._consume(tr, track))

        pc.addTrack(ToneTrack())
        self._video_track = PatternTrack(*self.video_size)
        pc.addTrack(self._video_track)
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        await self._send({"type": "offer", "meeting": meeting["id"], "sdp": pc.localDescription.sdp})

    async def _consume(self, transceiver, track) -> None:
        kind = track.kind
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            mid = transceiver.mid if transceiver is not None else None
            with self._lock:
                sid = self._mid_stream.get(mid)
                if sid is None:
                    continue
                c = self._streams.setdefault(sid, {"video_frames": 0, "video_size": None, "audio_frames": 0,
                                                   "audio_energy": 0.0, "audio_rms_max": 0.0})
            if kind == "video":
                with self._lock:
                    c["video_frames"] += 1
                    c["video_size"] = [frame.width, frame.height]
            else:
                pcm = frame.to_ndarray().astype(np.float32) / 32768.0
                rms = float(np.sqrt(np.mean(pcm * pcm))) if pcm.size else 0.0
                dur = frame.samples / (frame.sample_rate or 48000)
                with self._lock:
                    c["audio_frames"] += 1
                    c["audio_energy"] += rms * rms * dur  # same definition as totalAudioEnergy
                    c["audio_rms_max"] = max(c["audio_rms_max"], rms)

    async def _reporter(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # periodic report, not synchronisation
            if self._st["state"] == "in_meeting" and self.pc is not None:
                try:
                    await self._send({"type": "report", "width": self.video_size[0], "height": self.video_size[1],
                                      "fps": 30, "audio_level": 0.3})
                except Exception:  # noqa: BLE001
                    pass

    async def _close_pc(self) -> None:
        pc, self.pc = self.pc, None
        with self._lock:
            self._mid_stream = {}
        if pc is not None:
            await pc.close()
            self._set(pc="closed")


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--user", default="dc-vinh-loi")
    ap.add_argument("--password", required=True)
    ap.add_argument("--duration", type=float, default=0, help="stop after N seconds (0: until Ctrl-C)")
    ap.add_argument("--until-decoded", type=int, default=0, metavar="FRAMES",
                    help="exit 0 once every remote stream decoded FRAMES video frames and audio energy > 0 "
                         "(exit 1 if --duration passes first)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    def log(msg):
        if not args.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    site = AiortcSite(args.server, args.user, args.password, log=log).start()
    t0 = time.monotonic()
    rc = 0
    try:
        while True:
            site._thread.join(1.0)  # status line once a second
            snap = site.snapshot()
            active = {s: snap["streams"].get(s) for s in snap["active_streams"]}
            print(json.dumps({"t": round(time.monotonic() - t0, 1), "state": snap["state"], "pc": snap["pc"],
                              "meeting": snap["meeting"], "streams": active,
                              "errors": snap["errors"][-3:]}, ensure_ascii=False), flush=True)
            if snap["fatal"]:
                print(f"fatal: {snap['fatal']}", file=sys.stderr)
                return 2
            if not site._thread.is_alive():
                return 2
            if args.until_decoded and active and all(
                    c and c["video_frames"] >= args.until_decoded and c["audio_energy"] > 0 for c in active.values()):
                return 0
            if args.duration and time.monotonic() - t0 >= args.duration:
                rc = 1 if args.until_decoded else 0
                return rc
    except KeyboardInterrupt:
        return 0
    finally:
        site.stop()


if __name__ == "__main__":
    sys.exit(main())
