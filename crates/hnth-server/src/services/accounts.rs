//! Accounts and sessions (A1, A2): logging in and out, creating an account, unlocking,
//! disabling, enabling it and giving it a new password. Nobody grants a role above its own or
//! acts on an account above its own (`hnth_rules::roles::may_grant`, `may_act_on`): a refusal
//! is recorded as a violation (R4). Every change commits together with its audit entry (A3).

use std::collections::BTreeMap;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use hnth_rules::roles::{may_act_on, may_grant, Role};
use hnth_rules::Violation;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Security;
use crate::store::accounts::{self as db_accounts, Account, CurrentUser};
use crate::store::{self, now, Db};

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

/// What the store keeps of a session token.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn check_password_strength(password: &str) -> anyhow::Result<()> {
    if password.chars().count() < 10 {
        anyhow::bail!("password too short: at least 10 characters (rule A2)");
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    Invalid,
    Locked {
        until: i64,
    },
    /// The database could not read the account or record the try (logged): nothing was
    /// checked, so that no guess goes uncounted (A2).
    Unavailable,
}

/// A database error of a login: logged with its context, answered as `Unavailable`.
fn unavailable(what: &str, username: &str, e: store::Error) -> LoginError {
    tracing::error!(username, "login: {what}: {e}");
    LoginError::Unavailable
}

static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("no such account"));

/// Check a username and password; on success open a session and return its token.
///
/// Every try at an existing account is counted (and committed) before the password is
/// checked: a try the database cannot count is refused (`Unavailable`), so a database that
/// refuses writes never allows unlimited guessing. The count is reset by a successful login,
/// in the transaction that stores the session; it locks the account once it reaches
/// `max_failed_logins` (A2).
pub async fn login(
    db: &Db,
    sec: &Security,
    username: &str,
    password: &str,
) -> Result<(String, Account), LoginError> {
    let username = username.trim();
    let creds = db_accounts::credentials(db, username)
        .await
        .map_err(|e| unavailable("reading the account", username, e))?;
    let Some(creds) = creds else {
        // Same work as for a real account, so timing does not tell which usernames exist.
        let _ = verify_password(password, &DUMMY_HASH);
        return Err(LoginError::Invalid);
    };
    let t = now();
    if let Some(until) = creds.locked_until {
        if until > t {
            return Err(LoginError::Locked { until });
        }
    }
    let failed = db_accounts::count_try(db, creds.id)
        .await
        .map_err(|e| unavailable("counting the try", username, e))?;
    let ok = verify_password(password, &creds.password_hash) && !creds.disabled;
    if !ok {
        if failed < sec.max_failed_logins {
            return Err(LoginError::Invalid);
        }
        let until = t + sec.lockout_minutes * 60;
        db_accounts::lock(db, creds.id, until)
            .await
            .map_err(|e| unavailable("locking the account", username, e))?;
        metrics::counter!(crate::telemetry::LOCKOUTS).increment(1);
        return Err(LoginError::Locked { until });
    }
    // The password is right: a database error now is no wrong password (A2's count was reset
    // by nothing), and is answered as one the user may retry.
    let account = db_accounts::active(db, creds.id)
        .await
        .map_err(|e| unavailable("reading the account", username, e))?
        .ok_or(LoginError::Invalid)?;
    let hours = if account.role == Role::SiteDevice {
        sec.device_session_days * 24
    } else {
        sec.session_hours
    };
    let token = random_token();
    open_session(db, creds.id, &token, t, t + hours * 3600)
        .await
        .map_err(|e| unavailable("opening the session", username, e))?;
    Ok((token, account))
}

/// A successful login: the count is reset and the session stored, both or neither.
async fn open_session(
    db: &Db,
    account: i64,
    token: &str,
    at: i64,
    expires: i64,
) -> Result<(), store::Error> {
    let mut tx = store::begin_write(db).await?;
    db_accounts::reset_tries(&mut tx, account).await?;
    db_accounts::insert_session(
        &mut tx,
        account,
        &token_hash(token),
        &random_token(),
        at,
        expires,
    )
    .await?;
    tx.commit().await
}

/// Close a session. An error is the caller's to log and answer: the session may still be open.
pub async fn logout(db: &Db, token: &str) -> Result<(), store::Error> {
    db_accounts::delete_session(db, &token_hash(token)).await
}

/// The session a token opens, if it exists, has not expired and its account may act
/// (`Ok(None)`: none; the caller answers "log in"). A database error is logged here and
/// returned: the caller answers that the server cannot serve now, not that the user is
/// logged out.
pub async fn session(db: &Db, token: &str) -> Result<Option<CurrentUser>, store::Error> {
    let logged = |what: &str, e: store::Error| {
        tracing::error!("session: {what}: {e}");
        e
    };
    let Some(s) = db_accounts::session(db, &token_hash(token))
        .await
        .map_err(|e| logged("reading the session", e))?
    else {
        return Ok(None);
    };
    if s.expires_at <= now() {
        // Expired either way; a row left behind opens nothing and is deleted next time.
        if let Err(e) = logout(db, token).await {
            tracing::error!("deleting an expired session: {e}");
        }
        return Ok(None);
    }
    let account = db_accounts::active(db, s.account_id)
        .await
        .map_err(|e| logged("reading its account", e))?;
    Ok(account.map(|account| CurrentUser {
        account,
        csrf: s.csrf,
    }))
}

/// Who makes a change: a logged-in account (its rank is checked, A1) or a command-line tool
/// run by the server's owner (e.g. `hnth user add`).
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    Account(&'a Account),
    Tool(&'a str),
}

impl By<'_> {
    fn id(&self) -> Option<i64> {
        match self {
            By::Account(a) => Some(a.id),
            By::Tool(_) => None,
        }
    }

    fn name(&self) -> &str {
        match self {
            By::Account(a) => &a.username,
            By::Tool(t) => t,
        }
    }
}

/// Why an account change was refused; nothing was written (but a violation's record).
#[derive(Debug)]
pub enum AccountError {
    /// A1: above the actor's own role; recorded as a violation (R4).
    Rank(Violation),
    /// Input that breaks a rule: each field with the dictionary key of its message.
    Invalid(BTreeMap<&'static str, &'static str>),
    NotFound,
    /// An account does not disable itself.
    SelfDisable,
    Store(store::Error),
}

impl From<store::Error> for AccountError {
    fn from(e: store::Error) -> Self {
        AccountError::Store(e)
    }
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountError::Rank(v) => write!(f, "{} (rule {})", v.en, v.rule.as_str()),
            AccountError::Invalid(e) if e.contains_key("password") => {
                f.write_str("password too short: at least 10 characters (rule A2)")
            }
            AccountError::Invalid(e) => write!(
                f,
                "invalid {} (rule A2)",
                e.keys().copied().collect::<Vec<_>>().join(", ")
            ),
            AccountError::NotFound => f.write_str("no such account"),
            AccountError::SelfDisable => f.write_str("an account cannot disable itself"),
            AccountError::Store(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for AccountError {}

/// A refused escalation (A1), recorded as a violation (R4) before it is answered.
async fn refuse(db: &Db, by: &Account, what: &str, v: Violation) -> AccountError {
    let who = &by.username;
    tracing::warn!(user = %who, rule = %v.rule, "refused: {}", v.en);
    if let Err(e) = store::audit::record_violation(
        db,
        v.rule.as_str(),
        Some(by.id),
        by.site_id,
        &format!("{who} ({what}): {}", v.en),
        &format!("{who} ({what}): {}", v.vi),
    )
    .await
    {
        return AccountError::Store(e);
    }
    AccountError::Rank(v)
}

/// What a new account is asked to be.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password: &'a str,
    /// A role's code.
    pub role: &'a str,
    pub site_id: Option<i64>,
    pub unit_id: Option<i64>,
}

/// Create an account. An account creating one may not grant a role above its own (A1) and
/// must give what the role needs (site roles a site, organizers a unit); the command-line
/// tools give what their options allow. The account and its audit entry commit together.
pub async fn create(db: &Db, by: By<'_>, new: &NewAccount<'_>) -> Result<i64, AccountError> {
    let role = Role::parse(new.role);
    if let (By::Account(actor), Some(r)) = (by, role) {
        if let Err(v) = may_grant(actor.role, r) {
            return Err(refuse(db, actor, "create_account", v).await);
        }
    }
    let username = new.username.trim();
    let display_name = new.display_name.trim();
    let mut errors = BTreeMap::new();
    if let By::Account(_) = by {
        if username.len() < 3
            || username.len() > 40
            || !username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            errors.insert("username", "acc_err_username");
        }
        if display_name.is_empty() || new.display_name.chars().count() > 120 {
            errors.insert("display_name", "reg_err_name");
        }
        match role {
            None => {
                errors.insert("role", "acc_err_role");
            }
            // The scope a role needs (A1): site roles a site, organizers a unit.
            Some(Role::SiteTechnician | Role::Chair | Role::SiteDevice)
                if new.site_id.is_none() =>
            {
                errors.insert("site", "acc_err_site");
            }
            Some(Role::Organizer) if new.unit_id.is_none() => {
                errors.insert("unit", "acc_err_unit");
            }
            _ => {}
        }
    } else if role.is_none() {
        errors.insert("role", "acc_err_role");
    }
    if check_password_strength(new.password).is_err() {
        errors.insert("password", "acc_err_password");
    }
    if db_accounts::id_by_username(db, username).await?.is_some() {
        errors.insert("username", "acc_err_taken");
    }
    let Some(role) = role.filter(|_| errors.is_empty()) else {
        return Err(AccountError::Invalid(errors));
    };
    // Only the scope the role has is kept.
    let (site_id, unit_id) = match role {
        Role::SiteTechnician | Role::Chair | Role::SiteDevice => (new.site_id, None),
        Role::Organizer | Role::Leadership | Role::ProviderTechnician => (
            new.site_id.filter(|_| role == Role::ProviderTechnician),
            new.unit_id,
        ),
        _ => (None, new.unit_id),
    };
    let hash = hash_password(new.password);
    let mut tx = store::begin_write(db).await?;
    let id = db_accounts::insert(
        &mut tx,
        &db_accounts::NewAccount {
            username,
            display_name,
            password_hash: &hash,
            role,
            site_id,
            unit_id,
        },
    )
    .await?;
    let after = match by {
        By::Account(_) => {
            json!({"username": username, "role": role.as_str(), "site_id": site_id, "unit_id": unit_id})
        }
        By::Tool(_) => json!({"username": username, "role": role.as_str(), "site_id": site_id}),
    };
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: by.id(),
            actor: by.name(),
            action: "create_account",
            entity: "account",
            entity_id: id.to_string(),
            before: None,
            after: Some(after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// A change to an existing account.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Unlock,
    Disable,
    Enable,
    Password(&'a str),
}

impl Change<'_> {
    /// `unlock`, `disable`, `enable` or `password`: the action's code.
    pub fn code(&self) -> &'static str {
        match self {
            Change::Unlock => "unlock",
            Change::Disable => "disable",
            Change::Enable => "enable",
            Change::Password(_) => "password",
        }
    }
}

/// Unlock, disable, enable an account or give it a new password (which, as disabling it,
/// closes its sessions). Not on an account above the actor's role (A1; an account of an
/// unknown role counts as an administrator's); the change and its audit entry commit together.
pub async fn change(
    db: &Db,
    by: &Account,
    id: i64,
    change: Change<'_>,
) -> Result<(), AccountError> {
    let Some((target, target_role)) = db_accounts::name_and_role(db, id).await? else {
        return Err(AccountError::NotFound);
    };
    let what = format!("account_{}", change.code());
    let target_role = Role::parse(&target_role).unwrap_or(Role::Admin);
    if let Err(v) = may_act_on(by.role, target_role) {
        return Err(refuse(db, by, &what, v).await);
    }
    if id == by.id && matches!(change, Change::Disable) {
        return Err(AccountError::SelfDisable);
    }
    if let Change::Password(p) = change {
        if check_password_strength(p).is_err() {
            return Err(AccountError::Invalid(BTreeMap::from([(
                "password",
                "acc_err_password",
            )])));
        }
    }
    let mut tx = store::begin_write(db).await?;
    match change {
        Change::Unlock => db_accounts::reset_tries(&mut tx, id).await?,
        Change::Disable => {
            db_accounts::set_disabled(&mut tx, id, true).await?;
            db_accounts::delete_sessions_of(&mut tx, id).await?;
        }
        Change::Enable => db_accounts::set_disabled(&mut tx, id, false).await?,
        Change::Password(p) => {
            db_accounts::set_password_hash(&mut tx, id, &hash_password(p)).await?;
            db_accounts::delete_sessions_of(&mut tx, id).await?;
        }
    }
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: Some(by.id),
            actor: &by.username,
            action: match change {
                Change::Unlock => "account_unlock",
                Change::Disable => "account_disable",
                Change::Enable => "account_enable",
                Change::Password(_) => "account_password",
            },
            entity: "account",
            entity_id: id.to_string(),
            before: None,
            after: Some(json!({"username": target})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A new password from a command-line tool (`hnth user password`): the account's sessions
/// are closed; the change and its audit entry commit together.
pub async fn reset_password(
    db: &Db,
    tool: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<()> {
    check_password_strength(password)?;
    let Some(id) = db_accounts::id_by_username(db, username).await? else {
        anyhow::bail!("no account named {username}");
    };
    let mut tx = store::begin_write(db).await?;
    db_accounts::set_password_hash(&mut tx, id, &hash_password(password)).await?;
    db_accounts::delete_sessions_of(&mut tx, id).await?;
    store::audit::record(
        &mut *tx,
        store::audit::AuditEntry {
            actor_id: None,
            actor: tool,
            action: "reset_password",
            entity: "account",
            entity_id: id.to_string(),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::break_column;

    const PW: &str = "Dung-mat-khau-2024";

    async fn db_with_account() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open(&dir.path().join("hnth.db"))
            .await
            .unwrap();
        let new = NewAccount {
            username: "op",
            display_name: "Operator",
            password: PW,
            role: "operator",
            site_id: None,
            unit_id: None,
        };
        create(&db, By::Tool("test"), &new).await.unwrap();
        (dir, db)
    }

    fn refused_with_an_error(r: &Result<(String, Account), LoginError>) -> bool {
        matches!(r, Err(LoginError::Unavailable))
    }

    async fn count(db: &Db, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
    }

    /// A2: a failed try that cannot be counted must not be tried at all, or a database that
    /// refuses writes would allow unlimited guessing: every try is refused with an error, the
    /// right password included, and none opens a session.
    #[tokio::test]
    async fn login_is_refused_when_failed_tries_cannot_be_counted() {
        let (_dir, db) = db_with_account().await;
        sqlx::query(
            "CREATE TRIGGER refuse_count BEFORE UPDATE OF failed_logins ON accounts \
             WHEN NEW.failed_logins > OLD.failed_logins \
             BEGIN SELECT RAISE(ABORT, 'disk is read-only'); END",
        )
        .execute(&db)
        .await
        .unwrap();
        let sec = Security::default();
        for i in 0..sec.max_failed_logins + 3 {
            let r = login(&db, &sec, "op", "wrong-password-guess").await;
            assert!(refused_with_an_error(&r), "guess {i}: {r:?}");
        }
        let r = login(&db, &sec, "op", PW).await;
        assert!(
            refused_with_an_error(&r),
            "right password after uncounted guesses: {r:?}"
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM sessions").await, 0);
    }

    /// A database that refuses every write: the right password is answered with an error, not
    /// "wrong password".
    #[tokio::test]
    async fn login_on_a_read_only_database_is_an_error() {
        let (_dir, db) = db_with_account().await;
        for sql in [
            "CREATE TRIGGER ro_accounts BEFORE UPDATE ON accounts BEGIN SELECT RAISE(ABORT, 'read-only'); END",
            "CREATE TRIGGER ro_sessions BEFORE INSERT ON sessions BEGIN SELECT RAISE(ABORT, 'read-only'); END",
        ] {
            sqlx::query(sql).execute(&db).await.unwrap();
        }
        let r = login(&db, &Security::default(), "op", PW).await;
        assert!(refused_with_an_error(&r), "{r:?}");
    }

    /// With a working database: wrong tries are counted and lock the account (A2), the right
    /// password logs in.
    #[tokio::test]
    async fn failed_tries_lock_and_the_right_password_logs_in() {
        let (_dir, db) = db_with_account().await;
        let sec = Security::default();
        assert!(login(&db, &sec, "op", PW).await.is_ok());
        for _ in 1..sec.max_failed_logins {
            assert_eq!(
                login(&db, &sec, "op", "wrong").await.unwrap_err(),
                LoginError::Invalid
            );
        }
        assert!(matches!(
            login(&db, &sec, "op", "wrong").await,
            Err(LoginError::Locked { .. })
        ));
        assert!(matches!(
            login(&db, &sec, "op", PW).await,
            Err(LoginError::Locked { .. })
        ));
    }

    /// A session that cannot be deleted is an error for the caller of logout.
    #[tokio::test]
    async fn logout_reports_a_failed_delete() {
        let (_dir, db) = db_with_account().await;
        let (token, _) = login(&db, &Security::default(), "op", PW).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER ro_sessions BEFORE DELETE ON sessions BEGIN SELECT RAISE(ABORT, 'read-only'); END",
        )
        .execute(&db)
        .await
        .unwrap();
        assert!(logout(&db, &token).await.is_err());
        assert!(session(&db, &token).await.unwrap().is_some());
    }

    /// A database that cannot read the account once the password is checked: the login is
    /// answered with an error (the page says so), not taken for a wrong password, and opens
    /// no session.
    #[tokio::test]
    async fn a_database_error_after_the_password_is_no_wrong_password() {
        let (_dir, db) = db_with_account().await;
        break_column(&db, "accounts", "display_name").await;
        let r = login(&db, &Security::default(), "op", PW).await;
        assert!(refused_with_an_error(&r), "{r:?}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM sessions").await, 0);
    }

    /// A session or its account that cannot be read is an error, not "no session": the
    /// pages answer 503 instead of sending the user to log in again.
    #[tokio::test]
    async fn a_session_that_cannot_be_read_is_an_error() {
        for (table, column) in [("sessions", "csrf"), ("accounts", "display_name")] {
            let (_dir, db) = db_with_account().await;
            let (token, _) = login(&db, &Security::default(), "op", PW).await.unwrap();
            assert!(session(&db, &token).await.unwrap().is_some());
            break_column(&db, table, column).await;
            let r = session(&db, &token).await;
            assert!(r.is_err(), "{table}.{column} unreadable: {r:?}");
        }
    }

    async fn operator(db: &Db) -> Account {
        let id = db_accounts::id_by_username(db, "op")
            .await
            .unwrap()
            .unwrap();
        db_accounts::active(db, id).await.unwrap().unwrap()
    }

    /// A3: an account change lands with its audit entry, or neither does.
    #[tokio::test]
    async fn an_account_change_and_its_audit_entry_commit_together() {
        let (_dir, db) = db_with_account().await;
        let op = operator(&db).await;
        let new = NewAccount {
            username: "to-chuc",
            display_name: "Tổ chức",
            password: PW,
            role: "leadership",
            site_id: None,
            unit_id: None,
        };
        let id = create(&db, By::Account(&op), &new).await.unwrap();
        let audited = format!(
            "SELECT COUNT(*) FROM audit WHERE action = 'create_account' AND entity_id = '{id}' AND actor = 'op'"
        );
        assert_eq!(count(&db, &audited).await, 1);
        change(&db, &op, id, Change::Disable).await.unwrap();
        assert_eq!(
            count(
                &db,
                &format!("SELECT disabled FROM accounts WHERE id = {id}")
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM audit WHERE action = 'account_disable'"
            )
            .await,
            1
        );

        // An audit trail that refuses writes: the change is not made either.
        sqlx::query(
            "CREATE TRIGGER ro_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit full'); END",
        )
        .execute(&db)
        .await
        .unwrap();
        let r = change(&db, &op, id, Change::Enable).await;
        assert!(matches!(r, Err(AccountError::Store(_))), "{r:?}");
        assert_eq!(
            count(
                &db,
                &format!("SELECT disabled FROM accounts WHERE id = {id}")
            )
            .await,
            1,
            "enabled without its audit entry"
        );
        let other = NewAccount {
            username: "khong-ghi",
            ..new
        };
        let r = create(&db, By::Account(&op), &other).await;
        assert!(matches!(r, Err(AccountError::Store(_))), "{r:?}");
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM accounts WHERE username = 'khong-ghi'"
            )
            .await,
            0,
            "created without its audit entry"
        );
    }

    /// A1: an operator neither grants the administrator role nor acts on an administrator;
    /// each refusal is recorded (R4) and nothing else is written.
    #[tokio::test]
    async fn rank_refusals_are_recorded_and_change_nothing() {
        let (_dir, db) = db_with_account().await;
        let op = operator(&db).await;
        let admin = NewAccount {
            username: "quantri-2",
            display_name: "Quản trị",
            password: PW,
            role: "admin",
            site_id: None,
            unit_id: None,
        };
        let r = create(&db, By::Account(&op), &admin).await;
        assert!(matches!(r, Err(AccountError::Rank(_))), "{r:?}");
        let id = create(&db, By::Tool("test"), &admin).await.unwrap();
        let r = change(&db, &op, id, Change::Disable).await;
        assert!(matches!(r, Err(AccountError::Rank(_))), "{r:?}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM violations").await, 2);
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM accounts WHERE disabled = 1").await,
            0
        );
    }
}
