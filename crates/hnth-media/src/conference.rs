//! The conference state machine: peers, meetings, forwarding, renegotiation and expiry.
//!
//! State in, events out, time passed in: nothing here touches a socket or reads a clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use std::time::{Duration, Instant};

use crate::rate::{Estimation, LossControl};
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::config::DtlsCert;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, IceCreds, Input, Output as RtcOutput, Rtc};

use crate::demux::stun_local_ufrag;
use crate::gate::{FloorGate, Verdict};
use crate::layer::{choose_layer, height_cap, LayerRate};
use crate::peer::{on_event, OutState, Peer, Propagate, TrackOut};
use crate::rewrite::Packet;
use crate::select::{self, Receives};

/// Simulcast layers of one incoming video considered for forwarding; more are ignored.
pub(crate) const MAX_LAYERS: usize = 4;

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
    /// A connected peer from which nothing arrives for this long is dropped. As long as a
    /// browser's ICE consent (30 s): a shorter cut of the line is bridged by the same session,
    /// which carries media again as soon as the line does.
    pub idle_timeout: Duration,
    /// A connected peer from which nothing arrives for this long is reported interrupted
    /// ([`Output::LinkInterrupted`]), and resumed at its next datagram.
    pub interrupt_after: Duration,
    /// The bandwidth estimate a receiver starts from.
    pub initial_bitrate_bps: u64,
    /// Which estimate chooses each receiver's simulcast layers.
    pub estimation: Estimation,
    /// Without floor control ([`Conference::add_peer`], [`Receives::FirstJoined`]), each peer
    /// receives the streams of at most this many others: the first to join the meeting. A
    /// later one is forwarded only to peers with a wider view, and when nobody receives it, it
    /// is asked to pause its video ([`Output::SendVideo`]) so that its uplink carries only
    /// audio. Under floor control the meeting's frame decides ([`Receives::Frame`]).
    pub view_size: usize,
    /// How many sites the control center's console watches at once.
    pub monitor_view: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            candidates: vec![],
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            interrupt_after: Duration::from_secs(2),
            initial_bitrate_bps: 2_500_000,
            estimation: Estimation::default(),
            view_size: 8,
            monitor_view: 24,
        }
    }
}

/// How a peer starts: what it receives and whether its sound passes the floor gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSetup {
    pub receives: Receives,
    /// Whether its audio reaches the others from the start ([`Conference::set_floor`]).
    pub heard: bool,
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
    /// Nothing arrived for `idle_timeout`.
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
    /// Audio packets of the peer the floor gate dropped since it joined (C4).
    pub audio_dropped: u64,
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
    /// Nothing arrived from the peer for `interrupt_after`: its line is cut or failing. The
    /// session is kept (`idle_timeout`) and carries media again when the line does.
    LinkInterrupted {
        peer: PeerId,
        /// Since when nothing arrived (the interruption began this long ago).
        silent_for: Duration,
    },
    /// Datagrams arrive again from an interrupted peer.
    LinkResumed {
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
    /// The peer sends speech while it does not hold the floor ([`Conference::set_floor`]):
    /// nobody hears it; the rules may record it (R4). At most once a second per peer.
    UnheardSpeech {
        peer: PeerId,
    },
}

/// How long a receiver waits for the keyframe of the layer it switches to before it is asked
/// for again.
const KEYFRAME_RETRY: Duration = Duration::from_millis(1000);
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
        let setup = PeerSetup {
            receives: Receives::FirstJoined(self.config.view_size),
            heard: true,
        };
        self.add_peer_with(now, peer, meeting, stream, offer_sdp, setup)
    }

    /// [`Conference::add_peer`] with what the peer receives and whether it is heard from the
    /// start: under floor control (C4) a site joins with its gate closed, so that not one
    /// packet of its sound passes before the rules open it.
    pub fn add_peer_with(
        &mut self,
        now: Instant,
        peer: PeerId,
        meeting: MeetingId,
        stream: &str,
        offer_sdp: &str,
        setup: PeerSetup,
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
                interrupted: false,
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
                receives: setup.receives,
                subscribers: Vec::new(),
                unpolled: false,
                written: false,
                view_heights: HashMap::new(),
                floor: FloorGate::new(setup.heard),
            },
        );
        self.meetings.entry(meeting).or_default().push(peer);
        // The tracks of the newcomer's view are offered to it.
        self.reconcile(now, meeting);
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
        self.forget(now, peer, &p);
        self.drive(now);
        Ok(())
    }

    fn forget(&mut self, now: Instant, peer: PeerId, p: &Peer) {
        self.by_ufrag.remove(&p.ufrag);
        self.by_addr.retain(|_, v| *v != peer);
        if let Some(list) = self.meetings.get_mut(&p.meeting) {
            list.retain(|x| *x != peer);
            if list.is_empty() {
                self.meetings.remove(&p.meeting);
            }
        }
        // The others stop the tracks that came from this peer, and the views move up.
        self.reconcile(now, p.meeting);
    }

    /// Bring every receiver's outgoing tracks of `meeting` in line with what it receives
    /// ([`Receives`], `select.rs`), and tell peers whether anybody takes their video. Called
    /// whenever the meeting's peers, their tracks or what they receive change; O(peers ×
    /// tracks).
    fn reconcile(&mut self, now: Instant, meeting: MeetingId) {
        let order = self.meeting_peers(meeting).to_vec();
        let mut tracks: HashMap<PeerId, Vec<(Mid, MediaKind)>> = HashMap::new();
        let mut streams: HashMap<PeerId, String> = HashMap::new();
        for id in &order {
            if let Some(p) = self.peers.get(id) {
                tracks.insert(*id, p.tracks_in.iter().map(|t| (t.mid, t.kind)).collect());
                streams.insert(*id, p.stream.clone());
            }
        }
        // Whose video somebody takes: the others are asked to pause theirs.
        let mut seen: Vec<PeerId> = Vec::new();
        let mut resplit: Vec<PeerId> = Vec::new();
        for r in &order {
            let Some(p) = self.peers.get_mut(r) else {
                continue;
            };
            let wanted = select::wants(*r, &p.receives, &order, &tracks);
            seen.extend(
                select::video_sources(*r, &p.receives, &order)
                    .into_iter()
                    .map(|(s, _)| s),
            );
            let is_wanted = |t: &TrackOut| {
                wanted
                    .iter()
                    .any(|w| w.source == t.source && w.mid == t.source_mid)
            };
            let before = p.tracks_out.len();
            p.tracks_out
                .retain(|t| t.state != OutState::ToOpen || is_wanted(t));
            let mut changed = p.tracks_out.len() != before;
            for t in p.tracks_out.iter_mut().filter(|t| !is_wanted(t)) {
                // Out of view: parked (its m-line kept for when it comes back); a source that
                // left the meeting: stopped.
                let gone = !order.contains(&t.source);
                t.state = match t.state {
                    OutState::Open(m) | OutState::ToResume(m) if !gone => OutState::ToPark(m),
                    OutState::Open(m)
                    | OutState::ToResume(m)
                    | OutState::Parked(m)
                    | OutState::ToPark(m)
                        if gone =>
                    {
                        OutState::ToStop(m)
                    }
                    s => s,
                };
                changed |= matches!(t.state, OutState::ToPark(_) | OutState::ToStop(_));
            }
            let mut heights_changed = false;
            for w in &wanted {
                let current = p.tracks_out.iter_mut().find(|t| {
                    t.source == w.source
                        && t.source_mid == w.mid
                        && !matches!(t.state, OutState::ToStop(_) | OutState::NegotiatingStop(_))
                });
                match current {
                    Some(t) => {
                        // Back in view: the parked m-line is made sendonly again (or, not yet
                        // parked, simply stays open).
                        match t.state {
                            OutState::Parked(m) => {
                                t.state = OutState::ToResume(m);
                                changed = true;
                            }
                            OutState::ToPark(m) => t.state = OutState::Open(m),
                            _ => {}
                        }
                        if t.cell_height != w.cell_height {
                            t.cell_height = w.cell_height;
                            heights_changed = true;
                        }
                    }
                    None => {
                        let mut t = TrackOut::new(w.source, w.mid, w.kind);
                        t.view_height = streams
                            .get(&w.source)
                            .and_then(|s| p.view_heights.get(s))
                            .copied();
                        t.cell_height = w.cell_height;
                        p.tracks_out.push(t);
                        changed = true;
                    }
                }
            }
            if changed {
                self.dirty.push(*r);
            }
            if heights_changed {
                resplit.push(*r);
            }
        }
        for r in &order {
            let Some(p) = self.peers.get_mut(r) else {
                continue;
            };
            let is_seen = seen.contains(r);
            if p.seen != is_seen {
                p.seen = is_seen;
                self.out.push_back(Output::SendVideo {
                    peer: *r,
                    on: is_seen,
                });
            }
        }
        // Who receives whom, so that forwarding a packet visits only its receivers.
        let mut pairs: Vec<(PeerId, PeerId)> = Vec::new();
        for r in &order {
            if let Some(p) = self.peers.get_mut(r) {
                p.subscribers.clear();
                pairs.extend(
                    p.tracks_out
                        .iter()
                        .filter(|t| !matches!(t.state, OutState::Parked(_)))
                        .map(|t| (t.source, *r)),
                );
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        for (source, r) in pairs {
            if let Some(p) = self.peers.get_mut(&source) {
                p.subscribers.push(r);
            }
        }
        for r in resplit {
            self.split_budget(now, r);
        }
    }

    /// What `peer` receives of its meeting from now on (see [`Receives`]): the meeting's rules
    /// call this whenever the frame changes (C1), the tracks it no longer gets are stopped and
    /// the new ones offered to it.
    pub fn set_receives(
        &mut self,
        now: Instant,
        peer: PeerId,
        receives: Receives,
    ) -> Result<(), MediaError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(MediaError::UnknownPeer(peer))?;
        if p.receives == receives {
            return Ok(());
        }
        p.receives = receives;
        let meeting = p.meeting;
        self.reconcile(now, meeting);
        self.drive(now);
        Ok(())
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
                    OutState::NegotiatingPark(m) => t.state = OutState::ToPark(m),
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
        for t in &mut p.tracks_out {
            if let OutState::NegotiatingPark(m) = t.state {
                t.state = OutState::Parked(m);
                // Its next packets start a new run for the receiver's decoder: a keyframe,
                // and the layer chosen again.
                t.layer = None;
                t.wanted = None;
                t.wanted_asked = None;
            }
        }
        p.tracks_out
            .retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        let meeting = p.meeting;
        // Ask for keyframes for the streams that just opened.
        let opened: Vec<(PeerId, Mid, MediaKind)> = p
            .tracks_out
            .iter()
            .filter(|t| t.kind == MediaKind::Video && matches!(t.state, OutState::Open(_)))
            .map(|t| (t.source, t.source_mid, t.kind))
            .collect();
        for (source, mid, _) in opened {
            self.request_keyframe(now, source, mid, None, true);
        }
        self.split_budget(now, peer);
        // Streams whose source left or moved out of view while this offer was out.
        self.reconcile(now, meeting);
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

    /// Several datagrams arrived (a `recvmmsg` batch), each with the time it arrived: each is
    /// handed to its peer first, and the peers are polled once for the whole batch (at `now`)
    /// rather than once per datagram.
    ///
    /// The arrival times are what the transport-wide feedback (TWCC) reports to each sender,
    /// whose bandwidth estimate follows the changes in delay it reads there. They should be the
    /// kernel's stamps, not the time the batch is handled: a server that waits for the CPU
    /// would otherwise report its own scheduling as delay on the line, and the senders would
    /// lower their rate (seen on a loaded two-core machine: Chromium fell to its lowest
    /// simulcast layer with no loss at all). A time earlier than an earlier `now` is fine:
    /// str0m ignores a timeout that goes back in time.
    pub fn handle_receive_batch<'a>(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        datagrams: impl IntoIterator<Item = (Instant, SocketAddr, &'a [u8])>,
    ) {
        for (arrived, source, buf) in datagrams {
            self.receive(arrived.min(now), source, destination, buf);
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
        if p.interrupted {
            p.interrupted = false;
            self.out.push_back(Output::LinkResumed { peer });
        }
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
            if p.connected
                && !p.interrupted
                && now.duration_since(p.last_rx) > self.config.interrupt_after
            {
                p.interrupted = true;
                self.out.push_back(Output::LinkInterrupted {
                    peer: *id,
                    silent_for: now.duration_since(p.last_rx),
                });
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
            if p.connected && !p.interrupted {
                p.last_rx + self.config.interrupt_after
            } else if p.connected {
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
            self.forget(now, peer, &p);
            self.out.push_back(Output::PeerClosed { peer, reason });
        }
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
            Propagate::TrackOpen => self.reconcile(now, meeting),
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
        let gated = !pkt.video
            && match src.floor.admit(now, pkt.audio_level) {
                Verdict::Pass => false,
                Verdict::Drop => true,
                Verdict::DropSpeaking => {
                    self.out.push_back(Output::UnheardSpeech { peer: origin });
                    true
                }
            };
        if src.subscribers.is_empty() {
            return; // nobody receives this peer
        }
        let Some(track) = src.tracks_in.iter_mut().find(|t| t.mid == pkt.mid) else {
            return;
        };
        // Digital silence (a muted microphone: RFC 6464 level -127 dBov) is not forwarded, as
        // Jitsi's bridge does: under C4 every site but the one called on is muted, and their
        // audio would otherwise be most of a large meeting's packets. Receivers see a gap in
        // time, not in numbering (as with Opus DTX), and their decoders play silence.
        // Audio held back by the floor gate goes the same way.
        if gated || (!pkt.video && pkt.audio_level == Some(SILENCE_DBOV)) {
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
                let cap = height_cap(layers, t.shown_height());
                if let Some(want) = choose_layer(t.budget_bps, layers, t.layer.as_ref(), cap) {
                    // A keyframe asked for and not come (the request or the keyframe lost,
                    // or the encoder busy) is asked for again: a receiver starting on this
                    // layer gets nothing of the picture until then.
                    let unanswered = t
                        .wanted_asked
                        .is_some_and(|at| now.duration_since(at) >= KEYFRAME_RETRY);
                    if t.layer == Some(want) {
                        // Back to the current layer: a switch still waited for is void.
                        t.wanted = None;
                    } else if t.wanted != Some(want) || unanswered {
                        t.wanted = Some(want);
                        t.wanted_asked = Some(now);
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
            let cap = height_cap(layers, t.shown_height());
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

    /// Whether `peer`'s audio reaches the others: open while it holds the floor (C4, Art. 7.2a),
    /// as the meeting's rules decide. Closed, its audio is dropped here whatever its page does,
    /// counted ([`Conference::audio_dropped`]), and speech behind it is reported
    /// ([`Output::UnheardSpeech`]). Receivers see a gap in time, not in numbering, as after
    /// silence. Peers join with the gate open; a core without floor control forwards every sound.
    pub fn set_floor(&mut self, peer: PeerId, open: bool) -> Result<(), MediaError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(MediaError::UnknownPeer(peer))?;
        p.floor.set_open(open);
        Ok(())
    }

    /// How many of `peer`'s audio packets the floor gate dropped since it joined.
    pub fn audio_dropped(&self, peer: PeerId) -> Option<u64> {
        self.peers.get(&peer).map(|p| p.floor.dropped)
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
        let has_changes = p.tracks_out.iter().any(|t| {
            matches!(
                t.state,
                OutState::ToOpen
                    | OutState::ToStop(_)
                    | OutState::ToPark(_)
                    | OutState::ToResume(_)
            )
        });
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
                OutState::ToPark(m) => {
                    change.set_direction(m, Direction::Inactive);
                    t.state = OutState::NegotiatingPark(m);
                }
                OutState::ToResume(m) => {
                    change.set_direction(m, Direction::SendOnly);
                    t.state = OutState::Negotiating(m);
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
