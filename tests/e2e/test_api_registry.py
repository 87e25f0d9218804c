"""JSON API v1, registry writes, against a server of the test's own: a site's settings, a new
site and its unit, a site's roster (S3) and the line providers' contacts (L2) are changed on the
registry pages' use cases (services::registry), so a change made through the API shows on
/registry, /registry/sites/{id} and /directory, and one made on the pages shows in the API; the
audit trail names the token's account with the old and new values (A3); a site's technician
changes its own site's roster and no other (A1); bad input gets a JSON error naming the field,
and nothing is written. (Every route × role, beside its page form: test_route_matrix.py.)

Run: scripts/in-netns.sh python3 -m pytest -q -p no:cacheprovider tests/e2e/test_api_registry.py
"""

from __future__ import annotations

import html
import json

import pytest
from openapi_spec_validator import validate

from proto_util import EXTRA_ROLES, OwnServer, add_accounts, api_login, browser_session, csrf_of, session
from proto_util import assert_api_error as assert_error

PASSWORD = "Api-danh-muc-matkhau-2026!"
USERS = ["quantri", "dieuhanh", "kt-hong-dan", "dc-hong-dan"]


@pytest.fixture(scope="module")
def world(inside_netns):
    srv = OwnServer.fresh("apireg", PASSWORD).start()
    try:
        add_accounts(srv, [a for a in EXTRA_ROLES if a[0] == "kt-hong-dan"])
        tokens = {u: api_login(srv.base, u, PASSWORD)["token"] for u in USERS}
        yield srv, tokens
    finally:
        srv.stop()
        print(f"\napi-registry server log kept at {srv.log_path}")


def call(srv, token, method, path, **kw):
    h = {"Authorization": f"Bearer {token}"} if token else {}
    return session().request(method, srv.base + path, headers={**h, **kw.pop("headers", {})}, timeout=30, **kw)


def ok(r, status=200):
    assert r.status_code == status, f"{r.request.method} {r.url}: HTTP {r.status_code} {r.text[:400]}"
    return r.json() if status != 204 else None


def site(srv, code):
    return srv.query("SELECT id FROM sites WHERE code = ?", code)[0][0]


def unit(srv, code):
    return srv.query("SELECT id FROM units WHERE code = ?", code)[0][0]


def page(srv, user, path):
    r = browser_session(srv.base, user, PASSWORD).get(srv.base + path, timeout=10)
    assert r.status_code == 200, f"GET {path} as {user}: HTTP {r.status_code}"
    return html.unescape(r.text)


def post_form(srv, user, path, data):
    s = browser_session(srv.base, user, PASSWORD)
    csrf = csrf_of(s.get(srv.base + "/registry", timeout=10).text)
    r = s.post(srv.base + path, data={"csrf": csrf, **data}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, f"POST {path} as {user}: HTTP {r.status_code}"


def audited(srv, action, entity_id):
    rows = srv.query("SELECT actor, before_json, after_json FROM audit WHERE action = ? AND entity_id = ? "
                     "ORDER BY id DESC LIMIT 1", action, str(entity_id))
    assert rows, f"no audit entry {action} of {entity_id}"
    actor, before, after = rows[0]
    return actor, json.loads(before) if before else None, json.loads(after) if after else None


def counts(srv):
    return tuple(srv.query(f"SELECT COUNT(*) FROM {t}")[0][0]
                 for t in ["sites", "units", "technicians", "provider_contacts", "audit"])


def test_the_document_has_the_registry_writes(world):
    srv, _ = world
    doc = session().get(srv.base + "/api/v1/openapi.json", timeout=10).json()
    validate(doc)
    paths = doc["paths"]
    for p, methods in [("/api/v1/sites", ["get", "post"]), ("/api/v1/sites/{id}", ["get", "put"]),
                       ("/api/v1/sites/{id}/technicians", ["post"]),
                       ("/api/v1/sites/{id}/technicians/{tech}", ["put", "delete"]),
                       ("/api/v1/providers", ["get", "post"]), ("/api/v1/providers/{id}", ["put", "delete"])]:
        for m in methods:
            assert m in paths.get(p, {}), f"{m.upper()} {p} not in the document"
    assert "SiteSettingsIn" in doc["components"]["schemas"], sorted(doc["components"]["schemas"])


def test_a_site_s_settings_both_ways(world):
    srv, tokens = world
    vl = site(srv, "vinh-loi")
    was = ok(call(srv, tokens["dieuhanh"], "GET", f"/api/v1/sites/{vl}"))
    settings = {"room": "Phòng họp trực tuyến tầng 3", "address": "Thị trấn Châu Hưng",
                "equipment": "Camera PTZ, micrô cổ ngỗng", "room_rules": "Tắt chuông điện thoại.", "language": "en"}
    s = ok(call(srv, tokens["dieuhanh"], "PUT", f"/api/v1/sites/{vl}", json=settings))
    assert {k: s[k] for k in settings} == settings, s
    assert "Phòng họp trực tuyến tầng 3" in page(srv, "quantri", f"/registry/sites/{vl}")
    actor, before, after = audited(srv, "update_site", vl)
    assert actor == "dieuhanh" and before["room"] == was["room"] and after["room"] == settings["room"], after
    assert (before["language"], after["language"]) == ("vi", "en")
    # On the page, then in the API; the language left out keeps the site's.
    post_form(srv, "quantri", f"/registry/sites/{vl}", {**settings, "room": "Phòng họp sửa trên trang",
                                                         "language": "vi"})
    s = ok(call(srv, tokens["kt-hong-dan"], "GET", f"/api/v1/sites/{vl}"))
    assert (s["room"], s["language"]) == ("Phòng họp sửa trên trang", "vi"), s
    s = ok(call(srv, tokens["quantri"], "PUT", f"/api/v1/sites/{vl}", json={**settings, "language": None}))
    assert s["language"] == "vi", s


def test_a_new_site_both_ways(world):
    srv, tokens = world
    s = ok(call(srv, tokens["dieuhanh"], "POST", "/api/v1/sites",
                json={"code": "xa-vinh-hung", "name": "Xã Vĩnh Hưng", "unit_name": "UBND xã Vĩnh Hưng",
                      "unit_kind": "district"}), 201)
    assert (s["code"], s["name"], s["unit"]) == ("xa-vinh-hung", "Xã Vĩnh Hưng", "UBND xã Vĩnh Hưng"), s
    assert "Xã Vĩnh Hưng" in page(srv, "so-tttt", "/registry")
    assert audited(srv, "create_site", s["id"])[0] == "dieuhanh"
    assert audited(srv, "create_unit", unit(srv, "xa-vinh-hung"))[2]["kind"] == "district"
    # With an existing unit; and one made on the page shows in the API.
    other = ok(call(srv, tokens["quantri"], "POST", "/api/v1/sites",
                    json={"code": "xa-vinh-hung-2", "name": "Điểm cầu phụ Vĩnh Hưng",
                          "unit": unit(srv, "xa-vinh-hung")}), 201)
    assert other["unit"] == "UBND xã Vĩnh Hưng", other
    post_form(srv, "dieuhanh", "/registry/sites", {"code": "xa-ninh-thanh-loi", "name": "Xã Ninh Thạnh Lợi",
                                                    "unit": "", "unit_name": "UBND xã Ninh Thạnh Lợi",
                                                    "unit_kind": "district"})
    codes = {x["code"] for x in ok(call(srv, tokens["dc-hong-dan"], "GET", "/api/v1/sites"))}
    assert {"xa-vinh-hung", "xa-vinh-hung-2", "xa-ninh-thanh-loi"} <= codes, codes


def test_a_site_s_roster_both_ways_by_its_own_technician(world):
    srv, tokens = world
    hd, tu = site(srv, "hong-dan"), site(srv, "tinh-uy")
    kt = tokens["kt-hong-dan"]
    t = ok(call(srv, kt, "POST", f"/api/v1/sites/{hd}/technicians",
                json={"name": "Đỗ Văn Mạnh", "phone": "0291 3877 001", "email": "manh@hnth.local",
                      "trained": True, "trained_on": "2026-03-02"}), 201)
    assert (t["site_id"], t["name"], t["trained"], t["trained_on"]) == (hd, "Đỗ Văn Mạnh", True, "02/03/2026"), t
    for path in ["/directory", f"/registry/sites/{hd}"]:
        assert "Đỗ Văn Mạnh" in page(srv, "dieuhanh", path), path
    assert audited(srv, "add_technician", t["id"])[0] == "kt-hong-dan"
    t2 = ok(call(srv, kt, "PUT", f"/api/v1/sites/{hd}/technicians/{t['id']}",
                 json={"name": "Đỗ Văn Mạnh", "phone": "0291 3877 999", "trained": False}))
    assert (t2["phone"], t2["trained"]) == ("0291 3877 999", False), t2
    _, before, after = audited(srv, "update_technician", t["id"])
    assert (before["phone"], after["phone"]) == ("0291 3877 001", "0291 3877 999")
    assert "0291 3877 999" in page(srv, "dieuhanh", "/directory")
    # A1: not another site's roster, nor another site's technician through its own site.
    before = counts(srv)
    assert_error(call(srv, kt, "POST", f"/api/v1/sites/{tu}/technicians",
                      json={"name": "Người lạ", "phone": "0291 1"}), 403, "not_permitted", rule="A1", article="3")
    tu_tech = ok(call(srv, kt, "GET", f"/api/v1/sites/{tu}"))["technicians"][0]["id"]
    assert_error(call(srv, kt, "DELETE", f"/api/v1/sites/{tu}/technicians/{tu_tech}"), 403, rule="A1", article="3")
    assert_error(call(srv, kt, "DELETE", f"/api/v1/sites/{hd}/technicians/{tu_tech}"), 404, "not_found")
    assert_error(call(srv, tokens["dc-hong-dan"], "DELETE", f"/api/v1/sites/{hd}/technicians/{t['id']}"), 403,
                 rule="A1", article="3")
    assert counts(srv) == before
    ok(call(srv, kt, "DELETE", f"/api/v1/sites/{hd}/technicians/{t['id']}"), 204)
    assert "Đỗ Văn Mạnh" not in page(srv, "dieuhanh", "/directory")
    assert audited(srv, "remove_technician", t["id"])[1]["name"] == "Đỗ Văn Mạnh"
    # One added on the page shows in the directory of the API.
    post_form(srv, "kt-hong-dan", f"/registry/sites/{hd}/technicians",
              {"name": "Trương Thị Lan", "phone": "0291 3877 222", "trained": "1", "trained_on": "05/01/2026",
               "action": "save"})
    listed = {x["name"]: x for x in ok(call(srv, tokens["dc-hong-dan"], "GET", "/api/v1/technicians"))}
    assert listed["Trương Thị Lan"]["trained_on"] == "05/01/2026" and "Đỗ Văn Mạnh" not in listed


def test_provider_contacts_both_ways(world):
    srv, tokens = world
    op = tokens["dieuhanh"]
    vnpt = unit(srv, "vnpt")
    c = ok(call(srv, op, "POST", "/api/v1/providers",
                json={"unit": vnpt, "name": "Lâm Văn Tuyến", "phone": "0291 3000 222", "on_duty": True}), 201)
    assert (c["unit_id"], c["name"], c["on_duty"]) == (vnpt, "Lâm Văn Tuyến", True), c
    assert "Lâm Văn Tuyến" in page(srv, "dc-hong-dan", "/directory")
    c2 = ok(call(srv, op, "PUT", f"/api/v1/providers/{c['id']}",
                 json={"unit": vnpt, "name": "Lâm Văn Tuyến", "phone": "0291 3000 333", "email": "tuyen@vnpt.local"}))
    assert (c2["phone"], c2["email"], c2["on_duty"]) == ("0291 3000 333", "tuyen@vnpt.local", False), c2
    assert "0291 3000 333" in page(srv, "quantri", "/registry")
    ok(call(srv, op, "DELETE", f"/api/v1/providers/{c['id']}"), 204)
    assert "Lâm Văn Tuyến" not in page(srv, "quantri", "/registry")
    actions = [a for (a,) in srv.query("SELECT action FROM audit WHERE entity = 'provider_contact' "
                                       "AND entity_id = ? ORDER BY id", str(c["id"]))]
    assert actions == ["add_provider_contact", "update_provider_contact", "remove_provider_contact"], actions
    post_form(srv, "quantri", "/registry/providers", {"unit": str(vnpt), "name": "Hà Thị Cáp",
                                                      "phone": "0291 3000 444", "action": "save"})
    assert "Hà Thị Cáp" in {x["name"] for x in ok(call(srv, op, "GET", "/api/v1/providers"))}


def test_bad_input_gets_a_json_error_naming_the_field_and_writes_nothing(world):
    srv, tokens = world
    op = tokens["dieuhanh"]
    hd, vl = site(srv, "hong-dan"), site(srv, "vinh-loi")
    tech = ok(call(srv, op, "GET", f"/api/v1/sites/{hd}"))["technicians"][0]["id"]
    settings = {"room": "Phòng A", "address": "", "equipment": "", "room_rules": ""}
    before, vl_before = counts(srv), srv.query("SELECT * FROM sites WHERE id = ?", vl)
    put_site = lambda **kw: call(srv, op, "PUT", f"/api/v1/sites/{vl}", **kw)  # noqa: E731
    assert_error(put_site(data="room=x"), 415)
    assert_error(put_site(data="{not json", headers={"content-type": "application/json"}), 400, "bad_request")
    assert_error(put_site(json=[settings]), 400, "bad_request", field="body")
    assert_error(put_site(json={**settings, "room": 1}), 400, "bad_request", field="room")
    assert_error(put_site(json={"room": "Phòng A"}), 400, "bad_request", field="address")
    assert_error(put_site(json={**settings, "colour": "xanh"}), 400, "bad_request", field="colour")
    assert_error(put_site(json={**settings, "room": "x" * 201}), 422, "invalid", field="room")
    assert_error(put_site(json={**settings, "language": "fr"}), 422, "invalid", field="language")
    assert_error(call(srv, op, "PUT", "/api/v1/sites/abc", json=settings), 400, field="id")
    assert_error(call(srv, op, "PUT", "/api/v1/sites/999999", json=settings), 404, "not_found")
    new_site = lambda **b: call(srv, op, "POST", "/api/v1/sites", json=b)  # noqa: E731
    district = unit(srv, "hong-dan")
    assert_error(new_site(code="Sai Mã!", name="X", unit=district), 422, "invalid", field="code")
    assert_error(new_site(code="hong-dan", name="X", unit=district), 422, "invalid", field="code")
    assert_error(new_site(code="xa-moi", name=" ", unit=district), 422, "invalid", field="name")
    assert_error(new_site(code="xa-moi", name=5, unit=district), 400, "bad_request", field="name")
    assert_error(new_site(code="xa-moi", name="X", unit=999999), 422, "invalid", field="unit")
    assert_error(new_site(code="xa-moi", name="X", unit=district, unit_name="Y", unit_kind="district"), 400,
                 "bad_request", field="unit")
    assert_error(new_site(code="xa-moi", name="X", unit_name="UBND xã Mới"), 400, "bad_request", field="unit_kind")
    assert_error(new_site(code="xa-moi", name="X", unit_name="UBND xã Mới", unit_kind="kingdom"), 422, "invalid",
                 field="unit_kind")
    techs = f"/api/v1/sites/{hd}/technicians"
    good = {"name": "Người Thử", "phone": "0291 3800 000"}
    b = assert_error(call(srv, op, "POST", techs, json={**good, "phone": "abc", "email": "khong-hop-le"}), 422,
                     "invalid")
    assert {e["field"] for e in b["errors"]} == {"phone", "email"}, b
    assert_error(call(srv, op, "POST", techs, json={**good, "trained_on": "31/02/2026"}), 400, field="trained_on")
    assert_error(call(srv, op, "POST", techs, json={**good, "trained": "yes"}), 400, field="trained")
    assert_error(call(srv, op, "POST", techs, json={"phone": "0291"}), 400, field="name")
    assert_error(call(srv, op, "POST", "/api/v1/sites/999999/technicians", json=good), 404, "not_found")
    assert_error(call(srv, op, "PUT", f"{techs}/999999", json=good), 404, "not_found")
    assert_error(call(srv, op, "PUT", f"{techs}/{tech}", json={**good, "name": ""}), 422, "invalid", field="name")
    assert_error(call(srv, op, "DELETE", f"{techs}/999999"), 404, "not_found")
    assert_error(call(srv, op, "DELETE", f"{techs}/abc"), 400, field="id")
    vnpt = unit(srv, "vnpt")
    contact = {"unit": vnpt, "name": "Người Thử", "phone": "0291 3000 000"}
    assert_error(call(srv, op, "POST", "/api/v1/providers", json={**contact, "unit": district}), 422, "invalid",
                 field="unit")
    assert_error(call(srv, op, "POST", "/api/v1/providers", json={**contact, "unit": "vnpt"}), 400, field="unit")
    assert_error(call(srv, op, "POST", "/api/v1/providers", json={**contact, "email": "x@"}), 422, "invalid",
                 field="email")
    assert_error(call(srv, op, "PUT", "/api/v1/providers/999999", json=contact), 404, "not_found")
    assert_error(call(srv, op, "DELETE", "/api/v1/providers/999999"), 404, "not_found")
    for method, path in [("PUT", f"/api/v1/sites/{vl}"), ("POST", "/api/v1/sites"), ("POST", techs),
                         ("DELETE", f"{techs}/{tech}"), ("POST", "/api/v1/providers")]:
        assert_error(call(srv, None, method, path, json={}), 401, "unauthenticated")
    assert counts(srv) == before
    assert srv.query("SELECT * FROM sites WHERE id = ?", vl) == vl_before
