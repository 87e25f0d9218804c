//! hnth-limit: "the machine's limit" for the hnth SFU.
//!
//! A forwarder that does only the work an SFU cannot avoid for every RTP packet: receive it
//! (recvmmsg), find its sender, SRTP-decrypt it with the sender's key, SRTP-encrypt one copy per
//! receiver with that receiver's own key, send the copies (sendmmsg). No signaling, ICE, DTLS,
//! RTCP, congestion control, layer selection or packet rewriting. It is written by hand on
//! purpose: it is a measuring stick, not a product, so every instruction it runs must be one an
//! SFU could not drop. Its CPU time per forwarded packet, measured on the same machine with the
//! same packet load, is the floor the SFU's figure is compared with.
//!
//!   hnth-limit run --pps-in 1000 --fanout 7 --size 1000 --seconds 10 [--max] [--json]
//!
//! `run` starts `hnth-limit forward` as a child pinned to CPU 0 and blasts from this process,
//! pinned to CPU 1; the forwarder reports its own CPU time (getrusage) over the control protocol.

mod blast;
mod forward;
mod net;
mod srtp;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use srtp::Profile;

#[derive(Parser)]
#[command(
    name = "hnth-limit",
    about = "The machine's limit: a bare SRTP forwarder and its load generator"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The forwarder alone (`run` starts it for you). Prints "listening ADDR" once bound.
    Forward(ForwardArgs),
    /// Forwarder (child, CPU 0) + blaster (this process, CPU 1); prints the figures.
    Run(RunArgs),
}

#[derive(Args)]
struct ForwardArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddrV4,
    #[arg(long)]
    senders: u32,
    #[arg(long)]
    fanout: u32,
    #[arg(long, value_enum, default_value = "gcm128")]
    profile: Profile,
    /// Seed of every session key (the blaster must use the same)
    #[arg(long)]
    seed: u64,
    /// Datagrams per recvmmsg
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Pin to this CPU
    #[arg(long)]
    cpu: Option<usize>,
    /// Exit when the parent process dies
    #[arg(long)]
    die_with_parent: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Aggregate input rate, SRTP packets/s (the start rate with --max)
    #[arg(long, default_value_t = 1000.0)]
    pps_in: f64,
    /// Receivers of every packet
    #[arg(long, default_value_t = 7)]
    fanout: u32,
    /// Simulated senders (default: fanout + 1, a meeting where everyone sends to the others)
    #[arg(long)]
    senders: Option<u32>,
    /// SRTP packet size on the wire (UDP payload: RTP header + payload + tag), bytes
    #[arg(long, default_value_t = 1000)]
    size: usize,
    /// Duration (of each step with --max)
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Forwarder's address
    #[arg(long, default_value = "127.0.0.1")]
    addr: Ipv4Addr,
    /// Blaster's address (default: --addr)
    #[arg(long)]
    peer_addr: Option<Ipv4Addr>,
    #[arg(long, value_enum, default_value = "gcm128")]
    profile: Profile,
    /// Datagrams per recvmmsg in the forwarder
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Packets each sender sends back to back, as one video frame (1: senders take turns per
    /// packet). With --frame 6 --senders 1 --pps-in 180 --fanout 49: the large picture of a
    /// 50-site meeting (1.5 Mbit/s, 30 fps) reaching every other site.
    #[arg(long, default_value_t = 1)]
    frame: u32,
    /// Decrypt and check one received copy in this many (1: all)
    #[arg(long, default_value_t = 64)]
    verify_every: u64,
    /// Raise the rate (×--factor per step) until the forwarder saturates a core or loses packets
    #[arg(long)]
    max: bool,
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    #[arg(long, default_value_t = 15)]
    max_steps: u32,
    /// Print one JSON line instead of the table
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 0)]
    forwarder_cpu: usize,
    #[arg(long, default_value_t = 1)]
    blaster_cpu: usize,
    /// Do not pin (also the case when fewer than 2 CPUs are available)
    #[arg(long)]
    no_pin: bool,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Forward(a) => forward_main(a),
        Cmd::Run(a) => run_main(a),
    }
}

fn forward_main(a: ForwardArgs) -> Result<()> {
    if a.die_with_parent {
        net::die_with_parent();
    }
    if let Some(cpu) = a.cpu {
        net::pin_to_cpu(cpu).with_context(|| format!("pin to CPU {cpu}"))?;
    }
    let cfg = forward::Config {
        bind: a.bind,
        senders: a.senders,
        fanout: a.fanout,
        profile: a.profile,
        seed: a.seed,
        batch: a.batch,
    };
    let sock = forward::bind(&cfg)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {}", sock.local_addr()?)?;
    out.flush()?;
    forward::run(&cfg, &sock)?; // its counters went to the driver with the answer to HNBY
    Ok(())
}

fn run_main(a: RunArgs) -> Result<()> {
    let senders = a.senders.unwrap_or(a.fanout + 1);
    let pin = !a.no_pin && net::cpus_allowed() >= 2;
    let mut seed_bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut seed_bytes).map_err(|_| anyhow::anyhow!("random seed"))?;
    let seed = u64::from_be_bytes(seed_bytes);

    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("forward")
        .args(["--bind", &format!("{}:0", a.addr)])
        .args([
            "--senders",
            &senders.to_string(),
            "--fanout",
            &a.fanout.to_string(),
        ])
        .args(["--profile", a.profile.name(), "--seed", &seed.to_string()])
        .args(["--batch", &a.batch.to_string(), "--die-with-parent"])
        .stdout(Stdio::piped());
    if pin {
        cmd.args(["--cpu", &a.forwarder_cpu.to_string()]);
        net::pin_to_cpu(a.blaster_cpu).with_context(|| format!("pin to CPU {}", a.blaster_cpu))?;
    }
    let mut child = cmd.spawn().context("start the forwarder")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let Some(listen) = line.trim().strip_prefix("listening ") else {
        let _ = child.kill();
        bail!("the forwarder did not start (said {line:?})");
    };
    let forwarder: SocketAddrV4 = listen.parse()?;

    let result =
        (|| -> Result<serde_json::Value> {
            let mut b = blast::Blaster::connect(blast::Config {
                forwarder,
                bind_ip: a.peer_addr.unwrap_or(a.addr),
                senders,
                fanout: a.fanout,
                profile: a.profile,
                seed,
                size: a.size,
                verify_every: a.verify_every.max(1),
                frame: a.frame,
            })?;
            let head = json!({
                "profile": a.profile.name(), "senders": senders, "fanout": a.fanout,
                "size": a.size, "batch": a.batch, "pinned": pin, "frame": a.frame,
            });
            let out = if a.max {
                sweep(&mut b, &a, head)?
            } else {
                let s = b.step(a.pps_in, a.seconds)?;
                let mut v = figures(&s, a.fanout);
                merge(&mut v, &head);
                v["mode"] = json!("run");
                v
            };
            b.query(true)?;
            let mut out = out;
            // Other work on the machine skews every figure; scripts can flag busy runs.
            out["loadavg_1m"] = json!(std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok()));
            Ok(out)
        })();
    let status = match &result {
        Ok(_) => child.wait()?,
        Err(_) => {
            let _ = child.kill();
            child.wait()?
        }
    };
    let out = result?;
    if !status.success() {
        bail!("the forwarder exited with {status}");
    }
    if a.json {
        println!("{out}");
    } else {
        print_table(&out);
    }
    let bad = |v: &serde_json::Value| {
        v["verify_failed"].as_u64() != Some(0) || v["fwd_auth_failed"].as_u64() != Some(0)
    };
    let failed = match out["steps"].as_array() {
        Some(steps) => steps.iter().any(bad),
        None => bad(&out),
    };
    if failed {
        bail!("copies failed to decrypt with the receivers' keys, or input failed to authenticate");
    }
    Ok(())
}

fn merge(v: &mut serde_json::Value, extra: &serde_json::Value) {
    if let (Some(v), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            v.insert(k.clone(), x.clone());
        }
    }
}

/// The figures of one step, as the JSON object documented in BENCHMARKS.md.
fn figures(s: &blast::Step, fanout: u32) -> serde_json::Value {
    let wall = s.wall_s.max(1e-9);
    let expected = s.sent * fanout as u64;
    let mbit = s.received_bytes as f64 * 8.0 / 1e6;
    json!({
        "pps_in_target": s.pps_in_target,
        "wall_s": s.wall_s,
        "sent": s.sent,
        "pps_in": s.sent as f64 / wall,
        "expected": expected,
        "received": s.received,
        "pps_out": s.received as f64 / wall,
        "mbit_out_per_s": mbit / wall,
        "loss": if expected == 0 { 0.0 } else { 1.0 - s.received as f64 / expected as f64 },
        "verified": s.verified,
        "verify_failed": s.verify_failed,
        "fwd_in": s.fwd.forwarded_in,
        "fwd_pps_in": s.fwd.forwarded_in as f64 / wall,
        "fwd_out": s.fwd.forwarded_out,
        "fwd_auth_failed": s.fwd.auth_failed,
        "fwd_unknown": s.fwd.unknown,
        "fwd_cpu_s": s.fwd_cpu_s,
        "fwd_cpu_share": s.fwd_cpu_s / wall,
        "us_per_out_packet": s.fwd_cpu_s * 1e6 / (s.received.max(1) as f64),
        // what one full core would forward at this cost per packet
        "pps_out_per_core": if s.fwd_cpu_s > 0.0 { s.received as f64 / s.fwd_cpu_s } else { 0.0 },
        "cpu_s_per_out_mbit": if mbit > 0.0 { s.fwd_cpu_s / mbit } else { 0.0 },
        "blaster_cpu_s": s.blaster_cpu_s,
        "blaster_cpu_share": s.blaster_cpu_s / wall,
        // kernel arrival → return of the sendmmsg that carried the copies, per packet in
        "delay_packets": s.fwd.delay.count,
        "delay_over_1ms": s.fwd.delay.over_1ms,
        "delay_us_p50": s.fwd.delay.p50_us,
        "delay_us_p99": s.fwd.delay.p99_us,
        "delay_us_p999": s.fwd.delay.p999_us,
    })
}

/// Raises the rate by `factor` per step until the forwarder uses ≥ 95 % of its core
/// ("forwarder_cpu"), more than 1 % of the copies are lost before that ("loss": the forwarder's
/// socket overflowed, e.g. while it waited for its CPU), or the blaster cannot keep the rate
/// ("blaster").
fn sweep(
    b: &mut blast::Blaster,
    a: &RunArgs,
    head: serde_json::Value,
) -> Result<serde_json::Value> {
    let mut steps = Vec::new();
    let mut pps = a.pps_in;
    let mut limited_by = "steps";
    for _ in 0..a.max_steps {
        let s = b.step(pps, a.seconds)?;
        let v = figures(&s, a.fanout);
        if !a.json {
            eprintln!(
                "  step {:>9.0} pps in → {:>9.0} pps out, loss {:>6.2} %, forwarder {:>5.1} % of a core, \
                 {:.2} µs/packet, blaster {:>5.1} %",
                v["pps_in"].as_f64().unwrap(),
                v["pps_out"].as_f64().unwrap(),
                100.0 * v["loss"].as_f64().unwrap(),
                100.0 * v["fwd_cpu_share"].as_f64().unwrap(),
                v["us_per_out_packet"].as_f64().unwrap(),
                100.0 * v["blaster_cpu_share"].as_f64().unwrap(),
            );
        }
        let fwd_share = v["fwd_cpu_share"].as_f64().unwrap();
        let loss = v["loss"].as_f64().unwrap();
        let kept_rate = v["pps_in"].as_f64().unwrap() >= 0.95 * pps;
        steps.push(v);
        if fwd_share >= 0.95 {
            limited_by = "forwarder_cpu";
            break;
        }
        if loss > 0.01 {
            limited_by = "loss";
            break;
        }
        if !kept_rate {
            limited_by = "blaster";
            break;
        }
        pps *= a.factor;
    }
    let best = steps
        .iter()
        .max_by(|x, y| {
            x["pps_out"]
                .as_f64()
                .unwrap()
                .total_cmp(&y["pps_out"].as_f64().unwrap())
        })
        .cloned()
        .unwrap_or_default();
    let mut v = json!({
        "mode": "max",
        "max_pps_out": best["pps_out"],
        "max_pps_in": best["fwd_pps_in"],
        "max_mbit_out_per_s": best["mbit_out_per_s"],
        "us_per_out_packet": best["us_per_out_packet"],
        "pps_out_per_core": best["pps_out_per_core"],
        "fwd_cpu_share": best["fwd_cpu_share"],
        "loss": best["loss"],
        "limited_by": limited_by,
        "steps": steps,
    });
    merge(&mut v, &head);
    Ok(v)
}

fn print_table(v: &serde_json::Value) {
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let u = |k: &str| v[k].as_u64().unwrap_or(0);
    let pinned = if v["pinned"].as_bool() == Some(true) {
        ", forwarder on CPU 0, blaster on CPU 1"
    } else {
        ""
    };
    println!(
        "hnth-limit: {} senders ({} packets per frame) → fanout {}, {} B SRTP ({}), forwarder batch {}{pinned}",
        u("senders"),
        u("frame"),
        u("fanout"),
        u("size"),
        v["profile"].as_str().unwrap_or("?"),
        u("batch"),
    );
    let rows: Vec<(&str, String)> = if v["mode"] == "max" {
        vec![
            (
                "max forwarded packets/s",
                format!(
                    "{:.0} ({:.0} packets/s in taken by the forwarder, {:.0} Mbit/s out)",
                    f("max_pps_out"),
                    f("max_pps_in"),
                    f("max_mbit_out_per_s")
                ),
            ),
            (
                "forwarder CPU at that rate",
                format!(
                    "{:.0} % of a core, {:.2} µs per forwarded packet ({:.0} packets/s per core)",
                    100.0 * f("fwd_cpu_share"),
                    f("us_per_out_packet"),
                    f("pps_out_per_core")
                ),
            ),
            ("loss at that rate", format!("{:.2} %", 100.0 * f("loss"))),
            (
                "stopped by",
                v["limited_by"].as_str().unwrap_or("?").to_string(),
            ),
        ]
    } else {
        vec![
            (
                "packets in/s",
                format!(
                    "{:.0} (target {:.0}; {} sent in {:.2} s)",
                    f("pps_in"),
                    f("pps_in_target"),
                    u("sent"),
                    f("wall_s")
                ),
            ),
            (
                "packets out/s",
                format!("{:.0} ({:.1} Mbit/s)", f("pps_out"), f("mbit_out_per_s")),
            ),
            (
                "loss",
                format!(
                    "{:.3} % ({} of {} copies received; {} decrypted and checked, {} failed)",
                    100.0 * f("loss"),
                    u("received"),
                    u("expected"),
                    u("verified"),
                    u("verify_failed")
                ),
            ),
            (
                "forwarder CPU",
                format!(
                    "{:.3} s ({:.1} % of a core)",
                    f("fwd_cpu_s"),
                    100.0 * f("fwd_cpu_share")
                ),
            ),
            (
                "**CPU per forwarded packet**",
                format!(
                    "**{:.2} µs** ({:.0} packets/s per core)",
                    f("us_per_out_packet"),
                    f("pps_out_per_core")
                ),
            ),
            (
                "delay added (arrival → copies sent)",
                format!(
                    "p50 {} µs, p99 {} µs, p99.9 {} µs; {} of {} packets over 1 ms",
                    u("delay_us_p50"),
                    u("delay_us_p99"),
                    u("delay_us_p999"),
                    u("delay_over_1ms"),
                    u("delay_packets")
                ),
            ),
            (
                "CPU per forwarded Mbit",
                format!("{:.5} s", f("cpu_s_per_out_mbit")),
            ),
            (
                "blaster CPU",
                format!(
                    "{:.3} s ({:.1} % of a core)",
                    f("blaster_cpu_s"),
                    100.0 * f("blaster_cpu_share")
                ),
            ),
        ]
    };
    println!("| figure | value |\n|---|---|");
    for (k, x) in rows {
        println!("| {k} | {x} |");
    }
    println!(
        "| load average (1 min) at the end | {:.2} |",
        f("loadavg_1m")
    );
}
