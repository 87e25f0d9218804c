//! B3 (Art. 5.2): meetings must not overlap at a site or beyond the control center's capacity,
//! preparation windows included; B5 (Art. 5.3): an emergency meeting may displace planned ones.

use super::{BookingId, BookingSlot, BookingStatus, Settings, SiteId};
use crate::time::format_datetime_vi;
use crate::{RuleId, Violation};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;

/// Why a candidate booking cannot share its window with existing bookings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Conflict {
    /// `site` is also in booking `other`, whose window overlaps the candidate's.
    SiteBusy {
        site: SiteId,
        other: BookingId,
        other_title: String,
    },
    /// At `at` (the first instant of the peak) `simultaneous` bookings, the candidate included,
    /// would run at once, more than the control center's `capacity`; `others` are the existing
    /// bookings running then.
    Capacity {
        at: DateTime<Utc>,
        simultaneous: u32,
        capacity: u32,
        others: Vec<BookingId>,
    },
}

impl Conflict {
    /// The B3 refusal, naming sites by id (`#12`).
    pub fn violation(&self) -> Violation {
        self.violation_named(|site| format!("#{site}"))
    }

    /// The B3 refusal, naming sites with `site_name`.
    pub fn violation_named(&self, site_name: impl Fn(SiteId) -> String) -> Violation {
        let rule = RuleId::B3;
        let (en_art, vi_art) = (rule.article_en(), rule.article_vi());
        match self {
            Conflict::SiteBusy {
                site,
                other,
                other_title,
            } => {
                let site = site_name(*site);
                Violation::new(
                    rule,
                    "site_busy",
                    format!(
                        "Site {site} is already booked for \"{other_title}\" (booking #{other}) at an \
                         overlapping time, preparation included ({en_art})."
                    ),
                    format!(
                        "Điểm cầu {site} đã được đăng ký cho \"{other_title}\" (đăng ký #{other}) trong \
                         khoảng thời gian trùng, kể cả thời gian chuẩn bị ({vi_art})."
                    ),
                )
            }
            Conflict::Capacity {
                at,
                simultaneous,
                capacity,
                others,
            } => {
                let at = format_datetime_vi(*at);
                let list = others
                    .iter()
                    .map(|id| format!("#{id}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Violation::new(
                    rule,
                    "control_center_capacity",
                    format!(
                        "The control center runs at most {capacity} meetings at once; from {at} there \
                         would be {simultaneous} (with bookings {list}) ({en_art})."
                    ),
                    format!(
                        "Trung tâm điều khiển chỉ điều hành tối đa {capacity} cuộc họp cùng lúc; từ \
                         {at} sẽ có {simultaneous} cuộc họp (cùng các đăng ký {list}) ({vi_art})."
                    ),
                )
            }
        }
    }
}

/// B3: the conflicts of `candidate` with the `existing` bookings. Only submitted, approved and
/// held bookings block, and `candidate` itself (same id) is ignored, so an edited booking can
/// be checked against the list that still holds its old version. Windows are half-open
/// `[preparation_start, end)`. Site conflicts come first, in the order of `existing`, then at
/// most one capacity conflict.
pub fn find_conflicts(
    candidate: &BookingSlot,
    existing: &[BookingSlot],
    settings: &Settings,
) -> Vec<Conflict> {
    let others = blocking_overlaps(candidate, existing);
    let mut conflicts: Vec<Conflict> = others
        .iter()
        .flat_map(|b| site_conflicts(candidate, b, settings.control_center_site))
        .collect();
    conflicts.extend(capacity_conflict(
        candidate,
        &others,
        settings.control_center_capacity,
    ));
    conflicts
}

/// The outcome of [`plan_emergency`]: the planned bookings the emergency displaces (to be
/// cancelled, with the organizers told and the displacement recorded), by id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct EmergencyPlan {
    pub displaced: Vec<BookingId>,
}

/// B5: how emergency `candidate` fits in. Every planned (non-emergency) booking that shares a
/// site with it is displaced; then, while the control center's capacity is exceeded, one more
/// planned booking running at the peak is displaced (one not yet in progress before a held
/// one, then the latest official start, then the highest id). Emergencies never displace each
/// other: a conflict with one is refused with B3. A non-emergency candidate is refused (B5).
pub fn plan_emergency(
    candidate: &BookingSlot,
    existing: &[BookingSlot],
    settings: &Settings,
) -> Result<EmergencyPlan, Violation> {
    if !candidate.emergency {
        let rule = RuleId::B5;
        return Err(Violation::new(
            rule,
            "not_an_emergency",
            format!(
                "Only an emergency meeting may displace planned meetings ({}).",
                rule.article_en()
            ),
            format!(
                "Chỉ cuộc họp đột xuất, khẩn cấp mới được thay thế cuộc họp đã lên lịch ({}).",
                rule.article_vi()
            ),
        ));
    }
    let mut others = blocking_overlaps(candidate, existing);
    let mut displaced = BTreeSet::new();
    for b in &others {
        if let Some(conflict) = site_conflicts(candidate, b, settings.control_center_site).next() {
            if b.emergency {
                return Err(conflict.violation());
            }
            displaced.insert(b.id);
        }
    }
    others.retain(|b| !displaced.contains(&b.id));
    while let Some(conflict) =
        capacity_conflict(candidate, &others, settings.control_center_capacity)
    {
        let Conflict::Capacity {
            others: running, ..
        } = &conflict
        else {
            unreachable!()
        };
        let victim = others
            .iter()
            .filter(|b| running.contains(&b.id) && !b.emergency)
            .max_by_key(|b| (b.status != BookingStatus::Held, b.official_start, b.id))
            .map(|b| b.id);
        let Some(victim) = victim else {
            return Err(conflict.violation());
        };
        displaced.insert(victim);
        others.retain(|b| b.id != victim);
    }
    Ok(EmergencyPlan {
        displaced: displaced.into_iter().collect(),
    })
}

/// The B5 record for a planned booking displaced by an emergency, for its organizer and the log.
pub fn displacement_violation(displaced: &BookingSlot, emergency: &BookingSlot) -> Violation {
    let rule = RuleId::B5;
    Violation::new(
        rule,
        "displaced_by_emergency",
        format!(
            "\"{}\" (booking #{}) is displaced by the emergency meeting \"{}\" (booking #{}) ({}).",
            displaced.title,
            displaced.id,
            emergency.title,
            emergency.id,
            rule.article_en()
        ),
        format!(
            "\"{}\" (đăng ký #{}) bị thay thế bởi cuộc họp đột xuất, khẩn cấp \"{}\" (đăng ký #{}) ({}).",
            displaced.title,
            displaced.id,
            emergency.title,
            emergency.id,
            rule.article_vi()
        ),
    )
}

/// The blocking bookings other than `candidate` whose windows overlap it.
fn blocking_overlaps<'a>(
    candidate: &BookingSlot,
    existing: &'a [BookingSlot],
) -> Vec<&'a BookingSlot> {
    existing
        .iter()
        .filter(|b| b.id != candidate.id && b.status.blocks() && b.overlaps(candidate))
        .collect()
}

/// One conflict per site shared by `candidate` and the overlapping booking `other`, but the
/// control center's own site (`control_center`), which the capacity rule counts instead.
fn site_conflicts<'a>(
    candidate: &BookingSlot,
    other: &'a BookingSlot,
    control_center: Option<SiteId>,
) -> impl Iterator<Item = Conflict> + 'a {
    let mine: BTreeSet<SiteId> = (candidate.sites.iter().copied())
        .filter(|s| Some(*s) != control_center)
        .collect();
    let shared: BTreeSet<SiteId> = other
        .sites
        .iter()
        .copied()
        .filter(|s| mine.contains(s))
        .collect();
    shared.into_iter().map(move |site| Conflict::SiteBusy {
        site,
        other: other.id,
        other_title: other.title.clone(),
    })
}

/// Sweeps the endpoints of the `others` (which overlap `candidate`), clipped to the candidate's
/// window, for the peak number of simultaneous bookings; a conflict if, with the candidate, it
/// exceeds `capacity`.
fn capacity_conflict(
    candidate: &BookingSlot,
    others: &[&BookingSlot],
    capacity: u32,
) -> Option<Conflict> {
    let mut events: Vec<(DateTime<Utc>, i8, BookingId)> = others
        .iter()
        .flat_map(|b| {
            [
                (
                    b.preparation_start.max(candidate.preparation_start),
                    1,
                    b.id,
                ),
                (b.end.min(candidate.end), -1, b.id),
            ]
        })
        .collect();
    // At one instant ends (-1) sort before starts (+1): windows are half-open.
    events.sort();
    let mut running = BTreeSet::new();
    let mut peak = (1, candidate.preparation_start, Vec::new());
    for (at, delta, id) in events {
        if delta < 0 {
            running.remove(&id);
        } else {
            running.insert(id);
            let n = running.len() as u32 + 1;
            if n > peak.0 {
                peak = (n, at, running.iter().copied().collect());
            }
        }
    }
    let (simultaneous, at, others) = peak;
    (simultaneous > capacity).then_some(Conflict::Capacity {
        at,
        simultaneous,
        capacity,
        others,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, slot};
    use super::*;

    fn ids(conflicts: &[Conflict]) -> Vec<String> {
        conflicts
            .iter()
            .map(|c| match c {
                Conflict::SiteBusy { site, other, .. } => format!("site {site} with #{other}"),
                Conflict::Capacity {
                    simultaneous,
                    others,
                    ..
                } => format!("capacity {simultaneous} with {others:?}"),
            })
            .collect()
    }

    #[test]
    fn site_overlaps() {
        let s = Settings::default();
        // Existing #1 at sites 1, 2: preparing from 08:00, ending 10:00.
        let existing = [slot(1, &[1, 2], (8, 0), (10, 0))];
        let cases: [(&str, BookingSlot, &[&str]); 7] = [
            ("touches the end", slot(9, &[2, 3], (10, 0), (11, 0)), &[]),
            ("touches the start", slot(9, &[2, 3], (7, 0), (8, 0)), &[]),
            (
                "one minute into the end",
                slot(9, &[2, 3], (9, 59), (11, 0)),
                &["site 2 with #1"],
            ),
            (
                "one minute into the preparation",
                slot(9, &[3, 2], (7, 0), (8, 1)),
                &["site 2 with #1"],
            ),
            (
                "inside, both sites",
                slot(9, &[2, 1], (8, 30), (9, 0)),
                &["site 1 with #1", "site 2 with #1"],
            ),
            ("other sites", slot(9, &[3, 4], (8, 0), (10, 0)), &[]),
            ("itself (an edit)", slot(1, &[1, 2], (8, 30), (11, 0)), &[]),
        ];
        for (name, candidate, expected) in cases {
            assert_eq!(
                ids(&find_conflicts(&candidate, &existing, &s)),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn only_submitted_approved_and_held_block() {
        let s = Settings::default();
        let candidate = slot(9, &[1], (8, 0), (10, 0));
        for status in BookingStatus::ALL {
            let existing = [BookingSlot {
                status: *status,
                ..slot(1, &[1], (8, 0), (10, 0))
            }];
            let blocked = !find_conflicts(&candidate, &existing, &s).is_empty();
            assert_eq!(blocked, status.blocks(), "{status}");
        }
    }

    #[test]
    fn control_center_capacity() {
        let s = Settings::default(); // capacity 2
        let candidate = slot(9, &[9], (8, 0), (12, 0));
        let cases: [(&str, Vec<BookingSlot>, &[&str]); 5] = [
            ("one at a time", vec![slot(1, &[1], (8, 0), (10, 0))], &[]),
            (
                "two back to back",
                vec![
                    slot(1, &[1], (8, 0), (10, 0)),
                    slot(2, &[2], (10, 0), (12, 0)),
                ],
                &[],
            ),
            (
                "two overlapping by a minute",
                vec![
                    slot(1, &[1], (8, 0), (10, 1)),
                    slot(2, &[2], (10, 0), (12, 0)),
                ],
                &["capacity 3 with [1, 2]"],
            ),
            (
                "three in sequence, two outside the window",
                vec![
                    slot(1, &[1], (6, 0), (8, 0)),
                    slot(2, &[2], (9, 0), (10, 0)),
                    slot(3, &[3], (12, 0), (13, 0)),
                ],
                &[],
            ),
            (
                "peak of four",
                vec![
                    slot(1, &[1], (8, 0), (11, 0)),
                    slot(2, &[2], (9, 0), (11, 0)),
                    slot(3, &[3], (10, 0), (11, 0)),
                ],
                &["capacity 4 with [1, 2, 3]"],
            ),
        ];
        for (name, existing, expected) in cases {
            assert_eq!(
                ids(&find_conflicts(&candidate, &existing, &s)),
                expected,
                "{name}"
            );
        }
        let existing = [
            slot(1, &[1], (8, 0), (11, 0)),
            slot(2, &[2], (9, 0), (11, 0)),
        ];
        let conflicts = find_conflicts(&candidate, &existing, &s);
        assert!(matches!(conflicts[0], Conflict::Capacity { at: t, .. } if t == at(20, 9, 0)));
        let v = conflicts[0].violation();
        assert_eq!(
            (v.rule, v.article, v.code),
            (RuleId::B3, "5.2", "control_center_capacity")
        );
        assert!(
            v.en.contains("from 20/05/2014 09:00 there would be 3 (with bookings #1, #2)"),
            "{}",
            v.en
        );
        assert!(v.vi.contains("tối đa 2 cuộc họp"), "{}", v.vi);

        let none = Settings {
            control_center_capacity: 0,
            ..Settings::default()
        };
        assert_eq!(
            ids(&find_conflicts(&candidate, &[], &none)),
            ["capacity 1 with []"]
        );
        let three = Settings {
            control_center_capacity: 3,
            ..Settings::default()
        };
        assert!(find_conflicts(&candidate, &existing, &three).is_empty());
    }

    /// Meetings hosted at the control center's own site do not conflict with each other site by
    /// site: the capacity rule decides; its other sites still conflict.
    #[test]
    fn the_control_center_site_counts_by_capacity() {
        let cc = 7;
        let with_cc = Settings {
            control_center_site: Some(cc),
            ..Settings::default() // capacity 2
        };
        let candidate = slot(9, &[cc, 3], (8, 0), (10, 0));
        let one = [slot(1, &[cc, 1], (8, 0), (10, 0))];
        assert_eq!(
            ids(&find_conflicts(&candidate, &one, &Settings::default())),
            ["site 7 with #1"],
            "without knowing the control center's site, as before"
        );
        assert!(find_conflicts(&candidate, &one, &with_cc).is_empty());
        let two = [one[0].clone(), slot(2, &[cc, 2], (9, 0), (11, 0))];
        assert_eq!(
            ids(&find_conflicts(&candidate, &two, &with_cc)),
            ["capacity 3 with [1, 2]"]
        );
        let shared = [slot(1, &[cc, 3], (8, 0), (10, 0))];
        assert_eq!(
            ids(&find_conflicts(&candidate, &shared, &with_cc)),
            ["site 3 with #1"]
        );
        // An emergency at the control center displaces nothing for sharing it.
        let e = BookingSlot {
            emergency: true,
            ..candidate.clone()
        };
        assert_eq!(
            plan_emergency(&e, &one, &with_cc).unwrap().displaced,
            Vec::<BookingId>::new()
        );
    }

    #[test]
    fn site_conflict_message_names_booking_and_site() {
        let existing = [slot(1, &[1, 2], (8, 0), (10, 0))];
        let c = &find_conflicts(
            &slot(9, &[2], (9, 0), (11, 0)),
            &existing,
            &Settings::default(),
        )[0];
        let v = c.violation_named(|id| format!("UBND huyện {id}"));
        assert_eq!((v.rule, v.code), (RuleId::B3, "site_busy"));
        assert!(
            v.en.starts_with("Site UBND huyện 2 is already booked for \"Họp 1\" (booking #1)"),
            "{}",
            v.en
        );
        assert!(
            v.vi.starts_with("Điểm cầu UBND huyện 2 đã được đăng ký cho \"Họp 1\""),
            "{}",
            v.vi
        );
        assert!(v.vi.contains("khoản 2 Điều 5"), "{}", v.vi);
    }

    #[test]
    fn emergencies_displace_planned_meetings() {
        let s = Settings::default();
        let emergency = |sites: &[SiteId]| BookingSlot {
            emergency: true,
            ..slot(9, sites, (8, 0), (12, 0))
        };
        let held = |b: BookingSlot| BookingSlot {
            status: BookingStatus::Held,
            ..b
        };
        let urgent = |b: BookingSlot| BookingSlot {
            emergency: true,
            ..b
        };
        type Case = (
            &'static str,
            BookingSlot,
            Vec<BookingSlot>,
            Result<&'static [BookingId], &'static str>,
        );
        let cases: [Case; 7] = [
            (
                "nothing in the way",
                emergency(&[1]),
                vec![slot(1, &[2], (8, 0), (9, 0))],
                Ok(&[]),
            ),
            (
                "same site",
                emergency(&[1]),
                vec![slot(1, &[1, 2], (8, 0), (9, 0))],
                Ok(&[1]),
            ),
            (
                "capacity: the latest start goes",
                emergency(&[1]),
                vec![
                    slot(2, &[2], (9, 0), (11, 0)),
                    slot(3, &[3], (8, 0), (11, 0)),
                ],
                Ok(&[2]),
            ),
            (
                "capacity: a held meeting goes last",
                emergency(&[1]),
                vec![
                    held(slot(2, &[2], (9, 0), (11, 0))),
                    slot(3, &[3], (8, 0), (11, 0)),
                ],
                Ok(&[3]),
            ),
            (
                "capacity: the emergency is kept",
                emergency(&[1]),
                vec![
                    urgent(slot(2, &[2], (9, 0), (11, 0))),
                    slot(3, &[3], (8, 0), (11, 0)),
                ],
                Ok(&[3]),
            ),
            (
                "same site as another emergency",
                emergency(&[1]),
                vec![urgent(slot(2, &[1], (9, 0), (11, 0)))],
                Err("site_busy"),
            ),
            (
                "capacity full of emergencies",
                emergency(&[1]),
                vec![
                    urgent(slot(2, &[2], (9, 0), (11, 0))),
                    urgent(slot(3, &[3], (8, 0), (11, 0))),
                ],
                Err("control_center_capacity"),
            ),
        ];
        for (name, candidate, existing, expected) in cases {
            let got = plan_emergency(&candidate, &existing, &s);
            match expected {
                Ok(displaced) => {
                    assert_eq!(got.map(|p| p.displaced), Ok(displaced.to_vec()), "{name}")
                }
                Err(code) => assert_eq!(
                    got.map_err(|v| (v.rule, v.code)),
                    Err((RuleId::B3, code)),
                    "{name}"
                ),
            }
        }
        let planned = slot(9, &[1], (8, 0), (12, 0));
        assert_eq!(
            plan_emergency(&planned, &[], &s).unwrap_err().code,
            "not_an_emergency"
        );
    }

    #[test]
    fn displacement_is_recorded_in_both_languages() {
        let planned = slot(1, &[1], (8, 0), (9, 0));
        let emergency = BookingSlot {
            emergency: true,
            title: "Phòng chống bão".into(),
            ..slot(9, &[1], (8, 0), (12, 0))
        };
        let v = displacement_violation(&planned, &emergency);
        assert_eq!((v.rule, v.article), (RuleId::B5, "5.3"));
        assert!(v.en.contains(
            "\"Họp 1\" (booking #1) is displaced by the emergency meeting \"Phòng chống bão\""
        ));
        assert!(v.vi.contains("khoản 3 Điều 5"));
    }
}
