//! Floor control and frames as the meeting's rules drive them (C1, C4): a site joins unheard,
//! its sound passes only while its gate is open; each receiver gets the audio of every other
//! site but only the videos its frame shows, each at the layer of its cell.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Event, Sim};
use hnth_media::testing::RemoteTrack;
use hnth_media::{Config, PeerId, PeerSetup, Receives};
use str0m::media::MediaKind;

/// The sites send layers 180, 360 and 720 lines tall (`SiteConfig::new`): a small cell of 180
/// lines takes q, a large one of 720 takes f.
const SMALL: u16 = 180;
const LARGE: u16 = 720;

fn unheard(receives: Receives) -> PeerSetup {
    PeerSetup {
        receives,
        heard: false,
    }
}

fn track(sim: &Sim, rx: PeerId, tx: PeerId, kind: MediaKind) -> Option<&RemoteTrack> {
    sim.site(rx).track(&format!("stream-{tx}"), kind)
}

fn frames(sim: &Sim, rx: PeerId, tx: PeerId, kind: MediaKind) -> u64 {
    track(sim, rx, tx, kind).map_or(0, |t| t.frames)
}

/// Whose video `rx` has an active track of.
fn videos(sim: &Sim, rx: PeerId) -> Vec<u64> {
    let mut v: Vec<u64> = (sim.site(rx).active_tracks())
        .filter(|t| t.kind == MediaKind::Video)
        .filter_map(|t| t.stream_id.strip_prefix("stream-")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

fn paused(sim: &Sim, id: PeerId) -> Option<bool> {
    sim.events.iter().rev().find_map(|(_, e)| match e {
        Event::SendVideo(p, on) if *p == id => Some(!on),
        _ => None,
    })
}

#[test]
fn each_receiver_gets_only_the_videos_of_its_frame_at_the_layer_of_their_cell() {
    let mut sim = Sim::new(Config::default());
    for id in [1, 2, 3, 4] {
        sim.add_site_with(id, 1, Sim::light_site(id), unheard(Receives::Frame(vec![])))
            .expect("add");
    }
    // 1 shows 2 large and 3 small; 2 shows 1 small; 3 nothing; 4 shows 2 large. Nobody shows 4.
    let frames_of: [(PeerId, Vec<(PeerId, u16)>); 4] = [
        (1, vec![(2, LARGE), (3, SMALL)]),
        (2, vec![(1, SMALL)]),
        (3, vec![]),
        (4, vec![(2, LARGE)]),
    ];
    for (rx, f) in &frames_of {
        sim.conf
            .set_receives(sim.now, *rx, Receives::Frame(f.clone()))
            .expect("set_receives");
    }
    sim.run_for(Duration::from_secs(6));
    assert_eq!(videos(&sim, 1), vec![2, 3]);
    assert_eq!(videos(&sim, 2), vec![1]);
    assert_eq!(videos(&sim, 3), Vec::<u64>::new());
    assert_eq!(videos(&sim, 4), vec![2]);
    let layer = |sim: &Sim, rx, tx| track(sim, rx, tx, MediaKind::Video).and_then(|t| t.layer);
    assert_eq!(
        layer(&sim, 1, 2),
        Some(2),
        "the large cell gets the top layer"
    );
    assert_eq!(
        layer(&sim, 1, 3),
        Some(0),
        "the small cell gets the low layer"
    );
    assert_eq!(layer(&sim, 2, 1), Some(0));
    assert!(frames(&sim, 1, 3, MediaKind::Video) > 100);
    // Everyone's audio is negotiated, nobody's is heard: every gate is closed.
    for rx in [1, 2, 3, 4] {
        let audio = (sim.site(rx).active_tracks())
            .filter(|t| t.kind == MediaKind::Audio)
            .count();
        assert_eq!(audio, 3, "site {rx}: an audio track of every other site");
        for tx in [1, 2, 3, 4].into_iter().filter(|t| *t != rx) {
            assert_eq!(
                frames(&sim, rx, tx, MediaKind::Audio),
                0,
                "{tx} heard at {rx}"
            );
        }
    }
    assert_eq!(
        paused(&sim, 4),
        Some(true),
        "4 is on no screen: its video pauses"
    );
    assert_ne!(paused(&sim, 3), Some(true));

    // The frame changes: 1 now shows 4 large, and nothing of 2 and 3.
    sim.conf
        .set_receives(sim.now, 1, Receives::Frame(vec![(4, LARGE)]))
        .expect("set_receives");
    sim.run_for(Duration::from_secs(4));
    assert_eq!(videos(&sim, 1), vec![4]);
    assert_eq!(paused(&sim, 4), Some(false), "4 is seen again: it resumes");
    assert_eq!(paused(&sim, 3), Some(true), "3 is on no screen any more");
    let t = track(&sim, 1, 4, MediaKind::Video).expect("video of 4 at 1");
    assert!(t.frames > 60, "{} frames of 4", t.frames);
    assert_eq!(t.layer, Some(2));

    // A larger cell for a video already shown switches it up without renegotiating.
    let before = sim.site(2).active_tracks().count();
    sim.conf
        .set_receives(sim.now, 2, Receives::Frame(vec![(1, LARGE)]))
        .expect("set_receives");
    sim.run_for(Duration::from_secs(4));
    assert_eq!(sim.site(2).active_tracks().count(), before);
    assert_eq!(layer(&sim, 2, 1), Some(2));
    assert!(sim
        .conf
        .set_receives(sim.now, 99, Receives::Frame(vec![]))
        .is_err());
}

#[test]
fn a_site_joins_unheard_and_is_heard_only_while_its_gate_is_open() {
    let mut sim = Sim::new(Config::default());
    for id in [1, 2, 3] {
        let others: Vec<(PeerId, u16)> = [1, 2, 3]
            .into_iter()
            .filter(|o| *o != id)
            .map(|o| (o, SMALL))
            .collect();
        sim.add_site_with(id, 1, Sim::light_site(id), unheard(Receives::Frame(others)))
            .expect("add");
    }
    sim.run_for(Duration::from_secs(3));
    assert_eq!(
        frames(&sim, 2, 1, MediaKind::Audio),
        0,
        "heard before the floor"
    );
    assert!(frames(&sim, 2, 1, MediaKind::Video) > 50, "but seen");
    let dropped = sim.conf.audio_dropped(1).expect("peer 1");
    assert!(dropped > 100, "{dropped} packets dropped at the gate");
    let reported = (sim.events.iter())
        .any(|(_, e)| matches!(e, Event::Stats(s) if s.peer == 1 && s.audio_dropped > 0));
    assert!(reported, "the link figures count what the gate dropped");

    // The floor: 1's sound reaches 2 and 3 (already negotiated: no offer needed).
    let offers = sim.site_mut(2).offers_answered;
    sim.conf.set_floor(1, true).expect("set_floor");
    sim.run_for(Duration::from_secs(2));
    for rx in [2, 3] {
        let n = frames(&sim, rx, 1, MediaKind::Audio);
        assert!(
            n >= 80,
            "{n} audio frames of 1 at {rx} after the floor opened"
        );
    }
    assert_eq!(
        sim.site_mut(2).offers_answered,
        offers,
        "the floor renegotiated"
    );
    assert_eq!(frames(&sim, 2, 3, MediaKind::Audio), 0, "3 has no floor");
    // Taken back: silent again.
    sim.conf.set_floor(1, false).expect("set_floor");
    sim.run_for(Duration::from_millis(200));
    let closed = frames(&sim, 2, 1, MediaKind::Audio);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(frames(&sim, 2, 1, MediaKind::Audio), closed);
}

/// A receiver's view changing back and forth (the floor passed between two sites in a one-cell
/// frame, as a debate does for hours) keeps one m-line per source: a video out of view is
/// parked (inactive) and the same m-line carries it again when it is back, with frames.
#[test]
fn a_video_coming_back_into_view_reuses_its_m_line() {
    let mut sim = Sim::new(Config::default());
    for id in [1, 2, 3] {
        sim.add_site_with(id, 1, Sim::light_site(id), unheard(Receives::Frame(vec![])))
            .expect("add");
    }
    sim.run_for(Duration::from_secs(1));
    let mut mids_of_2 = BTreeSet::new();
    for round in 0..20 {
        let shown = if round % 2 == 0 { 2 } else { 3 };
        sim.conf
            .set_receives(sim.now, 1, Receives::Frame(vec![(shown, LARGE)]))
            .expect("set_receives");
        let before = frames(&sim, 1, shown, MediaKind::Video);
        assert!(
            sim.run_until(Duration::from_secs(3), |s| frames(
                s,
                1,
                shown,
                MediaKind::Video
            ) > before + 10),
            "round {round}: site {shown}'s video not received again"
        );
        assert_eq!(videos(&sim, 1), vec![shown], "round {round}");
        if shown == 2 {
            mids_of_2.insert(track(&sim, 1, 2, MediaKind::Video).expect("2's video").mid);
        }
    }
    assert_eq!(
        mids_of_2.len(),
        1,
        "site 2's video on one m-line: {mids_of_2:?}"
    );
    // Site 1's session: the audio of 2 and 3, their videos, and its own two sending m-lines.
    let m_lines = sim.site(1).remote_tracks().len();
    assert!(
        m_lines <= 4,
        "{m_lines} remote m-lines after 20 changes of view"
    );
}
