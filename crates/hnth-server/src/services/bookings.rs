//! Art. 5: registering meetings (bookings) and their workflow, for the pages and the JSON API
//! alike. The rules themselves live in `hnth_rules::booking`; this module asks them, writes
//! through the store in one transaction (with its audit entry and its notices), and answers
//! with the result or every refusal at once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hnth_rules::booking::{
    self, check_approver, check_lead_time, check_submission, find_conflicts, plan_emergency,
    transition, validate, Action as Step, BookingKind, BookingSlot, BookingStatus,
};
use hnth_rules::roles::{allowed, authorize, Action, Role, Scope};
use hnth_rules::{RuleId, Violation};
use serde_json::json;

use crate::services::mail::{self, Outbox};
use crate::store::bookings::{Booking, Fields, FileInfo};
use crate::store::{self, Db, Tx};

/// Who acts: the logged-in account (page session or API token).
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub unit_id: Option<i64>,
    pub scope: Scope,
}

impl Actor {
    pub fn is_control_center(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator)
    }
}

/// What the use cases need of the server.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub db: &'a Db,
    pub rules: &'a booking::Settings,
    /// Woken after notices were queued.
    pub outbox: &'a Outbox,
}

/// B3: checking a booking against the others and writing it must not interleave with another
/// registration or workflow step, or two overlapping requests could both pass the check (and two
/// approvals of one booking could both queue its notices).
static WRITE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// The written notice (B1) of a registration or an edit.
#[derive(Debug, Default, Clone)]
pub enum FileChange {
    /// Nothing new: an edit keeps the stored one.
    #[default]
    Keep,
    /// A PDF (already checked to be one, at most [`NOTICE_FILE_MAX`]).
    Put { name: String, data: Vec<u8> },
    /// An edit removes the stored one.
    Remove,
}

/// B1 (Art. 5.1): the written notice (công văn) may come with the booking as a PDF of at most this.
pub const NOTICE_FILE_MAX: usize = 5 * 1024 * 1024;

/// A booking as submitted (the form's or the API's fields, already parsed). A field the caller
/// could not parse is `None` (or left out of `sites`), with its error in the caller's
/// [`FieldErrors`].
#[derive(Debug, Default, Clone)]
pub struct Input {
    pub title: String,
    /// `BookingKind` as stored (`hop`, ...).
    pub kind: String,
    pub host_unit: Option<i64>,
    pub chair: String,
    pub host_site: Option<i64>,
    /// The sites taking part (the host site is added if missing).
    pub sites: Vec<i64>,
    /// `None`: P2's default before the official start.
    pub preparation_start: Option<DateTime<Utc>>,
    pub official_start: Option<DateTime<Utc>>,
    pub official_end: Option<DateTime<Utc>>,
    pub emergency: bool,
    pub notice_number: String,
    /// `dd/mm/yyyy`, or empty.
    pub notice_date: String,
    pub file: FileChange,
}

/// Field → the key of its message in the dictionaries (`bk_err_title`, ...): the pages show it
/// in their language, the API in English.
pub type FieldErrors = BTreeMap<&'static str, &'static str>;

/// B3 (and B5) as the conflict check finds them.
#[derive(Debug, Clone)]
pub enum Conflicts {
    /// No valid time window yet.
    Unchecked,
    /// No overlap.
    Free,
    /// Each overlap (B3), or an emergency that cannot displace what it overlaps (B5).
    Overlaps(Vec<Violation>),
    /// An emergency meeting and the planned ones it would displace (B5).
    Displaces(Vec<BookingSlot>),
}

/// The review of an [`Input`]: every error at once.
#[derive(Debug)]
pub struct Review {
    /// The fields' errors (the caller's and the service's).
    pub errors: FieldErrors,
    /// The rules' refusals other than overlaps (B1 lead time, the time window, ...).
    pub refusals: Vec<Violation>,
    /// The overlaps that refuse it (B3, B5): refused when registering or saving.
    pub overlaps: Vec<Violation>,
    pub conflicts: Conflicts,
    checked: Option<Checked>,
}

/// An input that passed every check: what is stored.
#[derive(Debug)]
struct Checked {
    fields: Fields,
    /// With the edited booking's id when editing (0 when registering).
    slot: BookingSlot,
    /// B5: the planned bookings an emergency displaces.
    displaced: Vec<BookingSlot>,
}

/// Why a use case did nothing.
#[derive(Debug)]
pub enum Refusal {
    NotFound,
    /// A1: the role or its scope may not (`roles::authorize`'s refusal).
    Forbidden(Violation),
    /// A rule refuses who does it (separation of duties, A1 Art. 3): 403 with the rule.
    Denied(Violation),
    /// A rule refuses it (the workflow, B1, B3): 422 with the rule.
    Rule(Violation),
    /// One field is wrong (its message key).
    Field {
        key: &'static str,
    },
    /// The registration or edit: every field's error and every rule's refusal.
    Invalid(Box<Review>),
    Store(store::Error),
}

impl From<store::Error> for Refusal {
    fn from(e: store::Error) -> Self {
        Refusal::Store(e)
    }
}

/// What registering or editing stored.
#[derive(Debug)]
pub struct Saved {
    pub id: i64,
    pub title: String,
    pub sites: Vec<i64>,
    /// B5: an emergency was registered; the caller raises the alert on the consoles.
    pub emergency_alert: bool,
}

/// A1: the refusal of `action` to the actor, if refused.
fn authorized(actor: &Actor, action: &Action) -> Result<(), Refusal> {
    authorize(actor.role, actor.scope, action).map_err(Refusal::Forbidden)
}

/// A1: registering is refused to a role that registers for no unit.
fn register_refused(actor: &Actor) -> Refusal {
    let unit = actor.unit_id.unwrap_or_default();
    authorize(actor.role, actor.scope, &Action::RegisterBooking { unit })
        .err()
        .map_or_else(
            || Refusal::Forbidden(not_control_center(actor)),
            Refusal::Forbidden,
        )
}

/// A1 (Art. 3): what only the control center does.
fn not_control_center(actor: &Actor) -> Violation {
    Violation::new(
        RuleId::A1,
        "not_permitted",
        format!(
            "The {} role may not do this; the control center does ({}).",
            actor.role.label_en(),
            RuleId::A1.article_en()
        ),
        format!(
            "Vai trò {} không được làm việc này; do trung tâm điều hành thực hiện ({}).",
            actor.role.label_vi(),
            RuleId::A1.article_vi()
        ),
    )
}

/// A1: whether the actor may see this booking (its host unit, its sites).
pub fn may_view(actor: &Actor, b: &Booking) -> bool {
    allowed(
        actor.role,
        actor.scope,
        &Action::ViewBooking {
            unit: b.host_unit_id,
            sites: &b.sites,
        },
    )
}

/// A1: the actor may register for some unit, or the refusal.
pub fn require_register(actor: &Actor) -> Result<(), Refusal> {
    if may_register_any(actor) {
        Ok(())
    } else {
        Err(register_refused(actor))
    }
}

/// Whether the actor may register for some unit.
pub fn may_register_any(actor: &Actor) -> bool {
    match actor.role {
        Role::Admin | Role::Operator => true,
        Role::Organizer => actor.unit_id.is_some(),
        _ => false,
    }
}

/// Who may edit `b`, and whether its status allows it: the roles that may register for its host
/// unit (A1), while it is a draft, submitted or approved (B4, `transition` with `Edit`).
pub fn may_edit(actor: &Actor, b: &Booking) -> Result<BookingStatus, Option<Violation>> {
    if !allowed(
        actor.role,
        actor.scope,
        &Action::RegisterBooking {
            unit: b.host_unit_id,
        },
    ) {
        return Err(None);
    }
    transition(b.status(), &Step::Edit, actor.role).map_err(Some)
}

/// The units the actor may register a meeting for (an organizer: its own).
pub async fn host_units_for(db: &Db, actor: &Actor) -> Result<Vec<(i64, String)>, store::Error> {
    let units = store::bookings::host_units(db).await?;
    Ok(match actor.role {
        Role::Organizer => units
            .into_iter()
            .filter(|(id, _)| Some(*id) == actor.unit_id)
            .collect(),
        _ => units,
    })
}

/// A booking the actor may see.
pub async fn viewable(db: &Db, actor: &Actor, id: i64) -> Result<Booking, Refusal> {
    let Some(b) = store::bookings::get(db, id).await? else {
        return Err(Refusal::NotFound);
    };
    authorized(
        actor,
        &Action::ViewBooking {
            unit: b.host_unit_id,
            sites: &b.sites,
        },
    )?;
    Ok(b)
}

/// A booking the actor may edit now.
pub async fn editable(
    db: &Db,
    actor: &Actor,
    id: i64,
) -> Result<(Booking, BookingStatus), Refusal> {
    let b = viewable(db, actor, id).await?;
    match may_edit(actor, &b) {
        Ok(to) => Ok((b, to)),
        Err(None) => Err(authorized(
            actor,
            &Action::RegisterBooking {
                unit: b.host_unit_id,
            },
        )
        .err()
        .unwrap_or_else(|| register_refused(actor))),
        Err(Some(v)) => Err(Refusal::Rule(v)),
    }
}

/// The one validation path of registering and editing: the fields, the written-notice file, and
/// the rules (B1 lead time, B3 overlaps, B5 emergencies). `editing` is the stored booking when
/// editing: its own slot is not a conflict, and the lead time is applied as said at
/// [`lead_time_applies`].
async fn review(
    ctx: Ctx<'_>,
    actor: &Actor,
    input: &Input,
    mut errors: FieldErrors,
    editing: Option<&Booking>,
    now: DateTime<Utc>,
) -> Result<Review, store::Error> {
    let units = host_units_for(ctx.db, actor).await?;
    let all_sites = store::registry::sites(ctx.db).await?;
    let title = input.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        errors.insert("title", "bk_err_title");
    }
    let kind = BookingKind::parse(&input.kind);
    if kind.is_none() {
        errors.insert("kind", "bk_err_kind");
    }
    let unit = input
        .host_unit
        .filter(|u| units.iter().any(|(id, _)| id == u));
    if unit.is_none() {
        errors.insert("host_unit", "bk_err_unit");
    }
    let chair = input.chair.trim();
    if chair.is_empty() || input.chair.chars().count() > 200 {
        errors.insert("chair", "bk_err_chair");
    }
    let host_site = input
        .host_site
        .filter(|s| all_sites.iter().any(|x| x.id == *s));
    if host_site.is_none() {
        errors.insert("host_site", "bk_err_site");
    }
    let mut sites: Vec<i64> = Vec::new();
    for s in &input.sites {
        if !all_sites.iter().any(|x| x.id == *s) {
            errors.insert("sites", "bk_err_sites");
        } else if !sites.contains(s) {
            sites.push(*s);
        }
    }
    if let Some(h) = host_site {
        if !sites.contains(&h) {
            sites.push(h);
        }
    }
    sites.sort_unstable();
    if sites.len() < 2 {
        errors.entry("sites").or_insert("bk_err_sites");
    }
    if input.notice_number.chars().count() > 100 {
        errors.insert("notice_number", "bk_err_notice");
    }
    let rules = ctx.rules;
    let slot = match (input.official_start, input.official_end) {
        (Some(s), Some(e)) => Some(BookingSlot {
            id: editing.map(|b| b.id).unwrap_or_default(),
            title: title.to_string(),
            host_site: host_site.unwrap_or_default(),
            sites: sites.clone(),
            preparation_start: input
                .preparation_start
                .unwrap_or_else(|| booking::default_preparation_start(s, rules)),
            official_start: s,
            end: e,
            emergency: input.emergency,
            status: BookingStatus::Submitted,
        }),
        _ => None,
    };
    // The rules run on whatever the fields allow (a valid time window), whatever else is wrong,
    // so that every error is shown at once; a refusal that only repeats a field's error (no
    // site, no host site) is left to the field.
    let mut refusals: Vec<Violation> = Vec::new();
    let mut overlaps: Vec<Violation> = Vec::new();
    let mut displaced: Vec<BookingSlot> = Vec::new();
    let mut conflicts = Conflicts::Unchecked;
    if let Some(slot) = &slot {
        let invalid = validate(slot, now).err();
        let window_ok = !invalid
            .as_ref()
            .is_some_and(|v| matches!(v.code, "end_not_after_start" | "preparation_after_start"));
        let past = invalid.as_ref().is_some_and(|v| v.code == "start_in_past");
        let field_reported = errors.contains_key("sites") || errors.contains_key("host_site");
        if let Some(v) = invalid
            .filter(|v| !(field_reported && matches!(v.code, "no_sites" | "host_not_among_sites")))
        {
            refusals.push(v);
        }
        let lead = editing.is_none_or(|old| lead_time_applies(old, slot));
        if lead && !past {
            if let Err(v) = check_lead_time(now, slot.official_start, slot.emergency, rules) {
                refusals.push(v);
            }
        }
        if window_ok {
            let (c, d, refused) = conflict_check(ctx.db, &all_sites, slot, rules).await?;
            conflicts = c;
            displaced = d;
            overlaps = refused;
        }
    }
    let ok = errors.is_empty() && refusals.is_empty() && overlaps.is_empty();
    let checked = match (ok, slot, kind, unit) {
        (true, Some(slot), Some(kind), Some(unit)) => Some(Checked {
            fields: Fields {
                title: title.to_string(),
                kind,
                host_unit_id: unit,
                chair: chair.to_string(),
                host_site_id: slot.host_site,
                preparation_start: slot.preparation_start.timestamp(),
                official_start: slot.official_start.timestamp(),
                official_end: slot.end.timestamp(),
                emergency: slot.emergency,
                notice_number: input.notice_number.trim().to_string(),
                notice_date: input.notice_date.clone(),
            },
            slot,
            displaced,
        }),
        _ => None,
    };
    Ok(Review {
        errors,
        refusals,
        overlaps,
        conflicts,
        checked,
    })
}

/// The rules with the control center's own site as the registry has it: B3 counts its
/// meetings by capacity, not site by site.
fn with_control_center(
    rules: &booking::Settings,
    sites: &[store::registry::Site],
) -> booking::Settings {
    booking::Settings {
        control_center_site: sites.iter().find(|s| s.is_control_center).map(|s| s.id),
        ..rules.clone()
    }
}

/// B3 and B5 for a well-formed `slot`: what the check finds, the planned bookings an emergency
/// displaces, and the refusals (the overlaps of a planned meeting, or an emergency that cannot
/// displace what it overlaps).
async fn conflict_check(
    db: &Db,
    sites: &[store::registry::Site],
    slot: &BookingSlot,
    rules: &booking::Settings,
) -> Result<(Conflicts, Vec<BookingSlot>, Vec<Violation>), store::Error> {
    let rules = &with_control_center(rules, sites);
    let existing: Vec<BookingSlot> = store::bookings::load(db, None)
        .await?
        .iter()
        .map(Booking::slot)
        .collect();
    let found = find_conflicts(slot, &existing, rules);
    if found.is_empty() {
        return Ok((Conflicts::Free, Vec::new(), Vec::new()));
    }
    if slot.emergency {
        return Ok(match plan_emergency(slot, &existing, rules) {
            Ok(plan) => {
                let displaced: Vec<BookingSlot> = existing
                    .into_iter()
                    .filter(|b| plan.displaced.contains(&b.id))
                    .collect();
                (
                    Conflicts::Displaces(displaced.clone()),
                    displaced,
                    Vec::new(),
                )
            }
            Err(v) => (Conflicts::Overlaps(vec![v.clone()]), Vec::new(), vec![v]),
        });
    }
    let names: BTreeMap<i64, String> = sites.iter().map(|s| (s.id, s.name.clone())).collect();
    let items: Vec<Violation> = found
        .iter()
        .map(|c| c.violation_named(|id| names.get(&id).cloned().unwrap_or_default()))
        .collect();
    Ok((Conflicts::Overlaps(items.clone()), Vec::new(), items))
}

/// B1 on an edit. Interpretation: the 5-day lead time (Art. 5.1) is about when the meeting and
/// its sites are made known; an edit that keeps the official start and the sites (host site
/// included) changes neither, so it is not refused for lead time (a typo in the title, the
/// chair or the notice number can be fixed a day before). Changing the official start or the
/// sites is a new registration of that meeting: the lead time applies from the edit. So does
/// turning an emergency meeting (B5, no lead time) into a planned one, or the emergency would
/// have skipped B1 for a planned meeting. Overlaps (B3) are checked on every edit. The form's
/// hint says the same (`bk_edit_hint`).
fn lead_time_applies(old: &Booking, new: &BookingSlot) -> bool {
    ts(old.official_start) != new.official_start
        || old.host_site_id != new.host_site
        || sorted(&old.sites) != sorted(&new.sites)
        || (old.emergency && !new.emergency)
}

/// Whether the technicians and the provider have to be told again: any time or any site.
fn schedule_changed(old: &Booking, new: &Booking) -> bool {
    old.preparation_start != new.preparation_start
        || old.official_start != new.official_start
        || old.official_end != new.official_end
        || old.host_site_id != new.host_site_id
        || sorted(&old.sites) != sorted(&new.sites)
}

fn sorted(v: &[i64]) -> Vec<i64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// The audit trail's picture of a booking (before and after a change).
fn snapshot(b: &Booking, file: Option<&FileInfo>) -> serde_json::Value {
    json!({
        "title": b.title, "kind": b.kind, "host_unit": b.host_unit_id, "chair": b.chair,
        "host_site": b.host_site_id, "sites": b.sites,
        "preparation_start": ts(b.preparation_start).to_rfc3339(),
        "official_start": ts(b.official_start).to_rfc3339(),
        "official_end": ts(b.official_end).to_rfc3339(),
        "emergency": b.emergency, "notice_number": b.notice_number, "notice_date": b.notice_date,
        "status": b.status, "on_duty_contact": b.on_duty_contact_id,
        "notice_file": file.map(|f| json!({"name": f.filename, "size": f.size, "sha256": f.sha256})),
    })
}

/// The conflict check before submitting (B3, B5): every error and what overlaps; writes
/// nothing. `editing`: the booking being edited (its own slot is no conflict), which the actor
/// must be allowed to edit.
pub async fn check(
    ctx: Ctx<'_>,
    actor: &Actor,
    input: &Input,
    errors: FieldErrors,
    editing: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Review, Refusal> {
    let old = match editing {
        Some(id) => Some(editable(ctx.db, actor, id).await?.0),
        None if !may_register_any(actor) => return Err(register_refused(actor)),
        None => None,
    };
    Ok(review(ctx, actor, input, errors, old.as_ref(), now).await?)
}

/// Stores (or replaces) the uploaded written notice, or removes the stored one.
async fn save_file(
    tx: &mut Tx<'_>,
    booking: i64,
    file: &FileChange,
    actor: &Actor,
    now: i64,
) -> Result<(), store::Error> {
    match file {
        FileChange::Put { name, data } => {
            store::bookings::put_notice_file(tx, booking, name, data, actor.id, now).await
        }
        FileChange::Remove => store::bookings::remove_notice_file(tx, booking).await,
        FileChange::Keep => Ok(()),
    }
}

/// B5: an emergency displaces planned meetings, and that is recorded (in Vietnamese, citing the
/// article); an approved one's technicians and provider are told.
async fn displace(
    tx: &mut Tx<'_>,
    actor: &Actor,
    displaced: &[BookingSlot],
    emergency: &BookingSlot,
    now: DateTime<Utc>,
) -> Result<(), store::Error> {
    for d in displaced {
        let reason = booking::displacement_violation(d, emergency).vi;
        if d.status == BookingStatus::Approved {
            if let Some(old) = store::bookings::get_in(tx, d.id).await? {
                mail::queue_cancelled(tx, &old, &reason, now).await?;
            }
        }
        store::bookings::cancel_displaced(tx, d.id, &reason).await?;
        store::audit::record(
            &mut **tx,
            store::audit::AuditEntry {
                actor_id: Some(actor.id),
                actor: &actor.username,
                action: "displace_booking",
                entity: "booking",
                entity_id: d.id.to_string(),
                before: Some(json!({"status": d.status.as_str()})),
                after: Some(json!({"status": "cancelled", "displaced_by": emergency.id})),
            },
        )
        .await?;
    }
    Ok(())
}

/// Registering (B1, B3, B5): a draft, or submitted for approval. `errors`: the caller's own
/// (fields it could not parse), refused together with the service's.
pub async fn register(
    ctx: Ctx<'_>,
    actor: &Actor,
    input: &Input,
    errors: FieldErrors,
    draft: bool,
    now: DateTime<Utc>,
) -> Result<Saved, Refusal> {
    if !may_register_any(actor) {
        return Err(register_refused(actor));
    }
    let _write = WRITE_LOCK.lock().await;
    let r = review(ctx, actor, input, errors, None, now).await?;
    let Some(c) = r.checked.as_ref() else {
        return Err(Refusal::Invalid(Box::new(r)));
    };
    authorized(
        actor,
        &Action::RegisterBooking {
            unit: c.fields.host_unit_id,
        },
    )?;
    let status = if draft {
        BookingStatus::Draft
    } else {
        BookingStatus::Submitted
    };
    let slot = &c.slot;
    let mut tx = store::begin_write(ctx.db).await?;
    let id = store::bookings::insert(&mut tx, &c.fields, status, actor.id, now.timestamp()).await?;
    store::bookings::replace_sites(&mut tx, id, &slot.sites).await?;
    let file = match &input.file {
        FileChange::Remove => &FileChange::Keep,
        f => f,
    };
    save_file(&mut tx, id, file, actor, now.timestamp()).await?;
    // A draft is not a registration: it displaces nobody's meeting.
    if status == BookingStatus::Submitted {
        let emergency = BookingSlot { id, ..slot.clone() };
        displace(&mut tx, actor, &c.displaced, &emergency, now).await?;
    }
    let Some(b) = store::bookings::get_in(&mut tx, id).await? else {
        return Err(Refusal::NotFound);
    };
    let file = store::bookings::file_info_in(&mut tx, id).await?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(actor.id),
            actor: &actor.username,
            action: "create_booking",
            entity: "booking",
            entity_id: id.to_string(),
            before: None,
            after: Some(snapshot(&b, file.as_ref())),
        },
    )
    .await?;
    let emergency_alert = slot.emergency && status == BookingStatus::Submitted;
    if emergency_alert {
        mail::queue_emergency(&mut tx, &b, now).await?;
    }
    tx.commit().await?;
    if emergency_alert || !c.displaced.is_empty() {
        ctx.outbox.notify_one();
    }
    Ok(Saved {
        id,
        title: b.title,
        sites: slot.sites.clone(),
        emergency_alert,
    })
}

/// Editing: the same checks as registering; an approved booking goes back to submitted (to be
/// approved again), and if its times or sites changed its technicians and the provider are told
/// and its unsent reminders withdrawn.
pub async fn edit(
    ctx: Ctx<'_>,
    actor: &Actor,
    id: i64,
    input: &Input,
    errors: FieldErrors,
    now: DateTime<Utc>,
) -> Result<Saved, Refusal> {
    let _write = WRITE_LOCK.lock().await;
    let (old, to) = editable(ctx.db, actor, id).await?;
    let r = review(ctx, actor, input, errors, Some(&old), now).await?;
    let Some(c) = r.checked.as_ref() else {
        return Err(Refusal::Invalid(Box::new(r)));
    };
    // The host unit may change only to one the actor may register for.
    authorized(
        actor,
        &Action::RegisterBooking {
            unit: c.fields.host_unit_id,
        },
    )?;
    let slot = &c.slot;
    let was_approved = old.status() == BookingStatus::Approved;
    let mut tx = store::begin_write(ctx.db).await?;
    let file_before = store::bookings::file_info_in(&mut tx, id).await?;
    store::bookings::update(&mut tx, id, &c.fields, to, was_approved, now.timestamp()).await?;
    store::bookings::replace_sites(&mut tx, id, &slot.sites).await?;
    save_file(&mut tx, id, &input.file, actor, now.timestamp()).await?;
    if to == BookingStatus::Submitted {
        displace(&mut tx, actor, &c.displaced, slot, now).await?;
    }
    let Some(new) = store::bookings::get_in(&mut tx, id).await? else {
        return Err(Refusal::NotFound);
    };
    let changed = schedule_changed(&old, &new);
    if was_approved {
        // No longer approved: nothing reminds of it until it is approved again (which sends
        // the notices and the reminders anew).
        mail::withdraw_reminders(&mut tx, id).await?;
        if changed {
            mail::queue_changed(&mut tx, &old, &new, now).await?;
        }
    }
    let file_after = store::bookings::file_info_in(&mut tx, id).await?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(actor.id),
            actor: &actor.username,
            action: "edit_booking",
            entity: "booking",
            entity_id: id.to_string(),
            before: Some(snapshot(&old, file_before.as_ref())),
            after: Some(snapshot(&new, file_after.as_ref())),
        },
    )
    .await?;
    let emergency_alert = slot.emergency && !old.emergency && to == BookingStatus::Submitted;
    if emergency_alert {
        mail::queue_emergency(&mut tx, &new, now).await?;
    }
    tx.commit().await?;
    if was_approved && changed || emergency_alert || !c.displaced.is_empty() {
        ctx.outbox.notify_one();
    }
    Ok(Saved {
        id,
        title: new.title,
        sites: slot.sites.clone(),
        emergency_alert,
    })
}

/// The workflow steps, by their name in the routes.
pub const STEPS: [&str; 6] = ["submit", "approve", "reject", "cancel", "held", "close"];

fn parse_step(what: &str, reason: &str) -> Option<Step> {
    Some(match what {
        "submit" => Step::Submit,
        "approve" => Step::Approve,
        "reject" => Step::Reject {
            reason: reason.to_string(),
        },
        "cancel" => Step::Cancel {
            reason: reason.to_string(),
        },
        "held" => Step::MarkHeld,
        "close" => Step::Close,
        _ => return None,
    })
}

/// Submit, approve, reject, cancel, mark held or close: the workflow of
/// `hnth_rules::booking::transition`, with the checks each step repeats (B1, B3, A1) and the
/// notices it sends. Returns the booking after the step.
pub async fn step(
    ctx: Ctx<'_>,
    actor: &Actor,
    id: i64,
    what: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Booking, Refusal> {
    let _write = WRITE_LOCK.lock().await;
    let b = viewable(ctx.db, actor, id).await?;
    let reason = reason.trim().to_string();
    let Some(action) = parse_step(what, &reason) else {
        return Err(Refusal::NotFound);
    };
    let to = transition(b.status(), &action, actor.role).map_err(Refusal::Rule)?;
    // Separation of duties (A1, Art. 3): by default the registrant does not approve.
    if matches!(action, Step::Approve) {
        check_approver(b.created_by, actor.id, ctx.rules).map_err(Refusal::Denied)?;
    }
    // Submitting (again) and approving re-check the rules: lead time and conflicts (B1, B3).
    if matches!(action, Step::Submit | Step::Approve) {
        let slot = b.slot();
        let mut problem = if matches!(action, Step::Submit) {
            check_submission(&slot, now, ctx.rules).err()
        } else {
            None
        };
        if problem.is_none() {
            let existing: Vec<BookingSlot> = store::bookings::load(ctx.db, None)
                .await?
                .iter()
                .map(Booking::slot)
                .collect();
            let rules = with_control_center(ctx.rules, &store::registry::sites(ctx.db).await?);
            problem = find_conflicts(&slot, &existing, &rules)
                .first()
                .map(|c| c.violation());
        }
        if let Some(v) = problem {
            return Err(Refusal::Rule(v));
        }
    }
    let mut tx = store::begin_write(ctx.db).await?;
    store::bookings::set_status(
        &mut tx,
        id,
        to,
        (!reason.is_empty()).then_some(reason.as_str()),
        actor.id,
        now.timestamp(),
    )
    .await?;
    if to == BookingStatus::Approved {
        mail::queue_on_approval(&mut tx, &b, now, ctx.rules).await?;
    }
    if to == BookingStatus::Cancelled && b.status() == BookingStatus::Approved {
        mail::queue_cancelled(&mut tx, &b, &reason, now).await?;
    }
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(actor.id),
            actor: &actor.username,
            action: &format!("booking_{what}"),
            entity: "booking",
            entity_id: id.to_string(),
            before: Some(json!({"status": b.status})),
            after: Some(json!({"status": to.as_str(), "reason": reason})),
        },
    )
    .await?;
    let Some(after) = store::bookings::get_in(&mut tx, id).await? else {
        return Err(Refusal::NotFound);
    };
    tx.commit().await?;
    ctx.outbox.notify_one();
    Ok(after)
}

/// The on-duty technician is chosen for a meeting still ahead or under way.
pub fn on_duty_editable(status: BookingStatus) -> bool {
    matches!(
        status,
        BookingStatus::Draft
            | BookingStatus::Submitted
            | BookingStatus::Approved
            | BookingStatus::Held
    )
}

/// L2 (Art. 12, control center): the provider's on-duty technician of this meeting (`None`:
/// nobody). If the meeting is approved (or under way), its technicians are told.
pub async fn set_on_duty(
    ctx: Ctx<'_>,
    actor: &Actor,
    id: i64,
    contact: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Booking, Refusal> {
    if !actor.is_control_center() {
        return Err(Refusal::Forbidden(not_control_center(actor)));
    }
    let _write = WRITE_LOCK.lock().await;
    let b = viewable(ctx.db, actor, id).await?;
    let status = b.status();
    if !on_duty_editable(status) {
        return Err(Refusal::Field {
            key: "bk_err_on_duty_status",
        });
    }
    if contact == b.on_duty_contact_id {
        return Ok(b);
    }
    let mut tx = store::begin_write(ctx.db).await?;
    if let Some(c) = contact {
        if !store::bookings::provider_contact_exists(&mut tx, c).await? {
            return Err(Refusal::Field {
                key: "bk_err_on_duty",
            });
        }
    }
    store::bookings::set_on_duty(&mut tx, id, contact).await?;
    let Some(new) = store::bookings::get_in(&mut tx, id).await? else {
        return Err(Refusal::NotFound);
    };
    let tell = matches!(status, BookingStatus::Approved | BookingStatus::Held);
    if tell {
        mail::queue_on_duty(&mut tx, &new, now).await?;
    }
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(actor.id),
            actor: &actor.username,
            action: "booking_on_duty",
            entity: "booking",
            entity_id: id.to_string(),
            before: Some(json!({"on_duty_contact": b.on_duty_contact_id, "on_duty": b.on_duty})),
            after: Some(json!({"on_duty_contact": new.on_duty_contact_id, "on_duty": new.on_duty})),
        },
    )
    .await?;
    tx.commit().await?;
    if tell {
        ctx.outbox.notify_one();
    }
    Ok(new)
}
