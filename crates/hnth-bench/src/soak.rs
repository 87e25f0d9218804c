//! Soak mode (`--soak-minutes M`): one meeting for M minutes while the operator cycles the
//! floor, changes the frame and drops sites that reconnect and rejoin (`operator.rs`,
//! `site.rs`). The server's resident memory, open files and threads are read from /proc before
//! dialing, at the end of the warm-up, every `--sample-every` seconds and at the end, with the
//! meeting settled (every dropped site back with media) at each reading; the end is read after
//! the operator stopped and every command was acknowledged. Targets (printed, not asserted): the
//! server alive, RSS growth under 5 % from the warm-up mark, no growth in open files or threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hnth_media::testing::percentile;
use serde_json::{json, Value};
use str0m::media::MediaKind;
use tokio::sync::watch;

use crate::operator::SoakCounts;
use crate::site::SiteOutcome;
use crate::Opts;

/// Counters the sites, the operator and the sampler share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Sites dropped whose rejoin is not yet done (media back, or failed).
    pub offline: AtomicUsize,
    /// Operator commands not yet shown by a `meeting_state`.
    pub pending_acks: AtomicUsize,
    /// The operator wound down: no open floor cycle, nothing waiting for acknowledgement.
    pub quiet: AtomicBool,
    /// Drops so far over every site (every other rejoin logs in again).
    pub drops: AtomicUsize,
    /// Sites connected (media up) in the operator's last `meeting_state`.
    pub connected: AtomicUsize,
}

/// The target for resident memory growth from the warm-up mark to the end.
const RSS_GROWTH_TARGET_PCT: f64 = 5.0;

/// How long a reading waits for the meeting to settle (every dropped site back).
const SETTLE: Duration = Duration::from_secs(30);

/// The server's process as /proc shows it at one moment.
#[derive(Debug, Clone)]
pub struct ServerSample {
    pub label: &'static str,
    /// Seconds since dialing (negative: before).
    pub at_s: f64,
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: usize,
    /// The process state letter (`S`, `R`, … ; `Z`: it exited and was not reaped yet).
    pub state: char,
    /// Every dropped site was back with media when read.
    pub settled: bool,
}

impl ServerSample {
    /// None when the process is gone.
    pub fn read(pid: u32, label: &'static str, since: Instant, settled: bool) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let rss_kib = field("VmRSS:")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let state = field("State:")
            .and_then(|s| s.chars().next())
            .unwrap_or('?');
        let count = |dir: &str| {
            std::fs::read_dir(format!("/proc/{pid}/{dir}"))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        let now = Instant::now();
        let at_s = match now.checked_duration_since(since) {
            Some(d) => d.as_secs_f64(),
            None => -since.duration_since(now).as_secs_f64(),
        };
        Some(ServerSample {
            label,
            at_s,
            rss_kib,
            fds: count("fd"),
            threads: count("task"),
            state,
            settled,
        })
    }

    fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }

    fn json(&self) -> Value {
        json!({"label": self.label, "at_s": self.at_s, "rss_kib": self.rss_kib, "fds": self.fds,
               "threads": self.threads, "state": self.state.to_string(), "settled": self.settled})
    }
}

/// When growth is measured from: `--warmup-secs` after dialing, or a quarter of a run too short
/// for it.
pub fn warmup(opts: &Opts) -> Duration {
    let w = if opts.warmup_secs < opts.duration * 0.75 {
        opts.warmup_secs
    } else {
        opts.duration / 4.0
    };
    Duration::from_secs_f64(w.max(0.0))
}

/// Waits (with a deadline) until no dropped site is still rejoining and, with `quiet`, until
/// the operator wound down; whether it did.
async fn settle(shared: &Shared, quiet: bool, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    loop {
        let done = shared.offline.load(Ordering::SeqCst) == 0
            && (!quiet || shared.quiet.load(Ordering::SeqCst));
        if done {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The soak's measuring window, from dialing: readings at the warm-up mark and every
/// `--sample-every` seconds, then at the end the operator winds down, the meeting settles and
/// the last reading is taken (the sites are still connected). Returns how many sites the
/// meeting had connected then.
pub async fn window(
    opts: &Opts,
    dialed_at: Instant,
    shared: &Shared,
    wind_down: &watch::Sender<bool>,
    samples: &mut Vec<ServerSample>,
) -> usize {
    let duration = Duration::from_secs_f64(opts.duration);
    let warm = warmup(opts);
    let every = Duration::from_secs_f64(opts.sample_every.max(1.0));
    let mut points: Vec<(Duration, &'static str)> = vec![(warm, "warm-up mark")];
    let mut t = every;
    while t + Duration::from_secs(1) < duration {
        // A reading within 10 s of the warm-up mark adds nothing.
        if t.abs_diff(warm) > Duration::from_secs(10) {
            points.push((t, "sample"));
        }
        t += every;
    }
    points.sort();
    let read = |label, settled| {
        (opts.server_pid).and_then(|pid| ServerSample::read(pid, label, dialed_at, settled))
    };
    for (at, label) in points {
        tokio::time::sleep_until((dialed_at + at).into()).await;
        let settled = settle(shared, false, SETTLE).await;
        samples.extend(read(label, settled));
        if let Some(s) = samples.last() {
            eprintln!(
                "soak: {:>6.1} min  RSS {:.1} MiB, {} open files, {} threads{}",
                s.at_s / 60.0,
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.threads,
                if s.settled { "" } else { " (not settled)" }
            );
        }
    }
    tokio::time::sleep_until((dialed_at + duration).into()).await;
    let _ = wind_down.send(true);
    let settled = settle(shared, true, SETTLE * 2).await;
    samples.extend(read("end", settled));
    shared.connected.load(Ordering::SeqCst)
}

/// Prints the soak's table and its `SOAK-JSON` line; true when the server stayed up, every
/// rejoin got media back, every floor and frame change was acknowledged, the server closed no
/// site's WebSocket and every site was connected at the end.
pub fn print(
    opts: &Opts,
    outcomes: &[SiteOutcome],
    samples: &[ServerSample],
    counts: &SoakCounts,
    connected_end: usize,
    healthz: Option<u16>,
) -> bool {
    let warm = warmup(opts);
    let alive = samples
        .last()
        .is_some_and(|s| s.alive() && s.label == "end")
        && healthz == Some(200);
    let alive = alive || (opts.server_pid.is_none() && healthz == Some(200));
    println!();
    println!(
        "hnth-bench soak: {} sites, {:.1} min; floor cycled throughout ({} s given, {} s apart); frame changed every {}; a site dropped every {} ({} s away, relogin every other time)",
        opts.sites,
        opts.duration / 60.0,
        crate::operator::HOLD.as_secs_f64(),
        crate::operator::PAUSE.as_secs_f64(),
        secs_or_never(opts.frame_every),
        secs_or_never(opts.drop_every),
        opts.offline_secs,
    );
    if opts.server_pid.is_some() {
        println!();
        println!("| reading | minutes since dialing | RSS MiB | open files | threads | settled |");
        println!("|---|---|---|---|---|---|");
        for s in samples {
            println!(
                "| {} | {:.1} | {:.1} | {} | {} | {} |",
                s.label,
                s.at_s / 60.0,
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.threads,
                if s.settled { "yes" } else { "no" }
            );
        }
        println!();
    }
    let from = samples.iter().find(|s| s.label == "warm-up mark");
    let end = samples.iter().find(|s| s.label == "end");
    // The highest reading from the warm-up mark on: growth can be hidden at the end (peers
    // made anew by rejoins free what the old ones held).
    let peak = (samples.iter())
        .filter(|s| from.is_some_and(|f| s.at_s >= f.at_s))
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(0);
    let growth = from.zip(end).map(|(a, b)| {
        let d = b.rss_kib as f64 - a.rss_kib as f64;
        json!({
            "rss_kib_peak": peak,
            "rss_peak_growth_pct": (peak as f64 - a.rss_kib as f64) * 100.0 / (a.rss_kib.max(1) as f64),
            "from_s": a.at_s,
            "rss_kib_from": a.rss_kib, "rss_kib_end": b.rss_kib,
            "rss_growth_kib": d, "rss_growth_pct": d * 100.0 / (a.rss_kib.max(1) as f64),
            "fds_from": a.fds, "fds_end": b.fds, "fds_growth": b.fds as i64 - a.fds as i64,
            "threads_from": a.threads, "threads_end": b.threads,
            "threads_growth": b.threads as i64 - a.threads as i64,
        })
    });
    println!(
        "server: {}",
        match (alive, healthz) {
            (true, _) => "alive at the end (/healthz 200), no crash".to_string(),
            (false, h) => format!(
                "CRASHED or unreachable (/healthz {}, process {})",
                h.map_or("no answer".into(), |c| c.to_string()),
                samples
                    .last()
                    .map_or("not read".into(), |s| format!("state {}", s.state))
            ),
        }
    );
    if let Some(g) = &growth {
        let pct = g["rss_growth_pct"].as_f64().unwrap_or(0.0);
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "RSS from the warm-up mark ({:.1} min after dialing; growth is measured from there, after the joins and the first renegotiations) to the end: {:.1} → {:.1} MiB, {:+.1} MiB ({:+.2} %); target under {RSS_GROWTH_TARGET_PCT} %: {}",
            warm.as_secs_f64() / 60.0,
            g["rss_kib_from"].as_f64().unwrap_or(0.0) / 1024.0,
            g["rss_kib_end"].as_f64().unwrap_or(0.0) / 1024.0,
            g["rss_growth_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            pct,
            met(pct < RSS_GROWTH_TARGET_PCT)
        );
        println!(
            "RSS peak from the warm-up mark on: {:.1} MiB ({:+.2} % over the warm-up mark)",
            g["rss_kib_peak"].as_f64().unwrap_or(0.0) / 1024.0,
            g["rss_peak_growth_pct"].as_f64().unwrap_or(0.0)
        );
        let (f, t) = (&g["fds_growth"], &g["threads_growth"]);
        println!(
            "open files {} → {} ({:+}), threads {} → {} ({:+}); target no growth: {}",
            g["fds_from"],
            g["fds_end"],
            f.as_i64().unwrap_or(0),
            g["threads_from"],
            g["threads_end"],
            t.as_i64().unwrap_or(0),
            met(f.as_i64().unwrap_or(0) <= 0 && t.as_i64().unwrap_or(0) <= 0)
        );
    }

    // Drops and rejoins, as the sites saw them; apart, the WebSockets the server closed.
    let (rejoins, closes): (Vec<_>, Vec<_>) = (outcomes.iter())
        .flat_map(|o| o.rejoins.iter())
        .partition(|r| r.closed_by_server.is_none());
    let closes_back = closes.iter().filter(|r| r.media_at.is_some()).count();
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &closes {
        *reasons
            .entry(r.closed_by_server.as_deref().unwrap_or_default())
            .or_default() += 1;
    }
    let largest_offer = outcomes.iter().map(|o| o.largest_offer).max().unwrap_or(0);
    let most_mlines = outcomes.iter().map(|o| o.most_mlines).max().unwrap_or(0);
    let back: Vec<_> = rejoins.iter().filter(|r| r.media_at.is_some()).collect();
    let cut_short = rejoins
        .iter()
        .filter(|r| r.media_at.is_none() && r.cut_short)
        .count();
    let failed = rejoins.len() - back.len() - cut_short;
    let relogins = rejoins.iter().filter(|r| r.relogin).count();
    let ms = |a: Instant, b: Option<Instant>| b.map(|b| b.duration_since(a).as_micros() as u64);
    let mut to_media: Vec<u64> = (back.iter())
        .filter_map(|r| r.reconnected_at.and_then(|c| ms(c, r.media_at)))
        .collect();
    let mut drop_to_media: Vec<u64> = (back.iter())
        .filter_map(|r| ms(r.dropped_at, r.media_at))
        .collect();
    let mut to_join: Vec<u64> = (rejoins.iter())
        .filter_map(|r| r.reconnected_at.and_then(|c| ms(c, r.joined_at)))
        .collect();
    let p = |v: &mut Vec<u64>, q: f64| percentile(v, q).map(|u| u as f64 / 1000.0);
    let max = |v: &[u64]| v.iter().max().map(|u| *u as f64 / 1000.0);
    let mut acks = counts.ack_us.clone();
    let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.0}"));
    println!(
        "drops: {} ordered, {} done; rejoins with media back: {} of {} ({} logged in again), failed {failed}, cut short by the end {cut_short}; reconnect → join p50 {} ms, reconnect → {REJOIN_FRAMES} audio and video frames p50 {} / max {} ms (from the drop, {} s away: p50 {} ms)",
        counts.drops,
        rejoins.len(),
        back.len(),
        rejoins.len(),
        relogins,
        f(p(&mut to_join, 50.0)),
        f(p(&mut to_media, 50.0)),
        f(max(&to_media)),
        opts.offline_secs,
        f(p(&mut drop_to_media, 50.0)),
        REJOIN_FRAMES = crate::site::REJOIN_FRAMES,
    );
    println!(
        "floor changes: {} sent, {} acknowledged; frame changes: {} sent, {} acknowledged; {} unacknowledged; command → meeting_state p50 {} / max {} ms; {} errors to the operator",
        counts.floor_sent,
        counts.floor_acked,
        counts.frame_sent,
        counts.frame_acked,
        counts.unacked,
        f(p(&mut acks, 50.0)),
        f(max(&counts.ack_us)),
        counts.errors.len(),
    );
    for e in counts.errors.iter().take(5) {
        println!("  operator error: {e}");
    }
    println!(
        "WebSockets the server closed (not asked for; each site reconnected after 0.5 s as the site app does): {}, {closes_back} of them with media back{}",
        closes.len(),
        if closes.is_empty() { "" } else { "; reasons:" }
    );
    for (reason, n) in &reasons {
        println!("  {n} × {reason}");
    }
    println!(
        "sites connected at the end: {} of {}; largest offer from the server {} bytes of SDP, most m-lines in one peer {most_mlines}",
        connected_end, opts.sites, largest_offer
    );

    // The media over the whole run, every session of every site.
    let (mut a_frames, mut v_frames, mut v_lost) = (0u64, 0u64, 0u64);
    let (mut a_steady, mut v_steady) = (Vec::new(), Vec::new());
    for t in outcomes.iter().flat_map(|o| o.remote.iter()) {
        match t.kind {
            MediaKind::Audio => {
                a_frames += t.frames;
                a_steady.extend_from_slice(&t.steady_delays_us);
            }
            MediaKind::Video => {
                v_frames += t.frames;
                v_lost += t.missing;
                v_steady.extend_from_slice(&t.steady_delays_us);
            }
        }
    }
    // Audio "loss" would count the floor gate's drops (a sender's sequence numbers go on while
    // the server drops its sound), so only video loss is reported.
    let loss = |l: u64, g: u64| (l + g > 0).then(|| l as f64 * 100.0 / (l + g) as f64);
    let site_errors: usize = outcomes.iter().map(|o| o.errors.len()).sum();
    let offers: u64 = outcomes.iter().map(|o| o.offers_answered).sum();
    let (a_p99, v_p99) = (p(&mut a_steady, 99.0), p(&mut v_steady, 99.0));
    println!(
        "media: {a_frames} audio and {v_frames} video frames received, video loss {} %, steady delay p99 audio {} / video {} ms; {offers} renegotiations answered; {site_errors} site errors",
        loss(v_lost, v_frames).map_or("-".into(), |x| format!("{x:.2}")),
        a_p99.map_or("-".into(), |x| format!("{x:.1}")),
        v_p99.map_or("-".into(), |x| format!("{x:.1}")),
    );
    for o in outcomes.iter().filter(|o| !o.errors.is_empty()).take(5) {
        println!("  error at {}: {}", o.username, o.errors[0]);
    }

    let all_sites = outcomes.len() == opts.sites;
    let acked = counts.unacked == 0
        && counts.floor_acked == counts.floor_sent
        && counts.frame_acked == counts.frame_sent;
    let ok = alive
        && all_sites
        && failed == 0
        && acked
        && closes.is_empty()
        && connected_end == opts.sites;
    let summary = json!({
        "sites": opts.sites,
        "sites_reported": outcomes.len(),
        "minutes": opts.duration / 60.0,
        "server_alive": alive,
        "healthz": healthz,
        "warmup_s": warm.as_secs_f64(),
        "samples": samples.iter().map(ServerSample::json).collect::<Vec<_>>(),
        "growth": growth,
        "drops_ordered": counts.drops,
        "drops": rejoins.len(),
        "rejoins_media_back": back.len(),
        "rejoins_failed": failed,
        "rejoins_cut_short": cut_short,
        "relogins": relogins,
        "rejoin_to_media_ms": {"p50": p(&mut to_media, 50.0), "max": max(&to_media)},
        "drop_to_media_ms": {"p50": p(&mut drop_to_media, 50.0), "max": max(&drop_to_media)},
        "floor_sent": counts.floor_sent,
        "floor_acked": counts.floor_acked,
        "frame_sent": counts.frame_sent,
        "frame_acked": counts.frame_acked,
        "unacked": counts.unacked,
        "ack_ms": {"p50": p(&mut acks, 50.0), "max": max(&counts.ack_us)},
        "operator_errors": counts.errors.len(),
        "audio": {"frames": a_frames, "steady_ms_p99": a_p99},
        "video": {"frames": v_frames, "loss_pct": loss(v_lost, v_frames), "steady_ms_p99": v_p99},
        "offers_answered": offers,
        "server_closed_websockets": closes.len(),
        "server_closed_media_back": closes_back,
        "server_close_reasons": reasons,
        "connected_end": connected_end,
        "largest_offer_bytes": largest_offer,
        "most_mlines": most_mlines,
        "site_errors": site_errors,
        "ok": ok,
    });
    println!("SOAK-JSON {summary}");
    println!(
        "{}",
        if ok {
            "RESULT: the server stayed up, every dropped site got media back, every floor and frame change was acknowledged"
        } else {
            "RESULT: FAILED — see above (crash, a rejoin without media, an unacknowledged change, a WebSocket the server closed, or a site not connected at the end)"
        }
    );
    ok
}

fn secs_or_never(s: f64) -> String {
    if s > 0.0 {
        format!("{s} s")
    } else {
        "never".into()
    }
}
