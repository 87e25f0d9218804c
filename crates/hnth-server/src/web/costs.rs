//! F1 (Art. 8): cost entries of a meeting, each with its payer. The provincial office pays the
//! lines; the host unit pays services, decoration and the rest (the default payer comes from
//! `hnth_rules::costs`, and may be changed per entry). Entering one is `services::costs::add`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use hnth_rules::costs::{CostCategory, Payer};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::services::{self, costs::CostError, costs::CostInput};
use crate::store::{self, Db};
use crate::web::auth::CurrentUser;
use crate::web::{page, require_csrf, AppError, AppState, Lang};

#[derive(Debug, Serialize)]
pub struct CostRow {
    pub category: String,
    pub payer: String,
    /// Whole đồng; the page writes it in its language's way (the `num` filter).
    pub amount_vnd: i64,
    pub description: String,
}

#[derive(Debug, Serialize)]
pub struct Costs {
    pub rows: Vec<CostRow>,
    /// (payer label, total in đồng)
    pub totals: Vec<(String, i64)>,
    pub categories: Vec<(String, String, String)>,
}

pub async fn for_booking(db: &Db, lang: Lang, booking: i64) -> Result<Costs, store::Error> {
    let vi = lang == Lang::Vi;
    let rows = store::costs::of_booking(db, booking).await?;
    let mut totals: Vec<(Payer, i64)> = Payer::ALL.iter().map(|p| (*p, 0)).collect();
    let rows = rows
        .into_iter()
        .map(|r| {
            let c = CostCategory::parse(&r.category);
            let p = Payer::parse(&r.payer);
            let amount = r.amount_vnd;
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
                amount_vnd: amount,
                description: r.description,
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
                    v,
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
    let input = CostInput {
        category: &f.category,
        payer: &f.payer,
        amount: &f.amount,
        description: &f.description,
    };
    match services::costs::add(&st.db, &user.account, id, &input).await {
        Ok(_) => Ok(Redirect::to(&format!("/bookings/{id}#costs")).into_response()),
        Err(CostError::NotFound) => {
            Ok((StatusCode::NOT_FOUND, t["not_found"].clone()).into_response())
        }
        Err(CostError::Forbidden(v)) => {
            tracing::debug!(rule = v.rule.as_str(), "refused: {}", v.en);
            Err(AppError::Forbidden(lang))
        }
        Err(CostError::Invalid(key)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page("error.html", context! { t, message => t[key] }),
        )
            .into_response()),
        Err(CostError::Store(e)) => Err(e.into()),
    }
}
