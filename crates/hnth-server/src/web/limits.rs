//! Flood limits of the login and of the signaling connection, per address and per account
//! (`security.*_per_minute_*`): token buckets of the `governor` crate (GCRA), kept in memory.
//! A refused try costs the server no password hash and no database read.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Security;

/// One bucket per key; `None` when the setting is 0 (no limit).
struct Bucket<K: std::hash::Hash + Eq + Clone>(Option<DefaultKeyedRateLimiter<K>>);

impl<K: std::hash::Hash + Eq + Clone> Bucket<K> {
    /// `per_minute` tries a minute, all of them allowed at once (the burst).
    fn new(per_minute: u32) -> Self {
        Bucket(NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))))
    }

    /// How long until `key` may try again, if it may not now.
    fn check(&self, key: &K) -> Option<Duration> {
        let limiter = self.0.as_ref()?;
        limiter
            .check_key(key)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn forget_idle(&self) {
        if let Some(l) = &self.0 {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Who is limited, for the log and the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Address,
    Account,
}

impl Limited {
    pub fn noun(self) -> &'static str {
        match self {
            Limited::Address => "address",
            Limited::Account => "account",
        }
    }
}

/// A refused try: by which limit, and after how many seconds (at least 1) to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany {
    pub by: Limited,
    pub retry_after_s: u64,
}

pub struct Limits {
    login_address: Bucket<IpAddr>,
    login_account: Bucket<String>,
    ws_address: Bucket<IpAddr>,
    ws_account: Bucket<i64>,
}

impl Limits {
    pub fn new(sec: &Security) -> Self {
        Limits {
            login_address: Bucket::new(sec.login_per_minute_per_address),
            login_account: Bucket::new(sec.login_per_minute_per_account),
            ws_address: Bucket::new(sec.ws_per_minute_per_address),
            ws_account: Bucket::new(sec.ws_per_minute_per_account),
        }
    }

    /// A login try from `addr` at `username` (trimmed, case as typed: usernames are compared
    /// as stored). The address is asked first: a flood at many names is stopped there.
    pub fn login(&self, addr: Option<IpAddr>, username: &str) -> Result<(), TooMany> {
        Self::both(addr.and_then(|a| self.login_address.check(&a)), || {
            self.login_account.check(&username.trim().to_string())
        })
    }

    /// A signaling connection from `addr` by the account `account`.
    pub fn ws(&self, addr: Option<IpAddr>, account: i64) -> Result<(), TooMany> {
        Self::both(addr.and_then(|a| self.ws_address.check(&a)), || {
            self.ws_account.check(&account)
        })
    }

    fn both(
        address: Option<Duration>,
        account: impl FnOnce() -> Option<Duration>,
    ) -> Result<(), TooMany> {
        let refused = |by, wait: Duration| TooMany {
            by,
            retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
        };
        if let Some(wait) = address {
            return Err(refused(Limited::Address, wait));
        }
        match account() {
            Some(wait) => Err(refused(Limited::Account, wait)),
            None => Ok(()),
        }
    }

    /// Drops the buckets that are full again (called every minute), so memory stays bounded
    /// however many addresses and names were tried.
    pub fn forget_idle(&self) {
        self.login_address.forget_idle();
        self.login_account.forget_idle();
        self.ws_address.forget_idle();
        self.ws_account.forget_idle();
    }
}

/// The client's address, as the listener saw it (absent in unit tests that call the router
/// directly: then only the per-account limit applies).
pub struct ClientAddr(pub Option<IpAddr>);

pub fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_address(parts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(login_addr: u32, login_account: u32) -> Security {
        Security {
            login_per_minute_per_address: login_addr,
            login_per_minute_per_account: login_account,
            ws_per_minute_per_address: 2,
            ws_per_minute_per_account: 1,
            ..Security::default()
        }
    }

    #[test]
    fn the_burst_passes_and_the_next_try_waits() {
        let l = Limits::new(&sec(3, 100));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..3 {
            assert_eq!(l.login(Some(a), &format!("u{i}")), Ok(()), "try {i}");
        }
        let e = l.login(Some(a), "u9").unwrap_err();
        assert_eq!(e.by, Limited::Address);
        // 3 a minute: one comes back every 20 s.
        assert!((1..=20).contains(&e.retry_after_s), "{e:?}");
        // Another address is not held back by this one.
        assert_eq!(l.login(Some("10.0.0.2".parse().unwrap()), "u9"), Ok(()));
    }

    #[test]
    fn one_name_is_limited_from_every_address() {
        let l = Limits::new(&sec(100, 2));
        for i in 1..=2 {
            let a: IpAddr = format!("10.0.1.{i}").parse().unwrap();
            assert_eq!(l.login(Some(a), " op "), Ok(()));
        }
        let e = l
            .login(Some("10.0.1.9".parse().unwrap()), "op")
            .unwrap_err();
        assert_eq!(e.by, Limited::Account);
        assert_eq!(l.login(Some("10.0.1.9".parse().unwrap()), "op2"), Ok(()));
    }

    #[test]
    fn zero_means_no_limit_and_no_address_means_account_only() {
        let l = Limits::new(&sec(0, 0));
        for _ in 0..1000 {
            assert_eq!(l.login(Some("10.0.0.1".parse().unwrap()), "op"), Ok(()));
        }
        let l = Limits::new(&sec(1, 1));
        assert_eq!(l.ws(None, 7), Ok(()));
        assert_eq!(l.ws(None, 7).unwrap_err().by, Limited::Account);
        assert_eq!(l.ws(None, 8), Ok(()));
        l.forget_idle();
    }
}
