//! Test support: a synthetic site, as a str0m client (full ICE, not ICE-lite), that sends
//! recognisable Opus and VP8 simulcast frames and counts what it receives.
//!
//! It is sans-IO like the rest of this crate: the caller moves datagrams and passes the time in.
//! The in-process tests of this crate drive it against a [`crate::Conference`] over a simulated
//! network; `hnth-bench` drives it over real UDP against the `hnth` server.
//!
//! Every frame carries a [`FrameStamp`] (sender id, layer, sequence number, send time), so a
//! receiver can tell which site and which simulcast layer a frame came from, and — when sender
//! and receiver share one clock (`epoch`) — its one-way delay.
//!
//! ```no_run
//! use std::time::Instant;
//! use hnth_media::testing::{SiteConfig, SyntheticSite};
//! let epoch = Instant::now();
//! let mut site = SyntheticSite::new(epoch, epoch, SiteConfig::new(1, "10.0.0.1:5000".parse().unwrap()));
//! let offer = site.create_offer();
//! // … send `offer` to the server, pass its answer to `site.handle_answer(now, &sdp)`, move
//! // datagrams with `handle_receive` / `poll_transmit`, and call `handle_timeout` at
//! // `poll_timeout()`.
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// The layer number [`FrameStamp::layer`] carries for audio.
pub const AUDIO_LAYER: u8 = u8::MAX;

/// Marks the stamp inside a synthetic frame.
const MAGIC: [u8; 4] = *b"HNTH";
/// Stamp size: magic, sender (8), layer (1), seq (4), sent (8).
const STAMP_LEN: usize = 4 + 8 + 1 + 4 + 8;
/// VP8 frames: the 10-byte keyframe header (RFC 6386 §9.1) or an inter-frame tag padded to the
/// same length, then the stamp.
const VIDEO_STAMP_AT: usize = 10;
/// Audio frames: one Opus TOC byte, then the stamp.
const AUDIO_STAMP_AT: usize = 1;

/// What a synthetic frame says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStamp {
    /// The sending site's id ([`SiteConfig::id`]).
    pub sender: u64,
    /// Index of the simulcast layer in [`SiteConfig::layers`] (0 = lowest), or [`AUDIO_LAYER`].
    pub layer: u8,
    /// Video: the frame number, the same on every layer; audio: the packet number.
    pub seq: u32,
    /// Send time in microseconds since the sender's epoch.
    pub sent_us: u64,
    /// A VP8 keyframe (always false for audio).
    pub keyframe: bool,
}

/// A VP8-shaped frame of `size` bytes (at least the header and stamp) carrying `stamp`.
pub fn encode_video_frame(stamp: &FrameStamp, width: u16, height: u16, size: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(size.max(VIDEO_STAMP_AT + STAMP_LEN));
    if stamp.keyframe {
        // Frame tag: keyframe (bit 0 clear), version 0, shown; start code; size.
        f.extend([0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
        f.extend((width & 0x3fff).to_le_bytes());
        f.extend((height & 0x3fff).to_le_bytes());
    } else {
        f.extend([0x51, 0x42, 0x00]);
        f.resize(VIDEO_STAMP_AT, 0);
    }
    put_stamp(&mut f, stamp);
    pad(&mut f, size, stamp.seq);
    f
}

/// An Opus-shaped packet of `size` bytes (at least TOC and stamp) carrying `stamp`.
pub fn encode_audio_frame(stamp: &FrameStamp, size: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(size.max(AUDIO_STAMP_AT + STAMP_LEN));
    f.push(0x78); // TOC: SILK/CELT hybrid FB 20 ms, one frame.
    put_stamp(&mut f, stamp);
    pad(&mut f, size, stamp.seq);
    f
}

fn put_stamp(f: &mut Vec<u8>, s: &FrameStamp) {
    f.extend(MAGIC);
    f.extend(s.sender.to_be_bytes());
    f.push(s.layer);
    f.extend(s.seq.to_be_bytes());
    f.extend(s.sent_us.to_be_bytes());
}

fn pad(f: &mut Vec<u8>, size: usize, seq: u32) {
    let mut x = seq as u8;
    while f.len() < size {
        f.push(x);
        x = x.wrapping_add(1);
    }
}

/// The stamp of a synthetic frame of `kind`, or None for a foreign payload.
pub fn decode_frame(kind: MediaKind, data: &[u8]) -> Option<FrameStamp> {
    let at = match kind {
        MediaKind::Audio => AUDIO_STAMP_AT,
        MediaKind::Video => VIDEO_STAMP_AT,
    };
    let s = data.get(at..at + STAMP_LEN)?;
    if s[..4] != MAGIC {
        return None;
    }
    let keyframe = kind == MediaKind::Video
        && data[0] & 1 == 0
        && data.get(3..6) == Some(&[0x9d, 0x01, 0x2a][..]);
    Some(FrameStamp {
        sender: u64::from_be_bytes(s[4..12].try_into().ok()?),
        layer: s[12],
        seq: u32::from_be_bytes(s[13..17].try_into().ok()?),
        sent_us: u64::from_be_bytes(s[17..25].try_into().ok()?),
        keyframe,
    })
}

/// One simulcast layer a site sends.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub rid: String,
    pub width: u16,
    pub height: u16,
    pub bitrate_bps: u64,
}

/// How a synthetic site behaves.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// Written into every frame as [`FrameStamp::sender`].
    pub id: u64,
    /// The host candidate (the address the site sends from and receives on).
    pub local_addr: SocketAddr,
    /// The msid stream id of the site's own tracks (the server may rename it).
    pub stream: String,
    pub send_audio: bool,
    /// Whether the microphone is open: audio packets carry a speaking level (-30 dBov), else
    /// digital silence (-127, what a muted browser sends).
    pub talking: bool,
    /// Audio packet size in bytes, one packet per 20 ms (80 bytes ≈ 32 kbit/s).
    pub audio_bytes: usize,
    /// Video layers, lowest first. More than one: simulcast with these rids. None: no video.
    pub layers: Vec<LayerSpec>,
    pub fps: u32,
    /// Every layer sends a keyframe this often, and on every keyframe request.
    pub keyframe_interval: Duration,
    /// Keyframe requests are ignored until then (requests or their keyframes lost, a busy
    /// encoder).
    pub ignore_keyframe_requests_until: Option<Instant>,
    /// Real media instead of stamped frames (see [`SiteConfig::with_clip`]); None: synthetic.
    pub clip: Option<Arc<crate::clip::Clip>>,
    /// The DTLS certificate to use; None: a new one (1.2 ms). A load generator running many
    /// sites shares one, so that making certificates does not lengthen the joins it measures.
    pub dtls_cert: Option<str0m::config::DtlsCert>,
}

impl SiteConfig {
    /// Opus at ~32 kbit/s and VP8 simulcast q/h/f at 150 kbit/s, 500 kbit/s and 1.5 Mbit/s,
    /// 30 fps, a keyframe every 3 s.
    pub fn new(id: u64, local_addr: SocketAddr) -> Self {
        SiteConfig {
            id,
            local_addr,
            stream: format!("site-{id}"),
            send_audio: true,
            talking: true,
            audio_bytes: 80,
            layers: vec![
                LayerSpec {
                    rid: "q".into(),
                    width: 320,
                    height: 180,
                    bitrate_bps: 150_000,
                },
                LayerSpec {
                    rid: "h".into(),
                    width: 640,
                    height: 360,
                    bitrate_bps: 500_000,
                },
                LayerSpec {
                    rid: "f".into(),
                    width: 1280,
                    height: 720,
                    bitrate_bps: 1_500_000,
                },
            ],
            fps: 30,
            keyframe_interval: Duration::from_secs(3),
            ignore_keyframe_requests_until: None,
            clip: None,
            dtls_cert: None,
        }
    }

    /// Send `clip` in a loop instead of stamped frames: its VP8 frames on one layer (no
    /// simulcast) at its frame rate, and its Opus packets every 20 ms. A keyframe request
    /// restarts the picture at the clip's keyframe at or before the current frame; the loop's
    /// own keyframes are the only ones sent. Receivers count these frames as `foreign`.
    pub fn with_clip(mut self, clip: Arc<crate::clip::Clip>) -> Self {
        self.layers = vec![LayerSpec {
            rid: "f".into(),
            width: clip.video.width,
            height: clip.video.height,
            bitrate_bps: 0,
        }];
        self.fps = clip.video.fps;
        self.send_audio = true;
        self.clip = Some(clip);
        self
    }

    /// Every video layer's bitrate multiplied by `factor` (cheaper simulations).
    pub fn scale_video(mut self, factor: f64) -> Self {
        for l in &mut self.layers {
            l.bitrate_bps = (l.bitrate_bps as f64 * factor) as u64;
        }
        self
    }

    fn frame_bytes(&self, layer: usize) -> usize {
        let l = &self.layers[layer];
        (l.bitrate_bps / 8 / self.fps.max(1) as u64) as usize
    }
}

/// A switch of the simulcast layer seen on one received video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSwitch {
    /// Frames received on the track before the switch.
    pub after_frames: u64,
    pub from: u8,
    pub to: u8,
    /// The first frame of the new layer was a keyframe.
    pub on_keyframe: bool,
    /// No loss right before that frame (a lost keyframe makes an inter frame come first).
    pub contiguous: bool,
}

/// What a site received on one remote track (one m-line the server sends on).
#[derive(Debug, Clone)]
pub struct RemoteTrack {
    pub mid: Mid,
    pub kind: MediaKind,
    /// The msid stream id the server announced for this track.
    pub stream_id: String,
    pub track_id: String,
    /// False once the server stopped the m-line (or set it inactive).
    pub active: bool,
    pub frames: u64,
    pub bytes: u64,
    pub keyframes: u64,
    /// Frames without a recognisable stamp.
    pub foreign: u64,
    /// Frames str0m marked as not contiguous (loss before them).
    pub discontinuities: u64,
    /// Senders seen in the stamps (one, normally).
    pub senders: BTreeMap<u64, u64>,
    /// Frames per layer ([`AUDIO_LAYER`] for audio).
    pub layers: BTreeMap<u8, u64>,
    /// The layer of the last frame.
    pub layer: Option<u8>,
    pub switches: Vec<LayerSwitch>,
    /// Sequence numbers received again, not at a layer switch (two layers forwarded at once).
    pub duplicates: u64,
    /// Frames repeated at a layer switch: the new layer's keyframe was the picture (frame
    /// number) last forwarded on the old layer.
    pub switch_repeats: u64,
    /// Gaps in the sender's sequence numbers (frames never received).
    pub missing: u64,
    pub last_seq: Option<u32>,
    pub first_frame_at: Option<Instant>,
    pub last_frame_at: Option<Instant>,
    /// One-way delay of every stamped frame, in microseconds (meaningful with one clock).
    pub delays_us: Vec<u64>,
    /// The same, only for frames received 3 s or more after the track's first frame: the
    /// steady state, without the start (estimates ramping up, first layer switches).
    pub steady_delays_us: Vec<u64>,
    /// Audio: the talk spurts received, (first frame, last frame), a new one after a gap of
    /// [`SPURT_GAP`]: when the floor opened and closed for this sender, as heard here.
    pub spurts: Vec<(Instant, Instant)>,
}

/// A pause in a sender's audio longer than this ends its talk spurt (a site sends a frame
/// every 20 ms while its sound passes).
pub const SPURT_GAP: Duration = Duration::from_millis(250);

/// How long after a track's first frame its delays count as steady.
pub const WARM_UP: Duration = Duration::from_secs(3);

impl RemoteTrack {
    fn new(mid: Mid, kind: MediaKind, stream_id: String, track_id: String) -> Self {
        RemoteTrack {
            mid,
            kind,
            stream_id,
            track_id,
            active: true,
            frames: 0,
            bytes: 0,
            keyframes: 0,
            foreign: 0,
            discontinuities: 0,
            senders: BTreeMap::new(),
            layers: BTreeMap::new(),
            layer: None,
            switches: Vec::new(),
            duplicates: 0,
            switch_repeats: 0,
            missing: 0,
            last_seq: None,
            first_frame_at: None,
            last_frame_at: None,
            delays_us: Vec::new(),
            steady_delays_us: Vec::new(),
            spurts: Vec::new(),
        }
    }

    /// The sender seen most often in the stamps.
    pub fn sender(&self) -> Option<u64> {
        self.senders
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(s, _)| *s)
    }

    fn record(&mut self, now: Instant, epoch: Instant, data: &[u8], contiguous: bool) {
        self.frames += 1;
        self.bytes += data.len() as u64;
        self.first_frame_at.get_or_insert(now);
        self.last_frame_at = Some(now);
        if self.kind == MediaKind::Audio {
            match self.spurts.last_mut() {
                Some((_, last)) if now.saturating_duration_since(*last) < SPURT_GAP => *last = now,
                _ => self.spurts.push((now, now)),
            }
        }
        if !contiguous {
            self.discontinuities += 1;
        }
        let Some(s) = decode_frame(self.kind, data) else {
            self.foreign += 1;
            return;
        };
        *self.senders.entry(s.sender).or_default() += 1;
        *self.layers.entry(s.layer).or_default() += 1;
        if s.keyframe {
            self.keyframes += 1;
        }
        let switched = self.layer.is_some_and(|prev| prev != s.layer);
        if let (true, Some(prev)) = (switched, self.layer) {
            self.switches.push(LayerSwitch {
                after_frames: self.frames - 1,
                from: prev,
                to: s.layer,
                on_keyframe: s.keyframe,
                contiguous,
            });
        }
        self.layer = Some(s.layer);
        match self.last_seq {
            Some(l) if s.seq <= l && switched && s.seq + 1 >= l => self.switch_repeats += 1,
            Some(l) if s.seq <= l => self.duplicates += 1,
            Some(l) => {
                self.missing += u64::from(s.seq - l - 1);
                self.last_seq = Some(s.seq);
            }
            None => self.last_seq = Some(s.seq),
        }
        let now_us = now.saturating_duration_since(epoch).as_micros() as u64;
        let delay = now_us.saturating_sub(s.sent_us);
        self.delays_us.push(delay);
        if self
            .first_frame_at
            .is_some_and(|f| now.duration_since(f) >= WARM_UP)
        {
            self.steady_delays_us.push(delay);
        }
    }
}

/// What a site has sent so far.
#[derive(Debug, Clone, Default)]
pub struct SentCounters {
    pub audio_packets: u64,
    /// Video frame numbers used (each written on every layer).
    pub video_frames: u64,
    /// Bytes written per layer.
    pub layer_bytes: Vec<u64>,
    pub keyframes: u64,
    /// Keyframe requests (PLI/FIR) received from the server.
    pub keyframe_requests: u64,
    /// Writes str0m refused.
    pub write_errors: u64,
}

/// How many inputs each fuzz test (`fuzz_*`) tries: `HNTH_FUZZ_CASES`, else `default` (small,
/// so that `cargo test` stays quick). `scripts/fuzz-long.sh` sets it high.
pub fn fuzz_cases(default: u32) -> u32 {
    std::env::var("HNTH_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// A STUN binding request (RFC 8489) with these attributes (type, value), each padded to four
/// bytes, and the message length given in the header (`None`: the true one). Nothing signs it.
pub fn stun_request(attrs: &[(u16, &[u8])], declared_len: Option<u16>) -> Vec<u8> {
    let mut body = Vec::new();
    for (typ, value) in attrs {
        body.extend(typ.to_be_bytes());
        body.extend((value.len() as u16).to_be_bytes());
        body.extend(*value);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut msg = vec![0x00, 0x01];
    msg.extend(declared_len.unwrap_or(body.len() as u16).to_be_bytes());
    msg.extend([0x21, 0x12, 0xa4, 0x42]);
    msg.extend([9u8; 12]);
    msg.extend(body);
    msg
}

/// A synthetic site: a str0m client peer that offers sendonly Opus + VP8 simulcast, answers
/// the server's renegotiation offers and counts what it receives per remote track.
pub struct SyntheticSite {
    config: SiteConfig,
    rtc: Rtc,
    epoch: Instant,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    transmits: VecDeque<Transmit>,
    rtc_timeout: Instant,
    connected_at: Option<Instant>,
    sending: bool,
    /// Video paused by the server (`send_video` off): nobody receives it.
    video_paused: bool,
    next_audio: Option<Instant>,
    next_video: Option<Instant>,
    keyframe_due: Vec<bool>,
    last_keyframe: Option<Instant>,
    /// The next frame of [`SiteConfig::clip`] to send.
    clip_frame: usize,
    remote: BTreeMap<Mid, RemoteTrack>,
    sent: SentCounters,
    error: Option<String>,
}

impl SyntheticSite {
    /// A site created at `now`; stamps count microseconds since `epoch`.
    pub fn new(now: Instant, epoch: Instant, config: SiteConfig) -> Self {
        let mut builder = Rtc::builder().set_stats_interval(None);
        if let Some(cert) = config.dtls_cert.clone() {
            builder = builder.set_dtls_cert(cert);
        }
        let mut rtc = builder.build(now);
        if let Ok(c) = Candidate::host(config.local_addr, "udp") {
            rtc.add_local_candidate(c);
        }
        let layers = config.layers.len();
        SyntheticSite {
            rtc,
            epoch,
            audio_mid: None,
            video_mid: None,
            pending: None,
            transmits: VecDeque::new(),
            rtc_timeout: now,
            connected_at: None,
            sending: true,
            video_paused: false,
            next_audio: None,
            next_video: None,
            keyframe_due: vec![true; layers],
            last_keyframe: None,
            clip_frame: 0,
            remote: BTreeMap::new(),
            sent: SentCounters {
                layer_bytes: vec![0; layers],
                ..Default::default()
            },
            error: None,
            config,
        }
    }

    pub fn config(&self) -> &SiteConfig {
        &self.config
    }

    /// The configuration, to change while the site runs (a test's fault injected later).
    pub fn config_mut(&mut self) -> &mut SiteConfig {
        &mut self.config
    }

    /// The initial offer: sendonly audio and video (simulcast if more than one layer).
    pub fn create_offer(&mut self) -> String {
        let mut change = self.rtc.sdp_api();
        let stream = Some(self.config.stream.clone());
        if self.config.send_audio {
            self.audio_mid = Some(change.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                stream.clone(),
                Some(format!("{}-audio", self.config.stream)),
                None,
            ));
        }
        if !self.config.layers.is_empty() {
            let simulcast = (self.config.layers.len() > 1).then(|| {
                let mut s = Simulcast::new();
                for l in &self.config.layers {
                    s.add_send_layer(SimulcastLayer::new(&l.rid));
                }
                s
            });
            self.video_mid = Some(change.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                stream,
                Some(format!("{}-video", self.config.stream)),
                simulcast,
            ));
        }
        let (offer, pending) = change.apply().expect("an offer with new media");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    /// The server's answer to [`SyntheticSite::create_offer`].
    pub fn handle_answer(&mut self, now: Instant, sdp: &str) -> Result<(), String> {
        let pending = self.pending.take().ok_or("no offer pending")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        self.drive(now);
        Ok(())
    }

    /// A renegotiation offer from the server; returns the answer.
    pub fn handle_offer(&mut self, now: Instant, sdp: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())?;
        self.drive(now);
        // m-lines the offer stopped: str0m may not report them as changes.
        for (mid, t) in self.remote.iter_mut() {
            let live = self.rtc.media(*mid).is_some_and(|m| {
                matches!(m.direction(), Direction::RecvOnly | Direction::SendRecv)
            });
            if !live {
                t.active = false;
            }
        }
        Ok(answer.to_sdp_string())
    }

    /// A datagram for this site (`source` is the sender's address).
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, buf: &[u8]) {
        self.handle_receive_deferred(now, source, buf);
        self.drive(now);
    }

    /// A datagram for this site, without polling str0m afterwards: for a driver that receives
    /// a batch of datagrams, then calls [`SyntheticSite::poll`] once (cheaper than polling
    /// after every datagram, as [`SyntheticSite::handle_receive`] does).
    pub fn handle_receive_deferred(&mut self, now: Instant, source: SocketAddr, buf: &[u8]) {
        let Ok(contents) = buf.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.config.local_addr,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            self.error.get_or_insert(e.to_string());
        }
    }

    /// Collects str0m's events and datagrams after [`SyntheticSite::handle_receive_deferred`].
    pub fn poll(&mut self, now: Instant) {
        self.drive(now);
    }

    /// Time passes: str0m's timers, and frames whose time has come are written.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.send_due(now);
        if now >= self.rtc_timeout {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.error.get_or_insert(e.to_string());
            }
        }
        self.drive(now);
    }

    /// When [`SyntheticSite::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.rtc_timeout;
        if self.sending && self.connected_at.is_some() {
            for n in [self.next_audio, self.next_video].into_iter().flatten() {
                t = t.min(n);
            }
        }
        t
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Stop or resume writing frames (the connection stays up).
    /// Open or mute the microphone (see [`SiteConfig::talking`]).
    pub fn set_talking(&mut self, talking: bool) {
        self.config.talking = talking;
    }

    pub fn set_sending(&mut self, sending: bool) {
        self.sending = sending;
    }

    /// Pause or resume the video only, as the server asks (`send_video`); it resumes with a
    /// keyframe on every layer.
    pub fn set_video_sending(&mut self, on: bool) {
        if on && self.video_paused {
            self.keyframe_due.iter_mut().for_each(|k| *k = true);
        }
        self.video_paused = !on;
    }

    /// Whether the server paused this site's video.
    pub fn video_paused(&self) -> bool {
        self.video_paused
    }

    /// Close the peer connection (DTLS close alert, then nothing).
    pub fn disconnect(&mut self, now: Instant) {
        self.rtc.disconnect();
        self.drive(now);
    }

    /// When ICE and DTLS completed, if they did.
    pub fn connected_at(&self) -> Option<Instant> {
        self.connected_at
    }

    pub fn is_connected(&self) -> bool {
        self.connected_at.is_some() && self.rtc.is_alive()
    }

    /// The first error str0m reported, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Every remote track ever announced, by mid.
    pub fn remote_tracks(&self) -> &BTreeMap<Mid, RemoteTrack> {
        &self.remote
    }

    /// Remote tracks the server still sends on.
    pub fn active_tracks(&self) -> impl Iterator<Item = &RemoteTrack> {
        self.remote.values().filter(|t| t.active)
    }

    /// The active remote track of `kind` on stream id `stream`.
    pub fn track(&self, stream: &str, kind: MediaKind) -> Option<&RemoteTrack> {
        self.active_tracks()
            .find(|t| t.stream_id == stream && t.kind == kind)
    }

    pub fn sent(&self) -> &SentCounters {
        &self.sent
    }

    /// Write `frame` as it is: on the audio track with `audio_level` (-dBov; -127 is digital
    /// silence), or on simulcast layer `layer` of the video track (str0m packetizes it as VP8,
    /// whatever it holds). A misbehaving site, for the fuzz tests: the payload passes SRTP and
    /// reaches the server's forwarding. False if str0m refused it.
    pub fn write_raw(
        &mut self,
        now: Instant,
        video: bool,
        layer: usize,
        frame: Vec<u8>,
        audio_level: i8,
    ) -> bool {
        let written = if video {
            let Some(mid) = self.video_mid else {
                return false;
            };
            let seq = self.sent.video_frames;
            self.sent.video_frames += 1;
            let time = MediaTime::new(seq * 3000, Frequency::NINETY_KHZ);
            let rid = (self.config.layers.len() > 1)
                .then(|| self.config.layers.get(layer % self.config.layers.len()))
                .flatten()
                .map(|l| Rid::from(l.rid.as_str()));
            let pt = self.payload_type(mid, Codec::Vp8);
            match (pt, self.rtc.writer(mid)) {
                (Some(pt), Some(mut w)) => {
                    if let Some(rid) = rid {
                        w = w.rid(rid);
                    }
                    w.write(pt, now, time, frame).is_ok()
                }
                _ => false,
            }
        } else {
            let Some(mid) = self.audio_mid else {
                return false;
            };
            let seq = self.sent.audio_packets;
            self.sent.audio_packets += 1;
            let time = MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ);
            let pt = self.payload_type(mid, Codec::Opus);
            match (pt, self.rtc.writer(mid)) {
                (Some(pt), Some(w)) => w
                    .audio_level(audio_level, audio_level > -127)
                    .write(pt, now, time, frame)
                    .is_ok(),
                _ => false,
            }
        };
        self.drive(now);
        written
    }

    fn send_due(&mut self, now: Instant) {
        if !self.sending || self.connected_at.is_none() {
            return;
        }
        // A driver that fell far behind (a real-time bench under load) skips, it does not
        // burst.
        let late = Duration::from_millis(200);
        if let (Some(mid), Some(mut next)) = (self.audio_mid, self.next_audio) {
            if now.saturating_duration_since(next) > late {
                next = now;
            }
            while next <= now {
                self.write_audio(now, next, mid);
                next += Duration::from_millis(20);
            }
            self.next_audio = Some(next);
        }
        if let (Some(mid), Some(mut next)) = (self.video_mid, self.next_video) {
            if now.saturating_duration_since(next) > late {
                next = now;
            }
            let period = Duration::from_secs(1) / self.config.fps.max(1);
            while next <= now {
                if !self.video_paused {
                    self.write_video(now, mid);
                }
                next += period;
            }
            self.next_video = Some(next);
        }
    }

    fn stamp(&self, now: Instant, layer: u8, seq: u32, keyframe: bool) -> FrameStamp {
        FrameStamp {
            sender: self.config.id,
            layer,
            seq,
            sent_us: now.saturating_duration_since(self.epoch).as_micros() as u64,
            keyframe,
        }
    }

    /// The payload type of `codec` on track `mid`; None, counted as a write error, when the
    /// track or the codec was not negotiated.
    fn payload_type(&mut self, mid: Mid, codec: Codec) -> Option<Pt> {
        let pt = self.rtc.writer(mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        });
        if pt.is_none() {
            self.sent.write_errors += 1;
        }
        pt
    }

    fn write_audio(&mut self, now: Instant, _due: Instant, mid: Mid) {
        let seq = self.sent.audio_packets as u32;
        let frame = match &self.config.clip {
            Some(c) if !c.audio.packets.is_empty() => {
                c.audio.packets[seq as usize % c.audio.packets.len()].clone()
            }
            _ => encode_audio_frame(
                &self.stamp(now, AUDIO_LAYER, seq, false),
                self.config.audio_bytes,
            ),
        };
        let time = MediaTime::new(u64::from(seq) * 960, Frequency::FORTY_EIGHT_KHZ);
        let Some(pt) = self.payload_type(mid, Codec::Opus) else {
            return;
        };
        let Some(w) = self.rtc.writer(mid) else {
            return;
        };
        let talking = self.config.talking;
        let w = w.audio_level(if talking { -30 } else { -127 }, talking);
        match w.write(pt, now, time, frame) {
            Ok(()) => self.sent.audio_packets += 1,
            Err(_) => self.sent.write_errors += 1,
        }
    }

    fn write_video(&mut self, now: Instant, mid: Mid) {
        if self.config.clip.is_some() {
            return self.write_clip_video(now, mid);
        }
        if self
            .last_keyframe
            .is_none_or(|k| now.saturating_duration_since(k) >= self.config.keyframe_interval)
        {
            self.keyframe_due.iter_mut().for_each(|k| *k = true);
            self.last_keyframe = Some(now);
        }
        let seq = self.sent.video_frames as u32;
        self.sent.video_frames += 1;
        let time = MediaTime::new(
            u64::from(seq) * 90_000 / u64::from(self.config.fps.max(1)),
            Frequency::NINETY_KHZ,
        );
        let simulcast = self.config.layers.len() > 1;
        for i in 0..self.config.layers.len() {
            let keyframe = std::mem::take(&mut self.keyframe_due[i]);
            let (w, h) = (self.config.layers[i].width, self.config.layers[i].height);
            let size = self.config.frame_bytes(i);
            let frame = encode_video_frame(&self.stamp(now, i as u8, seq, keyframe), w, h, size);
            let len = frame.len() as u64;
            let rid: Rid = self.config.layers[i].rid.as_str().into();
            let Some(pt) = self.payload_type(mid, Codec::Vp8) else {
                return;
            };
            let Some(mut writer) = self.rtc.writer(mid) else {
                return;
            };
            if simulcast {
                writer = writer.rid(rid);
            }
            match writer.write(pt, now, time, frame) {
                Ok(()) => {
                    self.sent.layer_bytes[i] += len;
                    if keyframe {
                        self.sent.keyframes += 1;
                    }
                }
                Err(_) => {
                    self.sent.write_errors += 1;
                    self.keyframe_due[i] |= keyframe;
                }
            }
        }
    }

    /// The next frame of the clip (one layer, no simulcast).
    fn write_clip_video(&mut self, now: Instant, mid: Mid) {
        let Some(clip) = self.config.clip.clone() else {
            return;
        };
        let video = &clip.video;
        if std::mem::take(&mut self.keyframe_due[0]) {
            self.clip_frame = video.keyframe_at_or_before(self.clip_frame);
        }
        let i = self.clip_frame % video.frames.len();
        let frame = &video.frames[i];
        let seq = self.sent.video_frames as u32;
        let time = MediaTime::new(
            u64::from(seq) * 90_000 / u64::from(video.fps.max(1)),
            Frequency::NINETY_KHZ,
        );
        let Some(pt) = self.payload_type(mid, Codec::Vp8) else {
            return;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        match writer.write(pt, now, time, frame.data.clone()) {
            Ok(()) => {
                self.sent.video_frames += 1;
                self.sent.layer_bytes[0] += frame.data.len() as u64;
                if frame.keyframe {
                    self.sent.keyframes += 1;
                    self.last_keyframe = Some(now);
                }
                self.clip_frame = (i + 1) % video.frames.len();
            }
            Err(_) => {
                self.sent.write_errors += 1;
                // Start again at a keyframe: the decoder lost a frame it needs.
                self.keyframe_due[0] = true;
            }
        }
    }

    fn drive(&mut self, now: Instant) {
        loop {
            if !self.rtc.is_alive() {
                self.rtc_timeout = now + Duration::from_secs(3600);
                return;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => self.transmits.push_back(t),
                Ok(Output::Event(e)) => self.on_event(now, e),
                Err(e) => {
                    self.error.get_or_insert(e.to_string());
                    self.rtc_timeout = now + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => {
                self.connected_at = Some(now);
                self.next_audio = Some(now);
                self.next_video = Some(now);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {}
            Event::MediaAdded(m) => {
                if Some(m.mid) == self.audio_mid || Some(m.mid) == self.video_mid {
                    return;
                }
                let (stream_id, track_id) = self
                    .rtc
                    .media(m.mid)
                    .map(|x| (x.stream_id().to_string(), x.track_id().to_string()))
                    .unwrap_or_default();
                let mut t = RemoteTrack::new(m.mid, m.kind, stream_id, track_id);
                t.active = matches!(m.direction, Direction::RecvOnly | Direction::SendRecv);
                self.remote.insert(m.mid, t);
            }
            Event::MediaChanged(c) => {
                if let Some(t) = self.remote.get_mut(&c.mid) {
                    t.active = matches!(c.direction, Direction::RecvOnly | Direction::SendRecv);
                }
            }
            Event::MediaData(d) => {
                let epoch = self.epoch;
                if let Some(t) = self.remote.get_mut(&d.mid) {
                    t.record(now, epoch, &d.data, d.contiguous);
                }
            }
            Event::KeyframeRequest(r) => {
                if Some(r.mid) != self.video_mid {
                    return;
                }
                self.sent.keyframe_requests += 1;
                if self
                    .config
                    .ignore_keyframe_requests_until
                    .is_some_and(|t| now < t)
                {
                    return;
                }
                let simulcast = self.config.layers.len() > 1;
                for (i, l) in self.config.layers.iter().enumerate() {
                    let hit = match r.rid {
                        Some(rid) => simulcast && rid == Rid::from(l.rid.as_str()),
                        None => true,
                    };
                    if hit {
                        self.keyframe_due[i] = true;
                    }
                }
            }
            _ => {}
        }
    }
}

/// The `p`-th percentile (0–100) of `values` (sorted in place), or None if empty.
pub fn percentile(values: &mut [u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (p / 100.0 * (values.len() - 1) as f64).round() as usize;
    Some(values[rank.min(values.len() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let s = FrameStamp {
            sender: 42,
            layer: 2,
            seq: 77,
            sent_us: 123_456_789,
            keyframe: true,
        };
        let f = encode_video_frame(&s, 1280, 720, 1000);
        assert_eq!(f.len(), 1000);
        assert_eq!(crate::vp8::keyframe_size(&f), Some((1280, 720)));
        assert_eq!(decode_frame(MediaKind::Video, &f), Some(s));
        let inter = FrameStamp {
            keyframe: false,
            ..s
        };
        let f = encode_video_frame(&inter, 1280, 720, 10);
        assert_eq!(crate::vp8::keyframe_size(&f), None);
        assert_eq!(decode_frame(MediaKind::Video, &f), Some(inter));
        let a = FrameStamp {
            layer: AUDIO_LAYER,
            keyframe: false,
            ..s
        };
        assert_eq!(
            decode_frame(MediaKind::Audio, &encode_audio_frame(&a, 80)),
            Some(a)
        );
        assert_eq!(decode_frame(MediaKind::Video, &[0u8; 100]), None);
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50.0), Some(51));
        assert_eq!(percentile(&mut v, 99.0), Some(99));
        assert_eq!(percentile(&mut [], 50.0), None);
    }
}
