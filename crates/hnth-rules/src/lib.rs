//! # hnth-rules — the regulation as pure code
//!
//! This crate holds the rules of Decision 561/QĐ-UBND of 15 April 2014 of the Chairman of
//! Bạc Liêu Provincial People's Committee (*Regulation on managing, operating and using the
//! provincial online video-conferencing system*) that can be decided from data alone:
//!
//! * [`booking`]: registration lead time (B1), provider notice (B2), overlaps of sites and of
//!   the control center's capacity (B3), emergency displacement (B5), reminders (P1) and the
//!   booking workflow;
//! * [`roles`]: who may do what, where (A1, C6, L3);
//! * [`costs`]: who pays for what by default (F1);
//! * [`roster`]: each site's technician roster (S3);
//! * [`time`]: Asia/Ho_Chi_Minh time and the Vietnamese date formats used in the UI.
//!
//! Everything here is **pure**: no IO, no database, and no clock reads. The current time is
//! always passed in (`chrono`'s `clock` feature is not even enabled), so every rule can be
//! tested at exact boundaries.
//!
//! Every refusal or flag is a [`Violation`]: the requirement id (e.g. `B1`), the article of the
//! regulation (e.g. `5.1`), a stable machine code, and the explanation in English (API, logs)
//! and Vietnamese (UI). The same values feed the violation report of R4.

/// Declares a unit-only enum with a stable snake_case code (used by serde, `as_str` and
/// `parse`) and English and Vietnamese labels for each variant.
macro_rules! labelled_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident => $code:literal, $en:literal, $vi:literal;)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $code)] $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Stable snake_case code (database, API).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }

            /// The variant whose code is `s`.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            /// English label (API, logs).
            pub fn label_en(self) -> &'static str {
                match self { $($name::$variant => $en,)+ }
            }

            /// Vietnamese label (UI).
            pub fn label_vi(self) -> &'static str {
                match self { $($name::$variant => $vi,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod booking;
pub mod costs;
pub mod roles;
pub mod roster;
pub mod time;

use serde::Serialize;
use std::fmt;

/// Requirement ids of `REGULATION.md` that this crate can cite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RuleId {
    /// Roles and scopes (Art. 3).
    A1,
    /// Five-day registration lead time (Art. 5.1).
    B1,
    /// Two-day notice to the line provider (Art. 5.1).
    B2,
    /// Register before inviting, so that meetings do not overlap (Art. 5.2).
    B3,
    /// Invitations only for confirmed registrations: the booking workflow (Art. 5.2).
    B4,
    /// Emergency meetings (Art. 5.3).
    B5,
    /// Preparation time and official time (Art. 6.1a, b).
    P1,
    /// Only the control center connects sites (Art. 7.2c).
    C6,
    /// Costs and payers (Art. 8).
    F1,
    /// Technician roster of each site (Art. 10).
    S3,
    /// Confidentiality towards the line provider (Art. 12).
    L3,
}

impl RuleId {
    /// The id as written in the regulation's requirement list, e.g. `"B1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::A1 => "A1",
            RuleId::B1 => "B1",
            RuleId::B2 => "B2",
            RuleId::B3 => "B3",
            RuleId::B4 => "B4",
            RuleId::B5 => "B5",
            RuleId::P1 => "P1",
            RuleId::C6 => "C6",
            RuleId::F1 => "F1",
            RuleId::S3 => "S3",
            RuleId::L3 => "L3",
        }
    }

    /// The article (and clause) of Decision 561 the rule comes from, e.g. `"5.1"`.
    pub fn article(self) -> &'static str {
        match self {
            RuleId::A1 => "3",
            RuleId::B1 | RuleId::B2 => "5.1",
            RuleId::B3 | RuleId::B4 => "5.2",
            RuleId::B5 => "5.3",
            RuleId::P1 => "6.1",
            RuleId::C6 => "7.2c",
            RuleId::F1 => "8",
            RuleId::S3 => "10",
            RuleId::L3 => "12",
        }
    }

    /// The article in English citation form, e.g. `"Art. 5.1"`.
    pub fn article_en(self) -> String {
        format!("Art. {}", self.article())
    }

    /// The article in Vietnamese citation form, e.g. `"khoản 1 Điều 5"`.
    pub fn article_vi(self) -> &'static str {
        match self {
            RuleId::A1 => "Điều 3",
            RuleId::B1 | RuleId::B2 => "khoản 1 Điều 5",
            RuleId::B3 | RuleId::B4 => "khoản 2 Điều 5",
            RuleId::B5 => "khoản 3 Điều 5",
            RuleId::P1 => "khoản 1 Điều 6",
            RuleId::C6 => "điểm c khoản 2 Điều 7",
            RuleId::F1 => "Điều 8",
            RuleId::S3 => "Điều 10",
            RuleId::L3 => "Điều 12",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's verdict against an action or a state: returned as `Err` it is a refusal, listed it
/// is a flag. Always cites the requirement and the article, in English and Vietnamese.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Requirement id, e.g. [`RuleId::B1`].
    pub rule: RuleId,
    /// Article of Decision 561, e.g. `"5.1"`.
    pub article: &'static str,
    /// Stable snake_case code for API clients and tests, e.g. `"lead_time"`.
    pub code: &'static str,
    /// Explanation in English (API, logs).
    pub en: String,
    /// Explanation in Vietnamese (UI).
    pub vi: String,
}

impl Violation {
    /// A violation of `rule`, citing the rule's article.
    pub fn new(
        rule: RuleId,
        code: &'static str,
        en: impl Into<String>,
        vi: impl Into<String>,
    ) -> Self {
        Violation {
            rule,
            article: rule.article(),
            code,
            en: en.into(),
            vi: vi.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, Art. {}] {}", self.rule, self.article, self.en)
    }
}

impl std::error::Error for Violation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_cites_rule_and_article() {
        let v = Violation::new(RuleId::B1, "lead_time", "too late", "quá muộn");
        assert_eq!(v.article, "5.1");
        assert_eq!(v.to_string(), "[B1, Art. 5.1] too late");
    }
}
