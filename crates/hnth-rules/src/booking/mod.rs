//! Registering a meeting (Art. 5) and preparing it (Art. 6.1): the booking's kinds and
//! statuses, the settings an administrator can change, lead time (B1), well-formedness,
//! provider notice (B2) and reminders (P1). Overlaps and emergencies (B3, B5) are in
//! [`conflict`]; the approval workflow (B4) is in [`workflow`].

pub mod conflict;
pub mod workflow;

pub use conflict::{
    displacement_violation, find_conflicts, plan_emergency, Conflict, EmergencyPlan,
};
pub use workflow::{check_approver, transition, Action};

use crate::time::{format_datetime_vi, format_duration_en, format_duration_vi};
use crate::{RuleId, Violation};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Database id of a booking.
pub type BookingId = i64;
/// Database id of a site (điểm cầu).
pub type SiteId = i64;

labelled_enum! {
    /// The meeting kinds named by Art. 2.
    pub enum BookingKind {
        Hop => "hop", "Meeting", "Họp";
        HoiNghi => "hoi_nghi", "Conference", "Hội nghị";
        GiaoBan => "giao_ban", "Periodic briefing", "Giao ban";
        TapHuan => "tap_huan", "Training", "Tập huấn";
    }
}

labelled_enum! {
    /// Where a booking is in its workflow (see [`workflow::transition`]).
    pub enum BookingStatus {
        Draft => "draft", "Draft", "Bản nháp";
        Submitted => "submitted", "Submitted, awaiting approval", "Chờ duyệt";
        Approved => "approved", "Approved", "Đã duyệt";
        Rejected => "rejected", "Rejected", "Bị từ chối";
        Held => "held", "In progress", "Đang diễn ra";
        Closed => "closed", "Closed", "Đã kết thúc";
        Cancelled => "cancelled", "Cancelled", "Đã hủy";
    }
}

impl BookingStatus {
    /// Whether a booking in this status holds its sites and a control-center slot (B3).
    pub fn blocks(self) -> bool {
        matches!(
            self,
            BookingStatus::Submitted | BookingStatus::Approved | BookingStatus::Held
        )
    }
}

/// The administrator-visible settings behind the booking rules. Durations are stored as
/// whole minutes (`*_minutes` in serialized form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// B1: minimum time between submission and official start (Art. 5.1: 5 days).
    #[serde(rename = "lead_time_minutes", with = "minutes")]
    pub lead_time: Duration,
    /// B2: minimum notice to the line provider (Art. 5.1: 2 days).
    #[serde(rename = "provider_notice_minutes", with = "minutes")]
    pub provider_notice: Duration,
    /// P2: default preparation window before the official start (Art. 6.1c: 30 minutes).
    #[serde(rename = "default_preparation_minutes", with = "minutes")]
    pub default_preparation: Duration,
    /// B3: how many meetings the control center can run at once.
    pub control_center_capacity: u32,
    /// The control center's own site, if it is one of the registry's sites: every meeting runs
    /// through it, so it does not conflict with itself site by site; the capacity rule counts its
    /// meetings instead. Taken from the registry, not from the configuration file.
    #[serde(skip)]
    pub control_center_site: Option<SiteId>,
    /// P1: reminders sent this long before the preparation start.
    #[serde(rename = "reminder_minutes", with = "minutes::list")]
    pub reminders: Vec<Duration>,
    /// Separation of duties (interpretation of A1, Art. 3): a booking is approved by someone
    /// other than the account that registered it ([`workflow::check_approver`]).
    pub separate_approval: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lead_time: Duration::days(5),
            provider_notice: Duration::days(2),
            default_preparation: Duration::minutes(30),
            control_center_capacity: 2,
            control_center_site: None,
            reminders: vec![Duration::days(1), Duration::hours(2)],
            separate_approval: true,
        }
    }
}

/// Serde helpers: a `Duration` as a whole number of minutes.
mod minutes {
    use chrono::Duration;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_minutes())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_minutes(i64::deserialize(d)?)
    }

    fn from_minutes<E: Error>(m: i64) -> Result<Duration, E> {
        Duration::try_minutes(m).ok_or_else(|| E::custom("duration out of range"))
    }

    pub mod list {
        use super::*;

        pub fn serialize<S: Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(ds.iter().map(Duration::num_minutes))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
            Vec::<i64>::deserialize(d)?
                .into_iter()
                .map(from_minutes)
                .collect()
        }
    }
}

/// What the booking rules need to know about a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingSlot {
    pub id: BookingId,
    pub title: String,
    /// The host unit's site.
    pub host_site: SiteId,
    /// Every participating site, the host site included.
    pub sites: Vec<SiteId>,
    /// Start of the preparation window (test runs, P2); the booking occupies its sites and the
    /// control center from here.
    pub preparation_start: DateTime<Utc>,
    pub official_start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// An emergency meeting (B5, Art. 5.3): no lead time, may displace planned meetings.
    pub emergency: bool,
    pub status: BookingStatus,
}

impl BookingSlot {
    /// Whether the two bookings' half-open windows `[preparation_start, end)` share an instant.
    /// Bookings that only touch (one ends when the other's preparation starts) do not overlap.
    pub fn overlaps(&self, other: &BookingSlot) -> bool {
        self.preparation_start < other.end && other.preparation_start < self.end
    }
}

/// The default preparation start for a meeting starting at `official_start`.
pub fn default_preparation_start(
    official_start: DateTime<Utc>,
    settings: &Settings,
) -> DateTime<Utc> {
    before(official_start, settings.default_preparation)
}

/// `t - d`, or the first or last instant there is if a setting's duration goes past it (the
/// configuration accepts up to ±292 million years): a rule never panics on its settings.
fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(if d > Duration::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// B1 (Art. 5.1): a request must be submitted at least `settings.lead_time` (5 × 24 h) before
/// the official start; exactly the lead time is accepted. Emergency meetings skip it (B5).
pub fn check_lead_time(
    submitted_at: DateTime<Utc>,
    official_start: DateTime<Utc>,
    emergency: bool,
    settings: &Settings,
) -> Result<(), Violation> {
    let ahead = official_start - submitted_at;
    if emergency || ahead >= settings.lead_time {
        return Ok(());
    }
    let rule = RuleId::B1;
    let deadline = format_datetime_vi(before(official_start, settings.lead_time));
    let start = format_datetime_vi(official_start);
    Err(Violation::new(
        rule,
        "lead_time",
        format!(
            "A meeting must be registered with the provincial office at least {} before its \
             official start ({}); this request came {} before {start}, and the deadline was \
             {deadline}. Only an emergency meeting may skip this (Art. 5.3).",
            format_duration_en(settings.lead_time),
            rule.article_en(),
            format_duration_en(ahead.max(Duration::zero())),
        ),
        format!(
            "Phải đăng ký với Văn phòng UBND tỉnh trước ít nhất {} so với thời gian họp chính \
             thức ({}); yêu cầu này chỉ gửi trước {} so với {start}, hạn chót đăng ký là \
             {deadline}. Chỉ cuộc họp đột xuất, khẩn cấp mới được miễn (khoản 3 Điều 5).",
            format_duration_vi(settings.lead_time),
            rule.article_vi(),
            format_duration_vi(ahead.max(Duration::zero())),
        ),
    ))
}

/// Checks that a booking is well formed at `now`: the end is after the official start, the
/// preparation starts no later than the official start, the official start is not in the past,
/// there is at least one site and the host site is among them.
///
/// Interpretation: these checks cite the requirement they make possible — a time window that
/// can be compared for overlaps and sites agreed with the host (B3, Art. 5.2), a preparation
/// window (P1, Art. 6.1), a registration ahead of the meeting (B1, Art. 5.1).
pub fn validate(slot: &BookingSlot, now: DateTime<Utc>) -> Result<(), Violation> {
    let refuse = |rule, code, en: &str, vi: &str| {
        Err(Violation::new(
            rule,
            code,
            format!("{en} ({}).", rule.article_en()),
            format!("{vi} ({}).", rule.article_vi()),
        ))
    };
    if slot.end <= slot.official_start {
        return refuse(
            RuleId::B3,
            "end_not_after_start",
            "The meeting must end after its official start",
            "Thời gian kết thúc phải sau thời gian họp chính thức",
        );
    }
    if slot.preparation_start > slot.official_start {
        return refuse(
            RuleId::P1,
            "preparation_after_start",
            "The preparation must start no later than the official start",
            "Thời gian chuẩn bị phải bắt đầu trước hoặc đúng thời gian họp chính thức",
        );
    }
    if slot.official_start < now {
        return refuse(
            RuleId::B1,
            "start_in_past",
            "The official start is in the past",
            "Thời gian họp chính thức đã qua",
        );
    }
    if slot.sites.is_empty() {
        return refuse(
            RuleId::B3,
            "no_sites",
            "A meeting needs at least one participating site",
            "Cuộc họp phải có ít nhất một điểm cầu tham gia",
        );
    }
    if !slot.sites.contains(&slot.host_site) {
        return refuse(
            RuleId::B3,
            "host_not_among_sites",
            "The host site must be one of the participating sites",
            "Điểm cầu chủ trì phải nằm trong danh sách điểm cầu tham gia",
        );
    }
    Ok(())
}

/// What a submission (or resubmission after an edit) must pass before overlaps are looked at:
/// [`validate`] then [`check_lead_time`] with `now` as the submission time.
pub fn check_submission(
    slot: &BookingSlot,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Result<(), Violation> {
    validate(slot, now)?;
    check_lead_time(now, slot.official_start, slot.emergency, settings)
}

/// B2 (Art. 5.1): the latest instant the line provider may be notified.
pub fn provider_notice_deadline(
    official_start: DateTime<Utc>,
    settings: &Settings,
) -> DateTime<Utc> {
    before(official_start, settings.provider_notice)
}

/// B2: whether the booking is to be flagged because the provider notice did not (or can no
/// longer) go out `settings.provider_notice` ahead. `notice_sent_at` is when it went out, if it
/// did; otherwise the notice is late once `now` is past the deadline. Exactly on the deadline
/// is in time.
pub fn provider_notice_late(
    notice_sent_at: Option<DateTime<Utc>>,
    official_start: DateTime<Utc>,
    now: DateTime<Utc>,
    settings: &Settings,
) -> bool {
    notice_sent_at.unwrap_or(now) > provider_notice_deadline(official_start, settings)
}

/// The B2 flag for a late provider notice, for the booking's page and the violation report.
pub fn provider_notice_violation(official_start: DateTime<Utc>, settings: &Settings) -> Violation {
    let rule = RuleId::B2;
    let deadline = format_datetime_vi(provider_notice_deadline(official_start, settings));
    Violation::new(
        rule,
        "provider_notice_late",
        format!(
            "The line provider was not notified at least {} before the meeting, by {deadline} ({}).",
            format_duration_en(settings.provider_notice),
            rule.article_en(),
        ),
        format!(
            "Đơn vị cung cấp đường truyền không được thông báo trước ít nhất {} (trước {deadline}) ({}).",
            format_duration_vi(settings.provider_notice),
            rule.article_vi(),
        ),
    )
}

/// P1 (Art. 6.1a, b): when to remind the technicians of the units and of the line provider of
/// the preparation and official times: each of `settings.reminders` before the preparation
/// start, keeping those at or after `now`, earliest first, without duplicates.
pub fn reminder_times(
    preparation_start: DateTime<Utc>,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Vec<DateTime<Utc>> {
    let mut times: Vec<_> = settings
        .reminders
        .iter()
        .map(|d| before(preparation_start, *d))
        .filter(|t| *t >= now)
        .collect();
    times.sort();
    times.dedup();
    times
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::time::local;

    /// A Vietnam local time in May 2014.
    pub fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        local(2014, 5, day, hour, minute).unwrap()
    }

    /// A submitted booking at sites `sites` (the first is the host), preparing from `prep` (hour
    /// of 20/05) and ending at `end` (hour of 20/05), with a 30-minute preparation.
    pub fn slot(id: BookingId, sites: &[SiteId], prep: (u32, u32), end: (u32, u32)) -> BookingSlot {
        BookingSlot {
            id,
            title: format!("Họp {id}"),
            host_site: sites.first().copied().unwrap_or(0),
            sites: sites.to_vec(),
            preparation_start: at(20, prep.0, prep.1),
            official_start: at(20, prep.0, prep.1) + Duration::minutes(30),
            end: at(20, end.0, end.1),
            emergency: false,
            status: BookingStatus::Submitted,
        }
    }

    #[test]
    fn lead_time_boundaries() {
        let s = Settings::default();
        let start = at(20, 8, 0);
        let minute = Duration::minutes(1);
        let cases = [
            ("exactly 5 × 24 h", Duration::days(5), false, true),
            ("one minute more", Duration::days(5) + minute, false, true),
            ("one minute less", Duration::days(5) - minute, false, false),
            ("same day", Duration::hours(1), false, false),
            ("emergency, same day", Duration::hours(1), true, true),
            (
                "emergency, already started",
                -Duration::hours(1),
                true,
                true,
            ),
        ];
        for (name, ahead, emergency, ok) in cases {
            let r = check_lead_time(start - ahead, start, emergency, &s);
            assert_eq!(r.is_ok(), ok, "{name}: {r:?}");
            if let Err(v) = r {
                assert_eq!(
                    (v.rule, v.article, v.code),
                    (RuleId::B1, "5.1", "lead_time")
                );
            }
        }
        let v = check_lead_time(start - Duration::days(5) + minute, start, false, &s).unwrap_err();
        assert!(
            v.en.contains("4 days 23 hours 59 minutes before 20/05/2014 08:00"),
            "{}",
            v.en
        );
        assert!(v.en.contains("deadline was 15/05/2014 08:00"), "{}", v.en);
        assert!(
            v.vi.contains("hạn chót đăng ký là 15/05/2014 08:00"),
            "{}",
            v.vi
        );
        assert!(v.vi.contains("khoản 1 Điều 5"), "{}", v.vi);
    }

    #[test]
    fn lead_time_is_configurable() {
        let s = Settings {
            lead_time: Duration::days(3),
            ..Settings::default()
        };
        let start = at(20, 8, 0);
        assert!(check_lead_time(start - Duration::days(3), start, false, &s).is_ok());
        assert!(check_lead_time(
            start - Duration::days(3) + Duration::minutes(1),
            start,
            false,
            &s
        )
        .is_err());
    }

    #[test]
    fn validation() {
        let now = at(10, 8, 0);
        let ok = slot(1, &[1, 2], (8, 0), (10, 0));
        assert_eq!(validate(&ok, now), Ok(()));
        type Edit = (
            &'static str,
            fn(&mut BookingSlot),
            Option<(RuleId, &'static str)>,
        );
        let edits: [Edit; 8] = [
            (
                "end equals start",
                |b| b.end = b.official_start,
                Some((RuleId::B3, "end_not_after_start")),
            ),
            (
                "end before start",
                |b| b.end = b.preparation_start,
                Some((RuleId::B3, "end_not_after_start")),
            ),
            (
                "end one minute after start",
                |b| b.end = b.official_start + Duration::minutes(1),
                None,
            ),
            (
                "no preparation window",
                |b| b.preparation_start = b.official_start,
                None,
            ),
            (
                "preparation after start",
                |b| b.preparation_start = b.official_start + Duration::minutes(1),
                Some((RuleId::P1, "preparation_after_start")),
            ),
            (
                "no sites",
                |b| b.sites.clear(),
                Some((RuleId::B3, "no_sites")),
            ),
            (
                "host not among sites",
                |b| b.host_site = 9,
                Some((RuleId::B3, "host_not_among_sites")),
            ),
            ("single site", |b| b.sites = vec![b.host_site], None),
        ];
        for (name, edit, expected) in edits {
            let mut b = ok.clone();
            edit(&mut b);
            let got = validate(&b, now).err().map(|v| (v.rule, v.code));
            assert_eq!(got, expected, "{name}");
        }
        // The official start may be now, not before; the preparation may already have begun.
        assert!(validate(&ok, ok.official_start).is_ok());
        let v = validate(&ok, ok.official_start + Duration::minutes(1)).unwrap_err();
        assert_eq!((v.rule, v.code), (RuleId::B1, "start_in_past"));
    }

    #[test]
    fn submission_checks_validity_then_lead_time() {
        let s = Settings::default();
        let mut b = slot(1, &[1, 2], (8, 0), (10, 0));
        assert_eq!(
            check_submission(&b, b.official_start - Duration::days(5), &s),
            Ok(())
        );
        let v = check_submission(&b, b.official_start - Duration::days(1), &s).unwrap_err();
        assert_eq!(v.code, "lead_time");
        b.emergency = true;
        assert_eq!(
            check_submission(&b, b.official_start - Duration::days(1), &s),
            Ok(())
        );
        b.sites.clear();
        assert_eq!(
            check_submission(&b, b.official_start - Duration::days(9), &s)
                .unwrap_err()
                .code,
            "no_sites"
        );
    }

    #[test]
    fn provider_notice() {
        let s = Settings::default();
        let start = at(20, 8, 0);
        assert_eq!(provider_notice_deadline(start, &s), at(18, 8, 0));
        let minute = Duration::minutes(1);
        let deadline = at(18, 8, 0);
        let cases = [
            (
                "sent on the deadline",
                Some(deadline),
                deadline + Duration::days(1),
                false,
            ),
            (
                "sent a minute late",
                Some(deadline + minute),
                deadline + minute,
                true,
            ),
            (
                "sent early",
                Some(deadline - Duration::days(1)),
                start,
                false,
            ),
            ("not sent, deadline not passed", None, deadline, false),
            ("not sent, deadline passed", None, deadline + minute, true),
        ];
        for (name, sent, now, late) in cases {
            assert_eq!(provider_notice_late(sent, start, now, &s), late, "{name}");
        }
        let v = provider_notice_violation(start, &s);
        assert_eq!(
            (v.rule, v.article, v.code),
            (RuleId::B2, "5.1", "provider_notice_late")
        );
        assert!(
            v.en.contains("at least 2 days") && v.en.contains("18/05/2014 08:00"),
            "{}",
            v.en
        );
        assert!(v.vi.contains("ít nhất 2 ngày"), "{}", v.vi);
    }

    #[test]
    fn reminders() {
        let s = Settings::default();
        let prep = at(20, 7, 30);
        let cases = [
            (
                "well ahead",
                at(1, 0, 0),
                vec![at(19, 7, 30), at(20, 5, 30)],
            ),
            (
                "exactly at the first",
                at(19, 7, 30),
                vec![at(19, 7, 30), at(20, 5, 30)],
            ),
            (
                "a minute after the first",
                at(19, 7, 31),
                vec![at(20, 5, 30)],
            ),
            ("after both", at(20, 5, 31), vec![]),
        ];
        for (name, now, expected) in cases {
            assert_eq!(reminder_times(prep, now, &s), expected, "{name}");
        }
        let dup = Settings {
            reminders: vec![Duration::hours(2), Duration::hours(2), Duration::days(1)],
            ..s
        };
        assert_eq!(
            reminder_times(prep, at(1, 0, 0), &dup),
            vec![at(19, 7, 30), at(20, 5, 30)]
        );
    }

    #[test]
    fn labels_and_codes() {
        assert_eq!(BookingKind::GiaoBan.label_vi(), "Giao ban");
        assert_eq!(BookingKind::TapHuan.label_en(), "Training");
        for k in BookingKind::ALL {
            assert_eq!(BookingKind::parse(k.as_str()), Some(*k));
        }
        for s in BookingStatus::ALL {
            assert_eq!(BookingStatus::parse(s.as_str()), Some(*s));
        }
        let blocking: Vec<_> = BookingStatus::ALL.iter().filter(|s| s.blocks()).collect();
        assert_eq!(
            blocking,
            [
                &BookingStatus::Submitted,
                &BookingStatus::Approved,
                &BookingStatus::Held
            ]
        );
    }

    #[test]
    fn settings_defaults() {
        let s = Settings::default();
        assert_eq!(s.lead_time, Duration::days(5));
        assert_eq!(s.provider_notice, Duration::days(2));
        assert_eq!(s.default_preparation, Duration::minutes(30));
        assert_eq!(s.control_center_capacity, 2);
        assert_eq!(s.reminders, vec![Duration::days(1), Duration::hours(2)]);
        assert_eq!(default_preparation_start(at(20, 8, 0), &s), at(20, 7, 30));
    }

    /// Found by `tests/fuzz.rs`: a duration in the configuration that reaches past the first or
    /// last instant chrono knows (`reminder_minutes = [-136807847947]` is accepted) made every
    /// booking page panic. The rules now saturate.
    #[test]
    fn settings_beyond_the_calendar_do_not_panic() {
        let huge = Duration::try_minutes(i64::MAX / 60_000).unwrap();
        let start = at(20, 8, 0);
        for d in [huge, -huge] {
            let s = Settings {
                lead_time: d,
                provider_notice: d,
                default_preparation: d,
                reminders: vec![d, Duration::hours(2)],
                ..Settings::default()
            };
            let _ = check_lead_time(at(19, 8, 0), start, false, &s);
            let _ = default_preparation_start(start, &s);
            let _ = provider_notice_late(None, start, at(19, 8, 0), &s);
            let _ = provider_notice_violation(start, &s);
            let reminders = reminder_times(start, at(1, 0, 0), &s);
            assert!(reminders.contains(&(start - Duration::hours(2))));
        }
        let s = Settings {
            lead_time: huge,
            ..Settings::default()
        };
        assert_eq!(
            provider_notice_deadline(
                start,
                &Settings {
                    provider_notice: huge,
                    ..s.clone()
                }
            ),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            check_lead_time(at(19, 8, 0), start, false, &s)
                .unwrap_err()
                .code,
            "lead_time"
        );
    }
}
