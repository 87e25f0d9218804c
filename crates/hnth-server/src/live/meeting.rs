//! A live meeting in the hub: the state of its course as the rules keep it
//! (`hnth_rules::meeting`), the control center's seat, and what follows from that state for
//! the media core (whose sound is heard, C4; which videos each peer receives at which size, C1)
//! and for the pages (the state every console, chair and site sees, and each screen's frame).
//! Pure: the hub passes the peers and the time in and applies what comes out.

use chrono::{DateTime, Utc};
use hnth_media::{PeerId, PeerSetup, Receives};
use hnth_rules::booking::SiteId;
use hnth_rules::meeting::{CellSize, Meeting as Rules, MicGuard, RequestState, View};
use serde_json::{json, Value};

/// The height a cell asks of the media core (lines).
fn cell(size: CellSize) -> u16 {
    u16::try_from(size.height()).unwrap_or(u16::MAX)
}

/// A connection to the hub.
pub type ConnId = u64;

/// What a media peer is to its meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// A site's app: it sends and receives as its site.
    Site,
    /// The console in the control center's seat: it sends as the control center's site, and
    /// watches every site.
    Control,
    /// A console that watches (every site, small), and sends nothing.
    Watch,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Site => "site",
            PeerKind::Control => "control",
            PeerKind::Watch => "watch",
        }
    }
}

/// A peer as the decisions need it.
#[derive(Debug, Clone)]
pub struct PeerRef {
    pub id: PeerId,
    pub site: Option<SiteId>,
    pub kind: PeerKind,
    pub stream: String,
}

/// A live meeting.
#[derive(Debug, Clone)]
pub struct LiveMeeting {
    pub id: i64,
    pub title: String,
    pub booking: i64,
    pub emergency: bool,
    /// Who chairs it (the booking's text).
    pub chair: String,
    pub rules: Rules,
    pub guard: MicGuard,
    /// The control center's own site.
    pub cc_site: SiteId,
    /// The console holding the control center's seat (its camera and microphone).
    pub seat: Option<ConnId>,
    /// The username at the seat, for the other consoles.
    pub seat_user: Option<String>,
    /// The stamp of the state's last version (milliseconds, strictly increasing): a write of
    /// an older version never replaces a newer one.
    pub version: i64,
}

/// How many sites' pictures a peer receives at most: a site (`media.view_size`: its downlink
/// carries no more, whatever the frame has) and a console watching the meeting
/// (`media.monitor_view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Views {
    pub site: usize,
    pub monitor: usize,
}

impl Default for Views {
    fn default() -> Self {
        Views {
            site: 8,
            monitor: 24,
        }
    }
}

impl LiveMeeting {
    /// The next version's stamp at `now`.
    pub fn next_version(&mut self, now: DateTime<Utc>) -> i64 {
        self.version = now.timestamp_millis().max(self.version + 1);
        self.version
    }

    /// The sites taking part (dialed by the control center, C6), the control center's own
    /// site apart.
    pub fn dialed(&self) -> impl Iterator<Item = SiteId> + '_ {
        let cc = self.cc_site;
        self.rules
            .participants
            .keys()
            .copied()
            .filter(move |s| *s != cc)
    }

    pub fn has_site(&self, site: SiteId) -> bool {
        self.rules.participants.contains_key(&site)
    }

    /// What the media core does for `peer`: whose video it receives at which height, and
    /// whether its own sound passes (C1, C4), within `views`.
    pub fn setup_for(
        &self,
        peer: &PeerRef,
        peers: &[PeerRef],
        views: Views,
        now: DateTime<Utc>,
    ) -> PeerSetup {
        let peer_of = |site: SiteId| {
            peers
                .iter()
                .find(|p| p.site == Some(site) && p.kind != PeerKind::Watch)
                .map(|p| p.id)
        };
        let mut videos: Vec<(PeerId, u16)> = Vec::new();
        // P3: no picture taller than the control center allows for this meeting.
        let cap = u16::try_from(self.rules.params.max_height).unwrap_or(u16::MAX);
        let mut add = |id: PeerId, h: u16| {
            let h = h.min(cap);
            match videos.iter_mut().find(|(p, _)| *p == id) {
                Some(v) => v.1 = v.1.max(h),
                None => videos.push((id, h)),
            }
        };
        if let (Some(site), PeerKind::Site | PeerKind::Control) = (peer.site, peer.kind) {
            // The frame's cells come largest first: a site past its view keeps the large ones.
            for (s, size) in self
                .rules
                .videos_for(site, now)
                .into_iter()
                .take(views.site)
            {
                if let Some(id) = peer_of(s) {
                    add(id, cell(size));
                }
            }
        }
        if matches!(peer.kind, PeerKind::Control | PeerKind::Watch) {
            // The operator watches every site, the floor's first.
            let mut order = self.rules.floor.iter().rev().copied().collect::<Vec<_>>();
            for s in self.rules.connected() {
                if !order.contains(&s) {
                    order.push(s);
                }
            }
            for s in order
                .into_iter()
                .filter(|s| Some(*s) != peer.site)
                .take(views.monitor)
            {
                if let Some(id) = peer_of(s) {
                    add(id, cell(CellSize::Small));
                }
            }
        }
        videos.retain(|(id, _)| *id != peer.id);
        let heard = match (peer.kind, peer.site) {
            (PeerKind::Watch, _) | (_, None) => false,
            (_, Some(site)) => self.rules.hears(site),
        };
        PeerSetup {
            receives: Receives::Frame(videos),
            heard,
        }
    }

    fn cells(&self, view: &View, peers: &[PeerRef], name: &dyn Fn(SiteId) -> String) -> Value {
        let stream = |site: SiteId| {
            peers
                .iter()
                .find(|p| p.site == Some(site) && p.kind != PeerKind::Watch)
                .map(|p| p.stream.clone())
        };
        json!({
            "layout": view.layout,
            "cells": view.cells.iter().map(|c| json!({
                "site": c.site,
                "name": c.site.map(name),
                "stream": c.site.and_then(stream),
                "size": c.size,
            })).collect::<Vec<_>>(),
        })
    }

    /// What `receiver`'s screen shows now (C1): `{type: "frame", meeting, layout, cells}`.
    pub fn frame_msg(
        &self,
        receiver: SiteId,
        peers: &[PeerRef],
        name: &dyn Fn(SiteId) -> String,
        now: DateTime<Utc>,
    ) -> Value {
        let view = self.rules.view_for(receiver, now);
        let mut v = self.cells(&view, peers, name);
        v["type"] = json!("frame");
        v["meeting"] = json!(self.id);
        v
    }

    /// The meeting's state as every console, the chair and the sites see it.
    pub fn state_msg(
        &self,
        peers: &[PeerRef],
        name: &dyn Fn(SiteId) -> String,
        now: DateTime<Utc>,
    ) -> Value {
        let r = &self.rules;
        let sites: Vec<Value> = r
            .participants
            .values()
            .map(|p| {
                json!({
                    "id": p.site,
                    "name": name(p.site),
                    "connected": p.connected_since.is_some(),
                    "since": p.connected_since,
                    "heard": r.hears(p.site),
                    "control_center": p.site == self.cc_site,
                    "chair": p.site == r.chair_site,
                })
            })
            .collect();
        let queue: Vec<Value> = r
            .queue
            .iter()
            .map(|q| {
                json!({
                    "id": q.id, "site": q.site, "site_name": name(q.site), "delegate": q.delegate,
                    "position": q.position, "at": q.at,
                    "waiting_s": (now - q.at).num_seconds().max(0),
                    "state": q.state, "passed": q.state == RequestState::Passed,
                })
            })
            .collect();
        // The frame of every screen (but the chair's in a lecture): the console's preview.
        let screen = self.cells(&self.rules.view_for(SiteId::MIN, now), peers, name);
        json!({
            "type": "meeting_state",
            "meeting": self.id,
            "title": self.title,
            "booking": self.booking,
            "emergency": self.emergency,
            "chair": self.chair,
            "chair_site": r.chair_site,
            "chair_always_heard": r.chair_always_heard,
            "cc_site": self.cc_site,
            "seat": self.seat_user,
            "sites": sites,
            "floor": r.floor,
            "debate": r.debate,
            "lecture": r.lecture,
            "queue": queue,
            "frame": r.frame,
            "screen": screen,
            "params": r.params,
            "roll_call": r.roll_call,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnth_rules::meeting::{Actor, Command, Fill, Frame, Layout};
    use hnth_rules::roles::{Role, Scope};

    const CC: SiteId = 1;
    const A: SiteId = 2;
    const B: SiteId = 3;
    const C: SiteId = 4;

    fn meeting() -> LiveMeeting {
        LiveMeeting {
            id: 7,
            title: "Giao ban".into(),
            booking: 3,
            emergency: false,
            chair: String::new(),
            rules: Rules::new(CC, &[A, B, C], Layout::OnePlus7),
            guard: MicGuard::default(),
            cc_site: CC,
            seat: None,
            seat_user: None,
            version: 0,
        }
    }

    fn peers() -> Vec<PeerRef> {
        let p = |id, site, kind| PeerRef {
            id,
            site,
            kind,
            stream: format!("s{id}"),
        };
        vec![
            p(10, Some(CC), PeerKind::Control),
            p(11, Some(A), PeerKind::Site),
            p(12, Some(B), PeerKind::Site),
            p(13, Some(C), PeerKind::Site),
            p(14, None, PeerKind::Watch),
        ]
    }

    fn frame(s: &PeerSetup) -> Vec<(PeerId, u16)> {
        match &s.receives {
            Receives::Frame(v) => {
                let mut v = v.clone();
                v.sort_unstable();
                v
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_floor_and_the_frame_decide_what_each_peer_gets() {
        let now = Utc::now();
        let mut m = meeting();
        for s in [CC, A, B, C] {
            m.rules.site_connected(s, now).unwrap();
        }
        let ps = peers();
        let op = Actor {
            role: Role::Operator,
            scope: Scope::Province,
        };
        m.rules
            .apply(op, Command::GiveFloor { site: B }, now)
            .unwrap();
        // 1+7 in floor order: B large, then the chair's site (the control center), then A, C.
        let at_a = m.setup_for(&ps[1], &ps, Views::default(), now);
        assert_eq!(frame(&at_a), vec![(10, 180), (12, 720), (13, 180)]);
        assert!(!at_a.heard, "A has no floor");
        // A site's view caps what it gets, the large cell kept.
        let one = Views {
            site: 1,
            monitor: 24,
        };
        assert_eq!(frame(&m.setup_for(&ps[1], &ps, one, now)), vec![(12, 720)]);
        let at_b = m.setup_for(&ps[2], &ps, Views::default(), now);
        assert!(at_b.heard, "B holds the floor");
        assert_eq!(frame(&at_b), vec![(10, 180), (11, 180), (13, 180)]);
        // The control center is the chair's site here: heard, and it watches every site.
        let cc = m.setup_for(&ps[0], &ps, Views::default(), now);
        assert!(cc.heard);
        assert_eq!(frame(&cc), vec![(11, 180), (12, 720), (13, 180)]);
        // A watching console sends nothing, is heard by nobody, and watches every site small.
        let w = m.setup_for(&ps[4], &ps, Views::default(), now);
        assert!(!w.heard);
        assert_eq!(frame(&w), vec![(10, 180), (11, 180), (12, 180), (13, 180)]);
        let w2 = m.setup_for(
            &ps[4],
            &ps,
            Views {
                site: 8,
                monitor: 2,
            },
            now,
        );
        assert_eq!(frame(&w2), vec![(10, 180), (12, 180)], "the floor first");

        // The operator places C alone in a 1x1 frame: A gets only C, large.
        let manual = Frame {
            layout: Layout::One,
            fill: Fill::Manual(vec![Some(C)]),
        };
        m.rules
            .apply(op, Command::SetFrame { frame: manual }, now)
            .unwrap();
        assert_eq!(
            frame(&m.setup_for(&ps[1], &ps, Views::default(), now)),
            vec![(13, 720)]
        );
        // C sees its own cell: nothing of itself.
        assert_eq!(
            frame(&m.setup_for(&ps[3], &ps, Views::default(), now)),
            vec![]
        );
        // P3: with pictures capped at 360 lines, the large cell gets the middle layer.
        let params = hnth_rules::meeting::Params {
            max_height: 360,
            ..m.rules.params
        };
        m.rules
            .apply(op, Command::SetParams { params }, now)
            .unwrap();
        assert_eq!(
            frame(&m.setup_for(&ps[1], &ps, Views::default(), now)),
            vec![(13, 360)]
        );
        // A site that drops is on no screen.
        m.rules.site_disconnected(C);
        assert_eq!(
            frame(&m.setup_for(&ps[1], &ps, Views::default(), now)),
            vec![]
        );
    }

    #[test]
    fn state_and_frame_messages_name_sites_and_streams() {
        let now = Utc::now();
        let mut m = meeting();
        m.rules.site_connected(A, now).unwrap();
        let ps = peers();
        let name = |s: SiteId| format!("Điểm {s}");
        let st = m.state_msg(&ps, &name, now);
        assert_eq!(st["type"], "meeting_state");
        assert_eq!(st["sites"].as_array().unwrap().len(), 4);
        let a = &st["sites"].as_array().unwrap()[1];
        assert_eq!(
            (a["id"].as_i64(), a["connected"].as_bool()),
            (Some(A), Some(true))
        );
        let f = m.frame_msg(B, &ps, &name, now);
        assert_eq!(f["layout"], "1+7");
        assert_eq!(f["cells"][0]["site"], json!(A));
        assert_eq!(f["cells"][0]["name"], "Điểm 2");
        assert_eq!(f["cells"][0]["stream"], "s11");
        assert_eq!(f["cells"][0]["size"], "large");
        assert_eq!(f["cells"].as_array().unwrap().len(), 8);
        assert!(m.next_version(now) < m.next_version(now));
    }
}
