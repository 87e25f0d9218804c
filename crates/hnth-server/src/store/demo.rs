//! What `hnth demo` seeds beyond the registry's own statements: sites written as given (with
//! the control center's flag), inside the seeding's transaction (units, technicians, provider
//! contacts and accounts go through `store::registry` and `store::accounts`).

use super::{Db, Error, Tx};

/// Whether the registry holds no site yet (a demo started before keeps what it has).
pub async fn has_no_site(db: &Db) -> Result<bool, Error> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sites")
        .fetch_one(db)
        .await?;
    Ok(count == 0)
}

pub async fn unit_id(tx: &mut Tx<'_>, code: &str) -> Result<Option<i64>, Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM units WHERE code = ?")
        .bind(code)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.0))
}

pub struct NewSite<'a> {
    pub code: &'a str,
    pub name: &'a str,
    pub unit_id: i64,
    pub room: &'a str,
    pub room_rules: &'a str,
    pub is_control_center: bool,
}

pub async fn insert_site(tx: &mut Tx<'_>, s: &NewSite<'_>) -> Result<i64, Error> {
    Ok(sqlx::query(
        "INSERT INTO sites (code, name, unit_id, room, room_rules, is_control_center) VALUES (?,?,?,?,?,?)",
    )
    .bind(s.code)
    .bind(s.name)
    .bind(s.unit_id)
    .bind(s.room)
    .bind(s.room_rules)
    .bind(s.is_control_center)
    .execute(&mut **tx)
    .await?
    .last_insert_rowid())
}

pub async fn site_id(tx: &mut Tx<'_>, code: &str) -> Result<Option<i64>, Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM sites WHERE code = ?")
        .bind(code)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.0))
}
