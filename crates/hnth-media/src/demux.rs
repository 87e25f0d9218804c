//! O(1) demultiplexing of a media worker's UDP port: packets are routed by source address once known,
//! and the first STUN binding request of a peer is routed by its ICE username.
//!
//! Written by hand because str0m only offers `Rtc::accepts`, which would mean asking every peer
//! in turn for every packet; all we need is the USERNAME attribute of a STUN message.

/// The local ICE ufrag named in a STUN binding request (`USERNAME = "local:remote"`), if the
/// datagram is a STUN message carrying one.
pub fn stun_local_ufrag(buf: &[u8]) -> Option<&str> {
    // STUN: first two bits zero, magic cookie at bytes 4..8, attributes after the 20-byte header.
    if buf.len() < 20 || buf[0] & 0xc0 != 0 || buf[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let body = buf.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        if typ == 0x0006 {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_with_username(name: &str) -> Vec<u8> {
        let mut attrs = vec![0x00, 0x06];
        attrs.extend((name.len() as u16).to_be_bytes());
        attrs.extend(name.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend((attrs.len() as u16).to_be_bytes());
        msg.extend([0x21, 0x12, 0xa4, 0x42]);
        msg.extend([7u8; 12]);
        msg.extend(attrs);
        msg
    }

    #[test]
    fn finds_local_ufrag() {
        let msg = stun_with_username("srvUfrag:browser");
        assert_eq!(stun_local_ufrag(&msg), Some("srvUfrag"));
    }

    #[test]
    fn ignores_non_stun_and_truncated() {
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None); // RTP
        assert_eq!(stun_local_ufrag(&[0x16; 40]), None); // DTLS
        let mut msg = stun_with_username("abc:def");
        msg.truncate(msg.len() - 4);
        assert_eq!(stun_local_ufrag(&msg), None);
        assert_eq!(stun_local_ufrag(&[]), None);
    }
}
