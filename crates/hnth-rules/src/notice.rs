//! The e-mail notices about a meeting (B2, B5, P1, Art. 6.1a) and when each kind stops being
//! worth sending. A notice waits in the outbox while the server or the mail server is down; once
//! its meeting has begun (or, for an emergency alert, ended) it can no longer serve, and it is
//! marked expired instead of being sent days late.

use chrono::{DateTime, Utc};

labelled_enum! {
    /// What a notice is for; the code is the `kind` of the outbox row.
    pub enum NoticeKind {
        /// B2: the line provider is told of an approved meeting.
        ProviderNotice => "provider_notice", "Line provider notice", "Báo đơn vị cung cấp đường truyền";
        /// P1: each site's technicians are told, with the invitation.
        TechnicianNotice => "technician_notice", "Technician notice", "Báo cán bộ kỹ thuật";
        /// P1: a reminder before the preparation time.
        Reminder => "reminder", "Reminder", "Nhắc lịch";
        /// Art. 6.1a, L2: the times, the sites or the provider's on-duty technician changed.
        Changed => "changed", "Change notice", "Báo thay đổi";
        /// An approved meeting was cancelled or displaced by an emergency (B5).
        Cancelled => "cancelled", "Cancellation", "Báo hủy";
        /// B5: an emergency meeting, alerted at once.
        EmergencyAlert => "emergency_alert", "Emergency alert", "Báo động họp khẩn";
    }
}

/// Until when a notice of this kind about a meeting (official times `start`..`end`) still serves:
///
/// * the provider and technician notices, reminders and change notices prepare people for the
///   meeting: useless once it has begun (its official start);
/// * a cancellation spares people a trip: useless once the planned start has passed;
/// * an emergency alert calls the sites to a meeting that may already be under way (B5: at
///   once, by every channel): it serves until the meeting's official end.
///
/// A kind this version does not know (an older row) is judged like a notice that prepares the
/// meeting: until its start.
pub fn serves_until(
    kind: Option<NoticeKind>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> DateTime<Utc> {
    match kind {
        Some(NoticeKind::EmergencyAlert) => end,
        Some(
            NoticeKind::ProviderNotice
            | NoticeKind::TechnicianNotice
            | NoticeKind::Reminder
            | NoticeKind::Changed
            | NoticeKind::Cancelled,
        )
        | None => start,
    }
}

/// Whether a notice may still be sent at `now`; if not, it is marked expired (at the boundary
/// itself the meeting has begun: expired).
pub fn still_serves(
    kind: Option<NoticeKind>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    now < serves_until(kind, start, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::local;

    #[test]
    fn each_kind_serves_until_its_moment() {
        // A meeting on 20 May 2014, 08:00 to 11:00 (Vietnam time).
        let start = local(2014, 5, 20, 8, 0).unwrap();
        let end = local(2014, 5, 20, 11, 0).unwrap();
        let before = local(2014, 5, 20, 7, 59).unwrap();
        let during = local(2014, 5, 20, 9, 30).unwrap();
        let days_after = local(2014, 5, 23, 8, 0).unwrap();
        use NoticeKind::*;
        let k = Some;
        #[rustfmt::skip]
        let table: &[(Option<NoticeKind>, DateTime<Utc>, bool)] = &[
            (k(ProviderNotice), before, true),
            (k(ProviderNotice), start, false),
            (k(ProviderNotice), during, false),
            (k(TechnicianNotice), before, true),
            (k(TechnicianNotice), start, false),
            (k(Reminder), before, true),
            (k(Reminder), start, false),
            (k(Reminder), days_after, false),
            (k(Changed), before, true),
            (k(Changed), during, false),
            (k(Cancelled), before, true),
            (k(Cancelled), start, false),
            (k(Cancelled), days_after, false),
            (k(EmergencyAlert), before, true),
            (k(EmergencyAlert), start, true),
            (k(EmergencyAlert), during, true),
            (k(EmergencyAlert), end, false),
            (k(EmergencyAlert), days_after, false),
            (None, before, true),
            (None, start, false),
        ];
        for (kind, now, serves) in table {
            assert_eq!(
                still_serves(*kind, start, end, *now),
                *serves,
                "{kind:?} at {now}"
            );
        }
    }

    #[test]
    fn codes_are_the_outbox_kinds() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(NoticeKind::parse("reminder"), Some(NoticeKind::Reminder));
        assert_eq!(NoticeKind::parse("displaced"), None);
    }
}
