//! The interface's language: Vietnamese by default, English by the `hnth_lang` cookie; the
//! dictionaries (`i18n/`) are embedded.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::request::Parts;

use super::auth;

/// UI language: Vietnamese by default, English available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

static VI: LazyLock<BTreeMap<String, String>> =
    LazyLock::new(|| toml::from_str(include_str!("../../i18n/vi.toml")).expect("vi.toml parses"));
static EN: LazyLock<BTreeMap<String, String>> =
    LazyLock::new(|| toml::from_str(include_str!("../../i18n/en.toml")).expect("en.toml parses"));

impl Lang {
    pub fn dict(self) -> &'static BTreeMap<String, String> {
        match self {
            Lang::Vi => &VI,
            Lang::En => &EN,
        }
    }

    /// `vi` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub(super) fn from_parts(parts: &Parts) -> Lang {
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
