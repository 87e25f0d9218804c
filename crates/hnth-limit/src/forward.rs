//! The forwarder: the work an SFU cannot avoid for one RTP packet going to F receivers, and
//! nothing else. One UDP socket; per batch: recvmmsg; per packet: find the sender by SSRC,
//! estimate the ROC, SRTP-decrypt with the sender's key; per receiver: copy, SRTP-encrypt with
//! that receiver's own key; then sendmmsg every copy. No allocation per packet.
//!
//! Control datagrams start with b"HN" (RTP version 1, so never mistaken for SRTP):
//! `HNRX`+u32 registers the sending socket as receiver #u32 (answered `HNOK`+u32), `HNST`+u32 asks
//! for the counters (answered `HNSS`+u32+[`Stats`]), `HNBY`+u32 answers the counters and stops.

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};

use anyhow::{bail, Context, Result};

use crate::net::{self, Batch};
use crate::srtp::{self, Key, Profile, SeqState};

/// SSRC of simulated sender #i (the blaster uses the same numbering).
pub fn sender_ssrc(i: u32) -> u32 {
    0x4e54_0000 + i
}

/// The forwarder's counters, answered to `HNST`/`HNBY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// SRTP packets received and authenticated
    pub forwarded_in: u64,
    /// copies handed to the kernel (sendmmsg)
    pub forwarded_out: u64,
    /// packets that did not authenticate with their sender's key
    pub auth_failed: u64,
    /// packets with an unknown SSRC or no RTP header
    pub unknown: u64,
    /// the forwarder process's CPU time (user + system) so far, µs
    pub cpu_us: u64,
    /// The delay the forwarder added to the packets forwarded since the previous query
    /// (kernel arrival → return of the sendmmsg that carried the copies): how many were
    /// measured, how many took over 1 ms, and the p50 / p99 / p99.9 in µs.
    pub delay: Delays,
}

/// The forwarder's delays over one window (see [`Stats::delay`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delays {
    pub count: u64,
    pub over_1ms: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl Delays {
    /// The figures of `us` (reordered in place).
    pub fn of(us: &mut [u32]) -> Delays {
        let mut q = |f: f64| -> u64 {
            if us.is_empty() {
                return 0;
            }
            let k = ((us.len() as f64 * f).ceil() as usize).clamp(1, us.len()) - 1;
            u64::from(*us.select_nth_unstable(k).1)
        };
        let (p50_us, p99_us, p999_us) = (q(0.5), q(0.99), q(0.999));
        Delays {
            count: us.len() as u64,
            over_1ms: us.iter().filter(|d| **d > 1000).count() as u64,
            p50_us,
            p99_us,
            p999_us,
        }
    }
}

impl Stats {
    /// magic, the query's nonce, ten counters
    pub const LEN: usize = 4 + 4 + 10 * 8;

    fn encode(&self, magic: &[u8; 4], nonce: &[u8]) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(magic);
        b[4..8].copy_from_slice(nonce);
        let v = [
            self.forwarded_in,
            self.forwarded_out,
            self.auth_failed,
            self.unknown,
            self.cpu_us,
            self.delay.count,
            self.delay.over_1ms,
            self.delay.p50_us,
            self.delay.p99_us,
            self.delay.p999_us,
        ];
        for (i, x) in v.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&x.to_be_bytes());
        }
        b
    }

    /// Decodes an answer to the query `magic`+`nonce`.
    pub fn decode(b: &[u8], magic: &[u8; 4], nonce: u32) -> Option<Stats> {
        if b.len() != Self::LEN || &b[..4] != magic || b[4..8] != nonce.to_be_bytes() {
            return None;
        }
        let f = |i: usize| u64::from_be_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        Some(Stats {
            forwarded_in: f(0),
            forwarded_out: f(1),
            auth_failed: f(2),
            unknown: f(3),
            cpu_us: f(4),
            delay: Delays {
                count: f(5),
                over_1ms: f(6),
                p50_us: f(7),
                p99_us: f(8),
                p999_us: f(9),
            },
        })
    }
}

pub struct Config {
    pub bind: SocketAddrV4,
    pub senders: u32,
    pub fanout: u32,
    pub profile: Profile,
    pub seed: u64,
    pub batch: usize,
}

struct Sender {
    key: Key,
    seq: SeqState,
}

struct Receiver {
    key: Key,
    /// None until the receiver registered; the address sendmmsg points at.
    addr: Option<libc::sockaddr_in>,
}

/// Binds the socket; `run` then forwards until `HNBY`.
pub fn bind(cfg: &Config) -> Result<UdpSocket> {
    let sock = UdpSocket::bind(cfg.bind).with_context(|| format!("bind {}", cfg.bind))?;
    net::set_buffers(&sock, 8 << 20);
    net::enable_arrival_stamps(&sock).context("SO_TIMESTAMPNS")?;
    Ok(sock)
}

pub fn run(cfg: &Config, sock: &UdpSocket) -> Result<Stats> {
    if cfg.fanout == 0 || cfg.batch == 0 || cfg.batch > 1024 {
        bail!("fanout must be ≥ 1 and batch in 1..=1024");
    }
    let mut senders: Vec<Sender> = (0..cfg.senders)
        .map(|i| Sender {
            key: Key::derive(cfg.profile, cfg.seed, "sender", i),
            seq: SeqState::default(),
        })
        .collect();
    // A small table: SSRC → sender. (An SFU looks up the 5-tuple, then the SSRC; same order of cost.)
    let by_ssrc: HashMap<u32, usize> = (0..cfg.senders)
        .map(|i| (sender_ssrc(i), i as usize))
        .collect();
    // Boxed slice: never reallocated, so the sockaddr pointers handed to sendmmsg stay valid.
    let mut receivers: Box<[Receiver]> = (0..cfg.fanout)
        .map(|i| Receiver {
            key: Key::derive(cfg.profile, cfg.seed, "receiver", i),
            addr: None,
        })
        .collect();

    let mut inb = Batch::new(cfg.batch);
    let mut outb = Batch::new(cfg.batch * cfg.fanout as usize);
    let mut st = Stats::default();
    // Per forwarded packet, µs from its arrival to the return of the sendmmsg; cleared at each
    // query (room for a minute of 30 000 packets/s before it grows).
    let mut delays: Vec<u32> = Vec::with_capacity(1 << 21);
    let mut arrivals: Vec<std::time::Duration> = Vec::with_capacity(cfg.batch);
    loop {
        let n = match inb.recv(sock, libc::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("recvmmsg"),
        };
        let mut out = 0;
        for i in 0..n {
            let arrival = inb.arrival(i);
            let pkt = inb.received(i);
            if pkt.starts_with(b"HN") {
                let src = inb.source(i);
                if is_query(inb.received(i)) {
                    st.delay = Delays::of(&mut delays);
                    delays.clear();
                }
                if control(sock, inb.received(i), src, &mut receivers, &mut st)? {
                    return Ok(st);
                }
                continue;
            }
            let Some(h) = srtp::parse_rtp(pkt) else {
                st.unknown += 1;
                continue;
            };
            let Some(&s) = by_ssrc.get(&h.ssrc) else {
                st.unknown += 1;
                continue;
            };
            let sender = &mut senders[s];
            let roc = sender.seq.estimate(h.seq);
            let Some(plain_len) = sender.key.unprotect(pkt, &h, roc) else {
                st.auth_failed += 1;
                continue;
            };
            sender.seq.update(h.seq, roc);
            st.forwarded_in += 1;
            arrivals.extend(arrival);
            let plain = &pkt[..h.len + plain_len];
            for r in receivers.iter() {
                let Some(addr) = &r.addr else { continue };
                let slot = outb.slot(out);
                slot[..plain.len()].copy_from_slice(plain);
                let len = r.key.protect(slot, &h, plain_len, roc);
                outb.set_outgoing(out, len, addr);
                out += 1;
            }
        }
        if out > 0 {
            st.forwarded_out += outb.send(sock, out) as u64;
        }
        let now = net::realtime();
        delays.extend(
            arrivals
                .drain(..)
                .map(|a| now.saturating_sub(a).as_micros().min(u32::MAX as u128) as u32),
        );
    }
}

fn is_query(msg: &[u8]) -> bool {
    matches!(msg.get(..4), Some(b"HNST") | Some(b"HNBY"))
}

/// Handles one control datagram; true means stop.
fn control(
    sock: &UdpSocket,
    msg: &[u8],
    src: SocketAddrV4,
    receivers: &mut [Receiver],
    st: &mut Stats,
) -> Result<bool> {
    match msg.get(..4) {
        Some(b"HNRX") if msg.len() == 8 => {
            let idx = u32::from_be_bytes(msg[4..8].try_into().unwrap()) as usize;
            if let Some(r) = receivers.get_mut(idx) {
                r.addr = Some(net::to_sockaddr(src));
                let mut ok = [0u8; 8];
                ok[..4].copy_from_slice(b"HNOK");
                ok[4..].copy_from_slice(&msg[4..8]);
                let _ = sock.send_to(&ok, src);
            }
        }
        Some(b"HNST") | Some(b"HNBY") if msg.len() == 8 => {
            st.cpu_us = net::cpu_time_us();
            let bye = &msg[..4] == b"HNBY";
            let magic = if bye { b"HNBY" } else { b"HNSS" };
            let _ = sock.send_to(&st.encode(magic, &msg[4..8]), src);
            return Ok(bye);
        }
        _ => st.unknown += 1,
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_figures() {
        // (delays in µs, count, over 1 ms, p50, p99, p99.9)
        let cases: [(&[u32], [u64; 5]); 4] = [
            (&[], [0, 0, 0, 0, 0]),
            (&[7], [1, 0, 7, 7, 7]),
            (&[1000, 1001], [2, 1, 1000, 1001, 1001]),
            (&[5, 1, 4, 2, 3], [5, 0, 3, 5, 5]),
        ];
        for (us, [count, over_1ms, p50_us, p99_us, p999_us]) in cases {
            let want = Delays {
                count,
                over_1ms,
                p50_us,
                p99_us,
                p999_us,
            };
            assert_eq!(Delays::of(&mut us.to_vec()), want, "{us:?}");
        }
        // 1000 values 1..=1000: the 500th, 990th and 999th.
        let mut many: Vec<u32> = (1..=1000).rev().collect();
        let d = Delays::of(&mut many);
        assert_eq!((d.p50_us, d.p99_us, d.p999_us), (500, 990, 999));
    }

    #[test]
    fn stats_round_trip() {
        let s = Stats {
            forwarded_in: 1,
            forwarded_out: 2,
            auth_failed: 3,
            unknown: 4,
            cpu_us: 5,
            delay: Delays {
                count: 6,
                over_1ms: 7,
                p50_us: 8,
                p99_us: 9,
                p999_us: 10,
            },
        };
        let b = s.encode(b"HNSS", &42u32.to_be_bytes());
        assert_eq!(Stats::decode(&b, b"HNSS", 42), Some(s));
        assert_eq!(Stats::decode(&b, b"HNSS", 41), None);
    }
}
