//! The conference state machine: peers, meetings, forwarding, renegotiation and expiry.
//!
//! State in, events out, time passed in: nothing here touches a socket or reads a clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Rid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output as RtcOutput, Rtc};

use crate::demux::stun_local_ufrag;
use crate::layer::{choose_layer, LayerRate};
use crate::vp8;

/// A peer (one site's or one console's WebRTC connection), numbered by the caller.
pub type PeerId = u64;
/// A meeting, numbered by the caller.
pub type MeetingId = u64;

/// Settings of the conference core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host candidates announced in every answer (the UDP port the driver owns, on each
    /// address peers can reach).
    pub candidates: Vec<SocketAddr>,
    /// A peer that has not completed ICE and DTLS within this time is dropped.
    pub connect_timeout: Duration,
    /// A connected peer from which nothing arrives for this long is dropped.
    pub idle_timeout: Duration,
    /// The bandwidth estimate a receiver starts from.
    pub initial_bitrate_bps: u64,
    /// Each peer receives the streams of at most this many others: the first to join the
    /// meeting. Until floor control decides who is seen, a meeting's first `view_size + 1` peers
    /// are its speakers; a later one is forwarded only to peers with a wider view (the
    /// console), and when nobody receives it, it is asked to pause its video
    /// ([`Output::SendVideo`]) so that its uplink carries only audio.
    pub view_size: usize,
    /// The view of the control center's console, which watches the sites
    /// ([`Conference::add_peer_viewing`]).
    pub monitor_view: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            candidates: vec![],
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(6),
            initial_bitrate_bps: 2_500_000,
            view_size: 8,
            monitor_view: 24,
        }
    }
}

/// Why the core refused a request. The message is English (API and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    /// The SDP could not be parsed or accepted.
    SdpRejected(String),
    /// The peer id is already in use, or unknown.
    UnknownPeer(PeerId),
    DuplicatePeer(PeerId),
    /// An answer arrived with no offer pending, or for an older offer.
    BadState(String),
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaError::SdpRejected(m) => write!(f, "SDP rejected: {m}"),
            MediaError::UnknownPeer(p) => write!(f, "unknown peer {p}"),
            MediaError::DuplicatePeer(p) => write!(f, "peer {p} exists already"),
            MediaError::BadState(m) => write!(f, "out of order: {m}"),
        }
    }
}

impl std::error::Error for MediaError {}

/// Why a peer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// ICE and DTLS did not complete in time.
    ConnectTimeout,
    /// Nothing arrived for `idle_timeout`, or ICE reported the link gone.
    LinkLost,
    /// str0m refused further input (a protocol error on the wire).
    ProtocolError,
}

/// Live link figures of one peer, about once a second.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LinkStats {
    pub peer: PeerId,
    pub rtt_ms: Option<f64>,
    /// Fraction of packets lost from the peer to the server (0.0–1.0).
    pub loss_in: Option<f32>,
    /// Fraction of packets lost from the server to the peer.
    pub loss_out: Option<f32>,
    pub jitter_ms: Option<f64>,
    pub kbps_in: f64,
    pub kbps_out: f64,
    pub width: Option<u16>,
    pub height: Option<u16>,
    pub fps: Option<f64>,
    /// The receiver's bandwidth estimate, if known.
    pub estimate_kbps: Option<f64>,
}

/// What the core asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Send this answer to the peer's initial offer (always before any `Offer` to it).
    Answer {
        peer: PeerId,
        sdp: String,
    },
    /// Send this renegotiation offer; the peer answers with [`Conference::handle_answer`].
    Offer {
        peer: PeerId,
        seq: u64,
        sdp: String,
    },
    /// ICE and DTLS are up: media can flow.
    Connected {
        peer: PeerId,
    },
    /// The peer is gone (expired or broken); it has been removed.
    PeerClosed {
        peer: PeerId,
        reason: CloseReason,
    },
    Stats(LinkStats),
    /// Tell the peer to pause (`on: false`) or resume its video: nobody receives it. Peers send
    /// video until told otherwise.
    SendVideo {
        peer: PeerId,
        on: bool,
    },
}

#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// Per simulcast layer: bytes in the current second, measured rate, last seen.
    layers: Vec<LayerIn>,
    last_keyframe_request: Option<Instant>,
    frames: u32,
    size: Option<(u16, u16)>,
}

#[derive(Debug)]
struct LayerIn {
    rid: Option<Rid>,
    bytes: u64,
    frames: u32,
    bps: u64,
    fps: u32,
    last_seen: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

impl OutState {
    fn mid(self) -> Option<Mid> {
        match self {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::NegotiatingStop(m) => Some(m),
        }
    }
}

#[derive(Debug)]
struct TrackOut {
    source: PeerId,
    source_mid: Mid,
    kind: MediaKind,
    state: OutState,
    /// The simulcast layer being forwarded, and the one waited for (its keyframe).
    layer: Option<Option<Rid>>,
    wanted: Option<Option<Rid>>,
    /// Rewriting of media time across layer switches: out = in + offset.
    ts_offset: i64,
    last_out: Option<u64>,
}

struct Peer {
    meeting: MeetingId,
    stream: String,
    rtc: Rtc,
    ufrag: String,
    created: Instant,
    last_rx: Instant,
    connected: bool,
    timeout: Instant,
    tracks_in: Vec<TrackIn>,
    tracks_out: Vec<TrackOut>,
    pending: Option<(u64, SdpPendingOffer)>,
    next_seq: u64,
    estimate_bps: u64,
    last_stats: Option<(Instant, u64, u64)>,
    rtt_ms: Option<f64>,
    loss_in: Option<f32>,
    loss_out: Option<f32>,
    jitter_ms: Option<f64>,
    /// Whether anybody receives this peer's streams (it is in somebody's view).
    seen: bool,
    /// How many others this peer receives.
    view: usize,
}

/// A speaker of a meeting: its position in joining order, its id and the tracks it sends.
type Speaker = (usize, PeerId, Vec<(Mid, MediaKind)>);

/// Something one peer's output asks of the others. Lives only between polling one peer and
/// propagating; boxing the media variant would cost an allocation per frame.
#[allow(clippy::large_enum_variant)]
enum Propagate {
    TrackOpen,
    Media(MediaData),
    KeyframeRequest {
        source: PeerId,
        mid: Mid,
        rid: Option<Rid>,
    },
}

/// The conference core. See the crate documentation for the calling pattern.
pub struct Conference {
    config: Config,
    peers: HashMap<PeerId, Peer>,
    meetings: HashMap<MeetingId, Vec<PeerId>>,
    by_addr: HashMap<SocketAddr, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    out: VecDeque<Output>,
    /// Peers whose str0m instance may have output waiting.
    dirty: Vec<PeerId>,
}

impl Conference {
    pub fn new(config: Config) -> Self {
        Conference {
            config,
            peers: HashMap::new(),
            meetings: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            out: VecDeque::new(),
            dirty: Vec::new(),
        }
    }

    /// The settings it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of live peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Peers of one meeting.
    pub fn meeting_peers(&self, meeting: MeetingId) -> &[PeerId] {
        self.meetings
            .get(&meeting)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// A new peer with its initial SDP offer. On success an [`Output::Answer`] is queued, and
    /// renegotiation offers follow once the peer has streams to receive.
    pub fn add_peer(
        &mut self,
        now: Instant,
        peer: PeerId,
        meeting: MeetingId,
        stream: &str,
        offer_sdp: &str,
    ) -> Result<(), MediaError> {
        self.add_peer_viewing(now, peer, meeting, stream, offer_sdp, None)
    }

    /// [`Conference::add_peer`] with a view of its own: the peer receives up to `view` others
    /// (None: [`Config::view_size`]). The control center's console uses a wider view
    /// ([`Config::monitor_view`]) to watch the sites.
    pub fn add_peer_viewing(
        &mut self,
        now: Instant,
        peer: PeerId,
        meeting: MeetingId,
        stream: &str,
        offer_sdp: &str,
        view: Option<usize>,
    ) -> Result<(), MediaError> {
        if self.peers.contains_key(&peer) {
            return Err(MediaError::DuplicatePeer(peer));
        }
        let offer = SdpOffer::from_sdp_string(offer_sdp)
            .map_err(|e| MediaError::SdpRejected(e.to_string()))?;
        let creds = IceCreds::new();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_local_ice_credentials(creds.clone())
            .set_stats_interval(Some(Duration::from_secs(1)))
            .enable_bwe(Some(Bitrate::bps(self.config.initial_bitrate_bps)))
            // Resend history per outgoing video stream, in packets. str0m keeps 1000 by default:
            // 8 videos × 1000 × ~1.2 kB is ~10 MB per receiver. 256 packets are 1.7 s at the
            // top layer's 150 packets/s, many round trips for a NACK.
            .set_send_buffer_video(256)
            .build(now);
        for addr in &self.config.candidates {
            let c = Candidate::host(*addr, "udp")
                .map_err(|e| MediaError::SdpRejected(e.to_string()))?;
            rtc.add_local_candidate(c);
        }
        let answer: SdpAnswer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| MediaError::SdpRejected(e.to_string()))?;
        self.out.push_back(Output::Answer {
            peer,
            sdp: answer.to_sdp_string(),
        });
        self.by_ufrag.insert(creds.ufrag.clone(), peer);
        self.peers.insert(
            peer,
            Peer {
                meeting,
                stream: stream.to_string(),
                rtc,
                ufrag: creds.ufrag,
                created: now,
                last_rx: now,
                connected: false,
                timeout: now,
                tracks_in: Vec::new(),
                tracks_out: Vec::new(),
                pending: None,
                next_seq: 1,
                estimate_bps: self.config.initial_bitrate_bps,
                last_stats: None,
                rtt_ms: None,
                loss_in: None,
                loss_out: None,
                jitter_ms: None,
                seen: true,
                view: view.unwrap_or(self.config.view_size),
            },
        );
        self.meetings.entry(meeting).or_default().push(peer);
        // The tracks of the newcomer's view are offered to it.
        self.reconcile(meeting);
        self.dirty.push(peer);
        self.drive(now);
        Ok(())
    }

    /// Remove a peer (hang-up, or its signaling went away). Its streams stop at the others.
    pub fn remove_peer(&mut self, now: Instant, peer: PeerId) -> Result<(), MediaError> {
        let Some(mut p) = self.peers.remove(&peer) else {
            return Err(MediaError::UnknownPeer(peer));
        };
        p.rtc.disconnect();
        self.forget(peer, &p);
        self.drive(now);
        Ok(())
    }

    fn forget(&mut self, peer: PeerId, p: &Peer) {
        self.by_ufrag.remove(&p.ufrag);
        self.by_addr.retain(|_, v| *v != peer);
        if let Some(list) = self.meetings.get_mut(&p.meeting) {
            list.retain(|x| *x != peer);
            if list.is_empty() {
                self.meetings.remove(&p.meeting);
            }
        }
        // The others stop the tracks that came from this peer, and the views move up.
        self.reconcile(p.meeting);
    }

    /// Bring every receiver's outgoing tracks of `meeting` in line with its view (the first
    /// `view_size` other peers, in joining order), and tell peers whether anybody sees them.
    /// Called whenever the meeting's peers or their tracks change; O(peers × view).
    fn reconcile(&mut self, meeting: MeetingId) {
        let order = self.meeting_peers(meeting).to_vec();
        let views: Vec<usize> = order
            .iter()
            .map(|id| self.peers.get(id).map_or(0, |p| p.view))
            .collect();
        let widest = views.iter().copied().max().unwrap_or(0);
        // A source's rank among a receiver's others: its joining position, less the receiver's.
        let rank = |pos: usize, r_pos: usize| if pos < r_pos { pos } else { pos - 1 };
        // Whoever can be in some view (positions 0..=widest), and the tracks they send.
        let speakers: Vec<Speaker> = order
            .iter()
            .enumerate()
            .take(widest + 1)
            .filter_map(|(i, s)| {
                let p = self.peers.get(s)?;
                Some((i, *s, p.tracks_in.iter().map(|t| (t.mid, t.kind)).collect()))
            })
            .collect();
        for (r_pos, r) in order.iter().enumerate() {
            let seen = r_pos <= widest
                && views
                    .iter()
                    .enumerate()
                    .any(|(x, v)| x != r_pos && rank(r_pos, x) < *v);
            let Some(p) = self.peers.get_mut(r) else {
                continue;
            };
            let wanted: Vec<&Speaker> = speakers
                .iter()
                .filter(|(pos, s, _)| *s != *r && rank(*pos, r_pos) < p.view)
                .collect();
            let in_view = |source: PeerId| wanted.iter().any(|(_, s, _)| *s == source);
            let before = p.tracks_out.len();
            p.tracks_out
                .retain(|t| t.state != OutState::ToOpen || in_view(t.source));
            let mut changed = p.tracks_out.len() != before;
            for t in p.tracks_out.iter_mut().filter(|t| !in_view(t.source)) {
                if let OutState::Open(m) = t.state {
                    t.state = OutState::ToStop(m);
                    changed = true;
                }
            }
            for (_, source, tracks) in &wanted {
                for (mid, kind) in tracks {
                    let present = p.tracks_out.iter().any(|t| {
                        t.source == *source
                            && t.source_mid == *mid
                            && !matches!(
                                t.state,
                                OutState::ToStop(_) | OutState::NegotiatingStop(_)
                            )
                    });
                    if !present {
                        p.tracks_out.push(TrackOut::new(*source, *mid, *kind));
                        changed = true;
                    }
                }
            }
            if changed {
                self.dirty.push(*r);
            }
            if p.seen != seen {
                p.seen = seen;
                self.out.push_back(Output::SendVideo { peer: *r, on: seen });
            }
        }
    }

    /// The peer's answer to a renegotiation offer.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        peer: PeerId,
        seq: u64,
        sdp: &str,
    ) -> Result<(), MediaError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(MediaError::UnknownPeer(peer))?;
        match &p.pending {
            Some((s, _)) if *s == seq => {}
            Some((s, _)) => {
                return Err(MediaError::BadState(format!(
                    "answer for offer {seq}, but offer {s} is pending"
                )))
            }
            None => return Err(MediaError::BadState("no offer pending".into())),
        }
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| MediaError::SdpRejected(e.to_string()))?;
        let (_, pending) = p.pending.take().expect("checked above");
        if let Err(e) = p.rtc.sdp_api().accept_answer(pending, answer) {
            // Our offer is void; stream changes go back to be offered again.
            for t in &mut p.tracks_out {
                match t.state {
                    OutState::Negotiating(_) => t.state = OutState::ToOpen,
                    OutState::NegotiatingStop(m) => t.state = OutState::ToStop(m),
                    _ => {}
                }
            }
            self.dirty.push(peer);
            self.drive(now);
            return Err(MediaError::SdpRejected(e.to_string()));
        }
        for t in &mut p.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
            }
        }
        p.tracks_out
            .retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        let meeting = p.meeting;
        // Ask for keyframes for the streams that just opened.
        let opened: Vec<(PeerId, Mid, MediaKind)> = p
            .tracks_out
            .iter()
            .filter(|t| t.kind == MediaKind::Video)
            .map(|t| (t.source, t.source_mid, t.kind))
            .collect();
        for (source, mid, _) in opened {
            self.request_keyframe(now, source, mid, None, true);
        }
        // Streams whose source left or moved out of view while this offer was out.
        self.reconcile(meeting);
        self.dirty.push(peer);
        self.drive(now);
        Ok(())
    }

    /// A datagram arrived on the driver's socket.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        self.receive(now, source, destination, buf);
        self.drive(now);
    }

    /// Several datagrams arrived (a `recvmmsg` batch): each is handed to its peer first, and
    /// the peers are polled once for the whole batch rather than once per datagram.
    pub fn handle_receive_batch<'a>(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
    ) {
        for (source, buf) in datagrams {
            self.receive(now, source, destination, buf);
        }
        self.drive(now);
    }

    /// Hand one datagram to its peer's str0m instance, without polling it.
    fn receive(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, buf: &[u8]) {
        let peer = match self.by_addr.get(&source) {
            Some(p) => *p,
            None => {
                let Some(p) = stun_local_ufrag(buf).and_then(|u| self.by_ufrag.get(u)) else {
                    return;
                };
                *p
            }
        };
        let Ok(contents) = buf.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.rtc.accepts(&input) {
            return;
        }
        if p.rtc.handle_input(input).is_err() {
            self.close(now, peer, CloseReason::ProtocolError);
            return;
        }
        p.last_rx = now;
        self.by_addr.entry(source).or_insert(peer);
        self.dirty.push(peer);
    }

    /// Time passes: drive timers of every peer that asked for it, and expire dead peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            let reason = if !p.rtc.is_alive() {
                Some(CloseReason::LinkLost)
            } else if !p.connected && now.duration_since(p.created) > self.config.connect_timeout {
                Some(CloseReason::ConnectTimeout)
            } else if p.connected && now.duration_since(p.last_rx) > self.config.idle_timeout {
                Some(CloseReason::LinkLost)
            } else {
                None
            };
            if let Some(r) = reason {
                expired.push((*id, r));
                continue;
            }
            if p.timeout <= now {
                if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                    expired.push((*id, CloseReason::ProtocolError));
                    continue;
                }
                self.dirty.push(*id);
            }
        }
        for (id, r) in expired {
            self.close(now, id, r);
        }
        self.drive(now);
    }

    /// When the core next wants [`Conference::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.peers.values().map(|p| {
            if p.connected {
                p.last_rx + self.config.idle_timeout
            } else {
                p.created + self.config.connect_timeout
            }
        });
        self.peers.values().map(|p| p.timeout).chain(expiry).min()
    }

    /// Drain what the core wants done.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn close(&mut self, now: Instant, peer: PeerId, reason: CloseReason) {
        if let Some(mut p) = self.peers.remove(&peer) {
            p.rtc.disconnect();
            self.forget(peer, &p);
            self.out.push_back(Output::PeerClosed { peer, reason });
        }
        let _ = now;
    }

    /// Poll every dirty peer until it only has a timeout left, propagating what it emits.
    fn drive(&mut self, now: Instant) {
        let mut queue: VecDeque<(PeerId, Propagate)> = VecDeque::new();
        while let Some(id) = self.dirty.pop() {
            self.negotiate(id);
            let mut broken = false;
            if let Some(p) = self.peers.get_mut(&id) {
                loop {
                    if !p.rtc.is_alive() {
                        broken = true;
                        break;
                    }
                    match p.rtc.poll_output() {
                        Ok(RtcOutput::Timeout(t)) => {
                            p.timeout = t;
                            break;
                        }
                        Ok(RtcOutput::Transmit(t)) => self.out.push_back(Output::Transmit(t)),
                        Ok(RtcOutput::Event(e)) => {
                            if let Some(prop) = on_event(id, p, e, now, &mut self.out) {
                                queue.push_back((id, prop));
                            }
                        }
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
            }
            if broken {
                self.close(now, id, CloseReason::LinkLost);
            }
            while let Some((origin, prop)) = queue.pop_front() {
                self.propagate(now, origin, prop);
            }
            self.dirty.sort_unstable();
            self.dirty.dedup();
        }
    }

    fn propagate(&mut self, now: Instant, origin: PeerId, prop: Propagate) {
        let Some(meeting) = self.peers.get(&origin).map(|p| p.meeting) else {
            return;
        };
        match prop {
            Propagate::TrackOpen => self.reconcile(meeting),
            Propagate::KeyframeRequest { source, mid, rid } => {
                self.request_keyframe(now, source, mid, Some(rid), false);
            }
            Propagate::Media(data) => self.forward(now, origin, meeting, &data),
        }
    }

    fn forward(&mut self, now: Instant, origin: PeerId, meeting: MeetingId, data: &MediaData) {
        if !self.peers.get(&origin).is_some_and(|p| p.seen) {
            return; // nobody receives this peer
        }
        let mut keyframe_wanted: Vec<Option<Rid>> = Vec::new();
        let layers = self
            .peers
            .get(&origin)
            .and_then(|p| p.tracks_in.iter().find(|t| t.mid == data.mid))
            .map(|t| t.rates(now))
            .unwrap_or_default();
        for other in self
            .meetings
            .get(&meeting)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if *other == origin {
                continue;
            }
            let Some(o) = self.peers.get_mut(other) else {
                continue;
            };
            let videos = o
                .tracks_out
                .iter()
                .filter(|t| t.kind == MediaKind::Video)
                .count()
                .max(1) as u64;
            let budget = o.estimate_bps / videos;
            let Some(t) = o
                .tracks_out
                .iter_mut()
                .find(|t| t.source == origin && t.source_mid == data.mid)
            else {
                continue;
            };
            let OutState::Open(mid) = t.state else {
                continue;
            };
            if t.kind == MediaKind::Video && data.rid.is_some() {
                if let Some(want) = choose_layer(budget, &layers, t.layer.as_ref()) {
                    if t.layer == Some(want) {
                        // Back to the current layer: a switch still waited for is void.
                        t.wanted = None;
                    } else if t.wanted != Some(want) {
                        t.wanted = Some(want);
                        keyframe_wanted.push(want);
                    }
                }
                if t.wanted.as_ref() == Some(&data.rid) && data.is_keyframe() {
                    // Switch on the new layer's keyframe, keeping media time continuous.
                    let step = 3000; // one frame at 30 fps on the 90 kHz clock
                    let next = t.last_out.map(|l| l + step).unwrap_or(data.time.numer());
                    t.ts_offset = next as i64 - data.time.numer() as i64;
                    t.layer = t.wanted.take();
                }
                if t.layer.as_ref() != Some(&data.rid) {
                    continue;
                }
            }
            let out_time = (data.time.numer() as i64 + t.ts_offset).max(0) as u64;
            t.last_out = Some(out_time);
            let time = MediaTime::new(out_time, data.time.frequency());
            let Some(writer) = o.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            if writer
                .write(pt, data.network_time, time, data.data.clone())
                .is_ok()
            {
                self.dirty.push(*other);
            }
        }
        for rid in keyframe_wanted {
            self.request_keyframe(now, origin, data.mid, Some(rid), true);
        }
    }

    /// Ask `source` for a keyframe on its incoming track `mid`, at most every 300 ms per track
    /// unless `force` (a receiver starting or switching layer must not wait).
    fn request_keyframe(
        &mut self,
        now: Instant,
        source: PeerId,
        mid: Mid,
        rid: Option<Option<Rid>>,
        force: bool,
    ) {
        let Some(p) = self.peers.get_mut(&source) else {
            return;
        };
        let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if !force
            && t.last_keyframe_request
                .is_some_and(|l| now.duration_since(l) < Duration::from_millis(300))
        {
            return;
        }
        t.last_keyframe_request = Some(now);
        let rids: Vec<Option<Rid>> = match rid {
            Some(r) => vec![r],
            None => t.layers.iter().map(|l| l.rid).collect(),
        };
        if let Some(mut w) = p.rtc.writer(mid) {
            for r in rids {
                let _ = w.request_keyframe(r, KeyframeRequestKind::Pli);
            }
        }
        self.dirty.push(source);
    }

    /// Offer the peer whatever streams changed, one offer at a time.
    fn negotiate(&mut self, id: PeerId) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        let has_changes = p
            .tracks_out
            .iter()
            .any(|t| matches!(t.state, OutState::ToOpen | OutState::ToStop(_)));
        if p.pending.is_some() || !has_changes {
            return;
        }
        let stream_of: HashMap<PeerId, String> = p
            .tracks_out
            .iter()
            .filter(|t| t.state == OutState::ToOpen)
            .filter_map(|t| {
                self.peers
                    .get(&t.source)
                    .map(|s| (t.source, s.stream.clone()))
            })
            .collect();
        let p = self.peers.get_mut(&id).expect("checked above");
        let mut change = p.rtc.sdp_api();
        for t in p.tracks_out.iter_mut() {
            match t.state {
                OutState::ToOpen => {
                    let stream = stream_of.get(&t.source).cloned();
                    let track_id = format!("{}-{}", t.source, t.source_mid);
                    let mid =
                        change.add_media(t.kind, Direction::SendOnly, stream, Some(track_id), None);
                    t.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(m) => {
                    change.stop_media(m);
                    t.state = OutState::NegotiatingStop(m);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return;
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        let seq = p.next_seq;
        p.next_seq += 1;
        p.pending = Some((seq, pending));
        self.out.push_back(Output::Offer {
            peer: id,
            seq,
            sdp: offer.to_sdp_string(),
        });
    }
}

impl TrackOut {
    fn new(source: PeerId, source_mid: Mid, kind: MediaKind) -> Self {
        TrackOut {
            source,
            source_mid,
            kind,
            state: OutState::ToOpen,
            layer: None,
            wanted: None,
            ts_offset: 0,
            last_out: None,
        }
    }
}

impl TrackIn {
    /// Layers seen in the last two seconds, with their measured rates.
    fn rates(&self, now: Instant) -> Vec<LayerRate<Option<Rid>>> {
        self.layers
            .iter()
            .filter(|l| now.duration_since(l.last_seen) < Duration::from_secs(2))
            .map(|l| LayerRate {
                rid: l.rid,
                // A layer not yet measured counts as its bytes so far, so it is usable at once.
                bps: if l.bps > 0 { l.bps } else { l.bytes * 8 },
            })
            .collect()
    }
}

/// Handle one str0m event of peer `id`; what concerns other peers is returned.
fn on_event(
    id: PeerId,
    p: &mut Peer,
    e: Event,
    now: Instant,
    out: &mut VecDeque<Output>,
) -> Option<Propagate> {
    match e {
        Event::Connected => {
            p.connected = true;
            p.last_rx = now;
            out.push_back(Output::Connected { peer: id });
            None
        }
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            p.rtc.disconnect();
            None
        }
        Event::MediaAdded(m) => {
            // The direction is ours: a site's sendonly track is recvonly here.
            if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) {
                p.tracks_in.push(TrackIn {
                    mid: m.mid,
                    kind: m.kind,
                    layers: Vec::new(),
                    last_keyframe_request: None,
                    frames: 0,
                    size: None,
                });
                Some(Propagate::TrackOpen)
            } else {
                None
            }
        }
        Event::MediaData(data) => {
            let t = p.tracks_in.iter_mut().find(|t| t.mid == data.mid)?;
            let layer = match t.layers.iter_mut().position(|l| l.rid == data.rid) {
                Some(i) => &mut t.layers[i],
                None => {
                    t.layers.push(LayerIn {
                        rid: data.rid,
                        bytes: 0,
                        frames: 0,
                        bps: 0,
                        fps: 0,
                        last_seen: now,
                    });
                    t.layers.last_mut().expect("pushed")
                }
            };
            layer.bytes += data.data.len() as u64;
            layer.frames += 1;
            layer.last_seen = now;
            t.frames += 1;
            if t.kind == MediaKind::Video {
                if let Some(size) = vp8::keyframe_size(&data.data) {
                    if t.size.is_none_or(|s| size.0 >= s.0) {
                        t.size = Some(size);
                    }
                }
            }
            if !data.contiguous {
                return Some(Propagate::KeyframeRequest {
                    source: id,
                    mid: data.mid,
                    rid: data.rid,
                });
            }
            Some(Propagate::Media(data))
        }
        Event::KeyframeRequest(req) => {
            let t = p
                .tracks_out
                .iter()
                .find(|t| t.state.mid() == Some(req.mid))?;
            Some(Propagate::KeyframeRequest {
                source: t.source,
                mid: t.source_mid,
                rid: t.layer.flatten(),
            })
        }
        Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. })
        | Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
            p.estimate_bps = estimate.as_u64();
            None
        }
        Event::MediaIngressStats(s) => {
            // Jitter as the console shows it is the audio's: what a listener notices first.
            let t = p.tracks_in.iter().find(|t| t.mid == s.mid)?;
            if t.kind == MediaKind::Audio {
                p.jitter_ms = Some(s.jitter as f64 / 48.0);
            }
            None
        }
        Event::PeerStats(s) => {
            p.rtt_ms = s
                .rtt
                .or(s
                    .selected_candidate_pair
                    .as_ref()
                    .and_then(|c| c.current_round_trip_time))
                .map(|d| d.as_secs_f64() * 1000.0);
            p.loss_in = s.ingress_loss_fraction;
            p.loss_out = s.egress_loss_fraction;
            let (kbps_in, kbps_out, secs) = match p.last_stats {
                Some((t, rx, tx)) if s.timestamp > t => {
                    let secs = s.timestamp.duration_since(t).as_secs_f64();
                    (
                        (s.peer_bytes_rx.saturating_sub(rx)) as f64 * 8.0 / 1000.0 / secs,
                        (s.peer_bytes_tx.saturating_sub(tx)) as f64 * 8.0 / 1000.0 / secs,
                        secs,
                    )
                }
                // The first report: the layers have counted since the peer was created.
                _ => (
                    0.0,
                    0.0,
                    s.timestamp
                        .saturating_duration_since(p.created)
                        .as_secs_f64(),
                ),
            };
            p.last_stats = Some((s.timestamp, s.peer_bytes_rx, s.peer_bytes_tx));
            let mut stats = LinkStats {
                peer: id,
                rtt_ms: p.rtt_ms,
                loss_in: p.loss_in,
                loss_out: p.loss_out,
                jitter_ms: p.jitter_ms,
                kbps_in,
                kbps_out,
                estimate_kbps: Some(p.estimate_bps as f64 / 1000.0),
                ..Default::default()
            };
            for t in &mut p.tracks_in {
                for l in &mut t.layers {
                    if secs > 0.0 {
                        l.bps = (l.bytes as f64 * 8.0 / secs) as u64;
                        l.fps = (l.frames as f64 / secs).round() as u32;
                    }
                    l.bytes = 0;
                    l.frames = 0;
                }
                if t.kind == MediaKind::Video {
                    let fps = t.layers.iter().map(|l| l.fps).max().unwrap_or(0);
                    stats.fps = Some(fps as f64);
                    stats.width = t.size.map(|s| s.0);
                    stats.height = t.size.map(|s| s.1);
                }
            }
            out.push_back(Output::Stats(stats));
            None
        }
        _ => None,
    }
}
