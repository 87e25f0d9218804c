//! Art. 5: registering meetings (bookings), the pages. The use cases (the rules, the writes,
//! the notices) are `services::bookings`; this module reads the forms, calls them, and shows
//! the answer (in the page's language).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, RawForm, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use hnth_rules::booking::{
    self, check_approver, transition, Action as Step, BookingKind, BookingStatus,
};
use hnth_rules::roles::{allowed, Action};
use hnth_rules::time::{format_date_vi, format_datetime_vi, TZ};
use minijinja::context;
use serde::{Deserialize, Serialize};

pub use crate::services::bookings::NOTICE_FILE_MAX;
use crate::services::bookings::{
    self as service, Actor, Conflicts, Ctx, FieldErrors, FileChange, Input, Refusal, Review,
};
use crate::services::invitation::ics;
use crate::store;
use crate::store::bookings::FileInfo;
use crate::web::auth::CurrentUser;
use crate::web::{page, require_csrf, AppError, AppState, Lang, LoggedIn};

/// A booking as the pages show it: the stored booking and its labels in the page's language.
#[derive(Debug, Clone, Serialize)]
pub struct Booking {
    #[serde(flatten)]
    pub data: store::bookings::Booking,
    pub kind_label: String,
    pub status_label: String,
}

impl std::ops::Deref for Booking {
    type Target = store::bookings::Booking;
    fn deref(&self) -> &Self::Target {
        &self.data
    }
}

impl Booking {
    fn of(data: store::bookings::Booking, lang: Lang) -> Booking {
        let kind_label = BookingKind::parse(&data.kind)
            .map(|k| label(lang, k.label_vi(), k.label_en()))
            .unwrap_or_default();
        let status_label = BookingStatus::parse(&data.status)
            .map(|s| label(lang, s.label_vi(), s.label_en()))
            .unwrap_or_default();
        Booking {
            data,
            kind_label,
            status_label,
        }
    }
}

fn ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

fn label(lang: Lang, vi: &str, en: &str) -> String {
    if lang == Lang::En { en } else { vi }.to_string()
}

/// Every booking (or the one `filter` names), labelled in `lang`.
pub async fn load(
    db: &store::Db,
    lang: Lang,
    filter: Option<i64>,
) -> Result<Vec<Booking>, store::Error> {
    Ok(store::bookings::load(db, filter)
        .await?
        .into_iter()
        .map(|b| Booking::of(b, lang))
        .collect())
}

/// Who acts, as the use cases take it.
pub fn actor(user: &CurrentUser) -> Actor {
    Actor {
        id: user.account.id,
        username: user.account.username.clone(),
        role: user.account.role,
        unit_id: user.account.unit_id,
        scope: user.account.scope(),
    }
}

/// What the use cases need of the server.
pub fn ctx(st: &AppState) -> Ctx<'_> {
    Ctx {
        db: &st.db,
        rules: &st.settings.booking,
        outbox: &st.outbox,
    }
}

/// A1: whether the user may see this booking (its host unit, its sites).
pub fn may_view(user: &CurrentUser, b: &Booking) -> bool {
    service::may_view(&actor(user), b)
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
    let may_register = service::may_register_any(&actor(&user));
    let t = lang.dict();
    Ok(page(
        "bookings.html",
        context! { t, user => user.account, csrf => user.csrf, bookings, may_register },
    )
    .into_response())
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
    /// `1` once the user set the preparation time by hand: the page's script then stops moving
    /// it with the start (kept across a round trip to the server).
    #[serde(default)]
    prep_manual: String,
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
            "prep_manual" => self.prep_manual = v,
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

/// What the form page needs besides the form: the choices, and where it posts.
struct FormPage {
    units: Vec<(i64, String)>,
    sites: Vec<store::registry::Site>,
    /// The booking being edited, if editing.
    editing: Option<i64>,
    /// Its stored written notice, if any.
    file: Option<FileInfo>,
    /// P2: the default preparation before the official start, in minutes (the page's script
    /// moves the preparation time with the start by it).
    prep_minutes: i64,
}

async fn form_page_data(
    db: &store::Db,
    settings: &booking::Settings,
    user: &CurrentUser,
    editing: Option<i64>,
) -> Result<FormPage, store::Error> {
    let units = service::host_units_for(db, &actor(user)).await?;
    let file = match editing {
        Some(id) => store::bookings::file_info(db, id).await?,
        None => None,
    };
    Ok(FormPage {
        units,
        sites: store::registry::sites(db).await?,
        editing,
        file,
        prep_minutes: settings.default_preparation.num_minutes(),
    })
}

// The form's own parts (fields, choices) and what it says back (errors, notices, the check).
#[allow(clippy::too_many_arguments)]
fn render_form(
    lang: Lang,
    user: &CurrentUser,
    data: &FormPage,
    form: &BookingForm,
    errors: &BTreeMap<&'static str, String>,
    notices: &[String],
    check: Option<&ConflictCheck>,
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
    let reselect = !errors.is_empty() || !notices.is_empty() || check.is_some();
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
            action, reselect, check, prep_minutes => data.prep_minutes,
            today_iso => Utc::now().with_timezone(&TZ).format("%Y-%m-%d").to_string() },
        ),
    )
        .into_response()
}

pub async fn new_form(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
) -> Result<Response, AppError> {
    if !service::may_register_any(&actor(&user)) {
        return Err(AppError::Forbidden(lang));
    }
    let data = form_page_data(&st.db, &st.settings.booking, &user, None).await?;
    let form = BookingForm {
        kind: "hop".into(),
        notice_date: default_notice_date(Utc::now()),
        ..Default::default()
    };
    Ok(render_form(
        lang,
        &user,
        &data,
        &form,
        &BTreeMap::new(),
        &[],
        None,
        StatusCode::OK,
    ))
}

/// B1: the written notice is dated today by default, in Asia/Ho_Chi_Minh (before 07:00 the
/// date in UTC is still yesterday's).
fn default_notice_date(now: DateTime<Utc>) -> String {
    format_date_vi(now)
}

/// A date as the form sends it: `dd/mm/yyyy` as people type it (`d/m/yyyy` too), or the ISO
/// `yyyy-mm-dd` a date input posts (scripts). The year has four digits: `15/12/26` is not
/// taken for the year 26.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%d/%m/%Y")
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d"))
        .ok()
        .filter(|d| (1000..=9999).contains(&d.year()))
}

/// A 24-hour `HH:MM` (`8:00` too), or the `HH:MM:SS` a time input may post.
fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.trim();
    NaiveTime::parse_from_str(s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
        .ok()
}

fn local(date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    TZ.from_local_datetime(&date.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// B3 (and B5) as the form's "Kiểm tra trùng lịch" box shows them, apart from the refusals:
/// `ok` (green), `conflicts` (each overlap, citing the article), `displaces` (an emergency
/// meeting and the planned ones it would replace) or `unchecked` (no valid time window yet).
#[derive(Debug, Serialize)]
struct ConflictCheck {
    state: &'static str,
    items: Vec<String>,
}

fn msg(lang: Lang, key: &str) -> String {
    lang.dict()
        .get(key)
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

fn rule_text(lang: Lang, v: &hnth_rules::Violation) -> String {
    if lang == Lang::Vi {
        v.vi.clone()
    } else {
        v.en.clone()
    }
}

/// The submitted form as the use cases take it, and the errors of the fields that do not parse
/// (dates, times, ids, the file).
fn input_of(form: &BookingForm, upload: &Upload) -> (Input, FieldErrors) {
    let mut errors = FieldErrors::new();
    let mut sites = Vec::new();
    for s in &form.sites {
        match s.parse::<i64>() {
            Ok(id) => sites.push(id),
            Err(_) => {
                errors.insert("sites", "bk_err_sites");
            }
        }
    }
    let date = parse_date(&form.date);
    if date.is_none() {
        errors.insert("date", "bk_err_date");
    }
    let start = parse_time(&form.start);
    if start.is_none() {
        errors.insert("start", "bk_err_time");
    }
    let end = parse_time(&form.end);
    if end.is_none() {
        errors.insert("end", "bk_err_time");
    }
    let prep = if form.prep.trim().is_empty() {
        None
    } else {
        parse_time(&form.prep)
    };
    if !form.prep.trim().is_empty() && prep.is_none() {
        errors.insert("prep", "bk_err_time");
    }
    let notice_date = if form.notice_date.trim().is_empty() {
        String::new()
    } else {
        match parse_date(&form.notice_date) {
            Some(d) => d.format("%d/%m/%Y").to_string(),
            None => {
                errors.insert("notice_date", "bk_err_notice_date");
                String::new()
            }
        }
    };
    let file = match upload {
        Upload::NotPdf => {
            errors.insert("notice_file", "bk_err_file_type");
            FileChange::Keep
        }
        Upload::TooLarge => {
            errors.insert("notice_file", "bk_err_file_size");
            FileChange::Keep
        }
        Upload::Pdf { name, data } => FileChange::Put {
            name: name.clone(),
            data: data.clone(),
        },
        Upload::None if form.remove_notice_file.is_some() => FileChange::Remove,
        Upload::None => FileChange::Keep,
    };
    let (mut official_start, mut official_end, mut preparation_start) = (None, None, None);
    if let (Some(d), Some(s), Some(e)) = (date, start, end) {
        match (local(d, s), local(d, e)) {
            (Some(s), Some(e)) => {
                official_start = Some(s);
                official_end = Some(e);
                preparation_start = prep.and_then(|p| local(d, p));
            }
            _ => {
                errors.insert("start", "bk_err_time");
            }
        }
    }
    let input = Input {
        title: form.title.clone(),
        kind: form.kind.clone(),
        host_unit: form.host_unit.parse().ok(),
        chair: form.chair.clone(),
        host_site: form.host_site.parse().ok(),
        sites,
        preparation_start,
        official_start,
        official_end,
        emergency: form.emergency.is_some(),
        notice_number: form.notice_number.clone(),
        notice_date,
        file,
    };
    (input, errors)
}

/// The form again after a review: its errors (in the page's language), the notices, and the
/// conflict check's box when only checking.
fn render_review(
    lang: Lang,
    user: &CurrentUser,
    data: &FormPage,
    form: &BookingForm,
    upload: &Upload,
    r: &Review,
) -> Response {
    let checking = form.action == "check";
    let mut errors: BTreeMap<&'static str, String> = r
        .errors
        .iter()
        .map(|(field, key)| (*field, msg(lang, key)))
        .collect();
    let mut refusals: Vec<String> = r.refusals.iter().map(|v| rule_text(lang, v)).collect();
    // Registering or saving refuses overlaps; checking shows them in its own box.
    if !checking {
        refusals.extend(r.overlaps.iter().map(|v| rule_text(lang, v)));
    }
    let mut check = match &r.conflicts {
        Conflicts::Unchecked => ConflictCheck {
            state: "unchecked",
            items: Vec::new(),
        },
        Conflicts::Free => ConflictCheck {
            state: "ok",
            items: vec![msg(lang, "bk_no_conflict")],
        },
        Conflicts::Overlaps(vs) => ConflictCheck {
            state: "conflicts",
            items: vs.iter().map(|v| rule_text(lang, v)).collect(),
        },
        Conflicts::Displaces(bs) => ConflictCheck {
            state: "displaces",
            items: bs
                .iter()
                .map(|b| format!("{} (#{})", b.title, b.id))
                .collect(),
        },
    };
    if check.state == "ok" && (!errors.is_empty() || !refusals.is_empty()) {
        // Free of overlaps, but not ready to be sent.
        check.items = vec![msg(lang, "bk_check_free")];
    }
    let mut notices = Vec::new();
    if !checking {
        if let Conflicts::Displaces(bs) = &r.conflicts {
            for b in bs {
                notices.push(format!("{}: {}", msg(lang, "bk_displaces"), b.title));
            }
        }
    }
    if !refusals.is_empty() {
        errors.insert("rules", refusals.join("\n"));
    }
    // Checking answers with the check's box, and every other error at once; it is refused (422)
    // only for those other errors, not for the overlaps it was asked to find.
    let status = if checking && errors.is_empty() {
        StatusCode::OK
    } else {
        refused_status(upload)
    };
    render_form(
        lang,
        user,
        data,
        form,
        &errors,
        &notices,
        checking.then_some(&check),
        status,
    )
}

/// Status of the answer for a refused form: a too large file is 413, the rest 422.
fn refused_status(upload: &Upload) -> StatusCode {
    if matches!(upload, Upload::TooLarge) {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

fn form_csrf_refused(
    lang: Lang,
    user: &CurrentUser,
    data: &FormPage,
    form: &BookingForm,
) -> Response {
    let errors = BTreeMap::from([("form", lang.dict()["csrf_failed"].clone())]);
    render_form(
        lang,
        user,
        data,
        form,
        &errors,
        &[],
        None,
        StatusCode::FORBIDDEN,
    )
}

fn error_page(lang: Lang, status: StatusCode, message: String) -> Response {
    (
        status,
        page("error.html", context! { t => lang.dict(), message }),
    )
        .into_response()
}

fn refusal_page(lang: Lang, status: StatusCode, v: hnth_rules::Violation) -> Response {
    error_page(lang, status, rule_text(lang, &v))
}

fn not_found(lang: Lang) -> Response {
    error_page(
        lang,
        StatusCode::NOT_FOUND,
        lang.dict()["not_found"].clone(),
    )
}

/// A use case's refusal, as a page (the form's own refusals are rendered by the form).
fn refused(lang: Lang, r: Refusal) -> Result<Response, AppError> {
    match r {
        Refusal::NotFound => Ok(not_found(lang)),
        Refusal::Forbidden(v) => {
            tracing::debug!(rule = v.rule.as_str(), "refused: {}", v.en);
            Err(AppError::Forbidden(lang))
        }
        Refusal::Denied(v) => Ok(refusal_page(lang, StatusCode::FORBIDDEN, v)),
        Refusal::Rule(v) => Ok(refusal_page(lang, StatusCode::UNPROCESSABLE_ENTITY, v)),
        Refusal::Field { key, .. } => Ok(error_page(
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            msg(lang, key),
        )),
        Refusal::Invalid(_) => Err(AppError::Internal("an unrendered form refusal".into())),
        Refusal::Store(e) => Err(AppError::Internal(e.to_string())),
    }
}

/// Registering: `POST /bookings/new` (the page's multipart form) and `POST /bookings`.
pub async fn create(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    req: Request,
) -> Result<Response, AppError> {
    let who = actor(&user);
    if !service::may_register_any(&who) {
        return Err(AppError::Forbidden(lang));
    }
    let (form, upload) = match read_form(req).await {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    let data = form_page_data(&st.db, &st.settings.booking, &user, None).await?;
    if form.csrf != user.csrf {
        return Ok(form_csrf_refused(lang, &user, &data, &form));
    }
    let (input, errors) = input_of(&form, &upload);
    let now = Utc::now();
    if form.action == "check" {
        return match service::check(ctx(&st), &who, &input, errors, None, now).await {
            Ok(r) => Ok(render_review(lang, &user, &data, &form, &upload, &r)),
            Err(r) => refused(lang, r),
        };
    }
    let draft = form.action == "draft";
    match service::register(ctx(&st), &who, &input, errors, draft, now).await {
        Ok(saved) => {
            if saved.emergency_alert {
                st.hub.emergency_alert(saved.id, &saved.title, &saved.sites);
            }
            Ok(Redirect::to(&format!("/bookings/{}", saved.id)).into_response())
        }
        Err(Refusal::Invalid(r)) => Ok(render_review(lang, &user, &data, &form, &upload, &r)),
        Err(r) => refused(lang, r),
    }
}

/// `GET /bookings/{id}/edit`: the registration form, filled in.
pub async fn edit_form(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let b = match service::editable(&st.db, &actor(&user), id).await {
        Ok((b, _)) => Booking::of(b, lang),
        Err(r) => return refused(lang, r),
    };
    let data = form_page_data(&st.db, &st.settings.booking, &user, Some(id)).await?;
    Ok(render_form(
        lang,
        &user,
        &data,
        &BookingForm::of(&b),
        &BTreeMap::new(),
        &[],
        None,
        StatusCode::OK,
    ))
}

/// `POST /bookings/{id}/edit`: the same checks as registering (`services::bookings::edit`).
pub async fn update(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Path(id): Path<i64>,
    req: Request,
) -> Result<Response, AppError> {
    let who = actor(&user);
    // Refused before the upload is read; checked again by the use case.
    match service::viewable(&st.db, &who, id).await {
        Ok(b) if matches!(service::may_edit(&who, &b), Err(None)) => {
            return Err(AppError::Forbidden(lang))
        }
        Ok(_) => {}
        Err(r) => return refused(lang, r),
    }
    let (form, upload) = match read_form(req).await {
        Ok(x) => x,
        Err(resp) => return Ok(resp),
    };
    if let Err(r) = service::editable(&st.db, &who, id).await {
        return refused(lang, r);
    }
    let data = form_page_data(&st.db, &st.settings.booking, &user, Some(id)).await?;
    if form.csrf != user.csrf {
        return Ok(form_csrf_refused(lang, &user, &data, &form));
    }
    let (input, errors) = input_of(&form, &upload);
    let now = Utc::now();
    if form.action == "check" {
        return match service::check(ctx(&st), &who, &input, errors, Some(id), now).await {
            Ok(r) => Ok(render_review(lang, &user, &data, &form, &upload, &r)),
            Err(r) => refused(lang, r),
        };
    }
    match service::edit(ctx(&st), &who, id, &input, errors, now).await {
        Ok(saved) => {
            if saved.emergency_alert {
                st.hub.emergency_alert(saved.id, &saved.title, &saved.sites);
            }
            Ok(Redirect::to(&format!("/bookings/{id}")).into_response())
        }
        Err(Refusal::Invalid(r)) => Ok(render_review(lang, &user, &data, &form, &upload, &r)),
        Err(r) => refused(lang, r),
    }
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
    let who = actor(&user);
    let status = b.status();
    let can = |s: Step| transition(status, &s, user.account.role).is_ok();
    // Separation of duties: the registrant is told that someone else approves.
    let own_booking = check_approver(b.created_by, user.account.id, &st.settings.booking).is_err();
    let actions = context! {
        submit => can(Step::Submit),
        approve => can(Step::Approve) && !own_booking,
        approve_by_other => can(Step::Approve) && own_booking,
        reject => can(Step::Reject { reason: "x".into() }),
        cancel => can(Step::Cancel { reason: "x".into() }),
        held => can(Step::MarkHeld),
        close => can(Step::Close),
        edit => service::may_edit(&who, &b).is_ok(),
    };
    let t = lang.dict();
    let times = context! {
        prep => format_datetime_vi(ts(b.preparation_start)),
        start => format_datetime_vi(ts(b.official_start)),
        end => format_datetime_vi(ts(b.official_end)),
    };
    let costs = crate::web::costs::for_booking(&st.db, lang, b.id).await?;
    let may_add_cost = allowed(
        user.account.role,
        user.account.scope(),
        &Action::RegisterBooking {
            unit: b.host_unit_id,
        },
    );
    let control = user.account.is_control_center();
    let notices = if control {
        crate::services::mail::notices_of(&st.db, b.id).await?
    } else {
        Vec::new()
    };
    // B2: the provider must have been told at least 2 days before the official start.
    let provider_late = matches!(status, BookingStatus::Approved | BookingStatus::Held)
        && booking::provider_notice_late(
            crate::services::mail::provider_notified_at(&st.db, b.id).await?,
            ts(b.official_start),
            Utc::now(),
            &st.settings.booking,
        );
    let phones = if b.emergency {
        crate::services::mail::phone_list(&st.db, b.id).await?
    } else {
        Vec::new()
    };
    let file = store::bookings::file_info(&st.db, b.id).await?;
    // L2: the control center picks the provider's on-duty technician while the meeting is ahead.
    let duty_contacts = if control && service::on_duty_editable(status) {
        provider_contacts(&st.db).await?
    } else {
        Vec::new()
    };
    let meetings = meetings_of(&st.db, b.id).await?;
    Ok(page(
        "booking.html",
        context! { t, user => user.account, csrf => user.csrf, b, actions, times, costs, may_add_cost,
                   notices, provider_late, phones, file, duty_contacts, meetings },
    )
    .into_response())
}

/// The meetings held from a booking, as its page shows them: who opened and closed each and
/// when, each site's connections (C2) and the roll call its technician reported.
async fn meetings_of(db: &store::Db, booking: i64) -> Result<Vec<minijinja::Value>, AppError> {
    let mut out = Vec::new();
    for m in store::meetings::of_booking(db, booking).await? {
        let attendance: Vec<minijinja::Value> = store::meetings::attendance(db, m.id)
            .await?
            .into_iter()
            .map(|a| {
                context! {
                    site => a.site,
                    from => format_datetime_vi(ts(a.connected_at)),
                    to => a.disconnected_at.map(|t| format_datetime_vi(ts(t))),
                }
            })
            .collect();
        let state: Option<hnth_rules::meeting::Meeting> = m
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok());
        let names = store::registry::sites(db).await?;
        let name = |id: i64| {
            names
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.name.clone())
                .unwrap_or_default()
        };
        let roll_call: Vec<minijinja::Value> = state
            .iter()
            .flat_map(|s| s.roll_call.iter())
            .map(|(site, r)| {
                context! {
                    site => name(*site),
                    present => r.present.iter().map(|d| (d.name.clone(), d.position.clone())).collect::<Vec<_>>(),
                    absent => r.absent.iter().map(|d| (d.name.clone(), d.position.clone(), d.reason.clone())).collect::<Vec<_>>(),
                    at => format_datetime_vi(r.at),
                }
            })
            .collect();
        out.push(context! {
            id => m.id,
            opened => format_datetime_vi(ts(m.opened_at)),
            opened_by => m.opened_by,
            closed => m.closed_at.map(|t| format_datetime_vi(ts(t))),
            closed_by => m.closed_by,
            attendance,
            roll_call,
        });
    }
    Ok(out)
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
    match service::step(ctx(&st), &actor(&user), id, &what, &f.reason, Utc::now()).await {
        Ok(_) => Ok(Redirect::to(&format!("/bookings/{id}")).into_response()),
        Err(Refusal::NotFound) => {
            Ok((StatusCode::NOT_FOUND, lang.dict()["not_found"].clone()).into_response())
        }
        Err(r) => refused(lang, r),
    }
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
        return Ok(error_page(lang, StatusCode::CONFLICT, text));
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

async fn provider_contacts(db: &store::Db) -> Result<Vec<ContactChoice>, store::Error> {
    Ok(store::bookings::provider_contacts(db)
        .await?
        .into_iter()
        .map(|p| ContactChoice {
            id: p.id,
            label: if p.phone.is_empty() {
                format!("{} ({})", p.name, p.unit)
            } else {
                format!("{} ({}), {}", p.name, p.unit, p.phone)
            },
        })
        .collect())
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
    let contact = f.contact.trim();
    // An id that does not parse names no contact (ids start at 1): refused as unknown.
    let contact = (!contact.is_empty()).then(|| contact.parse().unwrap_or(0));
    match service::set_on_duty(ctx(&st), &actor(&user), id, contact, Utc::now()).await {
        Ok(_) => Ok(Redirect::to(&format!("/bookings/{id}")).into_response()),
        Err(r) => refused(lang, r),
    }
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
    let Some((name, data)) = store::bookings::notice_file(&st.db, id).await? else {
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

static LETTER: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.add_template(
        "booking_letter.html",
        include_str!("../../templates/booking_letter.html"),
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
/// (Decree 30/2020/NĐ-CP, Appendix I: a day below 10 and the months 1 and 2 take a leading 0),
/// at the province's place (`province.place`).
fn place_and_date(place: &str, t: DateTime<Utc>) -> String {
    let l = t.with_timezone(&TZ);
    let month = if l.month() <= 2 {
        format!("{:02}", l.month())
    } else {
        l.month().to_string()
    };
    format!(
        "{place}, ngày {:02} tháng {month} năm {}",
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
        place_date => place_and_date(&st.settings.province.place, dated),
        office => st.settings.province.office,
        regulation => st.settings.province.regulation,
        kind_lower => b.kind_label_vi().to_lowercase(),
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

#[cfg(test)]
mod letter_tests {
    use super::*;

    #[test]
    fn place_and_date_at_the_provinces_place() {
        let t = hnth_rules::time::local(2026, 3, 5, 9, 0).unwrap();
        assert_eq!(
            place_and_date("Cà Mau", t),
            "Cà Mau, ngày 05 tháng 3 năm 2026"
        );
        let t = hnth_rules::time::local(2026, 2, 14, 23, 30).unwrap();
        assert_eq!(
            place_and_date("Bạc Liêu", t),
            "Bạc Liêu, ngày 14 tháng 02 năm 2026"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_notice_date_is_today_in_vietnam() {
        // 23:30 UTC on 1 December is 06:30 on 2 December in Vietnam.
        let early = Utc.with_ymd_and_hms(2026, 12, 1, 23, 30, 0).unwrap();
        assert_eq!(default_notice_date(early), "02/12/2026");
        let evening = Utc.with_ymd_and_hms(2026, 12, 2, 16, 59, 0).unwrap();
        assert_eq!(default_notice_date(evening), "02/12/2026");
        let midnight = Utc.with_ymd_and_hms(2026, 12, 2, 17, 0, 0).unwrap();
        assert_eq!(default_notice_date(midnight), "03/12/2026");
    }

    #[test]
    fn dates_as_typed_or_as_a_date_input_posts_them() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 5);
        for s in ["05/12/2026", "5/12/2026", " 05/12/2026 ", "2026-12-05"] {
            assert_eq!(parse_date(s), d, "{s:?}");
        }
        for s in [
            "",
            "12/31/2026",
            "31/02/2027",
            "05/12/26",
            "05-12-2026",
            "2026/12/05",
            "5.12.2026",
        ] {
            assert_eq!(parse_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn times_in_24_hours() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0);
        assert_eq!(parse_time("08:00"), t(8, 0));
        assert_eq!(parse_time("8:00"), t(8, 0));
        assert_eq!(parse_time("14:30:00"), t(14, 30));
        assert_eq!(parse_time("23:59"), t(23, 59));
        for s in ["", "24:00", "7h30", "08:60", "2:30 PM"] {
            assert_eq!(parse_time(s), None, "{s:?}");
        }
    }
}
