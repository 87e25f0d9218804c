//! The floor gate (C4, Art. 7.2a): a site's audio reaches the others only while the meeting's
//! rules say it holds the floor, whatever the site's own page does. A gated packet is dropped at
//! the server and counted; sound with energy behind a closed gate (a microphone opened without
//! the floor) is reported, at most once a second, for the rules to record (R4).
//!
//! Kept apart from forwarding so that it can be tested alone; `Conference` asks it about every
//! incoming audio packet.

use std::time::{Duration, Instant};

/// Louder than this (RFC 6464 level, -dBov as str0m reports it, so -127 is digital silence)
/// counts as sound: speech at a microphone is -20 to -40 dBov, room noise under -55.
pub const SPEECH_DBOV: i8 = -50;
/// This many packets of sound in a row (20 ms each: 0.4 s) are speech, not a cough or a click.
pub const SPEECH_PACKETS: u32 = 20;
/// Unheard speech is reported at most this often per site.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What becomes of one audio packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Pass,
    /// Drop it (the gate is closed).
    Drop,
    /// Drop it, and report that the site speaks without the floor.
    DropSpeaking,
}

/// One site's gate. Open until the meeting's rules close it (a core without floor control
/// forwards every sound).
#[derive(Debug, Clone)]
pub struct FloorGate {
    open: bool,
    /// Audio packets dropped since the peer joined.
    pub dropped: u64,
    loud_run: u32,
    last_report: Option<Instant>,
}

impl Default for FloorGate {
    fn default() -> Self {
        FloorGate {
            open: true,
            dropped: 0,
            loud_run: 0,
            last_report: None,
        }
    }
}

impl FloorGate {
    /// A gate open or closed from the start.
    pub fn new(open: bool) -> Self {
        FloorGate {
            open,
            ..FloorGate::default()
        }
    }

    pub fn set_open(&mut self, open: bool) {
        self.open = open;
        self.loud_run = 0;
    }

    /// The verdict on an audio packet with this RFC 6464 level (`None`: the sender does not
    /// say, which is then judged as sound) arriving at `now`.
    pub fn admit(&mut self, now: Instant, level: Option<i8>) -> Verdict {
        if self.open {
            return Verdict::Pass;
        }
        self.dropped += 1;
        if level.is_none_or(|l| l > SPEECH_DBOV) {
            self.loud_run += 1;
        } else {
            self.loud_run = 0;
        }
        let due = self
            .last_report
            .is_none_or(|t| now.duration_since(t) >= REPORT_EVERY);
        if self.loud_run >= SPEECH_PACKETS && due {
            self.last_report = Some(now);
            return Verdict::DropSpeaking;
        }
        Verdict::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_gate_passes_everything_and_counts_nothing() {
        let mut g = FloorGate::default();
        let t = Instant::now();
        assert_eq!(g.admit(t, Some(-30)), Verdict::Pass);
        assert_eq!(g.admit(t, None), Verdict::Pass);
        assert_eq!(g.dropped, 0);
    }

    #[test]
    fn a_closed_gate_drops_and_reports_sustained_speech_once_a_second() {
        let t0 = Instant::now();
        let at = |i: u32| t0 + Duration::from_millis(20 * u64::from(i));
        let mut g = FloorGate::default();
        g.set_open(false);
        // Room noise and silence: dropped, never reported.
        for i in 0..100 {
            let level = if i % 2 == 0 { -127 } else { SPEECH_DBOV };
            assert_eq!(g.admit(at(i), Some(level)), Verdict::Drop, "{i}");
        }
        // Speech: the 20th loud packet in a row is reported, then not again within a second.
        let verdicts: Vec<Verdict> = (100..200).map(|i| g.admit(at(i), Some(-30))).collect();
        let reported: Vec<usize> = (verdicts.iter().enumerate())
            .filter(|(_, v)| **v == Verdict::DropSpeaking)
            .map(|(i, _)| i + 100)
            .collect();
        assert_eq!(reported, [119, 169]); // 119: 20 in a row; 169: one second after
        assert_eq!(g.dropped, 200);
        // A cough (fewer than 20 loud packets) between silences is not speech.
        let mut g = FloorGate::default();
        g.set_open(false);
        for i in 0..60 {
            let level = if i % 20 < 19 { -30 } else { -127 };
            assert_eq!(g.admit(at(i), Some(level)), Verdict::Drop, "{i}");
        }
        // Opening the gate passes again; closing it starts the count anew.
        g.set_open(true);
        assert_eq!(g.admit(at(61), Some(-30)), Verdict::Pass);
        g.set_open(false);
        assert_eq!(g.admit(at(62), None), Verdict::Drop);
    }
}
