//! Personal accounts (rule A2) on the web: the session token of a request (cookie, bearer
//! token or `?token=`) and the extractor that every protected route uses. Logging in and out
//! and the account use cases are `services::accounts`; the types are `store::accounts`'.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub use crate::services::accounts::{login, logout, random_token, session, LoginError};
pub use crate::store::accounts::{Account, CurrentUser};
use crate::web::{AppError, AppState, Lang};

pub const SESSION_COOKIE: &str = "hnth_session";

/// The session token of a request: the cookie, or `Authorization: Bearer`, or `?token=` on the
/// WebSocket only (for clients that cannot set its headers; anywhere else a token in the URL
/// would end up in browser histories and proxy logs).
/// Returns whether it came from the cookie (then CSRF and Origin checks apply).
pub fn request_token(parts: &Parts) -> Option<(String, bool)> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        if let Some(t) = v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")) {
            return Some((t.trim().to_string(), false));
        }
    }
    if let Some(q) = parts.uri.query().filter(|_| parts.uri.path() == "/ws") {
        for pair in q.split('&') {
            if let Some(t) = pair.strip_prefix("token=") {
                return Some((t.to_string(), false));
            }
        }
    }
    cookie_value(parts, SESSION_COOKIE).map(|t| (t, true))
}

pub fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    cookie_in(&parts.headers, name)
}

/// The value of the cookie `name` among a request's headers.
pub fn cookie_in(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| cookie::Cookie::parse(c.trim().to_string()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// The session of a request's token, if any; a database that cannot say is `Unavailable`
/// (503), not a missing session.
pub async fn request_session(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<CurrentUser>, AppError> {
    let Some((token, _)) = request_token(parts) else {
        return Ok(None);
    };
    session(&state.db, &token)
        .await
        .map_err(|_| AppError::Unavailable(Lang::from_parts(parts)))
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        request_session(parts, state)
            .await?
            .ok_or(AppError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {

    use crate::services::accounts::{self, By, NewAccount};
    use crate::store::testing::{break_column, db};
    use crate::web::{router, AppState};

    const PW: &str = "Mat-khau-kiem-thu-2026";

    /// A database that cannot read sessions: a page answers 503 with the Vietnamese message
    /// (not the login page, as if the user were logged out), the API 503 with its JSON error.
    #[tokio::test]
    async fn a_session_that_cannot_be_read_is_answered_503() {
        let (_dir, db) = db().await;
        let new = NewAccount {
            username: "op",
            display_name: "Operator",
            password: PW,
            role: "operator",
            site_id: None,
            unit_id: None,
        };
        accounts::create(&db, By::Tool("test"), &new).await.unwrap();
        let security = crate::config::Security::default();
        let (token, _) = accounts::login(&db, &security, "op", PW).await.unwrap();
        let state = AppState::for_tests(db.clone()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = || {
            http.get(format!("{base}/bookings"))
                .header("cookie", format!("hnth_session={token}"))
                .send()
        };
        assert_eq!(page().await.unwrap().status(), 200);

        break_column(&db, "sessions", "csrf").await;
        let r = page().await.unwrap();
        assert_eq!(r.status(), 503);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("Máy chủ tạm thời không đọc được dữ liệu"),
            "{text}"
        );
        let r = http
            .get(format!("{base}/api/v1/sites"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unavailable", "{body}");
    }
}
