//! Art. 5: registering meetings (bookings). The rules themselves live in `hnth_rules::booking`;
//! this module only reads forms, asks the rules, and stores.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use hnth_rules::booking::{
    self, check_submission, find_conflicts, plan_emergency, transition, Action as Step,
    BookingKind, BookingSlot, BookingStatus,
};
use hnth_rules::roles::{allowed, Action, Role};
use hnth_rules::time::{format_datetime_vi, TZ};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{Row, SqlitePool};

use crate::auth::CurrentUser;
use crate::db;
use crate::web::{page, AppError, AppState, Lang, PageUser};

#[derive(Debug, Clone, Serialize)]
pub struct Booking {
    pub id: i64,
    pub title: String,
    pub kind: String,
    pub kind_label: String,
    pub host_unit_id: i64,
    pub host_unit: String,
    pub chair: String,
    pub host_site_id: i64,
    pub host_site: String,
    pub sites: Vec<i64>,
    pub site_names: Vec<String>,
    pub preparation_start: i64,
    pub official_start: i64,
    pub official_end: i64,
    pub emergency: bool,
    pub notice_number: String,
    pub notice_date: String,
    pub status: String,
    pub status_label: String,
    pub reason: Option<String>,
}

impl Booking {
    fn slot(&self) -> BookingSlot {
        BookingSlot {
            id: self.id,
            title: self.title.clone(),
            host_site: self.host_site_id,
            sites: self.sites.clone(),
            preparation_start: ts(self.preparation_start),
            official_start: ts(self.official_start),
            end: ts(self.official_end),
            emergency: self.emergency,
            status: BookingStatus::parse(&self.status).unwrap_or(BookingStatus::Draft),
        }
    }
}

/// B3: checking a booking against the others and writing it must not interleave with another
/// registration or workflow step, or two overlapping requests could both pass the check (and two
/// approvals of one booking could both queue its notices).
static WRITE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

fn label(lang: Lang, vi: &str, en: &str) -> String {
    if lang == Lang::En { en } else { vi }.to_string()
}

pub async fn load(db: &SqlitePool, lang: Lang, filter: Option<i64>) -> sqlx::Result<Vec<Booking>> {
    let rows = sqlx::query(
        "SELECT b.*, u.name AS unit_name, s.name AS site_name, \
         (SELECT group_concat(bs.site_id) FROM booking_sites bs WHERE bs.booking_id = b.id) AS site_ids \
         FROM bookings b JOIN units u ON u.id = b.host_unit_id JOIN sites s ON s.id = b.host_site_id \
         WHERE (?1 IS NULL OR b.id = ?1) ORDER BY b.official_start",
    )
    .bind(filter)
    .fetch_all(db)
    .await?;
    let names: BTreeMap<i64, String> = db::sites(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            let kind: String = r.get("kind");
            let status: String = r.get("status");
            let sites: Vec<i64> = r
                .get::<Option<String>, _>("site_ids")
                .unwrap_or_default()
                .split(',')
                .filter_map(|s| s.parse().ok())
                .collect();
            let k = BookingKind::parse(&kind);
            let st = BookingStatus::parse(&status);
            Booking {
                id: r.get("id"),
                title: r.get("title"),
                kind_label: k
                    .map(|k| label(lang, k.label_vi(), k.label_en()))
                    .unwrap_or_default(),
                kind,
                host_unit_id: r.get("host_unit_id"),
                host_unit: r.get("unit_name"),
                chair: r.get("chair"),
                host_site_id: r.get("host_site_id"),
                host_site: r.get("site_name"),
                site_names: sites.iter().filter_map(|s| names.get(s).cloned()).collect(),
                sites,
                preparation_start: r.get("preparation_start"),
                official_start: r.get("official_start"),
                official_end: r.get("official_end"),
                emergency: r.get::<i64, _>("emergency") != 0,
                notice_number: r.get("notice_number"),
                notice_date: r.get("notice_date"),
                status_label: st
                    .map(|s| label(lang, s.label_vi(), s.label_en()))
                    .unwrap_or_default(),
                status,
                reason: r.get("reason"),
            }
        })
        .collect())
}

/// One booking, with Vietnamese labels (for notices).
pub async fn load_one(db: &SqlitePool, id: i64) -> sqlx::Result<Option<Booking>> {
    Ok(load(db, Lang::Vi, Some(id)).await?.pop())
}

fn may_view(user: &CurrentUser, b: &Booking) -> bool {
    allowed(
        user.account.role,
        user.account.scope(),
        &Action::ViewBooking {
            unit: b.host_unit_id,
            sites: &b.sites,
        },
    )
}

pub async fn list(
    State(st): State<AppState>,
    PageUser(user): PageUser,
    lang: Lang,
) -> Result<Response, AppError> {
    let Some(user) = user else {
        return Ok(Redirect::to("/login").into_response());
    };
    let bookings: Vec<Booking> = load(&st.db, lang, None)
        .await?
        .into_iter()
        .filter(|b| may_view(&user, b))
        .collect();
    let may_register = may_register_any(&user);
    let t = lang.dict();
    Ok(page(
        "bookings.html",
        context! { t, user => user.account, csrf => user.csrf, bookings, may_register },
    )
    .into_response())
}

fn may_register_any(user: &CurrentUser) -> bool {
    match user.account.role {
        Role::Admin | Role::Operator => true,
        Role::Organizer => user.account.unit_id.is_some(),
        _ => false,
    }
}

/// The registration form as submitted.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct BookingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    host_unit: String,
    #[serde(default)]
    chair: String,
    #[serde(default)]
    host_site: String,
    /// Comma-separated site ids (checkboxes are joined by the page's form encoding below).
    #[serde(default)]
    sites: Vec<String>,
    #[serde(default)]
    date: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    prep: String,
    #[serde(default)]
    emergency: Option<String>,
    #[serde(default)]
    notice_number: String,
    #[serde(default)]
    notice_date: String,
    /// `check` (show conflicts only), `draft` or `submit`.
    #[serde(default)]
    action: String,
}

struct FormPage {
    units: Vec<(i64, String)>,
    sites: Vec<db::Site>,
}

async fn form_page_data(db: &SqlitePool, user: &CurrentUser) -> sqlx::Result<FormPage> {
    let units: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, name FROM units WHERE kind != 'line_provider' ORDER BY id")
            .fetch_all(db)
            .await?;
    let units = match user.account.role {
        Role::Organizer => units
            .into_iter()
            .filter(|(id, _)| Some(*id) == user.account.unit_id)
            .collect(),
        _ => units,
    };
    Ok(FormPage {
        units,
        sites: db::sites(db).await?,
    })
}

fn render_form(
    lang: Lang,
    user: &CurrentUser,
    data: &FormPage,
    form: &BookingForm,
    errors: &BTreeMap<&'static str, String>,
    notices: &[String],
    status: StatusCode,
) -> Response {
    let t = lang.dict();
    let kinds: Vec<(String, String)> = BookingKind::ALL
        .iter()
        .map(|k| {
            (
                k.as_str().to_string(),
                label(lang, k.label_vi(), k.label_en()),
            )
        })
        .collect();
    (
        status,
        page(
            "booking_form.html",
            context! { t, user => user.account, csrf => user.csrf, form, errors, notices, kinds,
            units => data.units, sites => data.sites },
        ),
    )
        .into_response()
}

pub async fn new_form(
    State(st): State<AppState>,
    PageUser(user): PageUser,
    lang: Lang,
) -> Result<Response, AppError> {
    let Some(user) = user else {
        return Ok(Redirect::to("/login").into_response());
    };
    if !may_register_any(&user) {
        return Err(AppError::Forbidden(lang));
    }
    let data = form_page_data(&st.db, &user).await?;
    let form = BookingForm {
        kind: "hop".into(),
        ..Default::default()
    };
    Ok(render_form(
        lang,
        &user,
        &data,
        &form,
        &BTreeMap::new(),
        &[],
        StatusCode::OK,
    ))
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%d/%m/%Y").ok()
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()
}

fn local(date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    TZ.from_local_datetime(&date.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
}

pub async fn create(
    State(st): State<AppState>,
    PageUser(user): PageUser,
    lang: Lang,
    axum::extract::RawForm(raw): axum::extract::RawForm,
) -> Result<Response, AppError> {
    let Some(user) = user else {
        return Ok(Redirect::to("/login").into_response());
    };
    if !may_register_any(&user) {
        return Err(AppError::Forbidden(lang));
    }
    // Repeated `sites` checkboxes: serde_urlencoded takes them as a sequence only this way.
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&raw).map_err(|e| AppError::Internal(e.to_string()))?;
    let mut form = BookingForm::default();
    for (k, v) in pairs {
        match k.as_str() {
            "csrf" => form.csrf = v,
            "title" => form.title = v,
            "kind" => form.kind = v,
            "host_unit" => form.host_unit = v,
            "chair" => form.chair = v,
            "host_site" => form.host_site = v,
            "sites" => form.sites.push(v),
            "date" => form.date = v,
            "start" => form.start = v,
            "end" => form.end = v,
            "prep" => form.prep = v,
            "emergency" => form.emergency = Some(v),
            "notice_number" => form.notice_number = v,
            "notice_date" => form.notice_date = v,
            "action" => form.action = v,
            _ => {}
        }
    }
    let data = form_page_data(&st.db, &user).await?;
    let t = lang.dict();
    if form.csrf != user.csrf {
        let errors = BTreeMap::from([("form", t["csrf_failed"].clone())]);
        return Ok(render_form(
            lang,
            &user,
            &data,
            &form,
            &errors,
            &[],
            StatusCode::FORBIDDEN,
        ));
    }
    let _write = WRITE_LOCK.lock().await;
    let vi = lang == Lang::Vi;
    let msg = |key: &str| t.get(key).cloned().unwrap_or_else(|| key.to_string());
    let mut errors: BTreeMap<&'static str, String> = BTreeMap::new();

    let title = form.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        errors.insert("title", msg("bk_err_title"));
    }
    let kind = BookingKind::parse(&form.kind);
    if kind.is_none() {
        errors.insert("kind", msg("bk_err_kind"));
    }
    let unit: Option<i64> = form
        .host_unit
        .parse()
        .ok()
        .filter(|u| data.units.iter().any(|(id, _)| id == u));
    if unit.is_none() {
        errors.insert("host_unit", msg("bk_err_unit"));
    }
    if form.chair.trim().is_empty() || form.chair.chars().count() > 200 {
        errors.insert("chair", msg("bk_err_chair"));
    }
    let host_site: Option<i64> = form
        .host_site
        .parse()
        .ok()
        .filter(|s| data.sites.iter().any(|x| x.id == *s));
    if host_site.is_none() {
        errors.insert("host_site", msg("bk_err_site"));
    }
    let mut sites: Vec<i64> = Vec::new();
    for s in &form.sites {
        match s
            .parse::<i64>()
            .ok()
            .filter(|s| data.sites.iter().any(|x| x.id == *s))
        {
            Some(id) => sites.push(id),
            None => {
                errors.insert("sites", msg("bk_err_sites"));
            }
        }
    }
    if let Some(h) = host_site {
        if !sites.contains(&h) {
            sites.push(h);
        }
    }
    if sites.len() < 2 {
        errors.entry("sites").or_insert_with(|| msg("bk_err_sites"));
    }
    let date = parse_date(&form.date);
    if date.is_none() {
        errors.insert("date", msg("bk_err_date"));
    }
    let start = parse_time(&form.start);
    if start.is_none() {
        errors.insert("start", msg("bk_err_time"));
    }
    let end = parse_time(&form.end);
    if end.is_none() {
        errors.insert("end", msg("bk_err_time"));
    }
    let prep = if form.prep.trim().is_empty() {
        None
    } else {
        parse_time(&form.prep)
    };
    if !form.prep.trim().is_empty() && prep.is_none() {
        errors.insert("prep", msg("bk_err_time"));
    }
    if form.notice_number.chars().count() > 100 || form.notice_date.chars().count() > 20 {
        errors.insert("notice_number", msg("bk_err_notice"));
    }
    let now = Utc::now();
    let settings = booking::Settings::default();
    let mut notices: Vec<String> = Vec::new();
    let mut slot = None;
    if let (Some(d), Some(s), Some(e)) = (date, start, end) {
        match (local(d, s), local(d, e)) {
            (Some(s), Some(e)) => {
                let p = match prep.and_then(|p| local(d, p)) {
                    Some(p) => p,
                    None => booking::default_preparation_start(s, &settings),
                };
                slot = Some(BookingSlot {
                    id: 0,
                    title: title.to_string(),
                    host_site: host_site.unwrap_or_default(),
                    sites: sites.clone(),
                    preparation_start: p,
                    official_start: s,
                    end: e,
                    emergency: form.emergency.is_some(),
                    status: BookingStatus::Submitted,
                });
            }
            _ => {
                errors.insert("start", msg("bk_err_time"));
            }
        }
    }
    let rule_text = |v: &hnth_rules::Violation| if vi { v.vi.clone() } else { v.en.clone() };
    let mut displaced: Vec<BookingSlot> = Vec::new();
    if let (Some(slot), true) = (&slot, errors.is_empty()) {
        if let Err(v) = check_submission(slot, now, &settings) {
            errors.insert("rules", rule_text(&v));
        } else {
            let existing: Vec<BookingSlot> = load(&st.db, lang, None)
                .await?
                .iter()
                .map(Booking::slot)
                .collect();
            let names: BTreeMap<i64, String> =
                data.sites.iter().map(|s| (s.id, s.name.clone())).collect();
            let conflicts = find_conflicts(slot, &existing, &settings);
            if !conflicts.is_empty() {
                if slot.emergency {
                    match plan_emergency(slot, &existing, &settings) {
                        Ok(plan) => {
                            displaced = existing
                                .iter()
                                .filter(|b| plan.displaced.contains(&b.id))
                                .cloned()
                                .collect();
                            for b in &displaced {
                                notices.push(format!("{}: {}", msg("bk_displaces"), b.title));
                            }
                        }
                        Err(v) => {
                            errors.insert("rules", rule_text(&v));
                        }
                    }
                } else {
                    for c in conflicts {
                        let v = c.violation_named(|id| names.get(&id).cloned().unwrap_or_default());
                        errors
                            .entry("rules")
                            .or_default()
                            .push_str(&(rule_text(&v) + "\n"));
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Ok(render_form(
            lang,
            &user,
            &data,
            &form,
            &errors,
            &notices,
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    let slot = slot.expect("no errors means a slot");
    if form.action == "check" {
        notices.insert(0, msg("bk_no_conflict"));
        return Ok(render_form(
            lang,
            &user,
            &data,
            &form,
            &errors,
            &notices,
            StatusCode::OK,
        ));
    }
    if !allowed(
        user.account.role,
        user.account.scope(),
        &Action::RegisterBooking {
            unit: unit.unwrap_or_default(),
        },
    ) {
        return Err(AppError::Forbidden(lang));
    }
    let status = if form.action == "draft" {
        BookingStatus::Draft
    } else {
        BookingStatus::Submitted
    };
    let mut tx = st.db.begin().await?;
    let id = sqlx::query(
        "INSERT INTO bookings (title, kind, host_unit_id, chair, host_site_id, preparation_start, official_start, official_end, \
         emergency, notice_number, notice_date, status, created_by, created_at, submitted_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    )
    .bind(title)
    .bind(kind.map(|k| k.as_str()).unwrap_or_default())
    .bind(unit)
    .bind(form.chair.trim())
    .bind(host_site)
    .bind(slot.preparation_start.timestamp())
    .bind(slot.official_start.timestamp())
    .bind(slot.end.timestamp())
    .bind(slot.emergency)
    .bind(form.notice_number.trim())
    .bind(form.notice_date.trim())
    .bind(status.as_str())
    .bind(user.account.id)
    .bind(now.timestamp())
    .bind((status == BookingStatus::Submitted).then_some(now.timestamp()))
    .execute(&mut *tx)
    .await?
    .last_insert_rowid();
    for s in &slot.sites {
        sqlx::query("INSERT INTO booking_sites (booking_id, site_id) VALUES (?,?)")
            .bind(id)
            .bind(s)
            .execute(&mut *tx)
            .await?;
    }
    // B5: an emergency displaces a planned meeting, and that is recorded (in Vietnamese, citing
    // the article). Only once it is submitted: a draft does not cancel anybody's meeting.
    let emergency_slot = BookingSlot {
        id,
        title: title.to_string(),
        ..slot.clone()
    };
    let displaced = if status == BookingStatus::Submitted {
        displaced
    } else {
        Vec::new()
    };
    for d in &displaced {
        let reason = booking::displacement_violation(d, &emergency_slot).vi;
        if d.status == BookingStatus::Approved {
            if let Some(old) = load_in(&mut tx, d.id).await? {
                crate::mail::queue_cancelled(&mut tx, &old, &reason, now).await?;
            }
        }
        sqlx::query("UPDATE bookings SET status = 'cancelled', reason = ? WHERE id = ?")
            .bind(&reason)
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
        db::audit(
            &mut *tx,
            db::AuditEntry {
                actor_id: Some(user.account.id),
                actor: &user.account.username,
                action: "displace_booking",
                entity: "booking",
                entity_id: d.id.to_string(),
                before: Some(json!({"status": d.status.as_str()})),
                after: Some(json!({"status": "cancelled", "displaced_by": id})),
            },
        )
        .await?;
    }
    db::audit(&mut *tx, db::AuditEntry {
        actor_id: Some(user.account.id),
        actor: &user.account.username,
        action: "create_booking",
        entity: "booking",
        entity_id: id.to_string(),
        before: None,
        after: Some(json!({"title": title, "status": status.as_str(), "sites": slot.sites,
                            "official_start": slot.official_start.to_rfc3339(), "emergency": slot.emergency})),
    })
    .await?;
    let emergency_alert = slot.emergency && status == BookingStatus::Submitted;
    if emergency_alert {
        if let Some(b) = load_in(&mut tx, id).await? {
            crate::mail::queue_emergency(&mut tx, &b, now).await?;
        }
    }
    tx.commit().await?;
    if emergency_alert {
        st.outbox.notify_one();
        st.hub.emergency_alert(id, title, &slot.sites);
    }
    Ok(Redirect::to(&format!("/bookings/{id}")).into_response())
}

/// A booking as the open transaction sees it (it may not be committed yet).
async fn load_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: i64,
) -> sqlx::Result<Option<Booking>> {
    let r = sqlx::query(
        "SELECT b.*, u.name AS unit_name, s.name AS site_name FROM bookings b JOIN units u ON u.id = b.host_unit_id          JOIN sites s ON s.id = b.host_site_id WHERE b.id = ?",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = r else { return Ok(None) };
    let sites: Vec<(i64, String)> =
        sqlx::query_as("SELECT s.id, s.name FROM booking_sites bs JOIN sites s ON s.id = bs.site_id WHERE bs.booking_id = ? ORDER BY s.id")
            .bind(id)
            .fetch_all(&mut **tx)
            .await?;
    let kind: String = r.get("kind");
    let status: String = r.get("status");
    Ok(Some(Booking {
        id,
        title: r.get("title"),
        kind_label: BookingKind::parse(&kind)
            .map(|k| k.label_vi().to_string())
            .unwrap_or_default(),
        kind,
        host_unit_id: r.get("host_unit_id"),
        host_unit: r.get("unit_name"),
        chair: r.get("chair"),
        host_site_id: r.get("host_site_id"),
        host_site: r.get("site_name"),
        sites: sites.iter().map(|s| s.0).collect(),
        site_names: sites.into_iter().map(|s| s.1).collect(),
        preparation_start: r.get("preparation_start"),
        official_start: r.get("official_start"),
        official_end: r.get("official_end"),
        emergency: r.get::<i64, _>("emergency") != 0,
        notice_number: r.get("notice_number"),
        notice_date: r.get("notice_date"),
        status_label: BookingStatus::parse(&status)
            .map(|s| s.label_vi().to_string())
            .unwrap_or_default(),
        status,
        reason: r.get("reason"),
    }))
}

pub async fn show(
    State(st): State<AppState>,
    PageUser(user): PageUser,
    lang: Lang,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let Some(user) = user else {
        return Ok(Redirect::to("/login").into_response());
    };
    let Some(b) = load(&st.db, lang, Some(id)).await?.pop() else {
        return Ok((
            StatusCode::NOT_FOUND,
            page(
                "error.html",
                context! { t => lang.dict(), message => lang.dict()["not_found"] },
            ),
        )
            .into_response());
    };
    if !may_view(&user, &b) {
        return Err(AppError::Forbidden(lang));
    }
    let status = BookingStatus::parse(&b.status).unwrap_or(BookingStatus::Draft);
    let can = |s: Step| transition(status, &s, user.account.role).is_ok();
    let actions = context! {
        submit => can(Step::Submit),
        approve => can(Step::Approve),
        reject => can(Step::Reject { reason: "x".into() }),
        cancel => can(Step::Cancel { reason: "x".into() }),
    };
    let t = lang.dict();
    let times = context! {
        prep => format_datetime_vi(ts(b.preparation_start)),
        start => format_datetime_vi(ts(b.official_start)),
        end => format_datetime_vi(ts(b.official_end)),
    };
    let costs = crate::costs::for_booking(&st.db, lang, b.id).await?;
    let may_add_cost = allowed(
        user.account.role,
        user.account.scope(),
        &Action::RegisterBooking {
            unit: b.host_unit_id,
        },
    );
    let control = user.account.is_control_center();
    let notices = if control {
        crate::mail::notices_of(&st.db, b.id).await?
    } else {
        Vec::new()
    };
    // B2: the provider must have been told at least 2 days before the official start.
    let provider_late = matches!(status, BookingStatus::Approved | BookingStatus::Held)
        && booking::provider_notice_late(
            crate::mail::provider_notified_at(&st.db, b.id).await?,
            ts(b.official_start),
            Utc::now(),
            &booking::Settings::default(),
        );
    let phones = if b.emergency {
        crate::mail::phone_list(&st.db, b.id).await?
    } else {
        Vec::new()
    };
    Ok(page(
        "booking.html",
        context! { t, user => user.account, csrf => user.csrf, b, actions, times, costs, may_add_cost,
                   notices, provider_late, phones },
    )
    .into_response())
}

#[derive(Deserialize)]
pub struct StepForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// Submit, approve, reject or cancel: the workflow of `hnth_rules::booking::transition`.
pub async fn step(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Path((id, what)): Path<(i64, String)>,
    Form(f): Form<StepForm>,
) -> Result<Response, AppError> {
    if f.csrf != user.csrf {
        return Ok((StatusCode::FORBIDDEN, lang.dict()["csrf_failed"].clone()).into_response());
    }
    let _write = WRITE_LOCK.lock().await;
    let Some(b) = load(&st.db, lang, Some(id)).await?.pop() else {
        return Ok((StatusCode::NOT_FOUND, lang.dict()["not_found"].clone()).into_response());
    };
    if !may_view(&user, &b) {
        return Err(AppError::Forbidden(lang));
    }
    let reason = f.reason.trim().to_string();
    let action = match what.as_str() {
        "submit" => Step::Submit,
        "approve" => Step::Approve,
        "reject" => Step::Reject {
            reason: reason.clone(),
        },
        "cancel" => Step::Cancel {
            reason: reason.clone(),
        },
        _ => return Ok((StatusCode::NOT_FOUND, "unknown step").into_response()),
    };
    let from = BookingStatus::parse(&b.status).unwrap_or(BookingStatus::Draft);
    let to = match transition(from, &action, user.account.role) {
        Ok(to) => to,
        Err(v) => {
            let text = if lang == Lang::Vi { v.vi } else { v.en };
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                page("error.html", context! { t => lang.dict(), message => text }),
            )
                .into_response());
        }
    };
    // Submitting (again) and approving re-check the rules: lead time and conflicts (B1, B3).
    if matches!(action, Step::Submit | Step::Approve) {
        let now = Utc::now();
        let settings = booking::Settings::default();
        let slot = b.slot();
        let mut problem = if matches!(action, Step::Submit) {
            check_submission(&slot, now, &settings).err()
        } else {
            None
        };
        if problem.is_none() {
            let existing: Vec<BookingSlot> = load(&st.db, lang, None)
                .await?
                .iter()
                .map(Booking::slot)
                .collect();
            problem = find_conflicts(&slot, &existing, &settings)
                .first()
                .map(|c| c.violation());
        }
        if let Some(v) = problem {
            let text = if lang == Lang::Vi { v.vi } else { v.en };
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                page("error.html", context! { t => lang.dict(), message => text }),
            )
                .into_response());
        }
    }
    let now = db::now();
    let mut tx = st.db.begin().await?;
    sqlx::query(
        "UPDATE bookings SET status = ?, reason = COALESCE(?, reason), \
         submitted_at = CASE WHEN ? = 'submitted' THEN ? ELSE submitted_at END, \
         decided_by = CASE WHEN ? IN ('approved','rejected') THEN ? ELSE decided_by END, \
         decided_at = CASE WHEN ? IN ('approved','rejected') THEN ? ELSE decided_at END WHERE id = ?",
    )
    .bind(to.as_str())
    .bind((!reason.is_empty()).then_some(reason.clone()))
    .bind(to.as_str())
    .bind(now)
    .bind(to.as_str())
    .bind(user.account.id)
    .bind(to.as_str())
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if to == BookingStatus::Approved {
        crate::mail::queue_on_approval(&mut tx, &b, Utc::now()).await?;
    }
    if to == BookingStatus::Cancelled && b.status == BookingStatus::Approved.as_str() {
        crate::mail::queue_cancelled(&mut tx, &b, &reason, Utc::now()).await?;
    }
    db::audit(
        &mut *tx,
        db::AuditEntry {
            actor_id: Some(user.account.id),
            actor: &user.account.username,
            action: &format!("booking_{what}"),
            entity: "booking",
            entity_id: id.to_string(),
            before: Some(json!({"status": b.status})),
            after: Some(json!({"status": to.as_str(), "reason": reason})),
        },
    )
    .await?;
    tx.commit().await?;
    st.outbox.notify_one();
    Ok(Redirect::to(&format!("/bookings/{id}")).into_response())
}

/// B4: the invitation exists only for an approved booking.
pub async fn invitation(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let Some(b) = load(&st.db, lang, Some(id)).await?.pop() else {
        return Ok((StatusCode::NOT_FOUND, "no such booking").into_response());
    };
    if !may_view(&user, &b) {
        return Err(AppError::Forbidden(lang));
    }
    if b.status != "approved" {
        let text = lang.dict()["bk_err_not_approved"].clone();
        return Ok((
            StatusCode::CONFLICT,
            page("error.html", context! { t => lang.dict(), message => text }),
        )
            .into_response());
    }
    let ics = ics(&b);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"hop-{id}.ics\""),
            ),
        ],
        ics,
    )
        .into_response())
}

/// RFC 5545 invitation, in Vietnamese, times in Asia/Ho_Chi_Minh.
pub fn ics(b: &Booking) -> String {
    use icalendar::{Calendar, Component, Event, EventLike};
    let local = |t: i64| ts(t).with_timezone(&TZ).naive_local();
    let description = format!(
        "Đơn vị chủ trì: {}\nChủ trì: {}\nĐiểm cầu chủ trì: {}\nCác điểm cầu: {}\nChuẩn bị, chạy thử từ: {}\nCông văn: {} {}",
        b.host_unit,
        b.chair,
        b.host_site,
        b.site_names.join(", "),
        format_datetime_vi(ts(b.preparation_start)),
        b.notice_number,
        b.notice_date
    );
    let event = Event::new()
        .uid(&format!("hnth-booking-{}@hnth", b.id))
        .summary(&format!("{}: {}", b.kind_label, b.title))
        .description(&description)
        .location(&b.host_site)
        .starts(icalendar::CalendarDateTime::WithTimezone {
            date_time: local(b.official_start),
            tzid: "Asia/Ho_Chi_Minh".into(),
        })
        .ends(icalendar::CalendarDateTime::WithTimezone {
            date_time: local(b.official_end),
            tzid: "Asia/Ho_Chi_Minh".into(),
        })
        .done();
    let text = Calendar::new()
        .name("Hội nghị truyền hình trực tuyến")
        .push(event)
        .done()
        .to_string();
    // Each TZID needs its VTIMEZONE (RFC 5545 §3.6.5); Vietnam keeps +07:00 all year.
    // METHOD:PUBLISH matches the `method=PUBLISH` of the e-mail attachment (RFC 6047 §2.4).
    text.replacen(
        "PRODID:ICALENDAR-RS",
        "PRODID:-//hnth//Hoi nghi truyen hinh//VI\r\nMETHOD:PUBLISH",
        1,
    )
    .replacen(
        "BEGIN:VEVENT",
        "BEGIN:VTIMEZONE\r\nTZID:Asia/Ho_Chi_Minh\r\nBEGIN:STANDARD\r\nDTSTART:19750613T000000\r\n\
         TZOFFSETFROM:+0700\r\nTZOFFSETTO:+0700\r\nTZNAME:ICT\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT",
        1,
    )
}
