//! Simulcast layer choice per receiver, in simulated time.

mod common;

use std::time::Duration;

use common::{Link, Sim};
use hnth_media::testing::{RemoteTrack, SiteConfig};
use hnth_media::{Config, Estimation, PeerId};
use str0m::media::MediaKind;

fn video(sim: &Sim, rx: PeerId, tx: PeerId) -> &RemoteTrack {
    sim.site(rx)
        .track(&format!("stream-{tx}"), MediaKind::Video)
        .unwrap_or_else(|| panic!("site {rx} has no video from {tx}"))
}

fn describe(t: &RemoteTrack) -> String {
    format!(
        "{} frames, layers {:?}, keyframes {}, duplicates {}, repeats at switches {}, switches {:?}",
        t.frames, t.layers, t.keyframes, t.duplicates, t.switch_repeats, t.switches
    )
}

/// Every frame is forwarded on exactly one layer, and every switch happens on a keyframe
/// (unless that keyframe was lost on the way).
fn assert_one_layer_at_a_time(t: &RemoteTrack) {
    assert_eq!(t.duplicates, 0, "{}", describe(t));
    assert!(
        t.switch_repeats <= t.switches.len() as u64,
        "{}",
        describe(t)
    );
    assert!(
        t.switches.iter().all(|s| s.on_keyframe || !s.contiguous),
        "{}",
        describe(t)
    );
}

fn config(estimation: Estimation) -> Config {
    Config {
        estimation,
        ..Config::default()
    }
}

#[test]
fn ample_bandwidth_settles_on_the_top_layer_loss_based() {
    ample_bandwidth_settles_on_the_top_layer(Estimation::Loss);
}

#[test]
fn ample_bandwidth_settles_on_the_top_layer_delay_based() {
    ample_bandwidth_settles_on_the_top_layer(Estimation::Delay);
}

fn ample_bandwidth_settles_on_the_top_layer(estimation: Estimation) {
    let mut sim = Sim::new(config(estimation));
    let ids = [1, 2, 3];
    for id in ids {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    sim.run_for(Duration::from_secs(6));
    for rx in ids {
        for tx in ids.iter().copied().filter(|t| *t != rx) {
            let t = video(&sim, rx, tx);
            assert_one_layer_at_a_time(t);
            assert_eq!(t.layer, Some(2), "{}", describe(t));
            // Layers appear one after the other at the start; once the top layer has been
            // reached there is no reason to leave it.
            let first_top = t
                .switches
                .iter()
                .position(|s| s.to == 2)
                .expect("reached the top layer");
            assert_eq!(
                first_top + 1,
                t.switches.len(),
                "left the top layer without a reason: {}",
                describe(t)
            );
            assert!(t.frames > 150, "{}", describe(t));
        }
    }
}

#[test]
fn a_receiver_behind_a_slow_link_gets_the_low_layer_loss_based() {
    a_receiver_behind_a_slow_link_gets_the_low_layer(Estimation::Loss);
}

#[test]
fn a_receiver_behind_a_slow_link_gets_the_low_layer_delay_based() {
    a_receiver_behind_a_slow_link_gets_the_low_layer(Estimation::Delay);
}

fn a_receiver_behind_a_slow_link_gets_the_low_layer(estimation: Estimation) {
    let mut sim = Sim::new(config(estimation));
    // q/h/f at 75, 250 and 750 kbit/s: two of them fit a receiver's 2.5 Mbit/s start estimate.
    let site = |id: PeerId| SiteConfig::new(id, common::site_addr(id)).scale_video(0.5);
    for id in [1, 2, 3] {
        sim.add_site(id, 1, site(id)).expect("add");
    }
    // Site 3 receives through 350 kbit/s: about the low layer of two sites and their audio.
    sim.site_mut(3).downlink = Some(Link::new(350_000, Duration::from_millis(300)));
    sim.run_for(Duration::from_secs(20));
    let est = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            common::Event::Stats(s) => s
                .estimate_kbps
                .map(|e| (s.peer, e as u64, s.kbps_out as u64)),
            _ => None,
        })
        .collect::<Vec<_>>();
    for tx in [1, 2] {
        let fast = video(&sim, if tx == 1 { 2 } else { 1 }, tx);
        let slow = video(&sim, 3, tx);
        println!(
            "fast {}\nslow {}\nestimates {est:?}",
            describe(fast),
            describe(slow)
        );
        assert_one_layer_at_a_time(fast);
        assert_one_layer_at_a_time(slow);
        assert_eq!(fast.layer, Some(2), "{}", describe(fast));
        assert_eq!(slow.layer, Some(0), "{}", describe(slow));
    }
}

/// Site 1 shows site 2 large (720 pixels high) and sites 3 and 4 as thumbnails (180).
fn one_large_two_small(sim: &mut Sim, large: PeerId) {
    let heights: Vec<(String, u16)> = [2, 3, 4]
        .into_iter()
        .map(|id| (format!("stream-{id}"), if id == large { 720 } else { 180 }))
        .collect();
    let now = sim.now;
    sim.conf.set_view(now, 1, &heights).expect("set_view");
    sim.pump();
}

#[test]
fn a_thumbnail_gets_the_low_layer_and_the_large_picture_the_top_loss_based() {
    a_thumbnail_gets_the_low_layer_and_the_large_picture_the_top(Estimation::Loss);
}

#[test]
fn a_thumbnail_gets_the_low_layer_and_the_large_picture_the_top_delay_based() {
    a_thumbnail_gets_the_low_layer_and_the_large_picture_the_top(Estimation::Delay);
}

fn a_thumbnail_gets_the_low_layer_and_the_large_picture_the_top(estimation: Estimation) {
    let mut sim = Sim::new(config(estimation));
    let ids = [1, 2, 3, 4];
    for id in ids {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    one_large_two_small(&mut sim, 2);
    sim.run_for(Duration::from_secs(6));
    let layers = |sim: &Sim| [2, 3, 4].map(|tx| video(sim, 1, tx).layer);
    assert_eq!(layers(&sim), [Some(2), Some(0), Some(0)]);
    // Others who said nothing still get the top layer.
    assert_eq!(
        video(&sim, 2, 3).layer,
        Some(2),
        "{}",
        describe(video(&sim, 2, 3))
    );
    // The layout changes: site 3 is now the large picture.
    one_large_two_small(&mut sim, 3);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(layers(&sim), [Some(0), Some(2), Some(0)]);
    for tx in [2, 3, 4] {
        let t = video(&sim, 1, tx);
        assert_one_layer_at_a_time(t);
        assert!(t.frames > 200, "{}", describe(t));
    }
}

#[test]
fn the_large_picture_takes_the_share_the_thumbnails_leave() {
    // Site 1 has 450 kbit/s: the top layer of one site and the low layer of two (150 + 2 × 15
    // kbit/s, with ~100 of audio), not three equal shares (the middle layer, 50 kbit/s each).
    let mut sim = Sim::new(Config {
        initial_bitrate_bps: 450_000,
        ..config(Estimation::Loss)
    });
    for id in [1, 2, 3, 4] {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    one_large_two_small(&mut sim, 2);
    sim.run_for(Duration::from_secs(8));
    let est: Vec<_> = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            common::Event::Stats(s) if s.peer == 1 => {
                s.estimate_kbps.map(|e| (e as u64, s.kbps_out as u64))
            }
            _ => None,
        })
        .collect();
    println!("site 1 estimate, sent kbit/s: {est:?}");
    assert!(est.iter().all(|(e, _)| *e <= 450), "{est:?}");
    for (tx, want) in [(2, 2), (3, 0), (4, 0)] {
        let t = video(&sim, 1, tx);
        assert_eq!(t.layer, Some(want), "{}", describe(t));
    }
}

#[test]
fn a_keyframe_request_left_unanswered_is_asked_again() {
    // The sender makes keyframes only when asked (as a browser does) and ignores the first
    // requests: a receiver that joins later must still get its picture.
    let mut sim = Sim::new(Config::default());
    let mut sender = Sim::light_site(1);
    sender.keyframe_interval = Duration::from_secs(3600);
    sim.add_site(1, 1, sender).expect("add the sender");
    sim.add_site(2, 1, Sim::light_site(2))
        .expect("add the first receiver");
    sim.run_for(Duration::from_secs(2));
    assert!(
        video(&sim, 2, 1).frames > 0,
        "{}",
        describe(video(&sim, 2, 1))
    );
    // For the next 3 s the sender ignores every request: the late receiver's first ones.
    let asked = sim.site(1).sent().keyframe_requests;
    let deaf = sim.now + Duration::from_secs(3);
    sim.site_mut(1)
        .site
        .config_mut()
        .ignore_keyframe_requests_until = Some(deaf);
    sim.add_site(3, 1, Sim::light_site(3))
        .expect("add the late receiver");
    let got = sim.run_until(Duration::from_secs(10), |s| {
        s.site(3)
            .track("stream-1", MediaKind::Video)
            .is_some_and(|t| t.frames > 0)
    });
    let t = sim.site(3).track("stream-1", MediaKind::Video);
    assert!(
        got,
        "the late receiver never got a picture: {:?}",
        t.map(describe)
    );
    assert!(
        sim.site(1).sent().keyframe_requests > asked + 1,
        "asked {} times",
        sim.site(1).sent().keyframe_requests - asked
    );
}
