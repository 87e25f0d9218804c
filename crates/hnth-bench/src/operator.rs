//! The operator's side of a benchmark: the control center's WebSocket while media flows. It
//! gives the floor to the meeting's speakers as soon as each is connected (C4: the floor goes
//! only to a connected site), keeps the server's link statistics, and with `--floor-cycles`
//! gives the floor to other sites one at a time and takes it back, stamping each command, so
//! that the sites' receptions time the floor from the operator's click to the sound.
//!
//! In a soak (`--soak-minutes`) it also changes the frame (C1) every `--frame-every` seconds,
//! drops one site every `--drop-every` seconds (the site closes its WebSocket and its peer,
//! then reconnects: `site.rs`), cycles the floor for the whole run, and counts each floor and
//! frame command as acknowledged once a `meeting_state` shows it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, Stream};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::next_json;
use crate::soak::Shared;

/// How long a cycled site holds the floor.
pub const HOLD: Duration = Duration::from_millis(1500);
/// The pause after a take-back before the next site is given the floor (longer than a talk
/// spurt's gap, so that the receivers see the spurts apart).
pub const PAUSE: Duration = Duration::from_millis(1000);

/// What the operator does besides reading.
pub struct Plan {
    pub meeting: i64,
    /// The first this many sites to connect hold the floor throughout (a debate).
    pub speakers: usize,
    /// Give-and-take cycles on the other sites, from `cycles_from`.
    pub cycles: usize,
    pub cycles_from: Instant,
    /// Soak: frame changes and drops, from `cycles_from`; None in a plain benchmark.
    pub soak: Option<SoakPlan>,
}

/// What the operator does in a soak besides cycling the floor.
pub struct SoakPlan {
    /// Between frame changes (`set_frame`); None: no frame changes.
    pub frame_every: Option<Duration>,
    /// Between drops; None: no drops.
    pub drop_every: Option<Duration>,
    /// Each site's drop order, by site id: the site closes its WebSocket and its peer and
    /// reconnects.
    pub drops: HashMap<i64, mpsc::UnboundedSender<()>>,
    /// When set, the operator stops giving commands and dropping sites (an open floor cycle is
    /// closed first), so that the meeting settles before the last sample.
    pub wind_down: watch::Receiver<bool>,
    pub shared: Arc<Shared>,
}

/// The frames a soak cycles through (C1), each filled from the floor order and, every other
/// time, placed by hand. `1x1` and `lecture` are left out: they show one site, and a site that
/// is that one would receive no video (the rejoin check wants some).
pub const SOAK_LAYOUTS: &[&str] = &["2x2", "1+7", "3x3", "1+5", "4x4", "2+8", "1+12", "speaker"];

/// A command is counted as unacknowledged when no `meeting_state` shows it within this.
pub const ACK_DEADLINE: Duration = Duration::from_secs(20);

/// A command waiting for a `meeting_state` to show it.
#[derive(Debug, Clone)]
struct Pending {
    sent: Instant,
    expect: Expect,
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    FloorHas(i64),
    FloorLacks(i64),
    Frame { layout: String, manual: bool },
}

impl Expect {
    fn is_floor(&self) -> bool {
        !matches!(self, Expect::Frame { .. })
    }

    fn met(&self, state: &Value) -> bool {
        let floor = || (state["floor"].as_array().into_iter().flatten()).filter_map(Value::as_i64);
        match self {
            Expect::FloorHas(s) => floor().any(|f| f == *s),
            Expect::FloorLacks(s) => floor().all(|f| f != *s),
            Expect::Frame { layout, manual } => {
                state["frame"]["layout"].as_str() == Some(layout.as_str())
                    && (state["frame"]["fill"]["kind"] == "manual") == *manual
            }
        }
    }
}

/// The commands of a soak and what became of them.
#[derive(Debug, Default, Clone)]
pub struct SoakCounts {
    /// Floor commands sent (gives and take-backs of the cycles).
    pub floor_sent: u64,
    /// Those a `meeting_state` showed.
    pub floor_acked: u64,
    pub frame_sent: u64,
    pub frame_acked: u64,
    /// Commands not shown within [`ACK_DEADLINE`], or still waiting at the end.
    pub unacked: u64,
    /// `error` messages the operator got.
    pub errors: Vec<String>,
    /// From the command to the `meeting_state` that showed it, in microseconds.
    pub ack_us: Vec<u64>,
    /// Drop orders sent.
    pub drops: u64,
}

/// One site given the floor (`given`) and, `HOLD` later, taken back (`taken`): the instants
/// just before the commands were sent.
#[derive(Debug, Clone)]
pub struct FloorCycle {
    pub site: i64,
    pub given: Instant,
    pub taken: Option<Instant>,
}

/// A command of the meeting's course (docs/SIGNALING.md §2.4).
pub fn command(meeting: i64, command: Value) -> Value {
    json!({"type": "command", "meeting": meeting, "command": command})
}

/// The sites of a `meeting_state` that are connected and not the control center.
fn connected(state: &Value) -> Vec<i64> {
    (state["sites"].as_array().into_iter().flatten())
        .filter(|s| s["connected"] == true && s["control_center"] != true)
        .filter_map(|s| s["id"].as_i64())
        .collect()
}

/// What the operator hands back when it stops: the socket's sender (to close the meeting), the
/// floor cycles done and the speakers (the sites given the floor for the whole meeting).
pub struct Outcome<Tx> {
    pub tx: Tx,
    pub cycles: Vec<FloorCycle>,
    pub speakers: HashSet<i64>,
    pub soak: SoakCounts,
}

/// Runs until `stop` changes or the socket closes.
pub async fn run<Tx, Rx>(
    mut tx: Tx,
    mut rx: Rx,
    mut plan: Plan,
    stats: watch::Sender<Value>,
    mut stop: watch::Receiver<bool>,
) -> Outcome<Tx>
where
    Tx: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
    Rx: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let meeting = plan.meeting;
    let mut speakers: HashSet<i64> = HashSet::new();
    let mut online: Vec<i64> = Vec::new();
    let mut cycles: Vec<FloorCycle> = Vec::new();
    let mut next_action = plan.cycles_from;
    let mut counts = SoakCounts::default();
    let mut pending: Vec<Pending> = Vec::new();
    // Sites dropped and not yet seen connected again after being seen disconnected (true once
    // seen disconnected): neither given the floor nor dropped again meanwhile.
    let mut away: HashMap<i64, bool> = HashMap::new();
    let mut next_frame = plan.cycles_from;
    let mut next_drop = plan.cycles_from;
    let mut drop_cursor = 0usize;
    let mut winding_down = false;
    let frame_every = plan.soak.as_ref().and_then(|s| s.frame_every);
    let drop_every = plan.soak.as_ref().and_then(|s| s.drop_every);
    // A timer for the acknowledgement deadlines (and the wind-down check).
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let cycling = plan.cycles > 0 && (cycles.len() < plan.cycles || open_cycle(&cycles));
        // Winding down: only the open cycle's take-back is still due.
        let due = cycling && (!winding_down || open_cycle(&cycles));
        let frame_due = frame_every.is_some() && !winding_down;
        let drop_due = drop_every.is_some() && !winding_down;
        let msg = tokio::select! {
            m = next_json(&mut rx) => match m {
                Ok(m) => m,
                Err(_) => break,
            },
            _ = stop.changed() => break,
            _ = tick.tick() => {
                let now = Instant::now();
                pending.retain(|p| {
                    let late = now.duration_since(p.sent) > ACK_DEADLINE;
                    if late {
                        eprintln!("operator: not shown within {ACK_DEADLINE:?}: {:?}", p.expect);
                        counts.unacked += 1;
                    }
                    !late
                });
                if let Some(soak) = plan.soak.as_mut() {
                    soak.shared.pending_acks.store(pending.len(), Ordering::SeqCst);
                    if !winding_down && *soak.wind_down.borrow_and_update() {
                        winding_down = true;
                    }
                    // Quiet: no floor cycle open, every command shown, every dropped site
                    // seen back.
                    let quiet = winding_down
                        && !open_cycle(&cycles)
                        && pending.is_empty()
                        && away.is_empty();
                    soak.shared.quiet.store(quiet, Ordering::SeqCst);
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_frame.into()), if frame_due => {
                let now = Instant::now();
                next_frame = now + frame_every.unwrap_or_default();
                let n = counts.frame_sent as usize;
                let layout = SOAK_LAYOUTS[n % SOAK_LAYOUTS.len()];
                // Every other frame placed by hand: the connected sites from a moving offset,
                // as many as the layout has cells (at most 16, `4x4`).
                // (The parity flips each round of the list, so each layout gets both fills.)
                let manual = (n + n / SOAK_LAYOUTS.len()) % 2 == 1 && layout != "speaker";
                let fill = if manual {
                    let cells: Vec<i64> = (0..online.len().min(cells_of(layout)))
                        .map(|i| online[(n + i) % online.len()])
                        .collect();
                    json!({"kind": "manual", "cells": cells})
                } else {
                    json!({"kind": "floor_order"})
                };
                let cmd = json!({"type": "set_frame", "frame": {"layout": layout, "fill": fill}});
                counts.frame_sent += 1;
                let expect = Expect::Frame { layout: layout.into(), manual };
                pending.push(Pending { sent: now, expect });
                if tx.send(Message::text(command(meeting, cmd).to_string())).await.is_err() {
                    break;
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_drop.into()), if drop_due => {
                let now = Instant::now();
                next_drop = now + drop_every.unwrap_or_default();
                // The next connected site round the list that is not away and does not hold
                // the cycled floor (its take-back must find it connected).
                let holder = cycles.last().filter(|c| c.taken.is_none()).map(|c| c.site);
                let mut ids: Vec<i64> = online.clone();
                ids.sort_unstable();
                let candidates: Vec<i64> = ids.into_iter()
                    .filter(|s| !away.contains_key(s) && Some(*s) != holder)
                    .collect();
                if let Some(soak) = plan.soak.as_ref() {
                    if let Some(&site) = candidates.get(drop_cursor % candidates.len().max(1)) {
                        drop_cursor += 1;
                        if let Some(order) = soak.drops.get(&site) {
                            if order.send(()).is_ok() {
                                counts.drops += 1;
                                away.insert(site, false);
                            }
                        }
                    }
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_action.into()), if due => {
                let now = Instant::now();
                let cmd = match cycles.last_mut() {
                    Some(c) if c.taken.is_none() => {
                        c.taken = Some(now);
                        next_action = now + PAUSE;
                        if plan.soak.is_some() {
                            pending.push(Pending { sent: now, expect: Expect::FloorLacks(c.site) });
                        }
                        json!({"type": "take_floor", "site": c.site})
                    }
                    _ => {
                        // The next site that is connected and not a speaker, round the list.
                        let others: Vec<i64> = (online.iter().copied())
                            .filter(|s| !speakers.contains(s) && !away.contains_key(s))
                            .collect();
                        let Some(&site) = others.get(cycles.len() % others.len().max(1)) else {
                            next_action = now + PAUSE;
                            continue;
                        };
                        cycles.push(FloorCycle { site, given: now, taken: None });
                        next_action = now + HOLD;
                        if plan.soak.is_some() {
                            pending.push(Pending { sent: now, expect: Expect::FloorHas(site) });
                        }
                        json!({"type": "give_floor", "site": site})
                    }
                };
                if plan.soak.is_some() {
                    counts.floor_sent += 1;
                }
                if tx.send(Message::text(command(meeting, cmd).to_string())).await.is_err() {
                    break;
                }
                continue;
            }
        };
        match msg["type"].as_str() {
            Some("stats") => {
                let _ = stats.send(msg["list"].clone());
            }
            Some("meeting_state") if msg["meeting"].as_i64() == Some(meeting) => {
                online = connected(&msg);
                if let Some(soak) = plan.soak.as_ref() {
                    soak.shared.connected.store(online.len(), Ordering::SeqCst);
                }
                for (site, seen_gone) in away.iter_mut() {
                    if !online.contains(site) {
                        *seen_gone = true;
                    }
                }
                away.retain(|site, seen_gone| !(*seen_gone && online.contains(site)));
                let now = Instant::now();
                pending.retain(|p| {
                    let met = p.expect.met(&msg);
                    if met {
                        match p.expect.is_floor() {
                            true => counts.floor_acked += 1,
                            false => counts.frame_acked += 1,
                        }
                        counts
                            .ack_us
                            .push(now.duration_since(p.sent).as_micros() as u64);
                    }
                    !met
                });
                let floor: Vec<i64> = (msg["floor"].as_array().into_iter().flatten())
                    .filter_map(Value::as_i64)
                    .collect();
                for site in online.clone() {
                    if speakers.len() < plan.speakers
                        && !floor.contains(&site)
                        && speakers.insert(site)
                    {
                        let give = command(meeting, json!({"type": "give_floor", "site": site}));
                        if tx.send(Message::text(give.to_string())).await.is_err() {
                            counts.unacked += pending.len() as u64;
                            return Outcome {
                                tx,
                                cycles,
                                speakers,
                                soak: counts,
                            };
                        }
                    }
                }
            }
            Some("error") => {
                eprintln!("operator: {msg}");
                counts.errors.push(msg.to_string());
            }
            _ => {}
        }
    }
    counts.unacked += pending.len() as u64;
    Outcome {
        tx,
        cycles,
        speakers,
        soak: counts,
    }
}

/// How many cells a layout of [`SOAK_LAYOUTS`] has (`hnth_rules::meeting::Layout::cells`).
fn cells_of(layout: &str) -> usize {
    match layout {
        "2x2" => 4,
        "3x3" => 9,
        "1+5" => 6,
        "4x4" => 16,
        "2+8" => 10,
        "1+12" => 13,
        _ => 8,
    }
}

fn open_cycle(cycles: &[FloorCycle]) -> bool {
    cycles.last().is_some_and(|c| c.taken.is_none())
}
