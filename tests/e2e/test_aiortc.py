"""An independent (non-browser) site written with aiortc, in a meeting with the control center
console and one Chromium site: media must flow both ways and be decoded on both sides."""

from __future__ import annotations

from aiortc_site import AiortcSite
from e2e_util import (
    T_MEDIA,
    T_SIGNAL,
    Abort,
    open_emergency,
    set_floor,
    set_switch,
    site_ids,
    stream_for_site,
    wait_console_state,
    wait_decoding,
    wait_for,
    wait_presence,
)

CHROME_SITE = "phuoc-long"
AIORTC_SITE = "vinh-loi"


def _snap(site: AiortcSite) -> dict:
    s = site.snapshot()
    if s["fatal"]:
        raise Abort(f"aiortc site crashed: {s['fatal']}")
    return s


def test_aiortc_site_sends_and_receives(browser_factory, server):
    console = browser_factory.console()
    chrome = browser_factory.site(CHROME_SITE)
    ids = site_ids(console, [CHROME_SITE, AIORTC_SITE])
    site = AiortcSite(server.base, f"dc-{AIORTC_SITE}", server.password).start()
    try:
        wait_for(lambda: _snap(site)["welcome"], T_SIGNAL, "aiortc site: login + WebSocket `welcome`",
                 detail=lambda: _snap(site))
        assert _snap(site)["welcome"].get("role") == "site_device", _snap(site)["welcome"]
        for code in (CHROME_SITE, AIORTC_SITE):
            wait_presence(console, ids[code], "idle", code)

        meeting = open_emergency(console, "Họp kiểm thử aiortc", sites=[ids[CHROME_SITE], ids[AIORTC_SITE]])

        chrome.wait_state("in_meeting")
        wait_for(lambda: _snap(site)["state"] == "in_meeting" and (_snap(site)["meeting"] or {}).get("id") == meeting["id"],
                 T_SIGNAL, f"aiortc site: `join` for meeting {meeting}", detail=lambda: _snap(site))
        wait_for(lambda: _snap(site)["pc"] == "connected", T_MEDIA, "aiortc site: peer connection 'connected'",
                 detail=lambda: _snap(site))

        # Both sites speak (C4: only with the floor): a debate.
        wait_console_state(console, lambda st: all(s["connected"] for s in st["sites"]), "every site connected", T_MEDIA)
        set_switch(console, "#debate", True, "debate")
        for code in (CHROME_SITE, AIORTC_SITE):
            set_floor(console, ids[code], True)

        # 1. the aiortc site decodes video and audio from the console and from the Chromium site
        me = ids[AIORTC_SITE]
        st: dict = {"first": {}, "why": ""}

        def aiortc_decodes():
            s = _snap(site)
            others = {str(p["stream"]): p for p in s["participants"] if p.get("site_id") != me}
            kinds = sorted(p.get("kind") for p in others.values())
            if kinds != ["control", "site"]:
                st["why"] = f"participants seen by aiortc (others): {list(others.values())}"
                return False
            for sid, p in others.items():
                c = s["streams"].get(sid)
                if not c or sid not in s["active_streams"]:
                    st["why"] = f"no media stream {sid} ({p['name']}) in the server's SDP; active {s['active_streams']}"
                    return False
                if c["video_frames"] <= 0:
                    st["why"] = f"no decoded video frame from {p['name']} ({sid}): {c}"
                    return False
                first = st["first"].setdefault(sid, c["video_frames"])
                if c["video_frames"] < first + 10:
                    st["why"] = f"video from {p['name']} not rising: {c['video_frames']} vs first {first}"
                    return False
                if c["audio_energy"] <= 0:
                    st["why"] = f"no audio energy from {p['name']} ({sid}): {c}"
                    return False
            return True

        wait_for(aiortc_decodes, T_MEDIA, "aiortc site: decoded video (rising) and audio from console and Chromium site",
                 detail=lambda: {"why": st["why"], "snapshot": _snap(site)})

        # 2. the console and the Chromium site decode the aiortc site's video and audio
        wait_decoding(console, lambda: stream_for_site(console, me), f"aiortc site {AIORTC_SITE}")
        wait_decoding(chrome, lambda: stream_for_site(chrome, me), f"aiortc site {AIORTC_SITE}")

        # 3. closing the meeting sends `leave` to the aiortc site
        console.click_and_confirm("#close-meeting")
        wait_for(lambda: _snap(site)["state"] == "idle", T_SIGNAL, "aiortc site: `leave` after close_meeting",
                 detail=lambda: _snap(site))
        chrome.wait_state("idle")
        assert not [e for e in _snap(site)["errors"] if e.get("type") == "client_exception"], _snap(site)["errors"]
    finally:
        site.stop()
