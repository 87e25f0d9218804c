//! Per-receiver views: each peer receives at most `view_size` others, the meeting's first to
//! join; the later peers are forwarded to nobody and are asked to pause their video.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Event, Sim};
use hnth_media::{Config, PeerId};
use str0m::media::MediaKind;

/// The senders whose video and audio `rx` is receiving now (active tracks that carried frames
/// in the last second of simulated time).
fn receiving(sim: &Sim, rx: PeerId, kind: MediaKind) -> BTreeSet<u64> {
    let now = sim.now;
    sim.site(rx)
        .active_tracks()
        .filter(|t| t.kind == kind)
        .filter(|t| {
            t.last_frame_at
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        })
        .filter_map(|t| t.sender())
        .collect()
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

fn paused(sim: &Sim, id: PeerId) -> Option<bool> {
    sim.events.iter().rev().find_map(|(_, e)| match e {
        Event::SendVideo(p, on) if *p == id => Some(!on),
        _ => None,
    })
}

#[test]
fn every_receiver_gets_the_first_speakers_and_the_others_pause() {
    let mut sim = Sim::new(Config {
        view_size: 2,
        ..Config::default()
    });
    let ids: [PeerId; 5] = [1, 2, 3, 4, 5];
    for id in ids {
        sim.add_site(id, 7, Sim::light_site(id)).expect("add site");
        sim.run_for(Duration::from_millis(200));
    }
    assert!(sim.run_until(Duration::from_secs(10), |s| ids
        .iter()
        .all(|id| s.connected(*id))));
    sim.run_for(Duration::from_secs(3));

    // Speakers 1, 2, 3: each receives the two others; 4 and 5 receive 1 and 2.
    let expect: [(PeerId, &[u64]); 5] = [
        (1, &[2, 3]),
        (2, &[1, 3]),
        (3, &[1, 2]),
        (4, &[1, 2]),
        (5, &[1, 2]),
    ];
    for (rx, from) in expect {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            assert_eq!(receiving(&sim, rx, kind), set(from), "{kind:?} at {rx}");
        }
        assert_eq!(
            sim.site(rx).active_tracks().count(),
            2 * from.len(),
            "site {rx}: no track beyond its view is open"
        );
    }
    for id in [1, 2, 3] {
        // (The first one alone was paused until the second arrived: nobody watched it.)
        assert_ne!(paused(&sim, id), Some(true), "speaker {id} is not paused");
        assert!(!sim.site(id).video_paused());
    }
    for id in [4, 5] {
        assert_eq!(paused(&sim, id), Some(true), "{id} is seen by nobody");
        assert!(sim.site(id).video_paused());
    }

    // Speaker 2 leaves: 4 moves up into the speakers, resumes its video, and is seen.
    sim.remove_site(2).expect("remove");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(paused(&sim, 4), Some(false));
    assert!(!sim.site(4).video_paused());
    assert_eq!(paused(&sim, 5), Some(true));
    let expect: [(PeerId, &[u64]); 4] = [(1, &[3, 4]), (3, &[1, 4]), (4, &[1, 3]), (5, &[1, 3])];
    for (rx, from) in expect {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            assert_eq!(receiving(&sim, rx, kind), set(from), "{kind:?} at {rx}");
        }
    }
}

#[test]
fn the_console_watches_every_site_and_then_nobody_pauses() {
    let mut sim = Sim::new(Config {
        view_size: 2,
        ..Config::default()
    });
    // The control center's console (peer 100) joins first with a wide view, then five sites.
    sim.add_site_viewing(100, 7, Sim::light_site(100), Some(24))
        .expect("add console");
    sim.run_for(Duration::from_millis(200));
    let ids: [PeerId; 5] = [1, 2, 3, 4, 5];
    for id in ids {
        sim.add_site(id, 7, Sim::light_site(id)).expect("add site");
        sim.run_for(Duration::from_millis(200));
    }
    assert!(sim.run_until(Duration::from_secs(10), |s| ids
        .iter()
        .chain([100].iter())
        .all(|id| s.connected(*id))));
    sim.run_for(Duration::from_secs(3));
    for kind in [MediaKind::Audio, MediaKind::Video] {
        assert_eq!(
            receiving(&sim, 100, kind),
            set(&ids),
            "{kind:?} at the console"
        );
        // A site's view of 2: the console and the first site before it.
        assert_eq!(receiving(&sim, 5, kind), set(&[100, 1]), "{kind:?} at 5");
        assert_eq!(receiving(&sim, 1, kind), set(&[100, 2]), "{kind:?} at 1");
    }
    for id in ids {
        assert_eq!(
            paused(&sim, id),
            None,
            "the console sees {id}: never paused"
        );
    }
}
