//! The result table.

use std::time::Instant;

use hnth_media::testing::percentile;
use serde_json::Value;
use str0m::media::MediaKind;

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

/// Prints the table; true when every site received audio and video from every other site.
pub fn print(
    opts: &Opts,
    outcomes: &[SiteOutcome],
    dialed_at: Instant,
    ended_at: Instant,
    server_stats: &Value,
) -> bool {
    let ids: Vec<u64> = outcomes.iter().map(|o| o.site_id as u64).collect();
    let mut ok = outcomes.len() == opts.sites;
    let mut all_audio = Vec::new();
    let mut all_video = Vec::new();
    let mut joins = Vec::new();
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
    println!(
        "{:<16} {:>8} {:>8} {:>6} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>5} {:>4}",
        "site", "join_ms", "full_ms", "tracks", "rx_pkts", "rx_kbps", "a_frm", "a_loss%", "v_frm",
        "v_loss%", "a_p50ms", "a_p99ms", "v_p50ms", "v_p99ms", "kfreq", "err"
    );
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
        let complete = others
            .iter()
            .all(|f| flowing(MediaKind::Audio, *f) && flowing(MediaKind::Video, *f));
        ok &= complete;
        let with_frames: Vec<_> = o.remote.iter().filter(|t| t.frames > 0).collect();
        let first = with_frames.iter().filter_map(|t| t.first_frame_at).min();
        let join = first.map(|f| f.duration_since(dialed_at).as_micros() as u64);
        if let Some(j) = join {
            joins.push(j);
        }
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
                    a_frames += t.frames;
                    a_lost += t.missing;
                    a_delays.extend_from_slice(&t.delays_us);
                }
                MediaKind::Video => {
                    v_frames += t.frames;
                    v_lost += t.missing;
                    v_delays.extend_from_slice(&t.delays_us);
                }
            }
        }
        let secs = o
            .joined_at
            .map(|j| ended_at.duration_since(j).as_secs_f64())
            .unwrap_or(0.0);
        let kbps = if secs > 0.0 {
            o.udp_rx_bytes as f64 * 8.0 / 1000.0 / secs
        } else {
            0.0
        };
        println!(
            "{:<16} {:>8} {:>8} {:>6} {:>8} {:>9.0} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>5} {:>4}",
            o.username.trim_start_matches("dc-"),
            ms(join),
            ms(full),
            format!("{}/{}", with_frames.len(), 2 * others.len()),
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
        all_audio.extend(a_delays);
        all_video.extend(v_delays);
    }
    println!(
        "all: join p50 {} ms, max {} ms; audio delay p50 {} / p99 {} ms; video delay p50 {} / p99 {} ms",
        ms(percentile(&mut joins.clone(), 50.0)),
        ms(joins.iter().max().copied()),
        ms(percentile(&mut all_audio, 50.0)),
        ms(percentile(&mut all_audio, 99.0)),
        ms(percentile(&mut all_video, 50.0)),
        ms(percentile(&mut all_video, 99.0)),
    );
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
    println!(
        "{}",
        if ok {
            "RESULT: media flowed between every pair of sites"
        } else {
            "RESULT: FAILED — some site did not receive audio and video from every other site"
        }
    );
    ok
}
