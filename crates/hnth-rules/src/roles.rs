//! A1 (Art. 3): who may do what, where. The provincial People's Committee manages the whole
//! system and delegates each site's activity to that site's unit.
//!
//! * Administrators and control-center operators act on everything; their accounts are
//!   province-wide, so their scope is not consulted.
//! * A site's users (site technician, local chair, the site's device) act only on their site
//!   and need a [`Scope::Site`].
//! * A department's organizer registers and sees its own unit's bookings and needs a
//!   [`Scope::Unit`].
//! * Leadership only reads, within its scope.
//! * A line provider technician sees bookings and line status but never meeting content (L3,
//!   Art. 12); its scope is the province or one site.
//! * A site device joins only as its own site and never dials (C6, Art. 7.2c).
//! * Everyone may read the technician directory (S1, Art. 9).
//! * Nobody grants a role above its own or acts on an account above its own ([`rank`],
//!   [`may_grant`], [`may_act_on`]): an operator manages accounts, but not the administrators'.
//!
//! A user whose scope does not fit the role gets only what everyone gets.

use crate::booking::SiteId;
use crate::{RuleId, Violation};
use serde::{Deserialize, Serialize};

/// Database id of a unit (department, district People's Committee, ...).
pub type UnitId = i64;

labelled_enum! {
    /// What a user account is for.
    pub enum Role {
        Admin => "admin", "Administrator", "Quản trị hệ thống";
        Operator => "operator", "Control-center operator", "Cán bộ điều hành Trung tâm điều khiển";
        SiteTechnician => "site_technician", "Site technician", "Cán bộ kỹ thuật điểm cầu";
        Organizer => "organizer", "Organizer (host unit)", "Cán bộ đơn vị chủ trì";
        Chair => "chair", "Chair", "Chủ trì cuộc họp";
        ProviderTechnician => "provider_technician", "Line provider technician", "Cán bộ kỹ thuật đơn vị cung cấp đường truyền";
        Leadership => "leadership", "Leadership (read-only)", "Lãnh đạo (chỉ xem)";
        SiteDevice => "site_device", "Site device", "Thiết bị điểm cầu";
    }
}

/// Where an account acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Scope {
    Province,
    Site(SiteId),
    Unit(UnitId),
}

/// Something a user asks to do, with what it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    ManageAccounts,
    ManageSites,
    /// A3: configuration parameters change only through control-center roles.
    EditConfiguration,
    ViewAudit,
    /// R1: yearly and other reports.
    ViewReports,
    /// Register a booking hosted by `unit`.
    RegisterBooking {
        unit: UnitId,
    },
    /// Approve or reject bookings.
    ApproveBooking,
    /// See a booking hosted by `unit` at `sites`.
    ViewBooking {
        unit: UnitId,
        sites: &'a [SiteId],
    },
    OpenMeeting,
    /// C6: connect a site to a meeting.
    DialSite,
    /// C3, C4: give or take the floor in a meeting hosted at `host_site`.
    ControlFloor {
        host_site: SiteId,
    },
    /// C8: ask for the floor for `site`.
    RequestFloor {
        site: SiteId,
    },
    /// C3: pass a site's speak request on to the chair.
    PassSpeakRequest,
    /// C1, P3: set the meeting's frame (layout, who is where) and its technical parameters.
    SetFrame,
    /// Report the delegates present and absent at `site` (roll call).
    ReportAttendance {
        site: SiteId,
    },
    JoinMeetingAsSite {
        site: SiteId,
    },
    EditRoster {
        site: SiteId,
    },
    ViewRoster,
    /// P4, O1, O2: the site's checklists.
    EditSiteChecklist {
        site: SiteId,
    },
    /// C7: incident records.
    RecordIncident {
        site: SiteId,
    },
    /// C2, L1: link quality.
    ViewLineStatus {
        site: SiteId,
    },
    /// Live media and recordings of a meeting hosted by `unit` at `sites`.
    ViewMeetingContent {
        unit: UnitId,
        sites: &'a [SiteId],
    },
}

impl Action<'_> {
    /// Whether the action only reads.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Action::ViewAudit
                | Action::ViewReports
                | Action::ViewBooking { .. }
                | Action::ViewRoster
                | Action::ViewLineStatus { .. }
                | Action::ViewMeetingContent { .. }
        )
    }

    /// Whether `scope` covers what the action concerns: the province covers everything, a site
    /// covers actions on or involving it, a unit covers its own bookings and meetings.
    fn covered_by(&self, scope: Scope) -> bool {
        use Action as A;
        let (unit, sites): (Option<UnitId>, &[SiteId]) = match self {
            A::ViewBooking { unit, sites } | A::ViewMeetingContent { unit, sites } => {
                (Some(*unit), sites)
            }
            A::RegisterBooking { unit } => (Some(*unit), &[]),
            A::ControlFloor { host_site: site }
            | A::RequestFloor { site }
            | A::ReportAttendance { site }
            | A::JoinMeetingAsSite { site }
            | A::EditRoster { site }
            | A::EditSiteChecklist { site }
            | A::RecordIncident { site }
            | A::ViewLineStatus { site } => (None, std::slice::from_ref(site)),
            _ => (None, &[]),
        };
        match scope {
            Scope::Province => true,
            Scope::Site(s) => sites.contains(&s),
            Scope::Unit(u) => unit == Some(u),
        }
    }

    /// English phrase, e.g. `"connect sites"`.
    pub fn label_en(&self) -> &'static str {
        self.labels().0
    }

    /// Vietnamese phrase, e.g. `"kết nối các điểm cầu"`.
    pub fn label_vi(&self) -> &'static str {
        self.labels().1
    }

    fn labels(&self) -> (&'static str, &'static str) {
        use Action as A;
        match self {
            A::ManageAccounts => ("manage accounts", "quản lý tài khoản"),
            A::ManageSites => ("manage sites", "quản lý điểm cầu"),
            A::EditConfiguration => (
                "change configuration parameters",
                "thay đổi tham số cấu hình",
            ),
            A::ViewAudit => ("view the audit trail", "xem nhật ký thay đổi"),
            A::ViewReports => ("view reports", "xem báo cáo"),
            A::RegisterBooking { .. } => (
                "register a meeting for this unit",
                "đăng ký họp cho đơn vị này",
            ),
            A::ApproveBooking => (
                "approve or reject bookings",
                "duyệt hoặc từ chối đăng ký họp",
            ),
            A::ViewBooking { .. } => ("view this booking", "xem đăng ký họp này"),
            A::OpenMeeting => ("open a meeting", "mở cuộc họp"),
            A::DialSite => ("connect sites", "kết nối các điểm cầu"),
            A::ControlFloor { .. } => (
                "give or take the floor",
                "cho phép hoặc thu hồi quyền phát biểu",
            ),
            A::RequestFloor { .. } => (
                "request the floor for this site",
                "đăng ký phát biểu cho điểm cầu này",
            ),
            A::PassSpeakRequest => (
                "pass speak requests on to the chair",
                "chuyển đăng ký phát biểu đến chủ trì",
            ),
            A::SetFrame => (
                "set the meeting's frame and technical parameters",
                "thay đổi khung hình và thông số kỹ thuật của cuộc họp",
            ),
            A::ReportAttendance { .. } => (
                "report this site's attendance",
                "báo cáo thành phần dự họp của điểm cầu này",
            ),
            A::JoinMeetingAsSite { .. } => (
                "join the meeting as this site",
                "tham gia cuộc họp với tư cách điểm cầu này",
            ),
            A::EditRoster { .. } => (
                "edit this site's technician roster",
                "sửa danh sách cán bộ kỹ thuật của điểm cầu này",
            ),
            A::ViewRoster => (
                "view the technician directory",
                "xem danh bạ cán bộ kỹ thuật",
            ),
            A::EditSiteChecklist { .. } => (
                "fill in this site's checklists",
                "điền các bảng kiểm tra của điểm cầu này",
            ),
            A::RecordIncident { .. } => (
                "record an incident at this site",
                "ghi nhận sự cố tại điểm cầu này",
            ),
            A::ViewLineStatus { .. } => (
                "view this site's line status",
                "xem trạng thái đường truyền của điểm cầu này",
            ),
            A::ViewMeetingContent { .. } => ("view the meeting's content", "xem nội dung cuộc họp"),
        }
    }
}

/// Whether `role` fits `scope` (see the module documentation).
fn scope_fits(role: Role, scope: Scope) -> bool {
    match role {
        Role::Admin | Role::Operator | Role::Leadership => true,
        Role::SiteTechnician | Role::Chair | Role::SiteDevice => matches!(scope, Scope::Site(_)),
        Role::Organizer => matches!(scope, Scope::Unit(_)),
        Role::ProviderTechnician => matches!(scope, Scope::Province | Scope::Site(_)),
    }
}

/// A1: whether a user with `role` and `scope` may take `action`.
pub fn allowed(role: Role, scope: Scope, action: &Action<'_>) -> bool {
    use Action as A;
    if matches!(role, Role::Admin | Role::Operator) || matches!(action, A::ViewRoster) {
        return true;
    }
    if !scope_fits(role, scope) || !action.covered_by(scope) {
        return false;
    }
    match role {
        Role::Admin | Role::Operator => true,
        Role::Leadership => action.is_read_only(),
        Role::Organizer => {
            matches!(
                action,
                A::RegisterBooking { .. } | A::ViewBooking { .. } | A::ViewMeetingContent { .. }
            )
        }
        Role::SiteTechnician => matches!(
            action,
            A::ViewBooking { .. }
                | A::ViewMeetingContent { .. }
                | A::RequestFloor { .. }
                | A::ReportAttendance { .. }
                | A::JoinMeetingAsSite { .. }
                | A::EditRoster { .. }
                | A::EditSiteChecklist { .. }
                | A::RecordIncident { .. }
                | A::ViewLineStatus { .. }
        ),
        Role::Chair => matches!(
            action,
            A::ViewBooking { .. }
                | A::ViewMeetingContent { .. }
                | A::RequestFloor { .. }
                | A::ControlFloor { .. }
        ),
        Role::ProviderTechnician => {
            matches!(
                action,
                A::ViewBooking { .. } | A::ViewLineStatus { .. } | A::RecordIncident { .. }
            )
        }
        Role::SiteDevice => matches!(
            action,
            A::ViewBooking { .. }
                | A::ViewMeetingContent { .. }
                | A::RequestFloor { .. }
                | A::ReportAttendance { .. }
                | A::JoinMeetingAsSite { .. }
        ),
    }
}

/// [`allowed`], or the refusal citing the most specific rule: C6 (Art. 7.2c) for dialing, C4
/// (7.2a) for the floor, C8 (7.2đ) for speak requests, C3 (7.1c) for passing them on, C1 (7.1a)
/// for the frame,
/// L3 (Art. 12) for a provider technician asking for meeting content, otherwise A1 (Art. 3).
pub fn authorize(role: Role, scope: Scope, action: &Action<'_>) -> Result<(), Violation> {
    if allowed(role, scope, action) {
        return Ok(());
    }
    let rule = match (role, action) {
        (_, Action::DialSite) => RuleId::C6,
        (_, Action::ControlFloor { .. }) => RuleId::C4,
        (_, Action::RequestFloor { .. }) => RuleId::C8,
        (_, Action::PassSpeakRequest) => RuleId::C3,
        (_, Action::SetFrame) => RuleId::C1,
        (Role::ProviderTechnician, Action::ViewMeetingContent { .. }) => RuleId::L3,
        _ => RuleId::A1,
    };
    Err(Violation::new(
        rule,
        "not_permitted",
        format!(
            "The {} role may not {} here ({}).",
            role.label_en(),
            action.label_en(),
            rule.article_en()
        ),
        format!(
            "Vai trò {} không được {} trong phạm vi này ({}).",
            role.label_vi(),
            action.label_vi(),
            rule.article_vi()
        ),
    ))
}

/// How far a role reaches, for account administration (A1): administrators above the
/// control-center operators, operators above every other role; the other roles act only within
/// a site, a unit or read-only and stand level with each other.
pub fn rank(role: Role) -> u8 {
    match role {
        Role::Admin => 3,
        Role::Operator => 2,
        Role::SiteTechnician
        | Role::Organizer
        | Role::Chair
        | Role::ProviderTechnician
        | Role::Leadership
        | Role::SiteDevice => 1,
    }
}

/// A1: an account never grants a role above its own (creating an account with `role`).
pub fn may_grant(actor: Role, role: Role) -> Result<(), Violation> {
    not_above(actor, role, "role_above_own", ("grant the", "cấp vai trò"))
}

/// A1: an account never acts on (unlocks, disables, enables, sets the password of) an account
/// whose role is above its own.
pub fn may_act_on(actor: Role, target: Role) -> Result<(), Violation> {
    not_above(
        actor,
        target,
        "account_above_own",
        (
            "act on an account with the",
            "thao tác trên tài khoản có vai trò",
        ),
    )
}

/// Whether `other` is at or below `actor`'s [`rank`]; otherwise the refusal, which says what
/// `actor` tried (`what`: English before "… role", Vietnamese before the role's label).
fn not_above(
    actor: Role,
    other: Role,
    code: &'static str,
    (what_en, what_vi): (&str, &str),
) -> Result<(), Violation> {
    if rank(other) <= rank(actor) {
        return Ok(());
    }
    let rule = RuleId::A1;
    Err(Violation::new(
        rule,
        code,
        format!(
            "The {} role may not {what_en} {} role, which is above its own ({}).",
            actor.label_en(),
            other.label_en(),
            rule.article_en()
        ),
        format!(
            "Vai trò {} không được {what_vi} {}, là vai trò cao hơn vai trò của mình ({}).",
            actor.label_vi(),
            other.label_vi(),
            rule.article_vi()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;

    /// Rows: the acting role; columns: the role granted or acted on, both in [`Role::ALL`] order
    /// (admin, operator, site_technician, organizer, chair, provider_technician, leadership,
    /// site_device). `Y`: allowed, `.`: refused.
    #[test]
    fn grant_and_act_on_every_role_pair() {
        let table = [
            ("admin", "YYYYYYYY"),
            ("operator", ".YYYYYYY"),
            ("site_technician", "..YYYYYY"),
            ("organizer", "..YYYYYY"),
            ("chair", "..YYYYYY"),
            ("provider_technician", "..YYYYYY"),
            ("leadership", "..YYYYYY"),
            ("site_device", "..YYYYYY"),
        ];
        assert_eq!(table.len(), Role::ALL.len());
        for (actor, row) in table {
            let actor = Role::parse(actor).unwrap();
            assert_eq!(row.len(), Role::ALL.len());
            for (other, want) in Role::ALL.iter().zip(row.chars()) {
                let want = want == 'Y';
                for (what, got) in [
                    ("grant", may_grant(actor, *other)),
                    ("act on", may_act_on(actor, *other)),
                ] {
                    assert_eq!(got.is_ok(), want, "{actor} {what} {other}");
                    if let Err(v) = got {
                        assert_eq!((v.rule, v.article), (RuleId::A1, "3"), "{actor} {other}");
                        assert!(v.vi.ends_with("(Điều 3)."), "{}", v.vi);
                        assert!(v.en.ends_with("(Art. 3)."), "{}", v.en);
                    }
                }
            }
        }
    }

    #[test]
    fn escalation_refusals_name_both_roles() {
        let v = may_grant(Role::Operator, Role::Admin).unwrap_err();
        assert_eq!(v.code, "role_above_own");
        assert_eq!(
            v.en,
            "The Control-center operator role may not grant the Administrator role, which is above its own (Art. 3)."
        );
        assert_eq!(
            v.vi,
            "Vai trò Cán bộ điều hành Trung tâm điều khiển không được cấp vai trò Quản trị hệ thống, là vai trò cao hơn vai trò của mình (Điều 3)."
        );
        let v = may_act_on(Role::Operator, Role::Admin).unwrap_err();
        assert_eq!(v.code, "account_above_own");
        assert_eq!(
            v.vi,
            "Vai trò Cán bộ điều hành Trung tâm điều khiển không được thao tác trên tài khoản có vai trò Quản trị hệ thống, là vai trò cao hơn vai trò của mình (Điều 3)."
        );
    }

    const SCOPES: [(&str, Scope); 5] = [
        ("P", Scope::Province),
        ("S1", Scope::Site(1)),
        ("S2", Scope::Site(2)),
        ("U1", Scope::Unit(1)),
        ("U2", Scope::Unit(2)),
    ];

    /// `expected` lists `role:scopes` pairs, scopes being `*` or a comma list of the labels of
    /// [`SCOPES`]; every role and scope not listed is refused. Actions concern site 1 and unit 1.
    #[test]
    fn role_scope_matrix() {
        let sites: &[SiteId] = &[1, 3];
        let control_center = "admin:* operator:*";
        let matrix: [(A<'_>, &str); 22] = [
            (A::ManageAccounts, control_center),
            (A::ManageSites, control_center),
            (A::EditConfiguration, control_center),
            (A::ViewAudit, "admin:* operator:* leadership:P"),
            (A::ViewReports, "admin:* operator:* leadership:P"),
            (A::RegisterBooking { unit: 1 }, "admin:* operator:* organizer:U1"),
            (A::ApproveBooking, control_center),
            (
                A::ViewBooking { unit: 1, sites },
                "admin:* operator:* leadership:P,S1,U1 organizer:U1 site_technician:S1 chair:S1 \
                 site_device:S1 provider_technician:P,S1",
            ),
            (A::OpenMeeting, control_center),
            (A::DialSite, control_center),
            (A::ControlFloor { host_site: 1 }, "admin:* operator:* chair:S1"),
            (A::RequestFloor { site: 1 }, "admin:* operator:* site_technician:S1 chair:S1 site_device:S1"),
            (A::PassSpeakRequest, control_center),
            (A::SetFrame, control_center),
            (A::ReportAttendance { site: 1 }, "admin:* operator:* site_technician:S1 site_device:S1"),
            (A::JoinMeetingAsSite { site: 1 }, "admin:* operator:* site_technician:S1 site_device:S1"),
            (A::EditRoster { site: 1 }, "admin:* operator:* site_technician:S1"),
            (
                A::ViewRoster,
                "admin:* operator:* site_technician:* organizer:* chair:* provider_technician:* \
                 leadership:* site_device:*",
            ),
            (A::EditSiteChecklist { site: 1 }, "admin:* operator:* site_technician:S1"),
            (A::RecordIncident { site: 1 }, "admin:* operator:* site_technician:S1 provider_technician:P,S1"),
            (
                A::ViewLineStatus { site: 1 },
                "admin:* operator:* leadership:P,S1 site_technician:S1 provider_technician:P,S1",
            ),
            (
                A::ViewMeetingContent { unit: 1, sites },
                "admin:* operator:* leadership:P,S1,U1 organizer:U1 site_technician:S1 chair:S1 site_device:S1",
            ),
        ];
        for (action, expected) in matrix {
            let grants: Vec<(Role, &str)> = expected
                .split_whitespace()
                .map(|pair| {
                    let (role, scopes) = pair.split_once(':').unwrap();
                    (
                        Role::parse(role).unwrap_or_else(|| panic!("unknown role {role}")),
                        scopes,
                    )
                })
                .collect();
            for role in Role::ALL {
                let scopes = grants
                    .iter()
                    .find(|(r, _)| r == role)
                    .map_or("", |(_, s)| *s);
                for (label, scope) in SCOPES {
                    let want = scopes == "*" || scopes.split(',').any(|s| s == label);
                    assert_eq!(
                        allowed(*role, scope, &action),
                        want,
                        "{role} in {label}: {action:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn leadership_never_writes() {
        let writes = [
            A::ManageAccounts,
            A::EditConfiguration,
            A::ApproveBooking,
            A::DialSite,
            A::EditRoster { site: 1 },
        ];
        for action in writes {
            assert!(!action.is_read_only());
            for (_, scope) in SCOPES {
                assert!(!allowed(Role::Leadership, scope, &action), "{action:?}");
            }
        }
    }

    #[test]
    fn refusals_cite_the_specific_rule() {
        let cases = [
            (
                Role::SiteDevice,
                Scope::Site(1),
                A::DialSite,
                RuleId::C6,
                "7.2c",
            ),
            (
                Role::SiteTechnician,
                Scope::Site(1),
                A::DialSite,
                RuleId::C6,
                "7.2c",
            ),
            (
                Role::ProviderTechnician,
                Scope::Province,
                A::ViewMeetingContent {
                    unit: 1,
                    sites: &[1],
                },
                RuleId::L3,
                "12",
            ),
            (
                Role::Organizer,
                Scope::Unit(2),
                A::RegisterBooking { unit: 1 },
                RuleId::A1,
                "3",
            ),
            (
                Role::SiteDevice,
                Scope::Site(2),
                A::JoinMeetingAsSite { site: 1 },
                RuleId::A1,
                "3",
            ),
        ];
        for (role, scope, action, rule, article) in cases {
            let v = authorize(role, scope, &action).unwrap_err();
            assert_eq!(
                (v.rule, v.article, v.code),
                (rule, article, "not_permitted"),
                "{role} {action:?}"
            );
        }
        let v = authorize(Role::SiteDevice, Scope::Site(1), &A::DialSite).unwrap_err();
        assert_eq!(
            v.en,
            "The Site device role may not connect sites here (Art. 7.2c)."
        );
        assert_eq!(v.vi, "Vai trò Thiết bị điểm cầu không được kết nối các điểm cầu trong phạm vi này (điểm c khoản 2 Điều 7).");
        assert_eq!(
            authorize(Role::Operator, Scope::Province, &A::DialSite),
            Ok(())
        );
    }

    #[test]
    fn role_codes_round_trip() {
        let codes: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "admin",
                "operator",
                "site_technician",
                "organizer",
                "chair",
                "provider_technician",
                "leadership",
                "site_device"
            ]
        );
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(*role));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::Chair.label_vi(), "Chủ trì cuộc họp");
    }
}
