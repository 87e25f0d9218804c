//! Personal accounts (A1, A2), their sessions and their failed-login counts.
//!
//! Passwords and session tokens reach the store already hashed: the store keeps what it is
//! given and knows no cleartext.

use hnth_rules::roles::{Role, Scope};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{now, Db, Error, Tx};

/// An account that may act: enabled, of a known role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub site_id: Option<i64>,
    pub unit_id: Option<i64>,
}

impl Account {
    pub fn scope(&self) -> Scope {
        // A provider's technician belongs to the provider's unit but acts on the province's
        // lines (or one site's): the unit is not its scope (L2, L3).
        let unit = if self.role == Role::ProviderTechnician {
            None
        } else {
            self.unit_id
        };
        match (self.site_id, unit) {
            (Some(s), _) => Scope::Site(s),
            (None, Some(u)) => Scope::Unit(u),
            _ => Scope::Province,
        }
    }

    /// Control-center roles: administrators and operators act on everything (A1).
    pub fn is_control_center(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator)
    }
}

/// The logged-in account of a session, and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub account: Account,
    pub csrf: String,
}

/// What a login needs to know of an account, disabled or not.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: i64,
    pub password_hash: String,
    pub locked_until: Option<i64>,
    pub disabled: bool,
}

pub async fn credentials(db: &Db, username: &str) -> Result<Option<Credentials>, Error> {
    let row = sqlx::query(
        "SELECT id, password_hash, locked_until, disabled FROM accounts WHERE username = ?",
    )
    .bind(username)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Credentials {
        id: r.get("id"),
        password_hash: r.get("password_hash"),
        locked_until: r.get("locked_until"),
        disabled: r.get::<i64, _>("disabled") != 0,
    }))
}

/// One more try at an account, counted (and committed) before its password is checked;
/// returns the count.
pub async fn count_try(db: &Db, account: i64) -> Result<i64, Error> {
    sqlx::query_scalar(
        "UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = ? RETURNING failed_logins",
    )
    .bind(account)
    .fetch_one(db)
    .await
}

/// Too many failed tries: locked until then, and the count starts again.
pub async fn lock(db: &Db, account: i64, until: i64) -> Result<(), Error> {
    sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = ? WHERE id = ?")
        .bind(until)
        .bind(account)
        .execute(db)
        .await?;
    Ok(())
}

/// The failed-login count back to zero and the lock lifted (a login, an unlock).
pub async fn reset_tries(tx: &mut Tx<'_>, account: i64) -> Result<(), Error> {
    sqlx::query("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = ?")
        .bind(account)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Store a session, by its token's hash.
pub async fn insert_session(
    tx: &mut Tx<'_>,
    account: i64,
    token_hash: &str,
    csrf: &str,
    at: i64,
    expires: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, account_id, csrf, created_at, expires_at) VALUES (?,?,?,?,?)",
    )
    .bind(token_hash)
    .bind(account)
    .bind(csrf)
    .bind(at)
    .bind(expires)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A stored session: whose, its CSRF token, when it expires.
#[derive(Debug, Clone)]
pub struct Session {
    pub account_id: i64,
    pub csrf: String,
    pub expires_at: i64,
}

pub async fn session(db: &Db, token_hash: &str) -> Result<Option<Session>, Error> {
    let row = sqlx::query("SELECT account_id, csrf, expires_at FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| Session {
        account_id: r.get("account_id"),
        csrf: r.get("csrf"),
        expires_at: r.get("expires_at"),
    }))
}

pub async fn delete_session(db: &Db, token_hash: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Close every session of an account (disabled, new password).
pub async fn delete_sessions_of(tx: &mut Tx<'_>, account: i64) -> Result<(), Error> {
    sqlx::query("DELETE FROM sessions WHERE account_id = ?")
        .bind(account)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An enabled account of a known role.
pub async fn active(db: &Db, id: i64) -> Result<Option<Account>, Error> {
    let row = sqlx::query(
        "SELECT id, username, display_name, role, site_id, unit_id FROM accounts WHERE id = ? AND disabled = 0",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|r| {
        Some(Account {
            id: r.get("id"),
            username: r.get("username"),
            display_name: r.get("display_name"),
            role: Role::parse(r.get("role"))?,
            site_id: r.get("site_id"),
            unit_id: r.get("unit_id"),
        })
    }))
}

/// The id of the account `username`, disabled or not.
pub async fn id_by_username(db: &Db, username: &str) -> Result<Option<i64>, Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM accounts WHERE username = ?")
        .bind(username)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.0))
}

/// The username and role code of an account, disabled or not.
pub async fn name_and_role(db: &Db, id: i64) -> Result<Option<(String, String)>, Error> {
    sqlx::query_as("SELECT username, role FROM accounts WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A new account, its password already hashed (argon2id PHC string).
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub site_id: Option<i64>,
    pub unit_id: Option<i64>,
}

pub async fn insert(tx: &mut Tx<'_>, a: &NewAccount<'_>) -> Result<i64, Error> {
    let id = sqlx::query(
        "INSERT INTO accounts (username, display_name, password_hash, role, site_id, unit_id, created_at) VALUES (?,?,?,?,?,?,?)",
    )
    .bind(a.username)
    .bind(a.display_name)
    .bind(a.password_hash)
    .bind(a.role.as_str())
    .bind(a.site_id)
    .bind(a.unit_id)
    .bind(now())
    .execute(&mut **tx)
    .await?
    .last_insert_rowid();
    Ok(id)
}

/// A new password (hashed): the count and the lock are reset too. Returns whether the account
/// exists.
pub async fn set_password_hash(tx: &mut Tx<'_>, account: i64, hash: &str) -> Result<bool, Error> {
    let n = sqlx::query(
        "UPDATE accounts SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE id = ?",
    )
    .bind(hash)
    .bind(account)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n > 0)
}

pub async fn set_disabled(tx: &mut Tx<'_>, account: i64, disabled: bool) -> Result<(), Error> {
    sqlx::query("UPDATE accounts SET disabled = ? WHERE id = ?")
        .bind(disabled as i64)
        .bind(account)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One line of the account list, disabled and unknown roles included.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    /// The role's code as stored (an unknown code is shown, not dropped).
    pub role: String,
    pub site: Option<String>,
    pub unit: Option<String>,
    pub locked_until: Option<i64>,
    pub disabled: bool,
}

pub async fn list(db: &Db) -> Result<Vec<Listed>, Error> {
    let rows = sqlx::query(
        "SELECT a.id, a.username, a.display_name, a.role, s.name AS site, u.name AS unit, a.locked_until, a.disabled \
         FROM accounts a LEFT JOIN sites s ON s.id = a.site_id LEFT JOIN units u ON u.id = a.unit_id ORDER BY a.id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Listed {
            id: r.get("id"),
            username: r.get("username"),
            display_name: r.get("display_name"),
            role: r.get("role"),
            site: r.get("site"),
            unit: r.get("unit"),
            locked_until: r.get("locked_until"),
            disabled: r.get::<i64, _>("disabled") != 0,
        })
        .collect())
}

/// Every account's username with what it is (its site's name, else its role code), for the
/// start banner.
pub async fn usernames_with_site(db: &Db) -> Result<Vec<(String, String)>, Error> {
    sqlx::query_as(
        "SELECT a.username, COALESCE(s.name, a.role) FROM accounts a LEFT JOIN sites s ON s.id = a.site_id ORDER BY a.id",
    )
    .fetch_all(db)
    .await
}

/// The site device account `username` of the site `site_code`, if it exists and may act (the
/// simulated sites log in as theirs).
pub async fn site_device(
    db: &Db,
    username: &str,
    site_code: &str,
) -> Result<Option<Account>, Error> {
    let id: Option<(i64,)> = sqlx::query_as(
        "SELECT a.id FROM accounts a JOIN sites s ON s.id = a.site_id \
         WHERE a.username = ? AND s.code = ? AND a.role = 'site_device'",
    )
    .bind(username)
    .bind(site_code)
    .fetch_optional(db)
    .await?;
    match id {
        Some((id,)) => active(db, id).await,
        None => Ok(None),
    }
}
