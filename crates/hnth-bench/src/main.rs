//! `hnth-bench`: N synthetic sites as real WebRTC peers (str0m clients) through a running
//! `hnth` server: real login, real WebSocket signaling (docs/SIGNALING.md), real UDP.
//!
//! The operator account opens a meeting and dials every online site; each site answers the
//! `join` with an offer (Opus + VP8 simulcast q/h/f), answers the server's renegotiation offers,
//! sends recognisable frames and counts what it receives. All sites run in this process on one
//! clock, so the one-way forwarding delay through the server is measured exactly.
//!
//! ```text
//! hnth-bench --server http://127.0.0.1:18443 --password … --sites 8 --duration 30
//! hnth-bench --server http://127.0.0.1:18443 --password … --smoke   # exit 1 if no media flowed
//! hnth-bench … --sites 50 --layout 1+7 --soak-minutes 60 --server-pid PID   # bench/soak.sh
//! ```

mod http;
mod janus;
mod operator;
mod report;
mod site;
mod soak;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::site::{SiteCtl, SiteOutcome, SiteSpec};

/// Device accounts of the demo province (`hnth demo`), in the order sites are taken; beyond
/// them come the load-test sites of `hnth demo --bench-sites N` (`dc-bench-001` …).
pub const DEMO_SITES: &[&str] = &[
    "dc-tinh-uy",
    "dc-tp-bac-lieu",
    "dc-tx-gia-rai",
    "dc-hong-dan",
    "dc-phuoc-long",
    "dc-vinh-loi",
    "dc-hoa-binh",
    "dc-dong-hai",
];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "hnth-bench",
    about = "Load generator: synthetic sites through a running hnth server"
)]
pub struct Opts {
    /// Base URL of the server's HTTP side (plain http://).
    #[arg(long, default_value = "http://127.0.0.1:18443")]
    pub server: String,
    /// Password of the demo accounts (operator and site devices); needed with --target hnth.
    #[arg(long, env = "HNTH_DEMO_PASSWORD", default_value = "")]
    pub password: String,
    /// The SFU to load: our server, or Janus's VideoRoom plugin for comparison (bench/janus.sh).
    #[arg(long, value_enum, default_value_t = Target::Hnth)]
    pub target: Target,
    /// Janus's HTTP API (--target janus).
    #[arg(long, default_value = "http://10.77.0.1:8088/janus")]
    pub janus_url: String,
    /// The simulcast layer Janus forwards to every subscriber: 0 = q (150 kbit/s), 1 = h
    /// (500 kbit/s), 2 = f (1.5 Mbit/s). hnth chooses per receiver from its estimate.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub janus_substream: u8,
    /// Operator account that opens the meeting and dials the sites.
    #[arg(long, default_value = "dieuhanh")]
    pub operator: String,
    /// Number of sites: the demo province's 8 device accounts, then `dc-bench-001` … (start
    /// the server with `hnth demo --bench-sites N-8` for more than 8).
    #[arg(long, default_value_t = 3)]
    pub sites: usize,
    /// How many other sites each site receives (the server's view size, 8 by default): the
    /// meeting's first view+1 sites to join are its speakers.
    #[arg(long, default_value_t = 8)]
    pub view: usize,
    /// The server's process id, to measure its CPU time and resident memory over the window
    /// from dialing to the end (from /proc; same machine).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print one row per site even for large meetings (default: only up to 16 sites).
    #[arg(long)]
    pub per_site: bool,
    /// Seconds of media after dialing.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Address the sites' UDP sockets bind to (their host candidate). The default is the
    /// far end of the veth pair made by scripts/in-netns.sh.
    #[arg(long, default_value = "10.77.0.2")]
    pub bind_ip: IpAddr,
    /// Multiply the video bitrates (1.5 Mbit/s, 500 kbit/s, 150 kbit/s) by this.
    #[arg(long, default_value_t = 1.0)]
    pub video_scale: f64,
    /// What each site shows: every received video in an equal grid tile (no `view` sent,
    /// every video at the layer the receiver's bandwidth allows), or a 1+7 layout: the meeting's
    /// first speaker (the smallest stream id; for itself, the next) large at 720 lines, the
    /// others as 180-line thumbnails, told to the server with `view` like the live pages do.
    #[arg(long, value_enum, default_value_t = Layout::Grid)]
    pub layout: Layout,
    /// Microphones as rule C4 has them: only the site shown large (the smallest stream id of
    /// the meeting's speakers) talks; every other site sends digital silence (a muted
    /// browser's -127 dBov), which the server does not forward.
    #[arg(long)]
    pub muted: bool,
    /// Seconds between periodic keyframes.
    #[arg(long, default_value_t = 3.0)]
    pub keyframe_interval: f64,
    /// Each site's timers (frames to write, str0m's NACK/RTCP timers) run on a grid of this
    /// many milliseconds instead of at their exact times: fewer wake-ups, and a frame is
    /// written (and stamped) at most this late. 0: exact times.
    #[arg(long, default_value_t = 5.0)]
    pub timer_tick_ms: f64,
    /// How many sites hold the floor throughout (C4, a debate): the first to connect. Default:
    /// view + 1, every site any view shows. The others' sound is dropped at the server.
    #[arg(long)]
    pub speakers: Option<usize>,
    /// After the joins, give the floor to this many sites that are not speakers, one at a
    /// time, for 1.5 s each, and print from the give to the first audio heard and from the
    /// take-back to the last (C4). Every site sends sound here: not with --muted.
    #[arg(long, default_value_t = 0)]
    pub floor_cycles: usize,
    /// 3 sites for 5 seconds; exit 1 unless every site received audio and video from every
    /// other site.
    #[arg(long)]
    pub smoke: bool,
    /// Soak: one meeting for this many minutes (replaces --duration) while the operator cycles
    /// the floor throughout, changes the frame every --frame-every seconds and drops a site
    /// every --drop-every seconds (it closes its WebSocket and its peer, reconnects and is
    /// joined again). Prints the server's memory, open files and threads (with --server-pid)
    /// and a `SOAK-JSON` line; exit 1 if a rejoin got no media back or a change was not
    /// acknowledged. --speakers defaults to 1 here.
    #[arg(long)]
    pub soak_minutes: Option<f64>,
    /// Soak: seconds between frame (layout) changes; 0: none.
    #[arg(long, default_value_t = 30.0)]
    pub frame_every: f64,
    /// Soak: seconds between site drops; 0: none.
    #[arg(long, default_value_t = 30.0)]
    pub drop_every: f64,
    /// Soak: seconds a dropped site stays away before it reconnects.
    #[arg(long, default_value_t = 3.0)]
    pub offline_secs: f64,
    /// Soak: a rejoined site that has not received media this many seconds after it
    /// reconnected counts as failed.
    #[arg(long, default_value_t = 30.0)]
    pub rejoin_deadline: f64,
    /// Soak: seconds between readings of the server's memory, open files and threads.
    #[arg(long, default_value_t = 300.0)]
    pub sample_every: f64,
    /// Soak: growth is measured from this many seconds after dialing (the joins and first
    /// renegotiations done); a quarter of the run if that is shorter.
    #[arg(long, default_value_t = 120.0)]
    pub warmup_secs: f64,
    /// One DTLS certificate for every synthetic site, made before dialing: making one per
    /// site (1.2 ms, 40 ms for the first) would lengthen the joins the report measures.
    #[arg(skip = hnth_media::generate_dtls_cert())]
    pub dtls_cert: str0m::config::DtlsCert,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Grid,
    #[value(name = "1+7")]
    OnePlusSeven,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Hnth,
    Janus,
}

fn main() -> std::process::ExitCode {
    let mut opts = Opts::parse();
    if opts.smoke {
        opts.sites = 3;
        opts.duration = 5.0;
    }
    if let Some(m) = opts.soak_minutes {
        opts.duration = m * 60.0;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hnth-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match opts.target {
        Target::Hnth => rt.block_on(run(opts)),
        Target::Janus => rt.block_on(janus::run(opts)),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("hnth-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs the benchmark; Ok(false) when media did not flow everywhere.
async fn run(opts: Opts) -> anyhow::Result<bool> {
    if opts.password.is_empty() {
        bail!("--password (or HNTH_DEMO_PASSWORD) is required with --target hnth");
    }
    if opts.sites < 2 || opts.sites > 1000 {
        bail!("--sites must be 2 to 1000");
    }
    if (opts.floor_cycles > 0 || opts.soak_minutes.is_some()) && opts.muted {
        bail!("--floor-cycles and --soak-minutes need every site to send sound: drop --muted");
    }
    if opts.soak_minutes.is_some_and(|m| m.is_nan() || m <= 0.0) {
        bail!("--soak-minutes must be positive");
    }
    let host = http::host_port(&opts.server)?;
    let health = http::get(&host, "/healthz")
        .await
        .with_context(|| format!("server at {} not reachable", opts.server))?;
    if health.0 != 200 {
        bail!("GET /healthz: HTTP {}", health.0);
    }
    let opts = Arc::new(opts);
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel::<(usize, i64)>(opts.sites);
    let shared = Arc::new(soak::Shared::default());

    let mut tasks = Vec::new();
    let mut drop_orders = Vec::new();
    for i in 0..opts.sites {
        let spec = SiteSpec {
            index: i,
            username: site_username(i),
        };
        let (drop_tx, drop_rx) = mpsc::unbounded_channel();
        drop_orders.push(drop_tx);
        let ctl = SiteCtl {
            drops: drop_rx,
            shared: shared.clone(),
        };
        tasks.push(tokio::spawn(site::run(
            spec,
            opts.clone(),
            host.clone(),
            epoch,
            ready_tx.clone(),
            stop_rx.clone(),
            ctl,
        )));
    }
    drop(ready_tx);
    // Each online site's drop order, by site id (the operator knows sites by id).
    let mut drops: HashMap<i64, mpsc::UnboundedSender<()>> = HashMap::new();
    while drops.len() < opts.sites {
        match ready_rx.recv().await {
            Some((i, site_id)) => {
                drops.insert(site_id, drop_orders[i].clone());
            }
            None => break,
        }
    }
    drop(drop_orders);
    let online = drops.len();
    eprintln!("{online} sites online");

    // The operator opens a meeting and dials every online site.
    let token = http::login(&host, &opts.operator, &opts.password)
        .await?
        .token;
    let (ws, _) = http::connect_ws(format!("ws://{host}/ws?token={token}"))
        .await
        .context("operator websocket")?;
    let (mut op_tx, mut op_rx) = ws.split();
    let title = format!("hnth-bench {} sites", opts.sites);
    op_tx
        .send(Message::text(
            json!({"type": "open_meeting", "title": title}).to_string(),
        ))
        .await?;
    let meeting = loop {
        let msg = next_json(&mut op_rx).await?;
        match msg["type"].as_str() {
            Some("meeting_opened") => break msg["meeting"]["id"].as_i64().context("meeting id")?,
            Some("error") => bail!("open_meeting refused: {msg}"),
            _ => {}
        }
    };
    let soaking = opts.soak_minutes.is_some();
    let mut samples = Vec::new();
    if soaking {
        let pid = opts.server_pid;
        samples.extend(pid.and_then(|p| {
            soak::ServerSample::read(p, "start (before dialing)", Instant::now(), true)
        }));
    }
    let server_before = opts.server_pid.and_then(report::ProcSample::read);
    let self_before = report::ProcSample::read(std::process::id());
    let metrics_before = http::metrics(&host).await;
    let dialed_at = Instant::now();
    // C4: a site is heard only with the floor. The operator holds a debate, so that the
    // meeting's speakers (--speakers, the first sites to connect) are heard at once, as a
    // chair would call them on; the others are not heard, and the frame (floor order) shows
    // the speakers first.
    for cmd in [
        json!({"type": "dial_all", "meeting": meeting}),
        operator::command(meeting, json!({"type": "set_debate", "on": true})),
    ] {
        op_tx.send(Message::text(cmd.to_string())).await?;
    }
    eprintln!(
        "meeting {meeting} opened, {} sites dialed; media for {} s",
        opts.sites, opts.duration
    );

    // The operator keeps reading (server stats), gives the speakers the floor as they connect
    // and, with --floor-cycles, gives and takes the floor of the other sites once the joins
    // are done.
    let (stats_tx, stats_rx) = watch::channel(Value::Null);
    let steady_after = Duration::from_secs_f64((opts.duration / 2.0).min(8.0));
    let (wind_tx, wind_rx) = watch::channel(false);
    let every = |s: f64| (s > 0.0).then(|| Duration::from_secs_f64(s));
    let plan = operator::Plan {
        meeting,
        // A soak: one site holds the floor throughout, the others in turn for the whole run.
        speakers: (opts.speakers).unwrap_or(if soaking { 1 } else { opts.view + 1 }),
        cycles: if soaking {
            usize::MAX
        } else {
            opts.floor_cycles
        },
        cycles_from: dialed_at + steady_after,
        soak: soaking.then(|| operator::SoakPlan {
            frame_every: every(opts.frame_every),
            drop_every: every(opts.drop_every),
            drops,
            wind_down: wind_rx,
            shared: shared.clone(),
        }),
    };
    let reader = tokio::spawn(operator::run(op_tx, op_rx, plan, stats_tx, stop_rx.clone()));
    // The measuring window itself: media flows while this waits. The server's delay is also
    // read from a mark after the joins (a hundred DTLS handshakes at once queue the media
    // behind them), like the generator's own steady-state delays.
    let mut connected_end = 0;
    let metrics_steady = if soaking {
        connected_end = soak::window(&opts, dialed_at, &shared, &wind_tx, &mut samples).await;
        None
    } else {
        tokio::time::sleep(steady_after).await;
        let m = http::metrics(&host).await;
        tokio::time::sleep_until((dialed_at + Duration::from_secs_f64(opts.duration)).into()).await;
        m
    };
    let ended_at = Instant::now();
    let healthz = http::get(&host, "/healthz")
        .await
        .ok()
        .map(|(code, _)| code);
    let server_after = opts.server_pid.and_then(report::ProcSample::read);
    let self_after = report::ProcSample::read(std::process::id());
    let metrics_after = http::metrics(&host).await;
    let _ = stop_tx.send(true);
    let mut outcomes: Vec<SiteOutcome> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => eprintln!("site failed: {e:#}"),
            Err(e) => eprintln!("site task: {e}"),
        }
    }
    let server_stats = stats_rx.borrow().clone();
    // The operator (stopped with the sites) hands the socket back; the meeting is closed.
    let (mut floor_cycles, mut floor_holders) = (Vec::new(), None);
    let mut soak_counts = operator::SoakCounts::default();
    if let Ok(operator::Outcome {
        tx: mut op_tx,
        cycles,
        speakers,
        soak,
    }) = reader.await
    {
        floor_cycles = cycles;
        soak_counts = soak;
        floor_holders = Some(speakers.into_iter().map(|s| s as u64).collect());
        let close = json!({"type": "close_meeting", "meeting": meeting});
        let _ = op_tx.send(Message::text(close.to_string())).await;
    }

    if soaking {
        return Ok(soak::print(
            &opts,
            &outcomes,
            &samples,
            &soak_counts,
            connected_end,
            healthz,
        ));
    }
    let procs = report::Procs {
        server: server_before.zip(server_after),
        generator: self_before.zip(self_after),
        server_delay: histograms(&metrics_before, &metrics_after, SERVER_DELAY),
        socket_wait: histograms(&metrics_before, &metrics_after, SOCKET_WAIT),
        server_delay_steady: histograms(&metrics_steady, &metrics_after, SERVER_DELAY),
        steady_after,
        floor: floor_cycles,
        floor_holders,
    };
    let ok = report::print(&opts, &outcomes, dialed_at, ended_at, &server_stats, &procs);
    Ok(ok)
}

/// The server's delay histogram on `/metrics`.
const SERVER_DELAY: &str = "hnth_media_server_delay_seconds";
/// The part of it spent waiting in the socket.
const SOCKET_WAIT: &str = "hnth_media_socket_wait_seconds";

/// A histogram of the server's `/metrics` at two readings.
fn histograms(
    before: &Option<String>,
    after: &Option<String>,
    name: &str,
) -> Option<(http::Buckets, http::Buckets)> {
    let read = |m: &Option<String>| m.as_deref().and_then(|t| http::parse_histogram(t, name));
    read(before).zip(read(after))
}

/// The device account of the `i`-th site (from 0).
pub fn site_username(i: usize) -> String {
    match DEMO_SITES.get(i) {
        Some(u) => u.to_string(),
        None => format!("dc-bench-{:03}", i + 1 - DEMO_SITES.len()),
    }
}

/// The next JSON text message of a WebSocket (other frames skipped).
pub async fn next_json<S>(rx: &mut S) -> anyhow::Result<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match rx.next().await {
            None => bail!("websocket closed"),
            Some(Err(e)) => bail!("websocket: {e}"),
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(Message::Close(frame))) => match frame {
                Some(f) => bail!("websocket closed by the server ({} {})", f.code, f.reason),
                None => bail!("websocket closed by the server"),
            },
            Some(Ok(_)) => {}
        }
    }
}
