//! The delay the server adds: from the moment the kernel received a datagram to the return of
//! the `sendmmsg` that carried what it caused (the forwarded packets, the feedback), as a
//! Prometheus histogram on `/metrics`; and the part of it the datagram spent waiting in the
//! socket before a media worker read it (a worker short of CPU shows there first).
//!
//! Written by hand rather than with the `metrics` crate and its exporter: it is one fixed set of
//! counters, recorded once per driver turn, and the benchmark reads the cumulative buckets
//! before and after its window and subtracts them, which a summary's quantiles would not allow.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (the last bucket is +Inf).
pub const BOUNDS_US: [u64; 17] = [
    50, 100, 200, 300, 500, 750, 1_000, 2_000, 3_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 1_000_000,
];
const BUCKETS: usize = BOUNDS_US.len() + 1;

fn bucket(d: Duration) -> usize {
    let us = d.as_micros();
    BOUNDS_US
        .iter()
        .position(|b| us <= u128::from(*b))
        .unwrap_or(BOUNDS_US.len())
}

/// The media workers' delays, shared by every worker; read by `/metrics`.
#[derive(Default)]
pub struct MediaDelays {
    /// Kernel arrival → `sendmmsg` returned.
    pub total: DelayHistogram,
    /// Kernel arrival → read by the worker.
    pub waiting: DelayHistogram,
}

impl MediaDelays {
    /// The Prometheus text exposition of both histograms.
    pub fn render(&self, out: &mut String) {
        self.total.render(
            "hnth_media_server_delay_seconds",
            "Time from a datagram's arrival in the kernel to the return of the sendmmsg that \
             carried what it caused.",
            out,
        );
        self.waiting.render(
            "hnth_media_socket_wait_seconds",
            "Time from a datagram's arrival in the kernel to its reading by a media worker.",
            out,
        );
    }
}

/// One histogram of delays.
#[derive(Default)]
pub struct DelayHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// One driver turn's delays, added to the shared histogram at once.
#[derive(Default)]
pub struct Turn {
    counts: [u64; BUCKETS],
    sum_ns: u64,
    any: bool,
}

impl Turn {
    pub fn record(&mut self, d: Duration) {
        self.counts[bucket(d)] += 1;
        self.sum_ns = self.sum_ns.saturating_add(d.as_nanos() as u64);
        self.any = true;
    }

    /// Add this turn to `h` and start afresh.
    pub fn commit(&mut self, h: &DelayHistogram) {
        if !self.any {
            return;
        }
        for (c, n) in h.counts.iter().zip(self.counts.iter_mut()) {
            if *n > 0 {
                c.fetch_add(*n, Ordering::Relaxed);
                *n = 0;
            }
        }
        h.sum_ns.fetch_add(self.sum_ns, Ordering::Relaxed);
        self.sum_ns = 0;
        self.any = false;
    }
}

impl DelayHistogram {
    /// The Prometheus text exposition of the histogram (cumulative buckets, seconds).
    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = match BOUNDS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".into(),
            };
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {total}");
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds() {
        let cases = [
            (0, 0),
            (50, 0),
            (51, 1),
            (1_000, 6),
            (1_001, 7),
            (1_000_000, 16),
            (1_000_001, 17),
        ];
        for (us, want) in cases {
            assert_eq!(bucket(Duration::from_micros(us)), want, "{us} µs");
        }
    }

    #[test]
    fn renders_cumulative_buckets() {
        let h = MediaDelays::default();
        let mut t = Turn::default();
        t.record(Duration::from_micros(40));
        t.record(Duration::from_micros(400));
        t.record(Duration::from_secs(2));
        t.commit(&h.total);
        t.commit(&h.total); // an empty turn adds nothing
        let mut s = String::new();
        h.render(&mut s);
        assert!(
            s.contains("hnth_media_socket_wait_seconds_count 0\n"),
            "{s}"
        );
        assert!(
            s.contains("hnth_media_server_delay_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("hnth_media_server_delay_seconds_bucket{le=\"0.0005\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("hnth_media_server_delay_seconds_bucket{le=\"1\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("hnth_media_server_delay_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{s}"
        );
        assert!(
            s.contains("hnth_media_server_delay_seconds_count 3\n"),
            "{s}"
        );
    }
}
