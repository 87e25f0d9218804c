//! Signaling: the WebSocket of every site app and console, presence, meetings and dialing (C6).
//! The protocol is documented in `docs/SIGNALING.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use hnth_media::{CloseReason, LinkStats, PeerId};
use hnth_rules::roles::{authorize, Action, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::SqlitePool;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::auth::{Account, CurrentUser};
use crate::db::{self, Site};
use crate::driver::{MediaCmd, MediaEvent, MediaRouter};

type ConnId = u64;

/// A message a client may send. Anything else is refused with `bad_request`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMsg {
    Offer {
        meeting: i64,
        sdp: String,
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
    OpenMeeting {
        title: String,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewTrack {
    stream: String,
    height: u32,
}

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
];

struct Conn {
    account: Account,
    tx: UnboundedSender<String>,
}

struct Meeting {
    id: i64,
    title: String,
    sites: BTreeSet<i64>,
}

struct PeerInfo {
    conn: ConnId,
    meeting: i64,
    site_id: Option<i64>,
    name: String,
    stream: String,
    kind: &'static str,
    connected: bool,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<ConnId, Conn>,
    sites: Vec<Site>,
    site_conn: HashMap<i64, ConnId>,
    meetings: BTreeMap<i64, Meeting>,
    peers: HashMap<PeerId, PeerInfo>,
    conn_peer: HashMap<ConnId, PeerId>,
    stats: HashMap<PeerId, LinkStats>,
    reports: HashMap<i64, Value>,
    next_conn: ConnId,
    next_peer: PeerId,
}

/// The live state shared by every connection.
pub struct Hub {
    inner: Mutex<Inner>,
    db: SqlitePool,
    media: MediaRouter,
}

/// An error to the sender; never closes the socket.
fn error(code: &str, message: &str, article: Option<&str>, re: &str) -> String {
    json!({"type": "error", "code": code, "message": message, "article": article, "ref": re})
        .to_string()
}

impl Hub {
    pub async fn new(db: SqlitePool, media: MediaRouter) -> anyhow::Result<Arc<Hub>> {
        let sites = db::sites(&db).await?;
        Ok(Arc::new(Hub {
            inner: Mutex::new(Inner {
                sites,
                next_conn: 1,
                next_peer: 1,
                ..Default::default()
            }),
            db,
            media,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve one WebSocket until it closes.
    pub async fn serve(self: Arc<Hub>, socket: WebSocket, user: CurrentUser) {
        let (tx, mut rx) = unbounded_channel::<String>();
        let conn = self.register(user.account.clone(), tx);
        let (mut sink, mut stream) = socket.split();
        let mut ping = tokio::time::interval(Duration::from_secs(10));
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(Ok(msg)) = msg else { break };
                    last_heard = tokio::time::Instant::now();
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
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() { break; }
                }
            }
        }
        self.unregister(conn);
    }

    pub(crate) fn register(&self, account: Account, tx: UnboundedSender<String>) -> ConnId {
        let mut g = self.lock();
        let id = g.next_conn;
        g.next_conn += 1;
        let site = account
            .site_id
            .and_then(|s| g.sites.iter().find(|x| x.id == s).cloned());
        let meeting = site
            .as_ref()
            .and_then(|s| g.meetings.values().find(|m| m.sites.contains(&s.id)))
            .map(|m| json!({"id": m.id, "title": m.title}));
        let _ = tx.send(
            json!({
                "type": "welcome",
                "role": account.role.as_str(),
                "user": {"username": account.username, "display_name": account.display_name},
                "site": site.as_ref().map(|s| json!({"id": s.id, "code": s.code, "name": s.name, "room_rules": s.room_rules})),
                "meeting": meeting,
            })
            .to_string(),
        );
        if account.role == Role::SiteDevice {
            if let Some(site) = &site {
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
                    drop_peer_of(&mut g, &self.media, old);
                }
                if let Some(m) = &meeting {
                    let _ = tx.send(json!({"type": "join", "meeting": m}).to_string());
                }
            }
        }
        if account.is_control_center() {
            let _ = tx.send(sites_msg(&g));
            let _ = tx.send(meetings_msg(&g));
        }
        g.conns.insert(id, Conn { account, tx });
        broadcast_consoles(&g, sites_msg(&g));
        id
    }

    pub(crate) fn unregister(&self, conn: ConnId) {
        let mut g = self.lock();
        g.conns.remove(&conn);
        g.site_conn.retain(|_, c| *c != conn);
        drop_peer_of(&mut g, &self.media, conn);
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
                let _ =
                    db::violation(&self.db, rule, Some(account.id), account.site_id, &detail).await;
                tracing::warn!(user = %account.username, rule, "refused: {}", e.message);
            }
            self.send(conn, error(e.code, &e.message, e.article, &typ));
        }
    }

    async fn dispatch(
        &self,
        conn: ConnId,
        account: &Account,
        msg: ClientMsg,
    ) -> Result<(), Refusal> {
        match msg {
            ClientMsg::OpenMeeting { title } => {
                permit(account, &Action::OpenMeeting)?;
                let title = title.trim();
                if title.is_empty() || title.chars().count() > 200 {
                    return Err(Refusal::bad_request("title must be 1 to 200 characters"));
                }
                let id = sqlx::query(
                    "INSERT INTO meetings (title, opened_by, opened_at) VALUES (?,?,?)",
                )
                .bind(title)
                .bind(account.id)
                .bind(db::now())
                .execute(&self.db)
                .await
                .map_err(|e| Refusal::internal(&e))?
                .last_insert_rowid();
                let _ = db::audit(
                    &self.db,
                    db::AuditEntry {
                        actor_id: Some(account.id),
                        actor: &account.username,
                        action: "open_meeting",
                        entity: "meeting",
                        entity_id: id.to_string(),
                        before: None,
                        after: Some(json!({"title": title})),
                    },
                )
                .await;
                let mut g = self.lock();
                g.meetings.insert(
                    id,
                    Meeting {
                        id,
                        title: title.to_string(),
                        sites: BTreeSet::new(),
                    },
                );
                broadcast_consoles(
                    &g,
                    json!({"type": "meeting_opened", "meeting": {"id": id, "title": title}})
                        .to_string(),
                );
                broadcast_consoles(&g, meetings_msg(&g));
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
                    for site in &m.sites {
                        leave_site(&mut g, &self.media, *site, meeting, "closed");
                    }
                    let consoles: Vec<ConnId> = g
                        .peers
                        .values()
                        .filter(|p| p.meeting == meeting)
                        .map(|p| p.conn)
                        .collect();
                    for c in consoles {
                        drop_peer_of(&mut g, &self.media, c);
                    }
                    broadcast_consoles(
                        &g,
                        json!({"type": "meeting_closed", "meeting": meeting}).to_string(),
                    );
                    broadcast_consoles(&g, meetings_msg(&g));
                    broadcast_consoles(&g, sites_msg(&g));
                    m.sites
                };
                let _ = sqlx::query("UPDATE meetings SET closed_at = ? WHERE id = ?")
                    .bind(db::now())
                    .bind(meeting)
                    .execute(&self.db)
                    .await;
                let _ = sqlx::query("UPDATE meeting_sites SET disconnected_at = ? WHERE meeting_id = ? AND disconnected_at IS NULL")
                    .bind(db::now())
                    .bind(meeting)
                    .execute(&self.db)
                    .await;
                tracing::info!(meeting, sites = sites.len(), "meeting closed");
                Ok(())
            }
            ClientMsg::Dial { meeting, site } => {
                permit(account, &Action::DialSite)?;
                self.dial(conn, meeting, &[site]).await
            }
            ClientMsg::DialAll { meeting } => {
                permit(account, &Action::DialSite)?;
                let online: Vec<i64> = {
                    let g = self.lock();
                    g.site_conn.keys().copied().collect()
                };
                self.dial(conn, meeting, &online).await
            }
            ClientMsg::Hangup { meeting, site } => {
                permit(account, &Action::DialSite)?;
                {
                    let mut g = self.lock();
                    let m = g
                        .meetings
                        .get_mut(&meeting)
                        .ok_or_else(|| Refusal::not_found("no such meeting"))?;
                    if !m.sites.remove(&site) {
                        return Err(Refusal::not_found(
                            "that site is not connected to this meeting",
                        ));
                    }
                    leave_site(&mut g, &self.media, site, meeting, "hangup");
                    broadcast_consoles(&g, meetings_msg(&g));
                    broadcast_consoles(&g, sites_msg(&g));
                }
                let _ = sqlx::query("UPDATE meeting_sites SET disconnected_at = ? WHERE meeting_id = ? AND site_id = ? AND disconnected_at IS NULL")
                    .bind(db::now())
                    .bind(meeting)
                    .bind(site)
                    .execute(&self.db)
                    .await;
                Ok(())
            }
            ClientMsg::JoinRequest { .. } => {
                // Sites never join by themselves (C6); nobody else joins this way either.
                permit(account, &Action::DialSite)?;
                Err(Refusal::bad_request(
                    "use 'offer' after opening or being dialed into a meeting",
                ))
            }
            ClientMsg::Offer { meeting, sdp } => self.offer(conn, account, meeting, sdp),
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
                drop_peer_of(&mut g, &self.media, conn);
                let dialed = account.site_id.is_some_and(|s| {
                    g.meetings
                        .get(&meeting)
                        .is_some_and(|m| m.sites.contains(&s))
                });
                if dialed {
                    send_join(&g, conn, meeting);
                }
                broadcast_consoles(&g, sites_msg(&g));
                Ok(())
            }
        }
    }

    async fn dial(&self, _conn: ConnId, meeting: i64, sites: &[i64]) -> Result<(), Refusal> {
        let mut dialed = Vec::new();
        {
            let mut g = self.lock();
            if !g.meetings.contains_key(&meeting) {
                return Err(Refusal::not_found("no such meeting"));
            }
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
                    .find(|m| m.id != meeting && m.sites.contains(site))
                {
                    return Err(Refusal {
                        code: "bad_state",
                        message: format!(
                            "site {} is in meeting '{}'; hang it up there first",
                            s.name, other.title
                        ),
                        article: None,
                        record: None,
                    });
                }
            }
            for site in sites {
                let m = g.meetings.get_mut(&meeting).expect("checked");
                if !m.sites.insert(*site) {
                    continue;
                }
                dialed.push(*site);
                if let Some(c) = g.site_conn.get(site).copied() {
                    send_join(&g, c, meeting);
                }
                broadcast_consoles(
                    &g,
                    json!({"type": "dialing", "meeting": meeting, "site": site}).to_string(),
                );
            }
            broadcast_consoles(&g, meetings_msg(&g));
            broadcast_consoles(&g, sites_msg(&g));
        }
        for site in dialed {
            let _ = sqlx::query(
                "INSERT INTO meeting_sites (meeting_id, site_id, connected_at) VALUES (?,?,?)",
            )
            .bind(meeting)
            .bind(site)
            .bind(db::now())
            .execute(&self.db)
            .await;
        }
        Ok(())
    }

    fn offer(
        &self,
        conn: ConnId,
        account: &Account,
        meeting: i64,
        sdp: String,
    ) -> Result<(), Refusal> {
        let mut g = self.lock();
        let (site_id, name, stream, kind) = if account.role == Role::SiteDevice {
            let site = account
                .site_id
                .ok_or_else(|| Refusal::bad_state("device account without a site"))?;
            let dialed = g
                .meetings
                .get(&meeting)
                .is_some_and(|m| m.sites.contains(&site));
            if !dialed {
                return Err(Refusal {
                    code: "forbidden",
                    message: "a site joins a meeting only when the control center connects it"
                        .into(),
                    article: Some("C6"),
                    record: Some("C6"),
                });
            }
            permit(account, &Action::JoinMeetingAsSite { site })?;
            let name = g
                .sites
                .iter()
                .find(|s| s.id == site)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            (Some(site), name, format!("site-{site}"), "site")
        } else {
            permit(account, &Action::OpenMeeting)?;
            if !g.meetings.contains_key(&meeting) {
                return Err(Refusal::not_found("no such meeting"));
            }
            let cc = g
                .sites
                .iter()
                .find(|s| s.is_control_center)
                .map(|s| s.name.clone());
            (
                None,
                cc.unwrap_or_else(|| account.display_name.clone()),
                format!("cc-{conn}"),
                "control",
            )
        };
        if sdp.len() > 64 * 1024 {
            return Err(Refusal::bad_request("SDP larger than 64 KiB"));
        }
        // A fresh offer replaces this connection's previous media session.
        drop_peer_of(&mut g, &self.media, conn);
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
            },
        );
        g.conn_peer.insert(conn, peer);
        self.media.send(MediaCmd::AddPeer {
            peer,
            meeting: meeting as u64,
            stream,
            sdp,
            // The control center watches the sites: a wider view than a site's.
            monitor: kind == "control",
        });
        broadcast_participants(&g, meeting);
        Ok(())
    }

    /// Events from the media core.
    pub fn on_media(&self, ev: MediaEvent) {
        let mut g = self.lock();
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
                    forget_peer(&mut g, peer);
                }
            }
            MediaEvent::Connected { peer } => {
                if let Some(p) = g.peers.get_mut(&peer) {
                    p.connected = true;
                    tracing::info!(peer, name = %p.name, "media connected");
                }
                broadcast_consoles(&g, sites_msg(&g));
            }
            MediaEvent::Closed { peer, reason } => {
                self.media.closed(peer);
                let Some(p) = forget_peer(&mut g, peer) else {
                    return;
                };
                tracing::warn!(peer, name = %p.name, ?reason, "media peer closed");
                // A site still connected to the meeting is brought back by itself.
                if let Some(site) = p.site_id {
                    let dialed = g
                        .meetings
                        .get(&p.meeting)
                        .is_some_and(|m| m.sites.contains(&site));
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
                g.stats.insert(s.peer, s);
            }
            MediaEvent::SendVideo { peer, on } => {
                send_peer(&g, peer, json!({"type": "send_video", "on": on}))
            }
        }
    }

    /// Once a second: every peer's link figures to the consoles.
    pub fn broadcast_stats(&self) {
        let g = self.lock();
        let list: Vec<Value> = g
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let s = g.stats.get(id)?;
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
                    "rtt_ms": s.rtt_ms,
                    "loss_in": s.loss_in,
                    "loss_out": s.loss_out,
                    "jitter_ms": s.jitter_ms,
                    "kbps_in": s.kbps_in,
                    "kbps_out": s.kbps_out,
                    "width": s.width.map(Value::from).unwrap_or_else(|| pick("width")),
                    "height": s.height.map(Value::from).unwrap_or_else(|| pick("height")),
                    "fps": s.fps.map(Value::from).unwrap_or_else(|| pick("fps")),
                    "audio_level": pick("audio_level"),
                }))
            })
            .collect();
        broadcast_consoles(&g, json!({"type": "stats", "list": list}).to_string());
    }

    /// The registry changed (room rules, names): later welcomes and site lists use the new one.
    pub async fn reload_sites(&self) {
        match db::sites(&self.db).await {
            Ok(sites) => {
                let mut g = self.lock();
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

/// Why a message was refused.
struct Refusal {
    code: &'static str,
    message: String,
    article: Option<&'static str>,
    /// The rule to record as a violation (R4), if the attempt itself breaks the regulation.
    record: Option<&'static str>,
}

impl Refusal {
    fn bad_request(m: &str) -> Self {
        Refusal {
            code: "bad_request",
            message: m.into(),
            article: None,
            record: None,
        }
    }
    fn bad_state(m: &str) -> Self {
        Refusal {
            code: "bad_state",
            message: m.into(),
            article: None,
            record: None,
        }
    }
    fn not_found(m: &str) -> Self {
        Refusal {
            code: "not_found",
            message: m.into(),
            article: None,
            record: None,
        }
    }
    fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!("signaling: {e}");
        Refusal {
            code: "internal",
            message: "internal error; see the server log".into(),
            article: None,
            record: None,
        }
    }
}

/// Role and scope check of one signaling action (A1, C6), by the pure rules.
fn permit(account: &Account, action: &Action) -> Result<(), Refusal> {
    authorize(account.role, account.scope(), action).map_err(|v| {
        let rule = v.rule.as_str();
        Refusal {
            code: "forbidden",
            message: v.en.clone(),
            article: Some(rule),
            record: (rule == "C6").then_some("C6"),
        }
    })
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
            .send(json!({"type": "join", "meeting": {"id": m.id, "title": m.title}}).to_string());
    }
}

fn send_peer(g: &Inner, peer: PeerId, msg: Value) {
    if let Some(c) = g.peers.get(&peer).and_then(|p| g.conns.get(&p.conn)) {
        let _ = c.tx.send(msg.to_string());
    }
}

/// Tell a site to leave and stop its media.
fn leave_site(g: &mut Inner, media: &MediaRouter, site: i64, meeting: i64, reason: &str) {
    if let Some(conn) = g.site_conn.get(&site).copied() {
        if let Some(c) = g.conns.get(&conn) {
            let _ = c
                .tx
                .send(json!({"type": "leave", "meeting": meeting, "reason": reason}).to_string());
        }
        drop_peer_of(g, media, conn);
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

fn drop_peer_of(g: &mut Inner, media: &MediaRouter, conn: ConnId) {
    if let Some(peer) = g.conn_peer.get(&conn).copied() {
        media.send(MediaCmd::RemovePeer { peer });
        forget_peer(g, peer);
    }
}

fn forget_peer(g: &mut Inner, peer: PeerId) -> Option<PeerInfo> {
    let p = g.peers.remove(&peer)?;
    g.stats.remove(&peer);
    if g.conn_peer.get(&p.conn) == Some(&peer) {
        g.conn_peer.remove(&p.conn);
    }
    broadcast_participants(g, p.meeting);
    Some(p)
}

fn broadcast_participants(g: &Inner, meeting: i64) {
    let list: Vec<Value> = g
        .peers
        .values()
        .filter(|p| p.meeting == meeting)
        .map(|p| json!({"stream": p.stream, "site_id": p.site_id, "name": p.name, "kind": p.kind}))
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
            let meeting = g.meetings.values().find(|m| m.sites.contains(&s.id)).map(|m| m.id);
            let media = g.peers.values().find(|p| p.site_id == Some(s.id)).map(|p| if p.connected { "connected" } else { "connecting" });
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
        .map(|m| json!({"id": m.id, "title": m.title, "sites": m.sites}))
        .collect();
    json!({"type": "meetings", "list": list}).to_string()
}
