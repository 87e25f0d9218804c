//! The audit trail (A3) and the recorded violations (R4) through the API: the same filters,
//! checks and rights as the audit page (`web::audit`), answered in English.

use axum::extract::State;
use axum::Json;
use hnth_rules::roles::Action;
use hnth_rules::RuleId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{day_start, iso, params_of, require, ApiError, ApiErrorBody, ApiUser, QueryParams};
use crate::store;
use crate::web::audit::{parse_query, AuditQuery, KIND_VIOLATION};
use crate::web::AppState;

/// Filters of the audit trail and the violations; all optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// On or after this day (`yyyy-mm-dd` or `dd/mm/yyyy`, Asia/Ho_Chi_Minh).
    pub from: Option<String>,
    /// Up to the end of this day.
    pub to: Option<String>,
    /// Concerning this site (its own entries, its technicians and accounts, the bookings and
    /// meetings it takes part in, what its accounts did).
    pub site: Option<i64>,
    /// Done by this username.
    pub user: Option<String>,
    /// Only this action (audit trail only), e.g. `open_meeting`, `create_account`.
    pub action: Option<String>,
    /// At most this many, the newest first (1–5000, default 200).
    pub limit: Option<i64>,
}

/// One change of configuration or of a booking (A3).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    /// When, ISO 8601 in Asia/Ho_Chi_Minh.
    pub at: String,
    /// The username (or the command-line tool) that made the change.
    pub actor: String,
    /// e.g. `create_booking`, `update_technician`, `open_meeting`.
    pub action: String,
    /// e.g. `booking`, `site`, `account`.
    pub entity: String,
    pub entity_id: String,
    /// What the object is called now, if it still exists.
    pub entity_name: Option<String>,
    /// The object before and after the change, as recorded.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// Something the regulation forbids that the system saw (R4).
#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationOut {
    pub at: String,
    /// The requirement, e.g. `C6`.
    pub rule: String,
    /// Its article of Decision 561/QĐ-UBND, if the rule is known.
    pub article: Option<String>,
    pub site: Option<String>,
    pub account: Option<String>,
    /// In English.
    pub detail: String,
}

/// The page's checks on the API's parameters; `kind` is the page's filter (an action or
/// `violation`).
async fn wanted(
    st: &AppState,
    p: AuditParams,
    kind: String,
) -> Result<crate::web::audit::Wanted, ApiError> {
    // The page takes dd/mm/yyyy; the API also yyyy-mm-dd (checked here, with its field).
    let day = |field: &str, s: Option<String>| -> Result<String, ApiError> {
        match s.as_deref().map(str::trim) {
            None | Some("") => Ok(String::new()),
            Some(s) => {
                let t = day_start(field, s)?;
                Ok(chrono::DateTime::from_timestamp(t, 0)
                    .map(hnth_rules::time::format_date_vi)
                    .unwrap_or_default())
            }
        }
    };
    let q = AuditQuery {
        from: day("from", p.from)?,
        to: day("to", p.to)?,
        site: p.site.map(|s| s.to_string()).unwrap_or_default(),
        user: p.user.unwrap_or_default(),
        kind,
        limit: p.limit.map(|n| n.to_string()).unwrap_or_default(),
    };
    let site_ids: Vec<i64> = store::registry::sites(&st.db)
        .await?
        .iter()
        .map(|s| s.id)
        .collect();
    parse_query(&q, &site_ids).map_err(|key| match key {
        "audit_err_range" => ApiError::bad_field("to", "to: must be on or after from"),
        "audit_err_site" => ApiError::bad_field("site", "site: no such site"),
        "audit_err_kind" => ApiError::bad_field("action", "action: unknown action"),
        "audit_err_limit" => ApiError::bad_field("limit", "limit: expected 1 to 5000"),
        _ => ApiError::bad_field("from", "expected yyyy-mm-dd"),
    })
}

/// The audit trail (A3), the newest first: for the control center and the leadership.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, description = "OK", body = Vec<AuditOut>), (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 401, description = "no session: a missing, wrong or expired token", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_audit(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    q: QueryParams<AuditParams>,
) -> Result<Json<Vec<AuditOut>>, ApiError> {
    require(&user, &Action::ViewAudit)?;
    let mut p = params_of(q)?;
    let action = p.action.take().unwrap_or_default();
    if action == KIND_VIOLATION {
        return Err(ApiError::bad_field(
            "action",
            "action: unknown action (violations are at /api/v1/violations)",
        ));
    }
    let w = wanted(&st, p, action).await?;
    let rows = store::audit::entries(&st.db, &w.filter, w.limit).await?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(Json(
        rows.into_iter()
            .map(|r| AuditOut {
                at: iso(r.at),
                actor: r.actor,
                action: r.action,
                entity: r.entity,
                entity_id: r.entity_id,
                entity_name: r.entity_name,
                before: json(r.before_json),
                after: json(r.after_json),
            })
            .collect(),
    ))
}

/// The violations the system recorded (R4), the newest first (`action` does not apply).
#[utoipa::path(get, path = "/api/v1/violations", tag = "audit", params(AuditParams),
    responses((status = 200, description = "OK", body = Vec<ViolationOut>), (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 401, description = "no session: a missing, wrong or expired token", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_violations(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    q: QueryParams<AuditParams>,
) -> Result<Json<Vec<ViolationOut>>, ApiError> {
    require(&user, &Action::ViewAudit)?;
    let mut p = params_of(q)?;
    if p.action.take().is_some_and(|a| !a.is_empty()) {
        return Err(ApiError::bad_field(
            "action",
            "action: violations have no action; leave it out",
        ));
    }
    let w = wanted(&st, p, KIND_VIOLATION.to_string()).await?;
    let rows = store::audit::violations(&st.db, &w.filter, w.limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|v| ViolationOut {
                at: iso(v.at),
                article: RuleId::parse(&v.rule).map(|r| r.article().to_string()),
                rule: v.rule,
                site: v.site,
                account: v.account,
                detail: v.detail,
            })
            .collect(),
    ))
}
