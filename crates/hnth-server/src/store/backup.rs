//! Backup and restore of the database (`hnth backup`, `hnth restore`, docs/install.md).
//!
//! A backup is SQLite's `VACUUM INTO`: one read transaction of the running server's database,
//! so the copy is consistent as of one commit however much the server writes meanwhile, and is
//! compact (no free pages, no WAL). A restore checks a copy before anything is replaced.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection, Row};

use super::Db;

/// What a copy holds, to print and to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The newest schema migration it carries.
    pub schema: i64,
    pub accounts: i64,
    pub sites: i64,
    pub bookings: i64,
    pub meetings: i64,
    pub audit_entries: i64,
}

/// Writes a consistent copy of `db` to `to`, which must not exist yet.
pub async fn copy_to(db: &Db, to: &Path) -> anyhow::Result<()> {
    let to_str = to
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("backup path {} is not UTF-8", to.display()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(to_str)
        .execute(db)
        .await
        .map_err(|e| anyhow::anyhow!("cannot write the backup to {}: {e}", to.display()))?;
    Ok(())
}

/// Opens the copy at `path` read-only, checks it page by page (`PRAGMA integrity_check`) and
/// says what it holds. Anything else than an hnth database fails with one line.
pub async fn check(path: &Path) -> anyhow::Result<Summary> {
    if !path.is_file() {
        anyhow::bail!("{} is not a file", path.display());
    }
    let mut c = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("{} cannot be opened as a database: {e}", path.display()))?;
    let not_ours = |e: sqlx::Error| {
        anyhow::anyhow!(
            "{} is not an hnth database (or is damaged): {e}",
            path.display()
        )
    };
    let verdict: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .map_err(not_ours)?
        .get(0);
    if verdict != "ok" {
        anyhow::bail!("{} is damaged: {verdict}", path.display());
    }
    let count = |table: &'static str| format!("SELECT count(*) FROM {table}");
    let mut n = Vec::new();
    for table in ["accounts", "sites", "bookings", "meetings", "audit"] {
        n.push(
            sqlx::query_scalar::<_, i64>(&count(table))
                .fetch_one(&mut c)
                .await
                .map_err(not_ours)?,
        );
    }
    let schema: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut c)
            .await
            .map_err(not_ours)?;
    c.close().await.ok();
    Ok(Summary {
        schema,
        accounts: n[0],
        sites: n[1],
        bookings: n[2],
        meetings: n[3],
        audit_entries: n[4],
    })
}

/// The newest migration this binary knows: a copy from a newer version is not restored by it.
pub fn known_schema() -> i64 {
    sqlx::migrate!("./migrations")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Folds the WAL of the database at `path` into it and removes the WAL, before its files are
/// moved aside by a restore (a server that crashed leaves committed rows in the WAL).
pub async fn checkpoint(path: &Path) -> anyhow::Result<()> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path))
        .await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_copy_made_while_writing_is_whole_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open(&dir.path().join("hnth.db"))
            .await
            .unwrap();
        let to = dir.path().join("copy.db");
        copy_to(&db, &to).await.unwrap();
        let s = check(&to).await.unwrap();
        assert_eq!(s.schema, known_schema());
        // The same path twice: refused, the first copy kept.
        assert!(copy_to(&db, &to).await.is_err());
        assert_eq!(check(&to).await.unwrap(), s);
    }

    #[tokio::test]
    async fn what_is_not_an_hnth_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database at all, just text").unwrap();
        assert!(check(&junk).await.is_err());
        assert!(check(&dir.path().join("missing.db")).await.is_err());
        // A real SQLite database of something else.
        let other = dir.path().join("other.db");
        let pool = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&other)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let e = check(&other).await.unwrap_err().to_string();
        assert!(e.contains("not an hnth database"), "{e}");
    }
}
