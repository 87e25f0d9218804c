//! The notices outbox (B2, B5, P1, L2): e-mails queued in the transaction of the change that
//! causes them, and their sending.

use sqlx::Row;

use super::{Db, Error, Tx};

/// A recipient of a notice.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub name: String,
    pub email: String,
}

/// A notice to queue.
pub struct NewNotice<'a> {
    pub booking: i64,
    pub kind: &'a str,
    pub to: &'a Recipient,
    pub subject: &'a str,
    pub body: &'a str,
    pub with_invitation: bool,
    pub due: i64,
}

pub async fn queue(tx: &mut Tx<'_>, n: NewNotice<'_>) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO notices (booking_id, kind, to_addr, to_name, subject, body, with_invitation, due_at) VALUES (?,?,?,?,?,?,?,?)",
    )
    .bind(n.booking)
    .bind(n.kind)
    .bind(&n.to.email)
    .bind(&n.to.name)
    .bind(n.subject)
    .bind(n.body)
    .bind(n.with_invitation)
    .bind(n.due)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The line provider's contacts with an e-mail address.
pub async fn provider_recipients(tx: &mut Tx<'_>) -> Result<Vec<Recipient>, Error> {
    let rows =
        sqlx::query("SELECT name, email FROM provider_contacts WHERE email != '' ORDER BY id")
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| Recipient {
            name: r.get("name"),
            email: r.get("email"),
        })
        .collect())
}

/// Technicians of the given sites, with an e-mail address, each address once.
pub async fn technicians_of_sites(tx: &mut Tx<'_>, sites: &[i64]) -> Result<Vec<Recipient>, Error> {
    let mut out: Vec<Recipient> = Vec::new();
    for s in sites {
        let rows = sqlx::query(
            "SELECT name, email FROM technicians WHERE site_id = ? AND active = 1 AND email != '' ORDER BY id",
        )
        .bind(s)
        .fetch_all(&mut **tx)
        .await?;
        for r in rows {
            let email: String = r.get("email");
            if !out.iter().any(|x| x.email.eq_ignore_ascii_case(&email)) {
                out.push(Recipient {
                    name: r.get("name"),
                    email,
                });
            }
        }
    }
    Ok(out)
}

/// The reminders of a booking not yet sent are withdrawn (cancelled, or no longer approved).
pub async fn withdraw_reminders(tx: &mut Tx<'_>, booking: i64) -> Result<(), Error> {
    sqlx::query(
        "DELETE FROM notices WHERE booking_id = ? AND sent_at IS NULL AND expired_at IS NULL AND kind = 'reminder'",
    )
    .bind(booking)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A notice due to be sent, with its meeting's official times (none for a notice about no
/// booking).
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub booking_id: Option<i64>,
    pub kind: String,
    pub to_addr: String,
    pub to_name: String,
    pub subject: String,
    pub body: String,
    pub with_invitation: bool,
    pub due_at: i64,
    pub official_start: Option<i64>,
    pub official_end: Option<i64>,
}

/// The notices due now (retried a minute apart after a failure, at most 10 tries).
pub async fn due(db: &Db, now: i64) -> Result<Vec<Due>, Error> {
    let rows = sqlx::query(
        "SELECT n.id, n.booking_id, n.kind, n.to_addr, n.to_name, n.subject, n.body, n.with_invitation, n.due_at, \
         b.official_start, b.official_end FROM notices n LEFT JOIN bookings b ON b.id = n.booking_id \
         WHERE n.sent_at IS NULL AND n.expired_at IS NULL AND n.due_at <= ? AND n.attempts < 10 \
         AND (n.last_error IS NULL OR n.due_at + n.attempts * 60 <= ?) ORDER BY n.due_at LIMIT 50",
    )
    .bind(now)
    .bind(now)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Due {
            id: r.get("id"),
            booking_id: r.get("booking_id"),
            kind: r.get("kind"),
            to_addr: r.get("to_addr"),
            to_name: r.get("to_name"),
            subject: r.get("subject"),
            body: r.get("body"),
            with_invitation: r.get::<i64, _>("with_invitation") != 0,
            due_at: r.get("due_at"),
            official_start: r.get("official_start"),
            official_end: r.get("official_end"),
        })
        .collect())
}

pub async fn mark_sent(db: &Db, id: i64, now: i64) -> Result<(), Error> {
    sqlx::query(
        "UPDATE notices SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
    )
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn mark_failed(db: &Db, id: i64, error: &str) -> Result<(), Error> {
    sqlx::query("UPDATE notices SET attempts = attempts + 1, last_error = ? WHERE id = ?")
        .bind(error)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// A notice that can no longer serve is kept, marked expired, and never sent.
pub async fn mark_expired(db: &Db, id: i64, now: i64) -> Result<(), Error> {
    sqlx::query("UPDATE notices SET expired_at = ? WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// One notice of a booking, as stored (times in Unix seconds).
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: String,
    pub to_name: String,
    pub to_addr: String,
    pub due_at: i64,
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
    pub expired_at: Option<i64>,
}

/// The notices of a booking, by due time.
pub async fn of_booking(db: &Db, booking: i64) -> Result<Vec<Notice>, Error> {
    let rows = sqlx::query(
        "SELECT kind, to_name, to_addr, due_at, sent_at, last_error, expired_at FROM notices WHERE booking_id = ? ORDER BY due_at, id",
    )
    .bind(booking)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Notice {
            kind: r.get("kind"),
            to_name: r.get("to_name"),
            to_addr: r.get("to_addr"),
            due_at: r.get("due_at"),
            sent_at: r.get("sent_at"),
            last_error: r.get("last_error"),
            expired_at: r.get("expired_at"),
        })
        .collect())
}

/// B2: when the provider was first notified of this booking (Unix seconds), if ever.
pub async fn provider_notified_at(db: &Db, booking: i64) -> Result<Option<i64>, Error> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT MIN(sent_at) FROM notices WHERE booking_id = ? AND kind = 'provider_notice' AND sent_at IS NOT NULL")
            .bind(booking)
            .fetch_optional(db)
            .await?;
    Ok(row.and_then(|r| r.0))
}

/// B5: whom to call, with phone numbers: (site or provider, name, phone) of the technicians of
/// the booking's sites, then of the provider's contacts.
pub async fn phone_list(db: &Db, booking: i64) -> Result<Vec<(String, String, String)>, Error> {
    let mut rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT s.name, t.name, t.phone FROM technicians t JOIN booking_sites bs ON bs.site_id = t.site_id \
         JOIN sites s ON s.id = t.site_id WHERE bs.booking_id = ? AND t.active = 1 ORDER BY s.id, t.id",
    )
    .bind(booking)
    .fetch_all(db)
    .await?;
    let providers: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT u.name, p.name, p.phone FROM provider_contacts p JOIN units u ON u.id = p.unit_id ORDER BY p.id",
    )
    .fetch_all(db)
    .await?;
    rows.extend(providers);
    Ok(rows)
}
/// How many notices are in each state, for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Not sent yet, never tried.
    pub queued: i64,
    /// Not sent yet, tried and failed at least once (sent again later).
    pub retrying: i64,
    pub sent: i64,
    /// Given up: their moment passed before they could be sent.
    pub expired: i64,
}

pub async fn tally(db: &Db) -> Result<Tally, Error> {
    let r = sqlx::query(
        "SELECT
            COALESCE(SUM(sent_at IS NULL AND expired_at IS NULL AND attempts = 0), 0),
            COALESCE(SUM(sent_at IS NULL AND expired_at IS NULL AND attempts > 0), 0),
            COALESCE(SUM(sent_at IS NOT NULL), 0),
            COALESCE(SUM(sent_at IS NULL AND expired_at IS NOT NULL), 0)
         FROM notices",
    )
    .fetch_one(db)
    .await?;
    Ok(Tally {
        queued: r.get(0),
        retrying: r.get(1),
        sent: r.get(2),
        expired: r.get(3),
    })
}
