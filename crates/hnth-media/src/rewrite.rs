//! Rewriting one outgoing stream: each receiver sees one continuous RTP stream (sequence
//! numbers, timestamps, VP8 picture ids) whatever simulcast layer it is fed from and however
//! long the source was silent. Kept apart from forwarding so that it is tested alone.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpWrite, Vp8Descriptor};

/// RTP sequence number, timestamp and VP8 picture numbering of one outgoing stream, rebased at
/// every layer switch so that the receiver sees one stream.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rewrite {
    pub(crate) seq_offset: i64,
    pub(crate) ts_offset: u32,
    pub(crate) picture_id_offset: u16,
    tl0_offset: u8,
    /// Packets of the current layer before this (extended) sequence number are older than the
    /// switch and are dropped.
    pub(crate) first_seq: u64,
    /// The newest packet written: its sequence number, timestamp, when, picture id, TL0PICIDX.
    pub(crate) last: Option<(u64, u32, Instant)>,
    pub(crate) last_picture_id: Option<u16>,
    last_tl0: Option<u8>,
}

impl Rewrite {
    /// Start forwarding from the packet `pkt` (the first one, or a new layer's keyframe):
    /// continue the numbering where the previous layer left it.
    pub(crate) fn rebase(&mut self, now: Instant, pkt: &Packet) {
        self.seq_offset = match self.last {
            Some((seq, _, _)) => seq as i64 + 1 - pkt.seq as i64,
            // Begin with rollover counter 0, as a fresh receiver expects.
            None => (pkt.seq & 0xffff) as i64 - pkt.seq as i64,
        };
        self.ts_offset = match self.last {
            Some((_, ts, at)) => {
                let clock: u64 = if pkt.video { 90 } else { 48 };
                // RTP time wraps: the gap counts modulo 2^32 (a video layer paused for 13 hours
                // is past 2^32 ticks of 90 kHz).
                let ms = now.saturating_duration_since(at).as_millis() as u64;
                let gap = (ms.wrapping_mul(clock) as u32).max(1);
                ts.wrapping_add(gap).wrapping_sub(pkt.ts)
            }
            None => 0,
        };
        if let Some(d) = &pkt.vp8 {
            if let (Some(last), Some(id)) = (self.last_picture_id, d.picture_id()) {
                self.picture_id_offset = last.wrapping_add(1).wrapping_sub(id) & 0x7fff;
            }
            if let (Some(last), Some(idx)) = (self.last_tl0, d.tl0_pic_idx()) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(idx);
            }
        }
        self.first_seq = pkt.seq;
    }

    /// The outgoing packet for `pkt`, or None if it is older than the last switch.
    pub(crate) fn write(&mut self, now: Instant, pt: Pt, pkt: &Packet) -> Option<RtpWrite> {
        if pkt.seq < self.first_seq {
            return None;
        }
        let seq = (pkt.seq as i64 + self.seq_offset).max(0) as u64;
        let ts = pkt.ts.wrapping_add(self.ts_offset);
        if self.last.is_none_or(|(l, _, _)| seq > l) {
            self.last = Some((seq, ts, now));
        }
        let ext = ExtensionValues {
            audio_level: pkt.audio_level,
            voice_activity: pkt.voice_activity,
            ..Default::default()
        };
        let mut w = RtpWrite::new(pt, seq.into(), ts, pkt.arrival, Arc::clone(&pkt.payload))
            .marker(pkt.marker)
            .nackable(pkt.video)
            .ext_vals(ext);
        if let Some(d) = &pkt.vp8 {
            let mut patch = d.patch();
            let mut changed = false;
            if let Some(id) = d.picture_id() {
                let out = id.wrapping_add(self.picture_id_offset) & 0x7fff;
                self.last_picture_id = Some(out);
                changed |= out != id;
                patch = patch.picture_id(out);
            }
            if let Some(idx) = d.tl0_pic_idx() {
                let out = idx.wrapping_add(self.tl0_offset);
                self.last_tl0 = Some(out);
                changed |= out != idx;
                patch = patch.tl0_pic_idx(out);
            }
            if changed {
                if let Ok(p) = patch.build() {
                    w = w.vp8_patch(p);
                }
            }
        }
        Some(w)
    }
}

/// One incoming RTP packet as forwarding needs it. The payload is shared by every receiver,
/// never copied.
pub(crate) struct Packet {
    pub(crate) mid: Mid,
    pub(crate) rid: Option<Rid>,
    pub(crate) video: bool,
    pub(crate) pt: Pt,
    pub(crate) params: PayloadParams,
    /// Extended sequence number.
    pub(crate) seq: u64,
    pub(crate) ts: u32,
    pub(crate) marker: bool,
    pub(crate) arrival: Instant,
    pub(crate) payload: Arc<[u8]>,
    pub(crate) vp8: Option<Vp8Descriptor>,
    /// The first packet of a VP8 keyframe: a receiver may switch to this layer here.
    pub(crate) keyframe: bool,
    pub(crate) audio_level: Option<i8>,
    pub(crate) voice_activity: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use str0m::Rtc;

    /// A VP8 payload: descriptor with a 15-bit picture id and TL0PICIDX, then the frame.
    fn vp8_payload(picture_id: u16, tl0: u8, keyframe: bool) -> Arc<[u8]> {
        let start = if keyframe { 0x90 } else { 0x80 };
        let [hi, lo] = picture_id.to_be_bytes();
        let frame_tag = if keyframe { 0x50 } else { 0x51 };
        Arc::from(vec![start, 0xe0, 0x80 | hi, lo, tl0, 0x40, frame_tag, 0, 0])
    }

    fn packet(video: bool, seq: u64, ts: u32, vp8: Option<(u16, u8, bool)>) -> Packet {
        let rtc = Rtc::builder().build(Instant::now());
        let payload = match vp8 {
            Some((id, tl0, key)) => vp8_payload(id, tl0, key),
            None => Arc::from(vec![1u8, 2, 3]),
        };
        let d = Vp8Descriptor::parse(&payload)
            .ok()
            .filter(|_| vp8.is_some());
        Packet {
            mid: Mid::from("0"),
            rid: None,
            video,
            pt: 96.into(),
            params: rtc.codec_config().params()[0],
            seq,
            ts,
            marker: false,
            arrival: Instant::now(),
            keyframe: d.as_ref().is_some_and(|d| d.starts_keyframe(&payload)),
            payload,
            vp8: d,
            audio_level: None,
            voice_activity: None,
        }
    }

    fn out_seq(r: &Rewrite) -> u64 {
        r.last.expect("written").0
    }

    #[test]
    fn the_first_packet_starts_with_rollover_counter_zero() {
        let now = Instant::now();
        let mut r = Rewrite::default();
        let first = packet(false, 3 * 65536 + 17, 1000, None);
        r.rebase(now, &first);
        assert!(r.write(now, 111.into(), &first).is_some());
        assert_eq!(out_seq(&r), 17);
        assert!(r
            .write(now, 111.into(), &packet(false, 3 * 65536 + 18, 1960, None))
            .is_some());
        assert_eq!(out_seq(&r), 18);
    }

    /// Found by `fuzz::fuzz_rewrite_sequences`: a switch after more than 2^32 ticks (13.3 hours
    /// of a paused video layer) overflowed the timestamp gap: a panic in debug builds.
    #[test]
    fn a_switch_after_hours_of_silence_wraps_the_timestamp() {
        let t0 = Instant::now();
        let mut r = Rewrite::default();
        let first = packet(true, 10, 1000, Some((5, 1, true)));
        r.rebase(t0, &first);
        assert!(r.write(t0, 96.into(), &first).is_some());
        let hours = Duration::from_secs(14 * 3600);
        let later = packet(true, 90_000, 77, Some((900, 9, true)));
        r.rebase(t0 + hours, &later);
        assert!(r.write(t0 + hours, 96.into(), &later).is_some());
        let (seq, ts, _) = r.last.unwrap();
        assert_eq!(seq, 11);
        let gap = (hours.as_millis() as u64 * 90) as u32;
        assert_eq!(ts, 1000u32.wrapping_add(gap));
    }

    #[test]
    fn a_layer_switch_continues_numbering_and_drops_the_old_layers_late_packets() {
        let t0 = Instant::now();
        let mut r = Rewrite::default();
        // Layer q: sequence numbers 100.., timestamps 9000.., picture ids 500.., TL0 7.
        let q = |i: u64, key: bool| {
            packet(
                true,
                100 + i,
                9000 + 3000 * i as u32,
                Some((500 + i as u16, 7, key)),
            )
        };
        r.rebase(t0, &q(0, true));
        for i in 0..5 {
            assert!(r.write(t0, 96.into(), &q(i, i == 0)).is_some());
        }
        let (seq, ts, _) = r.last.unwrap();
        assert_eq!((seq, ts), (104, 21_000));
        assert_eq!((r.last_picture_id, r.last_tl0), (Some(504), Some(7)));
        // 40 ms later, layer f's keyframe: a wholly different numbering (and a picture id that
        // wraps).
        let t1 = t0 + Duration::from_millis(40);
        let f = |i: u64| {
            packet(
                true,
                70_000 + i,
                4_000_000_000u32.wrapping_add(3000 * i as u32),
                Some((0x7fff_u16.wrapping_add(i as u16) & 0x7fff, 200, i == 0)),
            )
        };
        r.rebase(t1, &f(0));
        assert!(r.write(t1, 96.into(), &f(0)).is_some());
        let (seq, ts, _) = r.last.unwrap();
        assert_eq!(seq, 105, "the sequence continues");
        assert_eq!(
            ts,
            21_000 + 40 * 90,
            "the timestamp advances by the time that passed"
        );
        assert_eq!(r.last_picture_id, Some(505));
        assert_eq!(r.last_tl0, Some(8));
        assert!(r.write(t1, 96.into(), &f(1)).is_some());
        assert_eq!(out_seq(&r), 106);
        assert_eq!(
            r.last_picture_id,
            Some(506),
            "picture ids wrap with the source"
        );
        // A packet of layer f from before the switch is older than the stream the receiver has.
        assert!(
            r.write(t1, 96.into(), &f(0)).is_some(),
            "a resend of the switch packet is fine"
        );
        assert!(r
            .write(t1, 96.into(), &packet(true, 69_999, 1, None))
            .is_none());
        assert_eq!(out_seq(&r), 106, "late packets do not move the stream back");
    }
}
