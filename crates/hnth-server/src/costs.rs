//! F1 (Art. 8): cost entries of a meeting, each with its payer. The provincial office pays the
//! lines; the host unit pays services, decoration and the rest (the default payer comes from
//! `hnth_rules::costs`, and may be changed per entry).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use hnth_rules::costs::{CostCategory, Payer};
use hnth_rules::roles::{allowed, Action};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{Row, SqlitePool};

use crate::auth::CurrentUser;
use crate::bookings::load_one;
use crate::db;
use crate::web::{page, require_csrf, AppError, AppState, Lang};

#[derive(Debug, Serialize)]
pub struct CostRow {
    pub category: String,
    pub payer: String,
    pub amount: String,
    pub description: String,
}

#[derive(Debug, Serialize)]
pub struct Costs {
    pub rows: Vec<CostRow>,
    /// (payer label, formatted total)
    pub totals: Vec<(String, String)>,
    pub categories: Vec<(String, String, String)>,
}

/// 1234567 → "1.234.567 đ" (Vietnamese grouping).
pub fn vnd(amount: i64) -> String {
    let digits = amount.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    format!("{}{out} đ", if amount < 0 { "-" } else { "" })
}

pub async fn for_booking(db: &SqlitePool, lang: Lang, booking: i64) -> sqlx::Result<Costs> {
    let vi = lang == Lang::Vi;
    let rows = sqlx::query("SELECT category, payer, amount_vnd, description FROM costs WHERE booking_id = ? ORDER BY id")
        .bind(booking)
        .fetch_all(db)
        .await?;
    let mut totals: Vec<(Payer, i64)> = Payer::ALL.iter().map(|p| (*p, 0)).collect();
    let rows = rows
        .into_iter()
        .map(|r| {
            let c = CostCategory::parse(r.get("category"));
            let p = Payer::parse(r.get("payer"));
            let amount: i64 = r.get("amount_vnd");
            if let Some(t) = totals.iter_mut().find(|(x, _)| Some(*x) == p) {
                t.1 += amount;
            }
            CostRow {
                category: c
                    .map(|c| if vi { c.label_vi() } else { c.label_en() })
                    .unwrap_or("")
                    .to_string(),
                payer: p
                    .map(|p| if vi { p.label_vi() } else { p.label_en() })
                    .unwrap_or("")
                    .to_string(),
                amount: vnd(amount),
                description: r.get("description"),
            }
        })
        .collect();
    Ok(Costs {
        rows,
        totals: totals
            .into_iter()
            .map(|(p, v)| {
                (
                    (if vi { p.label_vi() } else { p.label_en() }).to_string(),
                    vnd(v),
                )
            })
            .collect(),
        categories: CostCategory::ALL
            .iter()
            .map(|c| {
                (
                    c.as_str().to_string(),
                    (if vi { c.label_vi() } else { c.label_en() }).to_string(),
                    c.default_payer().as_str().to_string(),
                )
            })
            .collect(),
    })
}

#[derive(Deserialize)]
pub struct CostForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    payer: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    description: String,
}

pub async fn add(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Path(id): Path<i64>,
    Form(f): Form<CostForm>,
) -> Result<Response, AppError> {
    let t = lang.dict();
    require_csrf(&user, &f.csrf, lang)?;
    let Some(b) = load_one(&st.db, id).await? else {
        return Ok((StatusCode::NOT_FOUND, t["not_found"].clone()).into_response());
    };
    if !allowed(
        user.account.role,
        user.account.scope(),
        &Action::RegisterBooking {
            unit: b.host_unit_id,
        },
    ) {
        return Err(AppError::Forbidden(lang));
    }
    let refuse = |key: &str| {
        Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page("error.html", context! { t, message => t[key] }),
        )
            .into_response())
    };
    let Some(category) = CostCategory::parse(&f.category) else {
        return refuse("cost_err_category");
    };
    let payer = if f.payer.is_empty() {
        Some(category.default_payer())
    } else {
        Payer::parse(&f.payer)
    };
    let Some(payer) = payer else {
        return refuse("cost_err_payer");
    };
    // Amounts are whole đồng; people write 1.500.000 or 1 500 000.
    let cleaned: String = f
        .amount
        .chars()
        .filter(|c| !matches!(c, '.' | ' ' | ','))
        .collect();
    let Some(amount) = cleaned
        .parse::<i64>()
        .ok()
        .filter(|a| *a >= 0 && *a < 1_000_000_000_000)
    else {
        return refuse("cost_err_amount");
    };
    if f.description.chars().count() > 300 {
        return refuse("cost_err_description");
    }
    let mut tx = st.db.begin().await?;
    let cost = sqlx::query(
        "INSERT INTO costs (booking_id, category, payer, amount_vnd, description, created_by, created_at) VALUES (?,?,?,?,?,?,?)",
    )
    .bind(id)
    .bind(category.as_str())
    .bind(payer.as_str())
    .bind(amount)
    .bind(f.description.trim())
    .bind(user.account.id)
    .bind(db::now())
    .execute(&mut *tx)
    .await?
    .last_insert_rowid();
    db::audit(&mut *tx, db::AuditEntry {
        actor_id: Some(user.account.id),
        actor: &user.account.username,
        action: "add_cost",
        entity: "booking",
        entity_id: id.to_string(),
        before: None,
        after: Some(json!({"cost": cost, "category": category.as_str(), "payer": payer.as_str(), "amount_vnd": amount})),
    })
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/bookings/{id}#costs")).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn vietnamese_grouping() {
        for (v, s) in [
            (0, "0 đ"),
            (999, "999 đ"),
            (1000, "1.000 đ"),
            (1_500_000, "1.500.000 đ"),
            (-25_000, "-25.000 đ"),
        ] {
            assert_eq!(super::vnd(v), s);
        }
    }
}
