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
}

impl Stats {
    /// magic, the query's nonce, five counters
    pub const LEN: usize = 4 + 4 + 5 * 8;

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
    loop {
        let n = match inb.recv(sock, libc::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("recvmmsg"),
        };
        let mut out = 0;
        for i in 0..n {
            let pkt = inb.received(i);
            if pkt.starts_with(b"HN") {
                let src = inb.source(i);
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
    }
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
