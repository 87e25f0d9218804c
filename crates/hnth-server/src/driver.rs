//! The thin driver around the sans-IO conference core: it owns the UDP socket and the timer,
//! and nothing else.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hnth_media::{CloseReason, Conference, LinkStats, MediaError, MeetingId, Output, PeerId};
use str0m::net::Transmit;
use tokio::net::UdpSocket;

use crate::udp_batch::{send_all, RecvBatch, BATCH};
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

/// Batches of datagrams read per wake-up before the core's output is flushed.
const RECV_ROUNDS: usize = 4;

pub async fn run(
    socket: UdpSocket,
    destination: SocketAddr,
    mut conf: Conference,
    mut cmds: UnboundedReceiver<MediaCmd>,
    events: UnboundedSender<MediaEvent>,
) {
    let mut rx = RecvBatch::default();
    let mut tx: Vec<Transmit> = Vec::with_capacity(BATCH * 4);
    loop {
        flush(&socket, &mut conf, &events, &mut tx);
        let now = Instant::now();
        let deadline = conf
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(100))
            .clamp(now, now + Duration::from_millis(100));
        tokio::select! {
            r = socket.readable() => {
                if let Err(e) = r {
                    tracing::warn!("udp socket: {e}");
                    continue;
                }
                // Read what is waiting, a batch per system call, without sleeping in between.
                for _ in 0..RECV_ROUNDS {
                    match rx.recv(&socket) {
                        Ok(n) => {
                            let now = Instant::now();
                            for (src, data) in rx.datagrams() {
                                conf.handle_receive(now, src, destination, data);
                            }
                            if n < BATCH {
                                break;
                            }
                        }
                        Err(e) => {
                            if e.kind() != std::io::ErrorKind::WouldBlock {
                                tracing::debug!("udp receive: {e}");
                            }
                            break;
                        }
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

fn flush(
    socket: &UdpSocket,
    conf: &mut Conference,
    events: &UnboundedSender<MediaEvent>,
    tx: &mut Vec<Transmit>,
) {
    while let Some(out) = conf.poll_output() {
        let ev = match out {
            Output::Transmit(t) => {
                tx.push(t);
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
    if !tx.is_empty() {
        let list: Vec<(SocketAddr, &[u8])> = tx
            .iter()
            .map(|t| (t.destination, &t.contents[..]))
            .collect();
        let dropped = send_all(socket, &list);
        if dropped > 0 {
            tracing::trace!(dropped, "udp send buffer full");
        }
        tx.clear();
    }
}
