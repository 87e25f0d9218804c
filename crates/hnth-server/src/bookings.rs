//! Art. 5: registering meetings (bookings). The rules themselves live in `hnth_rules::booking`;
//! this module only reads forms, asks the rules, and stores.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, RawForm, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use hnth_rules::booking::{
    self, check_submission, find_conflicts, plan_emergency, transition, validate, Action as Step,
    BookingKind, BookingSlot, BookingStatus,
};
use hnth_rules::roles::{allowed, Action, Role};
use hnth_rules::time::{format_datetime_vi, TZ};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use sqlx::{Row, SqlitePool};

use crate::auth::CurrentUser;
use crate::db;
use crate::web::{page, require, require_csrf, AppError, AppState, Lang, LoggedIn};

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
    /// When it was approved (or rejected); the invitation letter is dated from it.
    pub decided_at: Option<i64>,
    /// L2 (Art. 12): the line provider's on-duty technician for this meeting.
    pub on_duty_contact_id: Option<i64>,
    /// That technician as shown: "name (provider), phone".
    pub on_duty: Option<String>,
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

const SELECT_BOOKINGS: &str = "SELECT b.*, u.name AS unit_name, s.name AS site_name, \
     (SELECT group_concat(bs.site_id) FROM booking_sites bs WHERE bs.booking_id = b.id) AS site_ids, \
     p.name AS duty_name, p.phone AS duty_phone, pu.name AS duty_unit \
     FROM bookings b JOIN units u ON u.id = b.host_unit_id JOIN sites s ON s.id = b.host_site_id \
     LEFT JOIN provider_contacts p ON p.id = b.on_duty_contact_id LEFT JOIN units pu ON pu.id = p.unit_id \
     WHERE (?1 IS NULL OR b.id = ?1) ORDER BY b.official_start, b.id";

fn from_row(r: &sqlx::sqlite::SqliteRow, lang: Lang, names: &BTreeMap<i64, String>) -> Booking {
    let kind: String = r.get("kind");
    let status: String = r.get("status");
    let mut sites: Vec<i64> = r
        .get::<Option<String>, _>("site_ids")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    sites.sort_unstable();
    let k = BookingKind::parse(&kind);
    let st = BookingStatus::parse(&status);
    let on_duty = r.get::<Option<String>, _>("duty_name").map(|name| {
        let unit: Option<String> = r.get("duty_unit");
        let phone: Option<String> = r.get("duty_phone");
        let mut s = name;
        if let Some(u) = unit.filter(|u| !u.is_empty()) {
            s.push_str(&format!(" ({u})"));
        }
        if let Some(p) = phone.filter(|p| !p.is_empty()) {
            s.push_str(&format!(", {p}"));
        }
        s
    });
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
        decided_at: r.get("decided_at"),
        on_duty_contact_id: r.get("on_duty_contact_id"),
        on_duty,
    }
}

pub async fn load(db: &SqlitePool, lang: Lang, filter: Option<i64>) -> sqlx::Result<Vec<Booking>> {
    let rows = sqlx::query(SELECT_BOOKINGS)
        .bind(filter)
        .fetch_all(db)
        .await?;
    let names: BTreeMap<i64, String> = db::sites(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    Ok(rows.iter().map(|r| from_row(r, lang, &names)).collect())
}

/// One booking, with Vietnamese labels (for notices).
pub async fn load_one(db: &SqlitePool, id: i64) -> sqlx::Result<Option<Booking>> {
    Ok(load(db, Lang::Vi, Some(id)).await?.pop())
}

/// A1: whether the user may see this booking (its host unit, its sites).
pub fn may_view(user: &CurrentUser, b: &Booking) -> bool {
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
    LoggedIn(user): LoggedIn,
    lang: Lang,
) -> Result<Response, AppError> {
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

/// The registration (and edit) form as submitted.
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
    /// The ticked site checkboxes (the field repeats).
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
    /// Editing: remove the stored written notice (when no new file comes with the form).
    #[serde(default)]
    remove_notice_file: Option<String>,
    /// `check` (show conflicts only), `draft` or `submit` (registering), `save` (editing).
    #[serde(default)]
    action: String,
}

impl BookingForm {
    fn set(&mut self, key: &str, v: String) {
        match key {
            "csrf" => self.csrf = v,
            "title" => self.title = v,
            "kind" => self.kind = v,
            "host_unit" => self.host_unit = v,
            "chair" => self.chair = v,
            "host_site" => self.host_site = v,
            "sites" => self.sites.push(v),
            "date" => self.date = v,
            "start" => self.start = v,
            "end" => self.end = v,
            "prep" => self.prep = v,
            "emergency" => self.emergency = Some(v),
            "notice_number" => self.notice_number = v,
            "notice_date" => self.notice_date = v,
            "remove_notice_file" => self.remove_notice_file = Some(v),
            "action" => self.action = v,
            _ => {}
        }
    }

    /// The form as it shows a stored booking (for editing).
    fn of(b: &Booking) -> BookingForm {
        let at = |t: i64| ts(t).with_timezone(&TZ);
        BookingForm {
            title: b.title.clone(),
            kind: b.kind.clone(),
            host_unit: b.host_unit_id.to_string(),
            chair: b.chair.clone(),
            host_site: b.host_site_id.to_string(),
            sites: b.sites.iter().map(|s| s.to_string()).collect(),
            date: at(b.official_start).format("%d/%m/%Y").to_string(),
            start: at(b.official_start).format("%H:%M").to_string(),
            end: at(b.official_end).format("%H:%M").to_string(),
            prep: at(b.preparation_start).format("%H:%M").to_string(),
            emergency: b.emergency.then(|| "1".to_string()),
            notice_number: b.notice_number.clone(),
            notice_date: b.notice_date.clone(),
            ..Default::default()
        }
    }
}

/// B1 (Art. 5.1): the written notice (công văn) may come with the form as a PDF of at most this.
pub const NOTICE_FILE_MAX: usize = 5 * 1024 * 1024;

/// The body limit of the two multipart routes (registering, editing): the file and the fields,
/// with room to read (and drop) a larger file to its end and say so beside the field. Every
/// other route keeps the router's 256 KiB.
pub fn upload_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(16 * 1024 * 1024)
}

/// The written-notice file of a submitted form.
#[derive(Debug, Default)]
enum Upload {
    #[default]
    None,
    Pdf {
        name: String,
        data: Vec<u8>,
    },
    NotPdf,
    TooLarge,
}

/// Reads the registration form: multipart (the page's form, with the optional PDF) or
/// url-encoded (scripts; no file then). A malformed body is a 400.
async fn read_form(req: Request) -> Result<(BookingForm, Upload), Response> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let mut form = BookingForm::default();
    if !multipart {
        let RawForm(raw) = RawForm::from_request(req, &())
            .await
            .map_err(IntoResponse::into_response)?;
        // Repeated `sites` checkboxes: serde_urlencoded takes them as a sequence only this way.
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&raw)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())?;
        for (k, v) in pairs {
            form.set(&k, v);
        }
        return Ok((form, Upload::None));
    }
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(IntoResponse::into_response)?;
    let mut upload = Upload::None;
    let too_large =
        |e: &axum::extract::multipart::MultipartError| e.status() == StatusCode::PAYLOAD_TOO_LARGE;
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // Past the body limit: only a (much) too large file gets there.
            Err(e) if too_large(&e) => {
                upload = Upload::TooLarge;
                break;
            }
            Err(e) => return Err(e.into_response()),
        };
        let name = field.name().unwrap_or_default().to_string();
        if name != "notice_file" {
            match field.text().await {
                Ok(v) => form.set(&name, v),
                Err(e) if too_large(&e) => {
                    upload = Upload::TooLarge;
                    break;
                }
                Err(e) => return Err(e.into_response()),
            }
            continue;
        }
        let file_name = field.file_name().unwrap_or_default().to_string();
        let mut data: Vec<u8> = Vec::new();
        let mut over = false;
        // A file over the limit is still read to its end (and dropped), up to the route's body
        // limit, so that the browser gets the form back with the message rather than a
        // connection reset in the middle of its upload.
        loop {
            match field.chunk().await {
                Ok(Some(c)) if over || data.len() + c.len() > NOTICE_FILE_MAX => {
                    over = true;
                    data = Vec::new();
                }
                Ok(Some(c)) => data.extend_from_slice(&c),
                Ok(None) => break,
                Err(e) if too_large(&e) => {
                    over = true;
                    break;
                }
                Err(e) => return Err(e.into_response()),
            }
        }
        upload = if over {
            Upload::TooLarge
        } else if data.is_empty() && file_name.trim().is_empty() {
            Upload::None // the file input left empty
        } else if data.starts_with(b"%PDF-") && file_name.to_lowercase().ends_with(".pdf") {
            Upload::Pdf {
                name: clean_file_name(&file_name),
                data,
            }
        } else {
            Upload::NotPdf
        };
    }
    Ok((form, upload))
}

/// The last path component, without control characters or quotes, at most 200 characters.
fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    if clean.trim().is_empty() {
        "cong-van.pdf".into()
    } else {
        clean
    }
}

/// A stored written notice, as the booking page and the audit trail describe it.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub filename: String,
    pub size: i64,
    pub size_label: String,
    pub sha256: String,
}

async fn file_info<'e, E>(db: E, booking: i64) -> sqlx::Result<Option<FileInfo>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT filename, size, sha256 FROM booking_files WHERE booking_id = ? AND kind = 'notice'",
    )
    .bind(booking)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(filename, size, sha256)| FileInfo {
        filename,
        size_label: if size >= 1024 * 1024 {
            format!("{:.1} MB", size as f64 / (1024.0 * 1024.0))
        } else {
            format!("{} KB", size.max(0).unsigned_abs().div_ceil(1024))
        },
        size,
        sha256,
    }))
}

/// What the form page needs besides the form: the choices, and where it posts.
struct FormPage {
    units: Vec<(i64, String)>,
    sites: Vec<db::Site>,
    /// The booking being edited, if editing.
    editing: Option<i64>,
    /// Its stored written notice, if any.
    file: Option<FileInfo>,
}

async fn form_page_data(
    db: &SqlitePool,
    user: &CurrentUser,
    editing: Option<i64>,
) -> sqlx::Result<FormPage> {
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
    let file = match editing {
        Some(id) => file_info(db, id).await?,
        None => None,
    };
    Ok(FormPage {
        units,
        sites: db::sites(db).await?,
        editing,
        file,
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
    // A browser cannot put the chosen file back into the form: say so when the form comes back.
    let reselect = !errors.is_empty() || !notices.is_empty();
    let action = match data.editing {
        Some(id) => format!("/bookings/{id}/edit"),
        None => "/bookings/new".to_string(),
    };
    (
        status,
        page(
            "booking_form.html",
            context! { t, user => user.account, csrf => user.csrf, form, errors, notices, kinds,
            units => data.units, sites => data.sites, editing => data.editing, file => data.file,
            action, reselect },
        ),
    )
        .into_response()
}

pub async fn new_form(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
) -> Result<Response, AppError> {
    if !may_register_any(&user) {
        return Err(AppError::Forbidden(lang));
    }
    let data = form_page_data(&st.db, &user, None).await?;
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

/// A form that passed every check: what is stored.
struct Checked {
    title: String,
    kind: BookingKind,
    unit: i64,
    chair: String,
    notice_number: String,
    notice_date: String,
    /// With the edited booking's id when editing (0 when registering).
    slot: BookingSlot,
    /// B5: the planned bookings an emergency displaces.
    displaced: Vec<BookingSlot>,
}

/// The outcome of [`check_form`]: the checked booking, or the messages per field (`rules` for
/// the rules' refusals, `form` for the whole form), and notices to show either way.
struct Outcome {
    checked: Option<Checked>,
    errors: BTreeMap<&'static str, String>,
    notices: Vec<String>,
}

/// After [`check_form`]: the form again (refused, or only checked for conflicts), or the
/// checked booking to store. Shared by registering and editing.
#[allow(clippy::result_large_err)]
fn to_store(
    lang: Lang,
    user: &CurrentUser,
    data: &FormPage,
    form: &BookingForm,
    upload: &Upload,
    out: Outcome,
) -> Result<Checked, Response> {
    let Some(c) = out.checked else {
        return Err(render_form(
            lang,
            user,
            data,
            form,
            &out.errors,
            &out.notices,
            refused_status(upload),
        ));
    };
    if form.action == "check" {
        let mut notices = out.notices;
        notices.insert(0, lang.dict()["bk_no_conflict"].clone());
        return Err(render_form(
            lang,
            user,
            data,
            form,
            &out.errors,
            &notices,
            StatusCode::OK,
        ));
    }
    Ok(c)
}

/// The one validation path of registering and editing: the fields, the written-notice file, and
/// the rules (B1 lead time, B3 overlaps, B5 emergencies). `editing` is the stored booking when
/// editing: its own slot is not a conflict, and the lead time is applied as said at
/// [`lead_time_applies`].
async fn check_form(
    st: &AppState,
    lang: Lang,
    data: &FormPage,
    form: &BookingForm,
    upload: &Upload,
    editing: Option<&Booking>,
    now: DateTime<Utc>,
) -> sqlx::Result<Outcome> {
    let t = lang.dict();
    let vi = lang == Lang::Vi;
    let msg = |key: &str| t.get(key).cloned().unwrap_or_else(|| key.to_string());
    let mut errors: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut notices: Vec<String> = Vec::new();

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
            Some(id) if !sites.contains(&id) => sites.push(id),
            Some(_) => {}
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
    sites.sort_unstable();
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
    match upload {
        Upload::NotPdf => {
            errors.insert("notice_file", msg("bk_err_file_type"));
        }
        Upload::TooLarge => {
            errors.insert("notice_file", msg("bk_err_file_size"));
        }
        Upload::None | Upload::Pdf { .. } => {}
    }
    let settings = &st.settings.booking;
    let mut slot = None;
    if let (Some(d), Some(s), Some(e)) = (date, start, end) {
        match (local(d, s), local(d, e)) {
            (Some(s), Some(e)) => {
                let p = match prep.and_then(|p| local(d, p)) {
                    Some(p) => p,
                    None => booking::default_preparation_start(s, settings),
                };
                slot = Some(BookingSlot {
                    id: editing.map(|b| b.id).unwrap_or_default(),
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
        let first = match editing {
            Some(old) if !lead_time_applies(old, slot) => validate(slot, now),
            _ => check_submission(slot, now, settings),
        };
        if let Err(v) = first {
            errors.insert("rules", rule_text(&v));
        } else {
            let existing: Vec<BookingSlot> = load(&st.db, lang, None)
                .await?
                .iter()
                .map(Booking::slot)
                .collect();
            let names: BTreeMap<i64, String> =
                data.sites.iter().map(|s| (s.id, s.name.clone())).collect();
            let conflicts = find_conflicts(slot, &existing, settings);
            if !conflicts.is_empty() {
                if slot.emergency {
                    match plan_emergency(slot, &existing, settings) {
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
    let checked = match (errors.is_empty(), slot, kind, unit) {
        (true, Some(slot), Some(kind), Some(unit)) => Some(Checked {
            title: title.to_string(),
            kind,
            unit,
            chair: form.chair.trim().to_string(),
            notice_number: form.notice_number.trim().to_string(),
            notice_date: form.notice_date.trim().to_string(),
            slot,
            displaced,
        }),
        _ => None,
    };
    Ok(Outcome {
        checked,
        errors,
        notices,
    })
}

/// B1 on an edit. Interpretation: the 5-day lead time (Art. 5.1) is about when the meeting and
/// its sites are made known; an edit that keeps the official start and the sites (host site
/// included) changes neither, so it is not refused for lead time (a typo in the title, the
/// chair or the notice number can be fixed a day before). Changing the official start or the
/// sites is a new registration of that meeting: the lead time applies from the edit. So does
/// turning an emergency meeting (B5, no lead time) into a planned one, or the emergency would
/// have skipped B1 for a planned meeting. Overlaps (B3) are checked on every edit. The form's
/// hint says the same (`bk_edit_hint`).
fn lead_time_applies(old: &Booking, new: &BookingSlot) -> bool {
    ts(old.official_start) != new.official_start
        || old.host_site_id != new.host_site
        || sorted(&old.sites) != sorted(&new.sites)
        || (old.emergency && !new.emergency)
}

/// Whether the technicians and the provider have to be told again: any time or any site.
fn schedule_changed(old: &Booking, new: &Booking) -> bool {
    old.preparation_start != new.preparation_start
        || old.official_start != new.official_start
        || old.official_end != new.official_end
        || old.host_site_id != new.host_site_id
        || sorted(&old.sites) != sorted(&new.sites)
}

fn sorted(v: &[i64]) -> Vec<i64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// Status of the answer for a refused form: a too large file is 413, the rest 422.
fn refused_status(upload: &Upload) -> StatusCode {
    if matches!(upload, Upload::TooLarge) {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// The audit trail's picture of a booking (before and after a change).
fn snapshot(b: &Booking, file: Option<&FileInfo>) -> serde_json::Value {
    json!({
        "title": b.title, "kind": b.kind, "host_unit": b.host_unit_id, "chair": b.chair,
        "host_site": b.host_site_id, "sites": b.sites,
        "preparation_start": ts(b.preparation_start).to_rfc3339(),
        "official_start": ts(b.official_start).to_rfc3339(),
        "official_end": ts(b.official_end).to_rfc3339(),
        "emergency": b.emergency, "notice_number": b.notice_number, "notice_date": b.notice_date,
        "status": b.status, "on_duty_contact": b.on_duty_contact_id,
        "notice_file": file.map(|f| json!({"name": f.filename, "size": f.size, "sha256": f.sha256})),
    })
}

/// Stores (or replaces) the uploaded written notice, or removes the stored one when asked and
/// nothing new came.
async fn save_file(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    booking: i64,
    upload: &Upload,
    remove: bool,
    user: &CurrentUser,
    now: i64,
) -> sqlx::Result<()> {
    match upload {
        Upload::Pdf { name, data } => {
            sqlx::query(
                "INSERT OR REPLACE INTO booking_files (booking_id, kind, filename, content_type, size, sha256, data, uploaded_by, uploaded_at) \
                 VALUES (?, 'notice', ?, 'application/pdf', ?, ?, ?, ?, ?)",
            )
            .bind(booking)
            .bind(name)
            .bind(data.len() as i64)
            .bind(hex::encode(sha2::Sha256::digest(data)))
            .bind(data.as_slice())
            .bind(user.account.id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        _ if remove => {
            sqlx::query("DELETE FROM booking_files WHERE booking_id = ? AND kind = 'notice'")
                .bind(booking)
                .execute(&mut **tx)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// B5: an emergency displaces planned meetings, and that is recorded (in Vietnamese, citing the
/// article); an approved one's technicians and provider are told.
async fn displace(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    user: &CurrentUser,
    displaced: &[BookingSlot],
    emergency: &BookingSlot,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    for d in displaced {
        let reason = booking::displacement_violation(d, emergency).vi;
        if d.status == BookingStatus::Approved {
            if let Some(old) = load_in(tx, d.id).await? {
                crate::mail::queue_cancelled(tx, &old, &reason, now).await?;
            }
        }
        sqlx::query("UPDATE bookings SET status = 'cancelled', reason = ? WHERE id = ?")
            .bind(&reason)
            .bind(d.id)
            .execute(&mut **tx)
            .await?;
        db::audit(
            &mut **tx,
            db::AuditEntry {
                actor_id: Some(user.account.id),
                actor: &user.account.username,
                action: "displace_booking",
                entity: "booking",
                entity_id: d.id.to_string(),
                before: Some(json!({"status": d.status.as_str()})),
                after: Some(json!({"status": "cancelled", "displaced_by": emergency.id})),
            },
        )
        .await?;
    }
    Ok(())
}

async fn replace_sites(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    booking: i64,
    sites: &[i64],
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM booking_sites WHERE booking_id = ?")
        .bind(booking)
        .execute(&mut **tx)
        .await?;
    for s in sites {
        sqlx::query("INSERT INTO booking_sites (booking_id, site_id) VALUES (?,?)")
            .bind(booking)
            .bind(s)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn form_csrf_refused(
    lang: Lang,
    user: &CurrentUser,
    data: &FormPage,
    form: &BookingForm,
) -> Response {
    let errors = BTreeMap::from([("form", lang.dict()["csrf_failed"].clone())]);
    render_form(lang, user, data, form, &errors, &[], StatusCode::FORBIDDEN)
}

/// Registering: `POST /bookings/new` (the page's multipart form) and `POST /bookings`.
pub async fn create(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    req: Request,
) -> Result<Response, AppError> {
    if !may_register_any(&user) {
        return Err(AppError::Forbidden(lang));
    }
    let (form, upload) = match read_form(req).await {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    let data = form_page_data(&st.db, &user, None).await?;
    if form.csrf != user.csrf {
        return Ok(form_csrf_refused(lang, &user, &data, &form));
    }
    let _write = WRITE_LOCK.lock().await;
    let now = Utc::now();
    let out = check_form(&st, lang, &data, &form, &upload, None, now).await?;
    let c = match to_store(lang, &user, &data, &form, &upload, out) {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    require(&user, lang, &Action::RegisterBooking { unit: c.unit })?;
    let status = if form.action == "draft" {
        BookingStatus::Draft
    } else {
        BookingStatus::Submitted
    };
    let slot = &c.slot;
    let mut tx = st.db.begin().await?;
    let id = sqlx::query(
        "INSERT INTO bookings (title, kind, host_unit_id, chair, host_site_id, preparation_start, official_start, official_end, \
         emergency, notice_number, notice_date, status, created_by, created_at, submitted_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    )
    .bind(&c.title)
    .bind(c.kind.as_str())
    .bind(c.unit)
    .bind(&c.chair)
    .bind(slot.host_site)
    .bind(slot.preparation_start.timestamp())
    .bind(slot.official_start.timestamp())
    .bind(slot.end.timestamp())
    .bind(slot.emergency)
    .bind(&c.notice_number)
    .bind(&c.notice_date)
    .bind(status.as_str())
    .bind(user.account.id)
    .bind(now.timestamp())
    .bind((status == BookingStatus::Submitted).then_some(now.timestamp()))
    .execute(&mut *tx)
    .await?
    .last_insert_rowid();
    replace_sites(&mut tx, id, &slot.sites).await?;
    save_file(&mut tx, id, &upload, false, &user, now.timestamp()).await?;
    // A draft is not a registration: it displaces nobody's meeting.
    if status == BookingStatus::Submitted {
        let emergency = BookingSlot { id, ..slot.clone() };
        displace(&mut tx, &user, &c.displaced, &emergency, now).await?;
    }
    let Some(b) = load_in(&mut tx, id).await? else {
        return Err(AppError::Internal(format!("booking #{id} vanished")));
    };
    let file = file_info(&mut *tx, id).await?;
    db::audit(
        &mut *tx,
        db::AuditEntry {
            actor_id: Some(user.account.id),
            actor: &user.account.username,
            action: "create_booking",
            entity: "booking",
            entity_id: id.to_string(),
            before: None,
            after: Some(snapshot(&b, file.as_ref())),
        },
    )
    .await?;
    let emergency_alert = slot.emergency && status == BookingStatus::Submitted;
    if emergency_alert {
        crate::mail::queue_emergency(&mut tx, &b, now).await?;
    }
    tx.commit().await?;
    if emergency_alert {
        st.outbox.notify_one();
        st.hub.emergency_alert(id, &c.title, &slot.sites);
    }
    Ok(Redirect::to(&format!("/bookings/{id}")).into_response())
}

/// Who may edit `b`, and whether its status allows it: the roles that may register for its host
/// unit (A1), while it is a draft, submitted or approved (B4, `transition` with `Edit`).
fn may_edit(
    user: &CurrentUser,
    b: &Booking,
) -> Result<BookingStatus, Option<hnth_rules::Violation>> {
    if !allowed(
        user.account.role,
        user.account.scope(),
        &Action::RegisterBooking {
            unit: b.host_unit_id,
        },
    ) {
        return Err(None);
    }
    let from = BookingStatus::parse(&b.status).unwrap_or(BookingStatus::Draft);
    transition(from, &Step::Edit, user.account.role).map_err(Some)
}

fn refusal_page(lang: Lang, status: StatusCode, v: hnth_rules::Violation) -> Response {
    let text = if lang == Lang::Vi { v.vi } else { v.en };
    (
        status,
        page("error.html", context! { t => lang.dict(), message => text }),
    )
        .into_response()
}

fn not_found(lang: Lang) -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "error.html",
            context! { t => lang.dict(), message => lang.dict()["not_found"] },
        ),
    )
        .into_response()
}

/// `GET /bookings/{id}/edit`: the registration form, filled in.
pub async fn edit_form(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let Some(b) = load(&st.db, lang, Some(id)).await?.pop() else {
        return Ok(not_found(lang));
    };
    if !may_view(&user, &b) {
        return Err(AppError::Forbidden(lang));
    }
    match may_edit(&user, &b) {
        Ok(_) => {}
        Err(None) => return Err(AppError::Forbidden(lang)),
        Err(Some(v)) => return Ok(refusal_page(lang, StatusCode::UNPROCESSABLE_ENTITY, v)),
    }
    let data = form_page_data(&st.db, &user, Some(id)).await?;
    Ok(render_form(
        lang,
        &user,
        &data,
        &BookingForm::of(&b),
        &BTreeMap::new(),
        &[],
        StatusCode::OK,
    ))
}

/// `POST /bookings/{id}/edit`: the same checks as registering ([`check_form`]); an approved
/// booking goes back to submitted (to be approved again), and if its times or sites changed its
/// technicians and the provider are told and its unsent reminders withdrawn.
pub async fn update(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Path(id): Path<i64>,
    req: Request,
) -> Result<Response, AppError> {
    // Refused before the upload is read; checked again below, under the lock.
    match load(&st.db, lang, Some(id)).await?.pop() {
        None => return Ok(not_found(lang)),
        Some(b) if !may_view(&user, &b) || matches!(may_edit(&user, &b), Err(None)) => {
            return Err(AppError::Forbidden(lang))
        }
        Some(_) => {}
    }
    let (form, upload) = match read_form(req).await {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    let _write = WRITE_LOCK.lock().await;
    let Some(old) = load(&st.db, lang, Some(id)).await?.pop() else {
        return Ok(not_found(lang));
    };
    if !may_view(&user, &old) {
        return Err(AppError::Forbidden(lang));
    }
    let to = match may_edit(&user, &old) {
        Ok(to) => to,
        Err(None) => return Err(AppError::Forbidden(lang)),
        Err(Some(v)) => return Ok(refusal_page(lang, StatusCode::UNPROCESSABLE_ENTITY, v)),
    };
    let data = form_page_data(&st.db, &user, Some(id)).await?;
    if form.csrf != user.csrf {
        return Ok(form_csrf_refused(lang, &user, &data, &form));
    }
    let now = Utc::now();
    let out = check_form(&st, lang, &data, &form, &upload, Some(&old), now).await?;
    let c = match to_store(lang, &user, &data, &form, &upload, out) {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    // The host unit may change only to one the user may register for.
    require(&user, lang, &Action::RegisterBooking { unit: c.unit })?;
    let slot = &c.slot;
    let was_approved = old.status == BookingStatus::Approved.as_str();
    let mut tx = st.db.begin().await?;
    let file_before = file_info(&mut *tx, id).await?;
    sqlx::query(
        "UPDATE bookings SET title = ?, kind = ?, host_unit_id = ?, chair = ?, host_site_id = ?, preparation_start = ?, \
         official_start = ?, official_end = ?, emergency = ?, notice_number = ?, notice_date = ?, status = ?, \
         submitted_at = CASE WHEN ? THEN ? ELSE submitted_at END WHERE id = ?",
    )
    .bind(&c.title)
    .bind(c.kind.as_str())
    .bind(c.unit)
    .bind(&c.chair)
    .bind(slot.host_site)
    .bind(slot.preparation_start.timestamp())
    .bind(slot.official_start.timestamp())
    .bind(slot.end.timestamp())
    .bind(slot.emergency)
    .bind(&c.notice_number)
    .bind(&c.notice_date)
    .bind(to.as_str())
    .bind(was_approved)
    .bind(now.timestamp())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    replace_sites(&mut tx, id, &slot.sites).await?;
    save_file(
        &mut tx,
        id,
        &upload,
        form.remove_notice_file.is_some(),
        &user,
        now.timestamp(),
    )
    .await?;
    if to == BookingStatus::Submitted {
        displace(&mut tx, &user, &c.displaced, slot, now).await?;
    }
    let Some(new) = load_in(&mut tx, id).await? else {
        return Err(AppError::Internal(format!("booking #{id} vanished")));
    };
    let changed = schedule_changed(&old, &new);
    if was_approved {
        // No longer approved: nothing reminds of it until it is approved again (which sends
        // the notices and the reminders anew).
        crate::mail::withdraw_reminders(&mut tx, id).await?;
        if changed {
            crate::mail::queue_changed(&mut tx, &old, &new, now).await?;
        }
    }
    let file_after = file_info(&mut *tx, id).await?;
    db::audit(
        &mut *tx,
        db::AuditEntry {
            actor_id: Some(user.account.id),
            actor: &user.account.username,
            action: "edit_booking",
            entity: "booking",
            entity_id: id.to_string(),
            before: Some(snapshot(&old, file_before.as_ref())),
            after: Some(snapshot(&new, file_after.as_ref())),
        },
    )
    .await?;
    let emergency_alert = slot.emergency && !old.emergency && to == BookingStatus::Submitted;
    if emergency_alert {
        crate::mail::queue_emergency(&mut tx, &new, now).await?;
    }
    tx.commit().await?;
    if was_approved && changed || emergency_alert {
        st.outbox.notify_one();
    }
    if emergency_alert {
        st.hub.emergency_alert(id, &c.title, &slot.sites);
    }
    Ok(Redirect::to(&format!("/bookings/{id}")).into_response())
}

/// A booking as the open transaction sees it (it may not be committed yet), Vietnamese labels.
async fn load_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: i64,
) -> sqlx::Result<Option<Booking>> {
    let Some(r) = sqlx::query(SELECT_BOOKINGS)
        .bind(Some(id))
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let names: BTreeMap<i64, String> = sqlx::query_as("SELECT id, name FROM sites")
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    Ok(Some(from_row(&r, Lang::Vi, &names)))
}

pub async fn show(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let Some(b) = load(&st.db, lang, Some(id)).await?.pop() else {
        return Ok(not_found(lang));
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
        held => can(Step::MarkHeld),
        close => can(Step::Close),
        edit => may_edit(&user, &b).is_ok(),
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
            &st.settings.booking,
        );
    let phones = if b.emergency {
        crate::mail::phone_list(&st.db, b.id).await?
    } else {
        Vec::new()
    };
    let file = file_info(&st.db, b.id).await?;
    // L2: the control center picks the provider's on-duty technician while the meeting is ahead.
    let duty_contacts = if control && on_duty_editable(status) {
        provider_contacts(&st.db).await?
    } else {
        Vec::new()
    };
    Ok(page(
        "booking.html",
        context! { t, user => user.account, csrf => user.csrf, b, actions, times, costs, may_add_cost,
                   notices, provider_late, phones, file, duty_contacts },
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

/// Submit, approve, reject, cancel, mark held or close: the workflow of `hnth_rules::booking::transition`.
pub async fn step(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Path((id, what)): Path<(i64, String)>,
    Form(f): Form<StepForm>,
) -> Result<Response, AppError> {
    require_csrf(&user, &f.csrf, lang)?;
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
        "held" => Step::MarkHeld,
        "close" => Step::Close,
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
        let settings = st.settings.booking.clone();
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
        crate::mail::queue_on_approval(&mut tx, &b, Utc::now(), &st.settings.booking).await?;
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

// ---------------------------------------------------------------- L2: the on-duty technician

/// One of the line provider's contacts, as the booking page offers them.
#[derive(Debug, Serialize)]
pub struct ContactChoice {
    pub id: i64,
    pub label: String,
}

async fn provider_contacts(db: &SqlitePool) -> sqlx::Result<Vec<ContactChoice>> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT p.id, p.name, p.phone, u.name FROM provider_contacts p JOIN units u ON u.id = p.unit_id ORDER BY p.id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, phone, unit)| ContactChoice {
            id,
            label: if phone.is_empty() {
                format!("{name} ({unit})")
            } else {
                format!("{name} ({unit}), {phone}")
            },
        })
        .collect())
}

/// The on-duty technician is chosen for a meeting still ahead or under way.
fn on_duty_editable(status: BookingStatus) -> bool {
    matches!(
        status,
        BookingStatus::Draft
            | BookingStatus::Submitted
            | BookingStatus::Approved
            | BookingStatus::Held
    )
}

#[derive(Deserialize)]
pub struct DutyForm {
    #[serde(default)]
    csrf: String,
    /// A `provider_contacts` id, or empty for nobody.
    #[serde(default)]
    contact: String,
}

/// `POST /bookings/{id}/duty` (control center): L2, the provider's on-duty technician of this
/// meeting. If the meeting is approved (or under way), its technicians are told.
pub async fn set_on_duty(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Path(id): Path<i64>,
    Form(f): Form<DutyForm>,
) -> Result<Response, AppError> {
    require_csrf(&user, &f.csrf, lang)?;
    if !user.account.is_control_center() {
        return Err(AppError::Forbidden(lang));
    }
    let _write = WRITE_LOCK.lock().await;
    let Some(b) = load(&st.db, lang, Some(id)).await?.pop() else {
        return Ok(not_found(lang));
    };
    if !may_view(&user, &b) {
        return Err(AppError::Forbidden(lang));
    }
    let status = BookingStatus::parse(&b.status).unwrap_or(BookingStatus::Draft);
    let refuse = |key: &str| {
        Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page(
                "error.html",
                context! { t => lang.dict(), message => lang.dict()[key] },
            ),
        )
            .into_response())
    };
    if !on_duty_editable(status) {
        return refuse("bk_err_on_duty_status");
    }
    let contact: Option<i64> = if f.contact.trim().is_empty() {
        None
    } else {
        let id: Option<i64> = f.contact.trim().parse().ok();
        let exists: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM provider_contacts WHERE id = ?")
                .bind(id)
                .fetch_optional(&st.db)
                .await?;
        match exists {
            Some((id,)) => Some(id),
            None => return refuse("bk_err_on_duty"),
        }
    };
    if contact == b.on_duty_contact_id {
        return Ok(Redirect::to(&format!("/bookings/{id}")).into_response());
    }
    let now = Utc::now();
    let mut tx = st.db.begin().await?;
    sqlx::query("UPDATE bookings SET on_duty_contact_id = ? WHERE id = ?")
        .bind(contact)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let Some(new) = load_in(&mut tx, id).await? else {
        return Err(AppError::Internal(format!("booking #{id} vanished")));
    };
    let tell = matches!(status, BookingStatus::Approved | BookingStatus::Held);
    if tell {
        crate::mail::queue_on_duty(&mut tx, &new, now).await?;
    }
    db::audit(
        &mut *tx,
        db::AuditEntry {
            actor_id: Some(user.account.id),
            actor: &user.account.username,
            action: "booking_on_duty",
            entity: "booking",
            entity_id: id.to_string(),
            before: Some(json!({"on_duty_contact": b.on_duty_contact_id, "on_duty": b.on_duty})),
            after: Some(json!({"on_duty_contact": new.on_duty_contact_id, "on_duty": new.on_duty})),
        },
    )
    .await?;
    tx.commit().await?;
    if tell {
        st.outbox.notify_one();
    }
    Ok(Redirect::to(&format!("/bookings/{id}")).into_response())
}

// ---------------------------------------------------------------- B1: the written notice file

/// `GET /bookings/{id}/notice.pdf`: the uploaded written notice, for whoever may see the booking.
pub async fn notice_file(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let Some(b) = load(&st.db, lang, Some(id)).await?.pop() else {
        return Ok(not_found(lang));
    };
    if !may_view(&user, &b) {
        return Err(AppError::Forbidden(lang));
    }
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT filename, data FROM booking_files WHERE booking_id = ? AND kind = 'notice'",
    )
    .bind(id)
    .fetch_optional(&st.db)
    .await?;
    let Some((name, data)) = row else {
        return Ok(not_found(lang));
    };
    // The stored name may be Vietnamese: RFC 6266 filename* (UTF-8), with an ASCII fallback.
    let ascii = format!("cong-van-{id}.pdf");
    let encoded: String = name
        .bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b".-_".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        data,
    )
        .into_response())
}

// ---------------------------------------------------------------- B4: the printable letter

/// Where the letters are dated (the province of Decision 561).
const LETTER_PLACE: &str = "Bạc Liêu";

static LETTER: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.add_template(
        "booking_letter.html",
        include_str!("../templates/booking_letter.html"),
    )
    .expect("letter template parses");
    env
});

/// "08 giờ 00 phút, ngày 04/12/2026" (Asia/Ho_Chi_Minh).
fn time_in_words(t: i64) -> String {
    let l = ts(t).with_timezone(&TZ);
    format!(
        "{:02} giờ {:02} phút, ngày {}",
        l.hour(),
        l.minute(),
        l.format("%d/%m/%Y")
    )
}

/// "Bạc Liêu, ngày 05 tháng 3 năm 2026": the place-and-date line of an administrative document
/// (Decree 30/2020/NĐ-CP, Appendix I: a day below 10 and the months 1 and 2 take a leading 0).
fn place_and_date(t: DateTime<Utc>) -> String {
    let l = t.with_timezone(&TZ);
    let month = if l.month() <= 2 {
        format!("{:02}", l.month())
    } else {
        l.month().to_string()
    };
    format!(
        "{LETTER_PLACE}, ngày {:02} tháng {month} năm {}",
        l.day(),
        l.year()
    )
}

/// `GET /bookings/{id}/letter`: B4, the invitation letter to print, only for an approved
/// booking; always in Vietnamese (it is an administrative document), dated on the approval.
pub async fn letter(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let Some(b) = load(&st.db, Lang::Vi, Some(id)).await?.pop() else {
        return Ok(not_found(lang));
    };
    if !may_view(&user, &b) {
        return Err(AppError::Forbidden(lang));
    }
    if b.status != BookingStatus::Approved.as_str() {
        let text = lang.dict()["bk_err_not_approved"].clone();
        return Ok((
            StatusCode::CONFLICT,
            page("error.html", context! { t => lang.dict(), message => text }),
        )
            .into_response());
    }
    let guests: Vec<&String> = b
        .sites
        .iter()
        .zip(&b.site_names)
        .filter(|(s, _)| **s != b.host_site_id)
        .map(|(_, n)| n)
        .collect();
    let dated = b.decided_at.map(ts).unwrap_or_else(Utc::now);
    let end = ts(b.official_end).with_timezone(&TZ);
    let ctx = context! {
        b,
        unit_upper => b.host_unit.to_uppercase(),
        place_date => place_and_date(dated),
        kind_lower => b.kind_label.to_lowercase(),
        official => time_in_words(b.official_start),
        until => format!("{:02} giờ {:02} phút", end.hour(), end.minute()),
        prep => time_in_words(b.preparation_start),
        guests,
    };
    let html = LETTER
        .get_template("booking_letter.html")
        .and_then(|t| t.render(ctx))
        .map_err(|e| AppError::Internal(format!("letter template: {e:#}")))?;
    Ok(axum::response::Html(html).into_response())
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
