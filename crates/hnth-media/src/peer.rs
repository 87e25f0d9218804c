//! One peer of the conference: the tracks it sends and receives, its link figures, and what
//! each of its str0m events means for the others ([`Propagate`]). Kept apart from the
//! conference's orchestration (`conference.rs`: who receives what, forwarding, estimates).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{RtpPacket, Ssrc, Vp8Descriptor};
use str0m::{Event, IceConnectionState, Rtc};

use crate::conference::{LinkStats, MeetingId, Output, PeerId, MAX_LAYERS};
use crate::gate::FloorGate;
use crate::layer::LayerRate;
use crate::rate::LossControl;
use crate::rewrite::{Packet, Rewrite};
use crate::select::Receives;
use crate::vp8;

#[derive(Debug)]
pub(crate) struct TrackIn {
    pub(crate) mid: Mid,
    pub(crate) kind: MediaKind,
    /// Per simulcast layer: bytes in the current second, measured rate, last seen.
    pub(crate) layers: Vec<LayerIn>,
    pub(crate) last_keyframe_request: Option<Instant>,
    pub(crate) size: Option<(u16, u16)>,
    /// The codec of the last payload type seen, for matching each receiver's payload type.
    pub(crate) params: Option<(Pt, PayloadParams)>,
    /// Audio: the last packet was digital silence (not forwarded), and how many such runs
    /// there have been (a receiver that saw fewer rebases its numbering over the gap).
    pub(crate) silent: bool,
    pub(crate) silence_runs: u32,
}

#[derive(Debug)]
pub(crate) struct LayerIn {
    pub(crate) ssrc: Ssrc,
    pub(crate) rid: Option<Rid>,
    pub(crate) bytes: u64,
    pub(crate) frames: u32,
    pub(crate) bps: u64,
    pub(crate) fps: u32,
    pub(crate) last_seen: Instant,
    /// The picture height of the layer's last keyframe.
    pub(crate) height: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
    /// Out of the receiver's view, its m-line kept inactive: when the source comes back into
    /// view the same m-line is made sendonly again. str0m never recycles a stopped m-line, so
    /// stopping and adding one at every change of the view grew the receiver's SDP without
    /// bound (300 m-lines, offers over the signaling's 256 KiB after 7 minutes of floor
    /// changes at 50 sites); parked, a receiver has at most one m-line per source and kind.
    ToPark(Mid),
    NegotiatingPark(Mid),
    Parked(Mid),
    ToResume(Mid),
}

impl OutState {
    pub(crate) fn mid(self) -> Option<Mid> {
        match self {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::NegotiatingStop(m)
            | OutState::ToPark(m)
            | OutState::NegotiatingPark(m)
            | OutState::Parked(m)
            | OutState::ToResume(m) => Some(m),
        }
    }
}

#[derive(Debug)]
pub(crate) struct TrackOut {
    pub(crate) source: PeerId,
    pub(crate) source_mid: Mid,
    pub(crate) kind: MediaKind,
    pub(crate) state: OutState,
    /// The simulcast layer being forwarded, and the one waited for (its keyframe).
    pub(crate) layer: Option<Option<Rid>>,
    pub(crate) wanted: Option<Option<Rid>>,
    /// When the keyframe of `wanted` was last asked for.
    pub(crate) wanted_asked: Option<Instant>,
    /// The receiver's payload type for the source's last one.
    pub(crate) pt: Option<(Pt, Pt)>,
    /// How tall the receiver shows this video, in device pixels ([`Conference::set_view`]);
    /// None: not said, no limit.
    pub(crate) view_height: Option<u16>,
    /// How tall the cell of the meeting's frame is that shows it ([`Receives::Frame`]);
    /// None: no frame.
    pub(crate) cell_height: Option<u16>,
    /// This video's share of the receiver's bandwidth estimate (`split_budget`).
    pub(crate) budget_bps: u64,
    /// The source's silence runs this receiver has been rebased over (audio).
    pub(crate) silence_runs: u32,
    /// The forwarded packets form one continuous RTP stream at the receiver whatever layer
    /// they come from: each layer switch sets these offsets (out = in + offset, wrapping).
    pub(crate) rewrite: Rewrite,
}

pub(crate) struct Peer {
    pub(crate) meeting: MeetingId,
    pub(crate) stream: String,
    pub(crate) rtc: Rtc,
    pub(crate) ufrag: String,
    pub(crate) created: Instant,
    pub(crate) last_rx: Instant,
    pub(crate) connected: bool,
    /// Nothing arrived for `Config::interrupt_after` ([`Output::LinkInterrupted`]).
    pub(crate) interrupted: bool,
    pub(crate) timeout: Instant,
    pub(crate) tracks_in: Vec<TrackIn>,
    pub(crate) tracks_out: Vec<TrackOut>,
    pub(crate) pending: Option<(u64, SdpPendingOffer)>,
    pub(crate) next_seq: u64,
    pub(crate) estimate_bps: u64,
    /// The loss-based estimate ([`Estimation::Loss`]).
    pub(crate) rate: LossControl,
    /// What was sent to the peer over the last stats interval.
    pub(crate) kbps_out: f64,
    /// The receiver's own estimate of its link (REMB), if it sends one.
    pub(crate) remb_bps: Option<u64>,
    pub(crate) last_stats: Option<(Instant, u64, u64)>,
    pub(crate) rtt_ms: Option<f64>,
    pub(crate) loss_in: Option<f32>,
    pub(crate) loss_out: Option<f32>,
    pub(crate) jitter_ms: Option<f64>,
    /// Whether anybody takes this peer's video (else it is asked to pause it).
    pub(crate) seen: bool,
    /// What this peer receives of its meeting.
    pub(crate) receives: Receives,
    /// Peers that receive some track of this one (kept by `reconcile`).
    pub(crate) subscribers: Vec<PeerId>,
    /// Input was handed to str0m and not yet polled. In RTP mode str0m holds one incoming
    /// packet until polled, so a peer is polled before it is given the next datagram.
    pub(crate) unpolled: bool,
    /// Packets were forwarded to this peer since it was last polled.
    pub(crate) written: bool,
    /// How tall this peer shows each source's video, by the source's stream id.
    pub(crate) view_heights: HashMap<String, u16>,
    /// Whether this peer's audio reaches the others (C4), and what it dropped.
    pub(crate) floor: FloorGate,
}

/// Something one peer's output asks of the others. Lives only between polling one peer and
/// propagating; boxing the packet variant would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Propagate {
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

impl TrackOut {
    /// The height this video is shown at: the frame's cell, or what the page says it shows if
    /// that is less (a hidden page, a smaller window).
    pub(crate) fn shown_height(&self) -> Option<u16> {
        match (self.cell_height, self.view_height) {
            (Some(c), Some(v)) => Some(c.min(v)),
            (c, v) => c.or(v),
        }
    }

    pub(crate) fn new(source: PeerId, source_mid: Mid, kind: MediaKind) -> Self {
        TrackOut {
            source,
            source_mid,
            kind,
            state: OutState::ToOpen,
            layer: None,
            wanted: None,
            wanted_asked: None,
            pt: None,
            view_height: None,
            cell_height: None,
            budget_bps: 0,
            silence_runs: 0,
            rewrite: Rewrite::default(),
        }
    }
}

impl TrackIn {
    /// Layers seen in the last two seconds, with their measured rates, into `out`; how many.
    pub(crate) fn rates(
        &self,
        now: Instant,
        out: &mut [LayerRate<Option<Rid>>; MAX_LAYERS],
    ) -> usize {
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
pub(crate) fn on_event(
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
        // ICE's "disconnected" on a connected peer is a line that stopped answering for a few
        // seconds: the session is kept (`interrupted`, then `idle_timeout`), so that the
        // browser's consent checks and media pick it up again the moment the line is back,
        // with no new session. Before it ever connected, it is a session that will not: the
        // site is told at once (and starts a new one) rather than at `connect_timeout`.
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            if !p.connected {
                p.rtc.disconnect();
            }
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
                audio_dropped: p.floor.dropped,
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
pub(crate) fn on_rtp(p: &mut Peer, pkt: RtpPacket, now: Instant) -> Option<Packet> {
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
