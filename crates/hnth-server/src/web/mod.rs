//! HTTP: the server-rendered pages, the JSON login, the WebSocket upgrade and embedded assets.
//!
//! **Invariant:** no SQL here; pages read and write through the store and the services.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod bookings;
pub mod calendar;
pub mod costs;
mod error;
mod headers;
mod lang;
pub mod limits;
pub mod numbers;
pub mod registry;
mod state;

use std::sync::LazyLock;

use axum::extract::{State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use hnth_rules::roles::{Action, Role};
use minijinja::{context, Environment};
use serde::Deserialize;
use serde_json::json;

pub use self::error::AppError;
pub use self::lang::Lang;
pub use self::state::AppState;

use self::auth::{CurrentUser, LoginError, SESSION_COOKIE};
use self::limits::ClientAddr;
use crate::store;

// ---------------------------------------------------------------- templates

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, src) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("login.html", include_str!("../../templates/login.html")),
        ("console.html", include_str!("../../templates/console.html")),
        ("site.html", include_str!("../../templates/site.html")),
        ("chair.html", include_str!("../../templates/chair.html")),
        ("audit.html", include_str!("../../templates/audit.html")),
        ("error.html", include_str!("../../templates/error.html")),
        (
            "bookings.html",
            include_str!("../../templates/bookings.html"),
        ),
        (
            "booking_form.html",
            include_str!("../../templates/booking_form.html"),
        ),
        ("booking.html", include_str!("../../templates/booking.html")),
        (
            "registry.html",
            include_str!("../../templates/registry.html"),
        ),
        (
            "registry_site.html",
            include_str!("../../templates/registry_site.html"),
        ),
        (
            "directory.html",
            include_str!("../../templates/directory.html"),
        ),
        (
            "calendar.html",
            include_str!("../../templates/calendar.html"),
        ),
        (
            "accounts.html",
            include_str!("../../templates/accounts.html"),
        ),
        (
            "api_docs.html",
            include_str!("../../templates/api_docs.html"),
        ),
    ] {
        env.add_template(name, src).expect("template parses");
    }
    // The navigation offers the audit page to whoever the rules let view it (A1).
    env.add_function("may_view_audit", |user: minijinja::Value| {
        auth::Account::deserialize(user)
            .is_ok_and(|a| hnth_rules::roles::allowed(a.role, a.scope(), &Action::ViewAudit))
    });
    env.add_filter("datetime", |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(hnth_rules::time::format_datetime_vi)
            .unwrap_or_default()
    });
    self::numbers::add_filters(&mut env);
    env
});

/// The province's name for every page's header (`province.name`), set once at start-up.
static PROVINCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_province(name: &str) {
    if PROVINCE.set(name.to_string()).is_err() {
        tracing::warn!("the province's name was set twice; keeping the first");
    }
}

pub fn page(name: &str, ctx: minijinja::Value) -> Html<String> {
    let ctx = context! { province => PROVINCE.get().map_or("", String::as_str), ..ctx };
    Html(
        TEMPLATES
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!("template {name}: {e:#}");
                "<!doctype html><p>Lỗi hiển thị trang; chi tiết trong nhật ký máy chủ. (Page error; see the server log.)</p>".into()
            }),
    )
}

// ---------------------------------------------------------------- routes

/// Prometheus metrics, for a collector on this machine only: they carry no personal data, and
/// nothing outside needs them (docs/operation.md, "Watching the box").
async fn metrics(
    State(st): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Response {
    if !metrics_allowed(peer) {
        return (
            StatusCode::FORBIDDEN,
            "metrics are served to this machine (127.0.0.1) only\n",
        )
            .into_response();
    }
    let notices = match store::notices::tally(&st.db).await {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("/metrics: cannot count the notices: {e}");
            None
        }
    };
    let mut body = crate::telemetry::render(&st.hub.live_figures(), notices.as_ref());
    st.media_delay.render(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn metrics_allowed(peer: std::net::SocketAddr) -> bool {
    peer.ip().is_loopback()
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    #[test]
    fn metrics_only_to_this_machine() {
        for (peer, allowed) in [
            ("127.0.0.1:5000", true),
            ("[::1]:5000", true),
            ("10.77.0.2:5000", false),
            ("203.0.113.9:5000", false),
        ] {
            assert_eq!(metrics_allowed(peer.parse().unwrap()), allowed, "{peer}");
        }
    }
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api::routes();
    Router::new()
        .merge(api)
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(set_lang))
        .route("/ws", get(ws))
        .route("/console", get(console))
        .route("/site", get(site_app))
        .route("/chair", get(chair_view))
        .route("/admin/audit", get(crate::web::audit::audit_page))
        .route(
            "/bookings",
            get(self::bookings::list).post(self::bookings::create),
        )
        .route("/bookings/new", get(self::bookings::new_form))
        .route("/bookings/{id}/costs", post(self::costs::add))
        .route("/registry", get(self::registry::sites))
        .route("/registry/sites", post(self::registry::create_site))
        .route("/registry/providers", post(self::registry::save_provider))
        .route(
            "/registry/sites/{id}",
            get(self::registry::site).post(self::registry::save_site),
        )
        .route(
            "/registry/sites/{id}/technicians",
            post(self::registry::save_technician),
        )
        .route("/directory", get(self::registry::directory))
        .route("/calendar", get(self::calendar::calendar))
        .route(
            "/admin/accounts",
            get(self::accounts::list).post(self::accounts::create),
        )
        .route("/admin/accounts/{id}/{what}", post(self::accounts::act))
        .route("/bookings/{id}", get(self::bookings::show))
        .route(
            "/bookings/{id}/invitation.ics",
            get(self::bookings::invitation),
        )
        .route("/bookings/{id}/letter", get(self::bookings::letter))
        .route(
            "/bookings/{id}/notice.pdf",
            get(self::bookings::notice_file),
        )
        .route("/bookings/{id}/duty", post(self::bookings::set_on_duty))
        .route("/bookings/{id}/{step}", post(self::bookings::step))
        .route("/static/{file}", get(asset))
        .route(
            "/favicon.ico",
            get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON) }),
        )
        .layer(tower_http::limit::RequestBodyLimitLayer::new(256 * 1024))
        .layer(axum::middleware::from_fn(api::too_large_as_json))
        // The registration and edit forms carry an optional PDF (B1, up to 5 MiB): added after
        // the 256 KiB layer, which would wrap them otherwise, with their own larger limit.
        .route(
            "/bookings/new",
            post(self::bookings::create).layer(self::bookings::upload_limit()),
        )
        .route(
            "/bookings/{id}/edit",
            get(self::bookings::edit_form)
                .post(self::bookings::update)
                .layer(self::bookings::upload_limit()),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            self::headers::security_headers,
        ))
        .with_state(state)
}

/// An optional session for pages: absent sends the browser to the login page.
pub struct PageUser(pub Option<CurrentUser>);

impl axum::extract::FromRequestParts<AppState> for PageUser {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        auth::request_session(parts, state).await.map(PageUser)
    }
}

/// The logged-in user of a page; without a session the browser is sent to the login page.
pub struct LoggedIn(pub CurrentUser);

impl axum::extract::FromRequestParts<AppState> for LoggedIn {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match PageUser::from_request_parts(parts, state).await {
            Ok(PageUser(Some(u))) => Ok(LoggedIn(u)),
            Ok(PageUser(None)) => Err(Redirect::to("/login").into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

async fn home(PageUser(user): PageUser) -> Redirect {
    match user {
        None => Redirect::to("/login"),
        Some(u) => Redirect::to(landing(u.account.role)),
    }
}

/// Where a role starts after logging in.
fn landing(role: Role) -> &'static str {
    match role {
        Role::SiteDevice => "/site",
        Role::Admin | Role::Operator => "/console",
        Role::Chair => "/chair",
        _ => "/bookings",
    }
}

fn login_csrf_cookie(token: &str, secure: bool) -> String {
    format!(
        "hnth_login_csrf={token}; Path=/login; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

async fn login_page(State(st): State<AppState>, lang: Lang) -> Response {
    render_login(&st, lang, None, "", StatusCode::OK)
}

fn render_login(
    st: &AppState,
    lang: Lang,
    error: Option<String>,
    username: &str,
    status: StatusCode,
) -> Response {
    let csrf = auth::random_token();
    let t = lang.dict();
    let html = page("login.html", context! { t, csrf, error, username });
    (
        status,
        [(
            header::SET_COOKIE,
            login_csrf_cookie(&csrf, st.secure_cookies),
        )],
        html,
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login_form(
    State(st): State<AppState>,
    lang: Lang,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let t = lang.dict();
    let cookie_csrf = auth::cookie_in(&headers, "hnth_login_csrf");
    if f.csrf.is_empty() || cookie_csrf.as_deref() != Some(f.csrf.as_str()) {
        return render_login(
            &st,
            lang,
            Some(t["csrf_failed"].clone()),
            &f.username,
            StatusCode::FORBIDDEN,
        );
    }
    if f.username.trim().is_empty() || f.password.is_empty() {
        return render_login(
            &st,
            lang,
            Some(t["login_missing"].clone()),
            &f.username,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if let Err(too_many) = st.limits.login(addr, &f.username) {
        log_too_many("login", addr, &f.username, too_many);
        count_login("rate_limited");
        let mut res = render_login(
            &st,
            lang,
            Some(t["login_too_many"].replace("{seconds}", &too_many.retry_after_s.to_string())),
            &f.username,
            StatusCode::TOO_MANY_REQUESTS,
        );
        retry_after(&mut res, too_many);
        return res;
    }
    let result = auth::login(&st.db, &st.settings.security, &f.username, &f.password).await;
    count_login(login_result(&result));
    match result {
        Ok((token, account)) => {
            let target = landing(account.role);
            let max_age = if account.role == Role::SiteDevice {
                st.settings.security.device_session_days * 86400
            } else {
                st.settings.security.session_hours * 3600
            };
            let cookie = format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
                if st.secure_cookies { "; Secure" } else { "" }
            );
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, cookie),
                    (header::LOCATION, target.to_string()),
                ],
            )
                .into_response()
        }
        Err(LoginError::Invalid) => render_login(
            &st,
            lang,
            Some(t["login_invalid"].clone()),
            &f.username,
            StatusCode::UNAUTHORIZED,
        ),
        Err(LoginError::Locked { until }) => {
            let when = chrono::DateTime::from_timestamp(until, 0)
                .map(hnth_rules::time::format_datetime_vi)
                .unwrap_or_default();
            render_login(
                &st,
                lang,
                Some(t["login_locked"].replace("{until}", &when)),
                &f.username,
                StatusCode::LOCKED,
            )
        }
        Err(LoginError::Unavailable) => render_login(
            &st,
            lang,
            Some(t["login_unavailable"].clone()),
            &f.username,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(st): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if f.csrf != user.csrf {
        return (StatusCode::FORBIDDEN, "CSRF token missing or wrong").into_response();
    }
    if let Some(token) = auth::cookie_in(&headers, SESSION_COOKIE) {
        if let Err(e) = auth::logout(&st.db, &token).await {
            // The session stays open: say so rather than pretend the user is logged out.
            return AppError::Internal(format!(
                "logout of {}: deleting the session: {e}",
                user.account.username
            ))
            .into_response();
        }
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

async fn set_lang(
    axum::extract::Path(code): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let code = if code == "en" { "en" } else { "vi" };
    // Back to the page the user came from, if it is one of ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").map(|i| &r[i + 3..]))
        .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    let cookie = format!("hnth_lang={code}; Path=/; SameSite=Lax; Max-Age=31536000");
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, back)],
    )
        .into_response()
}

/// The body of `POST /api/v1/login`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ApiLogin {
    username: String,
    password: String,
}

/// What `POST /api/v1/login` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// Send it as `Authorization: Bearer <token>`.
    token: String,
    /// The account's role (`admin`, `operator`, `organizer`, …).
    role: String,
    /// The account's site `{id, code, name}`, for site accounts.
    site: Option<serde_json::Value>,
}

/// Log in with a username and password; the token opens a session like the login page's
/// (it expires after the same hours; A2 locks the account after repeated failures).
#[utoipa::path(post, path = "/api/v1/login", tag = "auth", request_body = ApiLogin,
    responses((status = 200, description = "OK", body = ApiToken), (status = 400, description = "bad input; `field` names it", body = api::ApiErrorBody),
              (status = 401, description = "no session: a missing, wrong or expired token", body = api::ApiErrorBody), (status = 423, description = "the account is locked after repeated failed logins (A2)", body = api::ApiErrorBody),
              (status = 503, description = "the server cannot record the login now", body = api::ApiErrorBody)))]
pub async fn api_login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    // Only the documented object; serde would also take a struct from an array.
    let req = body
        .ok()
        .filter(|Json(v)| v.is_object())
        .and_then(|Json(v)| serde_json::from_value::<ApiLogin>(v).ok());
    let Some(req) = req else {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "bad_request", "message": "expected JSON {username, password}"})),
        )
            .into_response());
    };
    if let Err(too_many) = st.limits.login(addr, &req.username) {
        log_too_many("login", addr, &req.username, too_many);
        count_login("rate_limited");
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "error": "too_many_requests",
                "message": format!("too many login tries from this {}; retry after {} s", too_many.by.noun(), too_many.retry_after_s),
                "retry_after": too_many.retry_after_s,
            })),
        )
            .into_response();
        retry_after(&mut res, too_many);
        return Ok(res);
    }
    let result = auth::login(&st.db, &st.settings.security, &req.username, &req.password).await;
    count_login(login_result(&result));
    Ok(match result {
        Ok((token, a)) => {
            let site = match a.site_id {
                Some(id) => store::registry::sites(&st.db).await?.into_iter().find(|s| s.id == id).map(|s| json!({"id": s.id, "code": s.code, "name": s.name})),
                None => None,
            };
            Json(json!({"token": token, "role": a.role.as_str(), "site": site})).into_response()
        }
        Err(LoginError::Invalid) => {
            (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_credentials", "message": "wrong username or password"}))).into_response()
        }
        Err(LoginError::Locked { until }) => (
            StatusCode::LOCKED,
            Json(json!({"error": "locked", "message": "account locked after repeated failed logins (rule A2)", "until": until})),
        )
            .into_response(),
        Err(LoginError::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "unavailable", "message": "the server cannot record the login now; try again later"})),
        )
            .into_response(),
    })
}

async fn ws(State(st): State<AppState>, parts: Parts, upgrade: WebSocketUpgrade) -> Response {
    let Some((token, from_cookie)) = auth::request_token(&parts) else {
        return AppError::Unauthenticated.into_response();
    };
    // A cookie rides along with cross-site requests: only our own pages may use it here.
    if from_cookie && !same_origin(&parts) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    let user = match auth::session(&st.db, &token).await {
        Ok(Some(user)) => user,
        Ok(None) => return AppError::Unauthenticated.into_response(),
        Err(_) => return AppError::Unavailable(Lang::from_parts(&parts)).into_response(),
    };
    if let Err(too_many) = st
        .limits
        .ws(limits::client_address(&parts), user.account.id)
    {
        log_too_many(
            "signaling",
            limits::client_address(&parts),
            &user.account.username,
            too_many,
        );
        metrics::counter!(crate::telemetry::RATE_LIMITED, "limit" => too_many.by.noun())
            .increment(1);
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many signaling connections from this {}; retry after {} s\n",
                too_many.by.noun(),
                too_many.retry_after_s
            ),
        )
            .into_response();
        retry_after(&mut res, too_many);
        return res;
    }
    let hub = st.hub.clone();
    // The hub checks each message against the protocol's limit (closing with 1009 above it);
    // the WebSocket layer only refuses what is far larger, on its header.
    upgrade
        .max_frame_size(crate::live::signaling::TRANSPORT_CAP)
        .max_message_size(crate::live::signaling::TRANSPORT_CAP)
        .on_upgrade(move |socket| hub.serve(socket, user, token))
}

fn login_result<T>(r: &Result<T, LoginError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(LoginError::Invalid) => "invalid",
        Err(LoginError::Locked { .. }) => "locked",
        Err(LoginError::Unavailable) => "unavailable",
    }
}

fn count_login(result: &'static str) {
    metrics::counter!(crate::telemetry::LOGINS, "result" => result).increment(1);
}

fn log_too_many(what: &str, addr: Option<std::net::IpAddr>, who: &str, e: limits::TooMany) {
    tracing::warn!(
        "{what} refused: too many tries by {} (address {}, account {who:?}); retry after {} s",
        e.by.noun(),
        addr.map_or("unknown".into(), |a| a.to_string()),
        e.retry_after_s
    );
}

fn retry_after(res: &mut Response, e: limits::TooMany) {
    res.headers_mut()
        .insert(header::RETRY_AFTER, e.retry_after_s.into());
}

fn same_origin(parts: &Parts) -> bool {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(h), Some(o)) => o.split_once("://").map(|(_, rest)| rest) == Some(h),
        _ => false,
    }
}

/// Every form carries the session's CSRF token; without it nothing is done.
pub fn require_csrf(user: &CurrentUser, token: &str, lang: Lang) -> Result<(), AppError> {
    if token == user.csrf {
        Ok(())
    } else {
        Err(AppError::Csrf(lang))
    }
}

/// The role and scope check of a route (A1), by the pure rules.
pub fn require(user: &CurrentUser, lang: Lang, action: &Action) -> Result<(), AppError> {
    hnth_rules::roles::authorize(user.account.role, user.account.scope(), action)
        .map_err(|_| AppError::Forbidden(lang))
}

async fn console(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
) -> Result<Response, AppError> {
    require(&user, lang, &Action::OpenMeeting)?;
    let t = lang.dict();
    // C2: the link figures are coloured at the province's thresholds, which the page also shows.
    let m = &st.settings.meeting;
    let link = context! {
        rtt_warn_ms => m.rtt_warn_ms, rtt_alarm_ms => m.rtt_alarm_ms,
        loss_warn_percent => m.loss_warn_percent, loss_alarm_percent => m.loss_alarm_percent,
        jitter_warn_ms => m.jitter_warn_ms, jitter_alarm_ms => m.jitter_alarm_ms,
    };
    let settings = serde_json::json!({ "link": link });
    let sites = st.hub.sites_snapshot();
    Ok(page(
        "console.html",
        context! { t, user => user.account, csrf => user.csrf, link, sites => sites.get("list").cloned(), settings_json => self::headers::script_json(&settings)?, t_json => self::headers::script_json(t)? },
    )
    .into_response())
}

/// M2: the kiosk, in the language the registry set for its site (not the browser's cookie:
/// anyone in the room could switch that).
async fn site_app(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
) -> Result<Response, AppError> {
    if user.account.role != Role::SiteDevice {
        return Err(AppError::Forbidden(lang));
    }
    let lang = match user.account.site_id {
        Some(site) => self::registry::site_language(&st.db, site).await?,
        None => Lang::Vi,
    };
    let t = lang.dict();
    Ok(page("site.html", context! { t, user => user.account, csrf => user.csrf, t_json => self::headers::script_json(t)? }).into_response())
}

/// The chair's view (C3, C4): the meetings chaired at the chair's site, run live over the
/// WebSocket. Only for the chair's role: the control center runs the floor from its console.
async fn chair_view(LoggedIn(user): LoggedIn, lang: Lang) -> Result<Response, AppError> {
    if user.account.role != Role::Chair {
        return Err(AppError::Forbidden(lang));
    }
    let t = lang.dict();
    Ok(page(
        "chair.html",
        context! { t, user => user.account, csrf => user.csrf, t_json => self::headers::script_json(t)? },
    )
    .into_response())
}

/// This document, OpenAPI 3.1.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "docs",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(api::document().clone())
}

/// This document as a page, in the interface's language.
#[utoipa::path(get, path = "/api/v1/docs", tag = "docs",
    responses((status = 200, description = "an HTML page", content_type = "text/html")))]
// Rendered here from the document: the box runs offline, so no Swagger UI from a CDN.
pub async fn api_docs(PageUser(user): PageUser, lang: Lang) -> Response {
    let doc = serde_json::to_value(api::document()).unwrap_or_default();
    let schema_name = |v: &serde_json::Value| -> Option<String> {
        let s = v.pointer("/content/application~1json/schema")?;
        let r = s
            .get("$ref")
            .or_else(|| s.pointer("/items/$ref"))?
            .as_str()?;
        let name = r.rsplit('/').next()?.to_string();
        Some(if s.get("items").is_some() {
            format!("[{name}]")
        } else {
            name
        })
    };
    let mut ops = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let params: Vec<_> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| context! { name => p["name"], in => p["in"], description => p["description"] })
                    .collect();
                let responses: Vec<_> = op["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(status, r)| context! { status, schema => schema_name(r) })
                    .collect();
                let body = op.get("requestBody").and_then(schema_name);
                ops.push(context! {
                    id => format!("{method}-{path}").replace(['/', '{', '}'], "-"),
                    method => method.to_uppercase(), path, summary => op["summary"].as_str().or(op["description"].as_str()),
                    params, responses, body,
                });
            }
        }
    }
    let t = lang.dict();
    let version = doc["openapi"].as_str().unwrap_or("").to_string();
    let (account, csrf) = match &user {
        Some(u) => (Some(u.account.clone()), Some(u.csrf.clone())),
        None => (None, None),
    };
    page(
        "api_docs.html",
        context! { t, user => account, csrf, ops, version },
    )
    .into_response()
}

const FAVICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect width='16' height='16' rx='3' fill='#12355b'/><circle cx='8' cy='8' r='4' fill='#fff'/></svg>";

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, mime) = match file.as_str() {
        "hnth.css" => (
            include_str!("../../static/hnth.css"),
            "text/css; charset=utf-8",
        ),
        "live.js" => (
            include_str!("../../static/live.js"),
            "text/javascript; charset=utf-8",
        ),
        "console.js" => (
            include_str!("../../static/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "console_util.js" => (
            include_str!("../../static/console_util.js"),
            "text/javascript; charset=utf-8",
        ),
        "console_today.js" => (
            include_str!("../../static/console_today.js"),
            "text/javascript; charset=utf-8",
        ),
        "console_sites.js" => (
            include_str!("../../static/console_sites.js"),
            "text/javascript; charset=utf-8",
        ),
        "console_course.js" => (
            include_str!("../../static/console_course.js"),
            "text/javascript; charset=utf-8",
        ),
        "console_frame.js" => (
            include_str!("../../static/console_frame.js"),
            "text/javascript; charset=utf-8",
        ),
        "console_watch.js" => (
            include_str!("../../static/console_watch.js"),
            "text/javascript; charset=utf-8",
        ),
        "site.js" => (
            include_str!("../../static/site.js"),
            "text/javascript; charset=utf-8",
        ),
        "chair.js" => (
            include_str!("../../static/chair.js"),
            "text/javascript; charset=utf-8",
        ),
        "booking_form.js" => (
            include_str!("../../static/booking_form.js"),
            "text/javascript; charset=utf-8",
        ),
        "letter.css" => (
            include_str!("../../static/letter.css"),
            "text/css; charset=utf-8",
        ),
        "letter.js" => (
            include_str!("../../static/letter.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Hostile input over HTTP: any route of the pages and of the JSON API, with the session and
/// CSRF token of an administrator (so the input reaches the handlers), fields nearly right or
/// wrong in every encoding: never a panic, never a 500. `HNTH_FUZZ_CASES` inputs
/// (scripts/fuzz-long.sh).
#[cfg(test)]
mod fuzz_tests {

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::Request;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::fuzzing::{cases, number, object, text, value};
    use crate::services::accounts;
    use crate::web::{router, AppState};

    const FIELDS: &[&str] = &[
        "csrf",
        "title",
        "kind",
        "host_site",
        "sites",
        "official_start",
        "official_end",
        "preparation_start",
        "chair",
        "content",
        "participants",
        "note",
        "reason",
        "code",
        "name",
        "unit",
        "address",
        "phone",
        "email",
        "language",
        "room_rules",
        "username",
        "display_name",
        "role",
        "site",
        "password",
        "amount",
        "category",
        "description",
        "provider",
        "status",
        "from",
        "to",
        "page",
        "q",
        "action",
        "object",
        "date",
        "view",
        "technician",
        "on_duty",
    ];
    const PAGE_POSTS: &[&str] = &[
        "/login",
        "/bookings",
        "/bookings/{id}/edit",
        "/bookings/{id}/approve",
        "/bookings/{id}/reject",
        "/bookings/{id}/cancel",
        "/bookings/{id}/hold",
        "/bookings/{id}/{any}",
        "/bookings/{id}/costs",
        "/bookings/{id}/duty",
        "/registry/sites",
        "/registry/providers",
        "/registry/sites/{id}",
        "/registry/sites/{id}/technicians",
        "/admin/accounts",
        "/admin/accounts/{id}/unlock",
        "/admin/accounts/{id}/disable",
        "/admin/accounts/{id}/{any}",
    ];
    const PAGE_GETS: &[&str] = &[
        "/bookings",
        "/bookings/{id}",
        "/bookings/{id}/letter",
        "/bookings/{id}/invitation.ics",
        "/bookings/{id}/notice.pdf",
        "/calendar",
        "/registry",
        "/registry/sites/{id}",
        "/directory",
        "/admin/accounts",
        "/admin/audit",
        "/lang/{any}",
        "/static/{any}",
        "/console",
        "/chair",
        "/site",
        "/metrics",
    ];

    #[test]
    fn fuzz_http_no_request_makes_a_handler_panic_or_fail() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_dir, app, cookie, csrf, token, api_paths) = rt.block_on(async {
            let (dir, db) = crate::store::testing::db().await;
            let pw = "Mat-khau-kiem-thu-2026";
            crate::demo::seed(&db, pw).await.unwrap();
            crate::demo::booking_of_the_day(&db, chrono::Utc::now())
                .await
                .unwrap();
            // Accounts of their own, out of the ids the input names (0..6): the input may
            // disable, unlock or reset the demo's, and must not end the test's own sessions.
            for (username, role) in [("fuzz-admin", "admin"), ("fuzz-operator", "operator")] {
                let new = accounts::NewAccount {
                    username,
                    display_name: username,
                    password: pw,
                    role,
                    site_id: None,
                    unit_id: None,
                };
                accounts::create(&db, accounts::By::Tool("test"), &new)
                    .await
                    .unwrap();
            }
            let sec = crate::config::Security::default();
            let (cookie, _) = accounts::login(&db, &sec, "fuzz-admin", pw).await.unwrap();
            let (token, _) = accounts::login(&db, &sec, "fuzz-operator", pw)
                .await
                .unwrap();
            let csrf = accounts::session(&db, &cookie).await.unwrap().unwrap().csrf;
            let state = AppState::for_tests(db.clone()).await;
            let doc = serde_json::to_value(crate::web::api::document()).unwrap();
            let mut api: Vec<(String, String)> = Vec::new();
            for (path, item) in doc["paths"].as_object().unwrap() {
                for method in item.as_object().unwrap().keys() {
                    api.push((method.to_uppercase(), path.clone()));
                }
            }
            (dir, router(state), cookie, csrf, token, api)
        });
        let fill = |path: &str, id: &Value, any: &str| {
            let id = match id {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            let enc = |s: &str| serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string();
            let mut out = String::new();
            for seg in path.split('/').skip(1) {
                out.push('/');
                out.push_str(&match seg {
                    "{id}" => enc(&id),
                    s if s.starts_with('{') => enc(any),
                    s => s.to_string(),
                });
            }
            out
        };
        let id = prop_oneof![3 => (0i64..6).prop_map(Value::from), 1 => number(), 1 => text().prop_map(Value::from)];
        let form = (
            prop::collection::vec((prop::sample::select(FIELDS), text()), 0..12),
            any::<bool>(),
        );
        let input = (
            0..3usize,
            (
                prop::sample::select(PAGE_POSTS),
                prop::sample::select(PAGE_GETS),
                prop::sample::select(api_paths.clone()),
            ),
            id,
            text(),
            form,
            prop_oneof![2 => object(FIELDS, value(FIELDS)), 1 => value(FIELDS)],
            prop::collection::vec((prop::sample::select(FIELDS), text()), 0..6),
        );
        let statuses =
            std::cell::RefCell::new(std::collections::BTreeMap::<(usize, u16), u64>::new());
        let mut runner = TestRunner::new(Config {
            cases: cases(400),
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(
                &input,
                |(
                    what,
                    (post, get, (method, api_path)),
                    id,
                    any,
                    (fields, with_csrf),
                    json,
                    query,
                )| {
                    let query = serde_urlencoded::to_string(&query).unwrap();
                    let req = match what {
                        // A page's form, with the session and (mostly) its CSRF token.
                        0 => {
                            let mut fields = fields;
                            if with_csrf {
                                fields.push(("csrf", csrf.clone()));
                            }
                            Request::post(fill(post, &id, &any))
                                .header("cookie", format!("hnth_session={cookie}"))
                                .header("content-type", "application/x-www-form-urlencoded")
                                .body(Body::from(serde_urlencoded::to_string(&fields).unwrap()))
                        }
                        // A page, with a query string.
                        1 => Request::get(format!("{}?{query}", fill(get, &id, &any)))
                            .header("cookie", format!("hnth_session={cookie}"))
                            .body(Body::empty()),
                        // The JSON API, with the operator's bearer token.
                        _ => Request::builder()
                            .method(method.as_str())
                            .uri(format!("{}?{query}", fill(&api_path, &id, &any)))
                            .header("authorization", format!("Bearer {token}"))
                            .header("content-type", "application/json")
                            .body(Body::from(json.to_string())),
                    };
                    let mut req = req.unwrap();
                    req.extensions_mut()
                        .insert(ConnectInfo(std::net::SocketAddr::from((
                            [127, 0, 0, 1],
                            40000,
                        ))));
                    let res = rt.block_on(app.clone().oneshot(req)).unwrap();
                    *statuses
                        .borrow_mut()
                        .entry((what, res.status().as_u16()))
                        .or_default() += 1;
                    prop_assert!(
                        res.status() != axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "500 for a request of kind {what}"
                    );
                    Ok(())
                },
            )
            .unwrap();
        // The input reached the handlers: the session held (no 401 or redirect to the login
        // page for pages), and some requests were done, not only refused.
        let statuses = statuses.into_inner();
        eprintln!("http fuzz, (kind, status): {statuses:?}");
        let n = |f: &dyn Fn(usize, u16) -> bool| -> u64 {
            statuses
                .iter()
                .filter(|((k, s), _)| f(*k, *s))
                .map(|(_, n)| n)
                .sum()
        };
        // (401 only from the API's login, with made-up credentials.)
        assert!(n(&|_, s| s == 401) <= n(&|k, _| k == 2) / 4, "{statuses:?}");
        assert!(n(&|_, s| (200..300).contains(&s)) > 0, "{statuses:?}");
        assert!(
            n(&|k, s| k == 0 && s != 403) > 0,
            "every form refused: {statuses:?}"
        );
    }
}
