//! # hnth-media: the conference core
//!
//! The live part of a meeting as a sans-IO state machine, in the style of `str0m` itself: the
//! caller passes datagrams and the time in, and drains what comes out. No socket, no thread, no
//! clock: floor control, layouts and forwarding are unit-tested with time passed in.
//!
//! ```no_run
//! use std::time::Instant;
//! use hnth_media::{Conference, Config, Output};
//! # let (offer_sdp, src, dst, buf): (&str, std::net::SocketAddr, std::net::SocketAddr, Vec<u8>) = todo!();
//! let mut conf = Conference::new(Config { candidates: vec![dst], ..Config::default() });
//! conf.add_peer(Instant::now(), 1, 7, "site-1", offer_sdp).unwrap();   // site 1 into meeting 7
//! conf.handle_receive(Instant::now(), src, dst, &buf);                   // a datagram arrived
//! while let Some(out) = conf.poll_output() {
//!     match out {
//!         Output::Transmit(t) => { /* socket.send_to(&t.contents, t.destination) */ }
//!         Output::Answer { .. } | Output::Offer { .. } => { /* to the peer's signaling */ }
//!         _ => {}
//!     }
//! }
//! let _next = conf.poll_timeout(); // call handle_timeout(now) then
//! ```
//!
//! Forwarding works at the RTP level (str0m's RTP mode): each incoming packet's payload is
//! shared by every receiver of its track, never reassembled or packetized again. Per receiver,
//! the sequence numbers, RTP timestamps and VP8 picture ids are rebased at every simulcast
//! layer switch (made on the new layer's keyframe), so the receiver sees one continuous stream.
//! Forwarded packets are not paced again (the sender paced them) and leave in the call that
//! received them. Each receiver's link is judged from the loss its feedback reports
//! ([`LossControl`], the default), or by str0m's delay-based estimator told the rate of its
//! sources' top layers ([`Estimation::Delay`], about twice the CPU per packet: str0m's pacer sends
//! one packet per timeout). A receiver may say how tall it shows each video
//! ([`Conference::set_view`]): each is then forwarded at the smallest layer at least that tall,
//! and the estimate is shared in proportion to what each tile needs, so a 1+7 layout costs one
//! top layer and seven low ones. Digital silence (a muted microphone) is not forwarded, nor the
//! audio of a site without the floor ([`Conference::set_floor`]: the gate is the server's, C4),
//! which is counted and, if it is speech, reported ([`Output::UnheardSpeech`]). Under floor
//! control the meeting's rules say what each peer receives ([`Conference::set_receives`] with
//! [`Receives::Frame`]): every other peer's audio through its gate, and the video of exactly
//! the sites its frame shows, each no taller than its cell. The server
//! negotiates Opus and VP8 only.
//!
//! Renegotiation: after a peer's initial offer, only the server offers (one offer outstanding per
//! peer; further changes wait for its answer), so many sites joining at once cannot collide.

pub mod clip;
mod conference;
mod demux;
#[cfg(test)]
mod fuzz;
mod gate;
mod layer;
mod peer;
mod rate;
mod rewrite;
mod select;
pub mod testing;
mod vp8;

pub use conference::{
    generate_dtls_cert, CloseReason, Conference, Config, LinkStats, MediaError, MeetingId, Output,
    PeerId, PeerSetup,
};
pub use demux::stun_local_ufrag;
pub use layer::{choose_layer, LayerRate};
pub use rate::{Estimation, LossControl};
pub use select::Receives;
