//! Bookings (Art. 5) with their sites, files and costs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hnth_rules::booking::{BookingKind, BookingSlot, BookingStatus};
use serde::Serialize;
use sha2::Digest;
use sqlx::Row;

use super::{Db, Error, Tx};

/// A registered meeting (Art. 5) as stored, with the names it refers to.
#[derive(Debug, Clone, Serialize)]
pub struct Booking {
    pub id: i64,
    pub title: String,
    pub kind: String,
    pub host_unit_id: i64,
    pub host_unit: String,
    pub chair: String,
    pub host_site_id: i64,
    pub host_site: String,
    pub sites: Vec<i64>,
    pub site_names: Vec<String>,
    pub preparation_start: i64,
    pub official_start: i64,
    pub official_end: i64,
    pub emergency: bool,
    pub notice_number: String,
    pub notice_date: String,
    pub status: String,
    pub reason: Option<String>,
    /// When it was approved (or rejected); the invitation letter is dated from it.
    pub decided_at: Option<i64>,
    /// L2 (Art. 12): the line provider's on-duty technician for this meeting.
    pub on_duty_contact_id: Option<i64>,
    /// That technician as shown: "name (provider), phone".
    pub on_duty: Option<String>,
    /// The account that registered it (separation of duties: it does not approve it).
    pub created_by: Option<i64>,
}

fn ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

impl Booking {
    /// The kind in Vietnamese: notices, invitations and letters go to units, sites and the
    /// provider in Vietnamese.
    pub fn kind_label_vi(&self) -> &'static str {
        BookingKind::parse(&self.kind).map_or("", |k| k.label_vi())
    }

    pub fn status(&self) -> BookingStatus {
        BookingStatus::parse(&self.status).unwrap_or(BookingStatus::Draft)
    }

    /// The booking as the rules see it.
    pub fn slot(&self) -> BookingSlot {
        BookingSlot {
            id: self.id,
            title: self.title.clone(),
            host_site: self.host_site_id,
            sites: self.sites.clone(),
            preparation_start: ts(self.preparation_start),
            official_start: ts(self.official_start),
            end: ts(self.official_end),
            emergency: self.emergency,
            status: self.status(),
        }
    }
}

const SELECT_BOOKINGS: &str = "SELECT b.*, u.name AS unit_name, s.name AS site_name, \
     (SELECT group_concat(bs.site_id) FROM booking_sites bs WHERE bs.booking_id = b.id) AS site_ids, \
     p.name AS duty_name, p.phone AS duty_phone, pu.name AS duty_unit \
     FROM bookings b JOIN units u ON u.id = b.host_unit_id JOIN sites s ON s.id = b.host_site_id \
     LEFT JOIN provider_contacts p ON p.id = b.on_duty_contact_id LEFT JOIN units pu ON pu.id = p.unit_id \
     WHERE (?1 IS NULL OR b.id = ?1) ORDER BY b.official_start, b.id";

fn from_row(r: &sqlx::sqlite::SqliteRow, names: &BTreeMap<i64, String>) -> Booking {
    let mut sites: Vec<i64> = r
        .get::<Option<String>, _>("site_ids")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    sites.sort_unstable();
    let on_duty = r.get::<Option<String>, _>("duty_name").map(|name| {
        let unit: Option<String> = r.get("duty_unit");
        let phone: Option<String> = r.get("duty_phone");
        let mut s = name;
        if let Some(u) = unit.filter(|u| !u.is_empty()) {
            s.push_str(&format!(" ({u})"));
        }
        if let Some(p) = phone.filter(|p| !p.is_empty()) {
            s.push_str(&format!(", {p}"));
        }
        s
    });
    Booking {
        id: r.get("id"),
        title: r.get("title"),
        kind: r.get("kind"),
        host_unit_id: r.get("host_unit_id"),
        host_unit: r.get("unit_name"),
        chair: r.get("chair"),
        host_site_id: r.get("host_site_id"),
        host_site: r.get("site_name"),
        site_names: sites.iter().filter_map(|s| names.get(s).cloned()).collect(),
        sites,
        preparation_start: r.get("preparation_start"),
        official_start: r.get("official_start"),
        official_end: r.get("official_end"),
        emergency: r.get::<i64, _>("emergency") != 0,
        notice_number: r.get("notice_number"),
        notice_date: r.get("notice_date"),
        status: r.get("status"),
        reason: r.get("reason"),
        decided_at: r.get("decided_at"),
        on_duty_contact_id: r.get("on_duty_contact_id"),
        on_duty,
        created_by: r.get("created_by"),
    }
}

/// Every booking (or the one `filter` names), by official start.
pub async fn load(db: &Db, filter: Option<i64>) -> Result<Vec<Booking>, Error> {
    let rows = sqlx::query(SELECT_BOOKINGS)
        .bind(filter)
        .fetch_all(db)
        .await?;
    let names: BTreeMap<i64, String> = super::registry::sites(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    Ok(rows.iter().map(|r| from_row(r, &names)).collect())
}

/// One booking.
pub async fn get(db: &Db, id: i64) -> Result<Option<Booking>, Error> {
    Ok(load(db, Some(id)).await?.pop())
}

/// A booking as the open transaction sees it (it may not be committed yet).
pub async fn get_in(tx: &mut Tx<'_>, id: i64) -> Result<Option<Booking>, Error> {
    let Some(r) = sqlx::query(SELECT_BOOKINGS)
        .bind(Some(id))
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let names: BTreeMap<i64, String> = sqlx::query_as("SELECT id, name FROM sites")
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    Ok(Some(from_row(&r, &names)))
}

/// The fields of a booking that registering and editing write.
#[derive(Debug, Clone)]
pub struct Fields {
    pub title: String,
    pub kind: BookingKind,
    pub host_unit_id: i64,
    pub chair: String,
    pub host_site_id: i64,
    pub preparation_start: i64,
    pub official_start: i64,
    pub official_end: i64,
    pub emergency: bool,
    pub notice_number: String,
    pub notice_date: String,
}

/// A new booking (its sites apart: [`replace_sites`]); returns its id.
pub async fn insert(
    tx: &mut Tx<'_>,
    f: &Fields,
    status: BookingStatus,
    created_by: i64,
    now: i64,
) -> Result<i64, Error> {
    Ok(sqlx::query(
        "INSERT INTO bookings (title, kind, host_unit_id, chair, host_site_id, preparation_start, official_start, official_end, \
         emergency, notice_number, notice_date, status, created_by, created_at, submitted_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    )
    .bind(&f.title)
    .bind(f.kind.as_str())
    .bind(f.host_unit_id)
    .bind(&f.chair)
    .bind(f.host_site_id)
    .bind(f.preparation_start)
    .bind(f.official_start)
    .bind(f.official_end)
    .bind(f.emergency)
    .bind(&f.notice_number)
    .bind(&f.notice_date)
    .bind(status.as_str())
    .bind(created_by)
    .bind(now)
    .bind((status == BookingStatus::Submitted).then_some(now))
    .execute(&mut **tx)
    .await?
    .last_insert_rowid())
}

/// An edited booking's fields and status; `resubmitted` sets its submission time to `now`.
pub async fn update(
    tx: &mut Tx<'_>,
    id: i64,
    f: &Fields,
    status: BookingStatus,
    resubmitted: bool,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE bookings SET title = ?, kind = ?, host_unit_id = ?, chair = ?, host_site_id = ?, preparation_start = ?, \
         official_start = ?, official_end = ?, emergency = ?, notice_number = ?, notice_date = ?, status = ?, \
         submitted_at = CASE WHEN ? THEN ? ELSE submitted_at END WHERE id = ?",
    )
    .bind(&f.title)
    .bind(f.kind.as_str())
    .bind(f.host_unit_id)
    .bind(&f.chair)
    .bind(f.host_site_id)
    .bind(f.preparation_start)
    .bind(f.official_start)
    .bind(f.official_end)
    .bind(f.emergency)
    .bind(&f.notice_number)
    .bind(&f.notice_date)
    .bind(status.as_str())
    .bind(resubmitted)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The sites taking part in a booking (the host site among them).
pub async fn replace_sites(tx: &mut Tx<'_>, booking: i64, sites: &[i64]) -> Result<(), Error> {
    sqlx::query("DELETE FROM booking_sites WHERE booking_id = ?")
        .bind(booking)
        .execute(&mut **tx)
        .await?;
    for s in sites {
        sqlx::query("INSERT INTO booking_sites (booking_id, site_id) VALUES (?,?)")
            .bind(booking)
            .bind(s)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A workflow step (B4): the new status, the reason if one was given, and who decided (for an
/// approval or a rejection) or when it was submitted.
pub async fn set_status(
    tx: &mut Tx<'_>,
    id: i64,
    to: BookingStatus,
    reason: Option<&str>,
    actor: i64,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE bookings SET status = ?, reason = COALESCE(?, reason), \
         submitted_at = CASE WHEN ? = 'submitted' THEN ? ELSE submitted_at END, \
         decided_by = CASE WHEN ? IN ('approved','rejected') THEN ? ELSE decided_by END, \
         decided_at = CASE WHEN ? IN ('approved','rejected') THEN ? ELSE decided_at END WHERE id = ?",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(to.as_str())
    .bind(now)
    .bind(to.as_str())
    .bind(actor)
    .bind(to.as_str())
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// B5: a planned booking displaced by an emergency is cancelled, with the reason.
pub async fn cancel_displaced(tx: &mut Tx<'_>, id: i64, reason: &str) -> Result<(), Error> {
    sqlx::query("UPDATE bookings SET status = 'cancelled', reason = ? WHERE id = ?")
        .bind(reason)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// L2: the provider's on-duty technician of a booking (or nobody).
pub async fn set_on_duty(tx: &mut Tx<'_>, id: i64, contact: Option<i64>) -> Result<(), Error> {
    sqlx::query("UPDATE bookings SET on_duty_contact_id = ? WHERE id = ?")
        .bind(contact)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One of the line provider's contacts.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderContact {
    pub id: i64,
    pub name: String,
    pub phone: String,
    /// The provider (its unit's name).
    pub unit: String,
}

pub async fn provider_contacts(db: &Db) -> Result<Vec<ProviderContact>, Error> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT p.id, p.name, p.phone, u.name FROM provider_contacts p JOIN units u ON u.id = p.unit_id ORDER BY p.id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, phone, unit)| ProviderContact {
            id,
            name,
            phone,
            unit,
        })
        .collect())
}

pub async fn provider_contact_exists(tx: &mut Tx<'_>, id: i64) -> Result<bool, Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM provider_contacts WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

/// The units that may host a meeting (every unit but the line providers), by id.
pub async fn host_units(db: &Db) -> Result<Vec<(i64, String)>, Error> {
    sqlx::query_as("SELECT id, name FROM units WHERE kind != 'line_provider' ORDER BY id")
        .fetch_all(db)
        .await
}

// ---------------------------------------------------------------- B1: the written notice file

/// A stored written notice, as the booking page and the audit trail describe it.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub filename: String,
    /// In bytes; pages show it with the `size` filter.
    pub size: i64,
    pub sha256: String,
}

async fn file_info_on<'e, E>(db: E, booking: i64) -> Result<Option<FileInfo>, Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT filename, size, sha256 FROM booking_files WHERE booking_id = ? AND kind = 'notice'",
    )
    .bind(booking)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(filename, size, sha256)| FileInfo {
        filename,
        size,
        sha256,
    }))
}

/// The booking's written notice, if one was uploaded.
pub async fn file_info(db: &Db, booking: i64) -> Result<Option<FileInfo>, Error> {
    file_info_on(db, booking).await
}

pub async fn file_info_in(tx: &mut Tx<'_>, booking: i64) -> Result<Option<FileInfo>, Error> {
    file_info_on(&mut **tx, booking).await
}

/// The written notice itself: its file name and bytes.
pub async fn notice_file(db: &Db, booking: i64) -> Result<Option<(String, Vec<u8>)>, Error> {
    sqlx::query_as(
        "SELECT filename, data FROM booking_files WHERE booking_id = ? AND kind = 'notice'",
    )
    .bind(booking)
    .fetch_optional(db)
    .await
}

/// Stores (or replaces) the booking's written notice (a PDF).
pub async fn put_notice_file(
    tx: &mut Tx<'_>,
    booking: i64,
    name: &str,
    data: &[u8],
    uploaded_by: i64,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT OR REPLACE INTO booking_files (booking_id, kind, filename, content_type, size, sha256, data, uploaded_by, uploaded_at) \
         VALUES (?, 'notice', ?, 'application/pdf', ?, ?, ?, ?, ?)",
    )
    .bind(booking)
    .bind(name)
    .bind(data.len() as i64)
    .bind(hex::encode(sha2::Sha256::digest(data)))
    .bind(data)
    .bind(uploaded_by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn remove_notice_file(tx: &mut Tx<'_>, booking: i64) -> Result<(), Error> {
    sqlx::query("DELETE FROM booking_files WHERE booking_id = ? AND kind = 'notice'")
        .bind(booking)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- the site app

/// An approved (or held) booking of a site that has not ended yet, for the site app's idle
/// screen (M2, P1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upcoming {
    pub title: String,
    pub kind: String,
    pub preparation_start: i64,
    pub official_start: i64,
    pub official_end: i64,
    pub emergency: bool,
}

/// The next `limit` approved bookings of `site` ending after `now`, by official start.
pub async fn upcoming_for_site(
    db: &Db,
    site: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<Upcoming>, Error> {
    let rows: Vec<(String, String, i64, i64, i64, bool)> = sqlx::query_as(
        "SELECT b.title, b.kind, b.preparation_start, b.official_start, b.official_end, b.emergency FROM bookings b \
         JOIN booking_sites bs ON bs.booking_id = b.id WHERE bs.site_id = ? AND b.status IN ('approved', 'held') \
         AND b.official_end > ? ORDER BY b.official_start LIMIT ?",
    )
    .bind(site)
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(title, kind, preparation_start, official_start, official_end, emergency)| Upcoming {
                title,
                kind,
                preparation_start,
                official_start,
                official_end,
                emergency,
            },
        )
        .collect())
}
