//! Account administration (A1, A2): personal accounts with a role and a scope, created,
//! unlocked, disabled and given a new password by administrators; every change is audited.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use hnth_rules::roles::{Action, Role};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use crate::auth::{self, CurrentUser};
use crate::db;
use crate::web::{page, require, require_csrf, AppError, AppState, Lang, LoggedIn};

#[derive(Serialize)]
struct AccountRow {
    id: i64,
    username: String,
    display_name: String,
    role: String,
    role_label: String,
    site: Option<String>,
    unit: Option<String>,
    locked: bool,
    disabled: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct NewAccount {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    password: String,
}

fn admin_only(user: &CurrentUser, lang: Lang) -> Result<(), AppError> {
    require(user, lang, &Action::ManageAccounts)
}

pub async fn list(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
) -> Result<Response, AppError> {
    admin_only(&user, lang)?;
    render(
        &st,
        &user,
        lang,
        &NewAccount::default(),
        BTreeMap::new(),
        StatusCode::OK,
    )
    .await
}

async fn render(
    st: &AppState,
    user: &CurrentUser,
    lang: Lang,
    form: &NewAccount,
    errors: BTreeMap<&'static str, String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let now = db::now();
    let rows = sqlx::query(
        "SELECT a.id, a.username, a.display_name, a.role, s.name AS site, u.name AS unit, a.locked_until, a.disabled \
         FROM accounts a LEFT JOIN sites s ON s.id = a.site_id LEFT JOIN units u ON u.id = a.unit_id ORDER BY a.id",
    )
    .fetch_all(&st.db)
    .await?;
    let accounts: Vec<AccountRow> = rows
        .into_iter()
        .map(|r| {
            let role: String = r.get("role");
            let label = Role::parse(&role)
                .map(|x| {
                    if lang == Lang::Vi {
                        x.label_vi()
                    } else {
                        x.label_en()
                    }
                })
                .unwrap_or("");
            AccountRow {
                id: r.get("id"),
                username: r.get("username"),
                display_name: r.get("display_name"),
                role_label: label.to_string(),
                role,
                site: r.get("site"),
                unit: r.get("unit"),
                locked: r
                    .get::<Option<i64>, _>("locked_until")
                    .is_some_and(|u| u > now),
                disabled: r.get::<i64, _>("disabled") != 0,
            }
        })
        .collect();
    let roles: Vec<(&str, &str)> = Role::ALL
        .iter()
        .map(|r| {
            (
                r.as_str(),
                if lang == Lang::Vi {
                    r.label_vi()
                } else {
                    r.label_en()
                },
            )
        })
        .collect();
    let sites = db::sites(&st.db).await?;
    let units: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM units ORDER BY id")
        .fetch_all(&st.db)
        .await?;
    let t = lang.dict();
    Ok((
        status,
        page("accounts.html", context! { t, user => user.account, csrf => user.csrf, accounts, roles, sites, units, form, errors }),
    )
        .into_response())
}

pub async fn create(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Form(f): Form<NewAccount>,
) -> Result<Response, AppError> {
    admin_only(&user, lang)?;
    let t = lang.dict();
    require_csrf(&user, &f.csrf, lang)?;
    let mut errors = BTreeMap::new();
    let username = f.username.trim();
    if username.len() < 3
        || username.len() > 40
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        errors.insert("username", t["acc_err_username"].clone());
    }
    if f.display_name.trim().is_empty() || f.display_name.chars().count() > 120 {
        errors.insert("display_name", t["reg_err_name"].clone());
    }
    let role = Role::parse(&f.role);
    let site: Option<i64> = f.site.parse().ok();
    let unit: Option<i64> = f.unit.parse().ok();
    match role {
        None => {
            errors.insert("role", t["acc_err_role"].clone());
        }
        // The scope a role needs (A1): site roles a site, organizers a unit.
        Some(Role::SiteTechnician | Role::Chair | Role::SiteDevice) if site.is_none() => {
            errors.insert("site", t["acc_err_site"].clone());
        }
        Some(Role::Organizer) if unit.is_none() => {
            errors.insert("unit", t["acc_err_unit"].clone());
        }
        _ => {}
    }
    if auth::check_password_strength(&f.password).is_err() {
        errors.insert("password", t["acc_err_password"].clone());
    }
    let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM accounts WHERE username = ?")
        .bind(username)
        .fetch_optional(&st.db)
        .await?;
    if taken.is_some() {
        errors.insert("username", t["acc_err_taken"].clone());
    }
    if !errors.is_empty() {
        return render(
            &st,
            &user,
            lang,
            &NewAccount {
                password: String::new(),
                ..f
            },
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let role = role.expect("checked");
    let (site, unit) = match role {
        Role::SiteTechnician | Role::Chair | Role::SiteDevice => (site, None),
        Role::Organizer | Role::Leadership | Role::ProviderTechnician => {
            (site.filter(|_| role == Role::ProviderTechnician), unit)
        }
        _ => (None, unit),
    };
    let id = auth::create_account(
        &st.db,
        username,
        f.display_name.trim(),
        &f.password,
        role,
        site,
        unit,
    )
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?;
    db::audit(&st.db, db::AuditEntry {
        actor_id: Some(user.account.id),
        actor: &user.account.username,
        action: "create_account",
        entity: "account",
        entity_id: id.to_string(),
        before: None,
        after: Some(json!({"username": username, "role": role.as_str(), "site_id": site, "unit_id": unit})),
    })
    .await?;
    Ok(Redirect::to("/admin/accounts").into_response())
}

#[derive(Deserialize)]
pub struct AccountAction {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

/// `unlock`, `disable`, `enable` or `password`.
pub async fn act(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Path((id, what)): Path<(i64, String)>,
    Form(f): Form<AccountAction>,
) -> Result<Response, AppError> {
    admin_only(&user, lang)?;
    let t = lang.dict();
    require_csrf(&user, &f.csrf, lang)?;
    let Some(target) = auth::account_by_id_any(&st.db, id).await? else {
        return Ok((StatusCode::NOT_FOUND, t["not_found"].clone()).into_response());
    };
    if id == user.account.id && what == "disable" {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page("error.html", context! { t, message => t["acc_err_self"] }),
        )
            .into_response());
    }
    let sql = match what.as_str() {
        "unlock" => "UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = ?",
        "disable" => "UPDATE accounts SET disabled = 1 WHERE id = ?",
        "enable" => "UPDATE accounts SET disabled = 0 WHERE id = ?",
        "password" => {
            if auth::check_password_strength(&f.password).is_err() {
                return Ok((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    page(
                        "error.html",
                        context! { t, message => t["acc_err_password"] },
                    ),
                )
                    .into_response());
            }
            auth::set_password(&st.db, &target, &f.password)
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?;
            ""
        }
        _ => return Ok((StatusCode::NOT_FOUND, "unknown action").into_response()),
    };
    if !sql.is_empty() {
        sqlx::query(sql).bind(id).execute(&st.db).await?;
    }
    if what == "disable" {
        sqlx::query("DELETE FROM sessions WHERE account_id = ?")
            .bind(id)
            .execute(&st.db)
            .await?;
    }
    db::audit(
        &st.db,
        db::AuditEntry {
            actor_id: Some(user.account.id),
            actor: &user.account.username,
            action: &format!("account_{what}"),
            entity: "account",
            entity_id: id.to_string(),
            before: None,
            after: Some(json!({"username": target})),
        },
    )
    .await?;
    Ok(Redirect::to("/admin/accounts").into_response())
}
