"""Helpers of the browser tests of the site app (the kiosk) and the chair's view: the screen's
size, screenshots for a person to look at, the frame a kiosk shows (C1), and what it decodes.

Every wait has a deadline (e2e_util.wait_for); nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from e2e_util import T_PAGE, T_SIGNAL, Page, wait_for

# What the kiosk's frame shows, cell by cell, as drawn (not as the server sent it).
JS_FRAME = r"""
const g = document.getElementById('grid');
if (!g) return null;
const box = g.getBoundingClientRect();
const cells = [...g.querySelectorAll(':scope > figure')].map((f) => {
  const r = f.getBoundingClientRect();
  const v = f.querySelector('video');
  const shown = (el) => !!el && getComputedStyle(el).display !== 'none';
  const caption = f.querySelector('figcaption .name');
  const placeholder = f.querySelector('.placeholder');
  return {
    cell: Number(f.dataset.cell), site: f.dataset.site ? Number(f.dataset.site) : null,
    size: f.dataset.size || null, stream: f.dataset.stream || null,
    classes: [...f.classList],
    caption: shown(caption && caption.closest('figcaption')) ? caption.textContent : null,
    placeholder: shown(placeholder) ? placeholder.innerText : null,
    video: v ? {stream: v.srcObject ? v.srcObject.id : null, w: v.videoWidth, h: v.videoHeight} : null,
    left: r.left, top: r.top, w: r.width, h: r.height,
  };
}).sort((a, b) => a.cell - b.cell);
const doc = document.scrollingElement || document.documentElement;
return {layout: g.dataset.layout || null, cells,
        box: {left: box.left, top: box.top, w: box.width, h: box.height},
        scrolls: doc.scrollHeight > doc.clientHeight || doc.scrollWidth > doc.clientWidth,
        audio: [...document.querySelectorAll('.audio-sink audio')].map((a) => a.dataset.stream)};
"""


class Steps:
    """Consecutive steps of one scenario: once a step fails, the later ones fail at once naming it."""

    failed: str | None = None

    @contextlib.contextmanager
    def step(self, name: str):
        if self.failed:
            pytest.fail(f"not run: earlier step {self.failed!r} failed", pytrace=False)
        try:
            yield
        except BaseException:
            self.failed = name
            raise


def full_screen(page: Page, width: int = 1600, height: int = 1000) -> None:
    """The page's viewport (what the room's screen shows) exactly width × height."""
    page.driver.set_window_size(width, height)
    dw, dh = page.js("return [outerWidth - innerWidth, outerHeight - innerHeight]")
    if dw or dh:
        page.driver.set_window_size(width + dw, height + dh)
    wait_for(lambda: page.js("return [innerWidth, innerHeight]") == [width, height], T_PAGE,
             f"{page.name}: a {width}×{height} viewport", detail=lambda: page.js("return [innerWidth, innerHeight]"))


def screenshot(page: Page, name: str) -> None:
    """Kept for a person to look at when HNTH_E2E_SCREENSHOTS names a folder."""
    shots = os.environ.get("HNTH_E2E_SCREENSHOTS")
    if shots:
        page.driver.save_screenshot(os.path.join(shots, name + ".png"))


def screenshots(page: Page, name: str) -> None:
    """`name` at 1600×1000 and at 1920×1080 (the screens of the rooms and of the chair); the
    page is left at 1600×1000."""
    if not os.environ.get("HNTH_E2E_SCREENSHOTS"):
        return
    for width, height in ((1600, 1000), (1920, 1080)):
        full_screen(page, width, height)
        screenshot(page, f"{name}-{width}x{height}")
    full_screen(page)


def frame_on_screen(page: Page) -> dict | None:
    return page.js(JS_FRAME)


def wait_frame(page: Page, layout: str, sites: list[int | None], timeout: float = T_SIGNAL) -> dict:
    """Until the kiosk draws `layout` with exactly `sites` in its cells, largest first (None: an
    empty cell); returns what it draws."""
    def drawn():
        f = frame_on_screen(page)
        return f if f and f["layout"] == layout and [c["site"] for c in f["cells"]] == sites else None

    return wait_for(drawn, timeout, f"{page.name}: the frame {layout} with sites {sites} on the screen",
                    detail=lambda: frame_on_screen(page))


def meeting_state(page: Page, meeting: int) -> dict | None:
    """The last `meeting_state` of `meeting` the page received."""
    return page.hnth(f"states[{int(meeting)}]")


def decoded(page: Page) -> dict[str, int]:
    """framesDecoded of each remote stream's video at `page`."""
    st = page.stream_stats()
    return {sid: ((e.get("video") or {}).get("framesDecoded") or 0) for sid, e in st["streams"].items()}


def audio_energy(page: Page, stream: str) -> float:
    """totalAudioEnergy of `stream`'s sound as `page` decoded it (0 without any)."""
    e = page.stream_stats()["streams"].get(stream) or {}
    return (e.get("audio") or {}).get("totalAudioEnergy") or 0.0
