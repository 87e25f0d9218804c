"""Account administration and rule A1 (Art. 3): no account grants a role above its own or acts on
(unlocks, disables, enables, sets the password of) an account above its own.

Against an own server, over HTTP and in Chromium (the operator's new-account form): the operator
(`dieuhanh`) is refused creating an administrator and acting on `quantri` (HTTP 403, a Vietnamese
message citing Điều 3, nothing changed, `quantri` still logs in with its password), is not
offered what it may not do, and still manages the accounts at or below its own role; the
administrator (`quantri`) still does everything.

Run: scripts/in-netns.sh python3 -m pytest -q -p no:cacheprovider tests/e2e/test_accounts.py
"""

from __future__ import annotations

import html
import re

import pytest

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from e2e_util import T_PAGE, BrowserFactory, wait_for
from proto_util import OwnServer, browser_session, csrf_of, error_text, form_login

PASSWORD = "Accounts-matkhau-2026!"
NEW_PASSWORD = "Mat-khau-moi-cua-quantri-1"


@pytest.fixture(scope="module")
def srv(inside_netns):
    s = OwnServer.fresh("accounts", PASSWORD).start()
    try:
        yield s
    finally:
        s.stop()
        print(f"\naccounts-test server log kept at {s.log_path}")


@pytest.fixture(scope="module")
def browsers(srv):
    with BrowserFactory(base=srv.base, password=PASSWORD) as f:
        yield f


@pytest.fixture(scope="module")
def op(srv):
    return browser_session(srv.base, "dieuhanh", PASSWORD)


@pytest.fixture(scope="module")
def admin(srv):
    return browser_session(srv.base, "quantri", PASSWORD)


def account_id(srv: OwnServer, username: str) -> int:
    rows = srv.query("SELECT id FROM accounts WHERE username = ?", username)
    assert rows, f"no account {username}"
    return rows[0][0]


def state(srv: OwnServer) -> tuple:
    """Everything an account action could change."""
    return (srv.query("SELECT id, username, role, password_hash, failed_logins, locked_until, disabled "
                      "FROM accounts ORDER BY id"),
            srv.query("SELECT COUNT(*) FROM audit")[0][0])


def accounts_page(s, srv: OwnServer) -> str:
    r = s.get(srv.base + "/admin/accounts", timeout=10)
    assert r.status_code == 200, f"GET /admin/accounts: HTTP {r.status_code}"
    return r.text


def role_options(page: str) -> list[str]:
    m = re.search(r'<select name="role">(.*?)</select>', page, re.S)
    assert m, "no role select on /admin/accounts"
    return re.findall(r'<option value="([a-z_]+)"', m.group(1))


def create(s, srv: OwnServer, username: str, role: str, site: str = "", unit: str = ""):
    csrf = csrf_of(accounts_page(s, srv))
    return s.post(srv.base + "/admin/accounts", allow_redirects=False, timeout=30, data={
        "csrf": csrf, "username": username, "display_name": f"Tài khoản {username}", "role": role,
        "site": site, "unit": unit, "password": PASSWORD})


def act(s, srv: OwnServer, target: int, what: str, password: str = ""):
    csrf = csrf_of(accounts_page(s, srv))
    return s.post(f"{srv.base}/admin/accounts/{target}/{what}", data={"csrf": csrf, "password": password},
                  allow_redirects=False, timeout=30)


def alert(r) -> str:
    return html.unescape(error_text(r.text) or "")


def test_operator_may_not_create_an_administrator(srv, op):
    before = state(srv)
    r = create(op, srv, "quantri-gia", "admin")
    assert r.status_code == 403, f"operator creating an administrator: HTTP {r.status_code}"
    msg = alert(r)
    assert "Quản trị hệ thống" in msg and "(Điều 3)" in msg, f"refusal not explained in Vietnamese: {msg!r}"
    assert srv.query("SELECT COUNT(*) FROM accounts WHERE username = 'quantri-gia'")[0][0] == 0, \
        "the administrator account was created"
    assert state(srv) == before, "something changed on a refused creation"
    offered = role_options(accounts_page(op, srv))
    assert "admin" not in offered, f"the operator is offered the administrator role: {offered}"
    assert "operator" in offered and "organizer" in offered, f"roles offered to the operator: {offered}"


def test_in_the_browser_the_operator_is_not_offered_the_administrator_role(srv, browsers):
    """The operator, in Chromium, opens /admin/accounts: the new-account form offers the roles at
    or below its own, in Vietnamese, and not the administrator's; an administrator forged into
    the form (as anyone could with the browser's tools) is refused with a Vietnamese message
    citing Art. 3, and no account is made."""
    page = browsers.new("operator dieuhanh")
    page.sign_in("dieuhanh", PASSWORD, "/console")
    page.open("/admin/accounts", "form#new-account select[name=role]")
    drv = page.driver
    role = Select(drv.find_element(By.CSS_SELECTOR, "form#new-account select[name=role]"))
    offered = {o.get_attribute("value"): o.text for o in role.options}
    assert "admin" not in offered, f"the operator is offered the administrator role: {offered}"
    assert offered.get("operator") == "Cán bộ điều hành Trung tâm điều khiển" and "organizer" in offered, offered
    assert "Quản trị hệ thống" not in offered.values(), offered
    violations = srv.query("SELECT COUNT(*) FROM violations")[0][0]
    before = state(srv)
    page.js("""const s = document.querySelector('form#new-account select[name=role]');
               s.add(new Option('Quản trị hệ thống', 'admin')); s.value = 'admin';""")
    form = drv.find_element(By.ID, "new-account")
    for name, value in [("username", "quantri-gia-trinh"), ("display_name", "Quản trị giả"), ("password", PASSWORD)]:
        form.find_element(By.NAME, name).send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    alert = wait_for(lambda: [e.text for e in drv.find_elements(By.CSS_SELECTOR, "p.error[role=alert]")], T_PAGE,
                     "operator: the refusal of the forged administrator role", detail=lambda: page.text()[:600])
    assert "Quản trị hệ thống" in alert[0] and "(Điều 3)" in alert[0], f"refusal not explained: {alert}"
    assert page.js("return document.documentElement.lang") == "vi"
    assert state(srv) == before, "something changed on a refused creation"
    assert srv.query("SELECT COUNT(*) FROM accounts WHERE username = 'quantri-gia-trinh'")[0][0] == 0
    assert srv.query("SELECT COUNT(*) FROM violations")[0][0] == violations + 1, "the refusal is not recorded (R4)"


@pytest.mark.parametrize("what", ["disable", "password", "unlock", "enable"])
def test_operator_may_not_act_on_the_administrator(srv, op, what):
    qid = account_id(srv, "quantri")
    before = state(srv)
    r = act(op, srv, qid, what, password=NEW_PASSWORD)
    assert r.status_code == 403, f"operator {what} quantri: HTTP {r.status_code}"
    msg = alert(r)
    assert "Quản trị hệ thống" in msg and "(Điều 3)" in msg, f"refusal not explained in Vietnamese: {msg!r}"
    assert state(srv) == before, f"something changed on a refused {what}"
    # The administrator still logs in with its own password, not with the one the operator tried.
    _, r = form_login(srv.base, "quantri", NEW_PASSWORD)
    assert r.status_code == 401, f"quantri logs in with the operator's password: HTTP {r.status_code}"
    _, r = form_login(srv.base, "quantri", PASSWORD)
    assert r.status_code == 303, f"quantri cannot log in after the operator's {what}: HTTP {r.status_code}"
    page = accounts_page(op, srv)
    assert f"/admin/accounts/{qid}/" not in page, "the operator is offered actions on the administrator"


def test_operator_still_manages_accounts_at_or_below_its_role(srv, op):
    unit = srv.query("SELECT id FROM units WHERE code = 'so-tttt'")[0][0]
    r = create(op, srv, "to-chuc-moi", "organizer", unit=str(unit))
    assert r.status_code == 303, f"operator creating an organizer: HTTP {r.status_code} {alert(r)!r}"
    assert srv.query("SELECT role, unit_id FROM accounts WHERE username = 'to-chuc-moi'") == [("organizer", unit)]
    r = create(op, srv, "dieuhanh-2", "operator")
    assert r.status_code == 303, f"operator creating an operator: HTTP {r.status_code} {alert(r)!r}"
    new = account_id(srv, "to-chuc-moi")
    page = accounts_page(op, srv)
    assert f"/admin/accounts/{new}/disable" in page and f"/admin/accounts/{new}/password" in page
    assert act(op, srv, new, "password", password="Mat-khau-to-chuc-2026").status_code == 303
    browser_session(srv.base, "to-chuc-moi", "Mat-khau-to-chuc-2026")
    assert act(op, srv, new, "disable").status_code == 303
    assert srv.query("SELECT disabled FROM accounts WHERE id = ?", new) == [(1,)]
    assert act(op, srv, new, "enable").status_code == 303
    assert srv.query("SELECT disabled FROM accounts WHERE id = ?", new) == [(0,)]
    actions = [a for (a,) in srv.query("SELECT action FROM audit WHERE actor = 'dieuhanh' ORDER BY id")]
    assert actions[-5:] == ["create_account", "create_account", "account_password", "account_disable",
                            "account_enable"], actions


def test_administrator_still_does_everything(srv, admin):
    assert set(role_options(accounts_page(admin, srv))) >= {"admin", "operator", "organizer", "site_device"}
    r = create(admin, srv, "quantri-2", "admin")
    assert r.status_code == 303, f"administrator creating an administrator: HTTP {r.status_code} {alert(r)!r}"
    other = account_id(srv, "quantri-2")
    for what, password in [("password", "Mat-khau-quantri-2-moi"), ("unlock", ""), ("disable", ""), ("enable", "")]:
        r = act(admin, srv, other, what, password=password)
        assert r.status_code == 303, f"administrator {what} quantri-2: HTTP {r.status_code} {alert(r)!r}"
    browser_session(srv.base, "quantri-2", "Mat-khau-quantri-2-moi")
    op_id = account_id(srv, "dieuhanh")
    r = act(admin, srv, op_id, "disable")
    assert r.status_code == 303 and srv.query("SELECT disabled FROM accounts WHERE id = ?", op_id) == [(1,)]
    assert act(admin, srv, op_id, "enable").status_code == 303
    assert srv.query("SELECT disabled FROM accounts WHERE id = ?", op_id) == [(0,)]


def selected_role(page: str) -> list[str]:
    m = re.search(r'<select name="role">(.*?)</select>', page, re.S)
    assert m, "no role select on /admin/accounts"
    return re.findall(r'<option value="([a-z_]+)"\s+selected', m.group(1))


def test_the_new_account_form_offers_the_lowest_role_first(srv):
    """A new account is not an administrator unless someone chooses so: the form pre-selects the
    lowest role the user may grant (the first of them in the regulation's order), for the
    administrator as for the operator, and again after a refused escalation."""
    # Own sessions: the operator's was closed when the administrator disabled it above.
    admin = browser_session(srv.base, "quantri", PASSWORD)
    op = browser_session(srv.base, "dieuhanh", PASSWORD)
    for who, s in [("quantri", admin), ("dieuhanh", op)]:
        assert selected_role(accounts_page(s, srv)) == ["site_technician"], \
            f"{who}: the role pre-selected on /admin/accounts"
    r = create(op, srv, "quantri-gia-2", "admin")
    assert r.status_code == 403, f"operator creating an administrator: HTTP {r.status_code}"
    assert selected_role(r.text) == ["site_technician"], "the role pre-selected after a refusal"
