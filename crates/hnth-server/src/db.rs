//! SQLite persistence: the pool, migrations, and the registry and audit queries.

use std::path::Path;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

pub async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub is_control_center: bool,
    pub room_rules: String,
}

pub async fn sites(db: &SqlitePool) -> sqlx::Result<Vec<Site>> {
    let rows = sqlx::query(
        "SELECT id, code, name, is_control_center, room_rules FROM sites ORDER BY is_control_center DESC, id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Site {
            id: r.get("id"),
            code: r.get("code"),
            name: r.get("name"),
            is_control_center: r.get::<i64, _>("is_control_center") != 0,
            room_rules: r.get("room_rules"),
        })
        .collect())
}

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

pub async fn audit<'e, E>(db: E, e: AuditEntry<'_>) -> sqlx::Result<()>
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
    pub before_json: Option<String>,
    pub after_json: Option<String>,
}

pub async fn audit_log(db: &SqlitePool, limit: i64) -> sqlx::Result<Vec<AuditRow>> {
    let rows = sqlx::query(
        "SELECT at, actor, action, entity, entity_id, before_json, after_json FROM audit ORDER BY id DESC LIMIT ?",
    )
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
            before_json: r.get("before_json"),
            after_json: r.get("after_json"),
        })
        .collect())
}

/// Rule R4: record what the regulation forbids and the system saw.
pub async fn violation(
    db: &SqlitePool,
    rule: &str,
    account_id: Option<i64>,
    site_id: Option<i64>,
    detail: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO violations (at, rule, account_id, site_id, detail) VALUES (?,?,?,?,?)",
    )
    .bind(now())
    .bind(rule)
    .bind(account_id)
    .bind(site_id)
    .bind(detail)
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
}

pub async fn violations(db: &SqlitePool, limit: i64) -> sqlx::Result<Vec<ViolationRow>> {
    let rows = sqlx::query(
        "SELECT v.at, v.rule, s.name AS site, a.username AS account, v.detail FROM violations v \
         LEFT JOIN sites s ON s.id = v.site_id LEFT JOIN accounts a ON a.id = v.account_id \
         ORDER BY v.id DESC LIMIT ?",
    )
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
        })
        .collect())
}
