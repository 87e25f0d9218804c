"""The site app (M2: the kiosk in the meeting room) as the room sees it, in headless Chromium at
1600×1000: the idle screen shows no meeting panel and no scrollbar; after a hang-up nothing of
the old meeting is left; an error does not cover the video and goes away; nobody in the room can
switch the language: it is a setting of the site in the registry (audited, A3), and a site set to
English shows English.

The tests are consecutive steps (one server, one console, one kiosk) and run in file order.
HNTH_E2E_SCREENSHOTS=/some/dir keeps what the kiosk showed, for a person to look at.

Run: scripts/in-netns.sh python3 -m pytest -q tests/e2e/test_site_app.py
"""

from __future__ import annotations

import json
import re

import pytest
from selenium.webdriver.common.by import By

from e2e_util import T_PAGE, T_SIGNAL, BrowserFactory, Page, open_emergency, site_ids, wait_for
from proto_util import browser_session, csrf_of, own_server_fixtures
from site_util import full_screen, screenshot

PASSWORD = "Kiosk-matkhau-2026!"
SITE = "hong-dan"
OTHER = "vinh-loi"  # the site set to English
TITLE = "Giao ban trực tuyến kiểm thử màn hình điểm cầu"
T_ERROR_GONE = 30.0  # an error message must be gone by then (the app clears it after 10 s)

MSG_IDLE_VI = "Hiện không có cuộc họp."
MSG_IDLE_EN = "No meeting at the moment."

JS_LAYOUT = r"""
const vis = (id) => {
  const el = document.getElementById(id);
  if (!el) return null;
  const r = el.getBoundingClientRect();
  const cs = getComputedStyle(el);
  return {display: cs.display, visibility: cs.visibility, w: r.width, h: r.height,
          left: r.left, top: r.top, right: r.right, bottom: r.bottom, text: el.innerText};
};
const doc = document.scrollingElement || document.documentElement;
return {live: vis('live'), idle: vis('idle'), banner: vis('meeting-banner'), error: vis('site-error'),
        grid: vis('grid'),
        scrollHeight: doc.scrollHeight, clientHeight: doc.clientHeight, innerHeight: window.innerHeight,
        scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, lang: document.documentElement.lang,
        body: document.body.innerText};
"""


srv, browsers = own_server_fixtures("kiosk", PASSWORD)


class State:
    console: Page | None = None
    kiosk: Page | None = None
    ids: dict[str, int] = {}


@pytest.fixture(scope="module")
def st(browsers):
    s = State()
    s.console = browsers.console()
    s.kiosk = browsers.site(SITE)
    full_screen(s.kiosk)
    s.ids = site_ids(s.console, [SITE, OTHER])
    return s


def layout(page: Page) -> dict:
    return page.js(JS_LAYOUT)


def shown(box: dict | None) -> bool:
    return bool(box) and box["display"] != "none" and box["visibility"] != "hidden" and box["w"] > 0 and box["h"] > 0


def test_idle_screen_has_no_meeting_panel_no_scrollbar_and_no_language_switch(st):
    k = st.kiosk
    k.wait_state("idle")
    wait_for(lambda: MSG_IDLE_VI in layout(k)["body"], T_PAGE, "the idle screen's text")
    lay = layout(k)
    assert not shown(lay["live"]), f"the meeting panel is drawn under the idle screen: {lay['live']}"
    assert not k.driver.find_element(By.ID, "live").is_displayed()
    assert lay["scrollHeight"] <= lay["clientHeight"], \
        f"the idle screen scrolls: scrollHeight {lay['scrollHeight']} > {lay['clientHeight']}"
    assert lay["scrollWidth"] <= lay["clientWidth"], f"the idle screen scrolls sideways: {lay}"
    # The room's visitors cannot switch the kiosk's language.
    links = k.driver.find_elements(By.CSS_SELECTOR, "a[href^='/lang/']")
    assert not links, f"the kiosk offers a language switch: {[a.get_attribute('outerHTML') for a in links]}"
    assert "English" not in lay["body"], "the kiosk offers English"
    screenshot(k, "kiosk-idle")


def test_in_a_meeting_an_error_goes_away_without_covering_the_video(st):
    c, k = st.console, st.kiosk
    open_emergency(c, TITLE, sites=[st.ids[SITE]])
    k.wait_state("in_meeting")
    wait_for(lambda: shown(layout(k)["banner"]) and layout(k)["banner"]["text"].strip() == TITLE, T_SIGNAL,
             "kiosk: the meeting's title in its banner", detail=lambda: layout(k)["banner"])
    lay = layout(k)
    assert not shown(lay["idle"]), "the idle screen is still shown in the meeting"
    assert lay["scrollHeight"] <= lay["clientHeight"], f"the meeting screen scrolls: {lay}"
    screenshot(k, "kiosk-meeting")

    # A message the server refuses: the kiosk says so, beside the video, not over it...
    errors = len(k.errors())
    k.send({"type": "no_such_message"})
    wait_for(lambda: len(k.errors()) > errors, T_SIGNAL, "kiosk: the server's error message")
    wait_for(lambda: shown(layout(k)["error"]), T_SIGNAL, "kiosk: the error shown", detail=lambda: layout(k)["error"])
    lay = layout(k)
    e, g = lay["error"], lay["grid"]
    overlap = e["left"] < g["right"] and g["left"] < e["right"] and e["top"] < g["bottom"] and g["top"] < e["bottom"]
    assert not overlap, f"the error covers the video: error {e}, grid {g}"
    assert lay["scrollHeight"] <= lay["clientHeight"], f"the error makes the meeting screen scroll: {lay}"
    screenshot(k, "kiosk-meeting-error")
    # ... and it does not stay forever.
    wait_for(lambda: not shown(layout(k)["error"]), T_ERROR_GONE, "kiosk: the error message to go away",
             detail=lambda: layout(k)["error"])


def test_after_a_hang_up_nothing_of_the_old_meeting_is_left(st):
    c, k = st.console, st.kiosk
    c.click_and_confirm(f'#site-rows tr[data-site-id="{st.ids[SITE]}"] button.hangup')
    k.wait_state("idle")
    wait_for(lambda: shown(layout(k)["idle"]), T_SIGNAL, "kiosk: the idle screen after the hang-up")
    lay = layout(k)
    assert TITLE not in lay["body"], f"the old meeting's title is still on the kiosk: {lay['body'][:400]!r}"
    assert not (lay["banner"]["text"] or "").strip(), f"the banner still holds {lay['banner']['text']!r}"
    assert not shown(lay["live"]), f"the meeting panel is still drawn: {lay['live']}"
    assert lay["scrollHeight"] <= lay["clientHeight"], f"the idle screen scrolls after the hang-up: {lay}"
    screenshot(k, "kiosk-after-hangup")
    c.send({"type": "close_meeting", "meeting": c.hnth("meeting")["id"]})


def registry_form(html: str) -> dict[str, str]:
    """The site form's current values (inputs, textareas, the language select)."""
    form = re.search(r'<form method="post" action="/registry/sites/\d+" class="booking-form" id="site-form">(.*?)</form>',
                     html, re.S)
    assert form, "no site form on the registry page"
    f = form.group(1)
    out = {k: v for k, v in re.findall(r'<input name="(\w+)" value="([^"]*)"', f)}
    out.update({k: v for k, v in re.findall(r'<textarea name="(\w+)"[^>]*>(.*?)</textarea>', f, re.S)})
    sel = re.search(r'<select name="language"[^>]*>(.*?)</select>', f, re.S)
    assert sel, "the site form has no language setting"
    chosen = re.search(r'<option value="(\w+)"[^>]*selected', sel.group(1))
    out["language"] = chosen.group(1) if chosen else ""
    return out


def test_the_language_is_a_setting_of_the_site_audited_and_the_kiosk_follows_it(srv, st, browsers):
    sid = st.ids[OTHER]
    admin = browser_session(srv.base, "quantri", PASSWORD)
    page = admin.get(f"{srv.base}/registry/sites/{sid}", timeout=10)
    assert page.status_code == 200
    csrf = csrf_of(page.text)
    form = registry_form(page.text)
    assert form["language"] == "vi", f"a site's language is Vietnamese by default: {form}"
    # Only Vietnamese or English; anything else is refused and nothing changes.
    bad = admin.post(f"{srv.base}/registry/sites/{sid}", data={**form, "csrf": csrf, "language": "fr"},
                     allow_redirects=False, timeout=10)
    assert bad.status_code == 422, f"language fr: HTTP {bad.status_code}"
    assert srv.query("SELECT language FROM sites WHERE id = ?", sid) == [("vi",)]
    # English, by an administrator (A3: a control-center role).
    r = admin.post(f"{srv.base}/registry/sites/{sid}", data={**form, "csrf": csrf, "language": "en"},
                   allow_redirects=False, timeout=10)
    assert r.status_code == 303, f"setting English: HTTP {r.status_code}"
    assert srv.query("SELECT language, room FROM sites WHERE id = ?", sid) == [("en", form["room"])]
    audit = srv.query("SELECT before_json, after_json FROM audit WHERE action = 'update_site' AND entity_id = ? "
                      "ORDER BY id DESC LIMIT 1", str(sid))
    assert audit, "no audit entry for the change"
    before, after = (json.loads(x) for x in audit[0])
    assert (before.get("language"), after.get("language")) == ("vi", "en"), audit
    assert registry_form(admin.get(f"{srv.base}/registry/sites/{sid}", timeout=10).text)["language"] == "en"

    # The kiosk of that site speaks English, whatever the browser's language cookie says.
    k = browsers.site(OTHER)
    full_screen(k)
    k.wait_state("idle")
    wait_for(lambda: MSG_IDLE_EN in layout(k)["body"], T_PAGE, "the English idle screen",
             detail=lambda: layout(k)["body"][:300])
    assert layout(k)["lang"] == "en"
    k.driver.get(srv.base + "/lang/vi")
    k.driver.get(srv.base + "/site")
    k.wait_live_page()
    wait_for(lambda: MSG_IDLE_EN in layout(k)["body"], T_PAGE, "the English idle screen after /lang/vi",
             detail=lambda: layout(k)["body"][:300])
    assert not k.driver.find_elements(By.CSS_SELECTOR, "a[href^='/lang/']")
    screenshot(k, "kiosk-idle-en")
    # The other kiosk stays Vietnamese.
    st.kiosk.driver.refresh()
    st.kiosk.wait_live_page()
    wait_for(lambda: MSG_IDLE_VI in layout(st.kiosk)["body"], T_PAGE, "the Vietnamese kiosk still Vietnamese")
