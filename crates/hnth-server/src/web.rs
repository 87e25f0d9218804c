//! HTTP: the server-rendered pages, the JSON login, the WebSocket upgrade and embedded assets.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use hnth_rules::roles::{Action, Role};
use minijinja::{context, Environment};
use serde::Deserialize;
use serde_json::json;
use sqlx::SqlitePool;

use crate::auth::{self, CurrentUser, LoginError, SESSION_COOKIE};
use crate::config::Settings;
use crate::db;
use crate::signaling::Hub;

#[derive(Clone)]
pub struct AppState {
    pub db: SqlitePool,
    pub hub: Arc<Hub>,
    pub settings: Arc<Settings>,
    pub secure_cookies: bool,
    /// Wakes the e-mail sender after notices were queued.
    pub outbox: crate::mail::Outbox,
    /// The delay the media workers add (`/metrics`).
    pub media_delay: Arc<crate::delay::MediaDelays>,
}

/// One error type for every handler.
#[derive(Debug)]
pub enum AppError {
    Unauthenticated,
    Forbidden(Lang),
    Csrf(Lang),
    Internal(String),
}

impl<E: std::fmt::Display> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthenticated", "message": "log in first"})),
            )
                .into_response(),
            AppError::Forbidden(lang) => {
                let t = lang.dict();
                (
                    StatusCode::FORBIDDEN,
                    page("error.html", context! { t, message => t["forbidden"] }),
                )
                    .into_response()
            }
            AppError::Csrf(lang) => {
                (StatusCode::FORBIDDEN, lang.dict()["csrf_failed"].clone()).into_response()
            }
            AppError::Internal(e) => {
                tracing::error!("internal error: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log",
                )
                    .into_response()
            }
        }
    }
}

// ---------------------------------------------------------------- languages

/// UI language: Vietnamese by default, English available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

static VI: LazyLock<BTreeMap<String, String>> =
    LazyLock::new(|| toml::from_str(include_str!("../i18n/vi.toml")).expect("vi.toml parses"));
static EN: LazyLock<BTreeMap<String, String>> =
    LazyLock::new(|| toml::from_str(include_str!("../i18n/en.toml")).expect("en.toml parses"));

impl Lang {
    pub fn dict(self) -> &'static BTreeMap<String, String> {
        match self {
            Lang::Vi => &VI,
            Lang::En => &EN,
        }
    }

    fn from_parts(parts: &Parts) -> Lang {
        match auth::cookie_value(parts, "hnth_lang").as_deref() {
            Some("en") => Lang::En,
            _ => Lang::Vi,
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::from_parts(parts))
    }
}

// ---------------------------------------------------------------- templates

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, src) in [
        ("base.html", include_str!("../templates/base.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("console.html", include_str!("../templates/console.html")),
        ("site.html", include_str!("../templates/site.html")),
        ("audit.html", include_str!("../templates/audit.html")),
        ("error.html", include_str!("../templates/error.html")),
        ("bookings.html", include_str!("../templates/bookings.html")),
        (
            "booking_form.html",
            include_str!("../templates/booking_form.html"),
        ),
        ("booking.html", include_str!("../templates/booking.html")),
        ("registry.html", include_str!("../templates/registry.html")),
        (
            "registry_site.html",
            include_str!("../templates/registry_site.html"),
        ),
        (
            "directory.html",
            include_str!("../templates/directory.html"),
        ),
        ("calendar.html", include_str!("../templates/calendar.html")),
        ("accounts.html", include_str!("../templates/accounts.html")),
    ] {
        env.add_template(name, src).expect("template parses");
    }
    env.add_filter("datetime", |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(hnth_rules::time::format_datetime_vi)
            .unwrap_or_default()
    });
    env
});

pub fn page(name: &str, ctx: minijinja::Value) -> Html<String> {
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
/// nothing outside needs them.
async fn metrics(
    State(st): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Response {
    metrics_for(peer, &st.media_delay)
}

fn metrics_for(peer: std::net::SocketAddr, delays: &crate::delay::MediaDelays) -> Response {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "metrics are served to this machine (127.0.0.1) only\n",
        )
            .into_response();
    }
    let mut body = String::new();
    delays.render(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    #[test]
    fn metrics_only_to_this_machine() {
        let d = crate::delay::MediaDelays::default();
        for (peer, status) in [
            ("127.0.0.1:5000", StatusCode::OK),
            ("[::1]:5000", StatusCode::OK),
            ("10.77.0.2:5000", StatusCode::FORBIDDEN),
            ("203.0.113.9:5000", StatusCode::FORBIDDEN),
        ] {
            assert_eq!(
                metrics_for(peer.parse().unwrap(), &d).status(),
                status,
                "{peer}"
            );
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(set_lang))
        .route("/api/v1/login", post(api_login))
        .route("/ws", get(ws))
        .route("/console", get(console))
        .route("/site", get(site_app))
        .route("/admin/audit", get(audit_page))
        .route(
            "/bookings",
            get(crate::bookings::list).post(crate::bookings::create),
        )
        .route("/bookings/new", get(crate::bookings::new_form))
        .route("/bookings/{id}/costs", post(crate::costs::add))
        .route("/registry", get(crate::registry::sites))
        .route("/api/v1/next-meetings", get(crate::registry::next_meetings))
        .route("/registry/sites", post(crate::registry::create_site))
        .route("/registry/providers", post(crate::registry::save_provider))
        .route(
            "/registry/sites/{id}",
            get(crate::registry::site).post(crate::registry::save_site),
        )
        .route(
            "/registry/sites/{id}/technicians",
            post(crate::registry::save_technician),
        )
        .route("/directory", get(crate::registry::directory))
        .route("/calendar", get(crate::calendar::calendar))
        .route(
            "/admin/accounts",
            get(crate::accounts::list).post(crate::accounts::create),
        )
        .route("/admin/accounts/{id}/{what}", post(crate::accounts::act))
        .route("/bookings/{id}", get(crate::bookings::show))
        .route(
            "/bookings/{id}/invitation.ics",
            get(crate::bookings::invitation),
        )
        .route("/bookings/{id}/letter", get(crate::bookings::letter))
        .route(
            "/bookings/{id}/notice.pdf",
            get(crate::bookings::notice_file),
        )
        .route("/bookings/{id}/duty", post(crate::bookings::set_on_duty))
        .route("/bookings/{id}/{step}", post(crate::bookings::step))
        .route("/static/{file}", get(asset))
        .route(
            "/favicon.ico",
            get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON) }),
        )
        .layer(tower_http::limit::RequestBodyLimitLayer::new(256 * 1024))
        // The registration and edit forms carry an optional PDF (B1, up to 5 MiB): added after
        // the 256 KiB layer, which would wrap them otherwise, with their own larger limit.
        .route(
            "/bookings/new",
            post(crate::bookings::create).layer(crate::bookings::upload_limit()),
        )
        .route(
            "/bookings/{id}/edit",
            get(crate::bookings::edit_form)
                .post(crate::bookings::update)
                .layer(crate::bookings::upload_limit()),
        )
        .with_state(state)
}

/// An optional session for pages: absent sends the browser to the login page.
pub struct PageUser(pub Option<CurrentUser>);

impl axum::extract::FromRequestParts<AppState> for PageUser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some((token, _)) = auth::request_token(parts) else {
            return Ok(PageUser(None));
        };
        Ok(PageUser(auth::session(&state.db, &token).await))
    }
}

/// The logged-in user of a page; without a session the browser is sent to the login page.
pub struct LoggedIn(pub CurrentUser);

impl axum::extract::FromRequestParts<AppState> for LoggedIn {
    type Rejection = Redirect;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Redirect> {
        match PageUser::from_request_parts(parts, state).await {
            Ok(PageUser(Some(u))) => Ok(LoggedIn(u)),
            _ => Err(Redirect::to("/login")),
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
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let t = lang.dict();
    let cookie_csrf = cookie_from_headers(&headers, "hnth_login_csrf");
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
    match auth::login(&st.db, &st.settings.security, &f.username, &f.password).await {
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
    }
}

fn cookie_from_headers(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| cookie::Cookie::parse(c.trim().to_string()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
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
    if let Some(token) = cookie_from_headers(&headers, SESSION_COOKIE) {
        auth::logout(&st.db, &token).await;
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

#[derive(Deserialize)]
struct ApiLogin {
    username: String,
    password: String,
}

async fn api_login(
    State(st): State<AppState>,
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
    Ok(match auth::login(&st.db, &st.settings.security, &req.username, &req.password).await {
        Ok((token, a)) => {
            let site = match a.site_id {
                Some(id) => db::sites(&st.db).await?.into_iter().find(|s| s.id == id).map(|s| json!({"id": s.id, "code": s.code, "name": s.name})),
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
    })
}

async fn ws(State(st): State<AppState>, mut parts: Parts, upgrade: WebSocketUpgrade) -> Response {
    let Some((token, from_cookie)) = auth::request_token(&parts) else {
        return AppError::Unauthenticated.into_response();
    };
    // A cookie rides along with cross-site requests: only our own pages may use it here.
    if from_cookie && !same_origin(&parts) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    let Some(user) = auth::session(&st.db, &token).await else {
        return AppError::Unauthenticated.into_response();
    };
    let _ = &mut parts;
    let hub = st.hub.clone();
    upgrade
        .max_message_size(256 * 1024)
        .on_upgrade(move |socket| hub.serve(socket, user))
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
    let sites = st.hub.sites_snapshot();
    Ok(page(
        "console.html",
        context! { t, user => user.account, csrf => user.csrf, sites => sites.get("list").cloned(), t_json => serde_json::to_string(t)? },
    )
    .into_response())
}

async fn site_app(LoggedIn(user): LoggedIn, lang: Lang) -> Result<Response, AppError> {
    if user.account.role != Role::SiteDevice {
        return Err(AppError::Forbidden(lang));
    }
    let t = lang.dict();
    Ok(page("site.html", context! { t, user => user.account, csrf => user.csrf, t_json => serde_json::to_string(t)? }).into_response())
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn audit_page(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Query(q): Query<Limit>,
) -> Result<Response, AppError> {
    require(&user, lang, &Action::ViewAudit)?;
    // The audit trail and the violations are for administrators (README, docs/operation.md).
    if user.account.role != Role::Admin {
        return Err(AppError::Forbidden(lang));
    }
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let audit = db::audit_log(&st.db, limit).await?;
    let violations = db::violations(&st.db, limit).await?;
    let t = lang.dict();
    Ok(page(
        "audit.html",
        context! { t, user => user.account, csrf => user.csrf, audit, violations },
    )
    .into_response())
}

const FAVICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect width='16' height='16' rx='3' fill='#12355b'/><circle cx='8' cy='8' r='4' fill='#fff'/></svg>";

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, mime) = match file.as_str() {
        "hnth.css" => (
            include_str!("../static/hnth.css"),
            "text/css; charset=utf-8",
        ),
        "live.js" => (
            include_str!("../static/live.js"),
            "text/javascript; charset=utf-8",
        ),
        "console.js" => (
            include_str!("../static/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "site.js" => (
            include_str!("../static/site.js"),
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
