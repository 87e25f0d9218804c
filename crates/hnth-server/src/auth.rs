//! Personal accounts (rule A2): argon2id passwords, lockout after failed tries, sessions that
//! expire, CSRF tokens, and the extractor that every protected route uses.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hnth_rules::roles::{Role, Scope};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqlitePool};

use crate::config::Security;
use crate::db::now;
use crate::web::{AppError, AppState};

pub const SESSION_COOKIE: &str = "hnth_session";

#[derive(Debug, Clone, Serialize)]
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

/// The logged-in account of a request, and its session's CSRF token.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub account: Account,
    pub csrf: String,
}

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashing with default parameters")
        .to_string()
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A random token, URL-safe.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    Invalid,
    Locked { until: i64 },
}

/// Check a username and password; on success open a session and return its token.
pub async fn login(
    db: &SqlitePool,
    sec: &Security,
    username: &str,
    password: &str,
) -> Result<(String, Account), LoginError> {
    let row = sqlx::query(
        "SELECT id, password_hash, failed_logins, locked_until, disabled FROM accounts WHERE username = ?",
    )
    .bind(username.trim())
    .fetch_optional(db)
    .await
    .map_err(|_| LoginError::Invalid)?;
    let Some(row) = row else {
        // Same work as for a real account, so timing does not tell which usernames exist.
        let _ = verify_password(password, &DUMMY_HASH);
        return Err(LoginError::Invalid);
    };
    let id: i64 = row.get("id");
    let t = now();
    if let Some(until) = row.get::<Option<i64>, _>("locked_until") {
        if until > t {
            return Err(LoginError::Locked { until });
        }
    }
    let ok =
        verify_password(password, row.get("password_hash")) && row.get::<i64, _>("disabled") == 0;
    if !ok {
        let failed = row.get::<i64, _>("failed_logins") + 1;
        let locked = (failed >= sec.max_failed_logins).then_some(t + sec.lockout_minutes * 60);
        let _ = sqlx::query("UPDATE accounts SET failed_logins = ?, locked_until = ? WHERE id = ?")
            .bind(if locked.is_some() { 0 } else { failed })
            .bind(locked)
            .bind(id)
            .execute(db)
            .await;
        return match locked {
            Some(until) => Err(LoginError::Locked { until }),
            None => Err(LoginError::Invalid),
        };
    }
    let account = account_by_id(db, id).await.ok_or(LoginError::Invalid)?;
    let hours = if account.role == Role::SiteDevice {
        sec.device_session_days * 24
    } else {
        sec.session_hours
    };
    let token = random_token();
    let res = sqlx::query(
        "UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = ?; \
         INSERT INTO sessions (token_hash, account_id, csrf, created_at, expires_at) VALUES (?,?,?,?,?)",
    )
    .bind(id)
    .bind(token_hash(&token))
    .bind(id)
    .bind(random_token())
    .bind(t)
    .bind(t + hours * 3600)
    .execute(db)
    .await;
    if res.is_err() {
        return Err(LoginError::Invalid);
    }
    Ok((token, account))
}

static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("no such account"));

pub async fn logout(db: &SqlitePool, token: &str) {
    let _ = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash(token))
        .execute(db)
        .await;
}

pub async fn account_by_id(db: &SqlitePool, id: i64) -> Option<Account> {
    let row = sqlx::query(
        "SELECT id, username, display_name, role, site_id, unit_id FROM accounts WHERE id = ? AND disabled = 0",
    )
    .bind(id)
    .fetch_optional(db)
    .await
    .ok()??;
    Some(Account {
        id: row.get("id"),
        username: row.get("username"),
        display_name: row.get("display_name"),
        role: Role::parse(row.get("role"))?,
        site_id: row.get("site_id"),
        unit_id: row.get("unit_id"),
    })
}

/// The session a token opens, if it exists and has not expired.
pub async fn session(db: &SqlitePool, token: &str) -> Option<CurrentUser> {
    let row = sqlx::query("SELECT account_id, csrf, expires_at FROM sessions WHERE token_hash = ?")
        .bind(token_hash(token))
        .fetch_optional(db)
        .await
        .ok()??;
    if row.get::<i64, _>("expires_at") <= now() {
        logout(db, token).await;
        return None;
    }
    let account = account_by_id(db, row.get("account_id")).await?;
    Some(CurrentUser {
        account,
        csrf: row.get("csrf"),
    })
}

/// The session token of a request: the cookie, or `Authorization: Bearer`, or `?token=`.
/// Returns whether it came from the cookie (then CSRF and Origin checks apply).
pub fn request_token(parts: &Parts) -> Option<(String, bool)> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        if let Some(t) = v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")) {
            return Some((t.trim().to_string(), false));
        }
    }
    if let Some(q) = parts.uri.query() {
        for pair in q.split('&') {
            if let Some(t) = pair.strip_prefix("token=") {
                return Some((t.to_string(), false));
            }
        }
    }
    cookie_value(parts, SESSION_COOKIE).map(|t| (t, true))
}

pub fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| cookie::Cookie::parse(c.trim().to_string()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Some((token, _)) = request_token(parts) else {
            return Err(AppError::Unauthenticated);
        };
        session(&state.db, &token)
            .await
            .ok_or(AppError::Unauthenticated)
    }
}

/// Create an account (used by `hnth user add` and the demo).
pub async fn create_account(
    db: &SqlitePool,
    username: &str,
    display_name: &str,
    password: &str,
    role: Role,
    site_id: Option<i64>,
    unit_id: Option<i64>,
) -> anyhow::Result<i64> {
    check_password_strength(password)?;
    let hash = hash_password(password);
    insert_account(db, username, display_name, &hash, role, site_id, unit_id).await
}

/// Insert an account whose password is already hashed (argon2id PHC string), on a pool or
/// inside a transaction.
pub async fn insert_account<'e>(
    ex: impl sqlx::SqliteExecutor<'e>,
    username: &str,
    display_name: &str,
    password_hash: &str,
    role: Role,
    site_id: Option<i64>,
    unit_id: Option<i64>,
) -> anyhow::Result<i64> {
    let id = sqlx::query(
        "INSERT INTO accounts (username, display_name, password_hash, role, site_id, unit_id, created_at) VALUES (?,?,?,?,?,?,?)",
    )
    .bind(username)
    .bind(display_name)
    .bind(password_hash)
    .bind(role.as_str())
    .bind(site_id)
    .bind(unit_id)
    .bind(now())
    .execute(ex)
    .await?
    .last_insert_rowid();
    Ok(id)
}

pub fn check_password_strength(password: &str) -> anyhow::Result<()> {
    if password.chars().count() < 10 {
        anyhow::bail!("password too short: at least 10 characters (rule A2)");
    }
    Ok(())
}

pub async fn set_password(db: &SqlitePool, username: &str, password: &str) -> anyhow::Result<()> {
    check_password_strength(password)?;
    let n = sqlx::query(
        "UPDATE accounts SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE username = ?",
    )
    .bind(hash_password(password))
    .bind(username)
    .execute(db)
    .await?
    .rows_affected();
    if n == 0 {
        anyhow::bail!("no account named {username}");
    }
    // A new password closes every open session of the account.
    sqlx::query(
        "DELETE FROM sessions WHERE account_id = (SELECT id FROM accounts WHERE username = ?)",
    )
    .bind(username)
    .execute(db)
    .await?;
    Ok(())
}

/// The username of an account, disabled or not.
pub async fn account_by_id_any(db: &SqlitePool, id: i64) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT username FROM accounts WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.0))
}
