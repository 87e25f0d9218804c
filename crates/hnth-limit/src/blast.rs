//! The load side: S simulated senders' SRTP packets at an aggregate rate, paced in bursts of
//! about 0.5 ms against the clock, from one connected socket; F receiver sockets that register
//! with the forwarder, count every copy and decrypt a sample with the receiver's key. Single
//! threaded (one CPU), so it stays cheap next to the forwarder it drives.

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::forward::{sender_ssrc, Stats};
use crate::net::{self, Batch};
use crate::srtp::{self, Key, Profile, RtpHeader, SeqState};

/// Bytes of the payload the blaster checks after decryption: sender index, ROC, sequence number.
const MARK: usize = 10;
const FILL: u8 = 0xa5;

pub struct Config {
    pub forwarder: SocketAddrV4,
    pub bind_ip: std::net::Ipv4Addr,
    pub senders: u32,
    pub fanout: u32,
    pub profile: Profile,
    pub seed: u64,
    /// SRTP packet size on the wire (UDP payload), header and tag included
    pub size: usize,
    /// decrypt and check one copy in this many (1 = all)
    pub verify_every: u64,
    /// Packets a sender sends back to back, as one video frame (1: senders take turns per
    /// packet). Frames are never split across bursts.
    pub frame: u32,
}

struct Sender {
    key: Key,
    ssrc: u32,
    /// sender side: ROC and sequence number of the next packet
    seq: SeqState,
}

struct Receiver {
    sock: UdpSocket,
    key: Key,
}

/// What one paced step measured.
#[derive(Clone, Debug)]
pub struct Step {
    pub pps_in_target: f64,
    /// measured window: first send → last copy received (or last send)
    pub wall_s: f64,
    pub sent: u64,
    pub received: u64,
    pub received_bytes: u64,
    pub verified: u64,
    pub verify_failed: u64,
    pub fwd: Stats,
    pub fwd_cpu_s: f64,
    pub blaster_cpu_s: f64,
}

pub struct Blaster {
    cfg: Config,
    senders: Vec<Sender>,
    receivers: Vec<Receiver>,
    pollfds: Vec<libc::pollfd>,
    tx: UdpSocket,
    ctl: UdpSocket,
    txb: Batch,
    rxb: Batch,
    next_sender: usize,
    /// Packets of the current frame already sent by `next_sender`.
    in_frame: u32,
    nonce: u32,
    // counters of the current step
    received: u64,
    received_bytes: u64,
    verified: u64,
    verify_failed: u64,
    verify_tick: u64,
}

impl Blaster {
    /// Opens the sockets and registers the F receivers with the forwarder (waiting for its
    /// acknowledgements, with a deadline).
    pub fn connect(cfg: Config) -> Result<Blaster> {
        let tag = cfg.profile.tag_len();
        if cfg.size < 12 + MARK + tag || cfg.size > 1500 {
            bail!("--size must be in {}..=1500", 12 + MARK + tag);
        }
        if cfg.senders == 0 || cfg.fanout == 0 || cfg.frame == 0 {
            bail!("senders, fanout and frame must be ≥ 1");
        }
        let bind = SocketAddrV4::new(cfg.bind_ip, 0);
        let tx = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
        tx.connect(cfg.forwarder)?;
        net::set_buffers(&tx, 4 << 20);
        let ctl = UdpSocket::bind(bind)?;
        ctl.connect(cfg.forwarder)?;
        ctl.set_read_timeout(Some(Duration::from_millis(200)))?;

        // Random-looking but reproducible initial sequence numbers, a few close to the wrap so
        // the rollover counter is exercised early.
        let senders = (0..cfg.senders)
            .map(|i| Sender {
                key: Key::derive(cfg.profile, cfg.seed, "sender", i),
                ssrc: sender_ssrc(i),
                seq: SeqState::sender_at(65_000u16.wrapping_add((i as u16).wrapping_mul(7919))),
            })
            .collect();
        let mut receivers = Vec::new();
        for i in 0..cfg.fanout {
            let sock = UdpSocket::bind(bind)?;
            net::set_buffers(&sock, 4 << 20);
            sock.set_nonblocking(true)?;
            receivers.push(Receiver {
                sock,
                key: Key::derive(cfg.profile, cfg.seed, "receiver", i),
            });
        }
        let pollfds = receivers.iter().map(|r| net::pollfd(&r.sock)).collect();
        let mut b = Blaster {
            cfg,
            senders,
            receivers,
            pollfds,
            tx,
            ctl,
            txb: Batch::new(64),
            rxb: Batch::new(64),
            next_sender: 0,
            in_frame: 0,
            nonce: 0,
            received: 0,
            received_bytes: 0,
            verified: 0,
            verify_failed: 0,
            verify_tick: 0,
        };
        b.register()?;
        Ok(b)
    }

    fn register(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pending: Vec<bool> = vec![true; self.receivers.len()];
        while pending.iter().any(|&p| p) {
            if Instant::now() > deadline {
                bail!(
                    "the forwarder at {} did not acknowledge every receiver",
                    self.cfg.forwarder
                );
            }
            for (i, r) in self.receivers.iter().enumerate() {
                if pending[i] {
                    let mut m = [0u8; 8];
                    m[..4].copy_from_slice(b"HNRX");
                    m[4..].copy_from_slice(&(i as u32).to_be_bytes());
                    r.sock.send_to(&m, self.cfg.forwarder)?;
                }
            }
            let retry = Instant::now() + Duration::from_millis(200);
            while pending.iter().any(|&p| p) && Instant::now() < retry {
                net::wait_readable(&mut self.pollfds, retry - Instant::now())?;
                for (i, r) in self.receivers.iter().enumerate() {
                    let mut m = [0u8; 64];
                    while let Ok(n) = r.sock.recv(&mut m) {
                        if n == 8 && &m[..4] == b"HNOK" && m[4..8] == (i as u32).to_be_bytes() {
                            pending[i] = false;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Asks the forwarder for its counters (`HNST`), or tells it to stop (`HNBY`).
    /// Each query carries a fresh nonce, so a late answer to an earlier (retried) query is ignored.
    pub fn query(&mut self, bye: bool) -> Result<Stats> {
        self.nonce += 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        let (ask, answer): (&[u8; 4], &[u8; 4]) = if bye {
            (b"HNBY", b"HNBY")
        } else {
            (b"HNST", b"HNSS")
        };
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(ask);
        msg[4..].copy_from_slice(&self.nonce.to_be_bytes());
        let mut buf = [0u8; 128];
        while Instant::now() < deadline {
            self.ctl.send(&msg)?;
            // Answers to this query until the socket's 200 ms read timeout; then ask again.
            while let Ok(n) = self.ctl.recv(&mut buf) {
                if let Some(s) = Stats::decode(&buf[..n], answer, self.nonce) {
                    return Ok(s);
                }
            }
        }
        bail!(
            "the forwarder did not answer {}",
            String::from_utf8_lossy(ask)
        )
    }

    /// Sends `n` packets (round-robin over the senders, a frame each) in sendmmsg batches.
    fn send(&mut self, mut n: u64) -> u64 {
        let payload = self.cfg.size - 12 - self.cfg.profile.tag_len();
        let mut sent = 0;
        while n > 0 {
            let k = (n as usize).min(self.txb.capacity());
            for i in 0..k {
                let s = &mut self.senders[self.next_sender];
                let idx = self.next_sender as u32;
                self.in_frame += 1;
                if self.in_frame >= self.cfg.frame {
                    self.in_frame = 0;
                    self.next_sender = (self.next_sender + 1) % self.cfg.senders as usize;
                }
                let (roc, seq) = s.seq.next_to_send();
                let slot = self.txb.slot(i);
                let hl = srtp::write_rtp_header(slot, seq, (seq as u32).wrapping_mul(3000), s.ssrc);
                let h = RtpHeader {
                    len: hl,
                    seq,
                    ssrc: s.ssrc,
                };
                slot[hl..hl + 4].copy_from_slice(&idx.to_be_bytes());
                slot[hl + 4..hl + 8].copy_from_slice(&roc.to_be_bytes());
                slot[hl + 8..hl + MARK].copy_from_slice(&seq.to_be_bytes());
                slot[hl + MARK..hl + payload].fill(FILL);
                let len = s.key.protect(slot, &h, payload, roc);
                self.txb.set_outgoing(i, len, std::ptr::null());
            }
            sent += self.txb.send(&self.tx, k) as u64;
            n -= k as u64;
        }
        sent
    }

    /// Receives whatever the receivers have, waiting at most `timeout` for the first datagram.
    /// Returns true if anything arrived.
    fn receive(&mut self, timeout: Duration) -> Result<bool> {
        if net::wait_readable(&mut self.pollfds, timeout)? == 0 {
            return Ok(false);
        }
        let before = self.received;
        for r in 0..self.receivers.len() {
            if self.pollfds[r].revents == 0 {
                continue;
            }
            loop {
                let n = match self.rxb.recv(&self.receivers[r].sock, libc::MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("recvmmsg (receiver)"),
                };
                for i in 0..n {
                    let len = self.rxb.received(i).len();
                    self.received += 1;
                    self.received_bytes += len as u64;
                    self.verify_tick += 1;
                    if self.verify_tick >= self.cfg.verify_every {
                        self.verify_tick = 0;
                        let ok = self.verify(r, i);
                        self.verified += ok as u64;
                        self.verify_failed += !ok as u64;
                    }
                }
                if n < self.rxb.capacity() {
                    break;
                }
            }
        }
        Ok(self.received > before)
    }

    /// Decrypts copy `i` of the receive batch with receiver `r`'s key and checks its payload.
    fn verify(&mut self, r: usize, i: usize) -> bool {
        let expected_len = self.cfg.size;
        let pkt = self.rxb.received(i);
        let Some(h) = srtp::parse_rtp(pkt) else {
            return false;
        };
        let Some(idx) = h.ssrc.checked_sub(sender_ssrc(0)) else {
            return false;
        };
        let Some(s) = self.senders.get(idx as usize) else {
            return false;
        };
        if pkt.len() != expected_len {
            return false;
        }
        let roc = s.seq.estimate(h.seq);
        let Some(n) = self.receivers[r].key.unprotect(pkt, &h, roc) else {
            return false;
        };
        let p = &pkt[h.len..h.len + n];
        n == expected_len - 12 - self.cfg.profile.tag_len()
            && p[..4] == idx.to_be_bytes()
            && p[4..8] == roc.to_be_bytes()
            && p[8..MARK] == h.seq.to_be_bytes()
            && p[MARK..].iter().all(|&b| b == FILL)
    }

    /// One paced step: `pps` packets/s for `seconds`, then waits (with a deadline) for the
    /// copies still in flight, and reads the forwarder's CPU time before and after.
    pub fn step(&mut self, pps: f64, seconds: f64) -> Result<Step> {
        let total = (pps * seconds).round().max(1.0) as u64;
        // 0.5 ms worth of packets, or whole frames.
        let frame = u64::from(self.cfg.frame);
        let burst = ((pps * 0.0005).ceil().max(1.0) as u64).max(frame);
        self.received = 0;
        self.received_bytes = 0;
        self.verified = 0;
        self.verify_failed = 0;
        let f0 = self.query(false)?;
        let b0 = net::cpu_time_us();
        let start = Instant::now();
        let mut sent = 0u64;
        let mut scheduled = 0u64;
        let mut last = start;
        while scheduled < total {
            let now = Instant::now();
            let due = ((pps * (now - start).as_secs_f64()) as u64).min(total);
            // Frames go whole: what is due, in whole frames (the last one may be short).
            let k = if frame > 1 && due < total {
                (due - scheduled.min(due)) / frame * frame
            } else {
                due.saturating_sub(scheduled)
            };
            if k > 0 {
                // If the blaster falls behind it sends what is due at once, at most 4096 at a time.
                let k = k.min(4096 / frame * frame);
                sent += self.send(k);
                scheduled += k;
                last = Instant::now();
                continue;
            }
            // Wait for the next burst's send time, receiving copies meanwhile.
            let next = start + Duration::from_secs_f64((scheduled + burst).min(total) as f64 / pps);
            let now = Instant::now();
            if next > now && self.receive(next - now)? {
                last = Instant::now();
            }
        }
        // Drain: every copy arrives, or nothing arrived for 300 ms (10 s at most).
        let expected = sent * self.cfg.fanout as u64;
        let hard = Instant::now() + Duration::from_secs(10);
        let mut idle = Instant::now() + Duration::from_millis(300);
        while self.received < expected {
            let now = Instant::now();
            if now > idle || now > hard {
                break;
            }
            if self.receive((idle - now).min(Duration::from_millis(50)))? {
                last = Instant::now();
                idle = last + Duration::from_millis(300);
            }
        }
        let wall = (last - start).as_secs_f64();
        let b1 = net::cpu_time_us();
        let f1 = self.query(false)?;
        Ok(Step {
            pps_in_target: pps,
            wall_s: wall,
            sent,
            received: self.received,
            received_bytes: self.received_bytes,
            verified: self.verified,
            verify_failed: self.verify_failed,
            fwd: Stats {
                forwarded_in: f1.forwarded_in - f0.forwarded_in,
                forwarded_out: f1.forwarded_out - f0.forwarded_out,
                auth_failed: f1.auth_failed - f0.auth_failed,
                unknown: f1.unknown - f0.unknown,
                cpu_us: f1.cpu_us - f0.cpu_us,
                delay: f1.delay,
            },
            fwd_cpu_s: (f1.cpu_us - f0.cpu_us) as f64 / 1e6,
            blaster_cpu_s: (b1 - b0) as f64 / 1e6,
        })
    }
}
