//! Fixtures of the unit tests: a fresh database, a count, and a store that fails on demand.

use super::Db;

/// A fresh, migrated database in a folder that lives as long as the returned guard.
pub async fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = super::open(&dir.path().join("hnth.db")).await.unwrap();
    (dir, db)
}

/// The number a `SELECT COUNT(*) …` answers.
pub async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

/// From now on every `op` (`INSERT`, `UPDATE`, `DELETE`) on `table` fails, as on a disk that
/// refuses writes.
pub async fn refuse(db: &Db, table: &str, op: &str) {
    sqlx::query(&format!(
        "CREATE TRIGGER refuse_{table}_{op} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, 'disk is read-only'); END"
    ))
    .execute(db)
    .await
    .unwrap();
}

/// From now on every read of `table`'s `column` fails, as a damaged database would: the column
/// is renamed, so a statement naming it no longer prepares.
pub async fn break_column(db: &Db, table: &str, column: &str) {
    sqlx::query(&format!(
        "ALTER TABLE {table} RENAME COLUMN {column} TO {column}_unreadable"
    ))
    .execute(db)
    .await
    .unwrap();
}
