//! The audit trail (A3: who changed what, when, from what, to what) and the violations the
//! system saw (R4), with the filters of the audit page and of the API. Every use case writes
//! its entry in its own transaction (`record`), so a change and its entry commit together.

use serde::Serialize;
use sqlx::Row;

use super::{now, Db, Error};

/// One entry of the audit trail (rule A3): who changed what, from what, to what.
pub struct AuditEntry<'a> {
    pub actor_id: Option<i64>,
    pub actor: &'a str,
    pub action: &'a str,
    pub entity: &'a str,
    pub entity_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

pub async fn record<'e, E>(db: E, e: AuditEntry<'_>) -> Result<(), Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO audit (at, actor_id, actor, action, entity, entity_id, before_json, after_json) VALUES (?,?,?,?,?,?,?,?)",
    )
    .bind(now())
    .bind(e.actor_id)
    .bind(e.actor)
    .bind(e.action)
    .bind(e.entity)
    .bind(e.entity_id)
    .bind(e.before.map(|v| v.to_string()))
    .bind(e.after.map(|v| v.to_string()))
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    /// What the entity is called now (an account's username, a booking's title, ...), if it
    /// still exists.
    pub entity_name: Option<String>,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
}

/// What the audit page asks for; every field is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// From this instant (Unix seconds), inclusive.
    pub from: Option<i64>,
    /// Before this instant, exclusive.
    pub until: Option<i64>,
    /// Entries concerning this site: the site itself, its technicians, the accounts of the site,
    /// bookings and meetings it takes part in, and whatever the site's accounts did.
    pub site: Option<i64>,
    /// Done by this username (or command-line tool, e.g. `hnth user add`).
    pub actor: Option<String>,
    /// This action (e.g. `open_meeting`).
    pub action: Option<String>,
}

const AUDIT_SQL: &str = "SELECT a.at, a.actor, a.action, a.entity, a.entity_id, a.before_json, a.after_json, \
     CASE a.entity \
       WHEN 'account' THEN (SELECT username FROM accounts WHERE id = CAST(a.entity_id AS INTEGER)) \
       WHEN 'booking' THEN (SELECT title FROM bookings WHERE id = CAST(a.entity_id AS INTEGER)) \
       WHEN 'meeting' THEN (SELECT title FROM meetings WHERE id = CAST(a.entity_id AS INTEGER)) \
       WHEN 'site' THEN (SELECT name FROM sites WHERE id = CAST(a.entity_id AS INTEGER)) \
       WHEN 'unit' THEN (SELECT name FROM units WHERE id = CAST(a.entity_id AS INTEGER)) \
       WHEN 'technician' THEN (SELECT name FROM technicians WHERE id = CAST(a.entity_id AS INTEGER)) \
       WHEN 'provider_contact' THEN (SELECT name FROM provider_contacts WHERE id = CAST(a.entity_id AS INTEGER)) \
     END AS entity_name \
     FROM audit a \
     WHERE (?1 IS NULL OR a.at >= ?1) AND (?2 IS NULL OR a.at < ?2) \
       AND (?3 IS NULL OR a.actor = ?3) AND (?4 IS NULL OR a.action = ?4) \
       AND (?5 IS NULL \
         OR (a.entity = 'site' AND a.entity_id = CAST(?5 AS TEXT)) \
         OR (a.entity = 'technician' AND EXISTS (SELECT 1 FROM technicians t \
               WHERE t.id = CAST(a.entity_id AS INTEGER) AND t.site_id = ?5)) \
         OR (a.entity = 'account' AND EXISTS (SELECT 1 FROM accounts x \
               WHERE x.id = CAST(a.entity_id AS INTEGER) AND x.site_id = ?5)) \
         OR (a.entity = 'booking' AND EXISTS (SELECT 1 FROM bookings b \
               WHERE b.id = CAST(a.entity_id AS INTEGER) AND (b.host_site_id = ?5 \
                 OR EXISTS (SELECT 1 FROM booking_sites bs WHERE bs.booking_id = b.id AND bs.site_id = ?5)))) \
         OR (a.entity = 'meeting' AND EXISTS (SELECT 1 FROM meeting_sites ms \
               WHERE ms.meeting_id = CAST(a.entity_id AS INTEGER) AND ms.site_id = ?5)) \
         OR EXISTS (SELECT 1 FROM accounts x WHERE x.id = a.actor_id AND x.site_id = ?5)) \
     ORDER BY a.id DESC LIMIT ?6";

/// The audit trail (A3), newest first, as filtered.
pub async fn entries(db: &Db, filter: &AuditFilter, limit: i64) -> Result<Vec<AuditRow>, Error> {
    let rows = sqlx::query(AUDIT_SQL)
        .bind(filter.from)
        .bind(filter.until)
        .bind(filter.actor.as_deref())
        .bind(filter.action.as_deref())
        .bind(filter.site)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditRow {
            at: r.get("at"),
            actor: r.get("actor"),
            action: r.get("action"),
            entity: r.get("entity"),
            entity_id: r.get("entity_id"),
            entity_name: r.get("entity_name"),
            before_json: r.get("before_json"),
            after_json: r.get("after_json"),
        })
        .collect())
}

/// Everyone who appears in the audit trail or has an account, for the audit page's user filter.
pub async fn actors(db: &Db) -> Result<Vec<String>, Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT actor FROM audit UNION SELECT username FROM accounts ORDER BY 1")
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Rule R4: record what the regulation forbids and the system saw, explained in English
/// (`detail`: API, logs) and in Vietnamese (`detail_vi`: the UI).
pub async fn record_violation(
    db: &Db,
    rule: &str,
    account_id: Option<i64>,
    site_id: Option<i64>,
    detail: &str,
    detail_vi: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO violations (at, rule, account_id, site_id, detail, detail_vi) VALUES (?,?,?,?,?,?)",
    )
    .bind(now())
    .bind(rule)
    .bind(account_id)
    .bind(site_id)
    .bind(detail)
    .bind(detail_vi)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct ViolationRow {
    pub at: i64,
    pub rule: String,
    pub site: Option<String>,
    pub account: Option<String>,
    pub detail: String,
    /// Recorded since the audit page shows violations in Vietnamese; older rows have none.
    pub detail_vi: Option<String>,
}

/// The recorded violations (R4), newest first, filtered by time, site and user (the
/// filter's action does not apply to them).
pub async fn violations(
    db: &Db,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<ViolationRow>, Error> {
    let rows = sqlx::query(
        "SELECT v.at, v.rule, s.name AS site, a.username AS account, v.detail, v.detail_vi FROM violations v \
         LEFT JOIN sites s ON s.id = v.site_id LEFT JOIN accounts a ON a.id = v.account_id \
         WHERE (?1 IS NULL OR v.at >= ?1) AND (?2 IS NULL OR v.at < ?2) \
           AND (?3 IS NULL OR a.username = ?3) AND (?4 IS NULL OR v.site_id = ?4) \
         ORDER BY v.id DESC LIMIT ?5",
    )
    .bind(filter.from)
    .bind(filter.until)
    .bind(filter.actor.as_deref())
    .bind(filter.site)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ViolationRow {
            at: r.get("at"),
            rule: r.get("rule"),
            site: r.get("site"),
            account: r.get("account"),
            detail: r.get("detail"),
            detail_vi: r.get("detail_vi"),
        })
        .collect())
}
