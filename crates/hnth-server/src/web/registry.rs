//! The registry: sites with their room, equipment and room rules (S2), their technicians (S3)
//! with the change history in the audit trail, the published technician directory (S1), and the
//! line provider's contacts (L2).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use hnth_rules::roles::{allowed, Action};
use hnth_rules::roster::{roster_flags, Technician as RosterTech};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::services::registry::{
    self as registry, ContactChange, ContactInput, FieldError, RegistryError, RosterChange,
    SiteInput, TechnicianInput, UnitOfSite, UNIT_KINDS,
};
use crate::store::{self, Db};
use crate::web::auth::CurrentUser;

pub use crate::store::registry::Technician as Tech;
use crate::web::{page, require, require_csrf, AppError, AppState, Lang, LoggedIn};

#[derive(Debug, Clone, Serialize)]
pub struct SiteRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub unit: String,
    pub room: String,
    pub address: String,
    pub equipment: String,
    pub room_rules: String,
    /// M2: the language of the site's app, `vi` or `en`.
    pub language: String,
    pub is_control_center: bool,
    pub technicians: Vec<Tech>,
    pub flags: Vec<String>,
}

pub(crate) async fn load(db: &Db, lang: Lang) -> Result<Vec<SiteRow>, store::Error> {
    let sites = store::registry::site_records(db).await?;
    let techs = store::registry::active_technicians(db).await?;
    // S3 applies to the sites, not to the control center (its operators are the system's own).
    let site_ids: Vec<i64> = sites
        .iter()
        .filter(|r| !r.is_control_center)
        .map(|r| r.id)
        .collect();
    let roster: Vec<RosterTech> = techs
        .iter()
        .map(|t| RosterTech {
            site: t.site_id,
            name: t.name.clone(),
            trained: t.trained,
        })
        .collect();
    let mut flags: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let names: BTreeMap<i64, String> = sites.iter().map(|r| (r.id, r.name.clone())).collect();
    for f in roster_flags(&site_ids, &roster) {
        let v = f.violation(names.get(&f.site()).map(String::as_str).unwrap_or(""));
        flags
            .entry(f.site())
            .or_default()
            .push(if lang == Lang::Vi { v.vi } else { v.en });
    }
    Ok(sites
        .into_iter()
        .map(|r| SiteRow {
            id: r.id,
            code: r.code,
            name: r.name,
            unit: r.unit,
            room: r.room,
            address: r.address,
            equipment: r.equipment,
            room_rules: r.room_rules,
            language: r.language,
            is_control_center: r.is_control_center,
            technicians: techs
                .iter()
                .filter(|t| t.site_id == r.id)
                .cloned()
                .collect(),
            flags: flags.remove(&r.id).unwrap_or_default(),
        })
        .collect())
}

/// The line provider's contacts as the pages show them: (unit, name, phone, e-mail, on duty,
/// id, unit id).
async fn providers(
    db: &Db,
) -> Result<Vec<(String, String, String, String, bool, i64, i64)>, store::Error> {
    Ok(store::registry::provider_contacts(db)
        .await?
        .into_iter()
        .map(|c| (c.unit, c.name, c.phone, c.email, c.on_duty, c.id, c.unit_id))
        .collect())
}

fn may_edit_site(user: &CurrentUser, site: i64) -> bool {
    allowed(
        user.account.role,
        user.account.scope(),
        &Action::EditRoster { site },
    )
}

/// The list of sites with their technicians and flags.
pub async fn sites(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
) -> Result<Response, AppError> {
    require(&user, lang, &Action::ViewRoster)?;
    let sites = load(&st.db, lang).await?;
    let editable: Vec<i64> = sites
        .iter()
        .filter(|s| may_edit_site(&user, s.id))
        .map(|s| s.id)
        .collect();
    let providers = providers(&st.db).await?;
    let units = store::registry::units(&st.db).await?;
    let may_manage = allowed(
        user.account.role,
        user.account.scope(),
        &Action::ManageSites,
    );
    let t = lang.dict();
    Ok(page(
        "registry.html",
        context! { t, user => user.account, csrf => user.csrf, sites, editable, providers, units, may_manage,
                   unit_kinds => UNIT_KINDS },
    )
    .into_response())
}

/// S1: the technician directory, printable, published to every site.
pub async fn directory(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
) -> Result<Response, AppError> {
    let sites = load(&st.db, lang).await?;
    let providers = providers(&st.db).await?;
    let t = lang.dict();
    let today = hnth_rules::time::format_date_vi(chrono::Utc::now());
    Ok(page(
        "directory.html",
        context! { t, user => user.account, csrf => user.csrf, sites, providers, today },
    )
    .into_response())
}

pub async fn site(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    if !may_edit_site(&user, id) {
        return Err(AppError::Forbidden(lang));
    }
    render_site(&st, &user, lang, id, BTreeMap::new(), StatusCode::OK).await
}

async fn render_site(
    st: &AppState,
    user: &CurrentUser,
    lang: Lang,
    id: i64,
    errors: BTreeMap<&'static str, String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let Some(site) = load(&st.db, lang).await?.into_iter().find(|s| s.id == id) else {
        return Ok((
            StatusCode::NOT_FOUND,
            page(
                "error.html",
                context! { t => lang.dict(), message => lang.dict()["not_found"] },
            ),
        )
            .into_response());
    };
    let may_manage = allowed(
        user.account.role,
        user.account.scope(),
        &Action::ManageSites,
    );
    let t = lang.dict();
    Ok((
        status,
        page(
            "registry_site.html",
            context! { t, user => user.account, csrf => user.csrf, site, errors, may_manage },
        ),
    )
        .into_response())
}

#[derive(Deserialize, Serialize)]
pub struct SiteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    room: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    equipment: String,
    #[serde(default)]
    room_rules: String,
    /// M2: `vi` or `en`; left out, the site keeps its language.
    #[serde(default)]
    language: Option<String>,
}

/// M2: the language of a site's app (the kiosk), as the registry sets it; Vietnamese for an
/// unknown site. Not the browser's choice: nobody in the room switches it.
pub async fn site_language(db: &Db, site: i64) -> Result<Lang, store::Error> {
    Ok(store::registry::site_language(db, site)
        .await?
        .and_then(|c| Lang::from_code(&c))
        .unwrap_or(Lang::Vi))
}

/// The page's messages for the fields a service refused.
fn field_errors(
    fields: BTreeMap<&'static str, FieldError>,
    lang: Lang,
) -> BTreeMap<&'static str, String> {
    let t = lang.dict();
    fields
        .into_iter()
        .map(|(field, e)| {
            let text = t[e.key].clone();
            let text = match e.max {
                Some(max) => text.replace("{max}", &max.to_string()),
                None => text,
            };
            (field, text)
        })
        .collect()
}

/// A3: the site's description changes only through control-center roles, with an audit entry.
pub async fn save_site(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Path(id): Path<i64>,
    Form(f): Form<SiteForm>,
) -> Result<Response, AppError> {
    require_csrf(&user, &f.csrf, lang)?;
    require(&user, lang, &Action::ManageSites)?;
    let input = SiteInput {
        room: &f.room,
        address: &f.address,
        equipment: &f.equipment,
        room_rules: &f.room_rules,
        language: f.language.as_deref(),
    };
    match registry::save_site(&st.db, &user.account, id, &input).await {
        Ok(()) => {}
        Err(RegistryError::Invalid(fields)) => {
            let errors = field_errors(fields, lang);
            return render_site(
                &st,
                &user,
                lang,
                id,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(RegistryError::NotFound) => {
            return Ok((StatusCode::NOT_FOUND, "no such site").into_response())
        }
        Err(e) => return Err(app_error(e, lang)),
    }
    st.hub.reload_sites().await;
    Ok(Redirect::to(&format!("/registry/sites/{id}")).into_response())
}

/// A refusal of the whole form, on the error page (422).
fn refused_page(lang: Lang, key: &str) -> Result<Response, AppError> {
    let t = lang.dict();
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        page("error.html", context! { t, message => t[key] }),
    )
        .into_response())
}

/// A refusal no page of its own answers.
fn app_error(e: RegistryError, lang: Lang) -> AppError {
    match e {
        RegistryError::Forbidden => AppError::Forbidden(lang),
        RegistryError::Store(e) => e.into(),
        e => AppError::Internal(format!("registry: {e:?}")),
    }
}

#[derive(Deserialize)]
pub struct TechForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    trained: Option<String>,
    #[serde(default)]
    trained_on: String,
    /// `save` or `remove`.
    #[serde(default)]
    action: String,
}

/// S3: add, change or remove a technician of a site; every change is in the audit trail, which
/// is the roster's change history.
pub async fn save_technician(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Path(site): Path<i64>,
    Form(f): Form<TechForm>,
) -> Result<Response, AppError> {
    require_csrf(&user, &f.csrf, lang)?;
    if !may_edit_site(&user, site) {
        return Err(AppError::Forbidden(lang));
    }
    let t = lang.dict();
    let id: Option<i64> =
        f.id.as_deref()
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse().ok());
    let change = if f.action == "remove" {
        RosterChange::Remove { id }
    } else {
        RosterChange::Save {
            id,
            technician: TechnicianInput {
                name: &f.name,
                unit: &f.unit,
                phone: &f.phone,
                email: &f.email,
                trained: f.trained.is_some(),
                trained_on: &f.trained_on,
            },
        }
    };
    match registry::change_roster(&st.db, &user.account, site, &change).await {
        Ok(_) => Ok(Redirect::to(&format!("/registry/sites/{site}")).into_response()),
        Err(RegistryError::NotFound) => {
            Ok((StatusCode::NOT_FOUND, t["not_found"].clone()).into_response())
        }
        Err(RegistryError::NothingToRemove) => refused_page(lang, "reg_err_nothing_to_remove"),
        Err(RegistryError::Invalid(fields)) => {
            let errors = field_errors(fields, lang);
            render_site(
                &st,
                &user,
                lang,
                site,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(app_error(e, lang)),
    }
}

#[derive(Deserialize)]
pub struct NewSite {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    /// An existing unit's id, or empty to create a unit with `unit_name`.
    #[serde(default)]
    unit: String,
    #[serde(default)]
    unit_name: String,
    #[serde(default)]
    unit_kind: String,
}

/// A new site (and, if asked, its new unit). Its device account is then made on /admin/accounts.
pub async fn create_site(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Form(f): Form<NewSite>,
) -> Result<Response, AppError> {
    require_csrf(&user, &f.csrf, lang)?;
    require(&user, lang, &Action::ManageSites)?;
    let unit = match f.unit.parse::<i64>() {
        Ok(u) => UnitOfSite::Existing(u),
        Err(_) => UnitOfSite::New {
            name: &f.unit_name,
            kind: &f.unit_kind,
        },
    };
    match registry::create_site(&st.db, &user.account, &f.code, &f.name, &unit).await {
        Ok(id) => {
            st.hub.reload_sites().await;
            Ok(Redirect::to(&format!("/registry/sites/{id}")).into_response())
        }
        Err(RegistryError::Refused { key, .. }) => refused_page(lang, key),
        Err(e) => Err(app_error(e, lang)),
    }
}

#[derive(Deserialize)]
pub struct ProviderForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    on_duty: Option<String>,
    /// `save` or `remove`.
    #[serde(default)]
    action: String,
}

/// L2 (Art. 12): the line provider's contacts and who is on duty.
pub async fn save_provider(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Form(f): Form<ProviderForm>,
) -> Result<Response, AppError> {
    let t = lang.dict();
    require_csrf(&user, &f.csrf, lang)?;
    require(&user, lang, &Action::ManageSites)?;
    let id: Option<i64> = f.id.as_deref().and_then(|s| s.parse().ok());
    let change = if f.action == "remove" {
        ContactChange::Remove { id }
    } else {
        ContactChange::Save {
            id,
            contact: ContactInput {
                unit: &f.unit,
                name: &f.name,
                phone: &f.phone,
                email: &f.email,
                on_duty: f.on_duty.is_some(),
            },
        }
    };
    match registry::change_contacts(&st.db, &user.account, &change).await {
        Ok(_) => Ok(Redirect::to("/registry#providers").into_response()),
        Err(RegistryError::NotFound) => {
            Ok((StatusCode::NOT_FOUND, t["not_found"].clone()).into_response())
        }
        Err(RegistryError::NothingToRemove) => refused_page(lang, "reg_err_nothing_to_remove"),
        Err(RegistryError::Refused { key, .. }) => refused_page(lang, key),
        Err(e) => Err(app_error(e, lang)),
    }
}
