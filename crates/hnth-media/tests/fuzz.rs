//! Hostile input for the whole conference: datagrams of every shape from strangers and from
//! the peers' own addresses, a connected site that sends whatever it likes through SRTP, and
//! SDP offers and answers mutated or made up. Never a panic; the well-behaved sites keep
//! receiving each other. Each target runs `HNTH_FUZZ_CASES` inputs
//! ([`hnth_media::testing::fuzz_cases`]); `scripts/fuzz-long.sh` runs them long. The parsers
//! alone are fuzzed in `src/fuzz.rs`.

mod common;

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{frames, server_ufrag, site_addr, Sim};
use hnth_media::testing::{fuzz_cases, stun_request, SiteConfig, SyntheticSite};
use hnth_media::{Conference, Config, MediaError, PeerId, Receives};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

/// Run `test` on `fuzz_cases(default)` inputs of `strategy`; a failure panics with the smallest
/// input found. The conference targets share one conference across inputs (setting one up per
/// input would cost more than the input): the input shown is the last one, not a minimal one.
fn check<S: Strategy>(
    default: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = ProptestConfig {
        failure_persistence: None,
        max_shrink_iters: 64,
        ..ProptestConfig::with_cases(fuzz_cases(default))
    };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

/// Where a datagram comes from.
#[derive(Debug, Clone)]
enum From {
    /// An address nobody signalled (IPv4 or IPv6).
    Stranger(u16, bool),
    /// A site's own address (spoofed, or the site's stack gone mad).
    Site(Index),
    /// A site's IP address on another port.
    SitePort(Index, u16),
}

/// What a datagram holds.
#[derive(Debug, Clone)]
enum Body {
    Any(Vec<u8>),
    /// The first byte in one of the demultiplexing ranges (RFC 7983): STUN (0..=3), DTLS
    /// (20..=63), RTP and RTCP (128..=191), with an RTCP packet type now and then.
    Ranged(u8, Option<u8>, Vec<u8>),
    /// A binding request naming a live peer's ufrag (or not), with random attributes.
    Stun(bool, Index, Vec<(u16, Vec<u8>)>, Option<u16>),
    /// A datagram a site really sent, changed: a byte replaced, cut short, or as it was.
    Replayed(Index, Option<(Index, u8)>, Option<Index>),
}

fn from() -> impl Strategy<Value = From> {
    prop_oneof![
        2 => (any::<u16>(), any::<bool>()).prop_map(|(n, v6)| From::Stranger(n, v6)),
        2 => any::<Index>().prop_map(From::Site),
        1 => (any::<Index>(), any::<u16>()).prop_map(|(i, p)| From::SitePort(i, p)),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let bytes = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..1500),
    ];
    let first = prop_oneof![0u8..=3, 20u8..=63, 128u8..=191, any::<u8>()];
    let rtcp = prop::option::of(prop_oneof![192u8..=210, any::<u8>()]);
    let attrs = prop::collection::vec(
        (
            prop_oneof![
                Just(0x0006u16),
                Just(0x0008),
                Just(0x8028),
                Just(0x0025),
                any::<u16>()
            ],
            prop::collection::vec(any::<u8>(), 0..40),
        ),
        0..5,
    );
    prop_oneof![
        2 => bytes.clone().prop_map(Body::Any),
        4 => (first, rtcp, bytes).prop_map(|(f, r, b)| Body::Ranged(f, r, b)),
        2 => (any::<bool>(), any::<Index>(), attrs, prop::option::of(any::<u16>()))
            .prop_map(|(real, i, a, len)| Body::Stun(real, i, a, len)),
        3 => (
            any::<Index>(),
            prop::option::of((any::<Index>(), any::<u8>())),
            prop::option::of(any::<Index>()),
        )
            .prop_map(|(i, flip, cut)| Body::Replayed(i, flip, cut)),
    ]
}

/// The conference with three well-behaved sites, and what it takes to speak to it.
struct World {
    sim: Sim,
    ids: Vec<PeerId>,
    ufrags: Vec<String>,
    /// Datagrams the sites sent while they connected.
    tapped: Vec<(SocketAddr, Vec<u8>)>,
    cases: u64,
}

impl World {
    fn new(ids: &[PeerId]) -> World {
        let mut sim = Sim::new(Config::default());
        sim.tap = Some(Vec::new());
        for id in ids {
            sim.add_site(*id, 1, Sim::light_site(*id)).expect("add");
        }
        sim.run_for(Duration::from_secs(2));
        assert!(ids.iter().all(|id| sim.connected(*id)));
        let tapped = sim.tap.take().unwrap_or_default();
        let ufrags = ids.iter().map(|id| server_ufrag(&sim, *id)).collect();
        World {
            sim,
            ids: ids.to_vec(),
            ufrags,
            tapped,
            cases: 0,
        }
    }

    fn source(&self, from: &From) -> SocketAddr {
        match from {
            From::Stranger(n, false) => {
                SocketAddr::from(([192, 0, 2, *n as u8], n.wrapping_add(1024)))
            }
            From::Stranger(n, true) => SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, *n)),
                *n,
            ),
            From::Site(i) => site_addr(*i.get(&self.ids)),
            From::SitePort(i, port) => {
                let a = site_addr(*i.get(&self.ids));
                SocketAddr::new(a.ip(), *port)
            }
        }
    }

    fn bytes(&self, body: Body) -> Vec<u8> {
        match body {
            Body::Any(b) => b,
            Body::Ranged(first, rtcp, mut b) => {
                b.resize(b.len().max(2), 0);
                b[0] = first;
                if let Some(pt) = rtcp {
                    b[1] = pt;
                }
                b
            }
            Body::Stun(real, i, attrs, len) => {
                let name = if real {
                    format!("{}:site", i.get(&self.ufrags))
                } else {
                    "nobody:site".to_string()
                };
                let mut all: Vec<(u16, &[u8])> = vec![(0x0006, name.as_bytes())];
                all.extend(attrs.iter().map(|(t, v)| (*t, v.as_slice())));
                stun_request(&all, len)
            }
            Body::Replayed(i, flip, cut) => {
                let mut b = i.get(&self.tapped).1.clone();
                if let (Some((at, byte)), false) = (flip, b.is_empty()) {
                    let at = at.index(b.len());
                    b[at] = byte;
                }
                if let Some(cut) = cut {
                    b.truncate(cut.index(b.len() + 1));
                }
                b
            }
        }
    }

    /// The well-behaved sites still have the media of each other, every so many inputs.
    fn every(&mut self, n: u64) {
        self.cases += 1;
        if self.cases.is_multiple_of(n) {
            self.assert_flowing();
        }
    }

    /// Within five seconds every well-behaved site receives a second's worth of frames (50) from
    /// every other: a glitch may pass (a replayed check moving a path, a burst of garbage), a
    /// cut may not.
    fn assert_flowing(&mut self) {
        let ids = self.ids.clone();
        let pairs: Vec<(PeerId, PeerId)> = ids
            .iter()
            .flat_map(|a| ids.iter().filter(move |b| *b != a).map(move |b| (*a, *b)))
            .collect();
        let before: Vec<u64> = pairs
            .iter()
            .map(|(r, t)| frames(&self.sim, *r, *t))
            .collect();
        let gained = |sim: &Sim| -> Vec<u64> {
            pairs
                .iter()
                .zip(&before)
                .map(|((r, t), b)| frames(sim, *r, *t) - b)
                .collect()
        };
        let ok = self.sim.run_until(Duration::from_secs(5), |sim| {
            gained(sim).iter().all(|g| *g >= 50)
        });
        assert!(
            ok,
            "after {} inputs, frames in 5 s for (receiver, sender) {pairs:?}: {:?}",
            self.cases,
            gained(&self.sim)
        );
        assert_eq!(self.sim.conf.peer_count(), self.sim.sites.len());
    }
}

#[test]
fn fuzz_conference_datagrams() {
    let world = RefCell::new(World::new(&[1, 2, 3]));
    let strategy = prop::collection::vec((from(), body()), 1..6);
    check(512, strategy, |datagrams| {
        let mut w = world.borrow_mut();
        for (from, body) in datagrams {
            let mut source = w.source(&from);
            // A site's own binding request, replayed unchanged from another address, is valid
            // ICE: the server's ICE-lite agent moves the site's path there (as it must when a
            // NAT rebinds), and the site is cut off until its next check moves it back. Such a
            // replay is sent from the site's own address: a duplicate.
            if let Body::Replayed(i, None, None) = &body {
                let (original, bytes) = i.get(&w.tapped);
                if bytes.first().is_some_and(|b| *b < 4) {
                    source = *original;
                }
            }
            let bytes = w.bytes(body);
            w.sim.inject_to_server(source, &bytes);
        }
        w.sim.tick();
        prop_assert_eq!(w.sim.conf.peer_count(), 3, "a site was dropped");
        w.every(2048);
        Ok(())
    });
    world.into_inner().assert_flowing();
}

/// What a connected, authenticated site may do to the server, besides sending garbage.
#[derive(Debug, Clone)]
enum Act {
    /// A frame of anything on its audio (with this level) or a video layer.
    Frame(bool, usize, Vec<u8>, i8),
    /// The hub (the meeting's rules) changes the site's floor, view or what it receives.
    Floor(PeerId, bool),
    View(PeerId, Vec<(String, u16)>),
    Receives(PeerId, Receives),
    /// Time passes.
    Wait(u8),
}

fn act() -> impl Strategy<Value = Act> {
    let peer = prop_oneof![4 => 1u64..=4, 1 => any::<u64>()];
    let frame = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(any::<u8>(), 0..3000),
        // A keyframe header (RFC 6386 §9.1) of any size.
        (any::<[u8; 7]>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(h, rest)| {
            let mut f = vec![h[0] & !1, h[1], h[2], 0x9d, 0x01, 0x2a];
            f.extend(&h[3..]);
            f.extend(rest);
            f
        }),
    ];
    let stream = prop_oneof![(1u64..=4).prop_map(|i| format!("stream-{i}")), ".{0,8}"];
    let receives = prop_oneof![
        (0usize..10).prop_map(Receives::FirstJoined),
        prop::collection::vec((peer.clone(), any::<u16>()), 0..6).prop_map(Receives::Frame),
    ];
    prop_oneof![
        8 => (any::<bool>(), 0usize..4, frame, any::<i8>())
            .prop_map(|(v, l, f, level)| Act::Frame(v, l, f, level)),
        1 => (peer.clone(), any::<bool>()).prop_map(|(p, on)| Act::Floor(p, on)),
        1 => (peer.clone(), prop::collection::vec((stream, any::<u16>()), 0..5))
            .prop_map(|(p, v)| Act::View(p, v)),
        1 => (peer, receives).prop_map(|(p, r)| Act::Receives(p, r)),
        2 => any::<u8>().prop_map(Act::Wait),
    ]
}

/// Sites 1–3 well-behaved, site 4 hostile (it receives nothing of interest: not checked).
fn hostile_world() -> World {
    let mut w = World::new(&[1, 2, 3, 4]);
    w.ids.retain(|id| *id != 4);
    w
}

#[test]
fn fuzz_conference_hostile_site() {
    let world = RefCell::new(hostile_world());
    let strategy = prop::collection::vec(act(), 1..8);
    check(512, strategy, |acts| {
        let mut w = world.borrow_mut();
        let now = w.sim.now;
        for a in acts {
            match a {
                Act::Frame(video, layer, frame, level) => {
                    w.sim
                        .site_mut(4)
                        .site
                        .write_raw(now, video, layer, frame, level);
                }
                // Peers 1–3 keep their floor open and receive everybody: they are checked.
                Act::Floor(p, open) if !(1..=3).contains(&p) => {
                    let _ = w.sim.conf.set_floor(p, open);
                }
                Act::View(p, view) if !(1..=3).contains(&p) => {
                    let _ = w.sim.conf.set_view(now, p, &view);
                }
                Act::Receives(p, r) if !(1..=3).contains(&p) => {
                    let _ = w.sim.conf.set_receives(now, p, r);
                }
                Act::Floor(..) | Act::View(..) | Act::Receives(..) => {}
                Act::Wait(ms) => {
                    for _ in 0..ms / 5 {
                        w.sim.tick();
                    }
                }
            }
        }
        w.sim.pump();
        w.sim.tick();
        prop_assert_eq!(w.sim.conf.peer_count(), 4, "a site was dropped");
        w.every(2048);
        if w.cases.is_multiple_of(2048) {
            // Each change of what site 4 receives leaves a stopped m-line in its session (str0m
            // does not reuse them), so its renegotiations grow: start a fresh conference.
            *w = hostile_world();
        }
        Ok(())
    });
    let mut w = world.into_inner();
    w.assert_flowing();
    assert!(w.sim.closed(4).is_none(), "{:?}", w.sim.closed(4));
}

/// Changes to an SDP, line by line or byte by byte.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(Index),
    DuplicateLine(Index, Index),
    SwapLines(Index, Index),
    /// A line's value (after `=` or `:`) replaced.
    ReplaceValue(Index, String),
    /// A number in a line replaced.
    ReplaceNumber(Index, u64),
    Byte(Index, u8),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let value = prop_oneof![
        Just(String::new()),
        "[0-9a-zA-Z :/=.-]{0,20}",
        any::<String>(),
        Just("4294967296".to_string()),
        Just("-1".to_string()),
    ];
    let number = prop_oneof![
        Just(0u64),
        Just(65_535),
        Just(65_536),
        Just(u32::MAX as u64),
        Just(u64::MAX),
        any::<u64>()
    ];
    prop_oneof![
        3 => any::<Index>().prop_map(Edit::DeleteLine),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::DuplicateLine(a, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        3 => (any::<Index>(), value).prop_map(|(i, v)| Edit::ReplaceValue(i, v)),
        3 => (any::<Index>(), number).prop_map(|(i, n)| Edit::ReplaceNumber(i, n)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply_edits(sdp: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = sdp.split("\r\n").map(str::to_string).collect();
    let mut bytes_edits = Vec::new();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        match e {
            Edit::DeleteLine(i) => {
                lines.remove(i.index(lines.len()));
            }
            Edit::DuplicateLine(i, at) => {
                let l = lines[i.index(lines.len())].clone();
                lines.insert(at.index(lines.len() + 1), l);
            }
            Edit::SwapLines(a, b) => {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
            Edit::ReplaceValue(i, v) => {
                let at = i.index(lines.len());
                let l = &mut lines[at];
                let cut = l.find([':', '=']).map_or(0, |p| p + 1);
                l.truncate(cut);
                l.push_str(v);
            }
            Edit::ReplaceNumber(i, n) => {
                let at = i.index(lines.len());
                let l = &mut lines[at];
                if let Some(start) = l.find(|c: char| c.is_ascii_digit()) {
                    let end = l[start..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(l.len(), |e| start + e);
                    l.replace_range(start..end, &n.to_string());
                }
            }
            Edit::Byte(..) | Edit::Truncate(_) => bytes_edits.push(e),
        }
    }
    let mut bytes = lines.join("\r\n").into_bytes();
    for e in bytes_edits {
        if bytes.is_empty() {
            break;
        }
        match e {
            Edit::Byte(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Edit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Offers of the shapes sites send: simulcast video and audio, one layer, audio only.
fn base_offers() -> Vec<String> {
    let now = Instant::now();
    let addr = |n: u8| SocketAddr::from((Ipv4Addr::new(10, 0, 0, n), 5000));
    let simulcast = SiteConfig::new(1, addr(1));
    let mut one_layer = SiteConfig::new(2, addr(2));
    one_layer.layers.truncate(1);
    let mut audio_only = SiteConfig::new(3, addr(3));
    audio_only.layers.clear();
    [simulcast, one_layer, audio_only]
        .into_iter()
        .map(|c| SyntheticSite::new(now, now, c).create_offer())
        .collect()
}

#[test]
fn fuzz_sdp_offers() {
    let offers = base_offers();
    let conf = RefCell::new(Conference::new(Config {
        candidates: vec![common::SERVER],
        ..Config::default()
    }));
    let next_id = RefCell::new(100u64);
    let sdp = prop_oneof![
        6 => (any::<Index>(), prop::collection::vec(edit(), 1..5))
            .prop_map(move |(i, edits)| apply_edits(i.get::<String>(&offers), &edits)),
        1 => any::<String>(),
        1 => "v=0\r\n(o=- 1 1 IN IP4 0.0.0.0\r\n)?(s=-\r\n)?(t=0 0\r\n)?(m=(audio|video) 9 UDP/TLS/RTP/SAVPF [0-9 ]{0,12}\r\n)?(a=[a-z-]{1,12}:.{0,20}\r\n){0,4}",
    ];
    check(512, sdp, |sdp| {
        let mut conf = conf.borrow_mut();
        let now = Instant::now();
        let id = {
            let mut n = next_id.borrow_mut();
            *n += 1;
            *n
        };
        match conf.add_peer(now, id, 1, "stream", &sdp) {
            Ok(()) => {
                conf.remove_peer(now, id).expect("just added");
            }
            Err(MediaError::SdpRejected(_)) => {}
            Err(e) => prop_assert!(false, "{e}"),
        }
        while conf.poll_output().is_some() {}
        prop_assert_eq!(conf.peer_count(), 0);
        Ok(())
    });
}

/// Two sites that joined meeting 1: an offer to site 2 (its `seq`) waits for its answer, and
/// the answer the site would give.
struct Pending {
    sim: Sim,
    seq: u64,
    answer: String,
}

impl Pending {
    fn new() -> Pending {
        let mut sim = Sim::new(Config::default());
        sim.hold_offers = true;
        for id in [1, 2] {
            sim.add_site(id, 1, Sim::light_site(id)).expect("add");
        }
        // Offers go out once the sites are connected.
        assert!(sim.run_until(Duration::from_secs(3), |s| s
            .held_offers
            .iter()
            .any(|(p, _, _)| *p == 2)));
        let (_, seq, offer) = sim
            .held_offers
            .iter()
            .rfind(|(p, _, _)| *p == 2)
            .cloned()
            .expect("an offer to site 2");
        let now = sim.now;
        let answer = sim
            .site_mut(2)
            .site
            .handle_offer(now, &offer)
            .expect("answer");
        Pending { sim, seq, answer }
    }
}

#[test]
fn fuzz_sdp_answers() {
    let world = RefCell::new(Pending::new());
    let strategy = (
        prop::collection::vec(edit(), 0..5),
        prop_oneof![8 => Just(0u64), 1 => any::<u64>()],
    );
    check(512, strategy, |(edits, seq_error)| {
        let mut w = world.borrow_mut();
        let sdp = apply_edits(&w.answer, &edits);
        let now = w.sim.now;
        let seq = w.seq.wrapping_add(seq_error);
        let r = w.sim.conf.handle_answer(now, 2, seq, &sdp);
        match &r {
            Ok(()) => prop_assert!(seq_error == 0),
            Err(MediaError::SdpRejected(_)) => {}
            Err(MediaError::BadState(_)) => prop_assert!(seq_error != 0),
            Err(e) => prop_assert!(false, "{e}"),
        }
        w.sim.pump();
        prop_assert_eq!(w.sim.conf.peer_count(), 2);
        let renewed = w
            .sim
            .held_offers
            .iter()
            .rfind(|(p, s, _)| *p == 2 && *s > w.seq)
            .is_some();
        if r.is_ok() || renewed {
            // Answered, or the offer was void and a new one is out: start again.
            *w = Pending::new();
        }
        Ok(())
    });
}
