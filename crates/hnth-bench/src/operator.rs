//! The operator's side of a benchmark: the control center's WebSocket while media flows. It
//! gives the floor to the meeting's speakers as soon as each is connected (C4: the floor goes
//! only to a connected site), keeps the server's link statistics, and with `--floor-cycles`
//! gives the floor to other sites one at a time and takes it back, stamping each command, so
//! that the sites' receptions time the floor from the operator's click to the sound.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, Stream};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::next_json;

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
}

/// Runs until `stop` changes or the socket closes.
pub async fn run<Tx, Rx>(
    mut tx: Tx,
    mut rx: Rx,
    plan: Plan,
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
    loop {
        let due = plan.cycles > 0 && (cycles.len() < plan.cycles || open_cycle(&cycles));
        let msg = tokio::select! {
            m = next_json(&mut rx) => match m {
                Ok(m) => m,
                Err(_) => break,
            },
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(next_action.into()), if due => {
                let now = Instant::now();
                let cmd = match cycles.last_mut() {
                    Some(c) if c.taken.is_none() => {
                        c.taken = Some(now);
                        next_action = now + PAUSE;
                        json!({"type": "take_floor", "site": c.site})
                    }
                    _ => {
                        // The next site that is connected and not a speaker, round the list.
                        let others: Vec<i64> =
                            online.iter().copied().filter(|s| !speakers.contains(s)).collect();
                        let Some(&site) = others.get(cycles.len() % others.len().max(1)) else {
                            next_action = now + PAUSE;
                            continue;
                        };
                        cycles.push(FloorCycle { site, given: now, taken: None });
                        next_action = now + HOLD;
                        json!({"type": "give_floor", "site": site})
                    }
                };
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
                            return Outcome {
                                tx,
                                cycles,
                                speakers,
                            };
                        }
                    }
                }
            }
            Some("error") => eprintln!("operator: {msg}"),
            _ => {}
        }
    }
    Outcome {
        tx,
        cycles,
        speakers,
    }
}

fn open_cycle(cycles: &[FloorCycle]) -> bool {
    cycles.last().is_some_and(|c| c.taken.is_none())
}
