//! Account administration (A1, A2): personal accounts with a role and a scope, created,
//! unlocked, disabled and given a new password by administrators and operators; nobody grants a
//! role above its own or acts on an account above its own (`hnth_rules::roles::may_grant`,
//! `may_act_on`); every change is audited.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use hnth_rules::roles::{may_act_on, may_grant, rank, Action, Role};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::services::accounts::{self as accounts, AccountError, By, Change};
use crate::store;
use crate::web::auth::CurrentUser;
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
    /// Whether the current user may unlock, disable, enable it or set its password (A1).
    may_act: bool,
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
    let form = NewAccount {
        role: lowest_role(&user),
        ..NewAccount::default()
    };
    render(
        &st,
        &user,
        lang,
        &form,
        BTreeMap::new(),
        None,
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
    alert: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let now = store::now();
    let rows = store::accounts::list(&st.db).await?;
    let accounts: Vec<AccountRow> = rows
        .into_iter()
        .map(|r| {
            let parsed = Role::parse(&r.role);
            let label = parsed
                .map(|x| {
                    if lang == Lang::Vi {
                        x.label_vi()
                    } else {
                        x.label_en()
                    }
                })
                .unwrap_or("");
            AccountRow {
                id: r.id,
                username: r.username,
                display_name: r.display_name,
                role_label: label.to_string(),
                role: r.role,
                site: r.site,
                unit: r.unit,
                locked: r.locked_until.is_some_and(|u| u > now),
                disabled: r.disabled,
                // As in `act`: an account of an unknown role counts as an administrator's.
                may_act: may_act_on(user.account.role, parsed.unwrap_or(Role::Admin)).is_ok(),
            }
        })
        .collect();
    // A1: only the roles this user may grant are offered.
    let roles: Vec<(&str, &str)> = Role::ALL
        .iter()
        .filter(|r| may_grant(user.account.role, **r).is_ok())
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
    let sites = store::registry::sites(&st.db).await?;
    let units = store::registry::unit_names(&st.db).await?;
    let t = lang.dict();
    let separate_approval = st.settings.booking.separate_approval;
    Ok((
        status,
        page("accounts.html", context! { t, user => user.account, csrf => user.csrf, accounts, roles, sites, units, form, errors, alert, separate_approval }),
    )
        .into_response())
}

/// What a refusal says, in the user's language; a refused escalation (A1) was recorded as a
/// violation (R4) by the service.
fn refusal_text(e: &AccountError, lang: Lang) -> Option<String> {
    match e {
        AccountError::Rank(v) => Some(if lang == Lang::Vi { &v.vi } else { &v.en }.clone()),
        _ => None,
    }
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
    let new = accounts::NewAccount {
        username: &f.username,
        display_name: &f.display_name,
        password: &f.password,
        role: &f.role,
        site_id: f.site.parse().ok(),
        unit_id: f.unit.parse().ok(),
    };
    let e = match accounts::create(&st.db, By::Account(&user.account), &new).await {
        Ok(_) => return Ok(Redirect::to("/admin/accounts").into_response()),
        Err(e) => e,
    };
    let (errors, alert, status, role) = match e {
        AccountError::Rank(_) => {
            let text = refusal_text(&e, lang).expect("a rank refusal");
            (
                BTreeMap::from([("role", text.clone())]),
                Some(text),
                StatusCode::FORBIDDEN,
                lowest_role(&user),
            )
        }
        AccountError::Invalid(fields) => (
            fields
                .into_iter()
                .map(|(field, key)| (field, t[key].clone()))
                .collect(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            f.role.clone(),
        ),
        AccountError::Store(e) => return Err(e.into()),
        AccountError::NotFound | AccountError::SelfDisable => {
            return Err(AppError::Internal(e.to_string()))
        }
    };
    let form = NewAccount {
        password: String::new(),
        role,
        ..f
    };
    render(&st, &user, lang, &form, errors, alert, status).await
}

/// The role the new-account form offers first: the lowest this user may grant (the first
/// of them, in the regulation's order), never the administrator's by default.
fn lowest_role(user: &CurrentUser) -> String {
    Role::ALL
        .iter()
        .filter(|r| may_grant(user.account.role, **r).is_ok())
        .min_by_key(|r| rank(**r))
        .map(|r| r.as_str().to_string())
        .unwrap_or_default()
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
    let change = match what.as_str() {
        "unlock" => Change::Unlock,
        "disable" => Change::Disable,
        "enable" => Change::Enable,
        "password" => Change::Password(&f.password),
        _ => return Ok((StatusCode::NOT_FOUND, "unknown action").into_response()),
    };
    let e = match accounts::change(&st.db, &user.account, id, change).await {
        Ok(()) => return Ok(Redirect::to("/admin/accounts").into_response()),
        Err(AccountError::Store(e)) => return Err(e.into()),
        Err(e) => e,
    };
    let (status, message) = match &e {
        AccountError::NotFound => {
            return Ok((StatusCode::NOT_FOUND, t["not_found"].clone()).into_response())
        }
        AccountError::Rank(_) => (
            StatusCode::FORBIDDEN,
            refusal_text(&e, lang).expect("a rank refusal"),
        ),
        AccountError::SelfDisable => (StatusCode::UNPROCESSABLE_ENTITY, t["acc_err_self"].clone()),
        AccountError::Invalid(fields) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            fields
                .values()
                .map(|key| t[*key].clone())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        AccountError::Store(_) => unreachable!("answered above"),
    };
    Ok((status, page("error.html", context! { t, message })).into_response())
}
