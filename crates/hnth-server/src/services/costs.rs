//! A booking's costs (F1, Art. 8): a cost line with its payer, entered by whoever may register
//! the booking's host unit's meetings (A1). The line and its audit entry (A3) commit together.

use hnth_rules::costs::{CostCategory, Payer};
use hnth_rules::roles::{authorize, Action};
use serde_json::json;

use crate::store::accounts::Account;
use crate::store::costs::CostLine;
use crate::store::{self, Db};

/// What the cost form submits, as typed.
#[derive(Debug, Clone, Copy)]
pub struct CostInput<'a> {
    /// A category's code (`hnth_rules::costs::CostCategory`).
    pub category: &'a str,
    /// A payer's code; empty for the category's default payer (Art. 8).
    pub payer: &'a str,
    /// Whole đồng, as people write them: 1.500.000 or 1 500 000.
    pub amount: &'a str,
    pub description: &'a str,
}

/// Why a cost line was refused; nothing was written.
#[derive(Debug)]
pub enum CostError {
    NotFound,
    /// The role may not (A1).
    Forbidden(hnth_rules::Violation),
    /// A field breaks a rule: the dictionary key of its message (`cost_err_<field>`).
    Invalid(&'static str),
    Store(store::Error),
}

impl From<store::Error> for CostError {
    fn from(e: store::Error) -> Self {
        CostError::Store(e)
    }
}

/// The longest description a cost line keeps.
pub const MAX_DESCRIPTION: usize = 300;

/// The amount in whole đồng: digits with `.`, `,` or spaces between groups, under 10¹² đồng.
fn amount_vnd(typed: &str) -> Option<i64> {
    let digits: String = typed
        .chars()
        .filter(|c| !matches!(c, '.' | ' ' | ','))
        .collect();
    digits
        .parse::<i64>()
        .ok()
        .filter(|a| (0..1_000_000_000_000).contains(a))
}

/// The line as the store keeps it, or the first field that is wrong.
fn line_of(input: &CostInput<'_>) -> Result<CostLine, CostError> {
    let category =
        CostCategory::parse(input.category).ok_or(CostError::Invalid("cost_err_category"))?;
    let payer = if input.payer.is_empty() {
        category.default_payer()
    } else {
        Payer::parse(input.payer).ok_or(CostError::Invalid("cost_err_payer"))?
    };
    let amount = amount_vnd(input.amount).ok_or(CostError::Invalid("cost_err_amount"))?;
    if input.description.chars().count() > MAX_DESCRIPTION {
        return Err(CostError::Invalid("cost_err_description"));
    }
    Ok(CostLine {
        category: category.as_str().to_string(),
        payer: payer.as_str().to_string(),
        amount_vnd: amount,
        description: input.description.trim().to_string(),
    })
}

/// F1: a cost line of `booking`, by an account that may register its host unit's meetings;
/// with its audit entry, in one transaction. Returns the line's id.
pub async fn add(
    db: &Db,
    by: &Account,
    booking: i64,
    input: &CostInput<'_>,
) -> Result<i64, CostError> {
    let Some(b) = store::bookings::get(db, booking).await? else {
        return Err(CostError::NotFound);
    };
    authorize(
        by.role,
        by.scope(),
        &Action::RegisterBooking {
            unit: b.host_unit_id,
        },
    )
    .map_err(CostError::Forbidden)?;
    let line = line_of(input)?;
    let mut tx = store::begin_write(db).await?;
    let cost = store::costs::insert(&mut tx, booking, &line, by.id).await?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(by.id),
            actor: &by.username,
            action: "add_cost",
            entity: "booking",
            entity_id: booking.to_string(),
            before: None,
            after: Some(
                json!({"cost": cost, "category": line.category, "payer": line.payer,
                               "amount_vnd": line.amount_vnd}),
            ),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{count, refuse};
    use hnth_rules::roles::Role;

    #[test]
    fn amounts_as_people_write_them() {
        for (typed, want) in [
            ("1.500.000", Some(1_500_000)),
            ("1 500 000", Some(1_500_000)),
            ("1,500,000", Some(1_500_000)),
            ("0", Some(0)),
            ("", None),
            ("-5", None),
            ("12k", None),
            ("1000000000000", None),
        ] {
            assert_eq!(amount_vnd(typed), want, "{typed:?}");
        }
    }

    async fn db_with_booking() -> (tempfile::TempDir, Db, Account) {
        let (dir, db) = store::testing::db().await;
        for sql in [
            "INSERT INTO units (id, code, name, kind) VALUES (1, 'so', 'Sở', 'department')",
            "INSERT INTO units (id, code, name, kind) VALUES (2, 'khac', 'Sở khác', 'department')",
            "INSERT INTO sites (id, code, name, unit_id) VALUES (1, 'huyen', 'Huyện Một', 1)",
            "INSERT INTO accounts (id, username, display_name, password_hash, role, unit_id, created_at) VALUES (1, 'so', 'Sở', 'x', 'organizer', 1, 0)",
            "INSERT INTO bookings (id, title, kind, host_unit_id, chair, host_site_id, preparation_start, official_start, official_end, status, created_by, created_at) \
             VALUES (1, 'Họp', 'hop', 1, 'Ông A', 1, 0, 1800, 3600, 'submitted', 1, 0)",
        ] {
            sqlx::query(sql).execute(&db).await.unwrap();
        }
        let org = store::accounts::active(&db, 1).await.unwrap().unwrap();
        (dir, db, org)
    }

    const LINE: CostInput<'static> = CostInput {
        category: "decoration",
        payer: "",
        amount: "1.500.000",
        description: " Hoa ",
    };

    /// F1, A3: the line lands with its payer (Art. 8's default) and its audit entry, or
    /// neither does.
    #[tokio::test]
    async fn a_cost_line_and_its_audit_entry_commit_together() {
        let (_dir, db, org) = db_with_booking().await;
        add(&db, &org, 1, &LINE).await.unwrap();
        let lines = store::costs::of_booking(&db, 1).await.unwrap();
        assert_eq!(
            lines,
            [CostLine {
                category: "decoration".into(),
                payer: "host_unit".into(),
                amount_vnd: 1_500_000,
                description: "Hoa".into(),
            }]
        );
        let audited = "SELECT COUNT(*) FROM audit WHERE action = 'add_cost' AND entity_id = '1'";
        assert_eq!(count(&db, audited).await, 1);
        refuse(&db, "audit", "INSERT").await;
        let r = add(&db, &org, 1, &LINE).await;
        assert!(matches!(r, Err(CostError::Store(_))), "{r:?}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM costs").await, 1);
    }

    /// A1: another unit's organizer, or a site's technician, enters no cost of this booking;
    /// bad fields are named; nothing is written.
    #[tokio::test]
    async fn refusals_write_nothing() {
        let (_dir, db, org) = db_with_booking().await;
        let other = Account {
            id: 2,
            unit_id: Some(2),
            ..org.clone()
        };
        let technician = Account {
            id: 3,
            role: Role::SiteTechnician,
            site_id: Some(1),
            unit_id: None,
            ..org.clone()
        };
        for who in [&other, &technician] {
            let r = add(&db, who, 1, &LINE).await;
            assert!(matches!(r, Err(CostError::Forbidden(_))), "{r:?}");
        }
        for (input, want) in [
            (
                CostInput {
                    category: "party",
                    ..LINE
                },
                "category",
            ),
            (
                CostInput {
                    payer: "the_state",
                    ..LINE
                },
                "payer",
            ),
            (
                CostInput {
                    amount: "much",
                    ..LINE
                },
                "amount",
            ),
            (
                CostInput {
                    description: &"x".repeat(301),
                    ..LINE
                },
                "description",
            ),
        ] {
            match add(&db, &org, 1, &input).await {
                Err(CostError::Invalid(key)) => assert_eq!(key, format!("cost_err_{want}")),
                r => panic!("{want}: {r:?}"),
            }
        }
        assert!(matches!(
            add(&db, &org, 9, &LINE).await,
            Err(CostError::NotFound)
        ));
        assert_eq!(count(&db, "SELECT COUNT(*) FROM costs").await, 0);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM audit").await, 0);
    }
}
