//! Notices by e-mail (B2 provider notice, P1 technician notices and reminders, B5 emergency
//! alerts): written to the `notices` outbox in the same transaction as the change that causes
//! them, then sent over SMTP by one background task, so nothing is lost if the mail server is
//! down (they are retried) and nothing is sent for a change that was rolled back.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hnth_rules::booking::{reminder_times, Settings as RuleSettings};
use hnth_rules::notice::{still_serves, NoticeKind};
use hnth_rules::time::format_datetime_vi;
use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;

use crate::config::{Mail, SmtpSecurity};
use crate::services::invitation::ics;
use crate::store::bookings::Booking;
pub use crate::store::notices::Recipient;
use crate::store::notices::{self, NewNotice};
use crate::store::{self, Db, Tx};

/// Wakes the sender when something was queued.
pub type Outbox = Arc<Notify>;

#[allow(clippy::too_many_arguments)]
async fn queue(
    tx: &mut Tx<'_>,
    booking: i64,
    kind: &str,
    to: &Recipient,
    subject: &str,
    body: &str,
    with_invitation: bool,
    due: i64,
) -> Result<(), store::Error> {
    notices::queue(
        tx,
        NewNotice {
            booking,
            kind,
            to,
            subject,
            body,
            with_invitation,
            due,
        },
    )
    .await
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
    tx: &mut Tx<'_>,
    b: &Booking,
    now: DateTime<Utc>,
    rules: &RuleSettings,
) -> Result<(), store::Error> {
    let subject = format!("[HNTH] {}: {}", b.kind_label_vi(), b.title);
    let body = format!(
        "Văn phòng UBND tỉnh thông báo cuộc họp trực tuyến đã được phê duyệt (Điều 5, Điều 6 Quy chế 561/QĐ-UBND).\n\n{}\n",
        times(b)
    );
    for p in notices::provider_recipients(tx).await? {
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
    let techs = notices::technicians_of_sites(tx, &b.sites).await?;
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
    tx: &mut Tx<'_>,
    b: &Booking,
    now: DateTime<Utc>,
) -> Result<(), store::Error> {
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

/// Send what is due, forever. Failed notices are retried (at most 10 tries, one minute apart);
/// a notice whose meeting has begun (or ended) by then expires instead (`hnth_rules::notice`).
pub async fn run(db: Db, mail: Mail, wake: Outbox) {
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
    db: &Db,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
) -> anyhow::Result<()> {
    let now = store::now();
    for n in notices::due(db, now).await? {
        let id = n.id;
        if let (Some(start), Some(end)) = (n.official_start, n.official_end) {
            let ts = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
            if !still_serves(NoticeKind::parse(&n.kind), ts(start), ts(end), ts(now)) {
                notices::mark_expired(db, id, now).await?;
                tracing::info!(
                    notice = id,
                    kind = n.kind,
                    booking = n.booking_id,
                    due_at = n.due_at,
                    official_start = start,
                    "notice expired, not sent: its meeting has begun or ended"
                );
                continue;
            }
        }
        let result = build(db, from, &n).await;
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
                metrics::counter!(crate::telemetry::NOTICE_SENDS, "result" => "sent").increment(1);
                notices::mark_sent(db, id, store::now()).await?
            }
            Err(e) => {
                tracing::warn!(notice = id, "sending failed: {e}");
                metrics::counter!(crate::telemetry::NOTICE_SENDS, "result" => "failed")
                    .increment(1);
                notices::mark_failed(db, id, &e).await?;
            }
        }
    }
    Ok(())
}

fn notice_message_id(id: i64, from: &Mailbox) -> String {
    format!("<hnth-notice-{id}@{}>", from.email.domain())
}

async fn build(db: &Db, from: &Mailbox, n: &notices::Due) -> anyhow::Result<Message> {
    let to = Mailbox::new(Some(n.to_name.clone()), n.to_addr.parse()?);
    // One Message-ID per notice, whichever try sends it: a notice sent again after a crash
    // between the SMTP server's "accepted" and the outbox's "sent" (at least once, never lost)
    // is recognisably the same message, which mail clients show once.
    let builder = Message::builder()
        .message_id(Some(notice_message_id(n.id, from)))
        .from(from.clone())
        .to(to)
        .subject(n.subject.clone());
    let body = n.body.clone();
    if n.with_invitation {
        if let Some(b) = n.booking_id {
            if let Some(b) = store::bookings::get(db, b).await? {
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
    tx: &mut Tx<'_>,
    b: &Booking,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), store::Error> {
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
pub async fn withdraw_reminders(tx: &mut Tx<'_>, booking: i64) -> Result<(), store::Error> {
    notices::withdraw_reminders(tx, booking).await
}

/// The same notice to each recipient.
async fn queue_each(
    tx: &mut Tx<'_>,
    booking: i64,
    kind: &str,
    to: &[Recipient],
    subject: &str,
    body: &str,
    due: i64,
) -> Result<(), store::Error> {
    for r in to {
        queue(tx, booking, kind, r, subject, body, false, due).await?;
    }
    Ok(())
}

/// The technicians of these sites and the line provider's contacts.
async fn sites_and_provider(
    tx: &mut Tx<'_>,
    sites: &[i64],
) -> Result<Vec<Recipient>, store::Error> {
    let mut to = notices::technicians_of_sites(tx, sites).await?;
    to.extend(notices::provider_recipients(tx).await?);
    Ok(to)
}

/// An approved meeting whose times or sites were edited (P1, Art. 6.1a): the technicians of the
/// sites before and after, and the provider (B2), are told what changed; the meeting waits for
/// approval again, which sends the new invitation.
pub async fn queue_changed(
    tx: &mut Tx<'_>,
    before: &Booking,
    after: &Booking,
    now: DateTime<Utc>,
) -> Result<(), store::Error> {
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
    tx: &mut Tx<'_>,
    b: &Booking,
    now: DateTime<Utc>,
) -> Result<(), store::Error> {
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
    /// Not sent: its meeting had begun (or ended) when it came due.
    pub expired: Option<String>,
}

pub async fn notices_of(db: &Db, booking: i64) -> Result<Vec<NoticeRow>, store::Error> {
    let fmt = |t: i64| {
        DateTime::from_timestamp(t, 0)
            .map(format_datetime_vi)
            .unwrap_or_default()
    };
    Ok(notices::of_booking(db, booking)
        .await?
        .into_iter()
        .map(|n| NoticeRow {
            kind: n.kind,
            to: format!("{} <{}>", n.to_name, n.to_addr),
            due: fmt(n.due_at),
            sent: n.sent_at.map(fmt),
            error: n.last_error,
            expired: n.expired_at.map(fmt),
        })
        .collect())
}

/// B2: when the provider was first notified of this booking, if ever.
pub async fn provider_notified_at(
    db: &Db,
    booking: i64,
) -> Result<Option<DateTime<Utc>>, store::Error> {
    Ok(notices::provider_notified_at(db, booking)
        .await?
        .and_then(|t| DateTime::from_timestamp(t, 0)))
}

/// B5: whom to call, with phone numbers: the technicians of the booking's sites and the provider.
pub async fn phone_list(
    db: &Db,
    booking: i64,
) -> Result<Vec<(String, String, String)>, store::Error> {
    notices::phone_list(db, booking).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::SqlitePool;
    use std::sync::Mutex;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// What the test's SMTP server was given: (recipients, data) of each message.
    type Delivered = Arc<Mutex<Vec<(Vec<String>, String)>>>;

    /// A tiny SMTP server on 127.0.0.1: accepts every message and keeps it.
    async fn smtp_server() -> (u16, Delivered) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Delivered = Default::default();
        let keep = got.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    w.write_all(b"220 test ESMTP\r\n").await.unwrap();
                    let mut rcpt = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let cmd = line.to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                            b"250 test\r\n"
                        } else if cmd.starts_with("RCPT TO:") {
                            rcpt.push(line[8..].trim().to_string());
                            b"250 OK\r\n"
                        } else if cmd == "DATA" {
                            w.write_all(b"354 go on\r\n").await.unwrap();
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            keep.lock().unwrap().push((std::mem::take(&mut rcpt), data));
                            b"250 accepted\r\n"
                        } else if cmd == "QUIT" {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        } else {
                            b"250 OK\r\n"
                        };
                        w.write_all(reply).await.unwrap();
                    }
                });
            }
        });
        (port, got)
    }

    /// A unit, a site and a booking whose official time starts `start_in` seconds from now
    /// (negative: in the past) and lasts two hours.
    async fn booking(db: &SqlitePool, code: &str, start_in: i64) -> i64 {
        let now = store::now();
        let unit = sqlx::query("INSERT INTO units (code, name, kind) VALUES (?, ?, 'district')")
            .bind(code)
            .bind(format!("UBND {code}"))
            .execute(db)
            .await
            .unwrap()
            .last_insert_rowid();
        let site = sqlx::query("INSERT INTO sites (code, name, unit_id) VALUES (?, ?, ?)")
            .bind(code)
            .bind(format!("Điểm cầu {code}"))
            .bind(unit)
            .execute(db)
            .await
            .unwrap()
            .last_insert_rowid();
        sqlx::query(
            "INSERT INTO bookings (title, kind, host_unit_id, chair, host_site_id, preparation_start, \
             official_start, official_end, status, created_at) VALUES (?, 'hop', ?, 'Chủ tịch', ?, ?, ?, ?, 'approved', ?)",
        )
        .bind(format!("Họp {code}"))
        .bind(unit)
        .bind(site)
        .bind(now + start_in - 1800)
        .bind(now + start_in)
        .bind(now + start_in + 7200)
        .bind(now)
        .execute(db)
        .await
        .unwrap()
        .last_insert_rowid()
    }

    async fn queue_reminder(db: &SqlitePool, booking: i64, to: &str, due_in: i64) -> i64 {
        sqlx::query(
            "INSERT INTO notices (booking_id, kind, to_addr, to_name, subject, body, due_at) \
             VALUES (?, 'reminder', ?, 'Kỹ thuật', '[HNTH] Nhắc lịch', 'Nhắc lịch họp trực tuyến.', ?)",
        )
        .bind(booking)
        .bind(to)
        .bind(store::now() + due_in)
        .execute(db)
        .await
        .unwrap()
        .last_insert_rowid()
    }

    /// A reminder whose moment passed while the server (or the mail server) was down, for a
    /// meeting held days ago, is not sent but marked expired; one for a meeting still to come
    /// is delivered.
    #[tokio::test]
    async fn a_stale_reminder_expires_and_a_useful_one_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("hnth.db")).await.unwrap();
        let past = booking(&db, "past", -3 * 86400).await;
        let coming = booking(&db, "coming", 86400).await;
        let stale = queue_reminder(&db, past, "stale@test.local", -4 * 86400).await;
        let useful = queue_reminder(&db, coming, "useful@test.local", -60).await;

        let (port, got) = smtp_server().await;
        let mail = Mail {
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: port,
            ..Mail::default()
        };
        let t = transport("127.0.0.1", &mail).unwrap();
        let from: Mailbox = mail.from.parse().unwrap();
        send_due(&db, &t, &from).await.unwrap();

        let delivered: Vec<Vec<String>> = got
            .lock()
            .unwrap()
            .iter()
            .map(|(to, _)| to.clone())
            .collect();
        assert_eq!(
            delivered,
            vec![vec!["<useful@test.local>".to_string()]],
            "only the reminder of the meeting still to come is delivered"
        );
        let state = |id: i64| {
            let db = db.clone();
            async move {
                sqlx::query_as::<_, (Option<i64>, Option<i64>)>(
                    "SELECT sent_at, expired_at FROM notices WHERE id = ?",
                )
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
            }
        };
        let (sent, expired) = state(stale).await;
        assert!(
            sent.is_none() && expired.is_some(),
            "stale reminder: sent {sent:?}, expired {expired:?}"
        );
        let (sent, expired) = state(useful).await;
        assert!(
            sent.is_some() && expired.is_none(),
            "useful reminder: sent {sent:?}, expired {expired:?}"
        );

        // Expired is final: a second round sends nothing more.
        send_due(&db, &t, &from).await.unwrap();
        assert_eq!(got.lock().unwrap().len(), 1);
        let rows = notices_of(&db, past).await.unwrap();
        assert!(rows[0].expired.is_some() && rows[0].sent.is_none());
    }
}
