//! Peers that go silent or never connect are dropped, in simulated time.

mod common;

use std::time::Duration;

use common::{Event, Sim};
use hnth_media::{CloseReason, Config};
use str0m::media::MediaKind;

fn config() -> Config {
    Config {
        idle_timeout: Duration::from_secs(6),
        connect_timeout: Duration::from_secs(15),
        ..Config::default()
    }
}

#[test]
fn a_site_that_goes_silent_is_dropped_as_link_lost() {
    let mut sim = Sim::new(config());
    for id in [1, 2, 3] {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    sim.run_for(Duration::from_secs(2));
    assert!([1, 2, 3].iter().all(|id| sim.connected(*id)));
    // The machine of site 2 dies: nothing from it, nothing to it.
    sim.site_mut(2).frozen = true;
    let died = sim.now;
    assert!(sim.run_until(Duration::from_secs(10), |s| s.closed(2).is_some()));
    let (at, reason) = sim.closed(2).expect("closed");
    assert_eq!(reason, CloseReason::LinkLost);
    // Expired after the idle timeout plus the step and timer granularity, not later.
    let after = at - died;
    assert!(
        after <= config().idle_timeout + Duration::from_millis(100),
        "dropped {after:?} after going silent"
    );
    assert_eq!(sim.conf.peer_count(), 2);
    assert_eq!(sim.conf.meeting_peers(1), &[1, 3]);
    // The others were offered the removal of its tracks and keep exchanging media.
    sim.run_for(Duration::from_millis(500));
    for rx in [1, 3] {
        let site = sim.site(rx);
        assert!(
            site.remote_tracks()
                .values()
                .filter(|t| t.stream_id == "stream-2")
                .all(|t| !t.active),
            "site {rx} still has tracks of site 2"
        );
        assert_eq!(site.active_tracks().count(), 2);
    }
    let before = sim
        .site(1)
        .track("stream-3", MediaKind::Audio)
        .expect("a")
        .frames;
    sim.run_for(Duration::from_secs(1));
    let after = sim
        .site(1)
        .track("stream-3", MediaKind::Audio)
        .expect("a")
        .frames;
    assert!(after >= before + 40, "{before} -> {after}");
    assert!(sim.closed(1).is_none() && sim.closed(3).is_none());
}

/// A line cut shorter than the idle timeout: the site is reported interrupted after
/// `interrupt_after`, keeps its session, and is resumed (and receives media again) as soon as
/// its datagrams come back, without a new session.
#[test]
fn a_cut_line_is_interrupted_then_resumed_in_the_same_session() {
    let mut sim = Sim::new(config());
    for id in [1, 2] {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    sim.run_for(Duration::from_secs(2));
    let cut = sim.now;
    sim.site_mut(2).frozen = true;
    let interrupted = |s: &Sim| {
        s.events
            .iter()
            .find(|(_, e)| matches!(e, Event::Interrupted(2)))
            .map(|(t, _)| *t)
    };
    assert!(sim.run_until(Duration::from_secs(4), |s| interrupted(s).is_some()));
    let told = interrupted(&sim).expect("interrupted") - cut;
    let after = config().interrupt_after;
    assert!(
        told >= after && told <= after + Duration::from_millis(100),
        "interrupted {told:?} after the cut"
    );
    // Cut for 4 s in all, less than the idle timeout: the session stays.
    sim.run_for(Duration::from_secs(2));
    assert!(sim.closed(2).is_none());
    let before = common::frames(&sim, 2, 1);
    sim.site_mut(2).frozen = false;
    let back = sim.now;
    assert!(sim.run_until(Duration::from_secs(2), |s| s
        .events
        .iter()
        .any(|(t, e)| *t >= back && matches!(e, Event::Resumed(2)))));
    sim.run_for(Duration::from_secs(1));
    assert!(
        common::frames(&sim, 2, 1) > before + 20,
        "no media after the line came back"
    );
    assert!(sim.closed(2).is_none());
    assert_eq!(sim.conf.peer_count(), 2);
}

#[test]
fn a_site_that_only_stops_its_media_stays() {
    let mut sim = Sim::new(config());
    for id in [1, 2] {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    sim.run_for(Duration::from_secs(2));
    // Camera and microphone off: ICE consent checks and RTCP still flow.
    sim.site_mut(2).site.set_sending(false);
    sim.run_for(config().idle_timeout * 3);
    assert!(sim.closed(2).is_none(), "{:?}", sim.closed(2));
    assert_eq!(sim.conf.peer_count(), 2);
}

#[test]
fn a_site_that_never_connects_is_dropped_as_connect_timeout() {
    let mut sim = Sim::new(config());
    sim.add_site(1, 1, Sim::light_site(1)).expect("add");
    sim.run_for(Duration::from_secs(1));
    // Site 2 sends its offer and then nothing: no ICE, no DTLS.
    let added = sim.now;
    sim.add_site(2, 1, Sim::light_site(2)).expect("add");
    sim.site_mut(2).frozen = true;
    assert!(sim.run_until(Duration::from_secs(20), |s| s.closed(2).is_some()));
    let (at, reason) = sim.closed(2).expect("closed");
    assert_eq!(reason, CloseReason::ConnectTimeout);
    let after = at - added;
    assert!(
        after >= config().connect_timeout
            && after <= config().connect_timeout + Duration::from_millis(100),
        "dropped {after:?} after being added"
    );
    assert!(!sim.connected(2));
    assert!(sim.closed(1).is_none());
    assert_eq!(sim.conf.peer_count(), 1);
}
