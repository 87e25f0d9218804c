//! The conference state machine: peers, meetings, forwarding, renegotiation and expiry.
//!
//! State in, events out, time passed in: nothing here touches a socket or reads a clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rate::{Estimation, LossControl};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::PayloadParams;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output as RtcOutput, Rtc};

use crate::demux::stun_local_ufrag;
use crate::layer::{choose_layer, height_cap, LayerRate};
use crate::vp8;

/// Simulcast layers of one incoming video considered for forwarding; more are ignored.
const MAX_LAYERS: usize = 4;

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
    /// Which estimate chooses each receiver's simulcast layers.
    pub estimation: Estimation,
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
            estimation: Estimation::default(),
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
    size: Option<(u16, u16)>,
    /// The codec of the last payload type seen, for matching each receiver's payload type.
    params: Option<(Pt, PayloadParams)>,
    /// Audio: the last packet was digital silence (not forwarded), and how many such runs
    /// there have been (a receiver that saw fewer rebases its numbering over the gap).
    silent: bool,
    silence_runs: u32,
}

#[derive(Debug)]
struct LayerIn {
    ssrc: Ssrc,
    rid: Option<Rid>,
    bytes: u64,
    frames: u32,
    bps: u64,
    fps: u32,
    last_seen: Instant,
    /// The picture height of the layer's last keyframe.
    height: Option<u16>,
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
    /// The receiver's payload type for the source's last one.
    pt: Option<(Pt, Pt)>,
    /// How tall the receiver shows this video, in device pixels ([`Conference::set_view`]);
    /// None: not said, no limit.
    view_height: Option<u16>,
    /// This video's share of the receiver's bandwidth estimate (`split_budget`).
    budget_bps: u64,
    /// The source's silence runs this receiver has been rebased over (audio).
    silence_runs: u32,
    /// The forwarded packets form one continuous RTP stream at the receiver whatever layer
    /// they come from: each layer switch sets these offsets (out = in + offset, wrapping).
    rewrite: Rewrite,
}

/// RTP sequence number, timestamp and VP8 picture numbering of one outgoing stream, rebased at
/// every layer switch so that the receiver sees one stream.
#[derive(Debug, Default, Clone, Copy)]
struct Rewrite {
    seq_offset: i64,
    ts_offset: u32,
    picture_id_offset: u16,
    tl0_offset: u8,
    /// Packets of the current layer before this (extended) sequence number are older than the
    /// switch and are dropped.
    first_seq: u64,
    /// The newest packet written: its sequence number, timestamp, when, picture id, TL0PICIDX.
    last: Option<(u64, u32, Instant)>,
    last_picture_id: Option<u16>,
    last_tl0: Option<u8>,
}

impl Rewrite {
    /// Start forwarding from the packet `pkt` (the first one, or a new layer's keyframe):
    /// continue the numbering where the previous layer left it.
    fn rebase(&mut self, now: Instant, pkt: &Packet) {
        self.seq_offset = match self.last {
            Some((seq, _, _)) => seq as i64 + 1 - pkt.seq as i64,
            // Begin with rollover counter 0, as a fresh receiver expects.
            None => (pkt.seq & 0xffff) as i64 - pkt.seq as i64,
        };
        self.ts_offset = match self.last {
            Some((_, ts, at)) => {
                let clock = if pkt.video { 90 } else { 48 };
                let gap = (now.saturating_duration_since(at).as_millis() as u32 * clock).max(1);
                ts.wrapping_add(gap).wrapping_sub(pkt.ts)
            }
            None => 0,
        };
        if let Some(d) = &pkt.vp8 {
            if let (Some(last), Some(id)) = (self.last_picture_id, d.picture_id()) {
                self.picture_id_offset = last.wrapping_add(1).wrapping_sub(id) & 0x7fff;
            }
            if let (Some(last), Some(idx)) = (self.last_tl0, d.tl0_pic_idx()) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(idx);
            }
        }
        self.first_seq = pkt.seq;
    }

    /// The outgoing packet for `pkt`, or None if it is older than the last switch.
    fn write(&mut self, now: Instant, pt: Pt, pkt: &Packet) -> Option<RtpWrite> {
        if pkt.seq < self.first_seq {
            return None;
        }
        let seq = (pkt.seq as i64 + self.seq_offset).max(0) as u64;
        let ts = pkt.ts.wrapping_add(self.ts_offset);
        if self.last.is_none_or(|(l, _, _)| seq > l) {
            self.last = Some((seq, ts, now));
        }
        let ext = ExtensionValues {
            audio_level: pkt.audio_level,
            voice_activity: pkt.voice_activity,
            ..Default::default()
        };
        let mut w = RtpWrite::new(pt, seq.into(), ts, pkt.arrival, Arc::clone(&pkt.payload))
            .marker(pkt.marker)
            .nackable(pkt.video)
            .ext_vals(ext);
        if let Some(d) = &pkt.vp8 {
            let mut patch = d.patch();
            let mut changed = false;
            if let Some(id) = d.picture_id() {
                let out = id.wrapping_add(self.picture_id_offset) & 0x7fff;
                self.last_picture_id = Some(out);
                changed |= out != id;
                patch = patch.picture_id(out);
            }
            if let Some(idx) = d.tl0_pic_idx() {
                let out = idx.wrapping_add(self.tl0_offset);
                self.last_tl0 = Some(out);
                changed |= out != idx;
                patch = patch.tl0_pic_idx(out);
            }
            if changed {
                if let Ok(p) = patch.build() {
                    w = w.vp8_patch(p);
                }
            }
        }
        Some(w)
    }
}

/// One incoming RTP packet as forwarding needs it. The payload is shared by every receiver,
/// never copied.
struct Packet {
    mid: Mid,
    rid: Option<Rid>,
    video: bool,
    pt: Pt,
    params: PayloadParams,
    /// Extended sequence number.
    seq: u64,
    ts: u32,
    marker: bool,
    arrival: Instant,
    payload: Arc<[u8]>,
    vp8: Option<Vp8Descriptor>,
    /// The first packet of a VP8 keyframe: a receiver may switch to this layer here.
    keyframe: bool,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
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
    /// The loss-based estimate ([`Estimation::Loss`]).
    rate: LossControl,
    /// What was sent to the peer over the last stats interval.
    kbps_out: f64,
    /// The receiver's own estimate of its link (REMB), if it sends one.
    remb_bps: Option<u64>,
    last_stats: Option<(Instant, u64, u64)>,
    rtt_ms: Option<f64>,
    loss_in: Option<f32>,
    loss_out: Option<f32>,
    jitter_ms: Option<f64>,
    /// Whether anybody receives this peer's streams (it is in somebody's view).
    seen: bool,
    /// How many others this peer receives.
    view: usize,
    /// Peers that receive some track of this one (kept by `reconcile`).
    subscribers: Vec<PeerId>,
    /// Input was handed to str0m and not yet polled. In RTP mode str0m holds one incoming
    /// packet until polled, so a peer is polled before it is given the next datagram.
    unpolled: bool,
    /// Packets were forwarded to this peer since it was last polled.
    written: bool,
    /// How tall this peer shows each source's video, by the source's stream id.
    view_heights: HashMap<String, u16>,
}

/// How many due timeouts `poll_peer` serves in one call (see there).
const DUE_ROUNDS: usize = 16;
/// RFC 6464's audio level of digital silence, as str0m reports it (-dBov).
const SILENCE_DBOV: i8 = -127;
/// Scratch space for a track's layer rates (`TrackIn::rates`).
const NO_RATES: [LayerRate<Option<Rid>>; MAX_LAYERS] = [LayerRate {
    rid: None,
    bps: 0,
    height: None,
}; MAX_LAYERS];
/// The loss-based estimate never goes under this: the low layer of one video.
const MIN_ESTIMATE_BPS: u64 = 100_000;

/// A speaker of a meeting: its position in joining order, its id, its stream id and the
/// tracks it sends.
type Speaker = (usize, PeerId, String, Vec<(Mid, MediaKind)>);

/// Something one peer's output asks of the others. Lives only between polling one peer and
/// propagating; boxing the packet variant would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
enum Propagate {
    TrackOpen,
    /// The peer's link figures were renewed: renew its bandwidth estimate.
    Stats,
    /// str0m's estimate of the link to the peer changed: share it out again.
    Estimate,
    Rtp(Packet),
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
    /// What polled peers ask of the others (kept to reuse its allocation).
    queue: VecDeque<(PeerId, Propagate)>,
    /// The server's DTLS certificate, one for every peer (as Janus and mediasoup do): making
    /// one per peer cost 1.2 ms of the worker's time per joining site, and the first one
    /// 40 ms (the crypto library starting), inside the join.
    dtls_cert: DtlsCert,
}

/// A fresh self-signed DTLS certificate (ECDSA P-256) from str0m's crypto provider.
pub fn generate_dtls_cert() -> DtlsCert {
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .expect("the aws-lc-rs provider generates certificates")
}

impl Conference {
    pub fn new(config: Config) -> Self {
        Conference {
            config,
            dtls_cert: generate_dtls_cert(),
            peers: HashMap::new(),
            meetings: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            out: VecDeque::new(),
            dirty: Vec::new(),
            queue: VecDeque::new(),
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
            .set_dtls_cert(self.dtls_cert.clone())
            // Packets are forwarded as they come (no reassembly, no packetizing), rewritten per
            // receiver; only Opus and VP8, whose payloads the rewriting understands.
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_ice_lite(true)
            .set_local_ice_credentials(creds.clone())
            .set_stats_interval(Some(Duration::from_secs(1)))
            // Only the delay-based estimate needs str0m's estimator (and its pacer, which
            // sends one packet per timeout); the loss-based one is `LossControl`.
            .enable_bwe(
                (self.config.estimation == Estimation::Delay)
                    .then(|| Bitrate::bps(self.config.initial_bitrate_bps)),
            )
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
                rate: LossControl::new(self.config.initial_bitrate_bps),
                kbps_out: 0.0,
                remb_bps: None,
                last_stats: None,
                rtt_ms: None,
                loss_in: None,
                loss_out: None,
                jitter_ms: None,
                seen: true,
                view: view.unwrap_or(self.config.view_size),
                subscribers: Vec::new(),
                unpolled: false,
                written: false,
                view_heights: HashMap::new(),
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
                let tracks = p.tracks_in.iter().map(|t| (t.mid, t.kind)).collect();
                Some((i, *s, p.stream.clone(), tracks))
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
                .filter(|(pos, s, _, _)| *s != *r && rank(*pos, r_pos) < p.view)
                .collect();
            let in_view = |source: PeerId| wanted.iter().any(|(_, s, _, _)| *s == source);
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
            for (_, source, stream, tracks) in &wanted {
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
                        let mut t = TrackOut::new(*source, *mid, *kind);
                        t.view_height = p.view_heights.get(stream).copied();
                        p.tracks_out.push(t);
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
        // Who receives whom, so that forwarding a packet visits only its receivers.
        let mut pairs: Vec<(PeerId, PeerId)> = Vec::new();
        for r in &order {
            if let Some(p) = self.peers.get_mut(r) {
                p.subscribers.clear();
                pairs.extend(p.tracks_out.iter().map(|t| (t.source, *r)));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        for (source, r) in pairs {
            if let Some(p) = self.peers.get_mut(&source) {
                p.subscribers.push(r);
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
        let mut api = p.rtc.direct_api();
        for t in &mut p.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
                // The sender paces its packets already, and forwarding keeps its spacing.
                // Pacing them again (with `Estimation::Delay`) would add delay and a timer
                // wake-up per packet and receiver.
                if let Some(tx) = api.stream_tx_by_mid(m, None) {
                    tx.set_unpaced(true);
                }
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
        self.split_budget(now, peer);
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
        if self.peers.get(&peer).is_some_and(|p| p.unpolled) {
            self.poll_peer(now, peer);
        }
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
        p.unpolled = true;
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
        while let Some(id) = self.dirty.pop() {
            self.poll_peer(now, id);
            self.dirty.sort_unstable();
            self.dirty.dedup();
        }
    }

    /// Poll one peer until it only has a timeout left, and hand what it emits to the others
    /// (they become dirty, and are polled by `drive`).
    fn poll_peer(&mut self, now: Instant, id: PeerId) {
        self.negotiate(id);
        let mut queue = std::mem::take(&mut self.queue);
        let mut broken = false;
        if let Some(p) = self.peers.get_mut(&id) {
            p.unpolled = false;
            let mut rounds = if std::mem::take(&mut p.written) && p.connected {
                0
            } else {
                DUE_ROUNDS
            };
            loop {
                if !p.rtc.is_alive() {
                    broken = true;
                    break;
                }
                match p.rtc.poll_output() {
                    // str0m sends packets written to it after its next timeout (which it then
                    // asks for at once). Serving that timeout here means a forwarded packet
                    // leaves in the call that received it, not on a later turn of the driver.
                    // Only after forwarding to a connected peer: other timers (DTLS, ICE
                    // handshakes) count their retries per timeout served. The bound keeps a
                    // timer that stays due from spinning.
                    Ok(RtcOutput::Timeout(t)) if t <= now && rounds < DUE_ROUNDS => {
                        rounds += 1;
                        if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                            broken = true;
                            break;
                        }
                    }
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
        self.queue = queue;
    }

    fn propagate(&mut self, now: Instant, origin: PeerId, prop: Propagate) {
        let Some(meeting) = self.peers.get(&origin).map(|p| p.meeting) else {
            return;
        };
        match prop {
            Propagate::TrackOpen => self.reconcile(meeting),
            Propagate::Stats => self.update_estimate(now, origin),
            Propagate::Estimate => self.split_budget(now, origin),
            Propagate::KeyframeRequest { source, mid, rid } => {
                self.request_keyframe(now, source, mid, Some(rid), false);
            }
            Propagate::Rtp(pkt) => self.forward(now, origin, &pkt),
        }
    }

    /// Hand one incoming packet to every peer that receives its track, rewritten for each.
    fn forward(&mut self, now: Instant, origin: PeerId, pkt: &Packet) {
        let Some(src) = self.peers.get_mut(&origin) else {
            return;
        };
        if !src.seen {
            return; // nobody receives this peer
        }
        let Some(track) = src.tracks_in.iter_mut().find(|t| t.mid == pkt.mid) else {
            return;
        };
        // Digital silence (a muted microphone: RFC 6464 level -127 dBov) is not forwarded, as
        // Jitsi's bridge does: under C4 every site but the one called on is muted, and their
        // audio would otherwise be most of a large meeting's packets. Receivers see a gap in
        // time, not in numbering (as with Opus DTX), and their decoders play silence.
        if !pkt.video && pkt.audio_level == Some(SILENCE_DBOV) {
            if !track.silent {
                track.silent = true;
                track.silence_runs = track.silence_runs.wrapping_add(1);
            }
            return;
        }
        track.silent = false;
        let silence_runs = track.silence_runs;
        let track = &*track;
        let mut rates = NO_RATES;
        let n = track.rates(now, &mut rates);
        let layers = &rates[..n];
        // Visit the receivers without holding the source borrowed; given back below.
        let subscribers = std::mem::take(&mut src.subscribers);
        // Layers some receiver starts waiting for: each needs a keyframe (no allocation).
        let mut keyframe_wanted: [Option<Option<Rid>>; MAX_LAYERS] = [None; MAX_LAYERS];
        for other in &subscribers {
            let Some(o) = self.peers.get_mut(other) else {
                continue;
            };
            let Some(i) = o
                .tracks_out
                .iter()
                .position(|t| t.source == origin && t.source_mid == pkt.mid)
            else {
                continue;
            };
            let OutState::Open(mid) = o.tracks_out[i].state else {
                continue;
            };
            let t = &mut o.tracks_out[i];
            if pkt.video && pkt.rid.is_some() {
                let cap = height_cap(layers, t.view_height);
                if let Some(want) = choose_layer(t.budget_bps, layers, t.layer.as_ref(), cap) {
                    if t.layer == Some(want) {
                        // Back to the current layer: a switch still waited for is void.
                        t.wanted = None;
                    } else if t.wanted != Some(want) {
                        t.wanted = Some(want);
                        if !keyframe_wanted.contains(&Some(want)) {
                            if let Some(slot) = keyframe_wanted.iter_mut().find(|w| w.is_none()) {
                                *slot = Some(want);
                            }
                        }
                    }
                }
                if t.wanted == Some(pkt.rid) && pkt.keyframe {
                    // Switch on the new layer's keyframe; the receiver sees one stream.
                    t.rewrite.rebase(now, pkt);
                    t.layer = t.wanted.take();
                }
                if t.layer != Some(pkt.rid) {
                    continue;
                }
            } else if t.rewrite.last.is_none() && t.layer.is_none() {
                t.rewrite.rebase(now, pkt);
                t.layer = Some(pkt.rid);
                t.silence_runs = silence_runs;
            } else if t.silence_runs != silence_runs {
                // The first sound after silence: continue the numbering over the gap.
                t.rewrite.rebase(now, pkt);
                t.silence_runs = silence_runs;
            }
            let t = &mut o.tracks_out[i];
            let pt = match t.pt {
                Some((from, to)) if from == pkt.pt => to,
                _ => {
                    let Some(to) = o.rtc.codec_config().match_params(pkt.params) else {
                        continue;
                    };
                    let to = to.pt();
                    t.pt = Some((pkt.pt, to));
                    to
                }
            };
            let Some(write) = t.rewrite.write(now, pt, pkt) else {
                continue;
            };
            let mut api = o.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            tx.write_rtp(write);
            o.written = true;
            self.dirty.push(*other);
        }
        if let Some(src) = self.peers.get_mut(&origin) {
            src.subscribers = subscribers;
        }
        for rid in keyframe_wanted.into_iter().flatten() {
            self.request_keyframe(now, origin, pkt.mid, Some(rid), true);
        }
    }

    /// Renew a receiver's bandwidth estimate once its link figures come (every second). What it
    /// would like to receive is every stream at the layer its tile needs (the top layer when
    /// it said nothing), with the headroom a layer switch upwards needs: the loss-based
    /// estimate never grows past it, and str0m's delay-based estimator is asked to probe
    /// towards it (forwarded media alone would never show it room for a better layer).
    fn update_estimate(&mut self, now: Instant, id: PeerId) {
        let needs = self.needs(now, id);
        let desired: u64 = needs.iter().map(|(_, _, need)| need).sum();
        // The estimator holds its estimate near the desired rate: never ask for less than the
        // estimate it starts from (layer rates are measured only after a second or so).
        let desired = (desired.saturating_mul(115) / 100).max(self.config.initial_bitrate_bps);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        match self.config.estimation {
            Estimation::Delay => {
                p.rtc
                    .bwe()
                    .set_bitrate(Bitrate::bps(0), Bitrate::bps(desired));
                self.dirty.push(id);
            }
            Estimation::Loss => {
                let sent = (p.kbps_out * 1000.0) as u64;
                let loss_based = p
                    .rate
                    .on_report(p.loss_out, sent, MIN_ESTIMATE_BPS, desired);
                p.estimate_bps = p.remb_bps.map_or(loss_based, |r| r.min(loss_based));
            }
        }
        self.share_out(id, &needs);
    }

    /// What each open outgoing track of receiver `id` needs: (index in `tracks_out`, video,
    /// the rate of the layer its tile calls for). A video whose layers are not measured yet
    /// counts as [`MIN_ESTIMATE_BPS`].
    fn needs(&self, now: Instant, id: PeerId) -> Vec<(usize, bool, u64)> {
        let Some(p) = self.peers.get(&id) else {
            return Vec::new();
        };
        let mut rates = NO_RATES;
        let mut needs = Vec::with_capacity(p.tracks_out.len());
        for (i, t) in p.tracks_out.iter().enumerate() {
            if !matches!(t.state, OutState::Open(_)) {
                continue;
            }
            let Some(src) = self
                .peers
                .get(&t.source)
                .and_then(|s| s.tracks_in.iter().find(|x| x.mid == t.source_mid))
            else {
                continue;
            };
            let n = src.rates(now, &mut rates);
            let layers = &rates[..n];
            let cap = height_cap(layers, t.view_height);
            let need = choose_layer(u64::MAX, layers, None, cap)
                .and_then(|rid| layers.iter().find(|l| l.rid == rid))
                .map_or(0, |l| l.bps);
            let video = t.kind == MediaKind::Video;
            let unmeasured = video && need == 0;
            needs.push((i, video, if unmeasured { MIN_ESTIMATE_BPS } else { need }));
        }
        needs
    }

    /// Share receiver `id`'s estimate out among the videos it receives, in proportion to what
    /// each one's tile needs (after audio): a thumbnail does not take the share the large
    /// picture needs. Runs when the estimate or a view changes, not per packet.
    fn split_budget(&mut self, now: Instant, id: PeerId) {
        let needs = self.needs(now, id);
        self.share_out(id, &needs);
    }

    /// [`Conference::split_budget`] with the needs already known.
    fn share_out(&mut self, id: PeerId, needs: &[(usize, bool, u64)]) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let audio: u64 = needs.iter().filter(|n| !n.1).map(|n| n.2).sum();
        let video: u64 = needs.iter().filter(|n| n.1).map(|n| n.2).sum();
        let budget = p.estimate_bps.saturating_sub(audio);
        for &(i, _, need) in needs.iter().filter(|n| n.1) {
            let share = (budget as u128 * need as u128 / video.max(1) as u128) as u64;
            p.tracks_out[i].budget_bps = share;
        }
    }

    /// Peer `peer` shows the videos of these streams (by stream id) this many device pixels
    /// high: each is forwarded at the smallest simulcast layer at least that tall (a tile of
    /// 180 pixels gets the low layer, the large picture of a 1+7 layout the top one), within
    /// the receiver's bandwidth. A height of 0 (a hidden tile) gets the lowest layer. Each call
    /// replaces the last (a page names every tile it has): a stream not named has no limit,
    /// and a stream id not yet in the meeting applies when that peer joins.
    pub fn set_view(
        &mut self,
        now: Instant,
        peer: PeerId,
        heights: &[(String, u16)],
    ) -> Result<(), MediaError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(MediaError::UnknownPeer(peer))?;
        p.view_heights = heights.iter().cloned().collect();
        let sources: Vec<(usize, PeerId)> = p
            .tracks_out
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == MediaKind::Video)
            .map(|(i, t)| (i, t.source))
            .collect();
        for (i, source) in sources {
            let Some(stream) = self.peers.get(&source).map(|s| s.stream.clone()) else {
                continue;
            };
            if let Some(p) = self.peers.get_mut(&peer) {
                p.tracks_out[i].view_height = p.view_heights.get(&stream).copied();
            }
        }
        self.split_budget(now, peer);
        Ok(())
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
        let mut api = p.rtc.direct_api();
        for l in t.layers.iter().filter(|l| rid.is_none_or(|r| r == l.rid)) {
            if let Some(rx) = api.stream_rx(&l.ssrc) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
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
            pt: None,
            view_height: None,
            budget_bps: 0,
            silence_runs: 0,
            rewrite: Rewrite::default(),
        }
    }
}

impl TrackIn {
    /// Layers seen in the last two seconds, with their measured rates, into `out`; how many.
    fn rates(&self, now: Instant, out: &mut [LayerRate<Option<Rid>>; MAX_LAYERS]) -> usize {
        let live = self
            .layers
            .iter()
            .filter(|l| now.duration_since(l.last_seen) < Duration::from_secs(2));
        let mut n = 0;
        for (slot, l) in out.iter_mut().zip(live) {
            *slot = LayerRate {
                rid: l.rid,
                // A layer not yet measured counts as its bytes so far, so it is usable at once.
                bps: if l.bps > 0 { l.bps } else { l.bytes * 8 },
                height: l.height,
            };
            n += 1;
        }
        n
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
                    size: None,
                    params: None,
                    silent: false,
                    silence_runs: 0,
                });
                Some(Propagate::TrackOpen)
            } else {
                None
            }
        }
        Event::RtpPacket(pkt) => on_rtp(p, pkt, now).map(Propagate::Rtp),
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
        Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
            p.estimate_bps = estimate.as_u64();
            Some(Propagate::Estimate)
        }
        // A receiver that estimates for itself (REMB: aiortc, older endpoints) is believed at
        // once, and caps the loss-based estimate from then on.
        Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
            p.estimate_bps = estimate.as_u64();
            p.remb_bps = Some(p.estimate_bps);
            Some(Propagate::Estimate)
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
            p.kbps_out = kbps_out;
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
            Some(Propagate::Stats)
        }
        _ => None,
    }
}

/// Account for one incoming RTP packet of peer `p` and describe it for forwarding.
fn on_rtp(p: &mut Peer, pkt: RtpPacket, now: Instant) -> Option<Packet> {
    let ssrc = pkt.header.ssrc;
    let known = p
        .tracks_in
        .iter()
        .enumerate()
        .find_map(|(i, t)| t.layers.iter().position(|l| l.ssrc == ssrc).map(|j| (i, j)));
    let (ti, li) = match known {
        Some(x) => x,
        None => {
            // A new stream (a simulcast layer, or the track's first packet).
            let (mid, rid) = {
                let mut api = p.rtc.direct_api();
                let rx = api.stream_rx(&ssrc)?;
                (rx.mid(), rx.rid())
            };
            let ti = p.tracks_in.iter().position(|t| t.mid == mid)?;
            let t = &mut p.tracks_in[ti];
            if let Some(j) = t.layers.iter().position(|l| l.rid == rid) {
                t.layers[j].ssrc = ssrc; // the sender restarted the layer
                (ti, j)
            } else {
                t.layers.push(LayerIn {
                    ssrc,
                    rid,
                    bytes: 0,
                    frames: 0,
                    bps: 0,
                    fps: 0,
                    last_seen: now,
                    height: None,
                });
                (ti, t.layers.len() - 1)
            }
        }
    };
    let pt = pkt.header.payload_type;
    let params = match p.tracks_in[ti].params {
        Some((known, params)) if known == pt => params,
        _ => {
            let params = *p
                .rtc
                .codec_config()
                .params()
                .iter()
                .find(|x| x.pt() == pt)?;
            p.tracks_in[ti].params = Some((pt, params));
            params
        }
    };
    let t = &mut p.tracks_in[ti];
    let video = t.kind == MediaKind::Video;
    let layer = &mut t.layers[li];
    layer.bytes += pkt.payload.len() as u64;
    layer.last_seen = now;
    // A video frame ends with the marker bit; every audio packet is a frame.
    if pkt.header.marker || !video {
        layer.frames += 1;
    }
    let rid = layer.rid;
    let vp8 = if video {
        Vp8Descriptor::parse(&pkt.payload).ok()
    } else {
        None
    };
    let keyframe = vp8
        .as_ref()
        .is_some_and(|d| d.starts_keyframe(&pkt.payload));
    if keyframe {
        if let Some(size) = vp8::descriptor_len(&pkt.payload)
            .and_then(|n| vp8::keyframe_size(pkt.payload.get(n..)?))
        {
            if t.size.is_none_or(|s| size.0 >= s.0) {
                t.size = Some(size);
            }
            t.layers[li].height = Some(size.1);
        }
    }
    Some(Packet {
        mid: t.mid,
        rid,
        video,
        pt,
        params,
        seq: *pkt.seq_no,
        ts: pkt.header.timestamp,
        marker: pkt.header.marker,
        arrival: pkt.timestamp,
        audio_level: pkt.header.ext_vals.audio_level,
        voice_activity: pkt.header.ext_vals.voice_activity,
        payload: pkt.payload,
        vp8,
        keyframe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: descriptor with a 15-bit picture id and TL0PICIDX, then the frame.
    fn vp8_payload(picture_id: u16, tl0: u8, keyframe: bool) -> Arc<[u8]> {
        let start = if keyframe { 0x90 } else { 0x80 };
        let [hi, lo] = picture_id.to_be_bytes();
        let frame_tag = if keyframe { 0x50 } else { 0x51 };
        Arc::from(vec![start, 0xe0, 0x80 | hi, lo, tl0, 0x40, frame_tag, 0, 0])
    }

    fn packet(video: bool, seq: u64, ts: u32, vp8: Option<(u16, u8, bool)>) -> Packet {
        let rtc = Rtc::builder().build(Instant::now());
        let payload = match vp8 {
            Some((id, tl0, key)) => vp8_payload(id, tl0, key),
            None => Arc::from(vec![1u8, 2, 3]),
        };
        let d = Vp8Descriptor::parse(&payload)
            .ok()
            .filter(|_| vp8.is_some());
        Packet {
            mid: Mid::from("0"),
            rid: None,
            video,
            pt: 96.into(),
            params: rtc.codec_config().params()[0],
            seq,
            ts,
            marker: false,
            arrival: Instant::now(),
            keyframe: d.as_ref().is_some_and(|d| d.starts_keyframe(&payload)),
            payload,
            vp8: d,
            audio_level: None,
            voice_activity: None,
        }
    }

    fn out_seq(r: &Rewrite) -> u64 {
        r.last.expect("written").0
    }

    #[test]
    fn the_first_packet_starts_with_rollover_counter_zero() {
        let now = Instant::now();
        let mut r = Rewrite::default();
        let first = packet(false, 3 * 65536 + 17, 1000, None);
        r.rebase(now, &first);
        assert!(r.write(now, 111.into(), &first).is_some());
        assert_eq!(out_seq(&r), 17);
        assert!(r
            .write(now, 111.into(), &packet(false, 3 * 65536 + 18, 1960, None))
            .is_some());
        assert_eq!(out_seq(&r), 18);
    }

    #[test]
    fn a_layer_switch_continues_numbering_and_drops_the_old_layers_late_packets() {
        let t0 = Instant::now();
        let mut r = Rewrite::default();
        // Layer q: sequence numbers 100.., timestamps 9000.., picture ids 500.., TL0 7.
        let q = |i: u64, key: bool| {
            packet(
                true,
                100 + i,
                9000 + 3000 * i as u32,
                Some((500 + i as u16, 7, key)),
            )
        };
        r.rebase(t0, &q(0, true));
        for i in 0..5 {
            assert!(r.write(t0, 96.into(), &q(i, i == 0)).is_some());
        }
        let (seq, ts, _) = r.last.unwrap();
        assert_eq!((seq, ts), (104, 21_000));
        assert_eq!((r.last_picture_id, r.last_tl0), (Some(504), Some(7)));
        // 40 ms later, layer f's keyframe: a wholly different numbering (and a picture id that
        // wraps).
        let t1 = t0 + Duration::from_millis(40);
        let f = |i: u64| {
            packet(
                true,
                70_000 + i,
                4_000_000_000u32.wrapping_add(3000 * i as u32),
                Some((0x7fff_u16.wrapping_add(i as u16) & 0x7fff, 200, i == 0)),
            )
        };
        r.rebase(t1, &f(0));
        assert!(r.write(t1, 96.into(), &f(0)).is_some());
        let (seq, ts, _) = r.last.unwrap();
        assert_eq!(seq, 105, "the sequence continues");
        assert_eq!(
            ts,
            21_000 + 40 * 90,
            "the timestamp advances by the time that passed"
        );
        assert_eq!(r.last_picture_id, Some(505));
        assert_eq!(r.last_tl0, Some(8));
        assert!(r.write(t1, 96.into(), &f(1)).is_some());
        assert_eq!(out_seq(&r), 106);
        assert_eq!(
            r.last_picture_id,
            Some(506),
            "picture ids wrap with the source"
        );
        // A packet of layer f from before the switch is older than the stream the receiver has.
        assert!(
            r.write(t1, 96.into(), &f(0)).is_some(),
            "a resend of the switch packet is fine"
        );
        assert!(r
            .write(t1, 96.into(), &packet(true, 69_999, 1, None))
            .is_none());
        assert_eq!(out_seq(&r), 106, "late packets do not move the stream back");
    }
}
