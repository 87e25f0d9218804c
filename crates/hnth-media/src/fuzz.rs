//! Hostile input for the media core's own parsers: the demultiplexer's STUN reading, the VP8
//! descriptor and keyframe header, and the per-receiver rewriting fed with whatever a peer
//! sends. Each target runs [`fuzz_cases`] inputs (`HNTH_FUZZ_CASES`); every test is named
//! `fuzz_*`. The whole conference is fuzzed in `tests/fuzz.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use str0m::format::PayloadParams;
use str0m::media::Mid;
use str0m::rtp::Vp8Descriptor;
use str0m::Rtc;

use crate::demux::stun_local_ufrag;
use crate::rewrite::{Packet, Rewrite};
use crate::testing::{fuzz_cases, stun_request};
use crate::vp8;

/// Run `test` on `fuzz_cases(default)` inputs of `strategy`; a failure panics with the smallest
/// input found.
fn check<S: Strategy>(
    default: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        failure_persistence: None,
        ..Config::with_cases(fuzz_cases(default))
    };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

/// `part` lies inside `whole` (the demultiplexer returns a slice of the datagram).
fn within(part: &str, whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

#[test]
fn fuzz_stun_local_ufrag_arbitrary() {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..1500),
        // The magic cookie in place, the rest anything.
        (prop::collection::vec(any::<u8>(), 20..200)).prop_map(|mut b| {
            b[0] &= 0x3f;
            b[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            b
        }),
    ];
    check(4096, bytes, |buf| {
        if let Some(u) = stun_local_ufrag(&buf) {
            prop_assert!(within(u, &buf[20..]) && !u.contains(':'), "{u:?}");
        }
        Ok(())
    });
}

/// An attribute of a binding request: USERNAME (valid, not UTF-8, without a colon) or another.
fn attribute() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let username = prop_oneof![
        "[A-Za-z0-9+/]{0,10}:[A-Za-z0-9+/]{0,10}".prop_map(String::into_bytes),
        "[A-Za-z0-9+/:]{0,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..20),
    ];
    let other = (
        prop_oneof![
            Just(0x0008u16), // MESSAGE-INTEGRITY
            Just(0x8028),    // FINGERPRINT
            Just(0x0025),    // USE-CANDIDATE
            Just(0x8022),    // SOFTWARE
            any::<u16>(),
        ],
        prop::collection::vec(any::<u8>(), 0..40),
    );
    prop_oneof![
        2 => username.prop_map(|v| (0x0006u16, v)),
        3 => other,
    ]
}

/// How a STUN-shaped datagram lies, if it does.
#[derive(Debug, Clone)]
enum Lie {
    None,
    /// The header's message length.
    MessageLength(u16),
    /// One attribute's length (the attribute by index, the length).
    AttributeLength(prop::sample::Index, u16),
    /// The datagram cut short.
    Truncated(prop::sample::Index),
}

#[test]
fn fuzz_stun_local_ufrag_stun_shaped() {
    let lie = prop_oneof![
        2 => Just(Lie::None),
        1 => any::<u16>().prop_map(Lie::MessageLength),
        1 => (any::<prop::sample::Index>(), prop_oneof![0u16..64, any::<u16>()])
            .prop_map(|(i, n)| Lie::AttributeLength(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Lie::Truncated),
    ];
    let strategy = (prop::collection::vec(attribute(), 0..6), lie);
    check(4096, strategy, |(attrs, lie)| {
        let refs: Vec<(u16, &[u8])> = attrs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let mut msg = stun_request(&refs, None);
        match &lie {
            Lie::None => {}
            Lie::MessageLength(n) => msg[2..4].copy_from_slice(&n.to_be_bytes()),
            Lie::AttributeLength(i, n) if !attrs.is_empty() => {
                // Where the attribute's header sits.
                let k = i.index(attrs.len());
                let at = 20
                    + attrs[..k]
                        .iter()
                        .map(|(_, v)| 4 + v.len().div_ceil(4) * 4)
                        .sum::<usize>();
                msg[at + 2..at + 4].copy_from_slice(&n.to_be_bytes());
            }
            Lie::AttributeLength(..) => {}
            Lie::Truncated(i) => msg.truncate(i.index(msg.len() + 1)),
        }
        let got = stun_local_ufrag(&msg);
        if let Some(u) = got {
            prop_assert!(within(u, &msg[20..]) && !u.contains(':'), "{u:?}");
        }
        if matches!(lie, Lie::None) {
            // An honest message: the local part of the first USERNAME, if it is text.
            let want = attrs.iter().find(|(t, _)| *t == 0x0006).and_then(|(_, v)| {
                std::str::from_utf8(v)
                    .ok()
                    .map(|s| s.split(':').next().unwrap_or(""))
            });
            prop_assert_eq!(got, want);
        }
        Ok(())
    });
}

/// A VP8 payload: anything, or a descriptor of random shape (RFC 7741 §4.2) with a random
/// keyframe header (RFC 6386 §9.1) behind it, possibly cut short.
fn vp8_payload() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 3]>(),
        any::<bool>(),
        any::<[u8; 7]>(),
        prop::collection::vec(any::<u8>(), 0..16),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(first, ext, ids, key, header, rest, cut)| {
            let mut p = vec![first | 0x80, ext];
            p.extend(ids);
            let tag = if key { header[0] & !1 } else { header[0] };
            p.extend([tag, header[1], header[2], 0x9d, 0x01, 0x2a]);
            p.extend(&header[3..]);
            p.extend(rest);
            let n = cut.index(p.len() + 1);
            p.truncate(n.max(p.len() / 2));
            p
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..40), shaped]
}

#[test]
fn fuzz_vp8_payloads() {
    check(
        8192,
        (vp8_payload(), any::<u16>(), any::<u8>()),
        |(p, id, tl0)| {
            let n = vp8::descriptor_len(&p);
            if let Some(n) = n {
                prop_assert!((1..=6).contains(&n) && n < p.len());
            }
            if let Some((w, h)) = vp8::keyframe_size(&p) {
                prop_assert!(p.len() >= 10 && p[0] & 1 == 0 && w <= 0x3fff && h <= 0x3fff);
            }
            // As `on_rtp` reads a packet.
            if let Ok(d) = Vp8Descriptor::parse(&p) {
                if d.starts_keyframe(&p) {
                    let _ = n.and_then(|n| vp8::keyframe_size(p.get(n..)?));
                }
                let mut patch = d.patch();
                if d.picture_id().is_some() {
                    patch = patch.picture_id(id & 0x7fff);
                }
                if d.tl0_pic_idx().is_some() {
                    patch = patch.tl0_pic_idx(tl0);
                }
                let _ = patch.build();
            }
            Ok(())
        },
    );
}

/// One thing a forwarded stream meets: a packet written, or a layer switch on it.
#[derive(Debug, Clone)]
struct Step {
    /// Time since the previous step, in milliseconds.
    wait_ms: u64,
    rebase: bool,
    video: bool,
    /// Extended sequence number: str0m's, at most 48 bits (a rollover counter of 32).
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
    audio_level: Option<i8>,
}

fn rewrite_step() -> impl Strategy<Value = Step> {
    let wait = prop_oneof![
        8 => 0u64..100,
        1 => 0u64..100_000_000, // a stream silent for up to a day
    ];
    let seq = prop_oneof![
        4 => 0u64..200,
        2 => 65_400u64..65_700,
        1 => 0u64..(1 << 48),
    ];
    (
        wait,
        prop::bool::weighted(0.2),
        any::<bool>(),
        seq,
        any::<u32>(),
        any::<bool>(),
        vp8_payload(),
        prop::option::of(any::<i8>()),
    )
        .prop_map(
            |(wait_ms, rebase, video, seq, ts, marker, payload, audio_level)| Step {
                wait_ms,
                rebase,
                video,
                seq,
                ts,
                marker,
                payload,
                audio_level,
            },
        )
}

#[test]
fn fuzz_rewrite_sequences() {
    let start = Instant::now();
    let params: PayloadParams = Rtc::builder().build(start).codec_config().params()[0];
    let strategy = prop::collection::vec(rewrite_step(), 1..30);
    check(1024, strategy, |steps| {
        let mut r = Rewrite::default();
        let mut now = start;
        for s in steps {
            now += Duration::from_millis(s.wait_ms);
            let payload: Arc<[u8]> = Arc::from(s.payload);
            let vp8 = s
                .video
                .then(|| Vp8Descriptor::parse(&payload).ok())
                .flatten();
            let pkt = Packet {
                mid: Mid::from("0"),
                rid: None,
                video: s.video,
                pt: 96.into(),
                params,
                seq: s.seq,
                ts: s.ts,
                marker: s.marker,
                arrival: now,
                keyframe: vp8.as_ref().is_some_and(|d| d.starts_keyframe(&payload)),
                payload,
                vp8,
                audio_level: s.audio_level,
                voice_activity: None,
            };
            if s.rebase || r.last.is_none() {
                r.rebase(now, &pkt);
            }
            let last = r.last;
            let written = r.write(now, 96.into(), &pkt).is_some();
            prop_assert_eq!(written, pkt.seq >= r.first_seq);
            // The receiver's numbering never goes back.
            if let (Some(before), Some(after)) = (last, r.last) {
                prop_assert!(after.0 >= before.0);
            }
            if let Some(id) = r.last_picture_id {
                prop_assert!(id <= 0x7fff);
            }
        }
        Ok(())
    });
}
