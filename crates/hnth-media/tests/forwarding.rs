//! Media flows between synthetic sites through the conference core, in simulated time.

mod common;

use std::time::Duration;

use common::{Event, Sim};
use hnth_media::testing::AUDIO_LAYER;
use hnth_media::{Config, PeerId};
use str0m::media::MediaKind;

/// Every site has, for every other site, an active audio and an active video track on that
/// site's stream id, carrying that site's frames.
fn assert_full_mesh(sim: &Sim, ids: &[PeerId], min_frames: u64) {
    for &rx in ids {
        let site = sim.site(rx);
        assert_eq!(
            site.active_tracks().count(),
            2 * (ids.len() - 1),
            "site {rx} tracks: {:#?}",
            site.remote_tracks()
        );
        for &tx in ids.iter().filter(|t| **t != rx) {
            let stream = format!("stream-{tx}");
            for kind in [MediaKind::Audio, MediaKind::Video] {
                let t = site
                    .track(&stream, kind)
                    .unwrap_or_else(|| panic!("site {rx} has no {kind:?} on {stream}"));
                assert!(
                    t.frames >= min_frames,
                    "site {rx} got {} {kind:?} frames from {tx}",
                    t.frames
                );
                assert_eq!(
                    t.senders.keys().copied().collect::<Vec<_>>(),
                    vec![tx],
                    "site {rx}, {kind:?} on {stream}: frames of other senders"
                );
                assert_eq!(t.foreign, 0);
                if kind == MediaKind::Audio {
                    assert_eq!(t.layers.keys().copied().collect::<Vec<_>>(), [AUDIO_LAYER]);
                } else {
                    assert!(t.keyframes > 0, "no keyframe from {tx} at {rx}");
                }
            }
        }
    }
}

#[test]
fn three_sites_receive_each_other() {
    let mut sim = Sim::new(Config::default());
    let ids = [1, 2, 3];
    for id in ids {
        sim.add_site(id, 7, Sim::light_site(id)).expect("add site");
        // Sites arrive one after the other.
        sim.run_for(Duration::from_millis(300));
    }
    assert!(sim.run_until(Duration::from_secs(10), |s| ids
        .iter()
        .all(|id| s.connected(*id))));
    sim.run_for(Duration::from_secs(3));
    assert_full_mesh(&sim, &ids, 20);
    for id in ids {
        let s = &sim.sites[&id];
        assert!(s.signaling_errors.is_empty(), "{:?}", s.signaling_errors);
        assert_eq!(s.site.error(), None);
    }
    // Audio arrives about every 20 ms: in 3 s well over 100 packets, with no loss here.
    let t = sim
        .site(1)
        .track("stream-2", MediaKind::Audio)
        .expect("audio");
    assert!(t.frames > 100, "{}", t.frames);
    assert_eq!(t.missing, 0);
}

#[test]
fn five_sites_added_at_the_same_instant() {
    let mut sim = Sim::new(Config::default());
    let ids = [1, 2, 3, 4, 5];
    for id in ids {
        sim.add_site(id, 9, Sim::light_site(id)).expect("add site");
    }
    assert!(sim.run_until(Duration::from_secs(10), |s| ids
        .iter()
        .all(|id| s.connected(*id))));
    // Renegotiation completes: every site ends with 4 remote streams × 2 tracks with frames.
    assert!(
        sim.run_until(Duration::from_secs(10), |s| ids.iter().all(|rx| {
            let site = s.site(*rx);
            site.active_tracks().count() == 8 && site.active_tracks().all(|t| t.frames > 10)
        })),
        "{:#?}",
        ids.iter()
            .map(|id| sim
                .site(*id)
                .active_tracks()
                .map(|t| (t.stream_id.clone(), t.kind, t.frames))
                .collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    assert_full_mesh(&sim, &ids, 10);
    for id in ids {
        assert!(sim.sites[&id].signaling_errors.is_empty());
    }
    assert!(!sim
        .events
        .iter()
        .any(|(_, e)| matches!(e, common::Event::AnswerRefused(..))));
}

#[test]
fn a_removed_site_stops_at_the_others() {
    let mut sim = Sim::new(Config::default());
    let ids = [1, 2, 3];
    for id in ids {
        sim.add_site(id, 7, Sim::light_site(id)).expect("add site");
    }
    sim.run_for(Duration::from_secs(3));
    assert_full_mesh(&sim, &ids, 20);
    let answered: Vec<u32> = [1, 2]
        .iter()
        .map(|id| sim.sites[id].offers_answered)
        .collect();

    sim.remove_site(3).expect("remove");
    assert_eq!(sim.conf.meeting_peers(7), &[1, 2]);
    // The removal is negotiated at once (signaling is instantaneous here).
    for (i, rx) in [1, 2].into_iter().enumerate() {
        let s = &sim.sites[&rx];
        assert_eq!(s.offers_answered, answered[i] + 1, "no stop offer to {rx}");
        let gone: Vec<_> = s
            .site
            .remote_tracks()
            .values()
            .filter(|t| t.stream_id == "stream-3")
            .collect();
        assert_eq!(gone.len(), 2);
        assert!(gone.iter().all(|t| !t.active), "{gone:#?}");
        assert_eq!(s.site.active_tracks().count(), 2);
    }
    // Site 3 keeps sending (it was not told); nothing of it reaches the others any more.
    sim.run_for(Duration::from_millis(100));
    let frames_from_3 = |sim: &Sim, rx| -> u64 {
        sim.site(rx)
            .remote_tracks()
            .values()
            .filter(|t| t.stream_id == "stream-3")
            .map(|t| t.frames)
            .sum()
    };
    let before = [frames_from_3(&sim, 1), frames_from_3(&sim, 2)];
    let other_before = sim
        .site(1)
        .track("stream-2", MediaKind::Video)
        .expect("v")
        .frames;
    sim.run_for(Duration::from_secs(2));
    assert_eq!([frames_from_3(&sim, 1), frames_from_3(&sim, 2)], before);
    let other_after = sim
        .site(1)
        .track("stream-2", MediaKind::Video)
        .expect("v")
        .frames;
    assert!(
        other_after > other_before + 30,
        "{other_before} -> {other_after}"
    );
    assert!(sim.site(3).sent().video_frames > 100);
}

#[test]
fn a_muted_microphone_is_not_forwarded_and_sound_resumes_without_a_gap() {
    let mut sim = Sim::new(Config::default());
    for id in [1, 2] {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    sim.run_for(Duration::from_secs(2));
    let audio_from_1 = |sim: &Sim| {
        let t = sim
            .site(2)
            .track("stream-1", MediaKind::Audio)
            .expect("audio track");
        (t.frames, t.discontinuities)
    };
    let (before, gaps_before) = audio_from_1(&sim);
    assert!(before >= 80, "{before} audio frames in 2 s");
    // Muted: digital silence goes nowhere.
    sim.site_mut(1).site.set_talking(false);
    sim.run_for(Duration::from_millis(200)); // what was in flight
    let (muted, _) = audio_from_1(&sim);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(audio_from_1(&sim).0, muted, "silence was forwarded");
    // Video still flows, and site 1's own reception is untouched.
    let v = sim
        .site(2)
        .track("stream-1", MediaKind::Video)
        .expect("video")
        .frames;
    assert!(v > 150, "{v} video frames");
    assert!(
        sim.site(1)
            .track("stream-2", MediaKind::Audio)
            .expect("audio")
            .frames
            > 200
    );
    // Talking again: sound arrives, numbered on from before the silence (no loss seen).
    sim.site_mut(1).site.set_talking(true);
    sim.run_for(Duration::from_secs(2));
    let (after, gaps_after) = audio_from_1(&sim);
    assert!(
        after >= muted + 80,
        "{after} audio frames after talking again ({muted} before)"
    );
    assert_eq!(
        gaps_after, gaps_before,
        "a gap in the audio numbering after the silence"
    );
}

/// C4: the floor gate is the server's. A site without the floor is heard by nobody, whatever it
/// sends; giving the floor opens its sound (numbered on without a gap), taking it back closes it;
/// the packets dropped are counted and its speech is reported.
#[test]
fn a_site_without_the_floor_is_not_heard() {
    let mut sim = Sim::new(Config::default());
    for id in [1, 2, 3] {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    sim.run_for(Duration::from_secs(2));
    let audio = |sim: &Sim, at: PeerId, from: &str| {
        let t = sim
            .site(at)
            .track(from, MediaKind::Audio)
            .expect("audio track");
        (t.frames, t.discontinuities)
    };
    let unheard = |sim: &Sim| {
        (sim.events.iter())
            .filter(|(_, e)| matches!(e, Event::UnheardSpeech(1)))
            .count()
    };
    assert!(audio(&sim, 2, "stream-1").0 >= 80);
    // Site 1 loses the floor while it talks: nobody hears it; site 3 still is heard.
    sim.conf.set_floor(1, false).expect("set_floor");
    sim.run_for(Duration::from_millis(200)); // what was in flight
    let (closed, gaps_before) = audio(&sim, 2, "stream-1");
    let closed_3 = audio(&sim, 3, "stream-1").0;
    let heard_3 = audio(&sim, 2, "stream-3").0;
    sim.run_for(Duration::from_secs(3));
    assert_eq!(
        audio(&sim, 2, "stream-1").0,
        closed,
        "audio of a site without the floor was forwarded"
    );
    assert_eq!(audio(&sim, 3, "stream-1").0, closed_3);
    assert!(
        audio(&sim, 2, "stream-3").0 >= heard_3 + 120,
        "the others went quiet too"
    );
    let dropped = sim.conf.audio_dropped(1).expect("peer 1");
    assert!(
        (140..=170).contains(&dropped),
        "{dropped} packets dropped in 3.2 s"
    );
    // It talks (-30 dBov) all along: reported once a second or so, not for every packet.
    let reports = unheard(&sim);
    assert!(
        (2..=4).contains(&reports),
        "{reports} reports of unheard speech"
    );
    // Video goes on.
    assert!(
        sim.site(2)
            .track("stream-1", MediaKind::Video)
            .expect("video")
            .frames
            > 150
    );
    // The floor back: heard again at once, numbered on from before (no loss seen).
    sim.conf.set_floor(1, true).expect("set_floor");
    sim.run_for(Duration::from_secs(2));
    let (open, gaps_after) = audio(&sim, 2, "stream-1");
    assert!(
        open >= closed + 80,
        "{open} frames after the floor came back ({closed} before)"
    );
    assert_eq!(
        gaps_after, gaps_before,
        "a gap in the numbering after the floor came back"
    );
    assert_eq!(unheard(&sim), reports, "reported while it held the floor");
    assert!(sim.conf.set_floor(99, true).is_err());
}
