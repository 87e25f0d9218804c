//! What every handler holds: the database, the signaling hub, the settings, the outbox and the
//! media delays (`/metrics`), built once at start-up (`main.rs`).

use std::sync::Arc;

use crate::config::Settings;
use crate::live::signaling::Hub;
use crate::store;

#[derive(Clone)]
pub struct AppState {
    pub db: store::Db,
    pub hub: Arc<Hub>,
    pub settings: Arc<Settings>,
    pub secure_cookies: bool,
    /// Wakes the e-mail sender after notices were queued.
    pub outbox: crate::services::mail::Outbox,
    /// The delay the media workers add (`/metrics`).
    pub media_delay: Arc<crate::live::delay::MediaDelays>,
    /// The login's and the signaling's flood limits.
    pub limits: Arc<super::limits::Limits>,
}

#[cfg(test)]
impl AppState {
    /// A state on `db` for the handlers' tests: a hub whose media commands go nowhere, the
    /// default settings and limits, plain HTTP.
    pub async fn for_tests(db: store::Db) -> AppState {
        let (media, _) = tokio::sync::mpsc::unbounded_channel();
        AppState {
            db: db.clone(),
            hub: Hub::new(
                db,
                crate::live::driver::MediaRouter::new(vec![media]),
                Default::default(),
                Default::default(),
                Default::default(),
            )
            .await
            .expect("a hub on a fresh database"),
            settings: Arc::default(),
            limits: Arc::new(super::limits::Limits::new(&Default::default())),
            secure_cookies: false,
            outbox: Arc::default(),
            media_delay: Arc::default(),
        }
    }
}
