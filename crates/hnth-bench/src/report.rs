//! The result table.

use std::time::Instant;

use hnth_media::testing::percentile;
use serde_json::{json, Value};
use str0m::media::MediaKind;

use crate::operator::{FloorCycle, HOLD, PAUSE};
use crate::site::SiteOutcome;
use crate::Opts;

/// A track counts as flowing with at least this many frames.
const MIN_FRAMES: u64 = 10;

fn ms(us: Option<u64>) -> String {
    us.map(|u| format!("{:.1}", u as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn pct(lost: u64, got: u64) -> String {
    if lost + got == 0 {
        return "-".into();
    }
    format!("{:.2}", lost as f64 * 100.0 / (lost + got) as f64)
}

fn layer_name(l: u8) -> &'static str {
    match l {
        0 => "q",
        1 => "h",
        2 => "f",
        _ => "?",
    }
}

/// CPU time and resident memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    pub cpu_s: f64,
    pub rss_kib: u64,
}

impl ProcSample {
    pub fn read(pid: u32) -> Option<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime, in clock ticks: USER_HZ is 100 in Linux's user-space ABI.
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Some(ProcSample {
            at: Instant::now(),
            cpu_s: ticks as f64 / 100.0,
            rss_kib,
        })
    }
}

/// Samples of the server and of this generator at dialing and at the end of the window.
pub struct Procs {
    pub server: Option<(ProcSample, ProcSample)>,
    pub generator: Option<(ProcSample, ProcSample)>,
    /// The server's own delay histogram (`/metrics`) at dialing and at the end of the window.
    pub server_delay: Option<(crate::http::Buckets, crate::http::Buckets)>,
    /// The part of it spent waiting in the socket, likewise.
    pub socket_wait: Option<(crate::http::Buckets, crate::http::Buckets)>,
    /// The server's delay from `steady_after` past dialing to the end (joins done).
    pub server_delay_steady: Option<(crate::http::Buckets, crate::http::Buckets)>,
    pub steady_after: std::time::Duration,
    /// The floor given and taken back by the operator (`--floor-cycles`).
    pub floor: Vec<FloorCycle>,
    /// The sites that held the floor throughout (C4): only their sound is forwarded. None:
    /// no floor control (Janus).
    pub floor_holders: Option<std::collections::BTreeSet<u64>>,
}

/// Prints the table; true when every site received audio and video from as many others as
/// its view holds (all the others, up to `--view`).
pub fn print(
    opts: &Opts,
    outcomes: &[SiteOutcome],
    dialed_at: Instant,
    ended_at: Instant,
    server_stats: &Value,
    procs: &Procs,
) -> bool {
    let ids: Vec<u64> = outcomes.iter().map(|o| o.site_id as u64).collect();
    let expected = opts.view.min(opts.sites.saturating_sub(1));
    let per_site = opts.per_site || opts.sites <= 16;
    let mut ok = outcomes.len() == opts.sites;
    let mut complete_sites = 0;
    let mut speakers = std::collections::BTreeSet::new();
    let (mut sum_a_frames, mut sum_a_lost, mut sum_v_frames, mut sum_v_lost) = (0, 0, 0, 0);
    // Video frames received per simulcast layer (q, h, f), over every site.
    let mut layer_frames = [0u64; 3];
    let mut all_audio = Vec::new();
    let mut all_video = Vec::new();
    let mut steady_audio = Vec::new();
    let mut steady_video = Vec::new();
    let mut joins = Vec::new();
    let (mut joined_msgs, mut connects) = (Vec::new(), Vec::new());
    println!();
    println!(
        "hnth-bench: {} sites, {:.0} s, video x{} (q/h/f {:.0}/{:.0}/{:.0} kbit/s), keyframe every {} s",
        opts.sites,
        ended_at.duration_since(dialed_at).as_secs_f64(),
        opts.video_scale,
        150.0 * opts.video_scale,
        500.0 * opts.video_scale,
        1500.0 * opts.video_scale,
        opts.keyframe_interval
    );
    if per_site {
        println!(
            "{:<16} {:>8} {:>8} {:>6} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>5} {:>4}",
            "site", "join_ms", "full_ms", "tracks", "rx_pkts", "rx_kbps", "a_frm", "a_loss%", "v_frm",
            "v_loss%", "a_p50ms", "a_p99ms", "v_p50ms", "v_p99ms", "kfreq", "err"
        );
    }
    let muted: std::collections::BTreeSet<u64> = outcomes
        .iter()
        .filter(|o| !o.talking)
        .map(|o| o.site_id as u64)
        .collect();
    // Audio frames received from sites whose microphone was muted (silence is not forwarded).
    let mut muted_audio_frames = 0;
    for o in outcomes {
        let others: Vec<u64> = o.expected_senders.clone().unwrap_or_else(|| {
            ids.iter()
                .copied()
                .filter(|i| *i != o.site_id as u64)
                .collect()
        });
        let flowing = |kind: MediaKind, from: u64| {
            o.remote
                .iter()
                .any(|t| t.kind == kind && t.sender() == Some(from) && t.frames >= MIN_FRAMES)
        };
        let senders: Vec<u64> = others
            .iter()
            .copied()
            .filter(|f| {
                // A muted site, or one without the floor, is rightly not heard.
                let unheard = muted.contains(f)
                    || (procs.floor_holders.as_ref()).is_some_and(|h| !h.contains(f));
                (unheard || flowing(MediaKind::Audio, *f)) && flowing(MediaKind::Video, *f)
            })
            .collect();
        speakers.extend(senders.iter().copied());
        let complete = senders.len() >= expected;
        if complete {
            complete_sites += 1;
        }
        ok &= complete;
        let with_frames: Vec<_> = o.remote.iter().filter(|t| t.frames > 0).collect();
        let first = with_frames.iter().filter_map(|t| t.first_frame_at).min();
        let join = first.map(|f| f.duration_since(dialed_at).as_micros() as u64);
        if let Some(j) = join {
            joins.push(j);
        }
        // The join's phases: the `join` message reached the site, its link was up (ICE and
        // DTLS), its first frame came.
        let since_dial =
            |t: Option<Instant>| t.map(|t| t.duration_since(dialed_at).as_micros() as u64);
        joined_msgs.extend(since_dial(o.joined_at));
        connects.extend(since_dial(o.connected_at));
        let full = complete
            .then(|| with_frames.iter().filter_map(|t| t.first_frame_at).max())
            .flatten()
            .map(|f| f.duration_since(dialed_at).as_micros() as u64);
        let (mut a_frames, mut a_lost, mut v_frames, mut v_lost) = (0, 0, 0, 0);
        let mut a_delays = Vec::new();
        let mut v_delays = Vec::new();
        for t in &o.remote {
            match t.kind {
                MediaKind::Audio => {
                    if t.sender().is_some_and(|f| muted.contains(&f)) {
                        muted_audio_frames += t.frames;
                    }
                    a_frames += t.frames;
                    a_lost += t.missing;
                    a_delays.extend_from_slice(&t.delays_us);
                    steady_audio.extend_from_slice(&t.steady_delays_us);
                }
                MediaKind::Video => {
                    v_frames += t.frames;
                    v_lost += t.missing;
                    for (l, n) in &t.layers {
                        if let Some(slot) = layer_frames.get_mut(*l as usize) {
                            *slot += n;
                        }
                    }
                    v_delays.extend_from_slice(&t.delays_us);
                    steady_video.extend_from_slice(&t.steady_delays_us);
                }
            }
        }
        sum_a_frames += a_frames;
        sum_a_lost += a_lost;
        sum_v_frames += v_frames;
        sum_v_lost += v_lost;
        let secs = o
            .joined_at
            .map(|j| ended_at.duration_since(j).as_secs_f64())
            .unwrap_or(0.0);
        let kbps = if secs > 0.0 {
            o.udp_rx_bytes as f64 * 8.0 / 1000.0 / secs
        } else {
            0.0
        };
        if per_site {
            println!(
                "{:<16} {:>8} {:>8} {:>6} {:>8} {:>9.0} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>5} {:>4}",
                o.username.trim_start_matches("dc-"),
                ms(join),
                ms(full),
                format!("{}/{}", with_frames.len(), 2 * expected),
                o.udp_rx_packets,
                kbps,
                a_frames,
                pct(a_lost, a_frames),
                v_frames,
                pct(v_lost, v_frames),
                ms(percentile(&mut a_delays, 50.0)),
                ms(percentile(&mut a_delays, 99.0)),
                ms(percentile(&mut v_delays, 50.0)),
                ms(percentile(&mut v_delays, 99.0)),
                o.sent.keyframe_requests,
                o.errors.len(),
            );
        }
        all_audio.extend(a_delays);
        all_video.extend(v_delays);
    }
    let window = ended_at.duration_since(dialed_at).as_secs_f64();
    let rx_packets: u64 = outcomes.iter().map(|o| o.udp_rx_packets).sum();
    let rx_bytes: u64 = outcomes.iter().map(|o| o.udp_rx_bytes).sum();
    let tx_packets: u64 = outcomes.iter().map(|o| o.udp_tx_packets).sum();
    let paused = outcomes.iter().filter(|o| o.video_paused).count();
    let errors: usize = outcomes.iter().map(|o| o.errors.len()).sum();
    let mbit = rx_bytes as f64 * 8.0 / 1e6;
    let p = |v: &mut Vec<u64>, q: f64| percentile(v, q).map(|u| u as f64 / 1000.0);
    let all_layers = layer_frames.iter().sum::<u64>().max(1) as f64;
    let layer_pct = layer_frames.map(|n| (n as f64 * 1000.0 / all_layers).round() / 10.0);
    let summary = json!({
        "sites": opts.sites,
        "view": opts.view,
        "seconds": window,
        "complete_sites": complete_sites,
        "speakers": speakers.len(),
        "muted_sites": muted.len(),
        "muted_audio_frames": muted_audio_frames,
        "video_paused_sites": paused,
        "join_ms": {"p50": p(&mut joins, 50.0), "p99": p(&mut joins, 99.0),
                    "max": joins.iter().max().map(|u| *u as f64 / 1000.0),
                    "join_message_p50": p(&mut joined_msgs, 50.0),
                    "join_message_p99": p(&mut joined_msgs, 99.0),
                    "connected_p50": p(&mut connects, 50.0),
                    "connected_p99": p(&mut connects, 99.0)},
        "audio": {"frames": sum_a_frames, "loss_pct": loss(sum_a_lost, sum_a_frames),
                  "delay_ms_p50": p(&mut all_audio, 50.0), "delay_ms_p99": p(&mut all_audio, 99.0),
                  "steady_ms_p50": p(&mut steady_audio, 50.0), "steady_ms_p99": p(&mut steady_audio, 99.0)},
        "video": {"frames": sum_v_frames, "loss_pct": loss(sum_v_lost, sum_v_frames),
                  "layer_frames_pct": layer_pct,
                  "delay_ms_p50": p(&mut all_video, 50.0), "delay_ms_p99": p(&mut all_video, 99.0),
                  "steady_ms_p50": p(&mut steady_video, 50.0), "steady_ms_p99": p(&mut steady_video, 99.0)},
        "forwarded": {"packets": rx_packets, "bytes": rx_bytes,
                      "packets_per_s": rx_packets as f64 / window, "mbit_per_s": mbit / window},
        "sent_packets": tx_packets,
        "server": procs.server.map(|(a, b)| proc_json(a, b, rx_packets, mbit, opts.sites)),
        "generator": procs.generator.map(|(a, b)| proc_json(a, b, rx_packets, mbit, opts.sites)),
        "errors": errors,
        "server_delay": procs.server_delay.as_ref().map(|(a, b)| delay_json(a, b)),
        "socket_wait": procs.socket_wait.as_ref().map(|(a, b)| delay_json(a, b)),
        "server_delay_steady": procs.server_delay_steady.as_ref().map(|(a, b)| delay_json(a, b)),
        "steady_after_s": procs.steady_after.as_secs_f64(),
        "floor": floor_json(&procs.floor, outcomes),
    });
    let f = |v: &Value| match v.as_f64() {
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    };
    println!(
        "all: {complete_sites}/{} sites received audio and video from {expected} others; {} distinct senders seen, {paused} sites told to pause video",
        opts.sites,
        speakers.len()
    );
    println!(
        "join (dial → first frame) p50 {} / p99 {} / max {} ms; audio delay p50 {} / p99 {} ms; video delay p50 {} / p99 {} ms",
        f(&summary["join_ms"]["p50"]),
        f(&summary["join_ms"]["p99"]),
        f(&summary["join_ms"]["max"]),
        f(&summary["audio"]["delay_ms_p50"]),
        f(&summary["audio"]["delay_ms_p99"]),
        f(&summary["video"]["delay_ms_p50"]),
        f(&summary["video"]["delay_ms_p99"]),
    );
    println!(
        "after the first 3 s of each track: audio delay p50 {} / p99 {} ms; video delay p50 {} / p99 {} ms",
        f(&summary["audio"]["steady_ms_p50"]),
        f(&summary["audio"]["steady_ms_p99"]),
        f(&summary["video"]["steady_ms_p50"]),
        f(&summary["video"]["steady_ms_p99"]),
    );
    println!(
        "loss: audio {} %, video {} %; forwarded {} packets ({:.0}/s, {:.1} Mbit/s) over {:.1} s",
        pct(sum_a_lost, sum_a_frames),
        pct(sum_v_lost, sum_v_frames),
        rx_packets,
        rx_packets as f64 / window,
        mbit / window,
        window
    );
    for (what, d) in [
        (
            "server-added delay (kernel arrival → sendmmsg returned)",
            &summary["server_delay"],
        ),
        (
            "of which waiting in the socket (kernel arrival → read)",
            &summary["socket_wait"],
        ),
    ] {
        if d.is_object() {
            println!(
                "{what}, {} datagrams: p50 ≤ {} ms, p99 ≤ {} ms, p99.9 ≤ {} ms",
                d["datagrams"], d["p50_ms_le"], d["p99_ms_le"], d["p999_ms_le"]
            );
        }
    }
    for (who, v) in [
        ("server", &summary["server"]),
        ("generator", &summary["generator"]),
    ] {
        if v.is_object() {
            println!(
                "{who}: {:.2} CPU s ({:.0} % of a core), {:.1} µs per forwarded packet, {:.3} CPU s per forwarded Mbit; RSS {:.0} → {:.0} MiB ({:.2} MiB per site)",
                v["cpu_s"].as_f64().unwrap_or(0.0),
                v["core_pct"].as_f64().unwrap_or(0.0),
                v["us_per_packet"].as_f64().unwrap_or(0.0),
                v["cpu_s_per_mbit"].as_f64().unwrap_or(0.0),
                v["rss_mib_before"].as_f64().unwrap_or(0.0),
                v["rss_mib_after"].as_f64().unwrap_or(0.0),
                v["rss_mib_per_site"].as_f64().unwrap_or(0.0),
            );
        }
    }
    let fl = &summary["floor"];
    if fl["cycles"].as_u64().unwrap_or(0) > 0 {
        println!(
            "floor (C4), {} give-and-take cycles heard at {} receptions: give → first audio p50 {} / p99 {} / max {} ms; take back → sound stopped (≤ last packet + 20 ms) p50 {} / p99 {} / max {} ms; {} receptions heard nothing",
            fl["cycles"], fl["heard"],
            f(&fl["grant_ms"]["p50"]), f(&fl["grant_ms"]["p99"]), f(&fl["grant_ms"]["max"]),
            f(&fl["take_ms"]["p50"]), f(&fl["take_ms"]["p99"]), f(&fl["take_ms"]["max"]),
            fl["not_heard"],
        );
    }
    println!("BENCH-JSON {summary}");
    if !per_site {
        for o in outcomes.iter().filter(|o| !o.errors.is_empty()).take(5) {
            println!("  error at {}: {}", o.username, o.errors[0]);
        }
        return finish(ok);
    }
    // Forwarded layers at the end, per receiver.
    for o in outcomes {
        let mut layers: Vec<String> = o
            .remote
            .iter()
            .filter(|t| t.kind == MediaKind::Video && t.active)
            .map(|t| {
                let from = o
                    .participants
                    .get(&t.stream_id)
                    .cloned()
                    .unwrap_or_else(|| t.stream_id.clone());
                format!(
                    "{}:{}({} sw)",
                    from,
                    t.layer.map(layer_name).unwrap_or("-"),
                    t.switches.len()
                )
            })
            .collect();
        layers.sort();
        println!(
            "layers at {:<14} {}",
            o.username.trim_start_matches("dc-"),
            layers.join(", ")
        );
        for e in o.errors.iter().take(5) {
            println!("  error at {}: {e}", o.username);
        }
    }
    if let Some(list) = server_stats.as_array() {
        println!("server link stats (last):");
        for s in list {
            println!(
                "  site {:>3}: rtt {} ms, loss in {} out {}, kbps in {} out {}",
                s["site_id"], s["rtt_ms"], s["loss_in"], s["loss_out"], s["kbps_in"], s["kbps_out"]
            );
        }
    }
    finish(ok)
}

fn finish(ok: bool) -> bool {
    println!(
        "{}",
        if ok {
            "RESULT: every site received audio and video from every site in its view"
        } else {
            "RESULT: FAILED — some site did not receive audio and video from every site in its view"
        }
    );
    ok
}

fn loss(lost: u64, got: u64) -> Option<f64> {
    (lost + got > 0).then(|| lost as f64 * 100.0 / (lost + got) as f64)
}

fn proc_json(a: ProcSample, b: ProcSample, packets: u64, mbit: f64, sites: usize) -> Value {
    let cpu = b.cpu_s - a.cpu_s;
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let mib = |k: u64| k as f64 / 1024.0;
    json!({
        "cpu_s": cpu,
        "core_pct": if wall > 0.0 { cpu * 100.0 / wall } else { 0.0 },
        "us_per_packet": if packets > 0 { cpu * 1e6 / packets as f64 } else { 0.0 },
        "cpu_s_per_mbit": if mbit > 0.0 { cpu / mbit } else { 0.0 },
        "rss_mib_before": mib(a.rss_kib),
        "rss_mib_after": mib(b.rss_kib),
        "rss_mib_per_site": mib(b.rss_kib.saturating_sub(a.rss_kib)) / sites.max(1) as f64,
    })
}

/// Quantiles of a server histogram between two readings, in ms (bucket bounds: "at most").
fn delay_json(a: &crate::http::Buckets, b: &crate::http::Buckets) -> Value {
    let q = |q: f64| crate::http::histogram_quantile(a, b, q);
    let ms = |v: Option<(f64, u64)>| {
        v.map(|(s, _)| {
            if s.is_finite() {
                Value::from(s * 1000.0)
            } else {
                Value::from("inf")
            }
        })
    };
    json!({"p50_ms_le": ms(q(0.5)), "p99_ms_le": ms(q(0.99)), "p999_ms_le": ms(q(0.999)),
           "datagrams": q(0.5).map(|(_, n)| n)})
}

/// A site's audio packets come every 20 ms.
const AUDIO_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The floor's delays as the receivers heard them: for each cycle and each other site, the
/// talk spurt of the cycled site's audio that began after the give; from the give to its
/// first frame, and from the take-back to when it stopped (at most its last frame + 20 ms).
fn floor_json(cycles: &[FloorCycle], outcomes: &[SiteOutcome]) -> Value {
    let (mut grant, mut take, mut not_heard) = (Vec::new(), Vec::new(), 0u64);
    for c in cycles {
        let stream = format!("site-{}", c.site);
        for o in outcomes.iter().filter(|o| o.site_id != c.site) {
            // The spurts of this cycle: begun after the give and before the next one (a
            // spurt split by a pause in the middle still ends the cycle with its last).
            let until = c.taken.unwrap_or(c.given + HOLD) + PAUSE;
            let spurts: Vec<_> = (o.remote.iter())
                .filter(|t| t.kind == MediaKind::Audio && t.stream_id == stream)
                .flat_map(|t| t.spurts.iter())
                .filter(|(first, _)| *first >= c.given && *first < until)
                .collect();
            let (Some(first), Some(last)) = (
                spurts.iter().map(|s| s.0).min(),
                spurts.iter().map(|s| s.1).max(),
            ) else {
                not_heard += 1;
                continue;
            };
            grant.push((first - c.given).as_micros() as u64);
            if let Some(taken) = c.taken {
                // The sound stopped between the last packet heard and the next one due (a
                // packet every 20 ms): the upper bound counts.
                let stopped = last + AUDIO_INTERVAL;
                take.push(stopped.saturating_duration_since(taken).as_micros() as u64);
            }
        }
    }
    let p = |v: &mut Vec<u64>, q: f64| percentile(v, q).map(|u| u as f64 / 1000.0);
    let max = |v: &[u64]| v.iter().max().map(|u| *u as f64 / 1000.0);
    json!({
        "cycles": cycles.len(), "heard": grant.len(), "not_heard": not_heard,
        "grant_ms": {"p50": p(&mut grant, 50.0), "p99": p(&mut grant, 99.0), "max": max(&grant)},
        "take_ms": {"p50": p(&mut take, 50.0), "p99": p(&mut take, 99.0), "max": max(&take)},
    })
}
