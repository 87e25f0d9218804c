//! The thin driver around the sans-IO conference core: it owns the UDP socket and the timer,
//! and nothing else.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hnth_media::{CloseReason, Conference, LinkStats, MediaError, MeetingId, Output, PeerId};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// What signaling asks of the media core.
#[derive(Debug)]
pub enum MediaCmd {
    AddPeer {
        peer: PeerId,
        meeting: MeetingId,
        stream: String,
        sdp: String,
    },
    Answer {
        peer: PeerId,
        seq: u64,
        sdp: String,
    },
    RemovePeer {
        peer: PeerId,
    },
}

/// What the media core tells signaling.
#[derive(Debug)]
pub enum MediaEvent {
    Answer {
        peer: PeerId,
        sdp: String,
    },
    Offer {
        peer: PeerId,
        seq: u64,
        sdp: String,
    },
    Refused {
        peer: PeerId,
        error: MediaError,
        fatal: bool,
    },
    Connected {
        peer: PeerId,
    },
    Closed {
        peer: PeerId,
        reason: CloseReason,
    },
    Stats(LinkStats),
    /// Pause (`on: false`) or resume the peer's video: nobody receives it.
    SendVideo {
        peer: PeerId,
        on: bool,
    },
}

/// Datagrams read per wake-up before the core's output is flushed.
const BATCH: usize = 64;

pub async fn run(
    socket: UdpSocket,
    destination: SocketAddr,
    mut conf: Conference,
    mut cmds: UnboundedReceiver<MediaCmd>,
    events: UnboundedSender<MediaEvent>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        flush(&socket, &mut conf, &events);
        let now = Instant::now();
        let deadline = conf
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(100))
            .clamp(now, now + Duration::from_millis(100));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                match r {
                    Ok((n, src)) => conf.handle_receive(Instant::now(), src, destination, &buf[..n]),
                    Err(e) => tracing::debug!("udp receive: {e}"),
                }
                // Drain what else is waiting without sleeping in between.
                for _ in 1..BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, src)) => conf.handle_receive(Instant::now(), src, destination, &buf[..n]),
                        Err(_) => break,
                    }
                }
                if conf.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                    conf.handle_timeout(Instant::now());
                }
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { break };
                apply(&mut conf, cmd, &events);
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                conf.handle_timeout(Instant::now());
            }
        }
    }
}

fn apply(conf: &mut Conference, cmd: MediaCmd, events: &UnboundedSender<MediaEvent>) {
    let now = Instant::now();
    let (peer, result, fatal) = match cmd {
        MediaCmd::AddPeer {
            peer,
            meeting,
            stream,
            sdp,
        } => (peer, conf.add_peer(now, peer, meeting, &stream, &sdp), true),
        MediaCmd::Answer { peer, seq, sdp } => {
            (peer, conf.handle_answer(now, peer, seq, &sdp), false)
        }
        MediaCmd::RemovePeer { peer } => (peer, conf.remove_peer(now, peer).or(Ok(())), false),
    };
    if let Err(error) = result {
        let _ = events.send(MediaEvent::Refused { peer, error, fatal });
    }
}

fn flush(socket: &UdpSocket, conf: &mut Conference, events: &UnboundedSender<MediaEvent>) {
    while let Some(out) = conf.poll_output() {
        let ev = match out {
            Output::Transmit(t) => {
                // UDP semantics: a datagram the kernel cannot take now is dropped, and the
                // peers' NACK and keyframe machinery recovers.
                if let Err(e) = socket.try_send_to(&t.contents, t.destination) {
                    tracing::trace!("udp send to {}: {e}", t.destination);
                }
                continue;
            }
            Output::Answer { peer, sdp } => MediaEvent::Answer { peer, sdp },
            Output::Offer { peer, seq, sdp } => MediaEvent::Offer { peer, seq, sdp },
            Output::Connected { peer } => MediaEvent::Connected { peer },
            Output::PeerClosed { peer, reason } => MediaEvent::Closed { peer, reason },
            Output::Stats(s) => MediaEvent::Stats(s),
            Output::SendVideo { peer, on } => MediaEvent::SendVideo { peer, on },
        };
        let _ = events.send(ev);
    }
}
