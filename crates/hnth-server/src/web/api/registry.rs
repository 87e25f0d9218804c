//! The registry through the API (S1–S3, L2, Art. 9, 10, 12): reading the sites, the technician
//! directory and the line providers' contacts; and changing them on the registry pages' use
//! cases (`services::registry`): a site's settings, a new site and its unit, a site's roster,
//! the providers' contacts. The same role checks as the pages (A1: a site's accounts act only
//! on their own site), the same audit entries (A3); a refused request writes nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hnth_rules::roles::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    id_of, json_object, require, ApiError, ApiErrorBody, ApiErrorItem, ApiUser, Fields, IdPath,
    JsonBody,
};
use crate::services::registry::{
    self as service, ContactChange, ContactInput, RegistryError, RosterChange, SiteInput,
    TechnicianInput, UnitOfSite,
};
use crate::store;
use crate::web::auth::CurrentUser;
use crate::web::registry as pages;
use crate::web::{AppState, Lang};

// ---------------------------------------------------------------- reading

/// A site of the registry (S2), with its technicians (S3).
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteOut {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub unit: String,
    pub room: String,
    pub address: String,
    pub equipment: String,
    /// Room rules shown on the site app when idle (S2).
    pub room_rules: String,
    /// The language of the site app (M2): `vi` or `en`.
    pub language: String,
    pub is_control_center: bool,
    pub technicians: Vec<TechnicianOut>,
    /// What the roster lacks (S3), in English.
    pub flags: Vec<String>,
}

/// A technician of a site (S1, S3).
#[derive(Debug, Serialize, ToSchema)]
pub struct TechnicianOut {
    pub id: i64,
    pub site_id: i64,
    pub name: String,
    pub unit: String,
    pub phone: String,
    pub email: String,
    pub trained: bool,
    /// The day of the training, `dd/mm/yyyy`, or empty.
    pub trained_on: String,
}

fn technician_out(t: pages::Tech) -> TechnicianOut {
    TechnicianOut {
        id: t.id,
        site_id: t.site_id,
        name: t.name,
        unit: t.unit,
        phone: t.phone,
        email: t.email,
        trained: t.trained,
        trained_on: t.trained_on,
    }
}

fn site_out(s: pages::SiteRow) -> SiteOut {
    SiteOut {
        id: s.id,
        code: s.code,
        name: s.name,
        unit: s.unit,
        room: s.room,
        address: s.address,
        equipment: s.equipment,
        room_rules: s.room_rules,
        language: s.language,
        is_control_center: s.is_control_center,
        technicians: s.technicians.into_iter().map(technician_out).collect(),
        flags: s.flags,
    }
}

/// The sites of the registry with their technicians. Every account may read it (S1).
#[utoipa::path(get, path = "/api/v1/sites", tag = "registry",
    responses((status = 200, description = "OK", body = Vec<SiteOut>), (status = 401, description = "no session: a missing, wrong or expired token", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_sites(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<SiteOut>>, ApiError> {
    require(&user, &Action::ViewRoster)?;
    let sites = pages::load(&st.db, Lang::En).await?;
    Ok(Json(sites.into_iter().map(site_out).collect()))
}

/// One site of the registry.
#[utoipa::path(get, path = "/api/v1/sites/{id}", tag = "registry",
    params(("id" = i64, Path, description = "the site's id")),
    responses((status = 200, description = "OK", body = SiteOut), (status = 404, description = "no such object", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get_site(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
) -> Result<Json<SiteOut>, ApiError> {
    let id = id_of(id)?;
    require(&user, &Action::ViewRoster)?;
    pages::load(&st.db, Lang::En)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .map(|s| Json(site_out(s)))
        .ok_or_else(|| ApiError::not_found("site"))
}

/// The technician directory (S1): every active technician of every site.
#[utoipa::path(get, path = "/api/v1/technicians", tag = "registry",
    responses((status = 200, description = "OK", body = Vec<TechnicianOut>), (status = 401, description = "no session: a missing, wrong or expired token", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_technicians(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<TechnicianOut>>, ApiError> {
    require(&user, &Action::ViewRoster)?;
    let sites = pages::load(&st.db, Lang::En).await?;
    Ok(Json(
        sites
            .into_iter()
            .flat_map(|s| site_out(s).technicians)
            .collect(),
    ))
}

/// A contact of a line provider (L2), as the directory lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderOut {
    pub id: i64,
    pub unit_id: i64,
    /// The provider, e.g. "VNPT Bạc Liêu".
    pub unit: String,
    pub name: String,
    pub phone: String,
    pub email: String,
    /// Named as the on-duty technician of the provider by default.
    pub on_duty: bool,
}

/// The line providers' contacts of the directory (S1, L2). Every account may read it.
#[utoipa::path(get, path = "/api/v1/providers", tag = "registry",
    responses((status = 200, description = "OK", body = Vec<ProviderOut>), (status = 401, description = "no session: a missing, wrong or expired token", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_providers(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Vec<ProviderOut>>, ApiError> {
    require(&user, &Action::ViewRoster)?;
    let list = store::registry::provider_contacts(&st.db).await?;
    Ok(Json(list.into_iter().map(provider_out).collect()))
}

fn provider_out(c: store::registry::ProviderContact) -> ProviderOut {
    ProviderOut {
        id: c.id,
        unit_id: c.unit_id,
        unit: c.unit,
        name: c.name,
        phone: c.phone,
        email: c.email,
        on_duty: c.on_duty,
    }
}

// ---------------------------------------------------------------- writing

/// A registry use case's refusal as the API answers it; `what` names the object of the route
/// (`site`, `technician`, `provider contact`) for a 404.
fn refusal(e: RegistryError, user: &CurrentUser, action: &Action, what: &str) -> ApiError {
    let t = Lang::En.dict();
    let message = |key: &str, max: Option<usize>| {
        let text = t.get(key).cloned().unwrap_or_else(|| key.to_string());
        match max {
            Some(max) => text.replace("{max}", &max.to_string()),
            None => text,
        }
    };
    match e {
        // The handler asked the roles first; a use case that still refuses answers as they do.
        RegistryError::Forbidden => require(user, action).err().unwrap_or_else(|| {
            ApiError::new(StatusCode::FORBIDDEN, "not_permitted", "refused (rule A1)")
        }),
        RegistryError::NotFound => ApiError::not_found(what),
        RegistryError::Invalid(fields) => ApiError::many(
            StatusCode::UNPROCESSABLE_ENTITY,
            fields
                .into_iter()
                .map(|(field, e)| {
                    // The roster's form names its fields `tech_…`; the API's body does not.
                    let field = field.strip_prefix("tech_").unwrap_or(field);
                    ApiErrorItem::field("invalid", field, message(e.key, e.max))
                })
                .collect(),
        ),
        RegistryError::Refused { field, key } => ApiError::many(
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![ApiErrorItem::field("invalid", field, message(key, None))],
        ),
        RegistryError::NothingToRemove => ApiError::bad_field("id", "id: required"),
        RegistryError::Store(e) => e.into(),
    }
}

/// The fields of a body are read one by one; every malformed one is a 400 naming it.
fn checked(f: Fields) -> Result<(), ApiError> {
    if f.errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::many(StatusCode::BAD_REQUEST, f.errors))
    }
}

/// The site as `GET /api/v1/sites/{id}` shows it, after a write.
async fn site_now(st: &AppState, id: i64) -> Result<SiteOut, ApiError> {
    pages::load(&st.db, Lang::En)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .map(site_out)
        .ok_or_else(|| ApiError::not_found("site"))
}

/// A site's description and its app's language (`PUT /api/v1/sites/{id}`): every field, as the
/// site's page submits them.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // read field by field (`Fields`), so that each error names its field
pub struct SiteSettingsIn {
    /// The meeting room (at most 200 characters).
    pub room: String,
    /// At most 300 characters.
    pub address: String,
    /// The equipment inventory (O1), at most 4000 characters.
    pub equipment: String,
    /// The room rules the site app shows when idle (S2), at most 4000 characters.
    pub room_rules: String,
    /// The site app's language (M2), `vi` or `en`; left out, the site keeps its own.
    pub language: Option<String>,
}

/// S2, M2, A3: saves a site's description and its app's language, as the site's page does;
/// control-center roles only; the change is in the audit trail with its old and new values.
#[utoipa::path(put, path = "/api/v1/sites/{id}", tag = "registry", request_body = SiteSettingsIn,
    params(("id" = i64, Path, description = "the site's id")),
    responses((status = 200, description = "saved; the site after it", body = SiteOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody),
              (status = 422, description = "refused: each field's error in `errors`", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn save_site(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
    body: JsonBody,
) -> Result<Json<SiteOut>, ApiError> {
    let id = id_of(id)?;
    let action = Action::ManageSites;
    require(&user, &action)?;
    let mut f = Fields::new(
        json_object(body)?,
        &["room", "address", "equipment", "room_rules", "language"],
    );
    let room: Option<String> = f.req("room", "a string");
    let address: Option<String> = f.req("address", "a string");
    let equipment: Option<String> = f.req("equipment", "a string");
    let room_rules: Option<String> = f.req("room_rules", "a string");
    let language: Option<String> = f.opt("language", "vi or en");
    checked(f)?;
    let input = SiteInput {
        room: room.as_deref().unwrap_or_default(),
        address: address.as_deref().unwrap_or_default(),
        equipment: equipment.as_deref().unwrap_or_default(),
        room_rules: room_rules.as_deref().unwrap_or_default(),
        language: language.as_deref(),
    };
    service::save_site(&st.db, &user.account, id, &input)
        .await
        .map_err(|e| refusal(e, &user, &action, "site"))?;
    st.hub.reload_sites().await;
    Ok(Json(site_now(&st, id).await?))
}

/// A new site (`POST /api/v1/sites`): its code and name, and its unit: an existing one
/// (`unit`), or a new one (`unit_name` and `unit_kind`, whose code is the site's).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // read field by field
pub struct NewSiteIn {
    /// 2–40 characters: lower-case letters, digits and `-`; not taken.
    pub code: String,
    /// 1–120 characters.
    pub name: String,
    /// An existing unit's id.
    pub unit: Option<i64>,
    /// A new unit's name (without `unit`).
    pub unit_name: Option<String>,
    /// A new unit's kind: `provincial_office`, `party_office`, `district`, `department` or
    /// `line_provider`.
    pub unit_kind: Option<String>,
}

/// Creates a site (and, if asked, its unit), as the registry page does: control-center roles
/// only; each with its audit entry, in one transaction. Its device account is then made as any
/// account (`/admin/accounts`).
#[utoipa::path(post, path = "/api/v1/sites", tag = "registry", request_body = NewSiteIn,
    responses((status = 201, description = "created; the new site", body = SiteOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 422, description = "refused: `field` names the field", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create_site(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    body: JsonBody,
) -> Result<(StatusCode, Json<SiteOut>), ApiError> {
    let action = Action::ManageSites;
    require(&user, &action)?;
    let mut f = Fields::new(
        json_object(body)?,
        &["code", "name", "unit", "unit_name", "unit_kind"],
    );
    let code: Option<String> = f.req("code", "a string");
    let name: Option<String> = f.req("name", "a string");
    let unit: Option<i64> = f.opt("unit", "a unit's id");
    let unit_name: Option<String> = f.opt("unit_name", "a string");
    let unit_kind: Option<String> = f.opt("unit_kind", "a string");
    let unit = match (unit, &unit_name, &unit_kind) {
        (Some(u), None, None) => Some(UnitOfSite::Existing(u)),
        (None, Some(name), Some(kind)) => Some(UnitOfSite::New { name, kind }),
        (Some(_), _, _) => {
            f.errors.push(ApiErrorItem::field(
                "bad_request",
                "unit",
                "unit: give either unit, or unit_name and unit_kind",
            ));
            None
        }
        (None, _, _) => {
            let missing = if unit_name.is_none() {
                "unit_name"
            } else {
                "unit_kind"
            };
            f.errors.push(ApiErrorItem::field(
                "bad_request",
                missing,
                format!("{missing}: required (or an existing unit's id in unit)"),
            ));
            None
        }
    };
    checked(f)?;
    let (Some(code), Some(name), Some(unit)) = (code, name, unit) else {
        return Err(ApiError::bad_field("body", "the request is not valid"));
    };
    let id = service::create_site(&st.db, &user.account, &code, &name, &unit)
        .await
        .map_err(|e| refusal(e, &user, &action, "site"))?;
    st.hub.reload_sites().await;
    Ok((StatusCode::CREATED, Json(site_now(&st, id).await?)))
}

/// A technician of a site's roster (S3), as the site's page submits one.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // read field by field
pub struct TechnicianIn {
    /// 1–120 characters.
    pub name: String,
    /// The technician's own unit, if not the site's.
    pub unit: Option<String>,
    /// Digits, spaces and `+ . - ( )`, at most 40 characters.
    pub phone: String,
    /// Optional; when given, an address SMTP can use.
    pub email: Option<String>,
    /// Trained for the system (S3: an untrained technician is flagged).
    pub trained: Option<bool>,
    /// The day of the training, `yyyy-mm-dd`.
    pub trained_on: Option<String>,
}

const TECHNICIAN_FIELDS: &[&str] = &["name", "unit", "phone", "email", "trained", "trained_on"];

/// A technician as a body describes it.
struct TechnicianBody {
    name: String,
    unit: String,
    phone: String,
    email: String,
    trained: bool,
    /// `dd/mm/yyyy`, as the site's page takes it, or empty.
    trained_on: String,
}

impl TechnicianBody {
    /// The body's fields, or a 400 naming every malformed one.
    fn read(body: JsonBody) -> Result<Self, ApiError> {
        let mut f = Fields::new(json_object(body)?, TECHNICIAN_FIELDS);
        let name: Option<String> = f.req("name", "a string");
        let unit: Option<String> = f.opt("unit", "a string");
        let phone: Option<String> = f.req("phone", "a string");
        let email: Option<String> = f.opt("email", "a string");
        let trained: Option<bool> = f.opt("trained", "true or false");
        let trained_on = f.date("trained_on");
        checked(f)?;
        Ok(TechnicianBody {
            name: name.unwrap_or_default(),
            unit: unit.unwrap_or_default(),
            phone: phone.unwrap_or_default(),
            email: email.unwrap_or_default(),
            trained: trained.unwrap_or(false),
            trained_on,
        })
    }

    fn input(&self) -> TechnicianInput<'_> {
        TechnicianInput {
            name: &self.name,
            unit: &self.unit,
            phone: &self.phone,
            email: &self.email,
            trained: self.trained,
            trained_on: &self.trained_on,
        }
    }
}

/// The technician as `GET /api/v1/technicians` shows it, after a write.
async fn technician_now(st: &AppState, site: i64, id: i64) -> Result<TechnicianOut, ApiError> {
    store::registry::technician_of_site(&st.db, id, site)
        .await?
        .map(technician_out)
        .ok_or_else(|| ApiError::not_found("technician"))
}

/// A site's id and one of its technicians' in the path.
type TechPath = Result<Path<(i64, i64)>, axum::extract::rejection::PathRejection>;

fn ids_of(p: TechPath) -> Result<(i64, i64), ApiError> {
    p.map(|Path(ids)| ids).map_err(|_| {
        ApiError::bad_field(
            "id",
            "id and tech: expected the site's and the technician's ids",
        )
    })
}

/// S3: adds a technician to a site's roster, as the site's page does: the control center, or
/// the site's own technicians (A1); the audit trail is the roster's change history.
#[utoipa::path(post, path = "/api/v1/sites/{id}/technicians", tag = "registry", request_body = TechnicianIn,
    params(("id" = i64, Path, description = "the site's id")),
    responses((status = 201, description = "added; the technician", body = TechnicianOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody),
              (status = 422, description = "refused: each field's error in `errors`", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn add_technician(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    site: IdPath,
    body: JsonBody,
) -> Result<(StatusCode, Json<TechnicianOut>), ApiError> {
    let site = id_of(site)?;
    let action = Action::EditRoster { site };
    require(&user, &action)?;
    let t = TechnicianBody::read(body)?;
    let change = RosterChange::Save {
        id: None,
        technician: t.input(),
    };
    let id = service::change_roster(&st.db, &user.account, site, &change)
        .await
        .map_err(|e| refusal(e, &user, &action, "site"))?;
    Ok((
        StatusCode::CREATED,
        Json(technician_now(&st, site, id).await?),
    ))
}

/// S3: saves a technician's details (every field, as the site's page does).
#[utoipa::path(put, path = "/api/v1/sites/{id}/technicians/{tech}", tag = "registry", request_body = TechnicianIn,
    params(("id" = i64, Path, description = "the site's id"), ("tech" = i64, Path, description = "the technician's id")),
    responses((status = 200, description = "saved; the technician", body = TechnicianOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody),
              (status = 422, description = "refused: each field's error in `errors`", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn save_technician(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    ids: TechPath,
    body: JsonBody,
) -> Result<Json<TechnicianOut>, ApiError> {
    let (site, id) = ids_of(ids)?;
    let action = Action::EditRoster { site };
    require(&user, &action)?;
    let t = TechnicianBody::read(body)?;
    let change = RosterChange::Save {
        id: Some(id),
        technician: t.input(),
    };
    service::change_roster(&st.db, &user.account, site, &change)
        .await
        .map_err(|e| refusal(e, &user, &action, "technician"))?;
    Ok(Json(technician_now(&st, site, id).await?))
}

/// S3: removes a technician from a site's roster (reported at once, Art. 10).
#[utoipa::path(delete, path = "/api/v1/sites/{id}/technicians/{tech}", tag = "registry",
    params(("id" = i64, Path, description = "the site's id"), ("tech" = i64, Path, description = "the technician's id")),
    responses((status = 204, description = "removed"),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn remove_technician(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    ids: TechPath,
) -> Result<StatusCode, ApiError> {
    let (site, id) = ids_of(ids)?;
    let action = Action::EditRoster { site };
    require(&user, &action)?;
    service::change_roster(
        &st.db,
        &user.account,
        site,
        &RosterChange::Remove { id: Some(id) },
    )
    .await
    .map_err(|e| refusal(e, &user, &action, "technician"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A line provider's contact (L2), as the registry page submits one.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // read field by field
pub struct ProviderIn {
    /// The line provider's unit id (`kind` `line_provider`).
    pub unit: i64,
    /// 1–120 characters.
    pub name: String,
    /// Digits, spaces and `+ . - ( )`, at most 40 characters.
    pub phone: String,
    pub email: Option<String>,
    /// Named as the provider's on-duty technician by default.
    pub on_duty: Option<bool>,
}

/// A contact as a body describes it.
struct ProviderBody {
    unit: String,
    name: String,
    phone: String,
    email: String,
    on_duty: bool,
}

impl ProviderBody {
    /// The body's fields, or a 400 naming every malformed one.
    fn read(body: JsonBody) -> Result<Self, ApiError> {
        let mut f = Fields::new(
            json_object(body)?,
            &["unit", "name", "phone", "email", "on_duty"],
        );
        let unit: Option<i64> = f.req("unit", "a line provider's unit id");
        let name: Option<String> = f.req("name", "a string");
        let phone: Option<String> = f.req("phone", "a string");
        let email: Option<String> = f.opt("email", "a string");
        let on_duty: Option<bool> = f.opt("on_duty", "true or false");
        checked(f)?;
        Ok(ProviderBody {
            unit: unit.map(|u| u.to_string()).unwrap_or_default(),
            name: name.unwrap_or_default(),
            phone: phone.unwrap_or_default(),
            email: email.unwrap_or_default(),
            on_duty: on_duty.unwrap_or(false),
        })
    }

    fn input(&self) -> ContactInput<'_> {
        ContactInput {
            unit: &self.unit,
            name: &self.name,
            phone: &self.phone,
            email: &self.email,
            on_duty: self.on_duty,
        }
    }
}

/// The contact as `GET /api/v1/providers` shows it, after a write.
async fn provider_now(st: &AppState, id: i64) -> Result<ProviderOut, ApiError> {
    store::registry::provider_contacts(&st.db)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .map(provider_out)
        .ok_or_else(|| ApiError::not_found("provider contact"))
}

/// L2 (Art. 12): adds a line provider's contact, as the registry page does; control-center
/// roles only, with its audit entry.
#[utoipa::path(post, path = "/api/v1/providers", tag = "registry", request_body = ProviderIn,
    responses((status = 201, description = "added; the contact", body = ProviderOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 422, description = "refused: `field` names the field", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn add_provider(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    body: JsonBody,
) -> Result<(StatusCode, Json<ProviderOut>), ApiError> {
    let action = Action::ManageSites;
    require(&user, &action)?;
    let c = ProviderBody::read(body)?;
    let change = ContactChange::Save {
        id: None,
        contact: c.input(),
    };
    let id = service::change_contacts(&st.db, &user.account, &change)
        .await
        .map_err(|e| refusal(e, &user, &action, "provider contact"))?;
    Ok((StatusCode::CREATED, Json(provider_now(&st, id).await?)))
}

/// L2: saves a line provider's contact (every field, as the registry page does).
#[utoipa::path(put, path = "/api/v1/providers/{id}", tag = "registry", request_body = ProviderIn,
    params(("id" = i64, Path, description = "the contact's id")),
    responses((status = 200, description = "saved; the contact", body = ProviderOut),
              (status = 400, description = "bad input; `field` names it", body = ApiErrorBody),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody),
              (status = 422, description = "refused: `field` names the field", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn save_provider(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
    body: JsonBody,
) -> Result<Json<ProviderOut>, ApiError> {
    let id = id_of(id)?;
    let action = Action::ManageSites;
    require(&user, &action)?;
    let c = ProviderBody::read(body)?;
    let change = ContactChange::Save {
        id: Some(id),
        contact: c.input(),
    };
    service::change_contacts(&st.db, &user.account, &change)
        .await
        .map_err(|e| refusal(e, &user, &action, "provider contact"))?;
    Ok(Json(provider_now(&st, id).await?))
}

/// L2: removes a line provider's contact.
#[utoipa::path(delete, path = "/api/v1/providers/{id}", tag = "registry",
    params(("id" = i64, Path, description = "the contact's id")),
    responses((status = 204, description = "removed"),
              (status = 403, description = "refused by a rule; `rule` and `article` name it", body = ApiErrorBody),
              (status = 404, description = "no such object", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn remove_provider(
    State(st): State<AppState>,
    ApiUser(user): ApiUser,
    id: IdPath,
) -> Result<StatusCode, ApiError> {
    let id = id_of(id)?;
    let action = Action::ManageSites;
    require(&user, &action)?;
    service::change_contacts(
        &st.db,
        &user.account,
        &ContactChange::Remove { id: Some(id) },
    )
    .await
    .map_err(|e| refusal(e, &user, &action, "provider contact"))?;
    Ok(StatusCode::NO_CONTENT)
}
