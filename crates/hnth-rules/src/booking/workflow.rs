//! The booking workflow (B4, Art. 5.2: invitations only for confirmed registrations):
//!
//! ```text
//! Draft --Submit--> Submitted --Approve--> Approved --MarkHeld--> Held --Close--> Closed
//!                   Submitted --Reject---> Rejected
//! Draft | Submitted | Approved --Cancel--> Cancelled
//! Edit keeps Draft and Submitted as they are and sends Approved back to Submitted.
//! ```
//!
//! Rejected, Closed and Cancelled are final. Whenever the result is `Submitted` the caller runs
//! [`super::check_submission`] and [`super::find_conflicts`] again. Approving also asks
//! [`check_approver`]: by default the registrant does not approve its own booking.

use super::{BookingStatus, Settings};
use crate::roles::Role;
use crate::{RuleId, Violation};
use serde::{Deserialize, Serialize};

/// What someone does to a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Submit,
    Approve,
    Reject { reason: String },
    Cancel { reason: String },
    MarkHeld,
    Close,
    Edit,
}

impl Action {
    /// English verb, e.g. `"approve"`.
    pub fn label_en(&self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Approve => "approve",
            Action::Reject { .. } => "reject",
            Action::Cancel { .. } => "cancel",
            Action::MarkHeld => "start",
            Action::Close => "close",
            Action::Edit => "edit",
        }
    }

    /// Vietnamese verb, e.g. `"duyệt"`.
    pub fn label_vi(&self) -> &'static str {
        match self {
            Action::Submit => "gửi",
            Action::Approve => "duyệt",
            Action::Reject { .. } => "từ chối",
            Action::Cancel { .. } => "hủy",
            Action::MarkHeld => "bắt đầu họp",
            Action::Close => "kết thúc họp",
            Action::Edit => "sửa",
        }
    }

    /// Whether `role` may take this action at all. Organizers register, edit and cancel;
    /// approving, rejecting, opening and closing are the control center's (administrators and
    /// operators). Which unit's bookings an organizer may touch is [`crate::roles::allowed`]'s.
    pub fn permitted_to(&self, role: Role) -> bool {
        match self {
            Action::Submit | Action::Edit | Action::Cancel { .. } => {
                matches!(role, Role::Admin | Role::Operator | Role::Organizer)
            }
            Action::Approve | Action::Reject { .. } | Action::MarkHeld | Action::Close => {
                matches!(role, Role::Admin | Role::Operator)
            }
        }
    }
}

/// The status a booking in status `from` reaches through `action` taken by `actor`, or the
/// refusal: A1 for a role that may not act, B4 for an action the status does not allow or a
/// rejection or cancellation without a reason.
pub fn transition(
    from: BookingStatus,
    action: &Action,
    actor: Role,
) -> Result<BookingStatus, Violation> {
    use BookingStatus::*;
    if !action.permitted_to(actor) {
        let rule = RuleId::A1;
        return Err(Violation::new(
            rule,
            "role_not_allowed",
            format!(
                "The {} role may not {} a booking ({}).",
                actor.label_en(),
                action.label_en(),
                rule.article_en()
            ),
            format!(
                "Vai trò {} không được thực hiện thao tác \"{}\" với đăng ký họp ({}).",
                actor.label_vi(),
                action.label_vi(),
                rule.article_vi()
            ),
        ));
    }
    let rule = RuleId::B4;
    let to = match (from, action) {
        (Draft, Action::Submit) => Submitted,
        (Draft | Submitted, Action::Edit) => from,
        (Approved, Action::Edit) => Submitted,
        (Submitted, Action::Approve) => Approved,
        (Submitted, Action::Reject { .. }) => Rejected,
        (Draft | Submitted | Approved, Action::Cancel { .. }) => Cancelled,
        (Approved, Action::MarkHeld) => Held,
        (Held, Action::Close) => Closed,
        _ => {
            return Err(Violation::new(
                rule,
                "invalid_transition",
                format!(
                    "Cannot {} a booking that is {} ({}).",
                    action.label_en(),
                    from.label_en().to_lowercase(),
                    rule.article_en()
                ),
                format!(
                    "Không thể thực hiện thao tác \"{}\" với đăng ký họp ở trạng thái \"{}\" ({}).",
                    action.label_vi(),
                    from.label_vi(),
                    rule.article_vi()
                ),
            ))
        }
    };
    if let Action::Reject { reason } | Action::Cancel { reason } = action {
        if reason.trim().is_empty() {
            return Err(Violation::new(
                rule,
                "reason_required",
                format!(
                    "A reason is required to {} a booking ({}).",
                    action.label_en(),
                    rule.article_en()
                ),
                format!(
                    "Phải nêu lý do khi {} đăng ký họp ({}).",
                    action.label_vi(),
                    rule.article_vi()
                ),
            ));
        }
    }
    Ok(to)
}

/// Separation of duties, the interpretation of A1 (Art. 3) chosen for approvals: with
/// `settings.separate_approval` (the default) the account that registered a booking
/// (`registrant`, the database id of an account; `None` when unknown) does not approve it;
/// another control-center account does.
pub fn check_approver(
    registrant: Option<i64>,
    approver: i64,
    settings: &Settings,
) -> Result<(), Violation> {
    if !settings.separate_approval || registrant != Some(approver) {
        return Ok(());
    }
    let rule = RuleId::A1;
    Err(Violation::new(
        rule,
        "self_approval",
        format!(
            "Whoever registered a booking may not approve it; another control-center account \
             approves it, to separate the duties (setting booking.separate_approval; {}).",
            rule.article_en()
        ),
        format!(
            "Người đăng ký cuộc họp không được tự phê duyệt đăng ký của mình; việc phê duyệt do \
             một cán bộ khác của Trung tâm điều khiển thực hiện để tách biệt nhiệm vụ ({}).",
            rule.article_vi()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use BookingStatus::*;

    #[test]
    fn registrant_approves_only_when_separation_is_off() {
        let on = Settings::default();
        assert!(on.separate_approval, "separation of duties is the default");
        let off = Settings {
            separate_approval: false,
            ..Settings::default()
        };
        let cases = [
            (Some(7), 7, &on, false),
            (Some(7), 8, &on, true),
            (None, 7, &on, true),
            (Some(7), 7, &off, true),
            (Some(7), 8, &off, true),
        ];
        for (registrant, approver, settings, ok) in cases {
            let got = check_approver(registrant, approver, settings);
            assert_eq!(got.is_ok(), ok, "{registrant:?} by {approver}");
        }
        let v = check_approver(Some(7), 7, &on).unwrap_err();
        assert_eq!((v.rule, v.code), (RuleId::A1, "self_approval"));
        assert!(
            v.vi.contains("tự phê duyệt") && v.vi.ends_with("tách biệt nhiệm vụ (Điều 3)."),
            "{}",
            v.vi
        );
    }

    fn reject(reason: &str) -> Action {
        Action::Reject {
            reason: reason.into(),
        }
    }

    fn cancel(reason: &str) -> Action {
        Action::Cancel {
            reason: reason.into(),
        }
    }

    #[test]
    fn every_status_and_action() {
        use Action as A;
        let actions = [
            A::Submit,
            A::Approve,
            reject("trùng lịch"),
            cancel("hoãn"),
            A::MarkHeld,
            A::Close,
            A::Edit,
        ];
        // Result of each action above (in order) from each status, as an operator; "-" refused.
        let table: [(BookingStatus, [&str; 7]); 7] = [
            (
                Draft,
                ["submitted", "-", "-", "cancelled", "-", "-", "draft"],
            ),
            (
                Submitted,
                [
                    "-",
                    "approved",
                    "rejected",
                    "cancelled",
                    "-",
                    "-",
                    "submitted",
                ],
            ),
            (
                Approved,
                ["-", "-", "-", "cancelled", "held", "-", "submitted"],
            ),
            (Rejected, ["-", "-", "-", "-", "-", "-", "-"]),
            (Held, ["-", "-", "-", "-", "-", "closed", "-"]),
            (Closed, ["-", "-", "-", "-", "-", "-", "-"]),
            (Cancelled, ["-", "-", "-", "-", "-", "-", "-"]),
        ];
        for (from, row) in table {
            for (action, expected) in actions.iter().zip(row) {
                let got = match transition(from, action, Role::Operator) {
                    Ok(to) => to.as_str(),
                    Err(v) => {
                        assert_eq!(
                            (v.rule, v.article, v.code),
                            (RuleId::B4, "5.2", "invalid_transition")
                        );
                        "-"
                    }
                };
                assert_eq!(got, expected, "{from} --{}-->", action.label_en());
            }
        }
    }

    #[test]
    fn reasons_are_required() {
        for action in [reject(""), reject("  \n"), cancel(""), cancel(" ")] {
            let v = transition(Submitted, &action, Role::Admin).unwrap_err();
            assert_eq!(
                (v.rule, v.code),
                (RuleId::B4, "reason_required"),
                "{action:?}"
            );
        }
        assert_eq!(
            transition(Submitted, &reject("Trùng lịch giao ban"), Role::Admin),
            Ok(Rejected)
        );
    }

    #[test]
    fn who_may_act() {
        let cases: [(BookingStatus, Action, &[Role]); 6] = [
            (
                Draft,
                Action::Submit,
                &[Role::Admin, Role::Operator, Role::Organizer],
            ),
            (
                Approved,
                Action::Edit,
                &[Role::Admin, Role::Operator, Role::Organizer],
            ),
            (
                Approved,
                cancel("hoãn"),
                &[Role::Admin, Role::Operator, Role::Organizer],
            ),
            (Submitted, Action::Approve, &[Role::Admin, Role::Operator]),
            (Submitted, reject("trùng"), &[Role::Admin, Role::Operator]),
            (Approved, Action::MarkHeld, &[Role::Admin, Role::Operator]),
        ];
        for (from, action, allowed) in cases {
            for role in Role::ALL {
                let ok = transition(from, &action, *role).is_ok();
                assert_eq!(ok, allowed.contains(role), "{role} {action:?}");
            }
        }
        let v = transition(Submitted, &Action::Approve, Role::Organizer).unwrap_err();
        assert_eq!(
            (v.rule, v.article, v.code),
            (RuleId::A1, "3", "role_not_allowed")
        );
        assert_eq!(v.vi, "Vai trò Cán bộ đơn vị chủ trì không được thực hiện thao tác \"duyệt\" với đăng ký họp (Điều 3).");
    }
}
