//! A simulated network between one [`Conference`] and synthetic sites, with simulated time.
//!
//! Every datagram is delivered one step after it was sent (so the one-way latency is the step,
//! 5 ms by default); signaling (answers, offers) is delivered at once. A site's downlink can be
//! given a rate limit with a drop-tail queue, and a site can be frozen (it neither sends nor
//! receives anything any more, as a crashed machine).

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hnth_media::testing::{SiteConfig, SyntheticSite};
use hnth_media::{
    CloseReason, Conference, Config, LinkStats, MediaError, MeetingId, Output, PeerId, PeerSetup,
    Receives,
};
use str0m::media::MediaKind;

pub const SERVER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1)), 3478);

pub fn site_addr(id: PeerId) -> SocketAddr {
    SocketAddr::from((
        Ipv4Addr::new(10, 0, (id / 250) as u8, (id % 250) as u8 + 1),
        5000,
    ))
}

/// A rate limit on the link from the server to a site.
#[derive(Debug, Clone)]
pub struct Link {
    pub bps: u64,
    /// Packets that would wait longer than this in the queue are dropped.
    pub max_queue: Duration,
    free_at: Option<Instant>,
    pub dropped: u64,
}

impl Link {
    pub fn new(bps: u64, max_queue: Duration) -> Self {
        Link {
            bps,
            max_queue,
            free_at: None,
            dropped: 0,
        }
    }
}

pub struct SimSite {
    pub site: SyntheticSite,
    pub meeting: MeetingId,
    pub frozen: bool,
    pub downlink: Option<Link>,
    /// Offers answered (renegotiations completed from the site's side).
    pub offers_answered: u32,
    /// Errors the site's side of signaling met.
    pub signaling_errors: Vec<String>,
    /// The conference's answer to the site's offer.
    pub answer_sdp: Option<String>,
}

/// Something the conference reported, with the simulated time.
#[derive(Debug, Clone)]
pub enum Event {
    Connected(PeerId),
    Closed(PeerId, CloseReason),
    Stats(LinkStats),
    /// An answer the conference refused.
    AnswerRefused(PeerId, MediaError),
    /// The conference asked the peer to pause or resume its video.
    SendVideo(PeerId, bool),
    /// The peer speaks without the floor.
    UnheardSpeech(PeerId),
    /// Nothing arrives from the peer; its session is kept.
    Interrupted(PeerId),
    /// It arrives again.
    Resumed(PeerId),
}

struct Datagram {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub step: Duration,
    pub conf: Conference,
    pub sites: BTreeMap<PeerId, SimSite>,
    pub events: Vec<(Instant, Event)>,
    /// Ordered by delivery time (a rate-limited link delays only its own datagrams).
    in_flight: VecDeque<Datagram>,
    by_addr: BTreeMap<SocketAddr, PeerId>,
    /// Datagrams delivered to the server and to sites.
    pub delivered: u64,
    /// When set, server offers are not answered by the sites (held here instead).
    pub hold_offers: bool,
    pub held_offers: Vec<(PeerId, u64, String)>,
    /// When set, datagrams delivered to the server are copied here (the first
    /// [`Sim::TAP_LIMIT`]), as material for the fuzz tests.
    pub tap: Option<Vec<(SocketAddr, Vec<u8>)>>,
}

impl Sim {
    pub fn new(config: Config) -> Self {
        let start = Instant::now();
        let config = Config {
            candidates: vec![SERVER],
            ..config
        };
        Sim {
            start,
            now: start,
            step: Duration::from_millis(5),
            conf: Conference::new(config),
            sites: BTreeMap::new(),
            events: Vec::new(),
            in_flight: VecDeque::new(),
            by_addr: BTreeMap::new(),
            delivered: 0,
            hold_offers: false,
            held_offers: Vec::new(),
            tap: None,
        }
    }

    /// How many datagrams [`Sim::tap`] keeps.
    pub const TAP_LIMIT: usize = 2000;

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// A site with a cheap video profile (a tenth of the real bitrates) and id = peer id.
    pub fn light_site(id: PeerId) -> SiteConfig {
        SiteConfig::new(id, site_addr(id)).scale_video(0.1)
    }

    /// Add a site with `config` as peer `id` of `meeting`: offer, add_peer, answer.
    pub fn add_site(
        &mut self,
        id: PeerId,
        meeting: MeetingId,
        config: SiteConfig,
    ) -> Result<(), MediaError> {
        self.add_site_viewing(id, meeting, config, None)
    }

    /// [`Sim::add_site`] with a view of its own (a console: `Some(24)`).
    pub fn add_site_viewing(
        &mut self,
        id: PeerId,
        meeting: MeetingId,
        config: SiteConfig,
        view: Option<usize>,
    ) -> Result<(), MediaError> {
        let setup = PeerSetup {
            receives: Receives::FirstJoined(view.unwrap_or(self.conf.config().view_size)),
            heard: true,
        };
        self.add_site_with(id, meeting, config, setup)
    }

    /// [`Sim::add_site`] as the meeting's rules set it up: what it receives, whether it is
    /// heard.
    pub fn add_site_with(
        &mut self,
        id: PeerId,
        meeting: MeetingId,
        config: SiteConfig,
        setup: PeerSetup,
    ) -> Result<(), MediaError> {
        let mut site = SyntheticSite::new(self.now, self.start, config);
        let offer = site.create_offer();
        self.by_addr.insert(site.config().local_addr, id);
        self.sites.insert(
            id,
            SimSite {
                site,
                meeting,
                frozen: false,
                downlink: None,
                offers_answered: 0,
                signaling_errors: Vec::new(),
                answer_sdp: None,
            },
        );
        let stream = format!("stream-{id}");
        let r = self
            .conf
            .add_peer_with(self.now, id, meeting, &stream, &offer, setup);
        if r.is_err() {
            self.sites.remove(&id);
        }
        self.pump();
        r
    }

    /// Remove peer `id` from the conference; its site is not told (it may keep sending).
    pub fn remove_site(&mut self, id: PeerId) -> Result<(), MediaError> {
        let r = self.conf.remove_peer(self.now, id);
        self.pump();
        r
    }

    pub fn site(&self, id: PeerId) -> &SyntheticSite {
        &self.sites[&id].site
    }

    pub fn site_mut(&mut self, id: PeerId) -> &mut SimSite {
        self.sites.get_mut(&id).expect("site")
    }

    /// A datagram from `from` to the server, as if it came off the wire now.
    pub fn inject_to_server(&mut self, from: SocketAddr, data: &[u8]) {
        self.conf.handle_receive(self.now, from, SERVER, data);
        self.pump();
    }

    pub fn connected(&self, id: PeerId) -> bool {
        self.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Connected(p) if *p == id))
    }

    pub fn closed(&self, id: PeerId) -> Option<(Instant, CloseReason)> {
        self.events.iter().find_map(|(t, e)| match e {
            Event::Closed(p, r) if *p == id => Some((*t, *r)),
            _ => None,
        })
    }

    /// Advance simulated time by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick();
        }
    }

    /// Advance until `cond` holds (true) or `limit` of simulated time passed (false).
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if cond(self) {
                return true;
            }
            self.tick();
        }
        cond(self)
    }

    /// One step: deliver what is due, run timers, write frames, move the output.
    pub fn tick(&mut self) {
        self.now += self.step;
        let now = self.now;
        while self.in_flight.front().is_some_and(|d| d.at <= now) {
            let d = self.in_flight.pop_front().expect("checked");
            self.delivered += 1;
            if d.to == SERVER {
                if let Some(tap) = self.tap.as_mut().filter(|t| t.len() < Self::TAP_LIMIT) {
                    tap.push((d.from, d.data.clone()));
                }
                self.conf.handle_receive(now, d.from, SERVER, &d.data);
            } else if let Some(id) = self.by_addr.get(&d.to) {
                if let Some(s) = self.sites.get_mut(id) {
                    if !s.frozen {
                        s.site.handle_receive(now, d.from, &d.data);
                    }
                }
            }
        }
        if self.conf.poll_timeout().is_some_and(|t| t <= now) {
            self.conf.handle_timeout(now);
        }
        for s in self.sites.values_mut() {
            if !s.frozen && s.site.poll_timeout() <= now {
                s.site.handle_timeout(now);
            }
        }
        self.pump();
    }

    /// Move everything the conference and the sites want sent, until nothing is left.
    pub fn pump(&mut self) {
        let now = self.now;
        let latency = self.step;
        loop {
            let mut moved = false;
            for s in self.sites.values_mut() {
                while let Some(t) = s.site.poll_transmit() {
                    moved = true;
                    if s.frozen {
                        continue;
                    }
                    let d = Datagram {
                        at: now + latency,
                        from: t.source,
                        to: t.destination,
                        data: t.contents.to_vec(),
                    };
                    let pos = self.in_flight.partition_point(|x| x.at <= d.at);
                    self.in_flight.insert(pos, d);
                }
            }
            while let Some(out) = self.conf.poll_output() {
                moved = true;
                match out {
                    Output::Transmit(t) => {
                        let mut at = now + latency;
                        let site = self
                            .by_addr
                            .get(&t.destination)
                            .and_then(|id| self.sites.get_mut(id));
                        if let Some(link) = site.and_then(|s| s.downlink.as_mut()) {
                            let begin = link.free_at.map_or(now, |f| f.max(now));
                            if begin - now > link.max_queue {
                                link.dropped += 1;
                                continue;
                            }
                            let bits = t.contents.len() as u64 * 8;
                            let free = begin + Duration::from_micros(bits * 1_000_000 / link.bps);
                            link.free_at = Some(free);
                            at = free + latency;
                        }
                        let d = Datagram {
                            at,
                            from: t.source,
                            to: t.destination,
                            data: t.contents.to_vec(),
                        };
                        let pos = self.in_flight.partition_point(|x| x.at <= d.at);
                        self.in_flight.insert(pos, d);
                    }
                    Output::Answer { peer, sdp } => {
                        if let Some(s) = self.sites.get_mut(&peer) {
                            s.answer_sdp = Some(sdp.clone());
                            if let Err(e) = s.site.handle_answer(now, &sdp) {
                                s.signaling_errors.push(format!("answer: {e}"));
                            }
                        }
                    }
                    Output::Offer { peer, seq, sdp } => {
                        if self.hold_offers {
                            self.held_offers.push((peer, seq, sdp));
                            continue;
                        }
                        self.answer_offer(peer, seq, &sdp);
                    }
                    Output::Connected { peer } => self.events.push((now, Event::Connected(peer))),
                    Output::PeerClosed { peer, reason } => {
                        self.events.push((now, Event::Closed(peer, reason)))
                    }
                    Output::Stats(s) => self.events.push((now, Event::Stats(s))),
                    Output::SendVideo { peer, on } => {
                        if let Some(s) = self.sites.get_mut(&peer) {
                            s.site.set_video_sending(on);
                        }
                        self.events.push((now, Event::SendVideo(peer, on)));
                    }
                    Output::UnheardSpeech { peer } => {
                        self.events.push((now, Event::UnheardSpeech(peer)));
                    }
                    Output::LinkInterrupted { peer, .. } => {
                        self.events.push((now, Event::Interrupted(peer)));
                    }
                    Output::LinkResumed { peer } => self.events.push((now, Event::Resumed(peer))),
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Let `peer`'s site answer a server offer, and give the answer to the conference.
    pub fn answer_offer(&mut self, peer: PeerId, seq: u64, sdp: &str) {
        let now = self.now;
        let Some(s) = self.sites.get_mut(&peer) else {
            return;
        };
        if s.frozen {
            return;
        }
        match s.site.handle_offer(now, sdp) {
            Ok(answer) => {
                s.offers_answered += 1;
                if let Err(e) = self.conf.handle_answer(now, peer, seq, &answer) {
                    self.events.push((now, Event::AnswerRefused(peer, e)));
                }
            }
            Err(e) => s.signaling_errors.push(format!("offer {seq}: {e}")),
        }
    }
}

/// Frames received so far by `rx` from `tx` (audio and video).
pub fn frames(sim: &Sim, rx: PeerId, tx: PeerId) -> u64 {
    let stream = format!("stream-{tx}");
    [MediaKind::Audio, MediaKind::Video]
        .iter()
        .filter_map(|k| sim.site(rx).track(&stream, *k))
        .map(|t| t.frames)
        .sum()
}

/// Media keeps flowing between every pair of `ids` for the next second.
pub fn assert_still_flowing(sim: &mut Sim, ids: &[PeerId]) {
    let pairs: Vec<(PeerId, PeerId)> = ids
        .iter()
        .flat_map(|a| ids.iter().filter(move |b| *b != a).map(move |b| (*a, *b)))
        .collect();
    let before: Vec<u64> = pairs.iter().map(|(rx, tx)| frames(sim, *rx, *tx)).collect();
    sim.run_for(Duration::from_secs(1));
    for ((rx, tx), b) in pairs.iter().zip(before) {
        let a = frames(sim, *rx, *tx);
        assert!(
            a >= b + 50,
            "site {rx} from {tx}: {b} -> {a} frames in a second"
        );
    }
    for id in ids {
        assert!(
            sim.closed(*id).is_none(),
            "site {id} closed: {:?}",
            sim.closed(*id)
        );
    }
}

/// Sites 1, 2 and 3 in meeting 1, light, connected.
pub fn three_sites() -> Sim {
    let mut sim = Sim::new(Config::default());
    for id in [1, 2, 3] {
        sim.add_site(id, 1, Sim::light_site(id)).expect("add");
    }
    sim.run_for(Duration::from_secs(2));
    assert!([1, 2, 3].iter().all(|id| sim.connected(*id)));
    sim
}

/// The server's ICE ufrag from its answer to `peer`.
pub fn server_ufrag(sim: &Sim, peer: PeerId) -> String {
    let sdp = sim.sites[&peer].answer_sdp.as_deref().expect("answer");
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("ice-ufrag")
        .to_string()
}

/// A small deterministic generator for garbage (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
