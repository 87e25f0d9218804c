//! The registry (Art. 3, 4): units, sites and their settings, rooms, equipment, technicians
//! and the line provider's contacts.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Db, Error, Tx};

/// A site as the other aggregates need it: the booking rules (B3: the control center), the
/// calendar, the audit page's filter, the site app's room rules (S2).
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub is_control_center: bool,
    pub room_rules: String,
}

/// Every site, the control center first.
pub async fn sites(db: &Db) -> Result<Vec<Site>, Error> {
    let rows = sqlx::query(
        "SELECT id, code, name, is_control_center, room_rules FROM sites ORDER BY is_control_center DESC, id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Site {
            id: r.get("id"),
            code: r.get("code"),
            name: r.get("name"),
            is_control_center: r.get::<i64, _>("is_control_center") != 0,
            room_rules: r.get("room_rules"),
        })
        .collect())
}

/// Every unit's id and name, by id.
pub async fn unit_names(db: &Db) -> Result<Vec<(i64, String)>, Error> {
    sqlx::query_as("SELECT id, name FROM units ORDER BY id")
        .fetch_all(db)
        .await
}

/// Every provider contact's id and name, by id (to name the ids an audit entry holds).
pub async fn contact_names(db: &Db) -> Result<Vec<(i64, String)>, Error> {
    sqlx::query_as("SELECT id, name FROM provider_contacts ORDER BY id")
        .fetch_all(db)
        .await
}

/// A site's name, if it exists.
pub async fn site_name(db: &Db, site: i64) -> Result<Option<String>, Error> {
    let row: Option<(String,)> = sqlx::query_as("SELECT name FROM sites WHERE id = ?")
        .bind(site)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.0))
}

/// Every unit: id, name and kind, by id.
pub async fn units(db: &Db) -> Result<Vec<(i64, String, String)>, Error> {
    sqlx::query_as("SELECT id, name, kind FROM units ORDER BY id")
        .fetch_all(db)
        .await
}

/// A site as the registry describes it (S2), with its unit's name.
#[derive(Debug, Clone)]
pub struct SiteRecord {
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
}

/// Every site, the control center first.
pub async fn site_records(db: &Db) -> Result<Vec<SiteRecord>, Error> {
    let rows = sqlx::query(
        "SELECT s.id, s.code, s.name, u.name AS unit, s.room, s.address, s.equipment, s.room_rules, s.language, s.is_control_center \
         FROM sites s JOIN units u ON u.id = s.unit_id ORDER BY s.is_control_center DESC, s.id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SiteRecord {
            id: r.get("id"),
            code: r.get("code"),
            name: r.get("name"),
            unit: r.get("unit"),
            room: r.get("room"),
            address: r.get("address"),
            equipment: r.get("equipment"),
            room_rules: r.get("room_rules"),
            language: r.get("language"),
            is_control_center: r.get::<i64, _>("is_control_center") != 0,
        })
        .collect())
}

/// A technician of a site's roster (S3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Technician {
    pub id: i64,
    pub site_id: i64,
    pub name: String,
    pub unit: String,
    pub phone: String,
    pub email: String,
    pub trained: bool,
    pub trained_on: String,
}

/// The technicians on the rosters (not the removed ones), by site.
pub async fn active_technicians(db: &Db) -> Result<Vec<Technician>, Error> {
    let rows = sqlx::query(
        "SELECT id, site_id, name, unit, phone, email, trained, trained_on FROM technicians WHERE active = 1 ORDER BY site_id, id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Technician {
            id: r.get("id"),
            site_id: r.get("site_id"),
            name: r.get("name"),
            unit: r.get("unit"),
            phone: r.get("phone"),
            email: r.get("email"),
            trained: r.get::<i64, _>("trained") != 0,
            trained_on: r.get("trained_on"),
        })
        .collect())
}

/// What a technician's record holds, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TechnicianFields<'a> {
    pub name: &'a str,
    pub unit: &'a str,
    pub phone: &'a str,
    pub email: &'a str,
    pub trained: bool,
    pub trained_on: &'a str,
}

/// The technician `id` on the roster of `site` (not removed).
pub async fn technician_of_site(db: &Db, id: i64, site: i64) -> Result<Option<Technician>, Error> {
    let row = sqlx::query(
        "SELECT id, site_id, name, unit, phone, email, trained, trained_on FROM technicians WHERE id = ? AND site_id = ? AND active = 1",
    )
    .bind(id)
    .bind(site)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Technician {
        id: r.get("id"),
        site_id: r.get("site_id"),
        name: r.get("name"),
        unit: r.get("unit"),
        phone: r.get("phone"),
        email: r.get("email"),
        trained: r.get::<i64, _>("trained") != 0,
        trained_on: r.get("trained_on"),
    }))
}

pub async fn insert_technician(
    tx: &mut Tx<'_>,
    site: i64,
    t: &TechnicianFields<'_>,
) -> Result<i64, Error> {
    Ok(sqlx::query(
        "INSERT INTO technicians (site_id, name, unit, phone, email, trained, trained_on) VALUES (?,?,?,?,?,?,?)",
    )
    .bind(site)
    .bind(t.name)
    .bind(t.unit)
    .bind(t.phone)
    .bind(t.email)
    .bind(t.trained)
    .bind(t.trained_on)
    .execute(&mut **tx)
    .await?
    .last_insert_rowid())
}

pub async fn update_technician(
    tx: &mut Tx<'_>,
    id: i64,
    t: &TechnicianFields<'_>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE technicians SET name = ?, unit = ?, phone = ?, email = ?, trained = ?, trained_on = ? WHERE id = ?",
    )
    .bind(t.name)
    .bind(t.unit)
    .bind(t.phone)
    .bind(t.email)
    .bind(t.trained)
    .bind(t.trained_on)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Off the roster; the record stays for the audit trail's names.
pub async fn remove_technician(tx: &mut Tx<'_>, id: i64) -> Result<(), Error> {
    sqlx::query("UPDATE technicians SET active = 0 WHERE id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What a site's page sets: its room, address, equipment, room rules (S2) and language (M2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSettings {
    pub room: String,
    pub address: String,
    pub equipment: String,
    pub room_rules: String,
    pub language: String,
}

pub async fn site_settings(db: &Db, site: i64) -> Result<Option<SiteSettings>, Error> {
    let row = sqlx::query(
        "SELECT room, address, equipment, room_rules, language FROM sites WHERE id = ?",
    )
    .bind(site)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| SiteSettings {
        room: r.get("room"),
        address: r.get("address"),
        equipment: r.get("equipment"),
        room_rules: r.get("room_rules"),
        language: r.get("language"),
    }))
}

pub async fn set_site_settings(tx: &mut Tx<'_>, site: i64, s: &SiteSettings) -> Result<(), Error> {
    sqlx::query(
        "UPDATE sites SET room = ?, address = ?, equipment = ?, room_rules = ?, language = ? WHERE id = ?",
    )
    .bind(&s.room)
    .bind(&s.address)
    .bind(&s.equipment)
    .bind(&s.room_rules)
    .bind(&s.language)
    .bind(site)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The language code of a site's app, if the site exists.
pub async fn site_language(db: &Db, site: i64) -> Result<Option<String>, Error> {
    let code: Option<(String,)> = sqlx::query_as("SELECT language FROM sites WHERE id = ?")
        .bind(site)
        .fetch_optional(db)
        .await?;
    Ok(code.map(|c| c.0))
}

/// Whether a site has the code `code`.
pub async fn site_code_taken(db: &Db, code: &str) -> Result<bool, Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM sites WHERE code = ?")
        .bind(code)
        .fetch_optional(db)
        .await?;
    Ok(row.is_some())
}

pub async fn unit_exists(tx: &mut Tx<'_>, id: i64) -> Result<bool, Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM units WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

pub async fn unit_code_taken(tx: &mut Tx<'_>, code: &str) -> Result<bool, Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM units WHERE code = ?")
        .bind(code)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

pub async fn insert_unit(
    tx: &mut Tx<'_>,
    code: &str,
    name: &str,
    kind: &str,
) -> Result<i64, Error> {
    Ok(
        sqlx::query("INSERT INTO units (code, name, kind) VALUES (?,?,?)")
            .bind(code)
            .bind(name)
            .bind(kind)
            .execute(&mut **tx)
            .await?
            .last_insert_rowid(),
    )
}

/// A new site of `unit`, with the defaults of its description.
pub async fn insert_site(tx: &mut Tx<'_>, code: &str, name: &str, unit: i64) -> Result<i64, Error> {
    Ok(
        sqlx::query("INSERT INTO sites (code, name, unit_id) VALUES (?,?,?)")
            .bind(code)
            .bind(name)
            .bind(unit)
            .execute(&mut **tx)
            .await?
            .last_insert_rowid(),
    )
}

/// A contact of a line provider (L2), with its unit's name.
#[derive(Debug, Clone)]
pub struct ProviderContact {
    pub id: i64,
    pub unit_id: i64,
    pub unit: String,
    pub name: String,
    pub phone: String,
    pub email: String,
    pub on_duty: bool,
}

pub async fn provider_contacts(db: &Db) -> Result<Vec<ProviderContact>, Error> {
    let rows = sqlx::query(
        "SELECT u.name AS unit, p.name, p.phone, p.email, p.on_duty, p.id, p.unit_id FROM provider_contacts p JOIN units u ON u.id = p.unit_id ORDER BY p.id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ProviderContact {
            id: r.get("id"),
            unit_id: r.get("unit_id"),
            unit: r.get("unit"),
            name: r.get("name"),
            phone: r.get("phone"),
            email: r.get("email"),
            on_duty: r.get::<i64, _>("on_duty") != 0,
        })
        .collect())
}

/// A contact's name, phone and e-mail address.
pub async fn provider_contact(db: &Db, id: i64) -> Result<Option<(String, String, String)>, Error> {
    sqlx::query_as("SELECT name, phone, email FROM provider_contacts WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Whether `unit` is a line provider's.
pub async fn is_line_provider(tx: &mut Tx<'_>, unit: i64) -> Result<bool, Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM units WHERE id = ? AND kind = 'line_provider'")
            .bind(unit)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.is_some())
}

/// What a provider contact's record holds, as written.
#[derive(Debug, Clone)]
pub struct ContactFields<'a> {
    pub unit_id: i64,
    pub name: &'a str,
    pub phone: &'a str,
    pub email: &'a str,
    pub on_duty: bool,
}

pub async fn insert_provider_contact(tx: &mut Tx<'_>, c: &ContactFields<'_>) -> Result<i64, Error> {
    Ok(sqlx::query(
        "INSERT INTO provider_contacts (unit_id, name, phone, email, on_duty) VALUES (?,?,?,?,?)",
    )
    .bind(c.unit_id)
    .bind(c.name)
    .bind(c.phone)
    .bind(c.email)
    .bind(c.on_duty)
    .execute(&mut **tx)
    .await?
    .last_insert_rowid())
}

pub async fn update_provider_contact(
    tx: &mut Tx<'_>,
    id: i64,
    c: &ContactFields<'_>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE provider_contacts SET unit_id = ?, name = ?, phone = ?, email = ?, on_duty = ? WHERE id = ?",
    )
    .bind(c.unit_id)
    .bind(c.name)
    .bind(c.phone)
    .bind(c.email)
    .bind(c.on_duty)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn delete_provider_contact(tx: &mut Tx<'_>, id: i64) -> Result<(), Error> {
    sqlx::query("DELETE FROM provider_contacts WHERE id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The control center's site and its unit, if the registry has one.
pub async fn control_center(tx: &mut Tx<'_>) -> Result<Option<(i64, i64)>, Error> {
    sqlx::query_as("SELECT id, unit_id FROM sites WHERE is_control_center = 1 ORDER BY id LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
}

pub async fn site_exists(tx: &mut Tx<'_>, id: i64) -> Result<bool, Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM sites WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}
