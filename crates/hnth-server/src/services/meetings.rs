//! The meetings' use cases, as the signaling hub runs them (Art. 5–7): open a booking's meeting
//! (B4: only a confirmed registration, on its day) or an emergency one registered in the same
//! step (B5), record the sites added and dropped (C6), the technical parameters changed (P3,
//! A3), each site's connections (C2), the meeting's course as it changes (C1, C3, C4, C8) and a
//! microphone opened without the floor (R4), and close it. Each checks the role here too (A1,
//! C6) and writes through the store in one transaction; who is connected where, live, stays in
//! the hub (`live/signaling.rs`).

use chrono::{DateTime, TimeDelta, Utc};
use hnth_rules::booking::{BookingKind, BookingStatus};
use hnth_rules::meeting::{check_opening, Params, OPEN_LATE};
use hnth_rules::roles::{authorize, Action};
use hnth_rules::{RuleId, Violation};
use serde_json::json;

use crate::services::mail::{self, Outbox};
use crate::store::accounts::Account;
use crate::store::bookings::{Booking, Fields};
use crate::store::{self, Db, Tx};

/// The longest meeting title, in characters.
pub const MAX_TITLE: usize = 200;
/// How long an emergency opened at once is booked for; its record keeps when it really closed.
pub const EMERGENCY_LENGTH: TimeDelta = TimeDelta::hours(2);

/// Why a use case did nothing.
#[derive(Debug)]
pub enum Refused {
    /// A rule refuses it (the role, C6, B4).
    Rule(Violation),
    /// The title is empty or longer than [`MAX_TITLE`].
    Title,
    /// No such booking, meeting or site.
    NotFound(&'static str),
    /// The booking's meeting is open already.
    AlreadyOpen(i64),
    /// The database failed.
    Store(store::Error),
}

impl From<store::Error> for Refused {
    fn from(e: store::Error) -> Self {
        Refused::Store(e)
    }
}

fn permit(account: &Account, action: &Action<'_>) -> Result<(), Refused> {
    authorize(account.role, account.scope(), action).map_err(Refused::Rule)
}

/// Who a change is written in the audit trail as: an account, or the system (a meeting opened
/// by itself at its preparation time, `meeting.auto_connect`).
fn actor(account: Option<&Account>) -> (Option<i64>, &str) {
    match account {
        Some(a) => (Some(a.id), a.username.as_str()),
        None => (None, "system"),
    }
}

/// A meeting just opened: its id and the booking it belongs to.
#[derive(Debug, Clone)]
pub struct Opened {
    pub id: i64,
    pub booking: Booking,
}

/// Opens the meeting of booking `booking` at `now` (by `account`, or by the system at the
/// preparation time): only an approved booking, on its day (B4); the booking is then held.
pub async fn open_booking(
    db: &Db,
    account: Option<&Account>,
    booking: i64,
    now: DateTime<Utc>,
) -> Result<Opened, Refused> {
    if let Some(a) = account {
        permit(a, &Action::OpenMeeting)?;
    }
    let mut tx = store::begin_write(db).await?;
    let b = store::bookings::get_in(&mut tx, booking)
        .await?
        .ok_or(Refused::NotFound("no such booking"))?;
    let ts = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
    check_opening(b.status(), ts(b.preparation_start), ts(b.official_end), now)
        .map_err(Refused::Rule)?;
    if let Some(open) = store::meetings::open_of_booking(&mut tx, booking).await? {
        return Err(Refused::AlreadyOpen(open));
    }
    let (actor_id, username) = actor(account);
    let id = store::meetings::insert_opened(&mut tx, booking, actor_id, &b.title, now.timestamp())
        .await?;
    if b.status() == BookingStatus::Approved {
        store::bookings::set_status(
            &mut tx,
            booking,
            BookingStatus::Held,
            None,
            actor_id.unwrap_or(0),
            now.timestamp(),
        )
        .await?;
        audit_booking(
            &mut tx,
            actor_id,
            username,
            booking,
            "booking_held",
            &b,
            "held",
        )
        .await?;
    }
    audit_opened(&mut tx, actor_id, username, id, &b).await?;
    let b = store::bookings::get_in(&mut tx, booking)
        .await?
        .ok_or(Refused::NotFound("no such booking"))?;
    tx.commit().await?;
    Ok(Opened { id, booking: b })
}

/// The server stops (SIGTERM, Ctrl-C): every site connection still open ends at `now`, the
/// interruption recorded with the stop's time; the meetings stay open, to come back at the next
/// start ([`restore`]).
pub async fn stopping(db: &Db, run: i64, now: DateTime<Utc>) -> Result<(), store::Error> {
    let mut tx = store::begin_write(db).await?;
    store::meetings::end_connections(&mut tx, now.timestamp()).await?;
    tx.commit().await?;
    store::meetings::run_alive(db, run, now.timestamp(), true).await
}

/// A meeting the server was running when it stopped, to be live again.
#[derive(Debug, Clone)]
pub struct Restored {
    pub id: i64,
    pub booking: Booking,
    /// Its course as last written, every site not connected.
    pub state: hnth_rules::meeting::Meeting,
}

/// At start: the meetings the last run of the server left open come back with their course
/// (Art. 7: the floor, the frame, the speak requests, the roll call); their sites are called
/// again as their apps reconnect. The last run's site connections end at `now` (when they really
/// ended is not known). A meeting that cannot come back (kept from before bookings opened
/// meetings, without a readable state, or its booking over for more than [`OPEN_LATE`]) is
/// closed at `now`. One transaction.
pub async fn restore(db: &Db, now: DateTime<Utc>) -> Result<Restart, store::Error> {
    let mut tx = store::begin_write(db).await?;
    // The last run ended at its stop, or (a crash) at its last sign of life: its connections
    // end then, and what cannot come back is closed then, so that the record shows the
    // interruption as it was, not the restart.
    let at = store::meetings::last_run_end(&mut tx)
        .await?
        .map_or(now.timestamp(), |t| t.min(now.timestamp()));
    store::meetings::end_connections(&mut tx, at).await?;
    let mut restored = Vec::new();
    for m in store::meetings::open(&mut tx).await? {
        let state = (m.state.as_deref())
            .and_then(|s| serde_json::from_str::<hnth_rules::meeting::Meeting>(s).ok());
        let booking = match m.booking_id {
            Some(b) => store::bookings::get_in(&mut tx, b).await?,
            None => None,
        };
        // A meeting whose booking is long over (B4's window for opening it has passed: the
        // server was down for hours) is not brought back into a day it no longer belongs to.
        let over = |b: &Booking| b.official_end + OPEN_LATE.num_seconds() < at;
        match (state, booking) {
            (Some(mut state), Some(booking)) if !over(&booking) => {
                state.after_restart();
                restored.push(Restored {
                    id: m.id,
                    booking,
                    state,
                });
            }
            _ => {
                tracing::warn!(meeting = m.id, "an open meeting cannot come back: closed");
                store::meetings::set_closed(&mut tx, m.id, None, at).await?;
            }
        }
    }
    let run = store::meetings::start_run(&mut tx, now.timestamp()).await?;
    tx.commit().await?;
    Ok(Restart {
        meetings: restored,
        run,
        last_run_end: at,
    })
}

/// What a start finds of the last run, and the new run's id.
#[derive(Debug)]
pub struct Restart {
    pub meetings: Vec<Restored>,
    pub run: i64,
    /// When the last run's connections were recorded as ended.
    pub last_run_end: i64,
}

/// How often the running server writes its sign of life: a crash's time is known to this much.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// The server is alive at `now` (every [`HEARTBEAT`]).
pub async fn alive(db: &Db, run: i64, now: DateTime<Utc>) -> Result<(), store::Error> {
    store::meetings::run_alive(db, run, now.timestamp(), false).await
}

/// An emergency meeting opened at once from the console (B5, Art. 5.3): registered as an
/// emergency booking of the control center in the same step (held at once: there is no time to
/// approve it, and the operator who opens it is the control center), its alert queued to the
/// sites, the provider and the technicians.
pub struct Emergency<'a> {
    pub title: &'a str,
    /// Who chairs it; may be empty.
    pub chair: &'a str,
    /// The sites to connect (the control center's own is added).
    pub sites: &'a [i64],
}

pub async fn open_emergency(
    db: &Db,
    outbox: &Outbox,
    account: &Account,
    e: &Emergency<'_>,
    now: DateTime<Utc>,
) -> Result<Opened, Refused> {
    permit(account, &Action::OpenMeeting)?;
    let title = e.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE || title.chars().any(char::is_control)
    {
        return Err(Refused::Title);
    }
    let mut tx = store::begin_write(db).await?;
    let (cc, cc_unit) = store::registry::control_center(&mut tx)
        .await?
        .ok_or(Refused::NotFound("the registry has no control center"))?;
    permit(account, &Action::RegisterBooking { unit: cc_unit })?;
    let mut sites = vec![cc];
    for s in e.sites {
        if !store::registry::site_exists(&mut tx, *s).await? {
            return Err(Refused::NotFound("no such site"));
        }
        if !sites.contains(s) {
            sites.push(*s);
        }
    }
    let at = now.timestamp();
    let fields = Fields {
        title: title.to_string(),
        kind: BookingKind::Hop,
        host_unit_id: cc_unit,
        chair: e.chair.trim().chars().take(MAX_TITLE).collect(),
        host_site_id: cc,
        preparation_start: at,
        official_start: at,
        official_end: (now + EMERGENCY_LENGTH).timestamp(),
        emergency: true,
        notice_number: String::new(),
        notice_date: String::new(),
    };
    let booking =
        store::bookings::insert(&mut tx, &fields, BookingStatus::Held, account.id, at).await?;
    store::bookings::replace_sites(&mut tx, booking, &sites).await?;
    let b = store::bookings::get_in(&mut tx, booking)
        .await?
        .ok_or(Refused::NotFound("no such booking"))?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(account.id),
            actor: &account.username,
            action: "create_booking",
            entity: "booking",
            entity_id: booking.to_string(),
            before: None,
            after: Some(json!({
                "title": b.title, "kind": b.kind, "host_site": b.host_site_id, "sites": b.sites,
                "emergency": true, "status": b.status, "chair": b.chair,
                "official_start": now.to_rfc3339(),
            })),
        },
    )
    .await?;
    let id = store::meetings::insert_opened(&mut tx, booking, Some(account.id), title, at).await?;
    audit_opened(&mut tx, Some(account.id), &account.username, id, &b).await?;
    mail::queue_emergency(&mut tx, &b, now).await?;
    tx.commit().await?;
    outbox.notify_one();
    Ok(Opened { id, booking: b })
}

async fn audit_opened(
    tx: &mut Tx<'_>,
    actor_id: Option<i64>,
    username: &str,
    meeting: i64,
    b: &Booking,
) -> Result<(), store::Error> {
    store::audit::record(
        &mut **tx,
        store::audit::AuditEntry {
            actor_id,
            actor: username,
            action: "open_meeting",
            entity: "meeting",
            entity_id: meeting.to_string(),
            before: None,
            after: Some(json!({"title": b.title, "booking": b.id, "sites": b.sites})),
        },
    )
    .await
}

async fn audit_booking(
    tx: &mut Tx<'_>,
    actor_id: Option<i64>,
    username: &str,
    booking: i64,
    action: &str,
    before: &Booking,
    status: &str,
) -> Result<(), store::Error> {
    store::audit::record(
        &mut **tx,
        store::audit::AuditEntry {
            actor_id,
            actor: username,
            action,
            entity: "booking",
            entity_id: booking.to_string(),
            before: Some(json!({"status": before.status})),
            after: Some(json!({"status": status})),
        },
    )
    .await
}

/// Records meeting `meeting` closed at `now` by `account`, with every site still in it; its
/// booking, held, is closed too.
pub async fn close(
    db: &Db,
    account: &Account,
    meeting: i64,
    now: DateTime<Utc>,
) -> Result<(), Refused> {
    permit(account, &Action::OpenMeeting)?;
    let mut tx = store::begin_write(db).await?;
    let at = now.timestamp();
    if !store::meetings::set_closed(&mut tx, meeting, Some(account.id), at).await? {
        return Err(Refused::NotFound("no open meeting with that id"));
    }
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(account.id),
            actor: &account.username,
            action: "close_meeting",
            entity: "meeting",
            entity_id: meeting.to_string(),
            before: None,
            after: Some(json!({"closed_at": now.to_rfc3339()})),
        },
    )
    .await?;
    let booking = store::meetings::booking_of(&mut tx, meeting).await?;
    if let Some(b) = booking {
        if let Some(bk) = store::bookings::get_in(&mut tx, b).await? {
            if bk.status() == BookingStatus::Held {
                store::bookings::set_status(
                    &mut tx,
                    b,
                    BookingStatus::Closed,
                    None,
                    account.id,
                    at,
                )
                .await?;
                audit_booking(
                    &mut tx,
                    Some(account.id),
                    &account.username,
                    b,
                    "booking_close",
                    &bk,
                    "closed",
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Records `site` added to (`added`) or dropped from `meeting` by the control center (C6), in
/// the audit trail.
pub async fn site_changed(
    db: &Db,
    account: &Account,
    meeting: i64,
    site: i64,
    added: bool,
) -> Result<(), Refused> {
    permit(account, &Action::DialSite)?;
    let mut tx = store::begin_write(db).await?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(account.id),
            actor: &account.username,
            action: if added {
                "meeting_add_site"
            } else {
                "meeting_drop_site"
            },
            entity: "meeting",
            entity_id: meeting.to_string(),
            before: None,
            after: Some(json!({"site_id": site})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Records the meeting's technical parameters (P3) changed by `account`: they are configuration
/// parameters, changed only by the control center and written in the audit trail (A3).
pub async fn params_changed(
    db: &Db,
    account: &Account,
    meeting: i64,
    before: &Params,
    after: &Params,
) -> Result<(), Refused> {
    permit(account, &Action::SetFrame)?;
    let mut tx = store::begin_write(db).await?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(account.id),
            actor: &account.username,
            action: "meeting_params",
            entity: "meeting",
            entity_id: meeting.to_string(),
            before: serde_json::to_value(before).ok(),
            after: serde_json::to_value(after).ok(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The meeting's course as of `at_ms` (milliseconds): the floor, the frame, the speak requests,
/// the roll call (`hnth_rules::meeting::Meeting`, as JSON).
pub async fn save_state(
    db: &Db,
    meeting: i64,
    state: &hnth_rules::meeting::Meeting,
    at_ms: i64,
) -> Result<(), store::Error> {
    let json = serde_json::to_string(state).map_err(|e| store::Error::Decode(Box::new(e)))?;
    store::meetings::save_state(db, meeting, &json, at_ms).await
}

/// A site's media connected to the meeting (`connected`) or its connection ended, at `at`.
pub async fn site_connection(
    db: &Db,
    meeting: i64,
    site: i64,
    connected: bool,
    at: i64,
) -> Result<(), store::Error> {
    if connected {
        store::meetings::site_connected(db, meeting, site, at).await
    } else {
        store::meetings::site_disconnected(db, meeting, site, at).await
    }
}

/// R4 for C4: `site` opened its microphone without the floor (the rules decided it is worth
/// recording: at most once a minute per site).
pub async fn unheard_speech(
    db: &Db,
    meeting: i64,
    site: i64,
    site_name: &str,
    v: &Violation,
) -> Result<(), store::Error> {
    debug_assert_eq!(v.rule, RuleId::C4);
    store::audit::record_violation(
        db,
        v.rule.as_str(),
        None,
        Some(site),
        &format!("meeting {meeting}, {site_name}: {}", v.en),
        &format!("cuộc họp {meeting}, {site_name}: {}", v.vi),
    )
    .await
}

/// The bookings whose meeting may be opened around `now` (approved or held, on their day, B4),
/// by preparation time, for the console's list.
pub async fn bookings_of_the_day(
    db: &Db,
    now: DateTime<Utc>,
) -> Result<Vec<Booking>, store::Error> {
    let all = store::bookings::load(db, None).await?;
    let ts = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
    let mut list: Vec<Booking> = all
        .into_iter()
        .filter(|b| {
            check_opening(b.status(), ts(b.preparation_start), ts(b.official_end), now).is_ok()
        })
        .collect();
    list.sort_by_key(|b| (b.preparation_start, b.id));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnth_rules::roles::Role;

    fn account(id: i64, role: Role, site_id: Option<i64>) -> Account {
        Account {
            id,
            username: "dieuhanh".into(),
            display_name: "Điều hành".into(),
            role,
            site_id,
            unit_id: None,
        }
    }

    /// An emergency of the control center with two districts.
    fn emergency(title: &str) -> Emergency<'_> {
        Emergency {
            title,
            chair: "",
            sites: &[3, 4],
        }
    }

    /// The demo province in a database of its own, and its operator's account.
    async fn demo_and_operator() -> (tempfile::TempDir, Db, Account) {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("hnth.db")).await.unwrap();
        crate::demo::seed(&db, "Mật-khẩu-thử-1234").await.unwrap();
        let id = store::accounts::id_by_username(&db, "dieuhanh")
            .await
            .unwrap()
            .expect("operator");
        let op = store::accounts::active(&db, id)
            .await
            .unwrap()
            .expect("active");
        (dir, db, op)
    }

    /// After a restart: a meeting with its state comes back with its course and nobody
    /// connected; one without a state, or whose booking ended more than OPEN_LATE ago, is
    /// closed; every connection of the last run is ended.
    #[tokio::test]
    async fn a_restart_brings_back_what_can_come_back_and_closes_the_rest() {
        let (_dir, db, op) = demo_and_operator().await;
        let outbox = Outbox::default();
        let now = Utc::now();
        let e = emergency;
        // Opened 7 h 59 min ago: its emergency booking (2 h) ended 5 h 59 min ago, within 6 h;
        // opened 8 h 1 min ago: over; opened now, but no state written yet.
        let mut opened = Vec::new();
        for (title, ago) in [
            ("Còn trong giờ", 479),
            ("Quá giờ", 481),
            ("Chưa có trạng thái", 0),
        ] {
            let at = now - TimeDelta::minutes(ago);
            opened.push(
                open_emergency(&db, &outbox, &op, &e(title), at)
                    .await
                    .unwrap(),
            );
        }
        let [kept, over, stateless] = <[Opened; 3]>::try_from(opened).unwrap();
        for o in [&kept, &over] {
            let mut rules = hnth_rules::meeting::Meeting::new(
                o.booking.host_site_id,
                &[1, 3, 4],
                hnth_rules::meeting::Layout::Speaker,
            );
            rules.site_connected(3, now).unwrap();
            let op_actor = hnth_rules::meeting::Actor {
                role: hnth_rules::roles::Role::Operator,
                scope: hnth_rules::roles::Scope::Province,
            };
            rules
                .apply(
                    op_actor,
                    hnth_rules::meeting::Command::GiveFloor { site: 3 },
                    now,
                )
                .unwrap();
            save_state(&db, o.id, &rules, now.timestamp_millis())
                .await
                .unwrap();
        }
        site_connection(&db, kept.id, 3, true, now.timestamp() - 60)
            .await
            .unwrap();

        // The run before: started an hour ago, last alive 20 s before `now` (then it crashed).
        let mut tx = store::begin_write(&db).await.unwrap();
        let before = store::meetings::start_run(&mut tx, now.timestamp() - 3600)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        alive(&db, before, now - TimeDelta::seconds(20))
            .await
            .unwrap();

        let restart = restore(&db, now).await.unwrap();
        assert_eq!(restart.last_run_end, now.timestamp() - 20);
        assert!(restart.run > before);
        let back = restart.meetings;
        assert_eq!(back.iter().map(|r| r.id).collect::<Vec<_>>(), vec![kept.id]);
        let r = &back[0];
        assert_eq!(r.booking.id, kept.booking.id);
        assert_eq!(r.state.floor, vec![3], "the floor as it was");
        assert!(
            !r.state.is_connected(3),
            "nobody connected before coming back"
        );
        for (o, open) in [(&kept, true), (&over, false), (&stateless, false)] {
            let m = store::meetings::get(&db, o.id).await.unwrap().unwrap();
            assert_eq!(m.closed_at.is_none(), open, "{}", o.booking.title);
        }
        // The connection ended at the crash (the last sign of life), not at the restart.
        let att = store::meetings::attendance(&db, kept.id).await.unwrap();
        assert_eq!(att.len(), 1);
        assert_eq!(att[0].disconnected_at, Some(now.timestamp() - 20));
    }

    #[tokio::test]
    async fn an_emergency_is_registered_and_held_in_the_step_that_opens_it() {
        let (_dir, db, op) = demo_and_operator().await;
        let site = account(99, Role::SiteDevice, Some(3));
        let outbox = Outbox::default();
        let now = Utc::now();
        let e = emergency;
        let long = "x".repeat(MAX_TITLE + 1);
        for bad in ["", "   ", long.as_str(), "a\nb"] {
            assert!(
                matches!(
                    open_emergency(&db, &outbox, &op, &e(bad), now).await,
                    Err(Refused::Title)
                ),
                "{bad:?}"
            );
        }
        let Err(Refused::Rule(v)) = open_emergency(&db, &outbox, &site, &e("Bão số 9"), now).await
        else {
            panic!("a site opened a meeting");
        };
        assert_eq!(v.rule, RuleId::A1);
        let bad_site = Emergency {
            title: "Bão số 9",
            chair: "",
            sites: &[3, 999],
        };
        assert!(matches!(
            open_emergency(&db, &outbox, &op, &bad_site, now).await,
            Err(Refused::NotFound(_))
        ));
        assert!(store::meetings::list(&db, Default::default())
            .await
            .unwrap()
            .is_empty());
        let o = open_emergency(&db, &outbox, &op, &e("  Bão số 9  "), now)
            .await
            .unwrap();
        assert_eq!(o.booking.title, "Bão số 9");
        assert!(o.booking.emergency);
        assert_eq!(o.booking.status(), BookingStatus::Held);
        assert!(o.booking.sites.contains(&3) && o.booking.sites.contains(&4));
        let m = store::meetings::get(&db, o.id).await.unwrap().unwrap();
        assert_eq!(m.booking_id, Some(o.booking.id));
        assert_eq!(m.opened_by.as_deref(), Some("dieuhanh"));
        close(&db, &op, o.id, now).await.unwrap();
        let m = store::meetings::get(&db, o.id).await.unwrap().unwrap();
        assert_eq!(m.closed_by.as_deref(), Some("dieuhanh"));
        let b = store::bookings::get(&db, o.booking.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.status(), BookingStatus::Closed);
        assert!(matches!(
            close(&db, &op, o.id, now).await,
            Err(Refused::NotFound(_))
        ));
        // A closed (not approved) booking does not open again (B4).
        let Err(Refused::Rule(v)) = open_booking(&db, Some(&op), o.booking.id, now).await else {
            panic!("a closed booking opened");
        };
        assert_eq!((v.rule, v.code), (RuleId::B4, "not_approved"));
    }
}
