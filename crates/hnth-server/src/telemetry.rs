//! What the province's IT staff watch on `/metrics` (docs/operation.md, the Grafana dashboard
//! `docs/grafana-hnth.json`): recorded with the `metrics` crate where it happens, rendered by
//! its Prometheus exporter. The media delay histograms stay in `live::delay` (see there why).
//!
//! Counters count from the server's start; `hnth_server_start_time_seconds` tells a restart
//! (`changes(hnth_server_start_time_seconds[1d])` counts them).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static STARTED: OnceLock<f64> = OnceLock::new();

/// Media: what the workers received and sent, and what the kernel would not take.
pub const PACKETS_IN: &str = "hnth_media_packets_received_total";
pub const BYTES_IN: &str = "hnth_media_bytes_received_total";
pub const PACKETS_OUT: &str = "hnth_media_packets_sent_total";
pub const BYTES_OUT: &str = "hnth_media_bytes_sent_total";
pub const SEND_DROPPED: &str = "hnth_media_send_dropped_total";
/// Logins by result (`ok`, `invalid`, `locked`, `rate_limited`, `unavailable`).
pub const LOGINS: &str = "hnth_logins_total";
/// Accounts locked after repeated wrong passwords (A2).
pub const LOCKOUTS: &str = "hnth_account_lockouts_total";
/// Signaling connections refused by the flood limits, by limit (`address`, `account`).
pub const RATE_LIMITED: &str = "hnth_rate_limited_total";
/// Sends of notices by result (`sent`, `failed`).
pub const NOTICE_SENDS: &str = "hnth_notice_sends_total";
/// A site's signaling connection opened (a site that keeps reconnecting shows here).
pub const SITE_CONNECTIONS: &str = "hnth_site_connections_total";

/// A media worker's traffic counters, looked up once (the worker's loop counts every batch; the
/// `counter!` macro would look the name up in the registry each time).
pub struct Traffic {
    packets_in: metrics::Counter,
    bytes_in: metrics::Counter,
    packets_out: metrics::Counter,
    bytes_out: metrics::Counter,
    send_dropped: metrics::Counter,
}

impl Traffic {
    /// After [`install`] (before it, the counters go nowhere).
    pub fn new() -> Traffic {
        Traffic {
            packets_in: metrics::counter!(PACKETS_IN),
            bytes_in: metrics::counter!(BYTES_IN),
            packets_out: metrics::counter!(PACKETS_OUT),
            bytes_out: metrics::counter!(BYTES_OUT),
            send_dropped: metrics::counter!(SEND_DROPPED),
        }
    }

    pub fn received(&self, datagrams: usize, bytes: usize) {
        self.packets_in.increment(datagrams as u64);
        self.bytes_in.increment(bytes as u64);
    }

    pub fn sent(&self, datagrams: usize, bytes: usize, dropped: usize) {
        self.packets_out
            .increment(datagrams.saturating_sub(dropped) as u64);
        self.bytes_out.increment(bytes as u64);
        if dropped > 0 {
            self.send_dropped.increment(dropped as u64);
        }
    }
}

/// Installs the recorder (once, at the server's start, before the media workers).
pub fn install() {
    if HANDLE.get().is_some() {
        return;
    }
    // A site's link gauges are set every second while it is connected; 30 s without a value
    // and the site is gone from the page rather than shown with its last figures.
    let recorder = PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(30)))
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a metrics recorder was installed already; /metrics keeps that one");
        return;
    }
    let _ = HANDLE.set(handle);
    // Every counter is on the page from the start, at 0: a dashboard sees "none yet", not
    // "unknown" (and `increase()` sees the first one).
    for c in [
        PACKETS_IN,
        BYTES_IN,
        PACKETS_OUT,
        BYTES_OUT,
        SEND_DROPPED,
        LOCKOUTS,
    ] {
        metrics::counter!(c).increment(0);
    }
    for r in ["ok", "invalid", "locked", "rate_limited", "unavailable"] {
        metrics::counter!(LOGINS, "result" => r).increment(0);
    }
    for l in ["address", "account"] {
        metrics::counter!(RATE_LIMITED, "limit" => l).increment(0);
    }
    for r in ["sent", "failed"] {
        metrics::counter!(NOTICE_SENDS, "result" => r).increment(0);
    }
    let _ = STARTED.set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    describe();
}

fn describe() {
    describe_counter!(
        PACKETS_IN,
        "Datagrams the media workers received (every site, every kind: RTP, RTCP, STUN, DTLS)."
    );
    describe_counter!(
        BYTES_IN,
        Unit::Bytes,
        "Bytes of the datagrams the media workers received."
    );
    describe_counter!(PACKETS_OUT, "Datagrams the media workers sent.");
    describe_counter!(
        BYTES_OUT,
        Unit::Bytes,
        "Bytes of the datagrams the media workers sent."
    );
    describe_counter!(SEND_DROPPED, "Datagrams the kernel would not take (send buffer full); the receivers ask again over NACK.");
    describe_counter!(
        LOGINS,
        "Login tries by result: ok, invalid, locked, rate_limited, unavailable."
    );
    describe_counter!(
        LOCKOUTS,
        "Accounts locked after repeated wrong passwords (Art. 4, A2)."
    );
    describe_counter!(
        RATE_LIMITED,
        "Signaling connections refused by the flood limits, by limit (address, account)."
    );
    describe_counter!(
        NOTICE_SENDS,
        "E-mail notices handed to the SMTP server, by result (sent, failed: tried again later)."
    );
    describe_counter!(SITE_CONNECTIONS, "Signaling connections of site apps opened, per site: a site that keeps reconnecting has a bad line.");
    describe_counter!(
        "hnth_floor_dropped_audio_packets_total",
        "Audio packets of a site dropped at the server because it did not hold the floor (C4)."
    );
    describe_gauge!(
        "hnth_server_start_time_seconds",
        Unit::Seconds,
        "When this server process started (Unix time); a change is a restart."
    );
    describe_gauge!(
        "hnth_meetings_open",
        "Meetings open now (live, with or without sites connected)."
    );
    describe_gauge!(
        "hnth_sites_connected",
        "Sites whose media is connected to a meeting now."
    );
    describe_gauge!(
        "hnth_consoles_watching",
        "Consoles connected to a meeting's media (in the control center's seat or watching)."
    );
    describe_gauge!(
        "hnth_notices",
        "E-mail notices by state: queued, retrying (failed, tried again), sent, expired."
    );
    describe_gauge!("hnth_site_loss_ratio", "Fraction of packets lost on a site's link, by direction (in: site to server; out: server to site).");
    describe_gauge!(
        "hnth_site_rtt_seconds",
        Unit::Seconds,
        "Round-trip time between the server and a site."
    );
    describe_gauge!(
        "hnth_site_jitter_seconds",
        Unit::Seconds,
        "Jitter of what a site sends to the server."
    );
}

/// What the hub knows at the scrape.
pub struct Live {
    pub meetings_open: usize,
    pub sites_connected: usize,
    pub consoles: usize,
    /// Per site code, the audio packets dropped at the floor gate so far.
    pub floor_dropped: Vec<(String, u64)>,
}

/// The Prometheus text: the recorded figures with the scrape's own (the hub's counts and the
/// notices' states), then `extra` (the delay histograms).
pub fn render(live: &Live, notices: Option<&crate::store::notices::Tally>) -> String {
    let Some(h) = HANDLE.get() else {
        return String::new();
    };
    if let Some(t) = STARTED.get() {
        gauge!("hnth_server_start_time_seconds").set(*t);
    }
    gauge!("hnth_meetings_open").set(live.meetings_open as f64);
    gauge!("hnth_sites_connected").set(live.sites_connected as f64);
    gauge!("hnth_consoles_watching").set(live.consoles as f64);
    for (site, n) in &live.floor_dropped {
        metrics::counter!("hnth_floor_dropped_audio_packets_total", "site" => site.clone())
            .absolute(*n);
    }
    if let Some(t) = notices {
        for (state, n) in [
            ("queued", t.queued),
            ("retrying", t.retrying),
            ("sent", t.sent),
            ("expired", t.expired),
        ] {
            gauge!("hnth_notices", "state" => state).set(n as f64);
        }
    }
    h.render()
}

/// A site's link figures, every second while it is connected.
pub fn site_link(
    site: &str,
    loss_in: Option<f32>,
    loss_out: Option<f32>,
    rtt_ms: Option<f64>,
    jitter_ms: Option<f64>,
) {
    if let Some(l) = loss_in {
        gauge!("hnth_site_loss_ratio", "site" => site.to_string(), "direction" => "in")
            .set(f64::from(l));
    }
    if let Some(l) = loss_out {
        gauge!("hnth_site_loss_ratio", "site" => site.to_string(), "direction" => "out")
            .set(f64::from(l));
    }
    if let Some(ms) = rtt_ms {
        gauge!("hnth_site_rtt_seconds", "site" => site.to_string()).set(ms / 1000.0);
    }
    if let Some(ms) = jitter_ms {
        gauge!("hnth_site_jitter_seconds", "site" => site.to_string()).set(ms / 1000.0);
    }
}
