//! Garbage on the wire and in signaling: refused, no panic, and the other peers keep flowing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{assert_still_flowing, server_ufrag, three_sites, Rng, Sim};
use hnth_media::testing::stun_request;
use hnth_media::MediaError;

fn stun_binding(username: &str) -> Vec<u8> {
    // MESSAGE-INTEGRITY and FINGERPRINT are missing: it can never authenticate.
    stun_request(&[(0x0006, username.as_bytes())], None)
}

#[test]
fn random_datagrams_from_strangers_are_ignored() {
    let mut sim = three_sites();
    let mut rng = Rng::new(7);
    let stranger: SocketAddr = "192.0.2.9:4444".parse().expect("addr");
    for i in 0..2000usize {
        let len = (rng.next_u64() % 1400) as usize;
        let mut buf = rng.bytes(len);
        // Cover every demultiplexing range: STUN, DTLS, RTP/RTCP, and the rest.
        if let Some(b) = buf.first_mut() {
            *b = (i % 256) as u8;
        }
        sim.inject_to_server(stranger, &buf);
    }
    assert_eq!(sim.conf.peer_count(), 3);
    assert_still_flowing(&mut sim, &[1, 2, 3]);
}

#[test]
fn truncated_and_unauthenticated_stun_is_ignored() {
    let mut sim = three_sites();
    let ufrag = server_ufrag(&sim, 2);
    let stranger: SocketAddr = "192.0.2.10:4444".parse().expect("addr");
    let msg = stun_binding(&format!("{ufrag}:nobody"));
    // Every truncation of a binding request naming a live peer, and the whole unsigned one.
    for n in 0..=msg.len() {
        sim.inject_to_server(stranger, &msg[..n]);
    }
    // A header announcing more attributes than the datagram holds.
    let mut long = msg.clone();
    long[2..4].copy_from_slice(&1000u16.to_be_bytes());
    sim.inject_to_server(stranger, &long);
    assert_eq!(sim.conf.peer_count(), 3);
    assert_still_flowing(&mut sim, &[1, 2, 3]);
}

#[test]
fn garbage_from_a_peers_own_address_does_not_break_it() {
    let mut sim = three_sites();
    let mut rng = Rng::new(11);
    let addr = sim.site(2).config().local_addr;
    // Spoofed datagrams: the peer's str0m instance sees them (STUN, DTLS, RTP and RTCP
    // ranges of the first byte), and must neither fail nor drop the peer.
    for i in 0..1024usize {
        let len = 1 + (rng.next_u64() % 300) as usize;
        let mut buf = rng.bytes(len);
        buf[0] = (i % 256) as u8;
        sim.inject_to_server(addr, &buf);
    }
    assert_eq!(sim.conf.peer_count(), 3);
    assert_still_flowing(&mut sim, &[1, 2, 3]);
}

#[test]
fn sdp_that_is_not_sdp_is_refused() {
    let mut sim = three_sites();
    let now = sim.now;
    for bad in [
        "",
        "hello",
        "v=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nm=audio",
    ] {
        let r = sim.conf.add_peer(now, 50, 1, "stream-50", bad);
        assert!(
            matches!(r, Err(MediaError::SdpRejected(_))),
            "{bad:?}: {r:?}"
        );
    }
    assert_eq!(sim.conf.peer_count(), 3);
    assert_eq!(sim.conf.meeting_peers(1), &[1, 2, 3]);
    // An id in use is refused, whatever the SDP.
    let r = sim.conf.add_peer(now, 2, 1, "again", "v=0");
    assert_eq!(r, Err(MediaError::DuplicatePeer(2)));
    // Answers from unknown peers, or with nothing pending.
    assert_eq!(
        sim.conf.handle_answer(now, 99, 1, "v=0"),
        Err(MediaError::UnknownPeer(99))
    );
    assert!(matches!(
        sim.conf.handle_answer(now, 1, 1, "v=0"),
        Err(MediaError::BadState(_))
    ));
    assert_eq!(
        sim.conf.remove_peer(now, 99),
        Err(MediaError::UnknownPeer(99))
    );
    sim.pump();
    assert_still_flowing(&mut sim, &[1, 2, 3]);
}

#[test]
fn answers_with_the_wrong_seq_or_garbage_are_refused_and_the_right_one_still_works() {
    let mut sim = three_sites();
    // Site 4 joins; the offers to sites 1–3 are held back to be answered by hand.
    sim.hold_offers = true;
    sim.add_site(4, 1, Sim::light_site(4)).expect("add");
    assert!(sim.run_until(Duration::from_secs(2), |s| s
        .held_offers
        .iter()
        .any(|(p, _, _)| *p == 1)));
    let held = std::mem::take(&mut sim.held_offers);
    let (peer, seq, sdp) = held
        .iter()
        .find(|(p, _, _)| *p == 1)
        .cloned()
        .expect("an offer to site 1");
    let now = sim.now;
    let answer = sim
        .site_mut(peer)
        .site
        .handle_offer(now, &sdp)
        .expect("answer");
    for wrong in [seq + 1, seq.wrapping_sub(1), 0, u64::MAX] {
        let r = sim.conf.handle_answer(now, peer, wrong, &answer);
        assert!(
            matches!(r, Err(MediaError::BadState(_))),
            "seq {wrong}: {r:?}"
        );
    }
    // The right seq with text that is not SDP: refused, the offer stays pending.
    let r = sim.conf.handle_answer(now, peer, seq, "not an answer");
    assert!(matches!(r, Err(MediaError::SdpRejected(_))), "{r:?}");
    sim.conf
        .handle_answer(now, peer, seq, &answer)
        .expect("the right answer after the wrong ones");
    // An answer cannot be used twice.
    assert!(matches!(
        sim.conf.handle_answer(now, peer, seq, &answer),
        Err(MediaError::BadState(_))
    ));
    sim.hold_offers = false;
    for (p, s, sdp) in held.into_iter().filter(|(p, _, _)| *p != 1) {
        sim.answer_offer(p, s, &sdp);
    }
    sim.pump();
    assert!(
        sim.run_until(Duration::from_secs(5), |s| [1, 2, 3, 4].iter().all(|rx| s
            .site(*rx)
            .active_tracks()
            .count()
            == 6
            && s.site(*rx).active_tracks().all(|t| t.frames > 5)))
    );
    assert_still_flowing(&mut sim, &[1, 2, 3, 4]);
}
