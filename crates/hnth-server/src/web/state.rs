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
