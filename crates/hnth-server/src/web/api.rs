//! JSON API v1 (`/api/v1`): the same reads and rules as the pages, for a province's document
//! system, a calendar, a script or a test. Bearer tokens from `POST /api/v1/login`; the role
//! and scope checks are those of the pages (`hnth_rules::roles`); errors are
//! `{error, message, rule, article, field}` (with `errors`, every one, when there are several).
//! The booking writes call the pages' use cases (`services::bookings`), so a rule is checked in
//! one place.
//!
//! The OpenAPI 3.1 document is generated from these handlers (utoipa) and served at
//! `/api/v1/openapi.json`; the router and the document are built from the same list of routes
//! (`routes`), so neither can name a route the other lacks.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hnth_rules::roles::Action;
use hnth_rules::Violation;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod audit;
mod registry;

use crate::services::bookings as services;
use crate::store;
use crate::web::auth::{self, CurrentUser};
use crate::web::{bookings, AppState, Lang};

// ---------------------------------------------------------------- errors and auth

/// Every error of the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// A stable machine code, e.g. `unauthenticated`, `forbidden`, `not_found`, `bad_request`.
    pub error: String,
    /// What went wrong, in English.
    pub message: String,
    /// The requirement of the regulation that refuses it (e.g. `A1`, `B1`), if a rule does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The article of Decision 561/QĐ-UBND (e.g. `3`, `5.1`), if a rule refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub article: Option<String>,
    /// The field of the request that is wrong, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every error, when there are several (a booking's registration): the first is this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ApiErrorItem>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Box<ApiErrorBody>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Box::new(ApiErrorBody {
                error: error.into(),
                message: message.into(),
                rule: None,
                article: None,
                field: None,
                errors: Vec::new(),
            }),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    /// The database cannot answer now (logged where it happened).
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server cannot read its data now; try again later",
        )
    }

    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "bad_request", message);
        e.body.field = Some(field.into());
        e
    }

    /// A refusal by a rule of the regulation.
    pub fn refused(status: StatusCode, v: &Violation) -> Self {
        let mut e = Self::new(status, v.code, v.en.clone());
        e.body.rule = Some(v.rule.as_str().into());
        e.body.article = Some(v.article.into());
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        tracing::error!("api: database error: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

/// The account of an API call: a bearer token only. A session cookie is not taken here, so a
/// page of another site cannot call the API with the user's cookie (no CSRF token needed).
pub struct ApiUser(pub CurrentUser);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let unauthenticated = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send Authorization: Bearer <token> (POST /api/v1/login)",
            )
        };
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string())
            .ok_or_else(unauthenticated)?;
        match auth::session(&st.db, &token).await {
            Ok(Some(user)) => Ok(ApiUser(user)),
            Ok(None) => Err(unauthenticated()),
            Err(_) => Err(ApiError::unavailable()),
        }
    }
}

/// The role and scope check of the pages (A1), answered as the API answers.
fn require(user: &CurrentUser, action: &Action) -> Result<(), ApiError> {
    hnth_rules::roles::authorize(user.account.role, user.account.scope(), action)
        .map_err(|v| ApiError::refused(StatusCode::FORBIDDEN, &v))
}

/// An id in the path, or the API's error (axum's own rejection is plain text).
type IdPath = Result<Path<i64>, axum::extract::rejection::PathRejection>;

fn id_of(p: IdPath) -> Result<i64, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|_| ApiError::bad_field("id", "id: expected a whole number"))
}

/// The query string's parameters, or the API's error (axum's own rejection is plain text).
type QueryParams<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn params_of<T>(q: QueryParams<T>) -> Result<T, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
}

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| {
            t.with_timezone(&hnth_rules::time::TZ)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

/// A date of a query, `yyyy-mm-dd` or `dd/mm/yyyy`, as the start of that day in Asia/Ho_Chi_Minh.
fn day_start(field: &str, s: &str) -> Result<i64, ApiError> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(s, "%d/%m/%Y"))
        .map_err(|_| ApiError::bad_field(field, format!("{field}: expected yyyy-mm-dd")))?;
    use chrono::TimeZone;
    hnth_rules::time::TZ
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| ApiError::bad_field(field, format!("{field}: no such day")))
}

// ---------------------------------------------------------------- bookings

/// A booking (Art. 5), as registered.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingOut {
    pub id: i64,
    pub title: String,
    /// `hop` (meeting), `tap_huan` (training), … (`hnth_rules::booking::BookingKind`).
    pub kind: String,
    pub host_unit_id: i64,
    pub host_unit: String,
    pub chair: String,
    pub host_site_id: i64,
    pub host_site: String,
    /// Every site of the booking (the host site included).
    pub sites: Vec<i64>,
    pub site_names: Vec<String>,
    /// Preparation, official start and end, ISO 8601 in Asia/Ho_Chi_Minh.
    pub preparation_start: String,
    pub official_start: String,
    pub official_end: String,
    pub emergency: bool,
    pub notice_number: String,
    pub notice_date: String,
    /// `draft`, `submitted`, `approved`, `rejected`, `cancelled`, `held`, `closed`.
    pub status: String,
    pub reason: Option<String>,
    pub decided_at: Option<String>,
    /// The line provider's on-duty technician (L2), as shown.
    pub on_duty: Option<String>,
}

fn booking_out(b: store::bookings::Booking) -> BookingOut {
    BookingOut {
        id: b.id,
        title: b.title,
        kind: b.kind,
        host_unit_id: b.host_unit_id,
        host_unit: b.host_unit,
        chair: b.chair,
        host_site_id: b.host_site_id,
        host_site: b.host_site,
        sites: b.sites,
        site_names: b.site_names,
        preparation_start: iso(b.preparation_start),
        official_start: iso(b.official_start),
        official_end: iso(b.official_end),
        emergency: b.emergency,
        notice_number: b.notice_number,
        notice_date: b.notice_date,
        status: b.status,
        reason: b.reason,
        decided_at: b.decided_at.map(iso),
        on_duty: b.on_duty,
    }
}

/// Filters of the booking list; all optional.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BookingQuery {
    /// Only this status (`submitted`, `approved`, …).
    pub status: Option<String>,
    /// Only bookings hosted by this unit.
    pub unit: Option<i64>,
    /// Only bookings with this site.
    pub site: Option<i64>,
    /// Official start on or after this day (`yyyy-mm-dd`, Asia/Ho_Chi_Minh).
    pub from: Option<String>,
    /// Official start before the end of this day (`yyyy-mm-dd`).
    pub to: Option<String>,
}

/// The bookings the caller may see (its unit's, its site's, or all for the control center),
/// by official start.
#[utoipa::path(get, path = "/api/v1/bookings", tag = "bookings", params(BookingQuery),
    responses((status = 200, description = "OK", body = Vec<BookingOut>), (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 401, description = "no session: a missing, wrong or expired token", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn list_bookings(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    q: QueryParams<BookingQuery>,
) -> Result<Json<Vec<BookingOut>>, ApiError> {
    let q = params_of(q)?;
    if let Some(s) = &q.status {
        if hnth_rules::booking::BookingStatus::parse(s).is_none() {
            return Err(ApiError::bad_field(
                "status",
                format!("status: unknown status {s:?}"),
            ));
        }
    }
    let from = q
        .from
        .as_deref()
        .map(|s| day_start("from", s))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|s| day_start("to", s).map(|t| t + 86_400))
            .transpose()?;
    let list = bookings::load(&st.db, Lang::En, None)
        .await?
        .into_iter()
        .filter(|b| bookings::may_view(&user, b))
        .filter(|b| q.status.as_ref().is_none_or(|s| &b.status == s))
        .filter(|b| q.unit.is_none_or(|u| b.host_unit_id == u))
        .filter(|b| q.site.is_none_or(|s| b.sites.contains(&s)))
        .filter(|b| from.is_none_or(|t| b.official_start >= t))
        .filter(|b| to.is_none_or(|t| b.official_start < t))
        .map(|b| booking_out(b.data))
        .collect();
    Ok(Json(list))
}

/// One booking, if the caller may see it (A1).
#[utoipa::path(get, path = "/api/v1/bookings/{id}", tag = "bookings",
    params(("id" = i64, Path, description = "the booking's id")),
    responses((status = 200, description = "OK", body = BookingOut), (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn get_booking(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
) -> Result<Json<BookingOut>, ApiError> {
    let id = id_of(id)?;
    let b = bookings::load(&st.db, Lang::En, Some(id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("booking"))?;
    require(
        &user,
        &Action::ViewBooking {
            unit: b.host_unit_id,
            sites: &b.sites,
        },
    )?;
    Ok(Json(booking_out(b.data)))
}

// ---------------------------------------------------------------- bookings: writing

/// A booking to register (`POST /api/v1/bookings`), to save (`PUT /api/v1/bookings/{id}`) or to
/// check (`POST /api/v1/bookings/check`). The written notice's PDF is not taken here: upload it
/// on the booking's edit page.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // read field by field (`BookingFields`), so that each error names its field
pub struct BookingIn {
    pub title: String,
    /// `hop` (meeting, the default), `tap_huan` (training), … (`hnth_rules::booking::BookingKind`).
    pub kind: Option<String>,
    /// The host unit's id.
    pub host_unit: i64,
    pub chair: String,
    /// The host site's id (added to `sites` if missing).
    pub host_site: i64,
    /// The ids of the sites taking part; with the host site at least two (B3).
    pub sites: Vec<i64>,
    /// RFC 3339 with an offset, e.g. `2026-12-15T08:00:00+07:00`.
    pub official_start: String,
    pub official_end: String,
    /// Preparation and trial start (P2); by default the configured time before the start.
    pub preparation_start: Option<String>,
    /// B5: an emergency meeting (no lead time; displaces the planned ones it overlaps).
    pub emergency: Option<bool>,
    /// The written notice (công văn, B1): its number and its date (`yyyy-mm-dd`).
    pub notice_number: Option<String>,
    pub notice_date: Option<String>,
    /// Registering only: keep it as a draft instead of submitting it.
    pub draft: Option<bool>,
    /// Checking only: the booking being edited (its own time is no conflict).
    pub booking: Option<i64>,
}

/// One error among several (a registration answers every error at once).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiErrorItem {
    pub error: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub article: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiErrorItem {
    fn field(error: &str, field: &str, message: impl Into<String>) -> Self {
        ApiErrorItem {
            error: error.into(),
            message: message.into(),
            rule: None,
            article: None,
            field: Some(field.into()),
        }
    }

    fn rule(v: &Violation) -> Self {
        ApiErrorItem {
            error: v.code.into(),
            message: v.en.clone(),
            rule: Some(v.rule.as_str().into()),
            article: Some(v.article.into()),
            field: None,
        }
    }
}

impl ApiError {
    /// Every error at once: the first is the body's own, all are in `errors`.
    fn many(status: StatusCode, items: Vec<ApiErrorItem>) -> Self {
        let first = items.first().cloned().unwrap_or_else(|| {
            ApiErrorItem::field("bad_request", "body", "the request is not valid")
        });
        ApiError {
            status,
            body: Box::new(ApiErrorBody {
                error: first.error,
                message: first.message,
                rule: first.rule,
                article: first.article,
                field: first.field,
                errors: items,
            }),
        }
    }
}

/// Around the whole router: a body refused for its declared size before any handler ran
/// (the 256 KiB limit) is answered as the API answers, under `/api/`.
pub async fn too_large_as_json(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let res = next.run(req).await;
    let json = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if api && res.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the body is over 256 KiB",
        )
        .into_response();
    }
    res
}

/// A JSON body, or the API's error: axum's own rejections are plain text.
type JsonBody = Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>;

fn json_object(body: JsonBody) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let Json(v) = body.map_err(|e| {
        let status = e.status();
        let error = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "bad_request",
        };
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        ApiError::new(status, error, e.body_text())
    })?;
    match v {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_field("body", "expected a JSON object")),
    }
}

/// Reads the fields of a JSON object one by one, each error naming its field.
struct Fields {
    obj: serde_json::Map<String, serde_json::Value>,
    errors: Vec<ApiErrorItem>,
}

impl Fields {
    fn new(obj: serde_json::Map<String, serde_json::Value>, known: &[&str]) -> Self {
        let errors = obj
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| ApiErrorItem::field("bad_request", k, format!("{k}: unknown field")))
            .collect();
        Fields { obj, errors }
    }

    fn opt<T: serde::de::DeserializeOwned>(&mut self, name: &str, expected: &str) -> Option<T> {
        match self.obj.get(name) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match serde_json::from_value(v.clone()) {
                Ok(x) => Some(x),
                Err(_) => {
                    self.errors.push(ApiErrorItem::field(
                        "bad_request",
                        name,
                        format!("{name}: expected {expected}"),
                    ));
                    None
                }
            },
        }
    }

    fn req<T: serde::de::DeserializeOwned>(&mut self, name: &str, expected: &str) -> Option<T> {
        let present = !matches!(self.obj.get(name), None | Some(serde_json::Value::Null));
        if !present {
            self.errors.push(ApiErrorItem::field(
                "bad_request",
                name,
                format!("{name}: required ({expected})"),
            ));
        }
        self.opt(name, expected)
    }

    /// An optional date, `yyyy-mm-dd` (or `dd/mm/yyyy`), as the pages keep it: `dd/mm/yyyy`,
    /// or empty when left out.
    fn date(&mut self, name: &str) -> String {
        let expected = "a date, yyyy-mm-dd";
        let Some(s) = self.opt::<String>(name, expected) else {
            return String::new();
        };
        let s = s.trim();
        if s.is_empty() {
            return String::new();
        }
        match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .or_else(|_| chrono::NaiveDate::parse_from_str(s, "%d/%m/%Y"))
        {
            Ok(d) => d.format("%d/%m/%Y").to_string(),
            Err(_) => {
                self.errors.push(ApiErrorItem::field(
                    "bad_request",
                    name,
                    format!("{name}: expected {expected}"),
                ));
                String::new()
            }
        }
    }

    fn time(&mut self, name: &str, required: bool) -> Option<chrono::DateTime<chrono::Utc>> {
        const WHAT: &str = "an RFC 3339 time with an offset, e.g. 2026-12-15T08:00:00+07:00";
        let s: String = if required {
            self.req(name, WHAT)?
        } else {
            self.opt(name, WHAT)?
        };
        match chrono::DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => Some(t.with_timezone(&chrono::Utc)),
            Err(_) => {
                self.errors.push(ApiErrorItem::field(
                    "bad_request",
                    name,
                    format!("{name}: expected {WHAT}"),
                ));
                None
            }
        }
    }
}

const BOOKING_FIELDS: &[&str] = &[
    "title",
    "kind",
    "host_unit",
    "chair",
    "host_site",
    "sites",
    "official_start",
    "official_end",
    "preparation_start",
    "emergency",
    "notice_number",
    "notice_date",
];

/// A [`BookingIn`] as the use cases take it (`extra`: the fields of this route beyond the
/// booking's), or a 400 naming every malformed field.
fn booking_input(body: JsonBody, extra: &[&str]) -> Result<(services::Input, Fields), ApiError> {
    let known: Vec<&str> = BOOKING_FIELDS.iter().chain(extra).copied().collect();
    let mut f = Fields::new(json_object(body)?, &known);
    let title: Option<String> = f.req("title", "a string");
    let kind: Option<String> = f.opt("kind", "a string");
    let host_unit: Option<i64> = f.req("host_unit", "a unit's id");
    let chair: Option<String> = f.req("chair", "a string");
    let host_site: Option<i64> = f.req("host_site", "a site's id");
    let sites: Option<Vec<i64>> = f.req("sites", "an array of site ids");
    let official_start = f.time("official_start", true);
    let official_end = f.time("official_end", true);
    let preparation_start = f.time("preparation_start", false);
    let emergency: Option<bool> = f.opt("emergency", "true or false");
    let notice_number: Option<String> = f.opt("notice_number", "a string");
    let notice_date = f.date("notice_date");
    let input = services::Input {
        title: title.unwrap_or_default(),
        kind: kind.unwrap_or_else(|| "hop".into()),
        host_unit,
        chair: chair.unwrap_or_default(),
        host_site,
        sites: sites.unwrap_or_default(),
        preparation_start,
        official_start,
        official_end,
        emergency: emergency.unwrap_or(false),
        notice_number: notice_number.unwrap_or_default(),
        notice_date,
        file: services::FileChange::Keep,
    };
    Ok((input, f))
}

fn field_items(errors: &services::FieldErrors) -> Vec<ApiErrorItem> {
    let t = Lang::En.dict();
    errors
        .iter()
        .map(|(field, key)| {
            let message = t.get(*key).cloned().unwrap_or_else(|| key.to_string());
            ApiErrorItem::field("invalid", field, message)
        })
        .collect()
}

/// A use case's refusal as the API answers it.
fn refusal(r: services::Refusal) -> ApiError {
    use services::Refusal as R;
    match r {
        R::NotFound => ApiError::not_found("booking"),
        R::Forbidden(v) | R::Denied(v) => ApiError::refused(StatusCode::FORBIDDEN, &v),
        // A role the workflow does not let take a step (A1) is a refusal of who asks: 403.
        R::Rule(v) if v.rule == hnth_rules::RuleId::A1 => {
            ApiError::refused(StatusCode::FORBIDDEN, &v)
        }
        R::Rule(v) => ApiError::refused(StatusCode::UNPROCESSABLE_ENTITY, &v),
        R::Field { key } => {
            let message = Lang::En.dict().get(key).cloned().unwrap_or_default();
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
        R::Invalid(review) => {
            let mut items = field_items(&review.errors);
            items.extend(review.refusals.iter().map(ApiErrorItem::rule));
            items.extend(review.overlaps.iter().map(ApiErrorItem::rule));
            ApiError::many(StatusCode::UNPROCESSABLE_ENTITY, items)
        }
        R::Store(e) => e.into(),
    }
}

fn ctx(st: &AppState) -> services::Ctx<'_> {
    bookings::ctx(st)
}

/// The booking after a write, as the API shows it.
async fn written(st: &AppState, id: i64) -> Result<BookingOut, ApiError> {
    store::bookings::get(&st.db, id)
        .await?
        .map(booking_out)
        .ok_or_else(|| ApiError::not_found("booking"))
}

/// Registers a booking (Art. 5: B1 lead time, B3 overlaps, B5 emergencies), submitted for
/// approval or kept as a draft (`draft: true`); the same use case as the registration page.
/// Every error comes at once in `errors`.
#[utoipa::path(post, path = "/api/v1/bookings", tag = "bookings", request_body = BookingIn,
    responses((status = 201, description = "registered", body = BookingOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 413, description = "the body is over 256 KiB", body = ApiErrorBody),
              (status = 422, description = "refused: the fields' errors and the rules' refusals, each in `errors`", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn create_booking(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    body: JsonBody,
) -> Result<(StatusCode, Json<BookingOut>), ApiError> {
    let who = bookings::actor(&user);
    services::require_register(&who).map_err(refusal)?;
    let (input, mut f) = booking_input(body, &["draft"])?;
    let draft: Option<bool> = f.opt("draft", "true or false");
    if !f.errors.is_empty() {
        return Err(ApiError::many(StatusCode::BAD_REQUEST, f.errors));
    }
    let saved = services::register(
        ctx(&st),
        &who,
        &input,
        Default::default(),
        draft.unwrap_or(false),
        chrono::Utc::now(),
    )
    .await
    .map_err(refusal)?;
    if saved.emergency_alert {
        st.hub.emergency_alert(saved.id, &saved.title, &saved.sites);
    }
    Ok((StatusCode::CREATED, Json(written(&st, saved.id).await?)))
}

/// Saves a booking's fields (every field, as on the edit page; its written-notice file is
/// kept). An approved booking goes back to submitted, to be approved again (B4).
#[utoipa::path(put, path = "/api/v1/bookings/{id}", tag = "bookings", request_body = BookingIn,
    params(("id" = i64, Path, description = "the booking's id")),
    responses((status = 200, description = "saved", body = BookingOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody),
              (status = 422, description = "refused: the fields' errors and the rules' refusals, each in `errors`", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn update_booking(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
    body: JsonBody,
) -> Result<Json<BookingOut>, ApiError> {
    let id = id_of(id)?;
    let who = bookings::actor(&user);
    services::editable(&st.db, &who, id)
        .await
        .map_err(refusal)?;
    let (input, f) = booking_input(body, &[])?;
    if !f.errors.is_empty() {
        return Err(ApiError::many(StatusCode::BAD_REQUEST, f.errors));
    }
    let saved = services::edit(
        ctx(&st),
        &who,
        id,
        &input,
        Default::default(),
        chrono::Utc::now(),
    )
    .await
    .map_err(refusal)?;
    if saved.emergency_alert {
        st.hub.emergency_alert(saved.id, &saved.title, &saved.sites);
    }
    Ok(Json(written(&st, id).await?))
}

/// A booking planned by an emergency's registration (B5).
#[derive(Debug, Serialize, ToSchema)]
pub struct DisplacedOut {
    pub id: i64,
    pub title: String,
}

/// What the conflict check found.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckOut {
    /// Whether it could be registered (or saved) now: no error, no refusal, no overlap.
    pub ok: bool,
    /// `free`, `conflicts` (B3, or an emergency that cannot displace them), `displaces` (B5),
    /// or `unchecked` (no valid time window yet).
    pub state: String,
    /// Each overlap, citing its rule and article.
    pub conflicts: Vec<ApiErrorItem>,
    /// The planned bookings an emergency would displace (cancelled when it is registered).
    pub displaces: Vec<DisplacedOut>,
    /// Every other error: the fields' (`field`) and the rules' (`rule`, `article`).
    pub errors: Vec<ApiErrorItem>,
}

/// The conflict check before registering or saving (B3, B5): what overlaps, and every other
/// error; writes nothing. To check an edit, name the booking in `booking`.
#[utoipa::path(post, path = "/api/v1/bookings/check", tag = "bookings", request_body = BookingIn,
    responses((status = 200, description = "checked (see `ok`)", body = CheckOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn check_booking(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    body: JsonBody,
) -> Result<Json<CheckOut>, ApiError> {
    let who = bookings::actor(&user);
    let (input, mut f) = booking_input(body, &["booking"])?;
    let editing: Option<i64> = f.opt("booking", "a booking's id");
    if editing.is_none() {
        services::require_register(&who).map_err(refusal)?;
    }
    if !f.errors.is_empty() {
        return Err(ApiError::many(StatusCode::BAD_REQUEST, f.errors));
    }
    let r = services::check(
        ctx(&st),
        &who,
        &input,
        Default::default(),
        editing,
        chrono::Utc::now(),
    )
    .await
    .map_err(refusal)?;
    let mut errors = field_items(&r.errors);
    errors.extend(r.refusals.iter().map(ApiErrorItem::rule));
    let (state, conflicts, displaces) = match &r.conflicts {
        services::Conflicts::Unchecked => ("unchecked", Vec::new(), Vec::new()),
        services::Conflicts::Free => ("free", Vec::new(), Vec::new()),
        services::Conflicts::Overlaps(vs) => (
            "conflicts",
            vs.iter().map(ApiErrorItem::rule).collect(),
            Vec::new(),
        ),
        services::Conflicts::Displaces(bs) => (
            "displaces",
            Vec::new(),
            bs.iter()
                .map(|b| DisplacedOut {
                    id: b.id,
                    title: b.title.clone(),
                })
                .collect(),
        ),
    };
    Ok(Json(CheckOut {
        ok: errors.is_empty() && r.overlaps.is_empty(),
        state: state.into(),
        conflicts,
        displaces,
        errors,
    }))
}

/// A workflow step.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // read field by field
pub struct StepIn {
    /// `submit`, `approve`, `reject`, `cancel`, `held` (mark held) or `close`.
    pub step: String,
    /// Rejecting and cancelling need one.
    pub reason: Option<String>,
}

/// A workflow step of a booking (B4, `hnth_rules::booking::transition`), with the checks the
/// page's buttons make: submitting and approving re-check the lead time and the overlaps (B1,
/// B3); the registrant does not approve (A1, Art. 3); approving queues the notices (B2, P1).
#[utoipa::path(post, path = "/api/v1/bookings/{id}/steps", tag = "bookings", request_body = StepIn,
    params(("id" = i64, Path, description = "the booking's id")),
    responses((status = 200, description = "done; the booking after it", body = BookingOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody),
              (status = 422, description = "refused by a rule (the workflow, B1, B3)", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn booking_step(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
    body: JsonBody,
) -> Result<Json<BookingOut>, ApiError> {
    let id = id_of(id)?;
    let mut f = Fields::new(json_object(body)?, &["step", "reason"]);
    let step: Option<String> = f.req("step", "submit, approve, reject, cancel, held or close");
    let reason: Option<String> = f.opt("reason", "a string");
    if let Some(s) = &step {
        if !services::STEPS.contains(&s.as_str()) {
            f.errors.push(ApiErrorItem::field(
                "bad_request",
                "step",
                format!("step: unknown step {s:?} (submit, approve, reject, cancel, held, close)"),
            ));
        }
    }
    if !f.errors.is_empty() {
        return Err(ApiError::many(StatusCode::BAD_REQUEST, f.errors));
    }
    let b = services::step(
        ctx(&st),
        &bookings::actor(&user),
        id,
        &step.unwrap_or_default(),
        &reason.unwrap_or_default(),
        chrono::Utc::now(),
    )
    .await
    .map_err(refusal)?;
    Ok(Json(booking_out(b)))
}

/// B4: the invitation of an approved booking, as an iCalendar file (RFC 5545, Vietnamese,
/// Asia/Ho_Chi_Minh), the one the notices carry.
#[utoipa::path(get, path = "/api/v1/bookings/{id}/invitation", tag = "bookings",
    params(("id" = i64, Path, description = "the booking's id")),
    responses((status = 200, description = "the invitation", content_type = "text/calendar", body = String),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody),
              (status = 409, description = "the booking is not approved", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn booking_invitation(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
) -> Result<Response, ApiError> {
    let id = id_of(id)?;
    let b = services::viewable(&st.db, &bookings::actor(&user), id)
        .await
        .map_err(refusal)?;
    if b.status() != hnth_rules::booking::BookingStatus::Approved {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_approved",
            Lang::En.dict()["bk_err_not_approved"].clone(),
        ));
    }
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"hop-{id}.ics\""),
            ),
        ],
        crate::services::invitation::ics(&b),
    )
        .into_response())
}

// ---------------------------------------------------------------- meetings

/// A meeting as kept: opened and closed, with the connections of its sites.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingOut {
    pub id: i64,
    pub title: String,
    pub opened_by: Option<String>,
    /// ISO 8601, Asia/Ho_Chi_Minh.
    pub opened_at: String,
    pub closed_at: Option<String>,
}

/// One connection of a site to a meeting (a site that dropped and came back has several).
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendanceOut {
    pub site_id: i64,
    pub site: String,
    pub connected_at: String,
    pub disconnected_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingDetail {
    #[serde(flatten)]
    pub meeting: MeetingOut,
    pub attendance: Vec<AttendanceOut>,
}

fn meeting_out(m: store::meetings::Meeting) -> MeetingOut {
    MeetingOut {
        id: m.id,
        title: m.title,
        opened_by: m.opened_by,
        opened_at: iso(m.opened_at),
        closed_at: m.closed_at.map(iso),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MeetingQuery {
    /// Opened on or after this day (`yyyy-mm-dd`).
    pub from: Option<String>,
    /// Opened before the end of this day (`yyyy-mm-dd`).
    pub to: Option<String>,
    /// Only meetings still open.
    pub open: Option<bool>,
    /// At most this many (1–1000, default 200), the newest first.
    pub limit: Option<i64>,
}

/// Meetings, the newest first: for the control center and the reports (A1: `view reports`).
#[utoipa::path(get, path = "/api/v1/meetings", tag = "meetings", params(MeetingQuery),
    responses((status = 200, description = "OK", body = Vec<MeetingOut>), (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn list_meetings(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    q: QueryParams<MeetingQuery>,
) -> Result<Json<Vec<MeetingOut>>, ApiError> {
    let q = params_of(q)?;
    require(&user, &Action::ViewReports)?;
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_field("limit", "limit: expected 1 to 1000"));
    }
    let filter = store::meetings::MeetingFilter {
        from: q
            .from
            .as_deref()
            .map(|s| day_start("from", s))
            .transpose()?,
        to: q
            .to
            .as_deref()
            .map(|s| day_start("to", s).map(|t| t + 86_400))
            .transpose()?,
        open_only: q.open.unwrap_or(false),
        limit,
    };
    let list = store::meetings::list(&st.db, filter).await?;
    Ok(Json(list.into_iter().map(meeting_out).collect()))
}

/// One meeting with the attendance of its sites.
#[utoipa::path(get, path = "/api/v1/meetings/{id}", tag = "meetings",
    params(("id" = i64, Path, description = "the meeting's id")),
    responses((status = 200, description = "OK", body = MeetingDetail), (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn get_meeting(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
) -> Result<Json<MeetingDetail>, ApiError> {
    let id = id_of(id)?;
    require(&user, &Action::ViewReports)?;
    let m = store::meetings::get(&st.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("meeting"))?;
    let attendance = store::meetings::attendance(&st.db, id)
        .await?
        .into_iter()
        .map(|a| AttendanceOut {
            site_id: a.site_id,
            site: a.site,
            connected_at: iso(a.connected_at),
            disconnected_at: a.disconnected_at.map(iso),
        })
        .collect();
    Ok(Json(MeetingDetail {
        meeting: meeting_out(m),
        attendance,
    }))
}

// ---------------------------------------------------------------- the site app

/// One of the next meetings of a site, as the site app's idle screen shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NextMeeting {
    pub title: String,
    /// The kind, in the site's language (set in the registry).
    pub kind: String,
    /// dd/mm/yyyy HH:MM, Asia/Ho_Chi_Minh.
    pub preparation: String,
    pub start: String,
    /// HH:MM.
    pub end: String,
    pub emergency: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NextMeetings {
    pub list: Vec<NextMeeting>,
    /// The site's language (`vi` or `en`), set in the registry: the kiosk reloads itself in it
    /// when it changed. Absent for accounts without a site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

/// M2, P1: the next three approved meetings of the caller's site (empty for accounts without
/// a site). The site app reads it with its session cookie; other programs with a token.
#[utoipa::path(get, path = "/api/v1/next-meetings", tag = "meetings",
    responses((status = 200, description = "OK", body = NextMeetings), (status = 401, description = "no session: a missing, wrong or expired token", body = ApiErrorBody)),
    security(("bearer" = [])))]
async fn next_meetings(
    State(st): State<AppState>,
    user: Result<CurrentUser, crate::web::AppError>,
) -> Result<Json<NextMeetings>, ApiError> {
    let user = user.map_err(|e| match e {
        crate::web::AppError::Unavailable(_) => ApiError::unavailable(),
        _ => ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "log in first"),
    })?;
    let Some(site) = user.account.site_id else {
        return Ok(Json(NextMeetings {
            list: Vec::new(),
            lang: None,
        }));
    };
    let lang = crate::web::registry::site_language(&st.db, site).await?;
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(hnth_rules::time::format_datetime_vi)
            .unwrap_or_default()
    };
    let list = store::bookings::upcoming_for_site(&st.db, site, store::now(), 3)
        .await?
        .into_iter()
        .map(|b| NextMeeting {
            title: b.title,
            kind: hnth_rules::booking::BookingKind::parse(&b.kind)
                .map(|k| {
                    if lang == Lang::En {
                        k.label_en()
                    } else {
                        k.label_vi()
                    }
                })
                .unwrap_or("")
                .to_string(),
            preparation: fmt(b.preparation_start),
            start: fmt(b.official_start),
            end: fmt(b.official_end).get(11..).unwrap_or("").to_string(),
            emergency: b.emergency,
        })
        .collect();
    Ok(Json(NextMeetings {
        list,
        lang: Some(lang.code().to_string()),
    }))
}

// ---------------------------------------------------------------- the document

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hnth API",
        version = "1",
        description = "The JSON API of hnth, the provincial video-conferencing system of \
                       Decision 561/QĐ-UBND. Log in with POST /api/v1/login, then send \
                       `Authorization: Bearer <token>`. Errors are {error, message, rule, article, field}, \
                       with `errors` listing every one when there are several."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Logging in"),
        (name = "registry", description = "Sites and technicians (Art. 9)"),
        (name = "bookings", description = "Registering meetings (Art. 5)"),
        (name = "meetings", description = "Meetings held and their sites"),
        (name = "audit", description = "The audit trail (A3) and the recorded violations (R4)"),
        (name = "docs", description = "This document"),
    )
)]
struct ApiDoc;

/// The API's routes and their OpenAPI document, built from one list.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(crate::web::api_login))
        .routes(routes!(crate::web::openapi_json))
        .routes(routes!(crate::web::api_docs))
        .routes(routes!(registry::list_sites))
        .routes(routes!(registry::get_site))
        .routes(routes!(registry::list_technicians))
        .routes(routes!(registry::list_providers))
        .routes(routes!(registry::create_site))
        .routes(routes!(registry::save_site))
        .routes(routes!(registry::add_technician))
        .routes(routes!(registry::save_technician))
        .routes(routes!(registry::remove_technician))
        .routes(routes!(registry::add_provider))
        .routes(routes!(registry::save_provider))
        .routes(routes!(registry::remove_provider))
        .routes(routes!(list_bookings))
        .routes(routes!(get_booking))
        .routes(routes!(list_meetings))
        .routes(routes!(get_meeting))
        .routes(routes!(next_meetings))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::list_violations))
        .routes(routes!(create_booking))
        .routes(routes!(update_booking))
        .routes(routes!(check_booking))
        .routes(routes!(booking_step))
        .routes(routes!(booking_invitation))
        .split_for_parts()
}

/// The document as served at `/api/v1/openapi.json`.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::LazyLock<utoipa::openapi::OpenApi> =
        std::sync::LazyLock::new(|| routes().1);
    &DOC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_route() {
        let doc = document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/api/v1/login",
            "/api/v1/openapi.json",
            "/api/v1/docs",
            "/api/v1/sites",
            "/api/v1/sites/{id}",
            "/api/v1/technicians",
            "/api/v1/providers",
            "/api/v1/bookings",
            "/api/v1/bookings/{id}",
            "/api/v1/meetings",
            "/api/v1/meetings/{id}",
            "/api/v1/next-meetings",
            "/api/v1/audit",
            "/api/v1/violations",
            "/api/v1/bookings/check",
            "/api/v1/bookings/{id}/steps",
            "/api/v1/bookings/{id}/invitation",
            "/api/v1/sites/{id}/technicians",
            "/api/v1/sites/{id}/technicians/{tech}",
            "/api/v1/providers/{id}",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        let ops = |p: &str| serde_json::to_value(&doc.paths.paths[p]).unwrap();
        for (p, methods) in [
            ("/api/v1/sites", &["get", "post"][..]),
            ("/api/v1/sites/{id}", &["get", "put"]),
            ("/api/v1/sites/{id}/technicians/{tech}", &["put", "delete"]),
            ("/api/v1/providers", &["get", "post"]),
            ("/api/v1/providers/{id}", &["put", "delete"]),
        ] {
            for m in methods {
                assert!(ops(p).get(m).is_some(), "{m} {p} missing: {}", ops(p));
            }
        }
        let json = doc.to_json().unwrap();
        assert!(json.contains("\"openapi\":\"3.1"), "{}", &json[..80]);
    }

    /// Every `/api/v1` route goes through [`routes`] (and so into the document): no handler
    /// file names an `/api/v1` path but in a `#[utoipa::path]`.
    #[test]
    fn no_api_route_outside_the_document() {
        for (file, src) in [
            ("web/mod.rs", include_str!("mod.rs")),
            ("web/registry.rs", include_str!("registry.rs")),
            ("web/bookings.rs", include_str!("bookings.rs")),
            ("web/accounts.rs", include_str!("accounts.rs")),
            ("web/calendar.rs", include_str!("calendar.rs")),
            ("web/costs.rs", include_str!("costs.rs")),
            ("web/api/audit.rs", include_str!("api/audit.rs")),
            ("web/api/registry.rs", include_str!("api/registry.rs")),
            ("web/state.rs", include_str!("state.rs")),
            ("web/error.rs", include_str!("error.rs")),
            ("web/lang.rs", include_str!("lang.rs")),
        ] {
            for (i, line) in src.lines().enumerate() {
                let l = line.trim();
                let named = l.contains("\"/api/v1");
                let documented = l.starts_with("//") || l.contains("path = \"/api/v1");
                assert!(
                    !named || documented,
                    "{file}:{}: an /api/v1 path outside web::api::routes: {l}",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn query_days_in_asia_ho_chi_minh() {
        // 2026-12-01 00:00 +07:00 is 2026-11-30 17:00 UTC.
        assert_eq!(day_start("from", "2026-12-01").unwrap(), 1_796_058_000);
        assert_eq!(day_start("from", "01/12/2026").unwrap(), 1_796_058_000);
        for bad in ["2026-13-01", "1/12", "", "2026-02-30"] {
            let e = day_start("from", bad).unwrap_err();
            assert_eq!(
                (e.status, e.body.field.as_deref()),
                (StatusCode::BAD_REQUEST, Some("from")),
                "{bad}"
            );
        }
        assert_eq!(iso(1_796_058_000), "2026-12-01T00:00:00+07:00");
    }
}
