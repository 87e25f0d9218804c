//! End to end on 127.0.0.1 (free ports): the forwarder must deliver every sent packet to every
//! receiver, each copy decrypting with that receiver's own key. Small rate, 1 s; no timing is
//! asserted (the blaster waits for the copies with a deadline, not a sleep).

use std::process::Command;

fn run(profile: &str, fanout: u32, senders: u32, size: u32) -> serde_json::Value {
    run_with(profile, fanout, senders, size, &[])
}

fn run_with(
    profile: &str,
    fanout: u32,
    senders: u32,
    size: u32,
    extra: &[&str],
) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hnth-limit"))
        .args([
            "run",
            "--addr",
            "127.0.0.1",
            "--seconds",
            "1",
            "--pps-in",
            "400",
        ])
        .args([
            "--fanout",
            &fanout.to_string(),
            "--senders",
            &senders.to_string(),
        ])
        .args(["--size", &size.to_string(), "--profile", profile])
        .args(["--verify-every", "1", "--no-pin", "--json"])
        .args(extra)
        .output()
        .expect("run hnth-limit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hnth-limit failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn check(v: &serde_json::Value, fanout: u64) {
    let u = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {v}"))
    };
    assert_eq!(u("sent"), 400, "{v}");
    assert_eq!(
        u("fwd_in"),
        u("sent"),
        "forwarder authenticated every input: {v}"
    );
    assert_eq!(u("expected"), u("sent") * fanout, "{v}");
    assert_eq!(u("received"), u("expected"), "every copy arrived: {v}");
    assert_eq!(
        u("verified"),
        u("received"),
        "every copy decrypted with its receiver's key: {v}"
    );
    assert_eq!(u("verify_failed"), 0, "{v}");
    assert_eq!(u("fwd_auth_failed"), 0, "{v}");
    // Every forwarded packet's delay was measured from the kernel's arrival stamp.
    assert_eq!(u("delay_packets"), u("fwd_in"), "{v}");
    assert!(u("delay_us_p50") <= u("delay_us_p99"), "{v}");
    assert!(u("delay_us_p99") <= u("delay_us_p999"), "{v}");
    for k in [
        "pps_out",
        "fwd_cpu_s",
        "us_per_out_packet",
        "cpu_s_per_out_mbit",
    ] {
        assert!(v[k].is_number(), "{k} in {v}");
    }
}

#[test]
fn every_packet_reaches_every_receiver_gcm() {
    let v = run("gcm128", 3, 4, 300);
    check(&v, 3);
}

#[test]
fn every_packet_reaches_every_receiver_cm_sha1_and_gcm256() {
    check(&run("cm128-sha1-80", 2, 2, 1200), 2);
    check(&run("gcm256", 1, 1, 100), 1);
}

#[test]
fn frames_of_several_packets_are_all_forwarded() {
    // 80 frames of 5 packets from 2 senders to 4 receivers.
    let v = run_with("gcm128", 4, 2, 900, &["--frame", "5"]);
    check(&v, 4);
    assert_eq!(v["frame"].as_u64(), Some(5), "{v}");
}
