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
use serde_json::json;
use sqlx::{Row, SqlitePool};

use crate::auth::CurrentUser;
use crate::db;
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
    pub is_control_center: bool,
    pub technicians: Vec<Tech>,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tech {
    pub id: i64,
    pub site_id: i64,
    pub name: String,
    pub unit: String,
    pub phone: String,
    pub email: String,
    pub trained: bool,
    pub trained_on: String,
}

async fn load(db: &SqlitePool, lang: Lang) -> sqlx::Result<Vec<SiteRow>> {
    let sites = sqlx::query(
        "SELECT s.id, s.code, s.name, u.name AS unit, s.room, s.address, s.equipment, s.room_rules, s.is_control_center \
         FROM sites s JOIN units u ON u.id = s.unit_id ORDER BY s.is_control_center DESC, s.id",
    )
    .fetch_all(db)
    .await?;
    let techs: Vec<Tech> = sqlx::query(
        "SELECT id, site_id, name, unit, phone, email, trained, trained_on FROM technicians WHERE active = 1 ORDER BY site_id, id",
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| Tech {
        id: r.get("id"),
        site_id: r.get("site_id"),
        name: r.get("name"),
        unit: r.get("unit"),
        phone: r.get("phone"),
        email: r.get("email"),
        trained: r.get::<i64, _>("trained") != 0,
        trained_on: r.get("trained_on"),
    })
    .collect();
    // S3 applies to the sites, not to the control center (its operators are the system's own).
    let site_ids: Vec<i64> = sites
        .iter()
        .filter(|r| r.get::<i64, _>("is_control_center") == 0)
        .map(|r| r.get("id"))
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
    let names: BTreeMap<i64, String> = sites.iter().map(|r| (r.get("id"), r.get("name"))).collect();
    for f in roster_flags(&site_ids, &roster) {
        let v = f.violation(names.get(&f.site()).map(String::as_str).unwrap_or(""));
        flags
            .entry(f.site())
            .or_default()
            .push(if lang == Lang::Vi { v.vi } else { v.en });
    }
    Ok(sites
        .into_iter()
        .map(|r| {
            let id: i64 = r.get("id");
            SiteRow {
                id,
                code: r.get("code"),
                name: r.get("name"),
                unit: r.get("unit"),
                room: r.get("room"),
                address: r.get("address"),
                equipment: r.get("equipment"),
                room_rules: r.get("room_rules"),
                is_control_center: r.get::<i64, _>("is_control_center") != 0,
                technicians: techs.iter().filter(|t| t.site_id == id).cloned().collect(),
                flags: flags.remove(&id).unwrap_or_default(),
            }
        })
        .collect())
}

async fn providers(
    db: &SqlitePool,
) -> sqlx::Result<Vec<(String, String, String, String, bool, i64, i64)>> {
    let rows = sqlx::query(
        "SELECT u.name AS unit, p.name, p.phone, p.email, p.on_duty, p.id, p.unit_id FROM provider_contacts p JOIN units u ON u.id = p.unit_id ORDER BY p.id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get("unit"),
                r.get("name"),
                r.get("phone"),
                r.get("email"),
                r.get::<i64, _>("on_duty") != 0,
                r.get("id"),
                r.get("unit_id"),
            )
        })
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
    let units: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, name, kind FROM units ORDER BY id")
            .fetch_all(&st.db)
            .await?;
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
    let mut errors = BTreeMap::new();
    for (field, value, max) in [
        ("room", &f.room, 200),
        ("address", &f.address, 300),
        ("equipment", &f.equipment, 4000),
        ("room_rules", &f.room_rules, 4000),
    ] {
        if value.chars().count() > max {
            errors.insert(
                field,
                lang.dict()["reg_err_too_long"].replace("{max}", &max.to_string()),
            );
        }
    }
    if !errors.is_empty() {
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
    let before = sqlx::query("SELECT room, address, equipment, room_rules FROM sites WHERE id = ?")
        .bind(id)
        .fetch_optional(&st.db)
        .await?;
    let Some(before) = before else {
        return Ok((StatusCode::NOT_FOUND, "no such site").into_response());
    };
    let mut tx = st.db.begin().await?;
    sqlx::query(
        "UPDATE sites SET room = ?, address = ?, equipment = ?, room_rules = ? WHERE id = ?",
    )
    .bind(f.room.trim())
    .bind(f.address.trim())
    .bind(f.equipment.trim())
    .bind(f.room_rules.trim())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    db::audit(&mut *tx, db::AuditEntry {
        actor_id: Some(user.account.id),
        actor: &user.account.username,
        action: "update_site",
        entity: "site",
        entity_id: id.to_string(),
        before: Some(json!({"room": before.get::<String, _>("room"), "address": before.get::<String, _>("address"),
                            "equipment": before.get::<String, _>("equipment"), "room_rules": before.get::<String, _>("room_rules")})),
        after: Some(json!({"room": f.room.trim(), "address": f.address.trim(), "equipment": f.equipment.trim(), "room_rules": f.room_rules.trim()})),
    })
    .await?;
    tx.commit().await?;
    st.hub.reload_sites().await;
    Ok(Redirect::to(&format!("/registry/sites/{id}")).into_response())
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
    let before = match id {
        Some(id) => {
            let row = sqlx::query("SELECT name, unit, phone, email, trained, trained_on FROM technicians WHERE id = ? AND site_id = ? AND active = 1")
                .bind(id)
                .bind(site)
                .fetch_optional(&st.db)
                .await?;
            match row {
                Some(r) => Some(
                    json!({"name": r.get::<String, _>("name"), "unit": r.get::<String, _>("unit"), "phone": r.get::<String, _>("phone"),
                                       "email": r.get::<String, _>("email"), "trained": r.get::<i64, _>("trained") != 0, "trained_on": r.get::<String, _>("trained_on")}),
                ),
                None => return Ok((StatusCode::NOT_FOUND, t["not_found"].clone()).into_response()),
            }
        }
        None => None,
    };
    let mut tx = st.db.begin().await?;
    if f.action == "remove" {
        let Some(id) = id else {
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, "nothing to remove").into_response());
        };
        sqlx::query("UPDATE technicians SET active = 0 WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        db::audit(
            &mut *tx,
            db::AuditEntry {
                actor_id: Some(user.account.id),
                actor: &user.account.username,
                action: "remove_technician",
                entity: "technician",
                entity_id: id.to_string(),
                before,
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        return Ok(Redirect::to(&format!("/registry/sites/{site}")).into_response());
    }
    let mut errors = BTreeMap::new();
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 120 {
        errors.insert("tech_name", t["reg_err_name"].clone());
    }
    let phone = f.phone.trim();
    if !valid_phone(phone) {
        errors.insert("tech_phone", t["reg_err_phone"].clone());
    }
    let email = f.email.trim();
    if !valid_email(email) {
        errors.insert("tech_email", t["reg_err_email"].clone());
    }
    let trained = f.trained.is_some();
    let trained_on = f.trained_on.trim();
    if trained
        && !trained_on.is_empty()
        && chrono::NaiveDate::parse_from_str(trained_on, "%d/%m/%Y").is_err()
    {
        errors.insert("tech_trained_on", t["bk_err_date"].clone());
    }
    if !errors.is_empty() {
        drop(tx);
        return render_site(
            &st,
            &user,
            lang,
            site,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let after = json!({"name": name, "unit": f.unit.trim(), "phone": phone, "email": email, "trained": trained, "trained_on": trained_on});
    let entity_id = match id {
        Some(id) => {
            sqlx::query("UPDATE technicians SET name = ?, unit = ?, phone = ?, email = ?, trained = ?, trained_on = ? WHERE id = ?")
                .bind(name)
                .bind(f.unit.trim())
                .bind(phone)
                .bind(email)
                .bind(trained)
                .bind(trained_on)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            id
        }
        None => sqlx::query("INSERT INTO technicians (site_id, name, unit, phone, email, trained, trained_on) VALUES (?,?,?,?,?,?,?)")
            .bind(site)
            .bind(name)
            .bind(f.unit.trim())
            .bind(phone)
            .bind(email)
            .bind(trained)
            .bind(trained_on)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid(),
    };
    db::audit(
        &mut *tx,
        db::AuditEntry {
            actor_id: Some(user.account.id),
            actor: &user.account.username,
            action: if id.is_some() {
                "update_technician"
            } else {
                "add_technician"
            },
            entity: "technician",
            entity_id: entity_id.to_string(),
            before,
            after: Some(after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/registry/sites/{site}")).into_response())
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

const UNIT_KINDS: &[&str] = &[
    "provincial_office",
    "party_office",
    "district",
    "department",
    "line_provider",
];

/// A phone number as people write it: digits, spaces and `+ . - ( )`, at most 40 characters.
fn valid_phone(phone: &str) -> bool {
    !phone.is_empty()
        && phone.chars().count() <= 40
        && phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +.-()".contains(c))
}

/// An e-mail address is optional; when given it must parse (SMTP will use it).
fn valid_email(email: &str) -> bool {
    email.is_empty() || email.parse::<lettre::Address>().is_ok()
}

fn valid_code(code: &str) -> bool {
    (2..=40).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A new site (and, if asked, its new unit). Its device account is then made on /admin/accounts.
pub async fn create_site(
    State(st): State<AppState>,
    user: CurrentUser,
    lang: Lang,
    Form(f): Form<NewSite>,
) -> Result<Response, AppError> {
    let t = lang.dict();
    require_csrf(&user, &f.csrf, lang)?;
    require(&user, lang, &Action::ManageSites)?;
    let refuse = |key: &str| {
        Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page("error.html", context! { t, message => t[key] }),
        )
            .into_response())
    };
    let code = f.code.trim();
    let name = f.name.trim();
    if !valid_code(code) {
        return refuse("reg_err_code");
    }
    if name.is_empty() || name.chars().count() > 120 {
        return refuse("reg_err_name");
    }
    let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM sites WHERE code = ?")
        .bind(code)
        .fetch_optional(&st.db)
        .await?;
    if taken.is_some() {
        return refuse("reg_err_code_taken");
    }
    let mut tx = st.db.begin().await?;
    let unit_id = match f.unit.parse::<i64>() {
        Ok(u) => {
            let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM units WHERE id = ?")
                .bind(u)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return refuse("reg_err_unit");
            }
            u
        }
        Err(_) => {
            let unit_name = f.unit_name.trim();
            if unit_name.is_empty()
                || unit_name.chars().count() > 200
                || !UNIT_KINDS.contains(&f.unit_kind.as_str())
            {
                return refuse("reg_err_unit");
            }
            let unit_code: Option<(i64,)> = sqlx::query_as("SELECT id FROM units WHERE code = ?")
                .bind(code)
                .fetch_optional(&mut *tx)
                .await?;
            if unit_code.is_some() {
                return refuse("reg_err_code_taken");
            }
            let id = sqlx::query("INSERT INTO units (code, name, kind) VALUES (?,?,?)")
                .bind(code)
                .bind(unit_name)
                .bind(&f.unit_kind)
                .execute(&mut *tx)
                .await?
                .last_insert_rowid();
            db::audit(
                &mut *tx,
                db::AuditEntry {
                    actor_id: Some(user.account.id),
                    actor: &user.account.username,
                    action: "create_unit",
                    entity: "unit",
                    entity_id: id.to_string(),
                    before: None,
                    after: Some(json!({"code": code, "name": unit_name, "kind": f.unit_kind})),
                },
            )
            .await?;
            id
        }
    };
    let id = sqlx::query("INSERT INTO sites (code, name, unit_id) VALUES (?,?,?)")
        .bind(code)
        .bind(name)
        .bind(unit_id)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
    db::audit(
        &mut *tx,
        db::AuditEntry {
            actor_id: Some(user.account.id),
            actor: &user.account.username,
            action: "create_site",
            entity: "site",
            entity_id: id.to_string(),
            before: None,
            after: Some(json!({"code": code, "name": name, "unit_id": unit_id})),
        },
    )
    .await?;
    tx.commit().await?;
    st.hub.reload_sites().await;
    Ok(Redirect::to(&format!("/registry/sites/{id}")).into_response())
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
    let refuse = |key: &str| {
        Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            page("error.html", context! { t, message => t[key] }),
        )
            .into_response())
    };
    let id: Option<i64> = f.id.as_deref().and_then(|s| s.parse().ok());
    let before = match id {
        Some(id) => {
            let row: Option<(String, String, String)> =
                sqlx::query_as("SELECT name, phone, email FROM provider_contacts WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&st.db)
                    .await?;
            match row {
                Some(r) => Some(json!({"name": r.0, "phone": r.1, "email": r.2})),
                None => return Ok((StatusCode::NOT_FOUND, t["not_found"].clone()).into_response()),
            }
        }
        None => None,
    };
    let mut tx = st.db.begin().await?;
    if f.action == "remove" {
        let Some(id) = id else {
            return refuse("reg_err_name");
        };
        sqlx::query("DELETE FROM provider_contacts WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        db::audit(
            &mut *tx,
            db::AuditEntry {
                actor_id: Some(user.account.id),
                actor: &user.account.username,
                action: "remove_provider_contact",
                entity: "provider_contact",
                entity_id: id.to_string(),
                before,
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        return Ok(Redirect::to("/registry#providers").into_response());
    }
    let name = f.name.trim();
    let phone = f.phone.trim();
    let email = f.email.trim();
    if name.is_empty() || name.chars().count() > 120 {
        return refuse("reg_err_name");
    }
    if !valid_phone(phone) {
        return refuse("reg_err_phone");
    }
    if !valid_email(email) {
        return refuse("reg_err_email");
    }
    let unit: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM units WHERE id = ? AND kind = 'line_provider'")
            .bind(f.unit.parse::<i64>().unwrap_or(-1))
            .fetch_optional(&mut *tx)
            .await?;
    let Some((unit,)) = unit else {
        return refuse("reg_err_unit");
    };
    let on_duty = f.on_duty.is_some();
    let entity_id = match id {
        Some(id) => {
            sqlx::query("UPDATE provider_contacts SET unit_id = ?, name = ?, phone = ?, email = ?, on_duty = ? WHERE id = ?")
                .bind(unit)
                .bind(name)
                .bind(phone)
                .bind(email)
                .bind(on_duty)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            id
        }
        None => sqlx::query("INSERT INTO provider_contacts (unit_id, name, phone, email, on_duty) VALUES (?,?,?,?,?)")
            .bind(unit)
            .bind(name)
            .bind(phone)
            .bind(email)
            .bind(on_duty)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid(),
    };
    db::audit(
        &mut *tx,
        db::AuditEntry {
            actor_id: Some(user.account.id),
            actor: &user.account.username,
            action: if id.is_some() {
                "update_provider_contact"
            } else {
                "add_provider_contact"
            },
            entity: "provider_contact",
            entity_id: entity_id.to_string(),
            before,
            after: Some(json!({"name": name, "phone": phone, "email": email, "on_duty": on_duty})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/registry#providers").into_response())
}

/// M2, P1: the next approved meetings of the caller's site, for the site app's idle screen.
pub async fn next_meetings(
    State(st): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    let Some(site) = user.account.site_id else {
        return Ok(axum::Json(json!({"list": []})).into_response());
    };
    let now = db::now();
    let rows: Vec<(String, String, i64, i64, i64, bool)> = sqlx::query_as(
        "SELECT b.title, b.kind, b.preparation_start, b.official_start, b.official_end, b.emergency FROM bookings b \
         JOIN booking_sites bs ON bs.booking_id = b.id WHERE bs.site_id = ? AND b.status IN ('approved', 'held') \
         AND b.official_end > ? ORDER BY b.official_start LIMIT 3",
    )
    .bind(site)
    .bind(now)
    .fetch_all(&st.db)
    .await?;
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(hnth_rules::time::format_datetime_vi)
            .unwrap_or_default()
    };
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(title, kind, prep, start, end, emergency)| {
            let kind = hnth_rules::booking::BookingKind::parse(&kind)
                .map(|k| k.label_vi())
                .unwrap_or("");
            json!({"title": title, "kind": kind, "preparation": fmt(prep), "start": fmt(start),
                   "end": fmt(end)[11..].to_string(), "emergency": emergency})
        })
        .collect();
    Ok(axum::Json(json!({"list": list})).into_response())
}
