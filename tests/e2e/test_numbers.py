"""Numbers the Vietnamese way in the Vietnamese UI (decimal comma, dot between thousands:
`0,5 %`, `1.234 kbit/s`), the English way in the English UI (`0.5 %`, `1,234`), in headless
Chromium: the console's live link figures (C2, written by static/console.js) during a real
meeting with a site, and the server-rendered figures of a booking page (its costs, F1, and the
size of its written notice, B1).

Run: scripts/in-netns.sh python3 -m pytest -q tests/e2e/test_numbers.py
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from selenium.webdriver.common.by import By

from e2e_util import T_MEDIA, T_PAGE, BrowserFactory, Page, open_emergency, site_ids, wait_for
from proto_util import browser_session, csrf_of, own_server_fixtures

PASSWORD = "Numbers-matkhau-2026!"
SITE = "phuoc-long"
VN = timezone(timedelta(hours=7), "ICT")

# One figure of the console's table per language: decimals after a comma (vi) or a point (en),
# thousands grouped by a dot (vi) or a comma (en); the units are in the table's header.
FIGURE = {
    "vi": {"jitter": r"\d{1,3}(\.\d{3})*,\d", "loss": r"\d{1,3}(\.\d{3})*,\d",
           "kin": r"\d{1,3}(\.\d{3})*", "kout": r"\d{1,3}(\.\d{3})*"},
    "en": {"jitter": r"\d{1,3}(,\d{3})*\.\d", "loss": r"\d{1,3}(,\d{3})*\.\d",
           "kin": r"\d{1,3}(,\d{3})*", "kout": r"\d{1,3}(,\d{3})*"},
}
UNITS = ["(ms)", "(%)", "(kbit/s)"]


srv, browsers = own_server_fixtures("numbers", PASSWORD)


def figures(console: Page, site_id: int) -> dict[str, str]:
    return console.js("""
        const row = document.querySelector('#site-rows tr[data-site-id="' + arguments[0] + '"]');
        if (!row) return {};
        const out = {};
        for (const c of ['rtt', 'loss', 'jitter', 'kin', 'kout', 'fps']) out[c] = row.querySelector('.' + c).textContent;
        return out;""", site_id)


def wait_figures(console: Page, site_id: int, lang: str) -> dict[str, str]:
    want = FIGURE[lang]

    def ok():
        f = figures(console, site_id)
        return f if all(re.fullmatch(rx, f.get(k, "")) for k, rx in want.items()) else None

    return wait_for(ok, T_MEDIA, f"console ({lang}): the site's link figures written the {lang} way {want}",
                    detail=lambda: figures(console, site_id))


def test_console_link_figures_in_the_page_language(browsers):
    console = browsers.console()
    site = browsers.site(SITE)
    sid = site_ids(console, [SITE])[SITE]
    site.wait_state("idle")
    open_emergency(console, "Họp kiểm tra số liệu đường truyền", sites=[sid])
    site.wait_state("in_meeting")
    vi = wait_figures(console, sid, "vi")
    head = console.driver.find_element(By.CSS_SELECTOR, "#site-table thead").text
    assert all(u in head for u in UNITS), f"units in the header: {head!r}"
    # The same formatter gives the thousands' dot (a figure above 999 is not always on the line).
    assert console.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/static/live.js').then(m => done([m.formatNumber(1234), m.formatNumber(0.5, 1)]));") \
        == ["1.234", "0,5"]
    # In English: the point and the comma.
    console.driver.get(console.base + "/lang/en")
    console.driver.get(console.base + "/console")
    console.wait_live_page()
    en = wait_figures(console, sid, "en")
    assert console.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/static/live.js').then(m => done([m.formatNumber(1234), m.formatNumber(0.5, 1)]));") \
        == ["1,234", "0.5"]
    print(f"\nconsole figures: vi {vi}, en {en}")
    console.send({"type": "close_meeting", "meeting": console.hnth("meeting")["id"]})


def test_booking_page_costs_and_file_size_in_the_page_language(srv, browsers):
    org = browser_session(srv.base, "so-tttt", PASSWORD)
    form = org.get(srv.base + "/bookings/new", timeout=10).text
    unit = re.search(r'<select name="host_unit">\s*<option value="(\d+)"', form).group(1)
    ids = {code: i for i, code in srv.query("SELECT id, code FROM sites")}
    d = (datetime.now(VN) + timedelta(days=9)).strftime("%d/%m/%Y")
    pdf = b"%PDF-1.4\n%" + b"x" * (1536 * 1024) + b"\n%%EOF\n"  # 1,5 MB
    r = org.post(srv.base + "/bookings/new", data=[
        ("csrf", csrf_of(form)), ("title", "Hội nghị có chi phí"), ("kind", "hoi_nghi"), ("host_unit", unit),
        ("chair", "Giám đốc Sở"), ("host_site", str(ids["tinh-uy"])), ("sites", str(ids[SITE])),
        ("date", d), ("start", "08:00"), ("end", "10:00"), ("prep", ""), ("notice_number", "9/STTTT"),
        ("notice_date", ""), ("action", "submit")], files={"notice_file": ("cong-van.pdf", pdf, "application/pdf")},
        allow_redirects=False, timeout=60)
    assert r.status_code == 303, f"registration: HTTP {r.status_code}"
    bid = int(r.headers["location"].rsplit("/", 1)[1])
    page = org.get(f"{srv.base}/bookings/{bid}", timeout=10).text
    for amount, category in (("1.234.567", "services"), ("2500000", "decoration")):
        c = org.post(f"{srv.base}/bookings/{bid}/costs", data={"csrf": csrf_of(page), "category": category,
                                                            "payer": "", "amount": amount, "description": "x"},
                     allow_redirects=False, timeout=10)
        assert c.status_code == 303, f"cost {amount}: HTTP {c.status_code}"

    p = browsers.new("organizer: booking page")
    drv = p.driver
    drv.get(srv.base + "/login")
    wait_for(lambda: drv.find_elements(By.NAME, "username"), T_PAGE, "login form")
    drv.find_element(By.NAME, "username").send_keys("so-tttt")
    drv.find_element(By.NAME, "password").send_keys(PASSWORD)
    drv.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "/login" not in drv.current_url, T_PAGE, "logged in")

    def shown(lang: str) -> tuple[list[str], str]:
        drv.get(f"{srv.base}/bookings/{bid}")
        wait_for(lambda: drv.find_elements(By.ID, "cost-list"), T_PAGE, f"the booking page's costs ({lang})")
        assert drv.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
        nums = [td.text for td in drv.find_elements(By.CSS_SELECTOR, "#cost-list .num")]
        return nums, drv.find_element(By.ID, "booking").text

    nums, text = shown("vi")
    assert nums[:2] == ["1.234.567 đ", "2.500.000 đ"], nums
    assert "3.734.567 đ" in nums, f"the host unit's total: {nums}"
    assert "(1,5 MB)" in text, f"the notice's size the Vietnamese way: {text[-400:]!r}"
    drv.get(srv.base + "/lang/en")
    nums, text = shown("en")
    assert nums[:2] == ["1,234,567 đ", "2,500,000 đ"], nums
    assert "3,734,567 đ" in nums, f"the host unit's total: {nums}"
    assert "(1.5 MB)" in text, f"the notice's size the English way: {text[-400:]!r}"
