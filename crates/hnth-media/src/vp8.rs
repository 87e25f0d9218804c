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
}
