//! The audit page (`/admin/audit`): the audit trail of configuration changes (A3) and the
//! violations the system recorded (R4), for whoever the rules let view them
//! (`Action::ViewAudit`). Actions, objects and fields are shown by their Vietnamese (or English)
//! labels, each change as "field: old → new" with only what changed; filters by date
//! (dd/mm/yyyy, Asia/Ho_Chi_Minh), site, user and kind run in SQL (`store::audit::entries`,
//! `store::audit::violations`).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hnth_rules::booking::{BookingKind, BookingStatus};
use hnth_rules::costs::{CostCategory, Payer};
use hnth_rules::roles::{Action, Role};
use hnth_rules::time::{format_datetime_vi, local, parse_date_vi};
use hnth_rules::RuleId;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store;
use crate::store::audit::{AuditFilter, AuditRow, ViolationRow};
use crate::web::{page, require, AppError, AppState, Lang, LoggedIn};

/// Every action the server writes into the audit trail (`store::audit::AuditEntry::action`), in the order
/// the kind filter offers them. Each has the labels `audit_action_<key>` in `i18n/`.
pub const ACTIONS: &[&str] = &[
    "create_booking",
    "edit_booking",
    "booking_submit",
    "booking_approve",
    "booking_reject",
    "booking_cancel",
    "booking_held",
    "booking_close",
    "booking_on_duty",
    "displace_booking",
    "add_cost",
    "open_meeting",
    "close_meeting",
    "meeting_add_site",
    "meeting_drop_site",
    "meeting_params",
    "create_site",
    "update_site",
    "create_unit",
    "add_technician",
    "update_technician",
    "remove_technician",
    "add_provider_contact",
    "update_provider_contact",
    "remove_provider_contact",
    "create_account",
    "account_unlock",
    "account_disable",
    "account_enable",
    "account_password",
    "reset_password",
];

/// Every kind of object in the audit trail (`store::audit::AuditEntry::entity`); labels
/// `audit_entity_<key>` (checked by the tests, which read the sources).
#[cfg(test)]
const ENTITIES: &[&str] = &[
    "account",
    "booking",
    "meeting",
    "site",
    "unit",
    "technician",
    "provider_contact",
];

/// The kind filter's value for the recorded violations.
pub(crate) const KIND_VIOLATION: &str = "violation";

/// The fields of the before/after values, in the order they are shown (others follow,
/// alphabetically). Labels `audit_field_<entity>_<key>`, else `audit_field_<key>`.
const FIELD_ORDER: &[&str] = &[
    "username",
    "role",
    "site_id",
    "unit_id",
    "code",
    "name",
    "title",
    "kind",
    "host_unit",
    "chair",
    "host_site",
    "sites",
    "preparation_start",
    "official_start",
    "official_end",
    "emergency",
    "notice_number",
    "notice_date",
    "notice_file",
    "status",
    "reason",
    "displaced_by",
    "on_duty_contact",
    "on_duty",
    "unit",
    "phone",
    "email",
    "trained",
    "trained_on",
    "room",
    "address",
    "equipment",
    "room_rules",
    "cost",
    "category",
    "payer",
    "amount_vnd",
    "booking",
    "closed_at",
    "max_height",
    "max_kbps",
    "rotate_secs",
];

const MAX_ROWS: i64 = 5000;
const DEFAULT_ROWS: i64 = 200;

/// The filters as typed (query string); all optional.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) to: String,
    #[serde(default)]
    pub(crate) site: String,
    #[serde(default)]
    pub(crate) user: String,
    #[serde(default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) limit: String,
}

/// What the filters ask for, checked.
#[derive(Debug, PartialEq)]
pub(crate) struct Wanted {
    pub(crate) filter: AuditFilter,
    pub(crate) audit: bool,
    pub(crate) violations: bool,
    pub(crate) limit: i64,
}

/// The query checked against the known sites and actions (the page and the API alike); `Err`
/// is the i18n key of the message.
pub(crate) fn parse_query(q: &AuditQuery, site_ids: &[i64]) -> Result<Wanted, &'static str> {
    let day = |s: &str, next: bool| -> Result<Option<i64>, &'static str> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        let d = parse_date_vi(s).ok_or("audit_err_date")?;
        let d = if next { d.succ_opt() } else { Some(d) }.ok_or("audit_err_date")?;
        use chrono::Datelike;
        let t = local(d.year(), d.month(), d.day(), 0, 0).ok_or("audit_err_date")?;
        Ok(Some(t.timestamp()))
    };
    let from = day(&q.from, false)?;
    let until = day(&q.to, true)?;
    if let (Some(f), Some(u)) = (from, until) {
        if f >= u {
            return Err("audit_err_range");
        }
    }
    let site = match q.site.trim() {
        "" => None,
        s => Some(
            s.parse::<i64>()
                .ok()
                .filter(|id| site_ids.contains(id))
                .ok_or("audit_err_site")?,
        ),
    };
    let kind = q.kind.trim();
    if !(kind.is_empty() || kind == KIND_VIOLATION || ACTIONS.contains(&kind)) {
        return Err("audit_err_kind");
    }
    let limit = match q.limit.trim() {
        "" => DEFAULT_ROWS,
        s => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_ROWS).contains(n))
            .ok_or("audit_err_limit")?,
    };
    let user = q.user.trim();
    Ok(Wanted {
        filter: AuditFilter {
            from,
            until,
            site,
            actor: (!user.is_empty()).then(|| user.to_string()),
            action: (!kind.is_empty() && kind != KIND_VIOLATION).then(|| kind.to_string()),
        },
        audit: kind != KIND_VIOLATION,
        violations: kind.is_empty() || kind == KIND_VIOLATION,
        limit,
    })
}

/// One audit entry as shown.
#[derive(Debug, Serialize)]
struct Entry {
    at: i64,
    actor: String,
    action: String,
    entity: String,
    /// The object's name, or its id when it has none (any more).
    name: String,
    entity_id: String,
    changes: Vec<Change>,
}

/// One field of an entry: what it was and what it became (`None`: not set).
#[derive(Debug, PartialEq, Serialize)]
struct Change {
    field: String,
    old: Option<String>,
    new: Option<String>,
}

/// One recorded violation as shown.
#[derive(Debug, Serialize)]
struct Breach {
    at: i64,
    rule: String,
    /// What the rule asks and its article, e.g. "Chỉ Trung tâm điều khiển kết nối các điểm cầu
    /// (điểm c khoản 2 Điều 7)".
    title: String,
    site: Option<String>,
    account: Option<String>,
    detail: String,
}

/// What the labels of an entry need: the language and the names behind the ids it holds.
struct Names<'a> {
    lang: Lang,
    t: &'a BTreeMap<String, String>,
    sites: BTreeMap<i64, String>,
    units: BTreeMap<i64, String>,
    contacts: BTreeMap<i64, String>,
}

impl Names<'_> {
    fn text(&self, key: &str) -> Option<String> {
        self.t.get(key).cloned()
    }

    fn pick(&self, vi: &str, en: &str) -> String {
        if self.lang == Lang::Vi { vi } else { en }.to_string()
    }

    fn action(&self, key: &str) -> String {
        self.text(&format!("audit_action_{key}"))
            .unwrap_or_else(|| key.to_string())
    }

    fn entity(&self, key: &str) -> String {
        self.text(&format!("audit_entity_{key}"))
            .unwrap_or_else(|| key.to_string())
    }

    fn field(&self, entity: &str, key: &str) -> String {
        self.text(&format!("audit_field_{entity}_{key}"))
            .or_else(|| self.text(&format!("audit_field_{key}")))
            .unwrap_or_else(|| key.to_string())
    }

    /// A stored value as a reader understands it; `None` for nothing (null, "", []).
    fn value(&self, entity: &str, field: &str, v: &Value) -> Option<String> {
        let by_id = |names: &BTreeMap<i64, String>, id: i64| {
            names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
        };
        match v {
            Value::Null => None,
            Value::Bool(b) => self.text(if *b { "audit_yes" } else { "audit_no" }),
            Value::Number(n) => {
                let Some(i) = n.as_i64() else {
                    return Some(n.to_string());
                };
                Some(match field {
                    "site_id" | "host_site" | "sites" => by_id(&self.sites, i),
                    "unit_id" | "host_unit" => by_id(&self.units, i),
                    "on_duty_contact" => by_id(&self.contacts, i),
                    "amount_vnd" => format!(
                        "{} đ",
                        crate::web::numbers::format_number(i as f64, 0, self.lang)
                    ),
                    "displaced_by" | "cost" => format!("#{i}"),
                    _ => i.to_string(),
                })
            }
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(self.code(entity, field, s)),
            Value::Array(items) => {
                let shown: Vec<String> = items
                    .iter()
                    .filter_map(|x| self.value(entity, field, x))
                    .collect();
                (!shown.is_empty()).then(|| shown.join(", "))
            }
            Value::Object(o) => match o.get("name") {
                Some(Value::String(name)) => Some(name.clone()),
                _ => Some(v.to_string()),
            },
        }
    }

    /// A string value: the label of the code it is, a time in local time, or itself.
    fn code(&self, entity: &str, field: &str, s: &str) -> String {
        let labelled = match field {
            "status" => BookingStatus::parse(s).map(|x| self.pick(x.label_vi(), x.label_en())),
            "role" => Role::parse(s).map(|x| self.pick(x.label_vi(), x.label_en())),
            "kind" if entity == "unit" => self.text(&format!("unit_{s}")),
            "kind" => BookingKind::parse(s).map(|x| self.pick(x.label_vi(), x.label_en())),
            "category" => CostCategory::parse(s).map(|x| self.pick(x.label_vi(), x.label_en())),
            "payer" => Payer::parse(s).map(|x| self.pick(x.label_vi(), x.label_en())),
            _ => None,
        };
        labelled
            .or_else(|| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| format_datetime_vi(t.to_utc()))
            })
            .unwrap_or_else(|| s.to_string())
    }

    /// The fields of an entry: everything set when something was created or removed, only what
    /// changed otherwise.
    fn changes(&self, entity: &str, before: Option<&str>, after: Option<&str>) -> Vec<Change> {
        let parse = |s: Option<&str>| -> Option<serde_json::Map<String, Value>> {
            let v: Value = serde_json::from_str(s?).ok()?;
            match v {
                Value::Object(o) => Some(o),
                other => Some(serde_json::Map::from_iter([("value".to_string(), other)])),
            }
        };
        let (b, a) = (parse(before), parse(after));
        let mut keys: Vec<&String> = b.iter().chain(a.iter()).flat_map(|m| m.keys()).collect();
        keys.sort_by_key(|k| {
            let i = FIELD_ORDER.iter().position(|f| f == k);
            (i.unwrap_or(FIELD_ORDER.len()), k.as_str())
        });
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| {
                let old = b
                    .as_ref()
                    .and_then(|m| m.get(k))
                    .and_then(|v| self.value(entity, k, v));
                let new = a
                    .as_ref()
                    .and_then(|m| m.get(k))
                    .and_then(|v| self.value(entity, k, v));
                (old != new).then(|| Change {
                    field: self.field(entity, k),
                    old,
                    new,
                })
            })
            .collect()
    }

    fn entry(&self, r: AuditRow) -> Entry {
        Entry {
            at: r.at,
            action: self.action(&r.action),
            entity: self.entity(&r.entity),
            name: r.entity_name.clone().unwrap_or_else(|| {
                if r.entity_id.parse::<i64>().is_ok() {
                    format!("#{}", r.entity_id)
                } else {
                    r.entity_id.clone()
                }
            }),
            changes: self.changes(&r.entity, r.before_json.as_deref(), r.after_json.as_deref()),
            entity_id: r.entity_id,
            actor: r.actor,
        }
    }

    fn breach(&self, v: ViolationRow) -> Breach {
        let title = RuleId::parse(&v.rule).map(|rule| {
            if self.lang == Lang::Vi {
                format!("{} ({})", rule.title_vi(), rule.article_vi())
            } else {
                format!("{} ({})", rule.title_en(), rule.article_en())
            }
        });
        Breach {
            at: v.at,
            title: title.unwrap_or_default(),
            site: v.site,
            account: v.account,
            detail: match (self.lang, v.detail_vi) {
                (Lang::Vi, Some(vi)) => vi,
                _ => v.detail,
            },
            rule: v.rule,
        }
    }
}

pub async fn audit_page(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Query(q): Query<AuditQuery>,
) -> Result<Response, AppError> {
    require(&user, lang, &Action::ViewAudit)?;
    let t = lang.dict();
    let sites = store::registry::sites(&st.db).await?;
    let site_ids: Vec<i64> = sites.iter().map(|s| s.id).collect();
    let actors = store::audit::actors(&st.db).await?;
    let kinds: Vec<(&str, String)> = ACTIONS
        .iter()
        .map(|a| {
            (
                *a,
                t.get(&format!("audit_action_{a}"))
                    .cloned()
                    .unwrap_or_else(|| a.to_string()),
            )
        })
        .chain([(KIND_VIOLATION, t["audit_kind_violation"].clone())])
        .collect();
    let (status, error, audit, violations) = match parse_query(&q, &site_ids) {
        Err(key) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(t[key].clone()),
            Vec::new(),
            Vec::new(),
        ),
        Ok(w) => {
            let units = store::registry::unit_names(&st.db).await?;
            let contacts = store::registry::contact_names(&st.db).await?;
            let names = Names {
                lang,
                t,
                sites: sites.iter().map(|s| (s.id, s.name.clone())).collect(),
                units: units.into_iter().collect(),
                contacts: contacts.into_iter().collect(),
            };
            let audit = if w.audit {
                store::audit::entries(&st.db, &w.filter, w.limit).await?
            } else {
                Vec::new()
            };
            let violations = if w.violations {
                store::audit::violations(&st.db, &w.filter, w.limit).await?
            } else {
                Vec::new()
            };
            (
                StatusCode::OK,
                None,
                audit.into_iter().map(|r| names.entry(r)).collect(),
                violations.into_iter().map(|v| names.breach(v)).collect(),
            )
        }
    };
    Ok((
        status,
        page(
            "audit.html",
            context! { t, user => user.account, csrf => user.csrf, audit, violations, error,
            q, sites, actors, kinds },
        ),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(lang: Lang) -> Names<'static> {
        Names {
            lang,
            t: lang.dict(),
            sites: BTreeMap::from([
                (3, "Huyện Hồng Dân".to_string()),
                (4, "Huyện Đông Hải".into()),
            ]),
            units: BTreeMap::from([(2, "Sở Thông tin và Truyền thông".to_string())]),
            contacts: BTreeMap::new(),
        }
    }

    #[test]
    fn every_action_and_entity_has_both_labels() {
        for lang in [Lang::Vi, Lang::En] {
            let t = lang.dict();
            for key in ACTIONS {
                assert!(
                    t.contains_key(&format!("audit_action_{key}")),
                    "{lang:?} {key}"
                );
            }
            for key in ENTITIES {
                assert!(
                    t.contains_key(&format!("audit_entity_{key}")),
                    "{lang:?} {key}"
                );
            }
            for key in FIELD_ORDER {
                assert!(
                    t.contains_key(&format!("audit_field_{key}")),
                    "{lang:?} {key}"
                );
            }
        }
        let n = names(Lang::Vi);
        assert_eq!(n.action("open_meeting"), "Mở cuộc họp");
        assert_eq!(n.action("something_new"), "something_new");
        assert_eq!(n.entity("meeting"), "Cuộc họp");
        assert_eq!(n.entity("thing"), "thing");
        assert_eq!(n.field("unit", "kind"), "Loại đơn vị");
        assert_eq!(n.field("booking", "kind"), "Hình thức");
        assert_eq!(n.field("booking", "colour"), "colour");
    }

    /// Architecture rule as a test: every `action:` and `entity:` the server writes into an
    /// `AuditEntry` is in [`ACTIONS`] / [`ENTITIES`], so it has its labels. Actions built with
    /// `format!("prefix_{what}")` need at least one action with that prefix.
    #[test]
    fn the_lists_cover_what_the_code_writes() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    sources(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let (mut actions, mut entities) = (0, 0);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for block in text.split("AuditEntry {").skip(1) {
                let Some(end) = block.find("entity_id") else {
                    continue;
                };
                let block = &block[..end];
                let (Some(a), Some(e)) = (block.find("action:"), block.find("entity:")) else {
                    continue;
                };
                for lit in block[a..e].split('"').skip(1).step_by(2) {
                    actions += 1;
                    match lit.split_once('{') {
                        Some((prefix, _)) => assert!(
                            ACTIONS.iter().any(|x| x.starts_with(prefix)),
                            "{}: no action starts with {prefix:?}",
                            f.display()
                        ),
                        None => assert!(ACTIONS.contains(&lit), "{}: action {lit:?}", f.display()),
                    }
                }
                for lit in block[e..].split('"').skip(1).step_by(2) {
                    entities += 1;
                    assert!(ENTITIES.contains(&lit), "{}: entity {lit:?}", f.display());
                }
            }
        }
        assert!(
            actions >= 20 && entities >= 15,
            "{actions} actions, {entities} entities found"
        );
    }

    #[test]
    fn changes_show_only_what_changed_with_labels() {
        let n = names(Lang::Vi);
        let c = n.changes(
            "booking",
            Some(r#"{"status":"submitted"}"#),
            Some(r#"{"status":"approved","reason":""}"#),
        );
        assert_eq!(
            c,
            [Change {
                field: "Trạng thái".into(),
                old: Some("Chờ duyệt".into()),
                new: Some("Đã duyệt".into()),
            }]
        );
        let c = n.changes(
            "booking",
            Some(r#"{"title":"A","sites":[3],"official_start":"2026-03-02T01:00:00+00:00","emergency":false}"#),
            Some(r#"{"title":"A","sites":[3,4],"official_start":"2026-03-02T02:30:00+00:00","emergency":true}"#),
        );
        let shown: Vec<String> = c
            .iter()
            .map(|c| format!("{}: {:?} → {:?}", c.field, c.old, c.new))
            .collect();
        assert_eq!(
            shown,
            [
                r#"Các điểm cầu tham dự: Some("Huyện Hồng Dân") → Some("Huyện Hồng Dân, Huyện Đông Hải")"#,
                r#"Họp chính thức lúc: Some("02/03/2026 08:00") → Some("02/03/2026 09:30")"#,
                r#"Họp đột xuất, khẩn cấp: Some("Không") → Some("Có")"#,
            ]
        );
        // Created: every field set; removed: what it was.
        let c = n.changes(
            "account",
            None,
            Some(r#"{"username":"kt","role":"site_technician","site_id":3,"unit_id":null}"#),
        );
        let shown: Vec<(&str, Option<&str>)> = c
            .iter()
            .map(|c| (c.field.as_str(), c.new.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                ("Tên đăng nhập", Some("kt")),
                ("Vai trò", Some("Cán bộ kỹ thuật điểm cầu")),
                ("Điểm cầu", Some("Huyện Hồng Dân")),
            ]
        );
        assert!(c.iter().all(|c| c.old.is_none()));
        let c = n.changes("provider_contact", Some(r#"{"name":"B"}"#), None);
        assert_eq!(
            (c[0].old.as_deref(), c[0].new.as_deref()),
            (Some("B"), None)
        );
        assert!(n.changes("account", None, None).is_empty());
        let c = n.changes("booking", None, Some(r#"{"cost":5,"amount_vnd":1500000}"#));
        assert_eq!(c[0].new.as_deref(), Some("#5"));
        assert_eq!(c[1].new.as_deref(), Some("1.500.000 đ"));
        let en = names(Lang::En).changes("booking", None, Some(r#"{"status":"approved"}"#));
        assert_eq!(
            (en[0].field.as_str(), en[0].new.as_deref()),
            ("Status", Some("Approved"))
        );
    }

    #[test]
    fn violations_in_the_users_language() {
        let row = |vi: Option<&str>| ViolationRow {
            at: 0,
            rule: "C6".into(),
            site: None,
            account: None,
            detail: "dc-x (dial): may not".into(),
            detail_vi: vi.map(str::to_string),
        };
        let b = names(Lang::Vi).breach(row(Some("dc-x (dial): không được")));
        assert_eq!(
            b.title,
            "Chỉ Trung tâm điều khiển kết nối các điểm cầu (điểm c khoản 2 Điều 7)"
        );
        assert_eq!(b.detail, "dc-x (dial): không được");
        assert_eq!(
            names(Lang::Vi).breach(row(None)).detail,
            "dc-x (dial): may not"
        );
        let b = names(Lang::En).breach(row(Some("dc-x (dial): không được")));
        assert_eq!(b.detail, "dc-x (dial): may not");
        assert_eq!(
            b.title,
            "Only the control center connects sites (Art. 7.2c)"
        );
    }

    #[test]
    fn filters_are_checked() {
        let q = |pairs: &[(&str, &str)]| {
            let mut q = AuditQuery::default();
            for (k, v) in pairs {
                let v = v.to_string();
                match *k {
                    "from" => q.from = v,
                    "to" => q.to = v,
                    "site" => q.site = v,
                    "user" => q.user = v,
                    "kind" => q.kind = v,
                    "limit" => q.limit = v,
                    _ => unreachable!(),
                }
            }
            parse_query(&q, &[1, 2])
        };
        let w = q(&[
            ("from", "01/03/2026"),
            ("to", "01/03/2026"),
            ("user", "quantri"),
        ])
        .unwrap();
        // Midnight to midnight in Asia/Ho_Chi_Minh (UTC+7).
        assert_eq!(w.filter.from, Some(1_772_298_000));
        assert_eq!(w.filter.until, Some(1_772_298_000 + 86_400));
        assert_eq!(w.filter.actor.as_deref(), Some("quantri"));
        assert!(w.audit && w.violations && w.limit == DEFAULT_ROWS);
        let w = q(&[("kind", "open_meeting"), ("site", "2"), ("limit", "5000")]).unwrap();
        assert_eq!(w.filter.action.as_deref(), Some("open_meeting"));
        assert_eq!(
            (w.filter.site, w.audit, w.violations, w.limit),
            (Some(2), true, false, 5000)
        );
        let w = q(&[("kind", "violation")]).unwrap();
        assert_eq!(
            (w.filter.action, w.audit, w.violations),
            (None, false, true)
        );
        for (pairs, err) in [
            (&[("from", "31/02/2026")][..], "audit_err_date"),
            (&[("to", "2026-03-01")], "audit_err_date"),
            (
                &[("from", "02/03/2026"), ("to", "01/03/2026")],
                "audit_err_range",
            ),
            (&[("site", "x")], "audit_err_site"),
            (&[("site", "9")], "audit_err_site"),
            (&[("kind", "drop table")], "audit_err_kind"),
            (&[("limit", "0")], "audit_err_limit"),
            (&[("limit", "x")], "audit_err_limit"),
        ] {
            assert_eq!(q(pairs), Err(err), "{pairs:?}");
            assert!(Lang::Vi.dict().contains_key(err) && Lang::En.dict().contains_key(err));
        }
    }
}
