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
//! * [`meeting`]: the meeting during its course: the floor (C4), speak requests (C8, C3),
//!   frames and technical parameters (C1, P3), roll call;
//! * [`notice`]: until when each kind of e-mail notice still serves (B2, B5, P1);
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
pub mod meeting;
pub mod notice;
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
    /// The control center sets the frames every site shows (Art. 7.1a).
    C1,
    /// The control center passes speak requests to the chair (Art. 7.1c).
    C3,
    /// A site's microphone is on only when the chair calls on it (Art. 7.2a).
    C4,
    /// Only the control center connects sites (Art. 7.2c).
    C6,
    /// Speak requests come from the site's technician (Art. 7.2đ).
    C8,
    /// The control center sets the meeting's technical parameters (Art. 6.1d).
    P3,
    /// Costs and payers (Art. 8).
    F1,
    /// Technician roster of each site (Art. 10).
    S3,
    /// Confidentiality towards the line provider (Art. 12).
    L3,
}

impl RuleId {
    /// Every rule id, in declaration order.
    pub const ALL: &'static [RuleId] = &[
        RuleId::A1,
        RuleId::B1,
        RuleId::B2,
        RuleId::B3,
        RuleId::B4,
        RuleId::B5,
        RuleId::P1,
        RuleId::P3,
        RuleId::C1,
        RuleId::C3,
        RuleId::C4,
        RuleId::C6,
        RuleId::C8,
        RuleId::F1,
        RuleId::S3,
        RuleId::L3,
    ];

    /// The rule whose id is `s` (e.g. a violation's `rule` column).
    pub fn parse(s: &str) -> Option<RuleId> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// What the rule asks, in English, e.g. `"Only the control center connects sites"`.
    pub fn title_en(self) -> &'static str {
        self.titles().0
    }

    /// What the rule asks, in Vietnamese (UI: the violation report of R4).
    pub fn title_vi(self) -> &'static str {
        self.titles().1
    }

    fn titles(self) -> (&'static str, &'static str) {
        match self {
            RuleId::A1 => ("Roles and scopes", "Phân quyền theo vai trò và phạm vi"),
            RuleId::B1 => (
                "Registration at least five days ahead",
                "Đăng ký họp trước ít nhất 5 ngày",
            ),
            RuleId::B2 => (
                "Line provider notified two days ahead",
                "Thông báo đơn vị cung cấp đường truyền trước 2 ngày",
            ),
            RuleId::B3 => (
                "Register before inviting, without overlaps",
                "Đăng ký trước khi phát hành giấy mời, tránh trùng lịch",
            ),
            RuleId::B4 => (
                "Invitations only for confirmed registrations",
                "Chỉ mời họp khi đăng ký đã được phê duyệt",
            ),
            RuleId::B5 => ("Emergency meetings", "Họp đột xuất, khẩn cấp"),
            RuleId::P1 => (
                "Preparation time and official time",
                "Thông báo thời gian chuẩn bị và thời gian họp chính thức",
            ),
            RuleId::P3 => (
                "The control center sets the meeting's technical parameters",
                "Trung tâm điều khiển thiết lập thông số kỹ thuật của cuộc họp",
            ),
            RuleId::C1 => (
                "The control center sets the frames every site shows",
                "Trung tâm điều khiển thay đổi khung hình hiển thị",
            ),
            RuleId::C3 => (
                "The control center passes speak requests to the chair",
                "Trung tâm điều khiển chuyển đăng ký phát biểu đến chủ trì",
            ),
            RuleId::C4 => (
                "A site's microphone is on only when the chair calls on it",
                "Điểm cầu chỉ mở micro khi chủ trì mời phát biểu",
            ),
            RuleId::C6 => (
                "Only the control center connects sites",
                "Chỉ Trung tâm điều khiển kết nối các điểm cầu",
            ),
            RuleId::C8 => (
                "Speak requests come from the site's technician",
                "Cán bộ kỹ thuật điểm cầu gửi đăng ký phát biểu về Trung tâm điều khiển",
            ),
            RuleId::F1 => ("Costs and payers", "Kinh phí và đơn vị chi trả"),
            RuleId::S3 => (
                "Technician roster of each site",
                "Cán bộ kỹ thuật của điểm cầu",
            ),
            RuleId::L3 => (
                "Confidentiality towards the line provider",
                "Bảo mật nội dung cuộc họp với đơn vị cung cấp đường truyền",
            ),
        }
    }

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
            RuleId::P3 => "P3",
            RuleId::C1 => "C1",
            RuleId::C3 => "C3",
            RuleId::C4 => "C4",
            RuleId::C6 => "C6",
            RuleId::C8 => "C8",
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
            RuleId::P3 => "6.1d",
            RuleId::C1 => "7.1a",
            RuleId::C3 => "7.1c",
            RuleId::C4 => "7.2a",
            RuleId::C6 => "7.2c",
            RuleId::C8 => "7.2đ",
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
            RuleId::P3 => "điểm d khoản 1 Điều 6",
            RuleId::C1 => "điểm a khoản 1 Điều 7",
            RuleId::C3 => "điểm c khoản 1 Điều 7",
            RuleId::C4 => "điểm a khoản 2 Điều 7",
            RuleId::C6 => "điểm c khoản 2 Điều 7",
            RuleId::C8 => "điểm đ khoản 2 Điều 7",
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
    fn rule_ids_round_trip_with_titles() {
        for rule in RuleId::ALL {
            assert_eq!(RuleId::parse(rule.as_str()), Some(*rule));
            assert!(!rule.title_en().is_empty() && !rule.title_vi().is_empty());
        }
        assert_eq!(RuleId::parse("c6"), None);
        assert_eq!(RuleId::parse("R4"), None);
        assert_eq!(
            RuleId::C6.title_vi(),
            "Chỉ Trung tâm điều khiển kết nối các điểm cầu"
        );
    }

    #[test]
    fn violation_cites_rule_and_article() {
        let v = Violation::new(RuleId::B1, "lead_time", "too late", "quá muộn");
        assert_eq!(v.article, "5.1");
        assert_eq!(v.to_string(), "[B1, Art. 5.1] too late");
    }
}
