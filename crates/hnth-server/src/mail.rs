//! Notices by e-mail (B2 provider notice, P1 technician notices and reminders, B5 emergency
//! alerts): written to the `notices` outbox in the same transaction as the change that causes
//! them, then sent over SMTP by one background task, so nothing is lost if the mail server is
//! down (they are retried) and nothing is sent for a change that was rolled back.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hnth_rules::booking::{reminder_times, Settings as RuleSettings};
use hnth_rules::time::format_datetime_vi;
use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::Notify;

use crate::bookings::{ics, Booking};
use crate::config::{Mail, SmtpSecurity};
use crate::db;

/// Wakes the sender when something was queued.
pub type Outbox = Arc<Notify>;

/// A recipient of a notice.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub name: String,
    pub email: String,
}

#[allow(clippy::too_many_arguments)]
async fn queue(
    tx: &mut Transaction<'_, Sqlite>,
    booking: i64,
    kind: &str,
    to: &Recipient,
    subject: &str,
    body: &str,
    with_invitation: bool,
    due: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO notices (booking_id, kind, to_addr, to_name, subject, body, with_invitation, due_at) VALUES (?,?,?,?,?,?,?,?)",
    )
    .bind(booking)
    .bind(kind)
    .bind(&to.email)
    .bind(&to.name)
    .bind(subject)
    .bind(body)
    .bind(with_invitation)
    .bind(due)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn provider_contacts(tx: &mut Transaction<'_, Sqlite>) -> sqlx::Result<Vec<Recipient>> {
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

fn times(b: &Booking) -> String {
    let t = |s: i64| {
        DateTime::from_timestamp(s, 0)
            .map(format_datetime_vi)
            .unwrap_or_default()
    };
    let mut s = format!(
        "Thời gian chuẩn bị, chạy thử: từ {}\nThời gian họp chính thức: {} – {}\nĐiểm cầu chủ trì: {}\nCác điểm cầu: {}\nĐơn vị chủ trì: {}\nChủ trì: {}",
        t(b.preparation_start),
        t(b.official_start),
        t(b.official_end),
        b.host_site,
        b.site_names.join(", "),
        b.host_unit,
        b.chair
    );
    // L2 (Art. 12): whom to call at the provider about this meeting.
    if let Some(d) = &b.on_duty {
        s.push_str(&format!(
            "\nCán bộ kỹ thuật trực của đơn vị cung cấp đường truyền: {d}"
        ));
    }
    s
}

/// On approval: the provider's notice (B2), the technicians' notices with the invitation (P1),
/// and the reminders before the preparation time (P1).
pub async fn queue_on_approval(
    tx: &mut Transaction<'_, Sqlite>,
    b: &Booking,
    now: DateTime<Utc>,
    rules: &RuleSettings,
) -> sqlx::Result<()> {
    let subject = format!("[HNTH] {}: {}", b.kind_label, b.title);
    let body = format!(
        "Văn phòng UBND tỉnh thông báo cuộc họp trực tuyến đã được phê duyệt (Điều 5, Điều 6 Quy chế 561/QĐ-UBND).\n\n{}\n",
        times(b)
    );
    for p in provider_contacts(tx).await? {
        let body = format!("{body}\nĐề nghị đơn vị cung cấp đường truyền bố trí cán bộ kỹ thuật trực và bảo đảm đường truyền (khoản 1 Điều 5).\n");
        queue(
            tx,
            b.id,
            "provider_notice",
            &p,
            &subject,
            &body,
            true,
            now.timestamp(),
        )
        .await?;
    }
    let techs = technicians_of_sites(tx, &b.sites).await?;
    for t in &techs {
        let body = format!("{body}\nĐề nghị cán bộ kỹ thuật điểm cầu có mặt từ thời gian chuẩn bị để chạy thử (khoản 1 Điều 6).\n");
        queue(
            tx,
            b.id,
            "technician_notice",
            t,
            &subject,
            &body,
            true,
            now.timestamp(),
        )
        .await?;
    }
    let prep = DateTime::from_timestamp(b.preparation_start, 0).unwrap_or(now);
    for at in reminder_times(prep, now, rules) {
        for t in &techs {
            let body = format!("Nhắc lịch họp trực tuyến.\n\n{}\n", times(b));
            queue(
                tx,
                b.id,
                "reminder",
                t,
                &format!("[HNTH] Nhắc lịch: {}", b.title),
                &body,
                false,
                at.timestamp(),
            )
            .await?;
        }
    }
    Ok(())
}

/// B5: an emergency meeting alerts every concerned technician at once.
pub async fn queue_emergency(
    tx: &mut Transaction<'_, Sqlite>,
    b: &Booking,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let subject = format!("[HNTH] KHẨN: {}", b.title);
    let body = format!(
        "Cuộc họp trực tuyến đột xuất, khẩn cấp (khoản 3 Điều 5). Đề nghị các điểm cầu chuẩn bị ngay.\n\n{}\n",
        times(b)
    );
    let to = sites_and_provider(tx, &b.sites).await?;
    queue_each(
        tx,
        b.id,
        "emergency_alert",
        &to,
        &subject,
        &body,
        now.timestamp(),
    )
    .await
}

/// Send what is due, forever. Failed notices are retried (at most 10 tries, one minute apart).
pub async fn run(db: SqlitePool, mail: Mail, wake: Outbox) {
    let Some(host) = mail.smtp_host.clone() else {
        tracing::warn!("no SMTP server configured (mail.smtp_host): notices stay in the outbox");
        return;
    };
    let transport = match transport(&host, &mail) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("SMTP settings: {e}");
            return;
        }
    };
    let from: Mailbox = match mail.from.parse() {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("mail.from '{}': {e}", mail.from);
            return;
        }
    };
    loop {
        if let Err(e) = send_due(&db, &transport, &from).await {
            tracing::error!("outbox: {e}");
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), wake.notified()).await;
    }
}

fn transport(host: &str, mail: &Mail) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let mut b = match mail.smtp_security {
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
    }
    .port(mail.smtp_port)
    .timeout(Some(Duration::from_secs(20)));
    if let (Some(u), Some(p)) = (&mail.smtp_username, &mail.smtp_password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(b.build())
}

async fn send_due(
    db: &SqlitePool,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
) -> anyhow::Result<()> {
    let now = db::now();
    let due = sqlx::query(
        "SELECT id, booking_id, to_addr, to_name, subject, body, with_invitation FROM notices \
         WHERE sent_at IS NULL AND due_at <= ? AND attempts < 10 AND (last_error IS NULL OR due_at + attempts * 60 <= ?) ORDER BY due_at LIMIT 50",
    )
    .bind(now)
    .bind(now)
    .fetch_all(db)
    .await?;
    for r in due {
        let id: i64 = r.get("id");
        let result = build(db, from, &r).await;
        let result = match result {
            Ok(msg) => transport
                .send(msg)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                sqlx::query("UPDATE notices SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?")
                    .bind(db::now())
                    .bind(id)
                    .execute(db)
                    .await?;
            }
            Err(e) => {
                tracing::warn!(notice = id, "sending failed: {e}");
                sqlx::query(
                    "UPDATE notices SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                )
                .bind(e)
                .bind(id)
                .execute(db)
                .await?;
            }
        }
    }
    Ok(())
}

async fn build(
    db: &SqlitePool,
    from: &Mailbox,
    r: &sqlx::sqlite::SqliteRow,
) -> anyhow::Result<Message> {
    let to = Mailbox::new(
        Some(r.get::<String, _>("to_name")),
        r.get::<String, _>("to_addr").parse()?,
    );
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(r.get::<String, _>("subject"));
    let body: String = r.get("body");
    let booking: Option<i64> = r.get("booking_id");
    if r.get::<i64, _>("with_invitation") != 0 {
        if let Some(b) = booking {
            if let Some(b) = crate::bookings::load_one(db, b).await? {
                let cal = Attachment::new(format!("hop-{}.ics", b.id)).body(
                    ics(&b),
                    ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")?,
                );
                return Ok(builder.multipart(
                    MultiPart::mixed()
                        .singlepart(SinglePart::plain(body))
                        .singlepart(cal),
                )?);
            }
        }
    }
    Ok(builder.singlepart(SinglePart::plain(body))?)
}

/// A cancelled (or displaced) meeting that had been approved: the technicians and the provider
/// are told, and the reminders not yet sent are withdrawn.
pub async fn queue_cancelled(
    tx: &mut Transaction<'_, Sqlite>,
    b: &Booking,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    withdraw_reminders(tx, b.id).await?;
    let subject = format!("[HNTH] Hủy cuộc họp: {}", b.title);
    let body = format!(
        "Cuộc họp trực tuyến sau đây đã bị hủy.\nLý do: {reason}\n\n{}\n",
        times(b)
    );
    let to = sites_and_provider(tx, &b.sites).await?;
    queue_each(tx, b.id, "cancelled", &to, &subject, &body, now.timestamp()).await
}

/// The reminders of a booking not yet sent are withdrawn (cancelled, or no longer approved).
pub async fn withdraw_reminders(
    tx: &mut Transaction<'_, Sqlite>,
    booking: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM notices WHERE booking_id = ? AND sent_at IS NULL AND kind = 'reminder'",
    )
    .bind(booking)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The same notice to each recipient.
async fn queue_each(
    tx: &mut Transaction<'_, Sqlite>,
    booking: i64,
    kind: &str,
    to: &[Recipient],
    subject: &str,
    body: &str,
    due: i64,
) -> sqlx::Result<()> {
    for r in to {
        queue(tx, booking, kind, r, subject, body, false, due).await?;
    }
    Ok(())
}

/// The technicians of these sites and the line provider's contacts.
async fn sites_and_provider(
    tx: &mut Transaction<'_, Sqlite>,
    sites: &[i64],
) -> sqlx::Result<Vec<Recipient>> {
    let mut to = technicians_of_sites(tx, sites).await?;
    to.extend(provider_contacts(tx).await?);
    Ok(to)
}

/// Technicians of the given sites, with an e-mail address, each address once.
async fn technicians_of_sites(
    tx: &mut Transaction<'_, Sqlite>,
    sites: &[i64],
) -> sqlx::Result<Vec<Recipient>> {
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

/// An approved meeting whose times or sites were edited (P1, Art. 6.1a): the technicians of the
/// sites before and after, and the provider (B2), are told what changed; the meeting waits for
/// approval again, which sends the new invitation.
pub async fn queue_changed(
    tx: &mut Transaction<'_, Sqlite>,
    before: &Booking,
    after: &Booking,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let subject = format!("[HNTH] Thay đổi lịch họp: {}", after.title);
    let body = format!(
        "Cuộc họp trực tuyến đã được phê duyệt nay thay đổi thời gian hoặc điểm cầu; lịch mới chờ Văn phòng UBND tỉnh phê duyệt lại (khoản 1 Điều 5, khoản 1 Điều 6).\n\nTRƯỚC KHI THAY ĐỔI:\n{}\n\nSAU KHI THAY ĐỔI:\n{}\n",
        times(before),
        times(after)
    );
    let mut sites = before.sites.clone();
    sites.extend(after.sites.iter().filter(|s| !before.sites.contains(s)));
    let to = sites_and_provider(tx, &sites).await?;
    queue_each(
        tx,
        after.id,
        "changed",
        &to,
        &subject,
        &body,
        now.timestamp(),
    )
    .await
}

/// L2 (Art. 12): the provider's on-duty technician of an approved meeting was chosen or
/// changed; the technicians of its sites and the provider are told.
pub async fn queue_on_duty(
    tx: &mut Transaction<'_, Sqlite>,
    b: &Booking,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let subject = format!("[HNTH] Cán bộ trực đường truyền: {}", b.title);
    let who = b.on_duty.as_deref().unwrap_or("chưa phân công");
    let body = format!(
        "Cán bộ kỹ thuật trực của đơn vị cung cấp đường truyền cho cuộc họp trực tuyến sau đây (Điều 12): {who}.\n\n{}\n",
        times(b)
    );
    let to = sites_and_provider(tx, &b.sites).await?;
    queue_each(tx, b.id, "changed", &to, &subject, &body, now.timestamp()).await
}

/// One notice as the booking page lists it.
#[derive(Debug, serde::Serialize)]
pub struct NoticeRow {
    pub kind: String,
    pub to: String,
    pub due: String,
    pub sent: Option<String>,
    pub error: Option<String>,
}

pub async fn notices_of(db: &SqlitePool, booking: i64) -> sqlx::Result<Vec<NoticeRow>> {
    let rows = sqlx::query(
        "SELECT kind, to_name, to_addr, due_at, sent_at, last_error FROM notices WHERE booking_id = ? ORDER BY due_at, id",
    )
    .bind(booking)
    .fetch_all(db)
    .await?;
    let fmt = |t: i64| {
        DateTime::from_timestamp(t, 0)
            .map(format_datetime_vi)
            .unwrap_or_default()
    };
    Ok(rows
        .into_iter()
        .map(|r| NoticeRow {
            kind: r.get("kind"),
            to: format!(
                "{} <{}>",
                r.get::<String, _>("to_name"),
                r.get::<String, _>("to_addr")
            ),
            due: fmt(r.get("due_at")),
            sent: r.get::<Option<i64>, _>("sent_at").map(fmt),
            error: r.get("last_error"),
        })
        .collect())
}

/// B2: when the provider was first notified of this booking, if ever.
pub async fn provider_notified_at(
    db: &SqlitePool,
    booking: i64,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT MIN(sent_at) FROM notices WHERE booking_id = ? AND kind = 'provider_notice' AND sent_at IS NOT NULL")
            .bind(booking)
            .fetch_optional(db)
            .await?;
    Ok(row
        .and_then(|r| r.0)
        .and_then(|t| DateTime::from_timestamp(t, 0)))
}

/// B5: whom to call, with phone numbers: the technicians of the booking's sites and the provider.
pub async fn phone_list(
    db: &SqlitePool,
    booking: i64,
) -> sqlx::Result<Vec<(String, String, String)>> {
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
