//! A booking's cost lines (F1, Art. 8): what was spent, on what, and who pays.

use sqlx::Row;

use super::{now, Db, Error, Tx};

/// One cost line as kept: the category and payer codes (`hnth_rules::costs`), whole đồng.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostLine {
    pub category: String,
    pub payer: String,
    pub amount_vnd: i64,
    pub description: String,
}

/// The cost lines of a booking, in the order they were entered.
pub async fn of_booking(db: &Db, booking: i64) -> Result<Vec<CostLine>, Error> {
    let rows = sqlx::query(
        "SELECT category, payer, amount_vnd, description FROM costs WHERE booking_id = ? ORDER BY id",
    )
    .bind(booking)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CostLine {
            category: r.get("category"),
            payer: r.get("payer"),
            amount_vnd: r.get("amount_vnd"),
            description: r.get("description"),
        })
        .collect())
}

/// A new cost line of `booking`, entered by `account`; returns its id.
pub async fn insert(
    tx: &mut Tx<'_>,
    booking: i64,
    line: &CostLine,
    account: i64,
) -> Result<i64, Error> {
    Ok(sqlx::query(
        "INSERT INTO costs (booking_id, category, payer, amount_vnd, description, created_by, created_at) VALUES (?,?,?,?,?,?,?)",
    )
    .bind(booking)
    .bind(&line.category)
    .bind(&line.payer)
    .bind(line.amount_vnd)
    .bind(&line.description)
    .bind(account)
    .bind(now())
    .execute(&mut **tx)
    .await?
    .last_insert_rowid())
}
