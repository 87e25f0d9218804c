//! Picture size from a VP8 keyframe header (RFC 6386 §9.1), for the console's link figures.

/// Width and height of a VP8 keyframe, or None for an inter frame or a foreign payload.
pub fn keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

/// Length of the VP8 payload descriptor at the start of an RTP payload (RFC 7741 §4.2), or
/// None if truncated. str0m parses the descriptor too but keeps this offset private.
pub fn descriptor_len(payload: &[u8]) -> Option<usize> {
    let first = *payload.first()?;
    let mut n = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        n = 2;
        if ext & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M flag).
            n += if *payload.get(2)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            n += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            n += 1; // TID/Y/KEYIDX
        }
    }
    (n < payload.len()).then_some(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_keyframe_size() {
        let kf = [
            0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 0, 0,
        ];
        assert_eq!(super::keyframe_size(&kf), Some((640, 480)));
        let inter = [0x51, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        assert_eq!(super::keyframe_size(&inter), None);
    }

    #[test]
    fn descriptor_lengths() {
        // (payload, expected): no extension; 15-bit picture id + TL0PICIDX + TID; 7-bit id.
        let cases: &[(&[u8], Option<usize>)] = &[
            (&[0x10, 0x50], Some(1)),
            (&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x50], Some(6)),
            (&[0x90, 0x80, 0x05, 0x50], Some(3)),
            (&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40], None),
            (&[0x90], None),
            (&[], None),
        ];
        for (payload, want) in cases {
            assert_eq!(super::descriptor_len(payload), *want, "{payload:02x?}");
        }
    }
}
