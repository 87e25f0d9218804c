//! The meeting during its course (Art. 7), as a state machine: which sites take part and are
//! connected, who holds the floor (C4), the speak requests (C8 → C3), the frame every screen
//! shows (C1), the technical parameters (P3) and the roll call.
//!
//! Commands come in, each from an account ([`Actor`]); a command is either refused with the
//! article that refuses it (and the state is unchanged) or applied, and the caller learns what
//! changed ([`Change`]). What the media core must do follows from the state: [`Meeting::hears`]
//! (forward this site's audio or drop it) and [`Meeting::videos_for`] (which videos a receiver
//! gets, at which size). Time is passed in; nothing here reads a clock or does IO, and the
//! whole state serializes, so that the hub can write it down and restore it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::booking::{BookingStatus, SiteId};
use crate::roles::{self, Action, Role, Scope};
use crate::{RuleId, Violation};

/// How many speak requests may wait at once: far more than a meeting hears.
pub const MAX_QUEUE: usize = 200;
/// How many delegates a site may report in its roll call.
pub const MAX_DELEGATES: usize = 300;
/// The longest name, position or reason accepted, in characters.
pub const MAX_TEXT: usize = 120;

labelled_enum! {
    /// The frame's layout, as MCUs name them: equal grids, one or two large cells with small
    /// ones, the floor holder large (*speaker*), or the chair large for everyone (*lecture*).
    pub enum Layout {
        One => "1x1", "1×1", "1×1";
        Grid2 => "2x2", "2×2", "2×2";
        Grid3 => "3x3", "3×3", "3×3";
        Grid4 => "4x4", "4×4", "4×4";
        OnePlus5 => "1+5", "1+5", "1+5";
        OnePlus7 => "1+7", "1+7", "1+7";
        TwoPlus8 => "2+8", "2+8", "2+8";
        OnePlus12 => "1+12", "1+12", "1+12";
        Speaker => "speaker", "Speaker large", "Người phát biểu ở ô lớn";
        Lecture => "lecture", "Lecture (the chair large)", "Giảng bài (chủ trì ở ô lớn)";
    }
}

/// How large a cell is on the screen, and so which simulcast layer it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellSize {
    Small,
    Medium,
    Large,
}

impl CellSize {
    /// The picture height a cell of this size needs on a 1080-line screen: the media core
    /// forwards the lowest layer at least this tall (or the tallest there is).
    pub fn height(self) -> u32 {
        match self {
            CellSize::Small => 180,
            CellSize::Medium => 360,
            CellSize::Large => 720,
        }
    }
}

impl Layout {
    /// The cells of the layout, largest first.
    pub fn cells(self) -> Vec<CellSize> {
        use CellSize::*;
        let with = |large: &[CellSize], small: usize| {
            let mut v = large.to_vec();
            v.extend(std::iter::repeat_n(Small, small));
            v
        };
        match self {
            Layout::One | Layout::Lecture => vec![Large],
            Layout::Grid2 => vec![Medium; 4],
            Layout::Grid3 => vec![Small; 9],
            Layout::Grid4 => vec![Small; 16],
            Layout::OnePlus5 => with(&[Large], 5),
            Layout::OnePlus7 | Layout::Speaker => with(&[Large], 7),
            Layout::TwoPlus8 => with(&[Medium, Medium], 8),
            Layout::OnePlus12 => with(&[Large], 12),
        }
    }

    /// Whether the control center places the sites itself; *speaker* and *lecture* fill
    /// themselves from the floor.
    pub fn placed_by_hand(self) -> bool {
        !matches!(self, Layout::Speaker | Layout::Lecture)
    }
}

/// Who is in which cell: placed by the control center, or filled from the floor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "cells", rename_all = "snake_case")]
pub enum Fill {
    /// The floor holders first, then the chair's site, then the other connected sites in the
    /// order they connected.
    FloorOrder,
    /// One entry per cell, largest cell first; `None` is an empty cell.
    Manual(Vec<Option<SiteId>>),
}

/// The frame set by the control center (C1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub layout: Layout,
    pub fill: Fill,
}

/// The meeting's technical parameters (P3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// The tallest picture any site sends (lines): 360, 540, 720 or 1080.
    pub max_height: u32,
    /// The most a site sends, in kbit/s (100 to 8000).
    pub max_kbps: u32,
    /// In *lecture*, the chair sees the other sites a page at a time, this many seconds each
    /// (5 to 600).
    pub rotate_secs: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_height: 720,
            max_kbps: 2000,
            rotate_secs: 20,
        }
    }
}

/// Where a speak request is (C8 → C3 → the chair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Sent by the site; waiting at the control center.
    Waiting,
    /// Passed on to the chair by the control center (C3).
    Passed,
}

/// A delegate's request to speak, sent by the site's technician (C8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakRequest {
    pub id: u64,
    pub site: SiteId,
    pub delegate: String,
    pub position: String,
    pub at: DateTime<Utc>,
    pub state: RequestState,
}

/// A delegate named in a roll call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegate {
    pub name: String,
    #[serde(default)]
    pub position: String,
    /// Why the delegate is absent; empty for a delegate present.
    #[serde(default)]
    pub reason: String,
}

/// A site's roll call: who is there and who is not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollCall {
    pub present: Vec<Delegate>,
    pub absent: Vec<Delegate>,
    pub at: DateTime<Utc>,
}

/// The account a command comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub role: Role,
    pub scope: Scope,
}

/// What the chair and the control center (and the sites, for their own requests and roll call)
/// ask of the meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// The control center adds a site of the province to the meeting (C6).
    AddSite { site: SiteId },
    /// The control center drops a site: its floor, requests and cells go with it (C6).
    DropSite { site: SiteId },
    /// The chair (or the control center for it) calls on a site (C4). Without a debate, the
    /// site that held the floor gives it up.
    GiveFloor { site: SiteId },
    /// The floor back from one site (C4).
    TakeFloor { site: SiteId },
    /// Every microphone closed (C4).
    CloseAll,
    /// Several sites may hold the floor at once (a debate).
    SetDebate { on: bool },
    /// Only the chair's site speaks (C4).
    SetLecture { on: bool },
    /// A site's technician asks the floor for a delegate (C8).
    RequestFloor {
        site: SiteId,
        delegate: String,
        #[serde(default)]
        position: String,
    },
    /// The site takes back its own request.
    Withdraw { request: u64 },
    /// The control center passes a request on to the chair (C3).
    Pass { request: u64 },
    /// The chair grants a request: the site gets the floor (C4).
    Grant { request: u64 },
    /// The chair declines a request.
    Decline { request: u64 },
    /// The chair clears every request.
    ClearRequests,
    /// The control center sets the frame of every screen (C1).
    SetFrame { frame: Frame },
    /// The control center sets the technical parameters (P3).
    SetParams { params: Params },
    /// A site's technician reports the delegates present and absent.
    ReportRollCall {
        site: SiteId,
        present: Vec<Delegate>,
        absent: Vec<Delegate>,
    },
}

/// What a command or an event changed, for the hub to tell the pages and the media core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Which sites take part or are connected.
    Sites,
    /// Who holds the floor, the debate or the lecture mode: audio forwarding changes.
    Floor,
    /// The speak requests.
    Queue,
    /// The frame (and so the videos each receiver gets).
    Frame,
    Params,
    RollCall,
}

/// A site of the meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub site: SiteId,
    /// Since when it is connected; `None` while it is not.
    pub connected_since: Option<DateTime<Utc>>,
    /// Its place in the order of connection (for *floor order*).
    pub order: u64,
}

/// A meeting's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// The chair's site (the booking's host site).
    pub chair_site: SiteId,
    /// Whether the chair's site is heard without holding the floor (a setting).
    pub chair_always_heard: bool,
    pub participants: BTreeMap<SiteId, Participant>,
    /// The floor holders, in the order they were given the floor.
    pub floor: Vec<SiteId>,
    pub debate: bool,
    pub lecture: bool,
    /// When the lecture began (the chair's rotation counts from it).
    pub lecture_since: Option<DateTime<Utc>>,
    pub queue: Vec<SpeakRequest>,
    pub frame: Frame,
    pub params: Params,
    pub roll_call: BTreeMap<SiteId, RollCall>,
    /// The sites' names, for the refusals' messages (the hub fills it; an id stands in for a
    /// name it lacks).
    #[serde(default)]
    pub names: BTreeMap<SiteId, String>,
    next_request: u64,
    next_order: u64,
}

/// What a receiver shows: its layout and who is in each cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    pub layout: Layout,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub site: Option<SiteId>,
    pub size: CellSize,
}

fn refuse(rule: RuleId, code: &'static str, en: String, vi: String) -> Violation {
    let en = format!("{en} ({}).", rule.article_en());
    let vi = format!("{vi} ({}).", rule.article_vi());
    Violation::new(rule, code, en, vi)
}

/// A name, position or reason as typed: trimmed, on one line, at most [`MAX_TEXT`] characters.
/// `field` names it in English and in Vietnamese, for the refusal.
fn text(field: (&str, &str), s: &str, required: bool) -> Result<String, Violation> {
    let (en, vi) = field;
    let s = s.trim();
    if required && s.is_empty() {
        return Err(Violation::new(
            RuleId::A1,
            "missing_field",
            format!("{en}: required"),
            format!("{vi}: bắt buộc nhập"),
        ));
    }
    if s.chars().count() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(Violation::new(
            RuleId::A1,
            "bad_field",
            format!("{en}: at most {MAX_TEXT} characters, on one line"),
            format!("{vi}: tối đa {MAX_TEXT} ký tự, trên một dòng"),
        ));
    }
    Ok(s.to_string())
}

const DELEGATE: (&str, &str) = ("delegate", "Họ tên đại biểu");
const POSITION: (&str, &str) = ("position", "Chức vụ");
const NAME: (&str, &str) = ("name", "Họ tên đại biểu");
const REASON: (&str, &str) = ("reason", "Lý do vắng mặt");

impl Meeting {
    /// A meeting of `sites` (the booking's sites; the chair's site and the control center
    /// among them), nobody connected yet, every microphone closed, the frame filled from the
    /// floor in `layout`.
    pub fn new(chair_site: SiteId, sites: &[SiteId], layout: Layout) -> Meeting {
        let mut m = Meeting {
            chair_site,
            chair_always_heard: true,
            participants: BTreeMap::new(),
            floor: Vec::new(),
            debate: false,
            lecture: false,
            lecture_since: None,
            queue: Vec::new(),
            frame: Frame {
                layout,
                fill: Fill::FloorOrder,
            },
            params: Params::default(),
            roll_call: BTreeMap::new(),
            names: BTreeMap::new(),
            next_request: 1,
            next_order: 0,
        };
        for &s in sites.iter().chain([&chair_site]) {
            m.participants.entry(s).or_insert(Participant {
                site: s,
                connected_since: None,
                order: u64::MAX,
            });
        }
        m
    }

    /// How the refusals name `site`: its name, or its id.
    pub fn name(&self, site: SiteId) -> String {
        self.names
            .get(&site)
            .cloned()
            .unwrap_or_else(|| site.to_string())
    }

    /// Whether `site`'s media is connected now.
    pub fn is_connected(&self, site: SiteId) -> bool {
        self.participants
            .get(&site)
            .is_some_and(|p| p.connected_since.is_some())
    }

    /// The sites connected now, in the order they connected.
    pub fn connected(&self) -> Vec<SiteId> {
        let mut v: Vec<&Participant> = self
            .participants
            .values()
            .filter(|p| p.connected_since.is_some())
            .collect();
        v.sort_by_key(|p| (p.order, p.site));
        v.into_iter().map(|p| p.site).collect()
    }

    /// The hub: a site of the meeting connected. A site not in the meeting may not (C6).
    pub fn site_connected(
        &mut self,
        site: SiteId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, Violation> {
        let order = self.next_order;
        let name = self.name(site);
        let p = self.participants.get_mut(&site).ok_or_else(|| {
            refuse(
                RuleId::C6,
                "not_in_meeting",
                format!("Site {name} is not a site of this meeting: the control center adds it first"),
                format!("Điểm cầu {name} không thuộc cuộc họp này: Trung tâm điều khiển phải thêm điểm cầu trước"),
            )
        })?;
        if p.connected_since.is_some() {
            return Ok(Vec::new());
        }
        p.connected_since = Some(now);
        p.order = order;
        self.next_order += 1;
        Ok(vec![Change::Sites, Change::Frame])
    }

    /// The hub: a site's connection ended. It keeps the floor and its requests (a line that
    /// drops for a moment does not undo the chair's decision), but is not heard until it is back.
    pub fn site_disconnected(&mut self, site: SiteId) -> Vec<Change> {
        match self.participants.get_mut(&site) {
            Some(p) if p.connected_since.is_some() => {
                p.connected_since = None;
                vec![Change::Sites, Change::Floor, Change::Frame]
            }
            _ => Vec::new(),
        }
    }

    /// The meeting as it comes back after the server restarted: its course kept (the floor,
    /// the frame, the speak requests, the roll call, the parameters), every site not connected
    /// until its app connects again.
    pub fn after_restart(&mut self) {
        for p in self.participants.values_mut() {
            p.connected_since = None;
        }
    }

    /// C4: whether the media core forwards `site`'s audio now.
    pub fn hears(&self, site: SiteId) -> bool {
        if !self.is_connected(site) {
            return false;
        }
        if self.lecture {
            return site == self.chair_site;
        }
        self.floor.contains(&site) || (self.chair_always_heard && site == self.chair_site)
    }

    /// Applies `cmd` from `actor` at `now`: what changed, or the refusal (and nothing changed).
    pub fn apply(
        &mut self,
        actor: Actor,
        cmd: Command,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, Violation> {
        let may = |action: Action<'_>| roles::authorize(actor.role, actor.scope, &action);
        let floor = Action::ControlFloor {
            host_site: self.chair_site,
        };
        match cmd {
            Command::AddSite { site } => {
                may(Action::DialSite)?;
                if self.participants.contains_key(&site) {
                    return Ok(Vec::new());
                }
                self.participants.insert(
                    site,
                    Participant {
                        site,
                        connected_since: None,
                        order: u64::MAX,
                    },
                );
                Ok(vec![Change::Sites])
            }
            Command::DropSite { site } => {
                may(Action::DialSite)?;
                self.participant(site)?;
                if site == self.chair_site {
                    return Err(refuse(
                        RuleId::C6,
                        "chair_site",
                        "The chair's site cannot be dropped from its own meeting".into(),
                        "Không thể đưa điểm cầu chủ trì ra khỏi cuộc họp của mình".into(),
                    ));
                }
                self.participants.remove(&site);
                self.floor.retain(|s| *s != site);
                self.queue.retain(|r| r.site != site);
                self.roll_call.remove(&site);
                if let Fill::Manual(cells) = &mut self.frame.fill {
                    for c in cells.iter_mut().filter(|c| **c == Some(site)) {
                        *c = None;
                    }
                }
                Ok(vec![
                    Change::Sites,
                    Change::Floor,
                    Change::Queue,
                    Change::Frame,
                    Change::RollCall,
                ])
            }
            Command::GiveFloor { site } => {
                may(floor)?;
                self.give_floor(site)
            }
            Command::TakeFloor { site } => {
                may(floor)?;
                if !self.floor.contains(&site) {
                    return Err(refuse(
                        RuleId::C4,
                        "not_holding_floor",
                        format!("Site {} does not hold the floor", self.name(site)),
                        format!("Điểm cầu {} không đang được phát biểu", self.name(site)),
                    ));
                }
                self.floor.retain(|s| *s != site);
                Ok(vec![Change::Floor, Change::Frame])
            }
            Command::CloseAll => {
                may(floor)?;
                self.floor.clear();
                Ok(vec![Change::Floor, Change::Frame])
            }
            Command::SetDebate { on } => {
                may(floor)?;
                self.debate = on;
                if !on && self.floor.len() > 1 {
                    // The last one called on keeps the floor.
                    self.floor.drain(..self.floor.len() - 1);
                }
                Ok(vec![Change::Floor, Change::Frame])
            }
            Command::SetLecture { on } => {
                may(floor)?;
                if self.lecture == on {
                    return Ok(Vec::new());
                }
                self.lecture = on;
                self.lecture_since = on.then_some(now);
                if on {
                    self.floor.clear();
                }
                Ok(vec![Change::Floor, Change::Frame])
            }
            Command::RequestFloor {
                site,
                delegate,
                position,
            } => {
                may(Action::RequestFloor { site })?;
                self.connected_site(site)?;
                let delegate = text(DELEGATE, &delegate, true)?;
                let position = text(POSITION, &position, false)?;
                if self
                    .queue
                    .iter()
                    .any(|r| r.site == site && r.delegate.to_lowercase() == delegate.to_lowercase())
                {
                    return Err(refuse(
                        RuleId::C8,
                        "already_requested",
                        format!(
                            "{delegate} of site {} has already asked for the floor",
                            self.name(site)
                        ),
                        format!(
                            "{delegate} của điểm cầu {} đã đăng ký phát biểu",
                            self.name(site)
                        ),
                    ));
                }
                if self.queue.len() >= MAX_QUEUE {
                    return Err(refuse(
                        RuleId::C8,
                        "queue_full",
                        format!("{MAX_QUEUE} speak requests are waiting already"),
                        format!("Đã có {MAX_QUEUE} đăng ký phát biểu đang chờ"),
                    ));
                }
                let id = self.next_request;
                self.next_request += 1;
                self.queue.push(SpeakRequest {
                    id,
                    site,
                    delegate,
                    position,
                    at: now,
                    state: RequestState::Waiting,
                });
                Ok(vec![Change::Queue])
            }
            Command::Withdraw { request } => {
                let site = self.request(request)?.site;
                may(Action::RequestFloor { site })?;
                self.queue.retain(|r| r.id != request);
                Ok(vec![Change::Queue])
            }
            Command::Pass { request } => {
                may(Action::PassSpeakRequest)?;
                let r = self.request(request)?;
                if r.state == RequestState::Passed {
                    return Ok(Vec::new());
                }
                let i = self.index_of(request);
                self.queue[i].state = RequestState::Passed;
                Ok(vec![Change::Queue])
            }
            Command::Grant { request } => {
                may(floor)?;
                let site = self.request(request)?.site;
                let mut changes = self.give_floor(site)?;
                self.queue.retain(|r| r.id != request);
                changes.push(Change::Queue);
                Ok(changes)
            }
            Command::Decline { request } => {
                may(floor)?;
                self.request(request)?;
                self.queue.retain(|r| r.id != request);
                Ok(vec![Change::Queue])
            }
            Command::ClearRequests => {
                may(floor)?;
                self.queue.clear();
                Ok(vec![Change::Queue])
            }
            Command::SetFrame { frame } => {
                may(Action::SetFrame)?;
                self.check_frame(&frame)?;
                self.frame = frame;
                Ok(vec![Change::Frame])
            }
            Command::SetParams { params } => {
                may(Action::SetFrame).map_err(|v| Violation {
                    rule: RuleId::P3,
                    article: RuleId::P3.article(),
                    ..v
                })?;
                check_params(&params)?;
                self.params = params;
                Ok(vec![Change::Params])
            }
            Command::ReportRollCall {
                site,
                present,
                absent,
            } => {
                may(Action::ReportAttendance { site })?;
                self.participant(site)?;
                if present.len() + absent.len() > MAX_DELEGATES {
                    return Err(Violation::new(
                        RuleId::A1,
                        "bad_field",
                        format!("at most {MAX_DELEGATES} delegates per site"),
                        format!("tối đa {MAX_DELEGATES} đại biểu mỗi điểm cầu"),
                    ));
                }
                let clean = |d: &Delegate, absent: bool| -> Result<Delegate, Violation> {
                    Ok(Delegate {
                        name: text(NAME, &d.name, true)?,
                        position: text(POSITION, &d.position, false)?,
                        reason: if absent {
                            text(REASON, &d.reason, true)?
                        } else {
                            String::new()
                        },
                    })
                };
                let present = present
                    .iter()
                    .map(|d| clean(d, false))
                    .collect::<Result<Vec<_>, _>>()?;
                let absent = absent
                    .iter()
                    .map(|d| clean(d, true))
                    .collect::<Result<Vec<_>, _>>()?;
                self.roll_call.insert(
                    site,
                    RollCall {
                        present,
                        absent,
                        at: now,
                    },
                );
                Ok(vec![Change::RollCall])
            }
        }
    }

    fn participant(&self, site: SiteId) -> Result<&Participant, Violation> {
        self.participants.get(&site).ok_or_else(|| {
            refuse(
                RuleId::C6,
                "not_in_meeting",
                format!("Site {} is not a site of this meeting", self.name(site)),
                format!("Điểm cầu {} không thuộc cuộc họp này", self.name(site)),
            )
        })
    }

    fn connected_site(&self, site: SiteId) -> Result<(), Violation> {
        if self.participant(site)?.connected_since.is_none() {
            return Err(refuse(
                RuleId::C4,
                "not_connected",
                format!("Site {} is not connected", self.name(site)),
                format!("Điểm cầu {} chưa kết nối", self.name(site)),
            ));
        }
        Ok(())
    }

    fn request(&self, id: u64) -> Result<&SpeakRequest, Violation> {
        self.queue.iter().find(|r| r.id == id).ok_or_else(|| {
            refuse(
                RuleId::C3,
                "no_such_request",
                format!("No speak request {id} is waiting"),
                format!("Không có đăng ký phát biểu số {id} đang chờ"),
            )
        })
    }

    fn index_of(&self, id: u64) -> usize {
        self.queue.iter().position(|r| r.id == id).unwrap_or(0)
    }

    fn give_floor(&mut self, site: SiteId) -> Result<Vec<Change>, Violation> {
        self.connected_site(site)?;
        if self.lecture && site != self.chair_site {
            return Err(refuse(
                RuleId::C4,
                "lecture",
                "In a lecture only the chair's site speaks: end the lecture first".into(),
                "Đang ở chế độ giảng bài, chỉ điểm cầu chủ trì phát biểu: hãy kết thúc chế độ này trước".into(),
            ));
        }
        if self.floor.last() == Some(&site) {
            return Ok(Vec::new());
        }
        self.floor.retain(|s| *s != site);
        if !self.debate {
            self.floor.clear();
        }
        self.floor.push(site);
        Ok(vec![Change::Floor, Change::Frame])
    }

    fn check_frame(&self, frame: &Frame) -> Result<(), Violation> {
        let Fill::Manual(cells) = &frame.fill else {
            return Ok(());
        };
        let bad = |en: String, vi: String| refuse(RuleId::C1, "bad_frame", en, vi);
        if !frame.layout.placed_by_hand() {
            return Err(bad(
                format!("The {} layout fills itself from the floor", frame.layout),
                format!(
                    "Bố cục {} tự xếp theo người phát biểu",
                    frame.layout.label_vi()
                ),
            ));
        }
        let n = frame.layout.cells().len();
        if cells.len() > n {
            return Err(bad(
                format!(
                    "{} sites for the {} cells of {}",
                    cells.len(),
                    n,
                    frame.layout
                ),
                format!(
                    "{} điểm cầu cho {} ô của bố cục {}",
                    cells.len(),
                    n,
                    frame.layout.label_vi()
                ),
            ));
        }
        let mut seen = Vec::new();
        for site in cells.iter().flatten() {
            if !self.participants.contains_key(site) {
                return Err(bad(
                    format!("Site {} is not a site of this meeting", self.name(*site)),
                    format!("Điểm cầu {} không thuộc cuộc họp này", self.name(*site)),
                ));
            }
            if seen.contains(site) {
                return Err(bad(
                    format!("Site {} is in two cells", self.name(*site)),
                    format!("Điểm cầu {} nằm ở hai ô", self.name(*site)),
                ));
            }
            seen.push(*site);
        }
        Ok(())
    }

    /// The sites in *floor order*: the floor holders (the last called on first), then the
    /// chair's site, then the others connected, in the order they connected.
    fn floor_order(&self) -> Vec<SiteId> {
        let mut v: Vec<SiteId> = (self.floor.iter().rev())
            .filter(|s| self.is_connected(**s))
            .copied()
            .collect();
        for s in [self.chair_site].into_iter().chain(self.connected()) {
            if !v.contains(&s) && self.is_connected(s) {
                v.push(s);
            }
        }
        v
    }

    /// What `receiver` shows now: the frame of every screen (C1), except in *lecture*, where
    /// the chair's site sees the others a page of nine at a time.
    pub fn view_for(&self, receiver: SiteId, now: DateTime<Utc>) -> View {
        let layout = self.frame.layout;
        let fill = |layout: Layout, sites: &[SiteId]| View {
            layout,
            cells: layout
                .cells()
                .into_iter()
                .enumerate()
                .map(|(i, size)| Cell {
                    site: sites.get(i).copied(),
                    size,
                })
                .collect(),
        };
        match (layout, &self.frame.fill) {
            (Layout::Lecture, _) if receiver == self.chair_site => {
                let others: Vec<SiteId> = self
                    .connected()
                    .into_iter()
                    .filter(|s| *s != self.chair_site)
                    .collect();
                let page = 9;
                let pages = others.len().div_ceil(page).max(1);
                let since = self.lecture_since.unwrap_or(now);
                let step = i64::from(self.params.rotate_secs.max(1));
                let i =
                    usize::try_from((now - since).num_seconds().max(0) / step).unwrap_or(0) % pages;
                let shown: Vec<SiteId> = others.iter().skip(i * page).take(page).copied().collect();
                fill(Layout::Grid3, &shown)
            }
            (Layout::Lecture, _) => fill(Layout::Lecture, &[self.chair_site]),
            (l, Fill::Manual(cells)) if l.placed_by_hand() => View {
                layout: l,
                cells: l
                    .cells()
                    .into_iter()
                    .enumerate()
                    .map(|(i, size)| Cell {
                        site: cells.get(i).copied().flatten(),
                        size,
                    })
                    .collect(),
            },
            (l, _) => fill(l, &self.floor_order()),
        }
    }

    /// The videos the media core forwards to `receiver`: the sites of its view but itself,
    /// connected, each at the size of its cell. Nothing of a site on no cell.
    pub fn videos_for(&self, receiver: SiteId, now: DateTime<Utc>) -> Vec<(SiteId, CellSize)> {
        self.view_for(receiver, now)
            .cells
            .into_iter()
            .filter_map(|c| Some((c.site?, c.size)))
            .filter(|(s, _)| *s != receiver && self.is_connected(*s))
            .collect()
    }
}

fn check_params(p: &Params) -> Result<(), Violation> {
    let bad = |en: String, vi: String| refuse(RuleId::P3, "bad_params", en, vi);
    if ![360, 540, 720, 1080].contains(&p.max_height) {
        return Err(bad(
            format!("max_height {}: one of 360, 540, 720, 1080", p.max_height),
            format!(
                "Độ phân giải tối đa {}: chọn 360, 540, 720 hoặc 1080",
                p.max_height
            ),
        ));
    }
    if !(100..=8000).contains(&p.max_kbps) {
        return Err(bad(
            format!("max_kbps {}: from 100 to 8000", p.max_kbps),
            format!("Tốc độ tối đa {} kbit/s: từ 100 đến 8.000", p.max_kbps),
        ));
    }
    if !(5..=600).contains(&p.rotate_secs) {
        return Err(bad(
            format!("rotate_secs {}: from 5 to 600", p.rotate_secs),
            format!("Thời gian luân phiên {} giây: từ 5 đến 600", p.rotate_secs),
        ));
    }
    Ok(())
}

/// R4 for C4: a site that sends audio with energy while it does not hold the floor is
/// recorded, at most once a minute per site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MicGuard {
    last: BTreeMap<SiteId, DateTime<Utc>>,
}

impl MicGuard {
    /// The violation to record, if `site` spoke unheard at `now` and was not recorded in the
    /// last minute.
    pub fn unheard_speech(
        &mut self,
        site: SiteId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Option<Violation> {
        if let Some(t) = self.last.get(&site) {
            if now.signed_duration_since(*t) < chrono::TimeDelta::seconds(60) {
                return None;
            }
        }
        self.last.insert(site, now);
        Some(refuse(
            RuleId::C4,
            "microphone_without_floor",
            format!("Site {name} opened its microphone without the floor"),
            format!("Điểm cầu {name} mở micro khi chưa được mời phát biểu"),
        ))
    }
}

/// How long before a booking's preparation time its meeting may be opened: a day's margin for
/// an early test run (P2), never the day before.
pub const OPEN_EARLY: chrono::TimeDelta = chrono::TimeDelta::hours(12);
/// How long after a booking's official end its meeting may still be opened (it ran late, or
/// it was interrupted and is opened again).
pub const OPEN_LATE: chrono::TimeDelta = chrono::TimeDelta::hours(6);

/// B4, Art. 5.2: whether the meeting of a booking in `status`, prepared from `preparation` to
/// `end`, may be opened at `now`: only a confirmed registration (approved, or held already and
/// opened again after an interruption), on its day.
pub fn check_opening(
    status: BookingStatus,
    preparation: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), Violation> {
    if !matches!(status, BookingStatus::Approved | BookingStatus::Held) {
        return Err(refuse(
            RuleId::B4,
            "not_approved",
            format!(
                "Only an approved booking becomes a meeting; this one is {}",
                status.label_en().to_lowercase()
            ),
            format!(
                "Chỉ đăng ký đã được duyệt mới được mở cuộc họp; đăng ký này đang ở trạng thái \"{}\"",
                status.label_vi()
            ),
        ));
    }
    if now < preparation - OPEN_EARLY {
        return Err(refuse(
            RuleId::B4,
            "too_early",
            "The meeting opens on its day, at most 12 hours before its preparation time".into(),
            "Cuộc họp chỉ được mở trong ngày họp, sớm nhất 12 giờ trước giờ chuẩn bị".into(),
        ));
    }
    if now > end + OPEN_LATE {
        return Err(refuse(
            RuleId::B4,
            "too_late",
            "The meeting's time is over: register a new booking".into(),
            "Đã quá thời gian của cuộc họp: hãy đăng ký cuộc họp mới".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const CC: SiteId = 1; // the control center
    const CHAIR: SiteId = 2; // the chair's site
    const A: SiteId = 3;
    const B: SiteId = 4;
    const OUT: SiteId = 9; // not in the meeting

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_796_000_000 + s, 0).unwrap()
    }

    fn actor(label: &str) -> Actor {
        let (role, scope) = match label {
            "operator" => (Role::Operator, Scope::Province),
            "admin" => (Role::Admin, Scope::Province),
            "chair" => (Role::Chair, Scope::Site(CHAIR)),
            "chair_a" => (Role::Chair, Scope::Site(A)),
            "tech_a" => (Role::SiteTechnician, Scope::Site(A)),
            "device_a" => (Role::SiteDevice, Scope::Site(A)),
            "device_b" => (Role::SiteDevice, Scope::Site(B)),
            "organizer" => (Role::Organizer, Scope::Unit(1)),
            "leadership" => (Role::Leadership, Scope::Province),
            "provider" => (Role::ProviderTechnician, Scope::Province),
            _ => unreachable!("{label}"),
        };
        Actor { role, scope }
    }

    /// CC, CHAIR, A and B in the meeting, all connected in that order.
    fn meeting() -> Meeting {
        let mut m = Meeting::new(CHAIR, &[CC, A, B], Layout::OnePlus7);
        for (i, s) in [CC, CHAIR, A, B].into_iter().enumerate() {
            m.site_connected(s, t(i as i64)).unwrap();
        }
        m
    }

    fn ask(delegate: &str) -> Command {
        Command::RequestFloor {
            site: A,
            delegate: delegate.into(),
            position: "Phó Chủ tịch UBND huyện".into(),
        }
    }

    #[test]
    fn every_microphone_starts_closed_but_the_chairs() {
        let mut m = meeting();
        assert_eq!(
            [CC, CHAIR, A, B].map(|s| m.hears(s)),
            [false, true, false, false]
        );
        m.chair_always_heard = false;
        assert!(!m.hears(CHAIR));
    }

    #[test]
    fn after_a_restart_the_course_stays_and_nobody_is_connected() {
        let mut m = meeting();
        let op = actor("operator");
        m.apply(op, Command::GiveFloor { site: A }, t(10)).unwrap();
        m.apply(actor("device_b"), ask_b("Bà Võ Thị Em"), t(11))
            .unwrap();
        // Written as JSON and read back, as the hub and the database do.
        let mut back: Meeting = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        back.after_restart();
        assert_eq!(
            (&back.floor, &back.queue, &back.frame),
            (&m.floor, &m.queue, &m.frame)
        );
        assert!([CC, CHAIR, A, B].iter().all(|s| !back.is_connected(*s)));
        assert!(!back.hears(A), "nobody is heard before coming back");
        back.site_connected(A, t(20)).unwrap();
        assert!(back.hears(A), "A holds the floor again once connected");
    }

    fn ask_b(delegate: &str) -> Command {
        Command::RequestFloor {
            site: B,
            delegate: delegate.into(),
            position: String::new(),
        }
    }

    /// Every command × actor: allowed, or refused with its rule; a refusal changes nothing.
    #[test]
    fn who_may_give_each_command() {
        use Command as C;
        let frame = Frame {
            layout: Layout::Grid2,
            fill: Fill::Manual(vec![Some(A), Some(B)]),
        };
        let roll = C::ReportRollCall {
            site: A,
            present: vec![Delegate {
                name: "Ông Nguyễn Văn A".into(),
                position: String::new(),
                reason: String::new(),
            }],
            absent: vec![],
        };
        // (command, actors allowed, the rule refusing the others)
        let table: Vec<(C, &str, RuleId)> = vec![
            (C::AddSite { site: OUT }, "operator admin", RuleId::C6),
            (C::DropSite { site: B }, "operator admin", RuleId::C6),
            (C::GiveFloor { site: A }, "operator admin chair", RuleId::C4),
            (C::CloseAll, "operator admin chair", RuleId::C4),
            (
                C::SetDebate { on: true },
                "operator admin chair",
                RuleId::C4,
            ),
            (
                C::SetLecture { on: true },
                "operator admin chair",
                RuleId::C4,
            ),
            (
                ask("Ông A"),
                "operator admin chair_a tech_a device_a",
                RuleId::C8,
            ),
            (C::ClearRequests, "operator admin chair", RuleId::C4),
            (C::SetFrame { frame }, "operator admin", RuleId::C1),
            (
                C::SetParams {
                    params: Params::default(),
                },
                "operator admin",
                RuleId::P3,
            ),
            (roll, "operator admin tech_a device_a", RuleId::A1),
        ];
        let all = [
            "operator",
            "admin",
            "chair",
            "chair_a",
            "tech_a",
            "device_a",
            "device_b",
            "organizer",
            "leadership",
            "provider",
        ];
        for (cmd, allowed, rule) in table {
            for who in all {
                let mut m = meeting();
                let before = m.clone();
                let r = m.apply(actor(who), cmd.clone(), t(10));
                if allowed.split(' ').any(|a| a == who) {
                    assert!(r.is_ok(), "{who} {cmd:?}: {r:?}");
                } else {
                    let v = r.expect_err(&format!("{who} {cmd:?} allowed"));
                    assert_eq!((v.rule, v.code), (rule, "not_permitted"), "{who} {cmd:?}");
                    assert_eq!(v.article, rule.article());
                    assert_eq!(m, before, "{who} {cmd:?} changed the meeting");
                }
            }
        }
    }

    #[test]
    fn the_floor_opens_and_closes_the_microphone() {
        let mut m = meeting();
        let chair = actor("chair");
        assert_eq!(
            m.apply(chair, Command::GiveFloor { site: A }, t(10)),
            Ok(vec![Change::Floor, Change::Frame])
        );
        assert!(m.hears(A) && !m.hears(B));
        // Without a debate, calling on B closes A.
        m.apply(chair, Command::GiveFloor { site: B }, t(11))
            .unwrap();
        assert!(!m.hears(A) && m.hears(B));
        // Giving it again changes nothing.
        assert_eq!(
            m.apply(chair, Command::GiveFloor { site: B }, t(12)),
            Ok(vec![])
        );
        // A debate: both speak; ending it keeps the last one called on.
        m.apply(chair, Command::SetDebate { on: true }, t(13))
            .unwrap();
        m.apply(chair, Command::GiveFloor { site: A }, t(14))
            .unwrap();
        assert!(m.hears(A) && m.hears(B));
        m.apply(chair, Command::SetDebate { on: false }, t(15))
            .unwrap();
        assert_eq!(m.floor, vec![A]);
        m.apply(chair, Command::TakeFloor { site: A }, t(16))
            .unwrap();
        assert!(!m.hears(A));
        let v = m
            .apply(chair, Command::TakeFloor { site: A }, t(17))
            .unwrap_err();
        assert_eq!((v.rule, v.code), (RuleId::C4, "not_holding_floor"));
        // Close every microphone: the chair's site is still heard (a setting).
        m.apply(chair, Command::GiveFloor { site: B }, t(18))
            .unwrap();
        m.apply(chair, Command::CloseAll, t(19)).unwrap();
        assert_eq!([A, B, CHAIR].map(|s| m.hears(s)), [false, false, true]);
    }

    #[test]
    fn the_floor_only_to_a_connected_site_of_the_meeting() {
        let mut m = meeting();
        m.site_disconnected(B);
        let op = actor("operator");
        for (site, code, rule) in [
            (B, "not_connected", RuleId::C4),
            (OUT, "not_in_meeting", RuleId::C6),
        ] {
            let before = m.clone();
            let v = m.apply(op, Command::GiveFloor { site }, t(10)).unwrap_err();
            assert_eq!((v.rule, v.code), (rule, code), "{site}");
            assert_eq!(m, before);
        }
        // A holder whose line drops keeps the floor but is not heard until it is back.
        m.apply(op, Command::GiveFloor { site: A }, t(11)).unwrap();
        m.site_disconnected(A);
        assert!(!m.hears(A) && m.floor == vec![A]);
        m.site_connected(A, t(12)).unwrap();
        assert!(m.hears(A));
        let v = m.site_connected(OUT, t(13)).unwrap_err();
        assert_eq!((v.rule, v.code), (RuleId::C6, "not_in_meeting"));
    }

    #[test]
    fn in_a_lecture_only_the_chair_speaks() {
        let mut m = meeting();
        let chair = actor("chair");
        m.apply(chair, Command::GiveFloor { site: A }, t(10))
            .unwrap();
        m.chair_always_heard = false;
        m.apply(chair, Command::SetLecture { on: true }, t(11))
            .unwrap();
        assert!(m.hears(CHAIR) && !m.hears(A) && m.floor.is_empty());
        let v = m
            .apply(chair, Command::GiveFloor { site: A }, t(12))
            .unwrap_err();
        assert_eq!((v.rule, v.code), (RuleId::C4, "lecture"));
        m.apply(chair, Command::SetLecture { on: false }, t(13))
            .unwrap();
        assert!(!m.hears(CHAIR));
        m.apply(chair, Command::GiveFloor { site: A }, t(14))
            .unwrap();
        assert!(m.hears(A));
    }

    #[test]
    fn speak_requests_go_from_the_site_through_the_control_center_to_the_chair() {
        let mut m = meeting();
        let (site, op, chair) = (actor("device_a"), actor("operator"), actor("chair"));
        m.apply(site, ask("Ông Lê Văn C"), t(10)).unwrap();
        m.apply(site, ask("Bà Trần Thị D"), t(11)).unwrap();
        assert_eq!(
            m.queue
                .iter()
                .map(|r| (r.id, r.at, r.state))
                .collect::<Vec<_>>(),
            [
                (1, t(10), RequestState::Waiting),
                (2, t(11), RequestState::Waiting)
            ]
        );
        // The same delegate twice (in any case), an empty name, a name on two lines: refused.
        for (cmd, code) in [
            (ask("ông lê văn c"), "already_requested"),
            (ask("Ông Lê Văn C"), "already_requested"),
            (ask("  "), "missing_field"),
            (ask("A\nB"), "bad_field"),
            (ask(&"x".repeat(MAX_TEXT + 1)), "bad_field"),
        ] {
            let before = m.clone();
            let r = m.apply(site, cmd.clone(), t(12));
            assert_eq!(r.unwrap_err().code, code, "{cmd:?}");
            assert_eq!(m, before);
        }
        // The refusal names the field as the site's technician reads it.
        let e = m.apply(site, ask(""), t(12)).unwrap_err();
        assert_eq!(
            (e.en.as_str(), e.vi.as_str()),
            ("delegate: required", "Họ tên đại biểu: bắt buộc nhập")
        );
        // Another site may not withdraw A's request, nor ask for A.
        let v = m
            .apply(actor("device_b"), Command::Withdraw { request: 1 }, t(13))
            .unwrap_err();
        assert_eq!(v.rule, RuleId::C8);
        // The control center passes request 1 to the chair, who grants it.
        m.apply(op, Command::Pass { request: 1 }, t(14)).unwrap();
        assert_eq!(m.queue[0].state, RequestState::Passed);
        let v = m
            .apply(chair, Command::Pass { request: 2 }, t(14))
            .unwrap_err();
        assert_eq!(v.rule, RuleId::C3);
        assert_eq!(
            m.apply(chair, Command::Grant { request: 1 }, t(15)),
            Ok(vec![Change::Floor, Change::Frame, Change::Queue])
        );
        assert!(m.hears(A) && m.queue.len() == 1);
        // The site withdraws request 2; an unknown request is refused.
        m.apply(site, Command::Withdraw { request: 2 }, t(16))
            .unwrap();
        for cmd in [
            Command::Grant { request: 2 },
            Command::Decline { request: 2 },
            Command::Pass { request: 7 },
        ] {
            let v = m.apply(op, cmd, t(17)).unwrap_err();
            assert_eq!((v.rule, v.code), (RuleId::C3, "no_such_request"));
        }
        // Outside the meeting or unconnected: refused.
        m.site_disconnected(A);
        let v = m.apply(site, ask("Ông E"), t(18)).unwrap_err();
        assert_eq!(v.code, "not_connected");
        // The chair clears the queue.
        m.site_connected(A, t(19)).unwrap();
        m.apply(site, ask("Ông E"), t(20)).unwrap();
        m.apply(chair, Command::ClearRequests, t(21)).unwrap();
        assert!(m.queue.is_empty());
    }

    #[test]
    fn a_full_queue_refuses() {
        let mut m = meeting();
        for i in 0..MAX_QUEUE {
            m.apply(actor("device_a"), ask(&format!("Đại biểu {i}")), t(1))
                .unwrap();
        }
        let v = m
            .apply(actor("device_a"), ask("Một người nữa"), t(2))
            .unwrap_err();
        assert_eq!((v.rule, v.code), (RuleId::C8, "queue_full"));
    }

    #[test]
    fn the_frame_from_the_floor_and_by_hand() {
        let mut m = meeting();
        // Floor order: nobody has the floor: the chair's site large, then in connection order.
        let v = m.view_for(A, t(10));
        assert_eq!(v.layout, Layout::OnePlus7);
        assert_eq!(v.cells.len(), 8);
        assert_eq!(
            v.cells
                .iter()
                .map(|c| (c.site, c.size))
                .take(5)
                .collect::<Vec<_>>(),
            [
                (Some(CHAIR), CellSize::Large),
                (Some(CC), CellSize::Small),
                (Some(A), CellSize::Small),
                (Some(B), CellSize::Small),
                (None, CellSize::Small)
            ]
        );
        // A receiver does not get its own video back.
        assert_eq!(
            m.videos_for(A, t(10)),
            [
                (CHAIR, CellSize::Large),
                (CC, CellSize::Small),
                (B, CellSize::Small)
            ]
        );
        // The floor holder comes large.
        m.apply(actor("chair"), Command::GiveFloor { site: B }, t(11))
            .unwrap();
        assert_eq!(m.view_for(A, t(11)).cells[0].site, Some(B));
        // By hand: 2x2 with A and B; the others get nothing of CC and CHAIR.
        let op = actor("operator");
        let frame = |layout, cells: Vec<Option<SiteId>>| Command::SetFrame {
            frame: Frame {
                layout,
                fill: Fill::Manual(cells),
            },
        };
        m.apply(
            op,
            frame(Layout::Grid2, vec![Some(A), None, Some(B)]),
            t(12),
        )
        .unwrap();
        assert_eq!(
            m.videos_for(CC, t(12)),
            [(A, CellSize::Medium), (B, CellSize::Medium)]
        );
        assert_eq!(m.videos_for(A, t(12)), [(B, CellSize::Medium)]);
        // Bad frames: refused with C1, the frame unchanged.
        for (cmd, code) in [
            (frame(Layout::One, vec![Some(A), Some(B)]), "bad_frame"),
            (frame(Layout::Grid2, vec![Some(A), Some(A)]), "bad_frame"),
            (frame(Layout::Grid2, vec![Some(OUT)]), "bad_frame"),
            (frame(Layout::Speaker, vec![Some(A)]), "bad_frame"),
        ] {
            let before = m.clone();
            let v = m.apply(op, cmd.clone(), t(13)).unwrap_err();
            assert_eq!((v.rule, v.code), (RuleId::C1, code), "{cmd:?}");
            assert_eq!(m, before);
        }
        // A site dropped leaves its cell empty.
        m.apply(op, Command::DropSite { site: B }, t(14)).unwrap();
        assert_eq!(m.videos_for(CC, t(14)), [(A, CellSize::Medium)]);
        let v = m
            .apply(op, Command::DropSite { site: CHAIR }, t(15))
            .unwrap_err();
        assert_eq!(v.code, "chair_site");
    }

    #[test]
    fn every_layout_has_its_cells() {
        let n: Vec<(Layout, usize, usize)> = Layout::ALL
            .iter()
            .map(|l| {
                let c = l.cells();
                (
                    *l,
                    c.len(),
                    c.iter().filter(|s| **s != CellSize::Small).count(),
                )
            })
            .collect();
        assert_eq!(
            n,
            [
                (Layout::One, 1, 1),
                (Layout::Grid2, 4, 4),
                (Layout::Grid3, 9, 0),
                (Layout::Grid4, 16, 0),
                (Layout::OnePlus5, 6, 1),
                (Layout::OnePlus7, 8, 1),
                (Layout::TwoPlus8, 10, 2),
                (Layout::OnePlus12, 13, 1),
                (Layout::Speaker, 8, 1),
                (Layout::Lecture, 1, 1),
            ]
        );
        assert_eq!(Layout::parse("1+7"), Some(Layout::OnePlus7));
    }

    #[test]
    fn in_a_lecture_everyone_sees_the_chair_and_the_chair_sees_the_others_in_turn() {
        let mut sites = vec![CC];
        sites.extend(10..30); // twenty districts more: 21 sites besides the chair's
        let mut m = Meeting::new(CHAIR, &sites, Layout::Lecture);
        m.site_connected(CHAIR, t(0)).unwrap();
        for (i, s) in sites.iter().enumerate() {
            m.site_connected(*s, t(1 + i as i64)).unwrap();
        }
        m.apply(actor("chair"), Command::SetLecture { on: true }, t(100))
            .unwrap();
        assert_eq!(m.videos_for(15, t(100)), [(CHAIR, CellSize::Large)]);
        let page = |now| -> Vec<SiteId> {
            m.videos_for(CHAIR, now)
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        };
        let first: Vec<SiteId> = [CC].into_iter().chain(10..18).collect();
        assert_eq!(page(t(100)), first);
        assert_eq!(page(t(119)), first); // 20 seconds a page (P3's default)
        assert_eq!(page(t(120)), (18..27).collect::<Vec<_>>());
        assert_eq!(page(t(140)), (27..30).collect::<Vec<_>>());
        assert_eq!(page(t(160)), first); // and round again
    }

    #[test]
    fn technical_parameters_in_range() {
        let mut m = meeting();
        let op = actor("operator");
        let set = |max_height, max_kbps, rotate_secs| Command::SetParams {
            params: Params {
                max_height,
                max_kbps,
                rotate_secs,
            },
        };
        for (h, k, r, ok) in [
            (720, 2000, 20, true),
            (1080, 8000, 600, true),
            (360, 100, 5, true),
            (480, 2000, 20, false),
            (720, 99, 20, false),
            (720, 8001, 20, false),
            (720, 2000, 4, false),
            (720, 2000, 601, false),
        ] {
            let before = m.clone();
            let r = m.apply(op, set(h, k, r), t(1));
            if ok {
                assert_eq!(r, Ok(vec![Change::Params]));
                assert_eq!(m.params.max_height, h);
            } else {
                assert_eq!(r.unwrap_err().rule, RuleId::P3, "{h} {k}");
                assert_eq!(m, before);
            }
        }
    }

    #[test]
    fn the_roll_call_of_a_site() {
        let mut m = meeting();
        let d = |name: &str, reason: &str| Delegate {
            name: name.into(),
            position: "Chủ tịch UBND huyện".into(),
            reason: reason.into(),
        };
        let report = |present, absent| Command::ReportRollCall {
            site: A,
            present,
            absent,
        };
        m.apply(
            actor("tech_a"),
            report(vec![d(" Ông A ", "")], vec![d("Bà B", "Đi công tác")]),
            t(5),
        )
        .unwrap();
        let rc = &m.roll_call[&A];
        assert_eq!(
            (
                rc.present[0].name.as_str(),
                rc.absent[0].reason.as_str(),
                rc.at
            ),
            ("Ông A", "Đi công tác", t(5))
        );
        // An absent delegate without a reason, a nameless one, too many: refused.
        for cmd in [
            report(vec![], vec![d("Bà B", " ")]),
            report(vec![d("", "")], vec![]),
            report(vec![d("X", ""); MAX_DELEGATES + 1], vec![]),
        ] {
            let before = m.clone();
            assert!(m.apply(actor("tech_a"), cmd, t(6)).is_err());
            assert_eq!(m, before);
        }
        // A site reports only for itself.
        let v = m
            .apply(
                actor("device_b"),
                report(vec![d("Ông A", "")], vec![]),
                t(7),
            )
            .unwrap_err();
        assert_eq!((v.rule, v.code), (RuleId::A1, "not_permitted"));
    }

    #[test]
    fn the_state_survives_a_round_trip() {
        let mut m = meeting();
        m.apply(actor("device_a"), ask("Ông A"), t(3)).unwrap();
        m.apply(actor("chair"), Command::GiveFloor { site: B }, t(4))
            .unwrap();
        let json = serde_json::to_string(&m).unwrap();
        let back: Meeting = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let cmd: Command =
            serde_json::from_str(r#"{"type":"set_frame","frame":{"layout":"1+7","fill":{"kind":"manual","cells":[3,null,4]}}}"#)
                .unwrap();
        assert_eq!(
            cmd,
            Command::SetFrame {
                frame: Frame {
                    layout: Layout::OnePlus7,
                    fill: Fill::Manual(vec![Some(A), None, Some(B)])
                }
            }
        );
    }

    #[test]
    fn speaking_without_the_floor_is_recorded_once_a_minute() {
        let mut g = MicGuard::default();
        let v = g.unheard_speech(A, "A", t(0)).unwrap();
        assert_eq!(
            (v.rule, v.article, v.code),
            (RuleId::C4, "7.2a", "microphone_without_floor")
        );
        assert!(g.unheard_speech(A, "A", t(59)).is_none());
        assert!(g.unheard_speech(B, "B", t(59)).is_some());
        assert!(g.unheard_speech(A, "A", t(60)).is_some());
    }

    #[test]
    fn a_booking_opens_when_confirmed_and_on_its_day() {
        use BookingStatus::*;
        let prep = t(100_000);
        let end = t(110_000);
        let early = OPEN_EARLY.num_seconds();
        let late = OPEN_LATE.num_seconds();
        let cases: [(BookingStatus, i64, Option<&str>); 11] = [
            (Approved, 100_000, None),
            (Held, 105_000, None),
            (Approved, 100_000 - early, None),
            (Approved, 100_000 - early - 1, Some("too_early")),
            (Approved, 110_000 + late, None),
            (Approved, 110_000 + late + 1, Some("too_late")),
            (Draft, 100_000, Some("not_approved")),
            (Submitted, 100_000, Some("not_approved")),
            (Rejected, 100_000, Some("not_approved")),
            (Closed, 100_000, Some("not_approved")),
            (Cancelled, 100_000, Some("not_approved")),
        ];
        for (status, now, want) in cases {
            let got = check_opening(status, prep, end, t(now));
            assert_eq!(
                got.as_ref().err().map(|v| v.code),
                want,
                "{status:?} at {now}"
            );
            if let Err(v) = got {
                assert_eq!((v.rule, v.article), (RuleId::B4, "5.2"));
                assert!(v.vi.contains("khoản 2 Điều 5"), "{}", v.vi);
            }
        }
    }
}
