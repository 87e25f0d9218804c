//! The registry's changes: a site's description and language (S2, M2), its technicians (S3),
//! new sites and units, the line provider's contacts (L2). Each one is checked against the
//! roles (A1) and its rules, and commits together with its audit entry (A3).

use std::collections::BTreeMap;

use hnth_rules::roles::{allowed, Action};
use serde_json::json;

use crate::store::accounts::Account;
use crate::store::registry::{self as reg, ContactFields, SiteSettings, TechnicianFields};
use crate::store::{self, Db};

/// A field's refusal: the dictionary key of its message, and the length limit it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldError {
    pub key: &'static str,
    pub max: Option<usize>,
}

impl FieldError {
    fn key(key: &'static str) -> Self {
        FieldError { key, max: None }
    }
}

/// Why a registry change was refused; nothing was written.
#[derive(Debug)]
pub enum RegistryError {
    /// The role may not (A1).
    Forbidden,
    NotFound,
    /// Fields that break a rule, each with its message.
    Invalid(BTreeMap<&'static str, FieldError>),
    /// A field breaks a rule that stops the request at once: the field, and the dictionary
    /// key of its message.
    Refused {
        field: &'static str,
        key: &'static str,
    },
    /// A removal that names no technician.
    NothingToRemove,
    Store(store::Error),
}

impl From<store::Error> for RegistryError {
    fn from(e: store::Error) -> Self {
        RegistryError::Store(e)
    }
}

fn refused(field: &'static str, key: &'static str) -> RegistryError {
    RegistryError::Refused { field, key }
}

fn may(by: &Account, action: &Action) -> Result<(), RegistryError> {
    if allowed(by.role, by.scope(), action) {
        Ok(())
    } else {
        Err(RegistryError::Forbidden)
    }
}

/// The app languages a site may have (M2).
pub const LANGUAGES: &[&str] = &["vi", "en"];

/// What a site's page submits; `language` left out keeps the site's.
#[derive(Debug, Clone)]
pub struct SiteInput<'a> {
    pub room: &'a str,
    pub address: &'a str,
    pub equipment: &'a str,
    pub room_rules: &'a str,
    pub language: Option<&'a str>,
}

/// S2, M2: a site's description and its app's language, by control-center roles only.
pub async fn save_site(
    db: &Db,
    by: &Account,
    site: i64,
    input: &SiteInput<'_>,
) -> Result<(), RegistryError> {
    may(by, &Action::ManageSites)?;
    let mut errors = BTreeMap::new();
    for (field, value, max) in [
        ("room", input.room, 200),
        ("address", input.address, 300),
        ("equipment", input.equipment, 4000),
        ("room_rules", input.room_rules, 4000),
    ] {
        if value.chars().count() > max {
            errors.insert(
                field,
                FieldError {
                    key: "reg_err_too_long",
                    max: Some(max),
                },
            );
        }
    }
    let language = input.language.map(str::trim);
    if language.is_some_and(|l| !LANGUAGES.contains(&l)) {
        errors.insert("language", FieldError::key("reg_err_language"));
    }
    if !errors.is_empty() {
        return Err(RegistryError::Invalid(errors));
    }
    let Some(before) = reg::site_settings(db, site).await? else {
        return Err(RegistryError::NotFound);
    };
    let after = SiteSettings {
        room: input.room.trim().to_string(),
        address: input.address.trim().to_string(),
        equipment: input.equipment.trim().to_string(),
        room_rules: input.room_rules.trim().to_string(),
        language: language.unwrap_or(&before.language).to_string(),
    };
    let mut tx = store::begin_write(db).await?;
    reg::set_site_settings(&mut tx, site, &after).await?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(by.id),
            actor: &by.username,
            action: "update_site",
            entity: "site",
            entity_id: site.to_string(),
            before: Some(settings_json(&before)),
            after: Some(settings_json(&after)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn settings_json(s: &SiteSettings) -> serde_json::Value {
    json!({"room": s.room, "address": s.address, "equipment": s.equipment,
           "room_rules": s.room_rules, "language": s.language})
}

/// What a technician's form submits.
#[derive(Debug, Clone)]
pub struct TechnicianInput<'a> {
    pub name: &'a str,
    pub unit: &'a str,
    pub phone: &'a str,
    pub email: &'a str,
    pub trained: bool,
    /// dd/mm/yyyy, or empty.
    pub trained_on: &'a str,
}

/// A change of a site's roster (S3).
#[derive(Debug, Clone)]
pub enum RosterChange<'a> {
    /// A new technician (`id` None) or new details of one.
    Save {
        id: Option<i64>,
        technician: TechnicianInput<'a>,
    },
    Remove {
        id: Option<i64>,
    },
}

fn technician_json(t: &TechnicianFields<'_>) -> serde_json::Value {
    json!({"name": t.name, "unit": t.unit, "phone": t.phone, "email": t.email,
           "trained": t.trained, "trained_on": t.trained_on})
}

/// S3: add, change or remove a technician of a site (those who may edit its roster); the
/// audit trail is the roster's change history. Returns the technician's id.
pub async fn change_roster(
    db: &Db,
    by: &Account,
    site: i64,
    change: &RosterChange<'_>,
) -> Result<i64, RegistryError> {
    may(by, &Action::EditRoster { site })?;
    if reg::site_name(db, site).await?.is_none() {
        return Err(RegistryError::NotFound);
    }
    let id = match change {
        RosterChange::Save { id, .. } | RosterChange::Remove { id } => *id,
    };
    let before = match id {
        Some(id) => match reg::technician_of_site(db, id, site).await? {
            Some(t) => Some(technician_json(&TechnicianFields {
                name: &t.name,
                unit: &t.unit,
                phone: &t.phone,
                email: &t.email,
                trained: t.trained,
                trained_on: &t.trained_on,
            })),
            None => return Err(RegistryError::NotFound),
        },
        None => None,
    };
    let t = match change {
        RosterChange::Remove { id } => {
            let Some(id) = *id else {
                return Err(RegistryError::NothingToRemove);
            };
            let mut tx = store::begin_write(db).await?;
            reg::remove_technician(&mut tx, id).await?;
            store::audit::record(
                &mut *tx,
                store::audit::AuditEntry {
                    actor_id: Some(by.id),
                    actor: &by.username,
                    action: "remove_technician",
                    entity: "technician",
                    entity_id: id.to_string(),
                    before,
                    after: None,
                },
            )
            .await?;
            tx.commit().await?;
            return Ok(id);
        }
        RosterChange::Save { technician, .. } => technician,
    };
    let mut errors = BTreeMap::new();
    let name = t.name.trim();
    if name.is_empty() || name.chars().count() > 120 {
        errors.insert("tech_name", FieldError::key("reg_err_name"));
    }
    let phone = t.phone.trim();
    if !valid_phone(phone) {
        errors.insert("tech_phone", FieldError::key("reg_err_phone"));
    }
    let email = t.email.trim();
    if !valid_email(email) {
        errors.insert("tech_email", FieldError::key("reg_err_email"));
    }
    let trained_on = t.trained_on.trim();
    if t.trained
        && !trained_on.is_empty()
        && chrono::NaiveDate::parse_from_str(trained_on, "%d/%m/%Y").is_err()
    {
        errors.insert("tech_trained_on", FieldError::key("bk_err_date"));
    }
    if !errors.is_empty() {
        return Err(RegistryError::Invalid(errors));
    }
    let fields = TechnicianFields {
        name,
        unit: t.unit.trim(),
        phone,
        email,
        trained: t.trained,
        trained_on,
    };
    let mut tx = store::begin_write(db).await?;
    let entity_id = match id {
        Some(id) => {
            reg::update_technician(&mut tx, id, &fields).await?;
            id
        }
        None => reg::insert_technician(&mut tx, site, &fields).await?,
    };
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(by.id),
            actor: &by.username,
            action: if id.is_some() {
                "update_technician"
            } else {
                "add_technician"
            },
            entity: "technician",
            entity_id: entity_id.to_string(),
            before,
            after: Some(technician_json(&fields)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(entity_id)
}

/// The kinds of unit (Art. 3).
pub const UNIT_KINDS: &[&str] = &[
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

/// The unit of a new site: an existing one, or a new one of that name and kind (whose code is
/// the site's).
#[derive(Debug, Clone)]
pub enum UnitOfSite<'a> {
    Existing(i64),
    New { name: &'a str, kind: &'a str },
}

/// A new site (and, if asked, its new unit), by control-center roles; each with its audit
/// entry, all in one transaction. Returns the site's id. Its device account is then made as
/// any account.
pub async fn create_site(
    db: &Db,
    by: &Account,
    code: &str,
    name: &str,
    unit: &UnitOfSite<'_>,
) -> Result<i64, RegistryError> {
    may(by, &Action::ManageSites)?;
    let code = code.trim();
    let name = name.trim();
    if !valid_code(code) {
        return Err(refused("code", "reg_err_code"));
    }
    if name.is_empty() || name.chars().count() > 120 {
        return Err(refused("name", "reg_err_name"));
    }
    if reg::site_code_taken(db, code).await? {
        return Err(refused("code", "reg_err_code_taken"));
    }
    let mut tx = store::begin_write(db).await?;
    let unit_id = match *unit {
        UnitOfSite::Existing(u) => {
            if !reg::unit_exists(&mut tx, u).await? {
                return Err(refused("unit", "reg_err_unit"));
            }
            u
        }
        UnitOfSite::New {
            name: unit_name,
            kind,
        } => {
            let unit_name = unit_name.trim();
            if unit_name.is_empty() || unit_name.chars().count() > 200 {
                return Err(refused("unit_name", "reg_err_unit"));
            }
            if !UNIT_KINDS.contains(&kind) {
                return Err(refused("unit_kind", "reg_err_unit"));
            }
            if reg::unit_code_taken(&mut tx, code).await? {
                return Err(refused("code", "reg_err_code_taken"));
            }
            let id = reg::insert_unit(&mut tx, code, unit_name, kind).await?;
            store::audit::record(
                &mut *tx,
                store::audit::AuditEntry {
                    actor_id: Some(by.id),
                    actor: &by.username,
                    action: "create_unit",
                    entity: "unit",
                    entity_id: id.to_string(),
                    before: None,
                    after: Some(json!({"code": code, "name": unit_name, "kind": kind})),
                },
            )
            .await?;
            id
        }
    };
    let id = reg::insert_site(&mut tx, code, name, unit_id).await?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(by.id),
            actor: &by.username,
            action: "create_site",
            entity: "site",
            entity_id: id.to_string(),
            before: None,
            after: Some(json!({"code": code, "name": name, "unit_id": unit_id})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// What a provider contact's form submits.
#[derive(Debug, Clone)]
pub struct ContactInput<'a> {
    /// A line provider's unit id (as submitted).
    pub unit: &'a str,
    pub name: &'a str,
    pub phone: &'a str,
    pub email: &'a str,
    pub on_duty: bool,
}

/// A change of the line provider's contacts (L2).
#[derive(Debug, Clone)]
pub enum ContactChange<'a> {
    Save {
        id: Option<i64>,
        contact: ContactInput<'a>,
    },
    Remove {
        id: Option<i64>,
    },
}

/// L2 (Art. 12): the line provider's contacts and who is on duty, by control-center roles.
/// Returns the contact's id.
pub async fn change_contacts(
    db: &Db,
    by: &Account,
    change: &ContactChange<'_>,
) -> Result<i64, RegistryError> {
    may(by, &Action::ManageSites)?;
    let id = match change {
        ContactChange::Save { id, .. } | ContactChange::Remove { id } => *id,
    };
    let before = match id {
        Some(id) => match reg::provider_contact(db, id).await? {
            Some((name, phone, email)) => {
                Some(json!({"name": name, "phone": phone, "email": email}))
            }
            None => return Err(RegistryError::NotFound),
        },
        None => None,
    };
    let c = match change {
        ContactChange::Remove { id } => {
            let Some(id) = *id else {
                return Err(RegistryError::NothingToRemove);
            };
            let mut tx = store::begin_write(db).await?;
            reg::delete_provider_contact(&mut tx, id).await?;
            store::audit::record(
                &mut *tx,
                store::audit::AuditEntry {
                    actor_id: Some(by.id),
                    actor: &by.username,
                    action: "remove_provider_contact",
                    entity: "provider_contact",
                    entity_id: id.to_string(),
                    before,
                    after: None,
                },
            )
            .await?;
            tx.commit().await?;
            return Ok(id);
        }
        ContactChange::Save { contact, .. } => contact,
    };
    let name = c.name.trim();
    let phone = c.phone.trim();
    let email = c.email.trim();
    if name.is_empty() || name.chars().count() > 120 {
        return Err(refused("name", "reg_err_name"));
    }
    if !valid_phone(phone) {
        return Err(refused("phone", "reg_err_phone"));
    }
    if !valid_email(email) {
        return Err(refused("email", "reg_err_email"));
    }
    let mut tx = store::begin_write(db).await?;
    let unit = c.unit.parse::<i64>().unwrap_or(-1);
    if !reg::is_line_provider(&mut tx, unit).await? {
        return Err(refused("unit", "reg_err_unit"));
    }
    let fields = ContactFields {
        unit_id: unit,
        name,
        phone,
        email,
        on_duty: c.on_duty,
    };
    let entity_id = match id {
        Some(id) => {
            reg::update_provider_contact(&mut tx, id, &fields).await?;
            id
        }
        None => reg::insert_provider_contact(&mut tx, &fields).await?,
    };
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(by.id),
            actor: &by.username,
            action: if id.is_some() {
                "update_provider_contact"
            } else {
                "add_provider_contact"
            },
            entity: "provider_contact",
            entity_id: entity_id.to_string(),
            before,
            after: Some(
                json!({"name": name, "phone": phone, "email": email, "on_duty": c.on_duty}),
            ),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(entity_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnth_rules::roles::Role;

    async fn db_with_site() -> (tempfile::TempDir, Db, Account) {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("hnth.db")).await.unwrap();
        for sql in [
            "INSERT INTO units (id, code, name, kind) VALUES (1, 'vp', 'Văn phòng UBND tỉnh', 'provincial_office')",
            "INSERT INTO sites (id, code, name, unit_id, room) VALUES (2, 'huyen', 'Huyện Một', 1, 'Phòng cũ')",
            "INSERT INTO accounts (id, username, display_name, password_hash, role, created_at) VALUES (1, 'op', 'Operator', 'x', 'operator', 0)",
        ] {
            sqlx::query(sql).execute(&db).await.unwrap();
        }
        let op = store::accounts::active(&db, 1).await.unwrap().unwrap();
        (dir, db, op)
    }

    async fn count(db: &Db, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
    }

    fn input(room: &str) -> SiteInput<'_> {
        SiteInput {
            room,
            address: "",
            equipment: "",
            room_rules: "",
            language: Some("en"),
        }
    }

    fn new_technician() -> RosterChange<'static> {
        RosterChange::Save {
            id: None,
            technician: TechnicianInput {
                name: "Lê Văn Kỹ",
                unit: "",
                phone: "0291 3800 100",
                email: "",
                trained: true,
                trained_on: "",
            },
        }
    }

    /// A3: a site's new description lands with its audit entry, or neither does.
    #[tokio::test]
    async fn a_site_change_and_its_audit_entry_commit_together() {
        let (_dir, db, op) = db_with_site().await;
        save_site(&db, &op, 2, &input("Phòng mới")).await.unwrap();
        let s = reg::site_settings(&db, 2).await.unwrap().unwrap();
        assert_eq!((s.room.as_str(), s.language.as_str()), ("Phòng mới", "en"));
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM audit WHERE action = 'update_site' AND entity_id = '2'"
            )
            .await,
            1
        );
        sqlx::query(
            "CREATE TRIGGER ro_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit full'); END",
        )
        .execute(&db)
        .await
        .unwrap();
        let r = save_site(&db, &op, 2, &input("Phòng khác")).await;
        assert!(matches!(r, Err(RegistryError::Store(_))), "{r:?}");
        let s = reg::site_settings(&db, 2).await.unwrap().unwrap();
        assert_eq!(s.room, "Phòng mới", "changed without its audit entry");
        let tech = new_technician();
        let r = change_roster(&db, &op, 2, &tech).await;
        assert!(matches!(r, Err(RegistryError::Store(_))), "{r:?}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM technicians").await, 0);
    }

    /// Refusals name their field (the API answers with it) and write nothing: a roster of a
    /// site that does not exist, a new site's unit of no known kind, a site code taken.
    #[tokio::test]
    async fn refusals_name_the_field_and_write_nothing() {
        let (_dir, db, op) = db_with_site().await;
        let tech = new_technician();
        let r = change_roster(&db, &op, 99, &tech).await;
        assert!(matches!(r, Err(RegistryError::NotFound)), "{r:?}");
        let unit = UnitOfSite::New {
            name: "Huyện Mới",
            kind: "kingdom",
        };
        let r = create_site(&db, &op, "huyen-moi", "Huyện Mới", &unit).await;
        assert!(
            matches!(
                r,
                Err(RegistryError::Refused {
                    field: "unit_kind",
                    ..
                })
            ),
            "{r:?}"
        );
        let r = create_site(&db, &op, "huyen", "Huyện Hai", &UnitOfSite::Existing(1)).await;
        assert!(
            matches!(
                r,
                Err(RegistryError::Refused {
                    field: "code",
                    key: "reg_err_code_taken"
                })
            ),
            "{r:?}"
        );
        for sql in [
            "SELECT COUNT(*) FROM technicians",
            "SELECT COUNT(*) FROM audit",
            "SELECT COUNT(*) FROM units WHERE code = 'huyen-moi'",
        ] {
            assert_eq!(count(&db, sql).await, 0, "{sql}");
        }
    }

    /// A1: a site's description is the control center's; a leadership account may not change it.
    #[tokio::test]
    async fn only_the_control_center_changes_a_site() {
        let (_dir, db, op) = db_with_site().await;
        let reader = Account {
            id: 9,
            role: Role::Leadership,
            ..op
        };
        let r = save_site(&db, &reader, 2, &input("Phòng lạ")).await;
        assert!(matches!(r, Err(RegistryError::Forbidden)), "{r:?}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM audit").await, 0);
    }
}
