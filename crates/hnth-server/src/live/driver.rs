//! The thin driver around the sans-IO conference core: it owns the UDP socket and the timer,
//! and nothing else.
//!
//! Meetings are spread over media workers, one per core by default: each worker is a thread
//! with its own [`Conference`] and its own UDP port (media.bind's port + its number), and every
//! peer of a meeting lives on the meeting's worker. [`MediaRouter`] sends signaling's commands
//! to the right worker; the events of all workers come back on one channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hnth_media::{
    CloseReason, Conference, LinkStats, MediaError, MeetingId, Output, PeerId, PeerSetup, Receives,
};
use str0m::net::Transmit;
use tokio::net::UdpSocket;

use crate::live::delay::{MediaDelays, Turn};
use crate::live::udp_batch::{enable_arrival_stamps, RecvBatch, SendBatch, BATCH};
use std::sync::Arc;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// What signaling asks of the media core.
#[derive(Debug)]
pub enum MediaCmd {
    AddPeer {
        peer: PeerId,
        meeting: MeetingId,
        stream: String,
        sdp: String,
        /// What it receives and whether it is heard from the start (the meeting's rules).
        setup: PeerSetup,
    },
    Answer {
        peer: PeerId,
        seq: u64,
        sdp: String,
    },
    RemovePeer {
        peer: PeerId,
    },
    /// How tall the peer shows each stream's video (stream id, device pixels).
    View {
        peer: PeerId,
        heights: Vec<(String, u16)>,
    },
    /// What the peer receives from now on: the meeting's frame changed (C1).
    Receives {
        peer: PeerId,
        receives: Receives,
    },
    /// Open or close the peer's floor gate (C4).
    Floor {
        peer: PeerId,
        open: bool,
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
    /// Nothing arrives from the peer any more (for `silent_for`); its session is kept.
    Interrupted {
        peer: PeerId,
        silent_for: Duration,
    },
    /// The interrupted peer's datagrams arrive again.
    Resumed {
        peer: PeerId,
    },
    Stats(LinkStats),
    /// Pause (`on: false`) or resume the peer's video: nobody receives it.
    SendVideo {
        peer: PeerId,
        on: bool,
    },
    /// The peer speaks while its gate is closed: nobody hears it (C4; R4 may record it).
    UnheardSpeech {
        peer: PeerId,
    },
}

/// Where signaling's commands go: the worker of the peer's meeting.
pub struct MediaRouter {
    workers: Vec<UnboundedSender<MediaCmd>>,
    state: Mutex<Placement>,
}

/// Which worker holds which meeting and peer.
#[derive(Default)]
struct Placement {
    meeting_worker: HashMap<MeetingId, usize>,
    /// peer -> (worker, meeting)
    peer_worker: HashMap<PeerId, (usize, MeetingId)>,
    peers_per_worker: Vec<usize>,
    /// Ties between equally loaded workers go round.
    next: usize,
}

impl MediaRouter {
    pub fn new(workers: Vec<UnboundedSender<MediaCmd>>) -> MediaRouter {
        let n = workers.len();
        MediaRouter {
            workers,
            state: Mutex::new(Placement {
                peers_per_worker: vec![0; n],
                ..Default::default()
            }),
        }
    }

    /// Pass a command to its worker. A new meeting goes to the least loaded worker (in peers).
    pub fn send(&self, cmd: MediaCmd) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let worker = match &cmd {
            MediaCmd::AddPeer { peer, meeting, .. } => {
                let w = match st.meeting_worker.get(meeting) {
                    Some(w) => *w,
                    None => {
                        let n = st.peers_per_worker.len();
                        let start = st.next % n.max(1);
                        st.next = st.next.wrapping_add(1);
                        let w = (0..n)
                            .map(|i| (start + i) % n)
                            .min_by_key(|w| st.peers_per_worker[*w])
                            .unwrap_or(0);
                        st.meeting_worker.insert(*meeting, w);
                        w
                    }
                };
                st.peer_worker.insert(*peer, (w, *meeting));
                st.peers_per_worker[w] += 1;
                Some(w)
            }
            MediaCmd::Answer { peer, .. }
            | MediaCmd::View { peer, .. }
            | MediaCmd::Receives { peer, .. }
            | MediaCmd::Floor { peer, .. } => st.peer_worker.get(peer).map(|(w, _)| *w),
            MediaCmd::RemovePeer { peer } => {
                let w = st.peer_worker.get(peer).map(|(w, _)| *w);
                st.forget(*peer);
                w
            }
        };
        drop(st);
        if let Some(w) = worker.and_then(|w| self.workers.get(w)) {
            let _ = w.send(cmd);
        }
    }

    /// A worker closed this peer by itself (expiry, broken link).
    pub fn closed(&self, peer: PeerId) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(peer);
    }
}

impl Placement {
    fn forget(&mut self, peer: PeerId) {
        let Some((w, meeting)) = self.peer_worker.remove(&peer) else {
            return;
        };
        self.peers_per_worker[w] = self.peers_per_worker[w].saturating_sub(1);
        if !self.peer_worker.values().any(|(_, m)| *m == meeting) {
            self.meeting_worker.remove(&meeting);
        }
    }
}

/// The media workers, started.
pub struct Workers {
    pub router: MediaRouter,
    /// Per worker: the address bound and the address announced to peers.
    pub addrs: Vec<(SocketAddr, SocketAddr)>,
    /// The delay the workers add, for `/metrics`.
    pub delay: Arc<MediaDelays>,
}

/// Bind `count` UDP ports from `bind` upwards and start one worker thread on each.
pub fn start_workers(
    bind: SocketAddr,
    announce: std::net::IpAddr,
    count: usize,
    config: hnth_media::Config,
    events: UnboundedSender<MediaEvent>,
) -> anyhow::Result<Workers> {
    let mut senders = Vec::new();
    let mut addrs = Vec::new();
    let delay = Arc::new(MediaDelays::default());
    for i in 0..count.max(1) {
        // Port 0 asks the system for any port; otherwise the ports are consecutive.
        let want = if bind.port() == 0 {
            bind
        } else {
            let port = bind.port().checked_add(i as u16).ok_or_else(|| {
                anyhow::anyhow!("media ports {}+{count} exceed 65535", bind.port())
            })?;
            SocketAddr::new(bind.ip(), port)
        };
        let std_socket = std::net::UdpSocket::bind(want)
            .map_err(|e| anyhow::anyhow!("cannot bind UDP {want} (media worker {i}): {e}"))?;
        std_socket.set_nonblocking(true)?;
        match hnth_net::size_buffers(&std_socket, SOCKET_BUFFER_BYTES) {
            Ok(got) if got < SOCKET_BUFFER_BYTES => tracing::warn!(
                "media worker {i}: UDP receive buffer is {} KiB (asked {} KiB): raise \
                 net.core.rmem_max and wmem_max, or bursts in large meetings are dropped",
                got / 1024,
                SOCKET_BUFFER_BYTES / 1024
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("media worker {i}: cannot size the UDP buffers: {e}"),
        }
        let bound = std_socket.local_addr()?;
        let announced = SocketAddr::new(announce, bound.port());
        let conf = Conference::new(hnth_media::Config {
            candidates: vec![announced],
            ..config.clone()
        });
        let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
        let events = events.clone();
        let delay_h = delay.clone();
        std::thread::Builder::new()
            .name(format!("hnth-media-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("media worker {i}: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    match UdpSocket::from_std(std_socket) {
                        Ok(socket) => {
                            run(socket, announced, conf, cmd_rx, events, Some(delay_h)).await
                        }
                        Err(e) => tracing::error!("media worker {i}: {e}"),
                    }
                });
            })?;
        senders.push(cmd_tx);
        addrs.push((bound, announced));
    }
    Ok(Workers {
        router: MediaRouter::new(senders),
        addrs,
        delay,
    })
}

/// Batches of datagrams read per wake-up (what a full batch caused is sent before the next).
const RECV_ROUNDS: usize = 4;
/// Receive and send buffer asked for each media socket (see `hnth_net::size_buffers`):
/// about 100 ms of a 100-site meeting's incoming media.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

pub async fn run(
    socket: UdpSocket,
    destination: SocketAddr,
    mut conf: Conference,
    mut cmds: UnboundedReceiver<MediaCmd>,
    events: UnboundedSender<MediaEvent>,
    delay: Option<Arc<MediaDelays>>,
) {
    let mut rx = RecvBatch::default();
    let mut out = SendBatch::default();
    let traffic = crate::telemetry::Traffic::new();
    let mut tx: Vec<Transmit> = Vec::with_capacity(BATCH * 4);
    // Arrival stamps of the datagrams handled since the last flush (a batch at most).
    let mut arrivals: Vec<Duration> = Vec::with_capacity(BATCH);
    let (mut turn, mut waiting) = (Turn::default(), Turn::default());
    // The arrival stamps time what each sender is told of its packets (TWCC, see
    // `Conference::handle_receive_batch`) and measure the server's delay.
    if let Err(e) = enable_arrival_stamps(&socket) {
        tracing::warn!(
            "udp arrival stamps: {e}; packets are timed when handled and the server delay is not measured"
        );
    }
    // Flush, then account the delay of the datagrams handled since the last flush: what they
    // caused has left with it (forwarded packets leave in the call that received them).
    let mut flush_measured = |conf: &mut Conference, arrivals: &mut Vec<Duration>| {
        flush(&socket, conf, &events, &mut tx, &mut out, &traffic);
        if let (Some(h), false) = (&delay, arrivals.is_empty()) {
            let now = hnth_net::realtime();
            for a in arrivals.iter() {
                turn.record(now.saturating_sub(*a));
            }
            turn.commit(&h.total);
            arrivals.clear();
        }
    };
    loop {
        flush_measured(&mut conf, &mut arrivals);
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
                            traffic.received(n, rx.bytes());
                            if let Some(h) = &delay {
                                let first = arrivals.len();
                                arrivals.extend(rx.arrivals());
                                let now = hnth_net::realtime();
                                for a in &arrivals[first..] {
                                    waiting.record(now.saturating_sub(*a));
                                }
                                waiting.commit(&h.waiting);
                            }
                            let now = Instant::now();
                            let arrived = rx.datagrams_at(now, hnth_net::realtime());
                            conf.handle_receive_batch(now, destination, arrived);
                            if n < BATCH {
                                break;
                            }
                            // More is waiting: send what this batch caused before reading on,
                            // so its packets do not wait for the next batch's work.
                            flush_measured(&mut conf, &mut arrivals);
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
            setup,
        } => {
            let r = conf.add_peer_with(now, peer, meeting, &stream, &sdp, setup);
            (peer, r, true)
        }
        MediaCmd::Answer { peer, seq, sdp } => {
            (peer, conf.handle_answer(now, peer, seq, &sdp), false)
        }
        MediaCmd::RemovePeer { peer } => (peer, conf.remove_peer(now, peer).or(Ok(())), false),
        // A view for a peer that has just left is moot.
        MediaCmd::View { peer, heights } => {
            (peer, conf.set_view(now, peer, &heights).or(Ok(())), false)
        }
        // So is a frame or a floor for a peer that has just left.
        MediaCmd::Receives { peer, receives } => (
            peer,
            conf.set_receives(now, peer, receives).or(Ok(())),
            false,
        ),
        MediaCmd::Floor { peer, open } => (peer, conf.set_floor(peer, open).or(Ok(())), false),
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
    out: &mut SendBatch,
    traffic: &crate::telemetry::Traffic,
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
            Output::LinkInterrupted { peer, silent_for } => {
                MediaEvent::Interrupted { peer, silent_for }
            }
            Output::LinkResumed { peer } => MediaEvent::Resumed { peer },
            Output::Stats(s) => MediaEvent::Stats(s),
            Output::SendVideo { peer, on } => MediaEvent::SendVideo { peer, on },
            Output::UnheardSpeech { peer } => MediaEvent::UnheardSpeech { peer },
        };
        let _ = events.send(ev);
    }
    if !tx.is_empty() {
        let list: Vec<(SocketAddr, &[u8])> = tx
            .iter()
            .map(|t| (t.destination, &t.contents[..]))
            .collect();
        let dropped = out.send_all(socket, &list);
        traffic.sent(list.len(), list.iter().map(|(_, d)| d.len()).sum(), dropped);
        if dropped > 0 {
            tracing::trace!(dropped, "udp send buffer full");
        }
        tx.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    fn add(peer: PeerId, meeting: MeetingId) -> MediaCmd {
        MediaCmd::AddPeer {
            peer,
            meeting,
            stream: format!("s{peer}"),
            sdp: String::new(),
            setup: PeerSetup {
                receives: Receives::FirstJoined(8),
                heard: true,
            },
        }
    }

    /// The worker each command reached.
    fn drain(rxs: &mut [UnboundedReceiver<MediaCmd>]) -> Vec<(usize, PeerId)> {
        let mut got = Vec::new();
        for (w, rx) in rxs.iter_mut().enumerate() {
            while let Ok(cmd) = rx.try_recv() {
                let peer = match cmd {
                    MediaCmd::AddPeer { peer, .. }
                    | MediaCmd::Answer { peer, .. }
                    | MediaCmd::RemovePeer { peer }
                    | MediaCmd::View { peer, .. }
                    | MediaCmd::Receives { peer, .. }
                    | MediaCmd::Floor { peer, .. } => peer,
                };
                got.push((w, peer));
            }
        }
        got.sort();
        got
    }

    #[test]
    fn meetings_go_to_the_least_loaded_worker_and_stay_together() {
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| unbounded_channel()).unzip();
        let router = MediaRouter::new(txs);
        // Meeting 7 with three peers lands on one worker; meeting 8 on the other.
        for p in [1, 2, 3] {
            router.send(add(p, 7));
        }
        router.send(add(4, 8));
        let got = drain(&mut rxs);
        let w7 = got.iter().find(|(_, p)| *p == 1).unwrap().0;
        assert!(got.iter().filter(|(_, p)| *p <= 3).all(|(w, _)| *w == w7));
        assert_eq!(got.iter().find(|(_, p)| *p == 4).unwrap().0, 1 - w7);
        // Answers and removals follow their peer.
        router.send(MediaCmd::Answer {
            peer: 4,
            seq: 1,
            sdp: String::new(),
        });
        router.send(MediaCmd::RemovePeer { peer: 2 });
        assert_eq!(drain(&mut rxs), {
            let mut v = vec![(1 - w7, 4), (w7, 2)];
            v.sort();
            v
        });
        // A third meeting goes where the load is lower (meeting 8's worker: 1 peer vs 2).
        router.send(add(5, 9));
        assert_eq!(drain(&mut rxs), vec![(1 - w7, 5)]);
        // Once every peer of meeting 7 is gone, a new peer numbered for it is placed afresh.
        router.send(MediaCmd::RemovePeer { peer: 1 });
        router.closed(3);
        drain(&mut rxs);
        router.send(add(6, 7));
        assert_eq!(drain(&mut rxs), vec![(w7, 6)]);
        // Commands for unknown peers go nowhere.
        router.send(MediaCmd::RemovePeer { peer: 99 });
        assert!(drain(&mut rxs).is_empty());
    }
}
