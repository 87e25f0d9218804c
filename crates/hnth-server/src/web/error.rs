//! The one error type of the pages' handlers, answered in the page's language.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use minijinja::context;
use serde_json::json;

use super::{page, Lang};

/// One error type for every handler.
#[derive(Debug)]
pub enum AppError {
    Unauthenticated,
    Forbidden(Lang),
    Csrf(Lang),
    /// The database cannot answer now (its error is logged where it happened): 503, with a
    /// message in the page's language.
    Unavailable(Lang),
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
            AppError::Unavailable(lang) => {
                let t = lang.dict();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    page("error.html", context! { t, message => t["unavailable"] }),
                )
                    .into_response()
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
