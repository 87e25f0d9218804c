//! The store: every SQL statement of the product, one module per aggregate. It returns domain
//! types and knows nothing of HTTP, JSON bodies, templates or the WebSocket.
//!
//! **Invariant:** only the store writes SQL (`tests/layers.rs` checks it).

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod bookings;
pub mod costs;
pub mod demo;
pub mod meetings;
pub mod notices;
pub mod registry;
#[cfg(test)]
pub mod testing;

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The database handle the layers above hold (SQLite today; a PostgreSQL backend would sit
/// beside it without changing its callers).
pub type Db = sqlx::SqlitePool;
/// What a store function fails with.
pub type Error = sqlx::Error;
/// An open transaction: a use case's writes, committed together or not at all.
pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// A transaction that takes the write lock at once (SQLite's `BEGIN IMMEDIATE`), for a use case
/// that reads and then writes: a deferred one could fail with "database is locked" when it
/// upgrades from reading to writing while another connection writes.
pub async fn begin_write(db: &Db) -> Result<Tx<'static>, Error> {
    db.begin_with("BEGIN IMMEDIATE").await
}

/// The database at `path` (created if missing), migrated to this version's schema.
pub async fn open(path: &Path) -> anyhow::Result<Db> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // WAL with `synchronous = FULL`: every commit is on disk (the WAL fsynced) before the use
    // case returns, so a committed row survives a crash of the server and a power cut alike;
    // NORMAL would be faster but may lose the last commits at a power cut.
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
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

#[cfg(test)]
mod durability {
    use sqlx::Row;

    /// Every connection of the pool writes ahead (WAL) and syncs each commit (FULL = 2).
    #[tokio::test]
    async fn every_commit_is_synced_to_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::open(&dir.path().join("hnth.db")).await.unwrap();
        for _ in 0..3 {
            let mut c = db.acquire().await.unwrap();
            let mode: String = sqlx::query("PRAGMA journal_mode")
                .fetch_one(&mut *c)
                .await
                .unwrap()
                .get(0);
            let sync: i64 = sqlx::query("PRAGMA synchronous")
                .fetch_one(&mut *c)
                .await
                .unwrap()
                .get(0);
            assert_eq!((mode.as_str(), sync), ("wal", 2));
        }
    }
}
