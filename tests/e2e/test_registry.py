"""The registry over HTTP: sites and units (S2), technicians with their flags (S3), the
directory (S1), line provider contacts (L2), accounts (A1, A2); validation in Vietnamese, role
checks on the server, audit entries, nothing half-written."""

from __future__ import annotations

import re
import tempfile

import pytest

from proto_util import OwnServer, Ws, api_login, browser_session, csrf_of, session

PASSWORD = "Registry-matkhau-2026!"


@pytest.fixture(scope="module")
def srv(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-registry-data-")
    logs = tempfile.mkdtemp(prefix="hnth-registry-log-")
    s = OwnServer(data_dir=data, password=PASSWORD, log_path=f"{logs}/server.log").start()
    try:
        yield s
    finally:
        s.stop()


def login(srv, user):
    s = browser_session(srv.base, user, PASSWORD)
    return s, csrf_of(s.get(srv.base + "/registry", timeout=10).text)


def site_id(srv, code):
    return srv.query("SELECT id FROM sites WHERE code = ?", code)[0][0]


def test_roster_flags_and_directory(srv):
    s, _ = login(srv, "dieuhanh")
    page = s.get(srv.base + "/registry", timeout=10).text
    assert "Điểm cầu Huyện Đông Hải chưa có cán bộ kỹ thuật" in page
    assert "Trần Thị Hòa của điểm cầu Huyện Hòa Bình chưa được tập huấn" in page
    d = s.get(srv.base + "/directory", timeout=10)
    assert d.status_code == 200 and "Nguyễn Văn Bình" in d.text and "Phạm Văn Trực" in d.text
    # every logged-in role may read the directory (S1), a site device too
    dev = browser_session(srv.base, "dc-hong-dan", PASSWORD)
    assert dev.get(srv.base + "/directory", timeout=10).status_code == 200


def test_technician_validation_then_flag_cleared(srv):
    s, csrf = login(srv, "dieuhanh")
    dh = site_id(srv, "dong-hai")
    before = srv.query("SELECT COUNT(*) FROM technicians")[0][0]
    bad = s.post(f"{srv.base}/registry/sites/{dh}/technicians",
                 data={"csrf": csrf, "name": "Võ Văn Hải", "phone": "abc", "email": "not-an-address", "action": "save"},
                 timeout=10)
    assert bad.status_code == 422
    assert "Số điện thoại không hợp lệ" in bad.text and "Địa chỉ thư điện tử không hợp lệ" in bad.text
    assert srv.query("SELECT COUNT(*) FROM technicians")[0][0] == before, "a refused technician was saved"
    ok = s.post(f"{srv.base}/registry/sites/{dh}/technicians",
                data={"csrf": csrf, "name": "Võ Văn Hải", "phone": "0291 3899 999", "email": "hai@hnth.local",
                      "trained": "1", "trained_on": "01/11/2026", "action": "save"}, timeout=10)
    assert ok.status_code == 200 and "Võ Văn Hải" in ok.text
    page = s.get(srv.base + "/registry", timeout=10).text
    assert "Điểm cầu Huyện Đông Hải chưa có cán bộ kỹ thuật" not in page
    audit = srv.query("SELECT action, after_json FROM audit WHERE entity = 'technician' ORDER BY id DESC LIMIT 1")
    assert audit and audit[0][0] == "add_technician" and "Võ Văn Hải" in audit[0][1]


def test_site_technician_scope_and_csrf(srv):
    # a site device may not edit any roster; without the CSRF token nothing is accepted
    dev = browser_session(srv.base, "dc-hong-dan", PASSWORD)
    hd = site_id(srv, "hong-dan")
    r = dev.post(f"{srv.base}/registry/sites/{hd}/technicians",
                 data={"csrf": "x", "name": "X", "phone": "1", "action": "save"}, timeout=10)
    assert r.status_code == 403
    s, _ = login(srv, "dieuhanh")
    r = s.post(f"{srv.base}/registry/sites/{hd}/technicians", data={"name": "X", "phone": "1"}, timeout=10)
    assert r.status_code == 403


def test_create_site_with_new_unit_shows_on_console(srv):
    s, csrf = login(srv, "quantri")
    token = api_login(srv.base, "dieuhanh", PASSWORD)["token"]
    ws = Ws.open(srv.base, token, "console")
    ws.expect_type("sites")
    bad = s.post(srv.base + "/registry/sites",
                 data={"csrf": csrf, "code": "Sai Mã!", "name": "Điểm cầu mới", "unit": "", "unit_name": "", "unit_kind": "district"},
                 timeout=10)
    assert bad.status_code == 422 and "Mã không hợp lệ" in bad.text
    n = srv.query("SELECT COUNT(*) FROM sites")[0][0]
    r = s.post(srv.base + "/registry/sites",
               data={"csrf": csrf, "code": "xa-ninh-quoi", "name": "Xã Ninh Quới", "unit": "",
                     "unit_name": "UBND xã Ninh Quới", "unit_kind": "district"}, timeout=10)
    assert r.status_code == 200, r.text[:300]
    assert srv.query("SELECT COUNT(*) FROM sites")[0][0] == n + 1
    assert srv.query("SELECT COUNT(*) FROM audit WHERE action IN ('create_site', 'create_unit')")[0][0] == 2
    # the same code again is refused, nothing added
    again = s.post(srv.base + "/registry/sites",
                   data={"csrf": csrf, "code": "xa-ninh-quoi", "name": "Trùng", "unit": "1"}, timeout=10)
    assert again.status_code == 422 and "Mã này đã có" in again.text
    assert srv.query("SELECT COUNT(*) FROM sites")[0][0] == n + 1
    # the console is told at once
    ws.expect(lambda m: m.get("type") == "sites" and any(x["code"] == "xa-ninh-quoi" for x in m["list"]),
              "the new site in a `sites` message")
    ws.close()
    # a site device may not create sites
    devs = browser_session(srv.base, "dc-hong-dan", PASSWORD)
    assert devs.post(srv.base + "/registry/sites", data={"csrf": "x", "code": "abc", "name": "x"}, timeout=10).status_code == 403


def test_provider_contacts(srv):
    s, csrf = login(srv, "dieuhanh")
    vnpt = srv.query("SELECT id FROM units WHERE kind = 'line_provider'")[0][0]
    bad = s.post(srv.base + "/registry/providers",
                 data={"csrf": csrf, "unit": str(vnpt), "name": "Lý Văn Mạng", "phone": "0291 3000 111",
                       "email": "khong-hop-le", "action": "save"}, timeout=10)
    assert bad.status_code == 422 and "Địa chỉ thư điện tử không hợp lệ" in bad.text
    ok = s.post(srv.base + "/registry/providers",
                data={"csrf": csrf, "unit": str(vnpt), "name": "Lý Văn Mạng", "phone": "0291 3000 111",
                      "email": "mang@vnpt.hnth.local", "on_duty": "1", "action": "save"}, timeout=10)
    assert ok.status_code == 200 and "Lý Văn Mạng" in ok.text
    pid = srv.query("SELECT id FROM provider_contacts WHERE name = 'Lý Văn Mạng'")[0][0]
    rm = s.post(srv.base + "/registry/providers", data={"csrf": csrf, "id": str(pid), "action": "remove"}, timeout=10)
    assert rm.status_code == 200
    assert not srv.query("SELECT id FROM provider_contacts WHERE id = ?", pid)
    assert srv.query("SELECT COUNT(*) FROM audit WHERE entity = 'provider_contact'")[0][0] == 2


def test_accounts_admin(srv):
    s, _ = login(srv, "quantri")
    page = s.get(srv.base + "/admin/accounts", timeout=10)
    assert page.status_code == 200
    csrf = csrf_of(page.text)
    bad = s.post(srv.base + "/admin/accounts",
                 data={"csrf": csrf, "username": "kt hong dan", "display_name": "", "role": "site_technician",
                       "site": "", "unit": "", "password": "ngan"}, timeout=10)
    assert bad.status_code == 422
    for msg in ("Tên đăng nhập 3–40 ký tự", "Vai trò này cần chọn điểm cầu", "Mật khẩu cần ít nhất 10 ký tự"):
        assert msg in bad.text, msg
    hd = site_id(srv, "hong-dan")
    ok = s.post(srv.base + "/admin/accounts",
                data={"csrf": csrf, "username": "kt-hong-dan", "display_name": "Lê Văn Kỹ", "role": "site_technician",
                      "site": str(hd), "unit": "", "password": "Kythuat-HongDan-1"}, timeout=10)
    assert ok.status_code == 200 and "kt-hong-dan" in ok.text
    # the new technician account edits its own site's roster only (A1)
    kt = browser_session(srv.base, "kt-hong-dan", "Kythuat-HongDan-1")
    own = kt.get(f"{srv.base}/registry/sites/{hd}", timeout=10)
    assert own.status_code == 200
    other = kt.get(f"{srv.base}/registry/sites/{site_id(srv, 'vinh-loi')}", timeout=10)
    assert other.status_code == 403
    # disabling closes its sessions
    acc = srv.query("SELECT id FROM accounts WHERE username = 'kt-hong-dan'")[0][0]
    r = s.post(f"{srv.base}/admin/accounts/{acc}/disable", data={"csrf": csrf}, timeout=10)
    assert r.status_code == 200
    assert kt.get(f"{srv.base}/registry/sites/{hd}", allow_redirects=False, timeout=10).status_code in (303, 302, 401)
    # a site device may not open the accounts page
    dev = browser_session(srv.base, "dc-hong-dan", PASSWORD)
    assert dev.get(srv.base + "/admin/accounts", timeout=10).status_code == 403
    assert re.search(r"account_disable", " ".join(a for (a,) in srv.query("SELECT action FROM audit")))
