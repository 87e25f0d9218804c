//! Signaling: the WebSocket of every site app, console and chair view: presence, meetings
//! opened from their bookings (B4, B5), dialing (C6), and the meeting's course (C1, C3, C4, C8,
//! P3, roll call) run by the rules of `hnth_rules::meeting` and applied to the media core.
//! The protocol is documented in `docs/SIGNALING.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use hnth_media::{CloseReason, LinkStats, PeerId, PeerSetup};
use hnth_rules::booking::BookingStatus;
use hnth_rules::meeting::{Actor, Change, Command, Meeting as Rules, MicGuard};
use hnth_rules::roles::{authorize, Action, Role};
use serde::Deserialize;
use serde_json::{json, Value};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::config::MeetingSettings;
use crate::live::driver::{MediaCmd, MediaEvent, MediaRouter};
use crate::live::meeting::{ConnId, LiveMeeting, PeerKind, PeerRef, Views};
use crate::services::mail::Outbox;
use crate::services::meetings::{self, Emergency, Opened, Refused, Restored};
use crate::store::accounts::{Account, CurrentUser};
use crate::store::registry::Site;
use crate::store::{self, Db};

/// A message a client may send. Anything else is refused with `bad_request`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMsg {
    Offer {
        meeting: i64,
        sdp: String,
        /// A console that only watches (sends nothing); otherwise it takes the control
        /// center's seat.
        #[serde(default)]
        watch: bool,
    },
    Answer {
        sdp: String,
        seq: u64,
    },
    Report {
        width: Option<u32>,
        height: Option<u32>,
        fps: Option<f64>,
        audio_level: Option<f64>,
    },
    MediaLost {
        meeting: i64,
    },
    /// How tall this page shows each received video (device pixels), so that the server
    /// forwards the simulcast layer that fits the tile.
    View {
        tracks: Vec<ViewTrack>,
    },
    /// Open a booking's meeting (`booking`), or an emergency one at once (`title`, B5).
    OpenMeeting {
        #[serde(default)]
        booking: Option<i64>,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        chair: Option<String>,
        #[serde(default)]
        sites: Option<Vec<i64>>,
    },
    CloseMeeting {
        meeting: i64,
    },
    Dial {
        meeting: i64,
        site: i64,
    },
    DialAll {
        meeting: i64,
    },
    Hangup {
        meeting: i64,
        site: i64,
    },
    JoinRequest {
        #[allow(dead_code)]
        meeting: Option<i64>,
    },
    /// A command of the meeting's course (the floor, speak requests, the frame, the
    /// parameters, the roll call), as `hnth_rules::meeting::Command`.
    Command {
        meeting: i64,
        command: Command,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewTrack {
    stream: String,
    height: u32,
}

/// The largest message a client may send (docs/SIGNALING.md); a larger one closes the socket
/// with 1009 (message too big).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// What the WebSocket layer reads at most: a frame or message above it is refused on its header,
/// before it is read, and closed with 1009 too. Above [`MAX_MESSAGE`], so that every message up
/// to a few times the limit is read whole and answered by the check in [`Hub::serve`].
pub const TRANSPORT_CAP: usize = 1024 * 1024;

/// Limits of one `view` message: more tracks than any view shows, taller than 8K.
const VIEW_MAX_TRACKS: usize = 64;
const VIEW_MAX_HEIGHT: u32 = 4320;

const KNOWN_TYPES: &[&str] = &[
    "offer",
    "answer",
    "report",
    "media_lost",
    "view",
    "open_meeting",
    "close_meeting",
    "dial",
    "dial_all",
    "hangup",
    "join_request",
    "command",
];

struct Conn {
    account: Account,
    tx: UnboundedSender<String>,
}

struct PeerInfo {
    conn: ConnId,
    meeting: i64,
    /// The site it sends as (the control center's for the console in its seat).
    site_id: Option<i64>,
    name: String,
    stream: String,
    kind: PeerKind,
    connected: bool,
    /// Nothing arrives from it any more (its line is cut); its session is kept.
    interrupted: bool,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<ConnId, Conn>,
    sites: Vec<Site>,
    site_conn: HashMap<i64, ConnId>,
    meetings: BTreeMap<i64, LiveMeeting>,
    peers: HashMap<PeerId, PeerInfo>,
    conn_peer: HashMap<ConnId, PeerId>,
    stats: HashMap<PeerId, LinkStats>,
    reports: HashMap<i64, Value>,
    next_conn: ConnId,
    next_peer: PeerId,
    /// What the media core was last told for each peer (only changes are sent).
    sent: HashMap<PeerId, PeerSetup>,
    /// How many pictures a site and a watching console receive at most.
    views: Views,
    /// The frame last sent to each connection (only changes are sent).
    frames_sent: HashMap<ConnId, String>,
    /// The bookings whose meeting may be opened today, as the consoles list them.
    bookings: Vec<Value>,
    /// C4: audio packets dropped at the floor gate, per site (for /metrics), and the count
    /// last reported by each peer.
    dropped: BTreeMap<i64, u64>,
    dropped_seen: HashMap<PeerId, u64>,
}

/// What the hub writes in the background, in order (the live meeting goes on meanwhile).
enum Record {
    State {
        meeting: i64,
        state: Box<Rules>,
        version: i64,
    },
    Connection {
        meeting: i64,
        site: i64,
        connected: bool,
        at: i64,
    },
    Unheard {
        meeting: i64,
        site: i64,
        name: String,
        violation: hnth_rules::Violation,
    },
}

/// Writes what the hub records, one at a time, in the order it happened.
async fn record_loop(db: Db, mut rx: UnboundedReceiver<Record>) {
    while let Some(r) = rx.recv().await {
        let (what, result) = match r {
            Record::State {
                meeting,
                state,
                version,
            } => (
                format!("the state of meeting {meeting}"),
                meetings::save_state(&db, meeting, &state, version).await,
            ),
            Record::Connection {
                meeting,
                site,
                connected,
                at,
            } => (
                format!(
                    "site {site} {} meeting {meeting}",
                    if connected {
                        "connected to"
                    } else {
                        "disconnected from"
                    }
                ),
                meetings::site_connection(&db, meeting, site, connected, at).await,
            ),
            Record::Unheard {
                meeting,
                site,
                name,
                violation,
            } => (
                format!("a microphone opened without the floor at site {site}"),
                meetings::unheard_speech(&db, meeting, site, &name, &violation).await,
            ),
        };
        if let Err(e) = result {
            tracing::error!("recording {what}: {e}");
        }
    }
}

/// What the hub's helpers need besides its state.
struct Out<'a> {
    media: &'a MediaRouter,
    rec: &'a UnboundedSender<Record>,
}

/// The live state shared by every connection.
pub struct Hub {
    inner: Mutex<Inner>,
    db: store::Db,
    media: MediaRouter,
    rec: UnboundedSender<Record>,
    outbox: Outbox,
    settings: MeetingSettings,
}

/// Whether a read error is a frame or message over [`TRANSPORT_CAP`], refused by the WebSocket
/// layer (tungstenite) before it was read.
fn over_transport_cap(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// An error to the sender; never closes the socket.
fn error(code: &str, message: &str, article: Option<&str>, re: &str) -> String {
    json!({"type": "error", "code": code, "message": message, "article": article, "ref": re})
        .to_string()
}

impl Hub {
    pub async fn new(
        db: store::Db,
        media: MediaRouter,
        outbox: Outbox,
        settings: MeetingSettings,
        views: Views,
    ) -> anyhow::Result<Arc<Hub>> {
        let sites = store::registry::sites(&db).await?;
        let (rec, rx) = unbounded_channel();
        tokio::spawn(record_loop(db.clone(), rx));
        Ok(Arc::new(Hub {
            inner: Mutex::new(Inner {
                sites,
                views,
                next_conn: 1,
                next_peer: 1,
                ..Default::default()
            }),
            db,
            media,
            rec,
            outbox,
            settings,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn out(&self) -> Out<'_> {
        Out {
            media: &self.media,
            rec: &self.rec,
        }
    }

    /// Serve one WebSocket until it closes, or until its session ends (logout, expiry, the
    /// account disabled or its password reset: checked at every ping, so within 10 s).
    pub async fn serve(self: Arc<Hub>, socket: WebSocket, user: CurrentUser, token: String) {
        let (tx, mut rx) = unbounded_channel::<String>();
        let conn = self.register(user.account.clone(), tx);
        let (mut sink, mut stream) = socket.split();
        let mut ping = tokio::time::interval(Duration::from_secs(10));
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let msg = match msg {
                        Some(Ok(msg)) => msg,
                        Some(Err(e)) => {
                            if over_transport_cap(e) {
                                self.close_too_big(&mut sink, &user, TRANSPORT_CAP).await;
                            }
                            break;
                        }
                        None => break,
                    };
                    last_heard = tokio::time::Instant::now();
                    let size = match &msg {
                        Message::Text(t) => t.len(),
                        Message::Binary(b) => b.len(),
                        _ => 0,
                    };
                    if size > MAX_MESSAGE {
                        self.close_too_big(&mut sink, &user, size).await;
                        break;
                    }
                    match msg {
                        Message::Text(t) => self.handle(conn, t.as_str()).await,
                        Message::Binary(_) => self.send(conn, error("bad_request", "binary frames are not part of the protocol", None, "")),
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                out = rx.recv() => {
                    // None: this connection was replaced by a newer one of the same site.
                    let Some(out) = out else { break };
                    if sink.send(Message::Text(out.into())).await.is_err() { break; }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > Duration::from_secs(30) { break; }
                    if let Ok(None) = crate::services::accounts::session(&self.db, &token).await {
                        tracing::info!(user = %user.account.username, "signaling closed: the session ended");
                        let frame = CloseFrame { code: 4401, reason: "session ended; log in again".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break;
                    }
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() { break; }
                }
            }
        }
        self.unregister(conn);
    }

    /// A message over [`MAX_MESSAGE`] (`size` bytes, or at least [`TRANSPORT_CAP`] if refused
    /// on its header): the close frame 1009 (message too big) with the limit as its reason.
    async fn close_too_big(
        &self,
        sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
        user: &CurrentUser,
        size: usize,
    ) {
        tracing::warn!(
            user = %user.account.username,
            size,
            limit = MAX_MESSAGE,
            "signaling message too big: closing with 1009"
        );
        let frame = CloseFrame {
            code: close_code::SIZE,
            reason: format!("message over {MAX_MESSAGE} bytes").into(),
        };
        if let Err(e) = sink.send(Message::Close(Some(frame))).await {
            tracing::info!(user = %user.account.username, "close frame not sent: {e}");
        }
    }

    pub(crate) fn register(&self, account: Account, tx: UnboundedSender<String>) -> ConnId {
        let mut g = self.lock();
        let id = g.next_conn;
        g.next_conn += 1;
        let site = account
            .site_id
            .and_then(|s| g.sites.iter().find(|x| x.id == s).cloned());
        let device = account.role == Role::SiteDevice;
        let meeting = site
            .as_ref()
            .filter(|_| device)
            .and_then(|s| g.meetings.values().find(|m| m.has_site(s.id)))
            .map(|m| json!({"id": m.id, "title": m.title, "booking": m.booking}));
        let _ = tx.send(
            json!({
                "type": "welcome",
                "role": account.role.as_str(),
                "user": {"username": account.username, "display_name": account.display_name},
                "site": site.as_ref().map(|s| json!({"id": s.id, "code": s.code, "name": s.name, "room_rules": s.room_rules})),
                "meeting": meeting,
                "cc_site": g.sites.iter().find(|s| s.is_control_center).map(|s| s.id),
            })
            .to_string(),
        );
        if device {
            if let Some(site) = &site {
                metrics::counter!(crate::telemetry::SITE_CONNECTIONS, "site" => site.code.clone())
                    .increment(1);
                // The newest page of a site wins; the older one is told and dropped.
                if let Some(old) = g.site_conn.insert(site.id, id) {
                    if let Some(c) = g.conns.remove(&old) {
                        let _ = c.tx.send(error(
                            "bad_state",
                            "replaced by a newer connection of this site",
                            None,
                            "",
                        ));
                    }
                    drop_peer_of(&mut g, &self.out(), old);
                }
                if let Some(m) = &meeting {
                    let _ = tx.send(json!({"type": "join", "meeting": m}).to_string());
                }
            }
        }
        if account.is_control_center() {
            let _ = tx.send(sites_msg(&g));
            let _ = tx.send(meetings_msg(&g));
            let _ = tx.send(bookings_msg(&g));
        }
        g.conns.insert(id, Conn { account, tx });
        // The state of every meeting this connection may follow.
        let now = Utc::now();
        let ids: Vec<i64> = g.meetings.keys().copied().collect();
        for m in ids {
            if follows(&g, id, m) {
                let msg = state_msg(&g, m, now);
                if let Some(c) = g.conns.get(&id) {
                    let _ = c.tx.send(msg);
                }
            }
        }
        broadcast_consoles(&g, sites_msg(&g));
        id
    }

    pub(crate) fn unregister(&self, conn: ConnId) {
        let mut g = self.lock();
        g.conns.remove(&conn);
        g.frames_sent.remove(&conn);
        g.site_conn.retain(|_, c| *c != conn);
        drop_peer_of(&mut g, &self.out(), conn);
        // The control center's seat is free again.
        let held: Vec<i64> = (g.meetings.values())
            .filter(|m| m.seat == Some(conn))
            .map(|m| m.id)
            .collect();
        for id in held {
            if let Some(m) = g.meetings.get_mut(&id) {
                m.seat = None;
                m.seat_user = None;
            }
            publish(&mut g, id, Utc::now());
        }
        broadcast_consoles(&g, sites_msg(&g));
    }

    fn send(&self, conn: ConnId, msg: String) {
        if let Some(c) = self.lock().conns.get(&conn) {
            let _ = c.tx.send(msg);
        }
    }

    pub(crate) async fn handle(&self, conn: ConnId, text: &str) {
        let Some(account) = self.lock().conns.get(&conn).map(|c| c.account.clone()) else {
            return;
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self.send(
                    conn,
                    error("bad_request", &format!("malformed JSON: {e}"), None, ""),
                )
            }
        };
        let typ = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !KNOWN_TYPES.contains(&typ.as_str()) {
            return self.send(
                conn,
                error(
                    "bad_request",
                    &format!("unknown message type '{typ}'"),
                    None,
                    &typ,
                ),
            );
        }
        let msg: ClientMsg = match serde_json::from_value(value) {
            Ok(m) => m,
            Err(e) => {
                return self.send(
                    conn,
                    error("bad_request", &format!("invalid '{typ}': {e}"), None, &typ),
                )
            }
        };
        if let Err(e) = self.dispatch(conn, &account, msg).await {
            if let Some(rule) = e.record {
                let detail = format!("{} ({}): {}", account.username, typ, e.message);
                let detail_vi = format!("{} ({}): {}", account.username, typ, e.message_vi());
                tracing::warn!(user = %account.username, rule, "refused: {}", e.message);
                if let Err(err) = store::audit::record_violation(
                    &self.db,
                    rule,
                    Some(account.id),
                    account.site_id,
                    &detail,
                    &detail_vi,
                )
                .await
                {
                    tracing::error!(user = %account.username, rule, "recording the violation '{detail}': {err}");
                }
            }
            let mut msg: Value = serde_json::from_str(&error(e.code, &e.message, e.article, &typ))
                .unwrap_or_default();
            if !e.vi.is_empty() {
                msg["message_vi"] = json!(e.vi);
            }
            if let Some(reason) = e.reason {
                msg["reason"] = json!(reason);
            }
            self.send(conn, msg.to_string());
        }
    }

    async fn dispatch(
        &self,
        conn: ConnId,
        account: &Account,
        msg: ClientMsg,
    ) -> Result<(), Refusal> {
        match msg {
            ClientMsg::OpenMeeting {
                booking,
                title,
                chair,
                sites,
            } => {
                // A message of the wrong shape is a bad request for every role, as for the
                // other messages (whose fields serde requires), before the role is checked.
                // Ok: a booking's meeting; Err: an emergency's title.
                let what =
                    match (booking, title) {
                        (Some(b), _) => Ok(b),
                        (None, Some(title)) => Err(title),
                        (None, None) => return Err(Refusal::bad_request(
                            "open_meeting needs a booking (its id) or, for an emergency, a title",
                        )),
                    };
                permit(account, &Action::OpenMeeting)?;
                let now = Utc::now();
                let opened = match what {
                    Ok(b) => meetings::open_booking(&self.db, Some(account), b, now)
                        .await
                        .map_err(|e| refused(e, &format!("opening the meeting of booking {b}")))?,
                    Err(title) => {
                        let e = Emergency {
                            title: &title,
                            chair: chair.as_deref().unwrap_or(""),
                            sites: sites.as_deref().unwrap_or(&[]),
                        };
                        meetings::open_emergency(&self.db, &self.outbox, account, &e, now)
                            .await
                            .map_err(|e| {
                                refused(e, "registering and opening an emergency meeting")
                            })?
                    }
                };
                if opened.booking.emergency {
                    // B5: every console and the sites called are alerted at once.
                    let b = &opened.booking;
                    self.emergency_alert(b.id, &b.title, &b.sites);
                }
                self.start(opened, now);
                self.refresh_bookings().await;
                Ok(())
            }
            ClientMsg::CloseMeeting { meeting } => {
                permit(account, &Action::OpenMeeting)?;
                let sites = {
                    let mut g = self.lock();
                    let m = g
                        .meetings
                        .remove(&meeting)
                        .ok_or_else(|| Refusal::not_found("no such meeting"))?;
                    let out = self.out();
                    for site in m.dialed() {
                        leave_site(&mut g, &out, site, meeting, "closed");
                    }
                    let consoles: Vec<ConnId> = g
                        .peers
                        .values()
                        .filter(|p| p.meeting == meeting)
                        .map(|p| p.conn)
                        .collect();
                    for c in consoles {
                        drop_peer_of(&mut g, &out, c);
                    }
                    let closed = json!({"type": "meeting_closed", "meeting": meeting}).to_string();
                    broadcast_consoles(&g, closed.clone());
                    for c in g.conns.values().filter(|c| c.account.role == Role::Chair) {
                        let _ = c.tx.send(closed.clone());
                    }
                    broadcast_consoles(&g, meetings_msg(&g));
                    broadcast_consoles(&g, sites_msg(&g));
                    m.dialed().count()
                };
                tracing::info!(meeting, sites, "meeting closed");
                // Closed live either way; the console is told if the record lacks it.
                let r = meetings::close(&self.db, account, meeting, Utc::now())
                    .await
                    .map_err(|e| refused(e, &format!("recording meeting {meeting} as closed")));
                self.refresh_bookings().await;
                r
            }
            ClientMsg::Dial { meeting, site } => {
                permit(account, &Action::DialSite)?;
                self.dial(account, meeting, &[site], true).await
            }
            ClientMsg::DialAll { meeting } => {
                permit(account, &Action::DialSite)?;
                let sites: Vec<i64> = {
                    let g = self.lock();
                    let m = g
                        .meetings
                        .get(&meeting)
                        .ok_or_else(|| Refusal::not_found("no such meeting"))?;
                    if m.emergency {
                        // An emergency calls every site that is online and free.
                        (g.site_conn.keys().copied())
                            .filter(|s| {
                                !g.meetings
                                    .values()
                                    .any(|o| o.id != meeting && o.has_site(*s))
                            })
                            .collect()
                    } else {
                        // A booking's meeting: exactly its sites, called again.
                        m.dialed().collect()
                    }
                };
                self.dial(account, meeting, &sites, false).await
            }
            ClientMsg::Hangup { meeting, site } => {
                permit(account, &Action::DialSite)?;
                self.hangup(account, meeting, site).await
            }
            ClientMsg::JoinRequest { .. } => {
                // Sites never join by themselves (C6); nobody else joins this way either.
                permit(account, &Action::DialSite)?;
                Err(Refusal::bad_request(
                    "use 'offer' after opening or being dialed into a meeting",
                ))
            }
            ClientMsg::Command { meeting, command } => {
                self.command(account, meeting, command).await
            }
            ClientMsg::Offer {
                meeting,
                sdp,
                watch,
            } => self.offer(conn, account, meeting, sdp, watch),
            ClientMsg::Answer { sdp, seq } => {
                let g = self.lock();
                let peer = *g
                    .conn_peer
                    .get(&conn)
                    .ok_or_else(|| Refusal::bad_state("no media session to answer for"))?;
                self.media.send(MediaCmd::Answer { peer, seq, sdp });
                Ok(())
            }
            ClientMsg::Report {
                width,
                height,
                fps,
                audio_level,
            } => {
                if let Some(site) = account.site_id {
                    self.lock().reports.insert(site, json!({"width": width, "height": height, "fps": fps, "audio_level": audio_level}));
                }
                Ok(())
            }
            ClientMsg::View { tracks } => {
                let heights = view_heights(tracks)?;
                let g = self.lock();
                let peer = *g
                    .conn_peer
                    .get(&conn)
                    .ok_or_else(|| Refusal::bad_state("no media session to set the view of"))?;
                self.media.send(MediaCmd::View { peer, heights });
                Ok(())
            }
            ClientMsg::MediaLost { meeting } => {
                let mut g = self.lock();
                drop_peer_of(&mut g, &self.out(), conn);
                let dialed = account.role == Role::SiteDevice
                    && account
                        .site_id
                        .is_some_and(|s| g.meetings.get(&meeting).is_some_and(|m| m.has_site(s)));
                if dialed {
                    send_join(&g, conn, meeting);
                }
                broadcast_consoles(&g, sites_msg(&g));
                Ok(())
            }
        }
    }

    /// The server is stopping: every page is told (its meetings come back at the next start,
    /// and the pages reconnect by themselves), and the sites' connections are recorded as ended
    /// now.
    pub async fn stopping(&self, run: i64, now: DateTime<Utc>) {
        let open = {
            let g = self.lock();
            let msg = json!({"type": "server_stopping"}).to_string();
            for c in g.conns.values() {
                let _ = c.tx.send(msg.clone());
            }
            g.meetings.len()
        };
        tracing::info!(
            meetings = open,
            "stopping: pages told, connections recorded as ended"
        );
        if let Err(e) = meetings::stopping(&self.db, run, now).await {
            tracing::error!("recording the stop's time: {e}");
        }
    }

    /// The meetings the server was running when it stopped (`meetings::restore`), live again
    /// with their course; each site is called as soon as its app reconnects.
    pub fn restore(&self, list: Vec<Restored>, now: DateTime<Utc>) {
        for r in list {
            let rules = r.state;
            let opened = Opened {
                id: r.id,
                booking: r.booking,
            };
            tracing::info!(meeting = opened.id, "meeting restored after a restart");
            self.go_live(opened, rules, now);
        }
    }

    /// A meeting just opened (by a console, or by itself at its preparation time): live from
    /// now on, its sites called (C6: by the control center).
    fn start(&self, opened: Opened, now: DateTime<Utc>) {
        let b = &opened.booking;
        let Some(cc) = self
            .lock()
            .sites
            .iter()
            .find(|s| s.is_control_center)
            .map(|s| s.id)
        else {
            tracing::error!(meeting = opened.id, "the registry has no control center");
            return;
        };
        let mut sites = b.sites.clone();
        if !sites.contains(&cc) {
            sites.push(cc);
        }
        let mut rules = Rules::new(b.host_site_id, &sites, self.settings.layout);
        rules.chair_always_heard = self.settings.chair_always_heard;
        self.go_live(opened, rules, now);
    }

    /// A meeting with its rules goes live: kept in the hub, its state written, the consoles
    /// told, its sites that are online called.
    fn go_live(&self, opened: Opened, mut rules: Rules, now: DateTime<Utc>) {
        let b = &opened.booking;
        let mut g = self.lock();
        let Some(cc) = g.sites.iter().find(|s| s.is_control_center).map(|s| s.id) else {
            tracing::error!(meeting = opened.id, "the registry has no control center");
            return;
        };
        rules.names = g.sites.iter().map(|s| (s.id, s.name.clone())).collect();
        let mut m = LiveMeeting {
            id: opened.id,
            title: b.title.clone(),
            booking: b.id,
            emergency: b.emergency,
            chair: b.chair.clone(),
            rules,
            guard: MicGuard::default(),
            cc_site: cc,
            seat: None,
            seat_user: None,
            version: 0,
        };
        let version = m.next_version(now);
        let _ = self.rec.send(Record::State {
            meeting: m.id,
            state: Box::new(m.rules.clone()),
            version,
        });
        let id = m.id;
        let title = m.title.clone();
        let dialed: Vec<i64> = m.dialed().collect();
        g.meetings.insert(id, m);
        tracing::info!(
            meeting = id,
            booking = b.id,
            sites = dialed.len(),
            "meeting opened"
        );
        broadcast_consoles(
            &g,
            json!({"type": "meeting_opened", "meeting": {"id": id, "title": title, "booking": b.id}})
                .to_string(),
        );
        for site in &dialed {
            if let Some(c) = g.site_conn.get(site).copied() {
                send_join(&g, c, id);
            }
        }
        broadcast_consoles(&g, meetings_msg(&g));
        broadcast_consoles(&g, sites_msg(&g));
        publish(&mut g, id, now);
    }

    /// C6: the control center connects `sites` to `meeting`: each becomes a site of the
    /// meeting (recorded, with who added it) and is called if its app is online. A site of the
    /// meeting that is not connected is called again. `strict`: a site in another meeting
    /// refuses the whole call (else it is left out).
    async fn dial(
        &self,
        account: &Account,
        meeting: i64,
        sites: &[i64],
        strict: bool,
    ) -> Result<(), Refusal> {
        let now = Utc::now();
        let actor = actor_of(account);
        let mut added = Vec::new();
        let snapshot = {
            let mut g = self.lock();
            if !g.meetings.contains_key(&meeting) {
                return Err(Refusal::not_found("no such meeting"));
            }
            let mut list = Vec::new();
            for site in sites {
                let Some(s) = g.sites.iter().find(|s| s.id == *site) else {
                    return Err(Refusal::not_found("no such site"));
                };
                if s.is_control_center {
                    return Err(Refusal::bad_request(
                        "the control center is not dialed; it joins from the console",
                    ));
                }
                if let Some(other) = g
                    .meetings
                    .values()
                    .find(|m| m.id != meeting && m.has_site(*site))
                {
                    if !strict {
                        continue;
                    }
                    return Err(Refusal {
                        code: "bad_state",
                        message: format!(
                            "site {} is in meeting '{}'; hang it up there first",
                            s.name, other.title
                        ),
                        vi: format!(
                            "Điểm cầu {} đang ở cuộc họp \"{}\": hãy ngắt ở đó trước",
                            s.name, other.title
                        ),
                        article: None,
                        record: None,
                        reason: None,
                    });
                }
                list.push(*site);
            }
            let m = g.meetings.get_mut(&meeting).expect("checked");
            for site in &list {
                let changes = m
                    .rules
                    .apply(actor, Command::AddSite { site: *site }, now)
                    .map_err(|v| rule_refusal(&v))?;
                if !changes.is_empty() {
                    added.push(*site);
                }
            }
            let snapshot = (!added.is_empty()).then(|| {
                let v = m.next_version(now);
                (m.rules.clone(), v)
            });
            for site in &list {
                let calling = !g
                    .peers
                    .values()
                    .any(|p| p.site_id == Some(*site) && p.meeting == meeting);
                if !calling {
                    continue;
                }
                // An offline site is a site of the meeting all the same: it gets `join` as
                // soon as its device connects, and the console sees that it was called.
                let online = g.site_conn.get(site).copied();
                if let Some(c) = online {
                    send_join(&g, c, meeting);
                }
                let msg = json!({"type": "dialing", "meeting": meeting, "site": site,
                    "online": online.is_some()});
                broadcast_consoles(&g, msg.to_string());
            }
            broadcast_consoles(&g, meetings_msg(&g));
            broadcast_consoles(&g, sites_msg(&g));
            if snapshot.is_some() {
                apply_meeting(&mut g, &self.out(), meeting, now);
            }
            snapshot
        };
        // Dialed live either way; the console is told if the record lacks them.
        for site in &added {
            meetings::site_changed(&self.db, account, meeting, *site, true)
                .await
                .map_err(|e| {
                    refused(
                        e,
                        &format!("recording site {site} as added to meeting {meeting}"),
                    )
                })?;
        }
        self.save(meeting, snapshot).await
    }

    /// C6: the control center hangs `site` up: it leaves the meeting (recorded, with who).
    async fn hangup(&self, account: &Account, meeting: i64, site: i64) -> Result<(), Refusal> {
        let now = Utc::now();
        let snapshot = {
            let mut g = self.lock();
            let m = g
                .meetings
                .get_mut(&meeting)
                .ok_or_else(|| Refusal::not_found("no such meeting"))?;
            if !m.has_site(site) || site == m.cc_site {
                return Err(Refusal::not_found(
                    "that site is not connected to this meeting",
                ));
            }
            m.rules
                .apply(actor_of(account), Command::DropSite { site }, now)
                .map_err(|v| rule_refusal(&v))?;
            let v = m.next_version(now);
            let snapshot = (m.rules.clone(), v);
            leave_site(&mut g, &self.out(), site, meeting, "hangup");
            apply_meeting(&mut g, &self.out(), meeting, now);
            broadcast_consoles(&g, meetings_msg(&g));
            broadcast_consoles(&g, sites_msg(&g));
            snapshot
        };
        meetings::site_changed(&self.db, account, meeting, site, false)
            .await
            .map_err(|e| {
                refused(
                    e,
                    &format!("recording site {site} as hung up from meeting {meeting}"),
                )
            })?;
        self.save(meeting, Some(snapshot)).await
    }

    /// A command of the meeting's course from `account` (C1, C3, C4, C8, P3, roll call): the
    /// rules apply it or refuse it with their article; what changed goes to the media core and
    /// to every page following the meeting, and the new state to the database.
    async fn command(
        &self,
        account: &Account,
        meeting: i64,
        command: Command,
    ) -> Result<(), Refusal> {
        match command {
            Command::AddSite { site } => {
                permit(account, &Action::DialSite)?;
                return self.dial(account, meeting, &[site], true).await;
            }
            Command::DropSite { site } => {
                permit(account, &Action::DialSite)?;
                return self.hangup(account, meeting, site).await;
            }
            _ => {}
        }
        let now = Utc::now();
        let params = matches!(command, Command::SetParams { .. });
        let (snapshot, before) = {
            let mut g = self.lock();
            let m = g
                .meetings
                .get_mut(&meeting)
                .ok_or_else(|| Refusal::not_found("no such meeting"))?;
            let before = m.rules.params;
            let changes = m
                .rules
                .apply(actor_of(account), command, now)
                .map_err(|v| rule_refusal(&v))?;
            if changes.is_empty() {
                return Ok(());
            }
            let v = m.next_version(now);
            let snapshot = (m.rules.clone(), v);
            apply_meeting(&mut g, &self.out(), meeting, now);
            (snapshot, before)
        };
        if params && before != snapshot.0.params {
            meetings::params_changed(&self.db, account, meeting, &before, &snapshot.0.params)
                .await
                .map_err(|e| refused(e, "recording the meeting's parameters"))?;
        }
        self.save(meeting, Some(snapshot)).await
    }

    /// Writes a meeting's state (a command's: its sender is told if it cannot be written).
    async fn save(&self, meeting: i64, snapshot: Option<(Rules, i64)>) -> Result<(), Refusal> {
        let Some((state, version)) = snapshot else {
            return Ok(());
        };
        meetings::save_state(&self.db, meeting, &state, version)
            .await
            .map_err(|e| {
                Refusal::internal(&format!("recording the state of meeting {meeting}"), &e)
            })
    }

    fn offer(
        &self,
        conn: ConnId,
        account: &Account,
        meeting: i64,
        sdp: String,
        watch: bool,
    ) -> Result<(), Refusal> {
        let mut g = self.lock();
        let now = Utc::now();
        let (site_id, name, stream, kind) = if account.role == Role::SiteDevice {
            let site = account
                .site_id
                .ok_or_else(|| Refusal::bad_state("device account without a site"))?;
            let dialed = g.meetings.get(&meeting).is_some_and(|m| m.has_site(site));
            if !dialed {
                return Err(Refusal {
                    code: "forbidden",
                    message: "a site joins a meeting only when the control center connects it"
                        .into(),
                    vi: format!(
                        "Điểm cầu chỉ tham gia cuộc họp khi Trung tâm điều khiển kết nối ({}).",
                        hnth_rules::RuleId::C6.article_vi()
                    ),
                    article: Some("C6"),
                    record: Some("C6"),
                    reason: None,
                });
            }
            permit(account, &Action::JoinMeetingAsSite { site })?;
            let name = g
                .sites
                .iter()
                .find(|s| s.id == site)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            (Some(site), name, format!("site-{site}"), PeerKind::Site)
        } else {
            permit(account, &Action::OpenMeeting)?;
            let m = g
                .meetings
                .get(&meeting)
                .ok_or_else(|| Refusal::not_found("no such meeting"))?;
            let cc = m.cc_site;
            let cc_name = g
                .sites
                .iter()
                .find(|s| s.id == cc)
                .map(|s| s.name.clone())
                .unwrap_or_else(|| account.display_name.clone());
            if watch {
                (None, cc_name, format!("watch-{conn}"), PeerKind::Watch)
            } else {
                (Some(cc), cc_name, format!("cc-{conn}"), PeerKind::Control)
            }
        };
        if sdp.len() > 64 * 1024 {
            return Err(Refusal::bad_request("SDP larger than 64 KiB"));
        }
        let out = self.out();
        // A fresh offer replaces this connection's previous media session.
        drop_peer_of(&mut g, &out, conn);
        // A console that watches, or moves to another meeting, leaves the seat it held.
        let left: Vec<i64> = (g.meetings.values())
            .filter(|m| m.seat == Some(conn) && (m.id != meeting || kind != PeerKind::Control))
            .map(|m| m.id)
            .collect();
        for id in left {
            if let Some(m) = g.meetings.get_mut(&id) {
                m.seat = None;
                m.seat_user = None;
            }
            publish(&mut g, id, now);
        }
        if kind == PeerKind::Control {
            // One console holds the control center's seat: taking it moves the other one to
            // watching.
            let m = g.meetings.get_mut(&meeting).expect("checked");
            let previous = m.seat.replace(conn).filter(|c| *c != conn);
            m.seat_user = Some(account.username.clone());
            if let Some(prev) = previous {
                drop_peer_of(&mut g, &out, prev);
                if let Some(c) = g.conns.get(&prev) {
                    let _ = c.tx.send(
                        json!({"type": "seat_lost", "meeting": meeting, "by": account.username})
                            .to_string(),
                    );
                }
            }
        }
        let peer = g.next_peer;
        g.next_peer += 1;
        g.peers.insert(
            peer,
            PeerInfo {
                conn,
                meeting,
                site_id,
                name,
                stream: stream.clone(),
                kind,
                connected: false,
                interrupted: false,
            },
        );
        g.conn_peer.insert(conn, peer);
        let refs = peer_refs(&g, meeting);
        let me = refs
            .iter()
            .find(|p| p.id == peer)
            .cloned()
            .expect("just added");
        let setup = g
            .meetings
            .get(&meeting)
            .map(|m| m.setup_for(&me, &refs, g.views, now))
            .expect("checked");
        g.sent.insert(peer, setup.clone());
        self.media.send(MediaCmd::AddPeer {
            peer,
            meeting: meeting as u64,
            stream,
            sdp,
            setup,
        });
        broadcast_participants(&g, meeting);
        publish(&mut g, meeting, now);
        Ok(())
    }

    /// Events from the media core.
    pub fn on_media(&self, ev: MediaEvent) {
        let mut g = self.lock();
        let out = self.out();
        let now = Utc::now();
        match ev {
            MediaEvent::Answer { peer, sdp } => {
                send_peer(&g, peer, json!({"type": "answer", "sdp": sdp}))
            }
            MediaEvent::Offer { peer, seq, sdp } => {
                send_peer(&g, peer, json!({"type": "offer", "sdp": sdp, "seq": seq}))
            }
            MediaEvent::Refused {
                peer,
                error: err,
                fatal,
            } => {
                let code = match err {
                    hnth_media::MediaError::BadState(_) => "bad_state",
                    _ => "sdp_rejected",
                };
                let re = if fatal { "offer" } else { "answer" };
                if let Some(p) = g.peers.get(&peer) {
                    if let Some(c) = g.conns.get(&p.conn) {
                        let _ = c.tx.send(error(code, &client_message(&err), None, re));
                    }
                }
                if fatal {
                    self.media.closed(peer);
                    forget_peer(&mut g, &out, peer);
                }
            }
            MediaEvent::Connected { peer } => {
                let Some(p) = g.peers.get_mut(&peer) else {
                    return;
                };
                p.connected = true;
                tracing::info!(peer, name = %p.name, "media connected");
                let (meeting, site, kind) = (p.meeting, p.site_id, p.kind);
                if let (Some(site), PeerKind::Site | PeerKind::Control) = (site, kind) {
                    site_connection(&mut g, &out, meeting, site, true, now);
                }
                broadcast_consoles(&g, sites_msg(&g));
            }
            // A cut line (C2): the session and the site's place in the meeting are kept, so that
            // the site is back the moment its line is; the record keeps the interruption's
            // times (its connection ends when the silence began and starts again on resuming).
            MediaEvent::Interrupted { peer, silent_for } => {
                let Some(p) = g.peers.get_mut(&peer) else {
                    return;
                };
                p.interrupted = true;
                tracing::warn!(peer, name = %p.name, silent_ms = silent_for.as_millis() as u64, "media interrupted");
                if let (Some(site), PeerKind::Site | PeerKind::Control) = (p.site_id, p.kind) {
                    let since = now - chrono::Duration::from_std(silent_for).unwrap_or_default();
                    let _ = out.rec.send(Record::Connection {
                        meeting: p.meeting,
                        site,
                        connected: false,
                        at: since.timestamp(),
                    });
                }
                broadcast_consoles(&g, sites_msg(&g));
            }
            MediaEvent::Resumed { peer } => {
                let Some(p) = g.peers.get_mut(&peer) else {
                    return;
                };
                p.interrupted = false;
                tracing::info!(peer, name = %p.name, "media resumed");
                if let (Some(site), PeerKind::Site | PeerKind::Control) = (p.site_id, p.kind) {
                    let _ = out.rec.send(Record::Connection {
                        meeting: p.meeting,
                        site,
                        connected: true,
                        at: now.timestamp(),
                    });
                }
                broadcast_consoles(&g, sites_msg(&g));
            }
            MediaEvent::Closed { peer, reason } => {
                self.media.closed(peer);
                let Some(p) = forget_peer(&mut g, &out, peer) else {
                    return;
                };
                tracing::warn!(peer, name = %p.name, ?reason, "media peer closed");
                // A site still connected to the meeting is brought back by itself.
                if let (Some(site), PeerKind::Site) = (p.site_id, p.kind) {
                    let dialed = g.meetings.get(&p.meeting).is_some_and(|m| m.has_site(site));
                    if dialed
                        && g.conns.contains_key(&p.conn)
                        && reason != CloseReason::ProtocolError
                    {
                        send_join(&g, p.conn, p.meeting);
                    }
                }
                broadcast_consoles(&g, sites_msg(&g));
            }
            MediaEvent::Stats(s) => {
                if let Some(site) = g.peers.get(&s.peer).and_then(|p| p.site_id) {
                    let seen = g.dropped_seen.insert(s.peer, s.audio_dropped).unwrap_or(0);
                    *g.dropped.entry(site).or_default() += s.audio_dropped.saturating_sub(seen);
                }
                g.stats.insert(s.peer, s);
            }
            MediaEvent::SendVideo { peer, on } => {
                send_peer(&g, peer, json!({"type": "send_video", "on": on}))
            }
            MediaEvent::UnheardSpeech { peer } => {
                let Some((meeting, site)) = g
                    .peers
                    .get(&peer)
                    .and_then(|p| Some((p.meeting, p.site_id?)))
                else {
                    return;
                };
                let name = site_name(&g, site);
                let msg = json!({"type": "unheard", "meeting": meeting, "site": site}).to_string();
                for c in g.conns.keys().copied().collect::<Vec<_>>() {
                    if follows(&g, c, meeting) && g.conns[&c].account.role != Role::SiteDevice {
                        let _ = g.conns[&c].tx.send(msg.clone());
                    }
                }
                if let Some(m) = g.meetings.get_mut(&meeting) {
                    if let Some(v) = m.guard.unheard_speech(site, &name, now) {
                        tracing::warn!(meeting, site, "a microphone opened without the floor (C4)");
                        let _ = out.rec.send(Record::Unheard {
                            meeting,
                            site,
                            name,
                            violation: v,
                        });
                    }
                }
            }
        }
    }

    /// Once a second: every peer's link figures to the consoles, and the frames that change
    /// with time (the chair's rotation in a lecture).
    pub fn broadcast_stats(&self) {
        let mut g = self.lock();
        let list: Vec<Value> = g
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let s = g.stats.get(id)?;
                if let (PeerKind::Site, Some(code)) =
                    (p.kind, p.site_id.and_then(|site| site_code(&g, site)))
                {
                    crate::telemetry::site_link(code, s.loss_in, s.loss_out, s.rtt_ms, s.jitter_ms);
                }
                let report = p.site_id.and_then(|site| g.reports.get(&site));
                let pick = |k: &str| {
                    report
                        .and_then(|r| r.get(k))
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                Some(json!({
                    "site_id": p.site_id,
                    "stream": p.stream,
                    "name": p.name,
                    "kind": p.kind.as_str(),
                    "rtt_ms": s.rtt_ms,
                    "loss_in": s.loss_in,
                    "loss_out": s.loss_out,
                    "jitter_ms": s.jitter_ms,
                    "kbps_in": s.kbps_in,
                    "kbps_out": s.kbps_out,
                    "estimate_kbps": s.estimate_kbps,
                    "audio_dropped": s.audio_dropped,
                    "width": s.width.map(Value::from).unwrap_or_else(|| pick("width")),
                    "height": s.height.map(Value::from).unwrap_or_else(|| pick("height")),
                    "fps": s.fps.map(Value::from).unwrap_or_else(|| pick("fps")),
                    "audio_level": pick("audio_level"),
                }))
            })
            .collect();
        broadcast_consoles(&g, json!({"type": "stats", "list": list}).to_string());
        let now = Utc::now();
        let lectures: Vec<i64> = (g.meetings.values())
            .filter(|m| m.rules.lecture)
            .map(|m| m.id)
            .collect();
        for id in lectures {
            apply_meeting(&mut g, &self.out(), id, now);
        }
    }

    /// What `/metrics` shows of the live meetings: how many are open, the sites and consoles
    /// whose media is connected, and (C4) the audio dropped at the floor gate per site code.
    pub fn live_figures(&self) -> crate::telemetry::Live {
        let g = self.lock();
        let connected = |kinds: &[PeerKind]| {
            g.peers
                .values()
                .filter(|p| p.connected && kinds.contains(&p.kind))
                .count()
        };
        crate::telemetry::Live {
            meetings_open: g.meetings.len(),
            sites_connected: connected(&[PeerKind::Site]),
            consoles: connected(&[PeerKind::Control, PeerKind::Watch]),
            floor_dropped: g
                .sites
                .iter()
                .map(|s| (s.code.clone(), g.dropped.get(&s.id).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// The bookings whose meeting may be opened today (B4), to the consoles; at an approved
    /// booking's preparation time its meeting opens by itself if `meeting.auto_connect` is set.
    pub async fn refresh_bookings(&self) {
        let now = Utc::now();
        let list = match meetings::bookings_of_the_day(&self.db, now).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("reading the bookings of the day: {e}");
                return;
            }
        };
        if self.settings.auto_connect {
            for b in &list {
                let due = b.preparation_start <= now.timestamp();
                let open = self.lock().meetings.values().any(|m| m.booking == b.id);
                if due && !open && b.status() == BookingStatus::Approved {
                    match meetings::open_booking(&self.db, None, b.id, now).await {
                        Ok(opened) => self.start(opened, now),
                        Err(e) => tracing::error!(
                            booking = b.id,
                            "opening at the preparation time: {e:?}"
                        ),
                    }
                }
            }
            // Those just opened are held now.
            return Box::pin(self.refresh_bookings_once(now)).await;
        }
        self.show_bookings(&list, now);
    }

    async fn refresh_bookings_once(&self, now: DateTime<Utc>) {
        match meetings::bookings_of_the_day(&self.db, now).await {
            Ok(l) => self.show_bookings(&l, now),
            Err(e) => tracing::error!("reading the bookings of the day: {e}"),
        }
    }

    fn show_bookings(&self, list: &[store::bookings::Booking], now: DateTime<Utc>) {
        let mut g = self.lock();
        g.bookings = list
            .iter()
            .map(|b| {
                let live = g
                    .meetings
                    .values()
                    .find(|m| m.booking == b.id)
                    .map(|m| m.id);
                json!({
                    "id": b.id, "title": b.title, "kind": b.kind, "kind_label": b.kind_label_vi(),
                    "host_site": b.host_site_id, "host_site_name": b.host_site, "chair": b.chair,
                    "sites": b.sites, "site_names": b.site_names,
                    "preparation_start": b.preparation_start, "official_start": b.official_start,
                    "official_end": b.official_end, "emergency": b.emergency, "status": b.status,
                    "meeting": live, "due": b.preparation_start <= now.timestamp(),
                })
            })
            .collect();
        broadcast_consoles(&g, bookings_msg(&g));
    }

    /// The registry changed (room rules, names): later welcomes and site lists use the new one.
    pub async fn reload_sites(&self) {
        match store::registry::sites(&self.db).await {
            Ok(sites) => {
                let mut g = self.lock();
                let names: BTreeMap<i64, String> =
                    sites.iter().map(|s| (s.id, s.name.clone())).collect();
                for m in g.meetings.values_mut() {
                    m.rules.names = names.clone();
                }
                g.sites = sites;
                broadcast_consoles(&g, sites_msg(&g));
            }
            Err(e) => tracing::error!("reloading sites: {e}"),
        }
    }

    /// B5: an emergency meeting was registered: a banner on every console and an alert on the
    /// site app of every concerned site, at once.
    pub fn emergency_alert(&self, booking: i64, title: &str, sites: &[i64]) {
        let g = self.lock();
        let msg = json!({"type": "alert", "kind": "emergency", "booking": booking, "title": title})
            .to_string();
        broadcast_consoles(&g, msg.clone());
        for site in sites {
            if let Some(c) = g.site_conn.get(site).and_then(|c| g.conns.get(c)) {
                let _ = c.tx.send(msg.clone());
            }
        }
    }

    /// Sites as the console shows them (also for the server-rendered console page).
    pub fn sites_snapshot(&self) -> Value {
        let g = self.lock();
        serde_json::from_str(&sites_msg(&g)).unwrap_or(Value::Null)
    }
}

fn actor_of(account: &Account) -> Actor {
    Actor {
        role: account.role,
        scope: account.scope(),
    }
}

/// A refusal of the meeting's rules: `forbidden` for a role or scope that may not (recorded
/// when it is an attempt the regulation forbids: dialing, C6, or opening a microphone, C4),
/// `refused` otherwise, with the rule's own code as `reason`.
fn rule_refusal(v: &hnth_rules::Violation) -> Refusal {
    let mut r = forbidden(v);
    if v.code == "not_permitted" {
        if v.rule == hnth_rules::RuleId::C4 {
            r.record = Some("C4");
        }
    } else {
        r.code = "refused";
        r.record = None;
    }
    r.reason = Some(v.code);
    r
}

/// Why a message was refused.
struct Refusal {
    code: &'static str,
    message: String,
    /// The message in Vietnamese, for the violation report (R4); empty if there is none.
    vi: String,
    article: Option<&'static str>,
    /// The rule to record as a violation (R4), if the attempt itself breaks the regulation.
    record: Option<&'static str>,
    /// The rule's own code, for a refusal of the meeting's rules (`not_connected`, ...).
    reason: Option<&'static str>,
}

impl Refusal {
    fn message_vi(&self) -> &str {
        if self.vi.is_empty() {
            &self.message
        } else {
            &self.vi
        }
    }
    fn bad_request(m: &str) -> Self {
        Refusal {
            code: "bad_request",
            message: m.into(),
            vi: String::new(),
            article: None,
            record: None,
            reason: None,
        }
    }
    fn bad_state(m: &str) -> Self {
        Refusal {
            code: "bad_state",
            message: m.into(),
            vi: String::new(),
            article: None,
            record: None,
            reason: None,
        }
    }
    fn not_found(m: &str) -> Self {
        Refusal {
            code: "not_found",
            message: m.into(),
            vi: String::new(),
            article: None,
            record: None,
            reason: None,
        }
    }
    /// A failure of the server itself (the database): logged with what was being done, and
    /// told to the sender.
    fn internal(doing: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::error!("signaling: {doing}: {e}");
        Refusal {
            code: "internal",
            message: format!("internal error {doing}; see the server log"),
            vi: String::new(),
            article: None,
            record: None,
            reason: None,
        }
    }
}

/// Role and scope check of one signaling action (A1, C6), by the pure rules.
fn permit(account: &Account, action: &Action) -> Result<(), Refusal> {
    authorize(account.role, account.scope(), action).map_err(|v| forbidden(&v))
}

fn forbidden(v: &hnth_rules::Violation) -> Refusal {
    let rule = v.rule.as_str();
    Refusal {
        code: "forbidden",
        message: v.en.clone(),
        vi: v.vi.clone(),
        article: Some(rule),
        record: (rule == "C6").then_some("C6"),
        reason: None,
    }
}

/// A use case's refusal as the hub answers it; `doing` names what failed in the database.
fn refused(e: Refused, doing: &str) -> Refusal {
    match e {
        Refused::Rule(v) => forbidden(&v),
        Refused::Title => Refusal::bad_request(&format!(
            "title must be 1 to {} characters",
            meetings::MAX_TITLE
        )),
        Refused::NotFound(m) => Refusal::not_found(m),
        Refused::AlreadyOpen(id) => Refusal {
            vi: format!("Cuộc họp của đăng ký này đang diễn ra (cuộc họp số {id})"),
            ..Refusal::bad_state(&format!(
                "the booking's meeting is open already (meeting {id})"
            ))
        },
        Refused::Store(e) => Refusal::internal(doing, &e),
    }
}

/// A media refusal as told to the client: one line, without the parser's debug output (which
/// carries a heap address, `PointerOffset(0x…)`).
fn client_message(err: &hnth_media::MediaError) -> String {
    let text = err.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find(" at PointerOffset(") {
        out.push_str(&rest[..i]);
        rest = rest[i..].find(')').map_or("", |j| &rest[i + j + 1..]);
    }
    out.push_str(rest);
    out.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn send_join(g: &Inner, conn: ConnId, meeting: i64) {
    let Some(m) = g.meetings.get(&meeting) else {
        return;
    };
    if let Some(c) = g.conns.get(&conn) {
        let _ = c
            .tx
            .send(json!({"type": "join", "meeting": {"id": m.id, "title": m.title, "booking": m.booking}}).to_string());
    }
}

fn send_peer(g: &Inner, peer: PeerId, msg: Value) {
    if let Some(c) = g.peers.get(&peer).and_then(|p| g.conns.get(&p.conn)) {
        let _ = c.tx.send(msg.to_string());
    }
}

/// Tell a site to leave and stop its media.
fn leave_site(g: &mut Inner, out: &Out, site: i64, meeting: i64, reason: &str) {
    if let Some(conn) = g.site_conn.get(&site).copied() {
        if let Some(c) = g.conns.get(&conn) {
            let _ = c
                .tx
                .send(json!({"type": "leave", "meeting": meeting, "reason": reason}).to_string());
        }
        g.frames_sent.remove(&conn);
        drop_peer_of(g, out, conn);
    }
}

/// A `view` message's tracks, checked: (stream id, height).
fn view_heights(tracks: Vec<ViewTrack>) -> Result<Vec<(String, u16)>, Refusal> {
    if tracks.len() > VIEW_MAX_TRACKS {
        return Err(Refusal::bad_request(&format!(
            "a view names at most {VIEW_MAX_TRACKS} tracks"
        )));
    }
    tracks
        .into_iter()
        .map(|t| {
            if t.stream.is_empty() || t.stream.len() > 128 {
                return Err(Refusal::bad_request("a view's stream id is 1 to 128 bytes"));
            }
            if t.height > VIEW_MAX_HEIGHT {
                return Err(Refusal::bad_request(&format!(
                    "a view's height is at most {VIEW_MAX_HEIGHT} pixels"
                )));
            }
            Ok((t.stream, t.height as u16))
        })
        .collect()
}

fn drop_peer_of(g: &mut Inner, out: &Out, conn: ConnId) {
    if let Some(peer) = g.conn_peer.get(&conn).copied() {
        out.media.send(MediaCmd::RemovePeer { peer });
        forget_peer(g, out, peer);
    }
}

/// A media peer is gone: its site is no longer connected to the meeting (recorded), and the
/// others stop receiving it.
fn forget_peer(g: &mut Inner, out: &Out, peer: PeerId) -> Option<PeerInfo> {
    let p = g.peers.remove(&peer)?;
    g.stats.remove(&peer);
    g.sent.remove(&peer);
    g.dropped_seen.remove(&peer);
    if g.conn_peer.get(&p.conn) == Some(&peer) {
        g.conn_peer.remove(&p.conn);
    }
    broadcast_participants(g, p.meeting);
    if let (true, Some(site), PeerKind::Site | PeerKind::Control) = (p.connected, p.site_id, p.kind)
    {
        site_connection(g, out, p.meeting, site, false, Utc::now());
    }
    Some(p)
}

/// A site's media connected to its meeting, or its connection ended: the rules learn it (it
/// is heard, seen and may ask for the floor only while connected), the record keeps it (C2),
/// and the media core and the pages follow.
fn site_connection(
    g: &mut Inner,
    out: &Out,
    meeting: i64,
    site: i64,
    connected: bool,
    now: DateTime<Utc>,
) {
    let Some(m) = g.meetings.get_mut(&meeting) else {
        return;
    };
    let changes: Vec<Change> = if connected {
        m.rules.site_connected(site, now).unwrap_or_default()
    } else {
        m.rules.site_disconnected(site)
    };
    if changes.is_empty() {
        return;
    }
    let version = m.next_version(now);
    let _ = out.rec.send(Record::Connection {
        meeting,
        site,
        connected,
        at: now.timestamp(),
    });
    let _ = out.rec.send(Record::State {
        meeting,
        state: Box::new(m.rules.clone()),
        version,
    });
    apply_meeting(g, out, meeting, now);
}

/// The meeting's peers as its decisions need them.
fn peer_refs(g: &Inner, meeting: i64) -> Vec<PeerRef> {
    let mut v: Vec<PeerRef> = g
        .peers
        .iter()
        .filter(|(_, p)| p.meeting == meeting)
        .map(|(id, p)| PeerRef {
            id: *id,
            site: p.site_id,
            kind: p.kind,
            stream: p.stream.clone(),
        })
        .collect();
    v.sort_by_key(|p| p.id);
    v
}

fn site_code(g: &Inner, site: i64) -> Option<&str> {
    g.sites
        .iter()
        .find(|s| s.id == site)
        .map(|s| s.code.as_str())
}

fn site_name(g: &Inner, site: i64) -> String {
    g.sites
        .iter()
        .find(|s| s.id == site)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| format!("#{site}"))
}

/// After the meeting's state changed: the media core is told what each peer now receives and
/// whether it is heard (only what changed), and the pages get the state and their frames.
fn apply_meeting(g: &mut Inner, out: &Out, meeting: i64, now: DateTime<Utc>) {
    let refs = peer_refs(g, meeting);
    let Some(m) = g.meetings.get(&meeting) else {
        return;
    };
    let setups: Vec<(PeerId, PeerSetup)> = refs
        .iter()
        .map(|p| (p.id, m.setup_for(p, &refs, g.views, now)))
        .collect();
    // The floor first: a gate opens or closes at once, while a frame's change renegotiates
    // (a few milliseconds per receiver, all of them when the floor moves the large cell).
    for (peer, setup) in &setups {
        if g.sent.get(peer).map(|l| l.heard) != Some(setup.heard) {
            out.media.send(MediaCmd::Floor {
                peer: *peer,
                open: setup.heard,
            });
        }
    }
    for (peer, setup) in setups {
        if g.sent.get(&peer).map(|l| &l.receives) != Some(&setup.receives) {
            out.media.send(MediaCmd::Receives {
                peer,
                receives: setup.receives.clone(),
            });
        }
        g.sent.insert(peer, setup);
    }
    publish(g, meeting, now);
}

/// Whether connection `conn` follows meeting `meeting`'s state: every console, the chair of
/// its chair's site, and the app of each of its sites.
fn follows(g: &Inner, conn: ConnId, meeting: i64) -> bool {
    let (Some(c), Some(m)) = (g.conns.get(&conn), g.meetings.get(&meeting)) else {
        return false;
    };
    let a = &c.account;
    match a.role {
        _ if a.is_control_center() => true,
        Role::Chair => a.site_id == Some(m.rules.chair_site),
        Role::SiteDevice => a.site_id.is_some_and(|s| m.has_site(s)),
        _ => false,
    }
}

fn state_msg(g: &Inner, meeting: i64, now: DateTime<Utc>) -> String {
    let Some(m) = g.meetings.get(&meeting) else {
        return String::new();
    };
    let refs = peer_refs(g, meeting);
    let name = |s: i64| site_name(g, s);
    m.state_msg(&refs, &name, now).to_string()
}

/// The meeting's state to everyone following it, and each screen's frame to the page showing
/// it (when it changed).
fn publish(g: &mut Inner, meeting: i64, now: DateTime<Utc>) {
    let state = state_msg(g, meeting, now);
    if state.is_empty() {
        return;
    }
    for (id, c) in &g.conns {
        if follows(g, *id, meeting) {
            let _ = c.tx.send(state.clone());
        }
    }
    let refs = peer_refs(g, meeting);
    let Some(m) = g.meetings.get(&meeting) else {
        return;
    };
    let name = |s: i64| site_name(g, s);
    let mut frames = Vec::new();
    for p in &refs {
        let (Some(site), PeerKind::Site | PeerKind::Control) = (p.site, p.kind) else {
            continue;
        };
        let Some(conn) = g.peers.get(&p.id).map(|x| x.conn) else {
            continue;
        };
        let f = m.frame_msg(site, &refs, &name, now).to_string();
        if g.frames_sent.get(&conn) != Some(&f) {
            frames.push((conn, f));
        }
    }
    for (conn, f) in frames {
        if let Some(c) = g.conns.get(&conn) {
            let _ = c.tx.send(f.clone());
        }
        g.frames_sent.insert(conn, f);
    }
}

fn broadcast_participants(g: &Inner, meeting: i64) {
    let list: Vec<Value> = g
        .peers
        .values()
        .filter(|p| p.meeting == meeting && p.kind != PeerKind::Watch)
        .map(|p| json!({"stream": p.stream, "site_id": p.site_id, "name": p.name, "kind": p.kind.as_str()}))
        .collect();
    let msg = json!({"type": "participants", "meeting": meeting, "list": list}).to_string();
    let mut sent = BTreeSet::new();
    for p in g.peers.values().filter(|p| p.meeting == meeting) {
        if sent.insert(p.conn) {
            if let Some(c) = g.conns.get(&p.conn) {
                let _ = c.tx.send(msg.clone());
            }
        }
    }
}

fn broadcast_consoles(g: &Inner, msg: String) {
    for c in g.conns.values().filter(|c| c.account.is_control_center()) {
        let _ = c.tx.send(msg.clone());
    }
}

fn sites_msg(g: &Inner) -> String {
    let list: Vec<Value> = g
        .sites
        .iter()
        .filter(|s| !s.is_control_center)
        .map(|s| {
            let online = g.site_conn.contains_key(&s.id);
            let meeting = g.meetings.values().find(|m| m.has_site(s.id)).map(|m| m.id);
            let media = g.peers.values().find(|p| p.site_id == Some(s.id)).map(|p| match (p.connected, p.interrupted) {
                (true, false) => "connected",
                (true, true) => "interrupted",
                _ => "connecting",
            });
            let presence = match (online, meeting) {
                (false, _) => "offline",
                (true, Some(_)) => "in_meeting",
                (true, None) => "idle",
            };
            json!({"id": s.id, "code": s.code, "name": s.name, "presence": presence, "meeting": meeting, "media": media.unwrap_or("none")})
        })
        .collect();
    json!({"type": "sites", "list": list}).to_string()
}

fn meetings_msg(g: &Inner) -> String {
    let list: Vec<Value> = g
        .meetings
        .values()
        .map(|m| {
            json!({"id": m.id, "title": m.title, "booking": m.booking, "emergency": m.emergency,
                   "sites": m.dialed().collect::<Vec<_>>(), "seat": m.seat_user})
        })
        .collect();
    json!({"type": "meetings", "list": list}).to_string()
}

fn bookings_msg(g: &Inner) -> String {
    json!({"type": "bookings", "list": g.bookings}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::refuse;
    use sqlx::SqlitePool;

    struct TestHub {
        _dir: tempfile::TempDir,
        db: SqlitePool,
        hub: Arc<Hub>,
        /// What the hub asked of the media core.
        media: UnboundedReceiver<MediaCmd>,
    }

    /// A Hub on a fresh database with the control center (site 1) and two sites (2, 3). The
    /// media workers are a channel the test reads.
    async fn test_hub() -> TestHub {
        test_hub_with(MeetingSettings::default()).await
    }

    async fn test_hub_with(settings: MeetingSettings) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("hnth.db")).await.unwrap();
        for sql in [
            "INSERT INTO units (id, code, name, kind) VALUES (1, 'vp', 'Văn phòng UBND tỉnh', 'provincial_office')",
            "INSERT INTO sites (id, code, name, unit_id, is_control_center) VALUES (1, 'ttdk', 'Trung tâm điều khiển', 1, 1)",
            "INSERT INTO sites (id, code, name, unit_id) VALUES (2, 'huyen', 'Huyện Một', 1)",
            "INSERT INTO sites (id, code, name, unit_id) VALUES (3, 'huyen-hai', 'Huyện Hai', 1)",
        ] {
            sqlx::query(sql).execute(&db).await.unwrap();
        }
        let (media_tx, media) = unbounded_channel();
        let hub = Hub::new(
            db.clone(),
            MediaRouter::new(vec![media_tx]),
            Outbox::default(),
            settings,
            Views::default(),
        )
        .await
        .unwrap();
        TestHub {
            _dir: dir,
            db,
            hub,
            media,
        }
    }

    impl TestHub {
        /// A connection of a new account with `role` (and `site`).
        async fn connect(
            &self,
            username: &str,
            role: Role,
            site: Option<i64>,
        ) -> (ConnId, UnboundedReceiver<String>) {
            let mut tx = store::begin_write(&self.db).await.unwrap();
            let new = store::accounts::NewAccount {
                username,
                display_name: username,
                password_hash: "x",
                role,
                site_id: site,
                unit_id: None,
            };
            let id = store::accounts::insert(&mut tx, &new).await.unwrap();
            tx.commit().await.unwrap();
            let account = Account {
                id,
                username: username.into(),
                display_name: username.into(),
                role,
                site_id: site,
                unit_id: None,
            };
            let (tx, rx) = unbounded_channel();
            (self.hub.register(account, tx), rx)
        }

        fn media_cmds(&mut self) -> Vec<MediaCmd> {
            std::iter::from_fn(|| self.media.try_recv().ok()).collect()
        }
    }

    async fn say(hub: &Hub, conn: ConnId, msg: Value) {
        hub.handle(conn, &msg.to_string()).await
    }

    /// The messages of one type received so far.
    fn drain(rx: &mut UnboundedReceiver<String>, typ: &str) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            let v: Value = serde_json::from_str(&m).unwrap();
            if v["type"] == typ {
                out.push(v);
            }
        }
        out
    }

    /// The one error received since the last look, answering `re`, with its code.
    fn one_error(rx: &mut UnboundedReceiver<String>, re: &str, code: &str) -> Value {
        let errors = drain(rx, "error");
        assert_eq!(errors.len(), 1, "{re}: {errors:?}");
        assert_eq!(
            (&errors[0]["ref"], &errors[0]["code"]),
            (&json!(re), &json!(code)),
            "{:?}",
            errors[0]
        );
        errors[0].clone()
    }

    async fn count(db: &SqlitePool, table: &str) -> i64 {
        let n: (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(db)
            .await
            .unwrap();
        n.0
    }

    /// An emergency opened at once: its meeting's id.
    async fn open_emergency(t: &TestHub, op: ConnId, rx: &mut UnboundedReceiver<String>) -> i64 {
        say(
            &t.hub,
            op,
            json!({"type": "open_meeting", "title": "Bão số 9"}),
        )
        .await;
        let opened = drain(rx, "meeting_opened");
        assert_eq!(opened.len(), 1, "{opened:?}");
        opened[0]["meeting"]["id"].as_i64().unwrap()
    }

    /// A meeting whose opening cannot be recorded (with its audit entry, A3) is not opened, nor
    /// its emergency booking registered; the console is told.
    #[tokio::test]
    async fn open_meeting_that_cannot_be_recorded_is_refused() {
        let t = test_hub().await;
        let (op, mut rx) = t.connect("op", Role::Operator, None).await;
        refuse(&t.db, "audit", "INSERT").await;
        t.hub
            .handle(op, r#"{"type":"open_meeting","title":"Giao ban"}"#)
            .await;
        one_error(&mut rx, "open_meeting", "internal");
        assert!(t.hub.lock().meetings.is_empty());
        assert_eq!(
            count(&t.db, "meetings").await,
            0,
            "no meeting row without its audit entry"
        );
        assert_eq!(count(&t.db, "bookings").await, 0, "nor its booking");
        // Neither a booking nor a title: nothing to open.
        say(&t.hub, op, json!({"type": "open_meeting"})).await;
        one_error(&mut rx, "open_meeting", "bad_request");
    }

    /// Dialing, hanging up and closing that cannot be recorded are answered with an error (the
    /// live meeting itself goes on, or ends, as asked).
    #[tokio::test]
    async fn unrecorded_dial_hangup_and_close_are_answered_with_errors() {
        let t = test_hub().await;
        let (op, mut rx) = t.connect("op", Role::Operator, None).await;
        let meeting = open_emergency(&t, op, &mut rx).await;

        refuse(&t.db, "audit", "INSERT").await;
        say(
            &t.hub,
            op,
            json!({"type": "dial", "meeting": meeting, "site": 2}),
        )
        .await;
        one_error(&mut rx, "dial", "internal");
        assert!(t.hub.lock().meetings[&meeting].has_site(2), "dialed live");
        sqlx::query("DROP TRIGGER refuse_audit_INSERT")
            .execute(&t.db)
            .await
            .unwrap();
        say(
            &t.hub,
            op,
            json!({"type": "hangup", "meeting": meeting, "site": 2}),
        )
        .await;
        say(
            &t.hub,
            op,
            json!({"type": "dial", "meeting": meeting, "site": 2}),
        )
        .await;
        assert!(drain(&mut rx, "error").is_empty());
        let added: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM audit WHERE action IN ('meeting_add_site', 'meeting_drop_site')",
        )
        .fetch_one(&t.db)
        .await
        .unwrap();
        assert_eq!(
            added.0, 2,
            "the second dial and the hang-up are in the audit trail"
        );

        refuse(&t.db, "meetings", "UPDATE").await;
        say(
            &t.hub,
            op,
            json!({"type": "close_meeting", "meeting": meeting}),
        )
        .await;
        let all: Vec<Value> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| serde_json::from_str(&m).unwrap())
            .collect();
        assert!(
            all.iter().any(|m| m["type"] == "meeting_closed"),
            "the meeting is closed as asked: {all:?}"
        );
        let errors: Vec<&Value> = all.iter().filter(|m| m["type"] == "error").collect();
        assert_eq!(errors.len(), 1, "close: {errors:?}");
        assert_eq!(errors[0]["ref"], "close_meeting");
        assert_eq!(errors[0]["code"], "internal");
    }

    /// C4 through the hub: a site joins unheard; the operator's grant opens its gate at the
    /// media core and its withdrawal closes it; a site giving itself the floor is refused with
    /// the article and recorded (R4); a command out of place changes nothing.
    #[tokio::test]
    async fn the_floor_is_given_by_the_control_center_and_applied_to_the_media_core() {
        let mut t = test_hub().await;
        let (op, mut rx) = t.connect("op", Role::Operator, None).await;
        let (site, mut site_rx) = t.connect("dc-huyen", Role::SiteDevice, Some(2)).await;
        let meeting = open_emergency(&t, op, &mut rx).await;
        say(
            &t.hub,
            op,
            json!({"type": "dial", "meeting": meeting, "site": 2}),
        )
        .await;
        assert_eq!(drain(&mut site_rx, "join").len(), 1, "the site is called");
        // Not connected yet: no floor (C4).
        say(&t.hub, op, json!({"type": "command", "meeting": meeting, "command": {"type": "give_floor", "site": 2}})).await;
        let e = one_error(&mut rx, "command", "refused");
        assert_eq!(
            (e["reason"].as_str(), e["article"].as_str()),
            (Some("not_connected"), Some("C4"))
        );
        assert!(e["message_vi"].as_str().unwrap().contains("Điều 7"), "{e}");
        t.media_cmds();
        say(
            &t.hub,
            site,
            json!({"type": "offer", "meeting": meeting, "sdp": "v=0"}),
        )
        .await;
        let peer = match t.media_cmds().as_slice() {
            [MediaCmd::AddPeer { peer, setup, .. }] => {
                assert!(!setup.heard, "a site joins with its microphone closed");
                *peer
            }
            other => panic!("{other:?}"),
        };
        t.hub.on_media(MediaEvent::Connected { peer });
        let state = drain(&mut site_rx, "meeting_state");
        let last = state.last().expect("the site follows its meeting");
        assert!(last["sites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == 2 && s["connected"] == true));

        // The site gives itself the floor: refused (C4) and recorded.
        say(&t.hub, site, json!({"type": "command", "meeting": meeting, "command": {"type": "give_floor", "site": 2}})).await;
        let e = one_error(&mut site_rx, "command", "forbidden");
        assert_eq!(e["article"], "C4");
        let v: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM violations WHERE rule = 'C4'")
            .fetch_one(&t.db)
            .await
            .unwrap();
        assert_eq!(v.0, 1);
        assert!(t
            .media_cmds()
            .iter()
            .all(|c| !matches!(c, MediaCmd::Floor { .. })));

        // The operator gives it: the gate opens; takes it back: it closes.
        say(&t.hub, op, json!({"type": "command", "meeting": meeting, "command": {"type": "give_floor", "site": 2}})).await;
        assert!(drain(&mut rx, "error").is_empty());
        let opened = t.media_cmds();
        assert!(
            opened
                .iter()
                .any(|c| matches!(c, MediaCmd::Floor { peer: p, open: true } if *p == peer)),
            "{opened:?}"
        );
        say(&t.hub, op, json!({"type": "command", "meeting": meeting, "command": {"type": "take_floor", "site": 2}})).await;
        let closed = t.media_cmds();
        assert!(
            closed
                .iter()
                .any(|c| matches!(c, MediaCmd::Floor { peer: p, open: false } if *p == peer)),
            "{closed:?}"
        );
        // The state is written down (for a restart to restore it).
        let state: (Option<String>,) = sqlx::query_as("SELECT state FROM meetings WHERE id = ?")
            .bind(meeting)
            .fetch_one(&t.db)
            .await
            .unwrap();
        let state: Rules = serde_json::from_str(&state.0.expect("state written")).unwrap();
        assert!(state.floor.is_empty() && state.participants[&2].connected_since.is_some());

        // A speak request from the site (C8), passed (C3) and granted by the operator.
        say(&t.hub, site, json!({"type": "command", "meeting": meeting, "command": {"type": "request_floor", "site": 2, "delegate": "Nguyễn Văn An", "position": "Phó Chủ tịch"}})).await;
        assert!(drain(&mut site_rx, "error").is_empty());
        let st = drain(&mut rx, "meeting_state");
        let q = &st.last().unwrap()["queue"];
        assert_eq!(q[0]["delegate"], "Nguyễn Văn An");
        let id = q[0]["id"].as_u64().unwrap();
        say(&t.hub, op, json!({"type": "command", "meeting": meeting, "command": {"type": "grant", "request": id}})).await;
        assert!(drain(&mut rx, "error").is_empty());
        assert!(t
            .media_cmds()
            .iter()
            .any(|c| matches!(c, MediaCmd::Floor { peer: p, open: true } if *p == peer)));
        // Unknown meeting, unknown command: refused, nothing changes.
        say(
            &t.hub,
            op,
            json!({"type": "command", "meeting": 999, "command": {"type": "close_all"}}),
        )
        .await;
        one_error(&mut rx, "command", "not_found");
        say(
            &t.hub,
            op,
            json!({"type": "command", "meeting": meeting, "command": {"type": "fly"}}),
        )
        .await;
        one_error(&mut rx, "command", "bad_request");
        // The media drop ends its connection in the record and the rules.
        t.hub.on_media(MediaEvent::Closed {
            peer,
            reason: CloseReason::LinkLost,
        });
        assert!(t.hub.lock().meetings[&meeting]
            .rules
            .connected()
            .iter()
            .all(|s| *s != 2));
        assert_eq!(
            drain(&mut site_rx, "join").len(),
            1,
            "called back after the drop"
        );
    }

    /// An approved booking of site 2 hosted at the control center, preparing from `prep`.
    async fn approved_booking(db: &SqlitePool, prep: i64) -> i64 {
        let mut tx = store::begin_write(db).await.unwrap();
        let fields = store::bookings::Fields {
            title: "Giao ban".into(),
            kind: hnth_rules::booking::BookingKind::GiaoBan,
            host_unit_id: 1,
            chair: "Chủ tịch".into(),
            host_site_id: 1,
            preparation_start: prep,
            official_start: prep + 1800,
            official_end: prep + 7200,
            emergency: false,
            notice_number: String::new(),
            notice_date: String::new(),
        };
        let id = store::bookings::insert(&mut tx, &fields, BookingStatus::Approved, 1, prep)
            .await
            .unwrap();
        store::bookings::replace_sites(&mut tx, id, &[1, 2])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        id
    }

    /// The consoles list the bookings of the day; one opens from its booking with exactly its
    /// sites called (B4, C6). With `meeting.auto_connect`, a due booking opens by itself.
    #[tokio::test]
    async fn a_booking_opens_its_meeting_with_its_sites_by_hand_or_at_its_time() {
        let t = test_hub().await;
        let (_op, _) = t.connect("op", Role::Operator, None).await;
        let (op, mut rx) = t.connect("op2", Role::Operator, None).await;
        let (_s2, mut rx2) = t.connect("dc-2", Role::SiteDevice, Some(2)).await;
        let (_s3, mut rx3) = t.connect("dc-3", Role::SiteDevice, Some(3)).await;
        let now = Utc::now().timestamp();
        let later = approved_booking(&t.db, now + 3600).await;
        t.hub.refresh_bookings().await;
        let list = drain(&mut rx, "bookings").pop().expect("bookings");
        let b = &list["list"][0];
        assert_eq!(
            (b["id"].as_i64(), b["due"].as_bool()),
            (Some(later), Some(false))
        );
        assert!(
            t.hub.lock().meetings.is_empty(),
            "nothing opens by itself by default"
        );
        say(
            &t.hub,
            op,
            json!({"type": "open_meeting", "booking": later}),
        )
        .await;
        assert!(drain(&mut rx, "error").is_empty());
        assert_eq!(drain(&mut rx2, "join").len(), 1, "its site is called");
        assert!(drain(&mut rx3, "join").is_empty(), "and only its sites");
        // Opening it twice is refused.
        say(
            &t.hub,
            op,
            json!({"type": "open_meeting", "booking": later}),
        )
        .await;
        one_error(&mut rx, "open_meeting", "bad_state");
        let held = store::bookings::get(&t.db, later).await.unwrap().unwrap();
        assert_eq!(held.status(), BookingStatus::Held);

        let t = test_hub_with(MeetingSettings {
            auto_connect: true,
            ..MeetingSettings::default()
        })
        .await;
        let (_s2, mut rx2) = t.connect("dc-2", Role::SiteDevice, Some(2)).await;
        let ahead = approved_booking(&t.db, now + 3600).await;
        let due = approved_booking(&t.db, now - 60).await;
        t.hub.refresh_bookings().await;
        let open: Vec<i64> = t.hub.lock().meetings.values().map(|m| m.booking).collect();
        assert_eq!(
            open,
            vec![due],
            "the due booking opened, not the one ahead ({ahead})"
        );
        assert_eq!(drain(&mut rx2, "join").len(), 1);
        let all = store::meetings::MeetingFilter {
            limit: 10,
            ..Default::default()
        };
        let m = store::meetings::list(&t.db, all).await.unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].opened_by, None, "opened by the system");
        t.hub.refresh_bookings().await;
        assert_eq!(t.hub.lock().meetings.len(), 1, "opened once");
    }

    /// B5: an emergency opened at once alerts every console and the sites it calls; its refusals
    /// name sites by name; the seat goes with the console that watches or moves on.
    #[tokio::test]
    async fn an_emergency_alerts_at_once_and_the_seat_follows_its_console() {
        let mut t = test_hub().await;
        let (op, mut rx) = t.connect("op", Role::Operator, None).await;
        let (_s2, mut rx2) = t.connect("dc-2", Role::SiteDevice, Some(2)).await;
        let (_s3, mut rx3) = t.connect("dc-3", Role::SiteDevice, Some(3)).await;
        say(
            &t.hub,
            op,
            json!({"type": "open_meeting", "title": "Lũ quét", "sites": [2]}),
        )
        .await;
        let alert = drain(&mut rx2, "alert");
        assert_eq!(alert.len(), 1, "the site called is alerted");
        assert_eq!(alert[0]["title"], "Lũ quét");
        assert!(
            drain(&mut rx3, "alert").is_empty(),
            "a site not called is not"
        );
        let all: Vec<Value> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| serde_json::from_str(&m).unwrap())
            .collect();
        assert!(
            all.iter().any(|m| m["type"] == "alert"),
            "the consoles are alerted"
        );
        let meeting = all
            .iter()
            .find(|m| m["type"] == "meeting_opened")
            .expect("opened")["meeting"]["id"]
            .as_i64()
            .unwrap();
        // A refusal names the site.
        say(&t.hub, op, json!({"type": "command", "meeting": meeting, "command": {"type": "give_floor", "site": 2}})).await;
        let e = one_error(&mut rx, "command", "refused");
        assert!(
            e["message_vi"].as_str().unwrap().contains("Huyện Một"),
            "{e}"
        );
        // The seat: taken by the console's offer, left when it watches.
        say(
            &t.hub,
            op,
            json!({"type": "offer", "meeting": meeting, "sdp": "v=0"}),
        )
        .await;
        assert_eq!(t.hub.lock().meetings[&meeting].seat, Some(op));
        say(
            &t.hub,
            op,
            json!({"type": "offer", "meeting": meeting, "sdp": "v=0", "watch": true}),
        )
        .await;
        assert_eq!(t.hub.lock().meetings[&meeting].seat, None);
        t.media_cmds();
    }

    /// Hostile input: whatever a page sends (any type, fields nearly right or wrong, text that
    /// is no JSON), from a site, the operator or a chair, the hub answers or drops it and never
    /// panics, and every answer is JSON. `HNTH_FUZZ_CASES` inputs (scripts/fuzz-long.sh).
    #[test]
    fn fuzz_signaling_no_message_makes_the_hub_panic() {
        use crate::fuzzing::{cases, object, text, value};
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        use std::cell::RefCell;

        const KEYS: &[&str] = &[
            "meeting",
            "site",
            "sdp",
            "seq",
            "booking",
            "title",
            "chair",
            "sites",
            "tracks",
            "width",
            "height",
            "fps",
            "audio_level",
            "watch",
            "on",
            "request",
            "delegate",
            "position",
            "present",
            "absent",
            "frame",
            "params",
            "layout",
            "cells",
            "mid",
            "name",
            "reason",
            "rotation_seconds",
            "chair_always_heard",
        ];
        const COMMANDS: &[&str] = &[
            "add_site",
            "drop_site",
            "give_floor",
            "take_floor",
            "close_all",
            "set_debate",
            "set_lecture",
            "request_floor",
            "withdraw",
            "pass",
            "grant",
            "decline",
            "clear_requests",
            "set_frame",
            "set_params",
            "report_roll_call",
            "nonsense",
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (t, conns) = rt.block_on(async {
            let t = test_hub().await;
            let op = t.connect("op", Role::Operator, None).await;
            let site = t.connect("dc-huyen", Role::SiteDevice, Some(2)).await;
            let chair = t.connect("ct-huyen-hai", Role::Chair, Some(3)).await;
            say(
                &t.hub,
                op.0,
                json!({"type": "open_meeting", "title": "Khẩn cấp", "sites": [2, 3]}),
            )
            .await;
            (RefCell::new(t), RefCell::new(vec![op, site, chair]))
        });
        let mut types: Vec<&str> = KNOWN_TYPES.to_vec();
        types.extend(["unknown", ""]);
        let message = (
            0..3usize,
            prop::sample::select(types),
            object(KEYS, value(KEYS)),
            prop::option::of((prop::sample::select(COMMANDS), object(KEYS, value(KEYS)))),
        )
            .prop_map(|(who, typ, mut body, command)| {
                body["type"] = json!(typ);
                if let Some((ctyp, mut cmd)) = command {
                    cmd["type"] = json!(ctyp);
                    body["command"] = cmd;
                }
                (who, body.to_string())
            });
        // Messages of the right shape with values in range or just out of it: what gets past
        // the parsing to the rules, the database and the media commands.
        let id = || prop_oneof![0i64..5, Just(-1), Just(i64::MAX)];
        let delegate = || {
            (text(), text(), text())
                .prop_map(|(n, p, r)| json!({"name": n, "position": p, "reason": r}))
        };
        let layouts = [
            "1x1", "2x2", "3x3", "4x4", "1+5", "1+7", "2+8", "1+12", "speaker", "lecture", "9x9",
        ];
        let frame = (
            prop::sample::select(layouts.to_vec()),
            prop::option::of(prop::collection::vec(prop::option::of(id()), 0..20)),
        )
            .prop_map(|(layout, cells)| match cells {
                Some(c) => json!({"layout": layout, "fill": {"kind": "manual", "cells": c}}),
                None => json!({"layout": layout, "fill": {"kind": "floor_order"}}),
            });
        let command = (
            prop::sample::select(COMMANDS),
            (id(), id(), any::<bool>(), text(), text()),
            prop::collection::vec(delegate(), 0..3),
            prop::collection::vec(delegate(), 0..3),
            frame,
            (0u32..5000, 0u32..20_000, 0u32..600),
        )
            .prop_map(
                |(typ, (site, request, on, who, position), present, absent, frame, p)| {
                    json!({
                        "type": typ, "site": site, "request": request, "on": on,
                        "delegate": who, "position": position, "present": present,
                        "absent": absent, "frame": frame,
                        "params": {"max_height": p.0, "max_kbps": p.1, "rotate_secs": p.2},
                    })
                },
            );
        let shaped = (
            0..3usize,
            prop::sample::select(KNOWN_TYPES.to_vec()),
            (id(), id(), id(), 0u64..6, any::<bool>()),
            (text(), text(), prop::collection::vec(id(), 0..5)),
            prop::collection::vec((text(), 0u32..3000), 0..4),
            command,
        )
            .prop_map(|(who, typ, (meeting, site, booking, seq, watch), (title, sdp, sites), tracks, command)| {
                let tracks: Vec<Value> =
                    tracks.into_iter().map(|(s, h)| json!({"stream": s, "height": h})).collect();
                // A closed meeting stops the course: close one only now and then.
                let typ = if typ == "close_meeting" && seq > 0 { "command" } else { typ };
                let body = match typ {
                    "offer" => json!({"meeting": meeting, "sdp": sdp, "watch": watch}),
                    "answer" => json!({"sdp": sdp, "seq": seq}),
                    "report" => json!({"width": seq * 640, "height": seq * 360, "fps": 25.0, "audio_level": 0.5}),
                    "media_lost" | "close_meeting" | "dial_all" | "join_request" => json!({"meeting": meeting}),
                    "view" => json!({"tracks": tracks}),
                    "open_meeting" if watch => json!({"booking": booking}),
                    "open_meeting" => json!({"title": title, "sites": sites, "chair": sdp}),
                    "dial" | "hangup" => json!({"meeting": meeting, "site": site}),
                    _ => json!({"meeting": meeting, "command": command}),
                };
                let mut body = body;
                body["type"] = json!(typ);
                (who, body.to_string())
            });
        let input = prop_oneof![6 => shaped, 3 => message, 1 => (0..3usize, text())];
        let mut runner = TestRunner::new(Config {
            cases: cases(1500),
            failure_persistence: None,
            ..Config::default()
        });
        // What came back, by type (and error code): the run must reach past the parsing.
        let seen = RefCell::new(std::collections::BTreeMap::<String, u64>::new());
        runner
            .run(&input, |(who, msg)| {
                let conn = conns.borrow()[who].0;
                rt.block_on(t.borrow().hub.handle(conn, &msg));
                for (_, rx) in conns.borrow_mut().iter_mut() {
                    while let Ok(reply) = rx.try_recv() {
                        let v = serde_json::from_str::<Value>(&reply);
                        prop_assert!(v.is_ok(), "not JSON: {reply}");
                        let v = v.unwrap();
                        let key = format!("{} {}", v["type"], v["code"]);
                        *seen.borrow_mut().entry(key).or_default() += 1;
                    }
                }
                t.borrow_mut().media_cmds();
                Ok(())
            })
            .unwrap();
        let seen = seen.into_inner();
        eprintln!("signaling fuzz, replies by type and code: {seen:?}");
        for reached in ["\"meeting_state\" null", "\"error\" \"forbidden\""] {
            assert!(
                seen.contains_key(reached),
                "never reached {reached}: {seen:?}"
            );
        }
    }
}
