//! Hostile input: property tests of the meeting's state machine and the booking rules.
//!
//! Each target runs `HNTH_FUZZ_CASES` cases (a small default, so that `cargo test` stays quick);
//! `scripts/fuzz-long.sh` runs them long in release mode. Every test is named `fuzz_*`.

use std::cell::Cell;
use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hnth_rules::booking::{
    self, check_lead_time, check_submission, default_preparation_start, find_conflicts,
    plan_emergency, provider_notice_deadline, provider_notice_late, provider_notice_violation,
    reminder_times, validate, BookingSlot, BookingStatus, Settings, SiteId,
};
use hnth_rules::meeting::{
    check_opening, Actor, Command, Delegate, Fill, Frame, Layout, Meeting, Params, RequestState,
    MAX_DELEGATES, MAX_QUEUE, MAX_TEXT,
};
use hnth_rules::roles::{Role, Scope};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

/// How many cases each target runs: `HNTH_FUZZ_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("HNTH_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// Run `test` on `cases(default)` inputs of `strategy`; a failure panics with the smallest
/// input found.
fn check<S: Strategy>(
    default: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = ProptestConfig {
        // Shrinking a long command sequence is what makes a failure readable; keep it bounded.
        max_shrink_iters: 4096,
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases(default))
    };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// The meeting
// ---------------------------------------------------------------------------------------------

const CC: SiteId = 1;
const CHAIR: SiteId = 2;
/// The meeting's sites at the start (the chair's and the control center's among them).
const SITES: [SiteId; 5] = [CC, CHAIR, 3, 4, 5];

/// A site id: mostly one of the meeting (or near it: 0, 6..8 are not), sometimes any.
fn site() -> impl Strategy<Value = SiteId> {
    prop_oneof![
        8 => 0i64..=8,
        1 => any::<i64>(),
    ]
}

/// Text as a page may send it: a name, blanks, control characters, too long, anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-zÀ-ỹ ]{0,12}",
        1 => "[ \t\r\n]{0,3}[a-z]{0,3}[ \t\r\n\u{0}\u{7f}\u{85}]{0,3}",
        1 => prop::collection::vec(any::<char>(), 110..130).prop_map(|v| v.into_iter().collect()),
        1 => any::<String>(),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL)
}

fn layout() -> impl Strategy<Value = Layout> {
    prop::sample::select(Layout::ALL)
}

/// Mostly accounts that may do something in the meeting (the operator, the chair, the sites'
/// technicians and devices), sometimes any role anywhere.
fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        3 => Just(Actor { role: Role::Operator, scope: Scope::Province }),
        2 => Just(Actor { role: Role::Chair, scope: Scope::Site(CHAIR) }),
        2 => (prop::sample::select(vec![Role::SiteTechnician, Role::SiteDevice]), site())
            .prop_map(|(role, s)| Actor { role, scope: Scope::Site(s) }),
        1 => (role(), prop_oneof![
            Just(Scope::Province),
            site().prop_map(Scope::Site),
            (0i64..4).prop_map(Scope::Unit),
        ])
            .prop_map(|(role, scope)| Actor { role, scope }),
    ]
}

/// A speak request's id: the first few the meeting hands out, or any.
fn request_id() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1u64..4, 2 => 0u64..12, 1 => any::<u64>()]
}

fn frame() -> impl Strategy<Value = Frame> {
    let fill = prop_oneof![
        1 => Just(Fill::FloorOrder),
        3 => prop::collection::vec(prop::option::of(site()), 0..18).prop_map(Fill::Manual),
    ];
    (layout(), fill).prop_map(|(layout, fill)| Frame { layout, fill })
}

fn params() -> impl Strategy<Value = Params> {
    let height = prop_oneof![
        4 => prop::sample::select(vec![360u32, 540, 720, 1080]),
        1 => any::<u32>(),
    ];
    let kbps = prop_oneof![4 => 90u32..8100, 1 => any::<u32>()];
    let rotate = prop_oneof![4 => 0u32..700, 1 => any::<u32>()];
    (height, kbps, rotate).prop_map(|(max_height, max_kbps, rotate_secs)| Params {
        max_height,
        max_kbps,
        rotate_secs,
    })
}

fn delegate() -> impl Strategy<Value = Delegate> {
    (text(), text(), text()).prop_map(|(name, position, reason)| Delegate {
        name,
        position,
        reason,
    })
}

fn delegates() -> impl Strategy<Value = Vec<Delegate>> {
    prop_oneof![
        8 => prop::collection::vec(delegate(), 0..4),
        1 => prop::collection::vec(
            Just(Delegate { name: "A".into(), position: String::new(), reason: "x".into() }),
            MAX_DELEGATES - 2..MAX_DELEGATES + 2,
        ),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => site().prop_map(|site| Command::AddSite { site }),
        1 => site().prop_map(|site| Command::DropSite { site }),
        5 => prop_oneof![3 => prop::sample::select(&SITES[..]), 1 => site()]
            .prop_map(|site| Command::GiveFloor { site }),
        2 => site().prop_map(|site| Command::TakeFloor { site }),
        1 => Just(Command::CloseAll),
        3 => prop::bool::weighted(0.8).prop_map(|on| Command::SetDebate { on }),
        1 => prop::bool::weighted(0.15).prop_map(|on| Command::SetLecture { on }),
        4 => (site(), text(), text()).prop_map(|(site, delegate, position)| Command::RequestFloor {
            site,
            delegate,
            position,
        }),
        1 => request_id().prop_map(|request| Command::Withdraw { request }),
        3 => request_id().prop_map(|request| Command::Pass { request }),
        2 => request_id().prop_map(|request| Command::Grant { request }),
        1 => request_id().prop_map(|request| Command::Decline { request }),
        1 => Just(Command::ClearRequests),
        2 => frame().prop_map(|frame| Command::SetFrame { frame }),
        1 => params().prop_map(|params| Command::SetParams { params }),
        1 => (site(), delegates(), delegates()).prop_map(|(site, present, absent)| {
            Command::ReportRollCall { site, present, absent }
        }),
    ]
}

/// An instant: near the meeting, or anywhere chrono can represent.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    prop_oneof![
        8 => (-7200i64..7200).prop_map(|s| at(1_796_000_000 + s)),
        1 => (min..=max).prop_map(at),
        1 => prop::sample::select(vec![DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC]),
    ]
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().expect("in range")
}

/// One thing that happens to a meeting: a command from an account, or the hub's news.
#[derive(Debug, Clone)]
enum Step {
    Apply(Actor, Command),
    Connected(SiteId),
    Disconnected(SiteId),
    Restart,
}

fn step() -> impl Strategy<Value = (Step, DateTime<Utc>)> {
    // A site's own account asking for its own site, as the site app does.
    let site_role = prop::sample::select(vec![Role::SiteTechnician, Role::SiteDevice]);
    let own = (
        site_role,
        site(),
        text(),
        text(),
        request_id(),
        delegates(),
        delegates(),
    )
        .prop_flat_map(
            |(role, site, delegate, position, request, present, absent)| {
                let actor = Actor {
                    role,
                    scope: Scope::Site(site),
                };
                prop_oneof![
                    3 => Just(Command::RequestFloor { site, delegate, position }),
                    1 => Just(Command::Withdraw { request }),
                    1 => Just(Command::ReportRollCall { site, present, absent }),
                ]
                .prop_map(move |c| Step::Apply(actor, c))
            },
        );
    let step = prop_oneof![
        12 => (actor(), command()).prop_map(|(a, c)| Step::Apply(a, c)),
        4 => own,
        // The operator calling on the meeting's sites, as during a debate.
        3 => prop::sample::select(&SITES[..]).prop_map(|site| Step::Apply(
            Actor { role: Role::Operator, scope: Scope::Province },
            Command::GiveFloor { site },
        )),
        3 => site().prop_map(Step::Connected),
        1 => site().prop_map(Step::Disconnected),
        1 => Just(Step::Restart),
    ];
    (step, instant())
}

/// What the media core is told: who is heard, and which videos each receiver gets.
type MediaView = (Vec<SiteId>, Vec<(SiteId, Vec<SiteId>)>);

fn media_view(m: &Meeting, now: DateTime<Utc>) -> MediaView {
    let receivers: Vec<SiteId> = m.participants.keys().copied().collect();
    let heard = receivers.iter().copied().filter(|s| m.hears(*s)).collect();
    let videos = receivers
        .iter()
        .map(|r| (*r, m.videos_for(*r, now).into_iter().map(|v| v.0).collect()))
        .collect();
    (heard, videos)
}

fn is_clean_text(s: &str, required: bool) -> bool {
    s == s.trim()
        && !(required && s.is_empty())
        && s.chars().count() <= MAX_TEXT
        && !s.chars().any(char::is_control)
}

fn no_duplicates<T: Ord + Copy>(items: impl IntoIterator<Item = T>) -> bool {
    let mut seen = BTreeSet::new();
    items.into_iter().all(|x| seen.insert(x))
}

/// The invariants of a meeting's state, whatever happened to it.
fn check_invariants(m: &Meeting, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    let is_site = |s: &SiteId| m.participants.contains_key(s);
    prop_assert!(is_site(&m.chair_site), "the chair's site left");
    for (id, p) in &m.participants {
        prop_assert_eq!(*id, p.site);
    }
    // The floor (C4).
    prop_assert!(
        no_duplicates(m.floor.iter().copied()),
        "floor {:?}",
        m.floor
    );
    prop_assert!(m.floor.iter().all(is_site), "floor {:?}", m.floor);
    prop_assert!(
        m.debate || m.floor.len() <= 1,
        "floor {:?} without a debate",
        m.floor
    );
    prop_assert!(
        !m.lecture || m.floor.iter().all(|s| *s == m.chair_site),
        "floor {:?} in a lecture",
        m.floor
    );
    prop_assert_eq!(m.lecture, m.lecture_since.is_some());
    // The speak requests (C8, C3).
    prop_assert!(m.queue.len() <= MAX_QUEUE);
    prop_assert!(no_duplicates(m.queue.iter().map(|r| r.id)), "request ids");
    prop_assert!(
        no_duplicates(
            m.queue
                .iter()
                .map(|r| (r.site, r.delegate.to_lowercase()))
                .collect::<Vec<_>>()
                .iter()
        ),
        "a delegate asked twice: {:?}",
        m.queue
    );
    for r in &m.queue {
        prop_assert!(is_site(&r.site), "request {} from site {}", r.id, r.site);
        prop_assert!(
            is_clean_text(&r.delegate, true),
            "delegate {:?}",
            r.delegate
        );
        prop_assert!(
            is_clean_text(&r.position, false),
            "position {:?}",
            r.position
        );
    }
    // The frame (C1).
    if let Fill::Manual(cells) = &m.frame.fill {
        prop_assert!(
            m.frame.layout.placed_by_hand(),
            "{:?} by hand",
            m.frame.layout
        );
        prop_assert!(cells.len() <= m.frame.layout.cells().len());
        prop_assert!(cells.iter().flatten().all(is_site), "cells {:?}", cells);
        prop_assert!(
            no_duplicates(cells.iter().flatten().copied()),
            "cells {:?}",
            cells
        );
    }
    // The parameters (P3).
    let p = m.params;
    prop_assert!([360, 540, 720, 1080].contains(&p.max_height), "{:?}", p);
    prop_assert!((100..=8000).contains(&p.max_kbps), "{:?}", p);
    prop_assert!((5..=600).contains(&p.rotate_secs), "{:?}", p);
    // The roll call.
    for (site, rc) in &m.roll_call {
        prop_assert!(is_site(site), "roll call of site {}", site);
        prop_assert!(rc.present.len() + rc.absent.len() <= MAX_DELEGATES);
        for d in &rc.present {
            prop_assert!(is_clean_text(&d.name, true) && is_clean_text(&d.position, false));
            prop_assert!(d.reason.is_empty());
        }
        for d in &rc.absent {
            prop_assert!(is_clean_text(&d.name, true) && is_clean_text(&d.position, false));
            prop_assert!(is_clean_text(&d.reason, true));
        }
    }
    // Connections.
    let connected = m.connected();
    prop_assert!(no_duplicates(connected.iter().copied()));
    prop_assert!(connected.iter().all(|s| is_site(s) && m.is_connected(*s)));
    // What the media core is told: only connected sites are heard, at most one besides the
    // chair's without a debate; each receiver gets others' videos, connected, once each.
    let heard: Vec<SiteId> = m
        .participants
        .keys()
        .copied()
        .filter(|s| m.hears(*s))
        .collect();
    prop_assert!(heard.iter().all(|s| m.is_connected(*s)));
    prop_assert!(heard
        .iter()
        .all(|s| m.floor.contains(s) || *s == m.chair_site));
    prop_assert!(m.debate || heard.iter().filter(|s| **s != m.chair_site).count() <= 1);
    for r in m.participants.keys().copied().chain([0, 99, i64::MIN]) {
        let view = m.view_for(r, now);
        let lecture_page = m.frame.layout == Layout::Lecture && r == m.chair_site;
        let cells = if lecture_page {
            9
        } else {
            m.frame.layout.cells().len()
        };
        prop_assert_eq!(view.cells.len(), cells);
        let videos = m.videos_for(r, now);
        prop_assert!(videos.len() <= cells);
        prop_assert!(
            no_duplicates(videos.iter().map(|v| v.0)),
            "videos {:?}",
            videos
        );
        prop_assert!(videos.iter().all(|(s, _)| *s != r && m.is_connected(*s)));
    }
    Ok(())
}

/// Apply a sequence of steps, checking the invariants after each, that a refusal changes
/// nothing, and that an accepted command which changes what the media core does says so.
fn run_meeting(
    layout: Layout,
    connected: &[(SiteId, DateTime<Utc>)],
    steps: &[(Step, DateTime<Utc>)],
    reached: &Reached,
) -> Result<(), TestCaseError> {
    let mut m = Meeting::new(CHAIR, &SITES, layout);
    for (site, now) in connected {
        m.site_connected(*site, *now)
            .expect("a site of the meeting");
    }
    for (step, now) in steps {
        let before = m.clone();
        let media_before = media_view(&m, *now);
        let result = match step.clone() {
            Step::Apply(actor, cmd) => m.apply(actor, cmd, *now),
            Step::Connected(s) => m.site_connected(s, *now),
            Step::Disconnected(s) => Ok(m.site_disconnected(s)),
            Step::Restart => {
                m.after_restart();
                Ok(Vec::new())
            }
        };
        check_invariants(&m, *now)?;
        reached.note(&m, result.is_ok());
        match result {
            Err(v) => {
                prop_assert_eq!(&m, &before, "refused ({}) yet changed", v.code);
                prop_assert!(!v.en.is_empty() && !v.vi.is_empty());
            }
            Ok(changes) if !matches!(step, Step::Restart) => {
                if changes.is_empty() {
                    prop_assert_eq!(&m, &before, "no change reported, yet changed");
                }
                let media_after = media_view(&m, *now);
                use hnth_rules::meeting::Change;
                if media_after.0 != media_before.0 {
                    prop_assert!(
                        changes.contains(&Change::Floor) || changes.contains(&Change::Sites),
                        "who is heard changed, unreported: {:?}",
                        changes
                    );
                }
                if media_after.1 != media_before.1 {
                    prop_assert!(
                        changes
                            .iter()
                            .any(|c| matches!(c, Change::Frame | Change::Sites | Change::Params)),
                        "the videos changed, unreported: {:?}",
                        changes
                    );
                }
            }
            Ok(_) => {}
        }
        // The hub writes the state down and restores it after a restart.
        let json = serde_json::to_string(&m).expect("serializes");
        let back: Meeting = serde_json::from_str(&json).expect("deserializes");
        prop_assert_eq!(&back, &m);
    }
    Ok(())
}

#[test]
fn fuzz_meeting_commands() {
    let default = 256;
    // Some of the meeting's sites connected first, in some order: the rest happens to a
    // meeting under way.
    let connected = prop::sample::subsequence(SITES.to_vec(), 0..=SITES.len())
        .prop_shuffle()
        .prop_flat_map(|sites| {
            let n = sites.len();
            (Just(sites), prop::collection::vec(instant(), n))
        })
        .prop_map(|(sites, times)| sites.into_iter().zip(times).collect::<Vec<_>>());
    let strategy = (layout(), connected, prop::collection::vec(step(), 1..40));
    let reached = Reached::default();
    check(default, strategy, |(layout, connected, steps)| {
        run_meeting(layout, &connected, &steps, &reached)
    });
    // The generator must keep reaching the states worth testing, not only refusals.
    if cases(default) >= 256 {
        let r = &reached;
        let seen = [
            ("accepted", r.accepted.get()),
            ("floor held", r.floor.get()),
            ("debate of two", r.debate.get()),
            ("lecture", r.lecture.get()),
            ("request passed", r.passed.get()),
            ("two requests", r.queue.get()),
            ("manual frame", r.manual.get()),
            ("roll call", r.roll_call.get()),
            ("site dropped", r.dropped.get()),
        ];
        eprintln!("fuzz_meeting_commands: steps that reached each state: {seen:?}");
        for (what, n) in seen {
            assert!(n > 0, "no step reached: {what} ({seen:?})");
        }
    }
}

/// How many steps reached each state worth testing.
#[derive(Default)]
struct Reached {
    accepted: Cell<u64>,
    floor: Cell<u64>,
    debate: Cell<u64>,
    lecture: Cell<u64>,
    passed: Cell<u64>,
    queue: Cell<u64>,
    manual: Cell<u64>,
    roll_call: Cell<u64>,
    dropped: Cell<u64>,
}

impl Reached {
    fn note(&self, m: &Meeting, accepted: bool) {
        let bump = |c: &Cell<u64>, on: bool| c.set(c.get() + u64::from(on));
        bump(&self.accepted, accepted);
        bump(&self.floor, !m.floor.is_empty());
        bump(&self.debate, m.floor.len() >= 2);
        bump(&self.lecture, m.lecture);
        bump(
            &self.passed,
            m.queue.iter().any(|r| r.state == RequestState::Passed),
        );
        bump(&self.queue, m.queue.len() >= 2);
        bump(&self.manual, matches!(m.frame.fill, Fill::Manual(_)));
        bump(&self.roll_call, !m.roll_call.is_empty());
        bump(&self.dropped, m.participants.len() < SITES.len());
    }
}

/// A command as a page sends it (JSON over the WebSocket), mutated: refused or applied, never
/// a panic, and the invariants hold.
#[test]
fn fuzz_meeting_commands_from_json() {
    let default = 256;
    // Replace, insert or remove bytes of a valid command.
    let mutation = (any::<prop::sample::Index>(), any::<u8>(), 0u8..3);
    let strategy = (
        actor(),
        command(),
        prop::collection::vec(mutation, 0..4),
        instant(),
    );
    check(default, strategy, |(actor, cmd, mutations, now)| {
        let mut bytes = serde_json::to_vec(&cmd).expect("serializes");
        for (i, b, op) in mutations {
            if bytes.is_empty() {
                break;
            }
            let i = i.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        let mut m = Meeting::new(CHAIR, &SITES, Layout::OnePlus7);
        for s in SITES {
            m.site_connected(s, now).expect("a site of the meeting");
        }
        if let Ok(cmd) = serde_json::from_slice::<Command>(&bytes) {
            let before = m.clone();
            if m.apply(actor, cmd, now).is_err() {
                prop_assert_eq!(&m, &before);
            }
            check_invariants(&m, now)?;
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The booking rules
// ---------------------------------------------------------------------------------------------

/// The most minutes `Duration::try_minutes` takes.
const MAX_MINUTES: i64 = i64::MAX / 60_000;

/// A duration of a setting as the configuration file may give it in minutes: sensible, or
/// anything `Duration::try_minutes` takes.
fn setting_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        6 => (0i64..20_000).prop_map(Duration::minutes),
        1 => (-20_000i64..0).prop_map(Duration::minutes),
        1 => (-MAX_MINUTES..=MAX_MINUTES).prop_map(Duration::minutes),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        setting_duration(),
        setting_duration(),
        setting_duration(),
        0u32..5,
        prop::option::of(0i64..8),
        prop::collection::vec(setting_duration(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(lead_time, provider_notice, default_preparation, capacity, cc, reminders, sep)| {
                Settings {
                    lead_time,
                    provider_notice,
                    default_preparation,
                    control_center_capacity: capacity,
                    control_center_site: cc,
                    reminders,
                    separate_approval: sep,
                }
            },
        )
}

/// Booking instants: in the years a form can name (0001–9999), mostly close together.
fn booking_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (-62_135_596_800i64, 253_402_300_799i64); // 0001-01-01, 9999-12-31
    prop_oneof![
        6 => (0i64..20 * 86_400).prop_map(|s| at(1_796_000_000 + s)),
        1 => (min..=max).prop_map(at),
        1 => prop::sample::select(vec![at(min), at(max)]),
    ]
}

fn slot() -> impl Strategy<Value = BookingSlot> {
    (
        0i64..10,
        prop::collection::vec(0i64..8, 0..5),
        0i64..8,
        booking_instant(),
        booking_instant(),
        booking_instant(),
        any::<bool>(),
        prop::sample::select(BookingStatus::ALL),
        text(),
    )
        .prop_map(
            |(
                id,
                sites,
                host_site,
                preparation_start,
                official_start,
                end,
                emergency,
                status,
                title,
            )| {
                BookingSlot {
                    id,
                    title,
                    host_site,
                    sites,
                    preparation_start,
                    official_start,
                    end,
                    emergency,
                    status,
                }
            },
        )
}

#[test]
fn fuzz_booking_rules() {
    let default = 1024;
    let strategy = (
        slot(),
        prop::collection::vec(slot(), 0..8),
        settings(),
        booking_instant(),
        prop::option::of(booking_instant()),
    );
    check(
        default,
        strategy,
        |(candidate, existing, settings, now, sent)| {
            let c = &candidate;
            let valid = validate(c, now);
            if valid.is_ok() {
                prop_assert!(c.end > c.official_start && c.preparation_start <= c.official_start);
                prop_assert!(c.sites.contains(&c.host_site) && c.official_start >= now);
            }
            let submission = check_submission(c, now, &settings);
            prop_assert!(valid.is_ok() || submission.is_err());
            let _ = check_lead_time(now, c.official_start, c.emergency, &settings);
            let _ = default_preparation_start(c.official_start, &settings);
            let _ = provider_notice_deadline(c.official_start, &settings);
            let _ = provider_notice_late(sent, c.official_start, now, &settings);
            let _ = provider_notice_violation(c.official_start, &settings);
            let reminders = reminder_times(c.preparation_start, now, &settings);
            prop_assert!(reminders.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(reminders.iter().all(|t| *t >= now));
            let conflicts = find_conflicts(c, &existing, &settings);
            for conflict in &conflicts {
                let v = conflict.violation();
                prop_assert!(!v.en.is_empty() && !v.vi.is_empty());
            }
            if let Ok(plan) = plan_emergency(c, &existing, &settings) {
                prop_assert!(c.emergency);
                // What stays is free of site conflicts and within the capacity.
                let rest: Vec<BookingSlot> = existing
                    .iter()
                    .filter(|b| !plan.displaced.contains(&b.id))
                    .cloned()
                    .collect();
                prop_assert!(
                    find_conflicts(c, &rest, &settings).is_empty(),
                    "{:?} left after displacing {:?}",
                    find_conflicts(c, &rest, &settings),
                    plan.displaced
                );
                for id in &plan.displaced {
                    let b = existing
                        .iter()
                        .find(|b| b.id == *id)
                        .expect("displaced one exists");
                    let _ = booking::displacement_violation(b, c);
                }
            }
            let _ = check_opening(c.status, c.preparation_start, c.end, now);
            for b in &existing {
                prop_assert_eq!(c.overlaps(b), b.overlaps(c));
            }
            Ok(())
        },
    );
}

/// Dates typed in a form (`dd/mm/yyyy`), and codes read back from the database or the API.
#[test]
fn fuzz_text_inputs() {
    let default = 4096;
    let strategy = prop_oneof![
        "[0-9/ ]{8,12}",
        "[0-9]{2}/[0-9]{2}/[0-9]{4}",
        "[0-9٠-٩０-９]{2}/[0-9]{2}/[0-9]{4}",
        any::<String>(),
    ];
    check(default, strategy, |s| {
        if let Some(d) = hnth_rules::time::parse_date_vi(&s) {
            let back = d.format("%d/%m/%Y").to_string();
            prop_assert_eq!(back, s.trim());
        }
        let _ = BookingStatus::parse(&s);
        let _ = Layout::parse(&s);
        let _ = Role::parse(&s);
        let _ = hnth_rules::RuleId::parse(&s);
        let _ = serde_json::from_str::<Command>(&s);
        let _ = serde_json::from_str::<Meeting>(&s);
        Ok(())
    });
}
