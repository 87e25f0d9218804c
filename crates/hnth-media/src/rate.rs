//! How much a receiver's link carries, judged from the loss it reports.
//!
//! This is the loss-based half of Google Congestion Control (draft-ietf-rmcat-gcc-02 §6), run
//! once per stats interval on the fraction of forwarded packets the receiver's transport-wide
//! feedback (TWCC) reported lost, with a slow start in front of it. It is written here rather
//! than taken from str0m because str0m's estimator comes with its leaky-bucket pacer, which
//! hands out one packet per timeout: forwarding through it cost twice the CPU per packet
//! (BENCHMARKS.md). Delay-based estimation stays available ([`Estimation::Delay`]).

/// Which bandwidth estimate chooses the simulcast layer a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Estimation {
    /// From the loss the receiver reports ([`LossControl`]); packets are forwarded unpaced.
    /// About half the CPU per packet of `Delay`.
    #[default]
    Loss,
    /// str0m's delay-based estimator (TWCC, probing) and its pacer. Sees congestion before
    /// packets are lost, at about twice the CPU per forwarded packet.
    Delay,
}

/// Above this fraction lost, the rate is cut (GCC: 10 %).
const CUT_ABOVE: f32 = 0.10;
/// Below this fraction lost, the rate grows (GCC: 2 %).
const GROW_BELOW: f32 = 0.02;
/// Growth per report once a loss has been seen (GCC: 5 %; 8 % as WebRTC uses per second).
const GROW: f64 = 1.08;
/// Growth per report until the first loss: the ceiling is usually reached in a few seconds.
const SLOW_START: f64 = 1.5;
/// After a loss, growth stops short of the rate that was being sent (this fraction of it) for
/// this many reports; without it the estimate saws up into the same loss every few seconds
/// (each climb switches layers, and costs keyframes and lost packets).
const BELOW_LOSS: f64 = 0.9;
const HOLD_REPORTS: u32 = 20;

/// The loss-based estimate of one receiver's link.
#[derive(Debug, Clone)]
pub struct LossControl {
    bps: u64,
    slow_start: bool,
    /// The rate sent when loss was last seen, and the reports it still caps growth for.
    lossy: Option<(u64, u32)>,
}

impl LossControl {
    pub fn new(start_bps: u64) -> Self {
        LossControl {
            bps: start_bps,
            slow_start: true,
            lossy: None,
        }
    }

    pub fn bps(&self) -> u64 {
        self.bps
    }

    /// One report: `loss` is the fraction of packets lost since the last one (None: no
    /// feedback came), `sent_bps` what was sent to the receiver meanwhile (0: not known). The
    /// estimate stays within `floor..=ceiling`; the ceiling is what the receiver would use (its
    /// sources' top layers), so it never grows towards rates that nothing would fill.
    pub fn on_report(&mut self, loss: Option<f32>, sent_bps: u64, floor: u64, ceiling: u64) -> u64 {
        let mut ceiling = ceiling.max(floor);
        if let Some((at, left)) = self.lossy.take() {
            if left > 0 {
                ceiling = ceiling.min((at as f64 * BELOW_LOSS) as u64).max(floor);
                self.lossy = Some((at, left - 1));
            }
        }
        let next = match loss {
            None => self.bps as f64,
            Some(l) if l > CUT_ABOVE => {
                self.slow_start = false;
                let l = f64::from(l.min(1.0));
                let mut next = self.bps as f64 * (1.0 - 0.5 * l);
                if sent_bps > 0 {
                    // What got through is the better guess of what the link carries.
                    next = next.min(sent_bps as f64 * (1.0 - l));
                    self.lossy = Some((sent_bps, HOLD_REPORTS));
                }
                next
            }
            Some(l) if l >= GROW_BELOW => {
                self.slow_start = false;
                self.bps as f64
            }
            Some(_) => self.bps as f64 * if self.slow_start { SLOW_START } else { GROW },
        };
        self.bps = (next.round() as u64).clamp(floor, ceiling);
        self.bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    #[test]
    fn one_report() {
        // (start, slow start still on, loss, floor, ceiling) -> estimate; nothing known sent
        type Case = (u64, bool, Option<f32>, u64, u64, u64);
        let cases: &[Case] = &[
            // No feedback: unchanged, but kept under the ceiling.
            (2 * M, true, None, 100_000, 10 * M, 2 * M),
            (2 * M, true, None, 100_000, M, M),
            // No loss: slow start grows by half, then by 8 %.
            (2 * M, true, Some(0.0), 100_000, 10 * M, 3 * M),
            (2 * M, false, Some(0.0), 100_000, 10 * M, 2_160_000),
            // Just under 2 % still grows; 2 % and 10 % hold.
            (2 * M, false, Some(0.019), 100_000, 10 * M, 2_160_000),
            (2 * M, false, Some(0.02), 100_000, 10 * M, 2 * M),
            (2 * M, false, Some(0.10), 100_000, 10 * M, 2 * M),
            // Above 10 %: cut by half the loss.
            (2 * M, false, Some(0.2), 100_000, 10 * M, 1_800_000),
            (2 * M, true, Some(1.0), 100_000, 10 * M, M),
            // Growth stops at the ceiling, cuts at the floor.
            (9 * M, false, Some(0.0), 100_000, 9_500_000, 9_500_000),
            (150_000, false, Some(0.9), 100_000, 10 * M, 100_000),
            // A ceiling under the floor (no layer measured yet) leaves the floor.
            (2 * M, false, Some(0.0), 2 * M, 0, 2 * M),
        ];
        for &(start, slow, loss, floor, ceiling, want) in cases {
            let mut c = LossControl {
                bps: start,
                slow_start: slow,
                lossy: None,
            };
            assert_eq!(
                c.on_report(loss, 0, floor, ceiling),
                want,
                "start {start}, slow start {slow}, loss {loss:?}, {floor}..{ceiling}"
            );
        }
    }

    #[test]
    fn the_first_loss_ends_the_slow_start() {
        let mut c = LossControl::new(M);
        c.on_report(Some(0.0), M, 0, 100 * M);
        assert_eq!(c.bps(), 1_500_000);
        c.on_report(Some(0.05), M, 0, 100 * M);
        assert_eq!(c.bps(), 1_500_000);
        c.on_report(Some(0.0), M, 0, 100 * M);
        assert_eq!(c.bps(), 1_620_000);
    }

    #[test]
    fn a_loss_cuts_to_what_got_through_and_caps_growth_for_a_while() {
        let mut c = LossControl::new(2 * M);
        // 1 Mbit/s sent, 40 % lost: 600 kbit/s got through (the estimate alone would say 1.6).
        assert_eq!(c.on_report(Some(0.4), M, 0, 10 * M), 600_000);
        // Growth then stops at 90 % of the rate that lost packets, for 20 reports.
        let mut last = 0;
        for _ in 0..20 {
            last = c.on_report(Some(0.0), 600_000, 0, 10 * M);
        }
        assert_eq!(last, 900_000);
        // Then it probes above again, 8 % per report.
        assert_eq!(c.on_report(Some(0.0), 900_000, 0, 10 * M), 972_000);
    }

    #[test]
    fn a_slow_link_is_found_and_held_near_its_rate() {
        // A link of 400 kbit/s: what is sent above it is lost.
        let link = 400_000.0;
        let mut c = LossControl::new(2_500_000);
        let mut seen = Vec::new();
        for _ in 0..30 {
            let sent = c.bps() as f64;
            let loss = ((sent - link) / sent).max(0.0) as f32;
            seen.push(c.on_report(Some(loss), sent as u64, 100_000, 10 * M));
        }
        let last = &seen[10..];
        assert!(
            last.iter().all(|b| (250_000..=520_000).contains(b)),
            "{seen:?}"
        );
    }
}
