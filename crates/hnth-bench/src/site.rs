//! One synthetic site: login, WebSocket signaling, a UDP socket and a [`SyntheticSite`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hnth_media::testing::{RemoteTrack, SentCounters, SiteConfig, SyntheticSite};
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::soak::Shared;
use crate::{http, next_json, Layout, Opts};

pub struct SiteSpec {
    /// The site's place in the run (from 0).
    pub index: usize,
    pub username: String,
}

/// A site's orders besides stopping: drop (close the WebSocket and the peer, then reconnect
/// as the site app does), and the soak's shared counters.
pub struct SiteCtl {
    pub drops: mpsc::UnboundedReceiver<()>,
    pub shared: Arc<Shared>,
}

/// A rejoined site receives media again once it got this many audio and this many video
/// frames on its new peer.
pub const REJOIN_FRAMES: u64 = 10;

/// One drop of a site and its rejoin.
#[derive(Debug, Clone)]
pub struct Rejoin {
    pub dropped_at: Instant,
    /// It logged in again (a new session); otherwise it reconnected with its session's token,
    /// as a page reloaded with its cookie.
    pub relogin: bool,
    /// Its new WebSocket got `welcome`.
    pub reconnected_at: Option<Instant>,
    /// The server's `join` came.
    pub joined_at: Option<Instant>,
    /// Its new peer had received [`REJOIN_FRAMES`] audio and video frames.
    pub media_at: Option<Instant>,
    /// The run ended before the rejoin's deadline (not a failure of the server).
    pub cut_short: bool,
    /// Not a drop: the server closed the site's WebSocket (the reason), and the site
    /// reconnected as the site app does (`live.js`: after 0.5 s).
    pub closed_by_server: Option<String>,
}

/// What one site saw, for the report (both targets: `site::run` and `janus::run`).
#[derive(Default)]
pub struct SiteOutcome {
    pub username: String,
    pub site_id: i64,
    pub joined_at: Option<Instant>,
    pub connected_at: Option<Instant>,
    pub remote: Vec<RemoteTrack>,
    pub sent: SentCounters,
    pub udp_rx_packets: u64,
    pub udp_rx_bytes: u64,
    pub udp_tx_packets: u64,
    pub udp_tx_errors: u64,
    pub offers_answered: u64,
    /// The server paused this site's video at the end (nobody received it).
    pub video_paused: bool,
    /// stream id -> site name, from the last `participants`.
    pub participants: BTreeMap<String, String>,
    pub errors: Vec<String>,
    /// Site ids this site should receive from; None: every other site.
    pub expected_senders: Option<Vec<u64>>,
    /// The microphone was open at the end (`--muted`: only the main picture's site).
    pub talking: bool,
    /// The height of each stream's cell in the last `frame` the server sent (C1): what the
    /// site's screen shows.
    pub frame: BTreeMap<String, u32>,
    /// Soak: each drop and its rejoin, and each reconnection after the server closed the
    /// WebSocket.
    pub rejoins: Vec<Rejoin>,
    /// The largest offer the server sent (SDP bytes), and the most m-lines one peer had.
    pub largest_offer: usize,
    pub most_mlines: usize,
}

/// After the server closed its WebSocket, the site app reconnects this much later (`live.js`).
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// How a session (one WebSocket and its peer) ended.
enum SessionEnd {
    Stopped,
    Dropped,
    /// The WebSocket closed or failed without being asked to (the reason).
    Closed(String),
}

pub async fn run(
    spec: SiteSpec,
    opts: Arc<Opts>,
    host: String,
    epoch: Instant,
    ready: mpsc::Sender<(usize, i64)>,
    mut stop: watch::Receiver<bool>,
    mut ctl: SiteCtl,
) -> anyhow::Result<SiteOutcome> {
    let login = http::login(&host, &spec.username, &opts.password).await?;
    let site_id = login.site_id.context("not a site device account")?;
    let mut token = login.token;
    let mut out = SiteOutcome {
        username: spec.username.clone(),
        site_id,
        talking: !opts.muted,
        ..Default::default()
    };
    let ctx = Session {
        spec: &spec,
        opts: &opts,
        host: &host,
        epoch,
        site_id,
    };
    // The first session: an error ends the site (the run reports it).
    let mut end = ctx
        .run(&token, Some(&ready), &mut out, &mut stop, &mut ctl, None)
        .await?;
    drop(ready);
    let offline = Duration::from_secs_f64(opts.offline_secs.max(0.0));
    let deadline = Duration::from_secs_f64(opts.rejoin_deadline.max(1.0));
    let soaking = opts.soak_minutes.is_some();
    loop {
        let (away, relogin, closed_by_server) = match end {
            SessionEnd::Stopped => break,
            // Outside a soak a closed WebSocket ends the site (the report counts it).
            SessionEnd::Closed(_) if !soaking => break,
            // Every other drop the device logs in again (as after a restart); otherwise it
            // reconnects with its session, as a page reloaded with its cookie.
            SessionEnd::Dropped => {
                let relogin = ctl.shared.drops.fetch_add(1, Ordering::SeqCst) % 2 == 1;
                (offline, relogin, None)
            }
            SessionEnd::Closed(reason) => (RECONNECT_AFTER, false, Some(reason)),
        };
        let mut rejoin = Rejoin {
            dropped_at: Instant::now(),
            relogin,
            reconnected_at: None,
            joined_at: None,
            media_at: None,
            cut_short: false,
            closed_by_server,
        };
        tokio::select! {
            _ = tokio::time::sleep(away) => {}
            _ = stop.changed() => {
                rejoin.cut_short = true;
                ctl.shared.offline.fetch_sub(1, Ordering::SeqCst);
                out.rejoins.push(rejoin);
                break;
            }
        }
        if relogin {
            match http::login(&host, &spec.username, &opts.password).await {
                Ok(l) => token = l.token,
                Err(e) => out.errors.push(format!("login again: {e:#}")),
            }
        }
        let result = ctx
            .run(
                &token,
                None,
                &mut out,
                &mut stop,
                &mut ctl,
                Some((rejoin, deadline)),
            )
            .await;
        end = match result {
            Ok(end) => end,
            Err(e) => {
                // The session could not start: `Session::run` recorded the rejoin as failed.
                out.errors.push(format!("rejoin: {e:#}"));
                SessionEnd::Stopped
            }
        };
    }
    Ok(out)
}

/// The fixed facts of a site's sessions.
struct Session<'a> {
    spec: &'a SiteSpec,
    opts: &'a Opts,
    host: &'a str,
    epoch: Instant,
    site_id: i64,
}

impl Session<'_> {
    /// One WebSocket and its peer, from connecting until the run stops or the site is dropped.
    /// `rejoin`: this session follows a drop; it is recorded in `out.rejoins` when media came
    /// back, when its deadline passed, or when the session ended first.
    async fn run(
        &self,
        token: &str,
        ready: Option<&mpsc::Sender<(usize, i64)>>,
        out: &mut SiteOutcome,
        stop: &mut watch::Receiver<bool>,
        ctl: &mut SiteCtl,
        mut rejoin: Option<(Rejoin, Duration)>,
    ) -> anyhow::Result<SessionEnd> {
        let (spec, opts, epoch, site_id) = (self.spec, self.opts, self.epoch, self.site_id);
        let host = self.host;
        let connected = async {
            let (ws, _) = http::connect_ws(format!("ws://{host}/ws?token={token}"))
                .await
                .with_context(|| format!("{} websocket", spec.username))?;
            let (ws_tx, mut ws_rx) = ws.split();
            loop {
                let msg = next_json(&mut ws_rx).await?;
                if msg["type"] == "welcome" {
                    break;
                }
            }
            let socket = UdpSocket::bind((opts.bind_ip, 0))
                .await
                .with_context(|| format!("bind UDP on {}", opts.bind_ip))?;
            anyhow::Ok((ws_tx, ws_rx, socket))
        };
        let (mut ws_tx, mut ws_rx, socket) = match connected.await {
            Ok(c) => c,
            Err(e) => {
                if let Some((r, _)) = rejoin.take() {
                    ctl.shared.offline.fetch_sub(1, Ordering::SeqCst);
                    out.rejoins.push(r);
                }
                return Err(e);
            }
        };
        if let Some((r, _)) = rejoin.as_mut() {
            r.reconnected_at = Some(Instant::now());
        }
        let local = socket.local_addr()?;
        if let Some(ready) = ready {
            let _ = ready.send((spec.index, site_id)).await;
        }
        // The signaling socket is read by its own task: polling tungstenite's stream costs a
        // memset of its whole read buffer (128 KiB) every time, and the media loop below is
        // polled for every datagram batch and timer.
        let (sig_tx, mut signals) = mpsc::unbounded_channel::<anyhow::Result<Value>>();
        let reader = tokio::spawn(async move {
            loop {
                let msg = next_json(&mut ws_rx).await;
                let end = msg.is_err();
                if sig_tx.send(msg).is_err() || end {
                    break;
                }
            }
        });
        let mut site: Option<SyntheticSite> = None;
        let mut buf = vec![0u8; 2048];
        let mut report = tokio::time::interval(Duration::from_secs(1));
        let grid = TimerGrid::new(Instant::now(), opts.timer_tick_ms);
        let mut to_send: Vec<Value> = Vec::new();
        let mut view_sent: Vec<(String, u32)> = Vec::new();
        let mut check_view = false;
        let mut end = SessionEnd::Stopped;
        loop {
            let now = Instant::now();
            let wake = site
                .as_ref()
                .map(|s| s.poll_timeout())
                .unwrap_or(now + Duration::from_millis(100))
                .clamp(now, now + Duration::from_millis(100));
            // Exact times until connected, so that the grid does not lengthen the join.
            let wake = match site.as_ref().and_then(|s| s.connected_at()) {
                Some(_) => grid.round_up(wake),
                None => wake,
            };
            tokio::select! {
                _ = stop.changed() => break,
                // A drop order while a rejoin is still under way waits for it.
                Some(()) = ctl.drops.recv(), if rejoin.is_none() => {
                    ctl.shared.offline.fetch_add(1, Ordering::SeqCst);
                    end = SessionEnd::Dropped;
                    break;
                }
                msg = signals.recv() => {
                    let msg = match msg {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            out.errors.push(format!("{e:#}"));
                            end = SessionEnd::Closed(format!("{e:#}"));
                            break;
                        }
                        None => {
                            end = SessionEnd::Closed("websocket reader ended".into());
                            break;
                        }
                    };
                    if msg["type"] == "join" {
                        if let Some((r, _)) = rejoin.as_mut() {
                            r.joined_at.get_or_insert_with(Instant::now);
                        }
                    }
                    let ctx = (spec, opts, epoch, site_id, local);
                    on_signal(&msg, ctx, &mut site, out, &mut to_send);
                    check_view = true;
                }
                r = socket.recv_from(&mut buf) => {
                    if let Ok((n, src)) = r {
                        let now = Instant::now();
                        receive(&mut site, out, now, src, &buf[..n]);
                        // Drain what else is queued, then let str0m work once for the batch.
                        for _ in 0..64 {
                            match socket.try_recv_from(&mut buf) {
                                Ok((n, src)) => receive(&mut site, out, now, src, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                        if let Some(s) = site.as_mut() {
                            s.poll(now);
                            // Timers already due ride on this wake-up.
                            if s.poll_timeout() <= now {
                                s.handle_timeout(now);
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if let Some(s) = site.as_mut() {
                        s.handle_timeout(Instant::now());
                    }
                }
                _ = report.tick() => {
                    check_view = true;
                    if site.as_ref().is_some_and(|s| s.is_connected()) {
                        let top = site.as_ref().and_then(|s| s.config().layers.last().cloned());
                        let (w, h) = top.map(|l| (l.width, l.height)).unwrap_or((0, 0));
                        to_send.push(json!({
                            "type": "report", "width": w, "height": h, "fps": 30, "audio_level": 0.3
                        }));
                    }
                }
            }
            if let Some((r, deadline)) = rejoin.as_mut() {
                let now = Instant::now();
                let back = site.as_ref().is_some_and(media_back);
                if back {
                    r.media_at = Some(now);
                }
                let late = r.reconnected_at.is_some_and(|t| now > t + *deadline);
                if back || late {
                    if let Some((r, _)) = rejoin.take() {
                        ctl.shared.offline.fetch_sub(1, Ordering::SeqCst);
                        out.rejoins.push(r);
                    }
                }
            }
            if let Some(s) = site.as_mut() {
                if out.connected_at.is_none() {
                    out.connected_at = s.connected_at();
                }
                // Not on every datagram batch: after signaling and once a second.
                if std::mem::take(&mut check_view) {
                    if opts.layout == Layout::OnePlusSeven {
                        if let Some(view) = one_plus_seven(s, &out.frame, &mut view_sent) {
                            to_send.push(view);
                        }
                    }
                    if opts.muted {
                        // Heard only if seen: a site nobody receives stays muted.
                        out.talking = !out.video_paused && is_main_picture(s, site_id);
                        s.set_talking(out.talking);
                    }
                }
                while let Some(t) = s.poll_transmit() {
                    match socket.try_send_to(&t.contents, t.destination) {
                        Ok(_) => out.udp_tx_packets += 1,
                        Err(_) => out.udp_tx_errors += 1,
                    }
                }
            }
            for m in to_send.drain(..) {
                if let Err(e) = ws_tx.send(Message::text(m.to_string())).await {
                    out.errors.push(format!("websocket send: {e}"));
                }
            }
        }
        if matches!(end, SessionEnd::Closed(_)) && opts.soak_minutes.is_some() {
            // Away until it reconnected and has media again, as after a drop.
            ctl.shared.offline.fetch_add(1, Ordering::SeqCst);
        }
        if let Some((mut r, _)) = rejoin.take() {
            // The session ended before media came back or the deadline passed.
            r.cut_short = matches!(end, SessionEnd::Stopped) && *stop.borrow();
            ctl.shared.offline.fetch_sub(1, Ordering::SeqCst);
            out.rejoins.push(r);
        }
        if let Some(mut s) = site {
            if matches!(end, SessionEnd::Dropped) {
                // The page closes its peer connection (a DTLS close alert) before it goes.
                s.disconnect(Instant::now());
                while let Some(t) = s.poll_transmit() {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
            }
            // Its m-lines: every one the server ever sent on, and its own audio and video.
            out.most_mlines = out.most_mlines.max(s.remote_tracks().len() + 2);
            out.remote.extend(s.remote_tracks().values().cloned());
            add_sent(&mut out.sent, s.sent());
            if let Some(e) = s.error() {
                out.errors.push(format!("str0m: {e}"));
            }
        }
        let _ = ws_tx.close().await;
        reader.abort();
        Ok(end)
    }
}

/// Whether a rejoined site's new peer receives media again: audio and video frames.
fn media_back(site: &SyntheticSite) -> bool {
    let frames = |kind| {
        (site.remote_tracks().values())
            .filter(|t| t.kind == kind)
            .map(|t| t.frames)
            .sum::<u64>()
    };
    frames(str0m::media::MediaKind::Audio) >= REJOIN_FRAMES
        && frames(str0m::media::MediaKind::Video) >= REJOIN_FRAMES
}

/// Adds one peer's send counters to the site's.
fn add_sent(total: &mut SentCounters, s: &SentCounters) {
    total.audio_packets += s.audio_packets;
    total.video_frames += s.video_frames;
    if total.layer_bytes.len() < s.layer_bytes.len() {
        total.layer_bytes.resize(s.layer_bytes.len(), 0);
    }
    for (t, b) in total.layer_bytes.iter_mut().zip(&s.layer_bytes) {
        *t += b;
    }
    total.keyframes += s.keyframes;
    total.keyframe_requests += s.keyframe_requests;
    total.write_errors += s.write_errors;
}

/// The `view` of a 1+7 layout when the site's received videos or its frame changed since
/// `sent`: each video at the height of its cell in the server's frame (C1), as the site app
/// draws it; before any frame, the smallest stream id large (720 lines), the others as
/// thumbnails (180).
fn one_plus_seven(
    site: &SyntheticSite,
    frame: &BTreeMap<String, u32>,
    sent: &mut Vec<(String, u32)>,
) -> Option<Value> {
    let mut streams: Vec<&str> = received_videos(site).collect();
    streams.sort_unstable();
    let tracks: Vec<(String, u32)> = (streams.iter().enumerate())
        .map(|(i, s)| {
            let guess = if i == 0 { 720 } else { 180 };
            let height = match frame.is_empty() {
                true => guess,
                false => frame.get(*s).copied().unwrap_or(180),
            };
            (s.to_string(), height)
        })
        .collect();
    if tracks.is_empty() || tracks == *sent {
        return None;
    }
    *sent = tracks.clone();
    let tracks: Vec<Value> = (tracks.iter())
        .map(|(s, h)| json!({"stream": s, "height": h}))
        .collect();
    Some(json!({"type": "view", "tracks": tracks}))
}

/// Whether this site is the one every other site shows large: its stream id (the server
/// names it `site-<id>`) comes before every video it receives.
fn is_main_picture(site: &SyntheticSite, site_id: i64) -> bool {
    let own = format!("site-{site_id}");
    let mut videos = received_videos(site).peekable();
    videos.peek().is_some() && videos.all(|s| s > own.as_str())
}

/// The stream ids of the videos the site receives.
fn received_videos(site: &SyntheticSite) -> impl Iterator<Item = &str> {
    site.active_tracks()
        .filter(|t| t.kind == str0m::media::MediaKind::Video)
        .map(|t| t.stream_id.as_str())
}

/// Rounds a site's wake-up times up to a grid of `tick` from the site's start (sites start at
/// different times, so their grids are spread): a site wakes for its timers at most once per
/// tick, however many str0m and frame timers fall into it.
struct TimerGrid {
    origin: Instant,
    tick_ns: u128,
}

impl TimerGrid {
    fn new(origin: Instant, tick_ms: f64) -> Self {
        TimerGrid {
            origin,
            tick_ns: (tick_ms.max(0.0) * 1e6) as u128,
        }
    }

    fn round_up(&self, t: Instant) -> Instant {
        if self.tick_ns == 0 {
            return t;
        }
        let since = t.saturating_duration_since(self.origin).as_nanos();
        let ticks = since.div_ceil(self.tick_ns);
        self.origin + Duration::from_nanos((ticks * self.tick_ns) as u64)
    }
}

fn receive(
    site: &mut Option<SyntheticSite>,
    out: &mut SiteOutcome,
    now: Instant,
    src: SocketAddr,
    buf: &[u8],
) {
    out.udp_rx_packets += 1;
    out.udp_rx_bytes += buf.len() as u64;
    if let Some(s) = site.as_mut() {
        s.handle_receive_deferred(now, src, buf);
    }
}

/// The fixed facts of a site: its spec, the options, the shared epoch, its id and address.
type SiteCtx<'a> = (&'a SiteSpec, &'a Opts, Instant, i64, SocketAddr);

fn on_signal(
    msg: &Value,
    (spec, opts, epoch, site_id, local): SiteCtx<'_>,
    site: &mut Option<SyntheticSite>,
    out: &mut SiteOutcome,
    to_send: &mut Vec<Value>,
) {
    let now = Instant::now();
    match msg["type"].as_str().unwrap_or_default() {
        "join" => {
            let Some(meeting) = msg["meeting"]["id"].as_i64() else {
                out.errors.push(format!("join without meeting: {msg}"));
                return;
            };
            if site.is_some() {
                out.errors.push("join again: media restarted".into());
            }
            out.joined_at.get_or_insert(now);
            let mut config = SiteConfig::new(site_id as u64, local).scale_video(opts.video_scale);
            config.stream = spec.username.clone();
            config.talking = !opts.muted;
            config.dtls_cert = Some(opts.dtls_cert.clone());
            config.keyframe_interval = Duration::from_secs_f64(opts.keyframe_interval.max(0.1));
            let mut s = SyntheticSite::new(now, epoch, config);
            let sdp = s.create_offer();
            *site = Some(s);
            to_send.push(json!({"type": "offer", "meeting": meeting, "sdp": sdp}));
        }
        "answer" => {
            let (Some(s), Some(sdp)) = (site.as_mut(), msg["sdp"].as_str()) else {
                return;
            };
            if let Err(e) = s.handle_answer(now, sdp) {
                out.errors.push(format!("answer: {e}"));
            }
        }
        "offer" => {
            let (Some(s), Some(sdp), Some(seq)) =
                (site.as_mut(), msg["sdp"].as_str(), msg["seq"].as_u64())
            else {
                out.errors.push("offer without a peer connection".into());
                return;
            };
            out.largest_offer = out.largest_offer.max(sdp.len());
            match s.handle_offer(now, sdp) {
                Ok(answer) => {
                    out.offers_answered += 1;
                    to_send.push(json!({"type": "answer", "sdp": answer, "seq": seq}));
                }
                Err(e) => out.errors.push(format!("offer {seq}: {e}")),
            }
        }
        "send_video" => {
            let on = msg["on"].as_bool().unwrap_or(true);
            match site.as_mut() {
                Some(s) => s.set_video_sending(on),
                None => out
                    .errors
                    .push("send_video without a peer connection".into()),
            }
            out.video_paused = !on;
        }
        "leave" => {
            if let Some(s) = site.as_mut() {
                s.set_sending(false);
            }
        }
        "participants" => {
            out.participants = msg["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p["stream"].as_str()?.to_string(),
                        p["name"].as_str().unwrap_or_default().to_string(),
                    ))
                })
                .collect();
        }
        "frame" => {
            out.frame = (msg["cells"].as_array().into_iter().flatten())
                .filter_map(|c| {
                    let height = match c["size"].as_str()? {
                        "large" => 720,
                        "medium" => 360,
                        _ => 180,
                    };
                    Some((c["stream"].as_str()?.to_string(), height))
                })
                .collect();
        }
        "error" => out.errors.push(format!("server: {msg}")),
        _ => {}
    }
}
