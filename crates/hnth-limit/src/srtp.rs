//! Just enough SRTP (RFC 3711, RFC 7714) for the forwarder and the blaster: RTP header parsing,
//! rollover-counter estimation, and protect/unprotect for AEAD_AES_128_GCM, AEAD_AES_256_GCM and
//! AES_CM_128_HMAC_SHA1_80. No key derivation function: the session keys come straight from a
//! shared seed (the KDF runs once per DTLS handshake, not per packet, so it is not part of the
//! per-packet cost this crate measures). No replay window either.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::{constant_time, digest, hmac, iv::FixedLength};

/// SRTP protection profile. str0m offers AES-256-GCM, then AES-128-GCM, then
/// AES_CM_128_HMAC_SHA1_80 (str0m `crypto/srtp.rs`, `SrtpProfile::ALL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// SRTP_AEAD_AES_128_GCM (RFC 7714), 16-byte tag
    Gcm128,
    /// SRTP_AEAD_AES_256_GCM (RFC 7714), 16-byte tag
    Gcm256,
    /// SRTP_AES128_CM_HMAC_SHA1_80 (RFC 3711), 10-byte tag
    #[value(name = "cm128-sha1-80")]
    Cm128Sha1_80,
}

impl Profile {
    pub fn tag_len(self) -> usize {
        match self {
            Profile::Gcm128 | Profile::Gcm256 => 16,
            Profile::Cm128Sha1_80 => 10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Gcm128 => "gcm128",
            Profile::Gcm256 => "gcm256",
            Profile::Cm128Sha1_80 => "cm128-sha1-80",
        }
    }
}

/// The fixed RTP header fields the forwarder needs, and the header's length (the GCM AAD, and
/// where the payload starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub len: usize,
    pub seq: u16,
    pub ssrc: u32,
}

/// Parses an RTP header (version 2, CSRCs and one header extension allowed).
pub fn parse_rtp(buf: &[u8]) -> Option<RtpHeader> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * (buf[0] & 0x0f) as usize;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(len + 2..len + 4)?;
        len += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    if len > buf.len() {
        return None;
    }
    Some(RtpHeader {
        len,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
    })
}

/// Writes a 12-byte RTP header (payload type 96) and returns its length.
pub fn write_rtp_header(buf: &mut [u8], seq: u16, ts: u32, ssrc: u32) -> usize {
    buf[0] = 0x80;
    buf[1] = 96;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    12
}

/// Receiver-side rollover counter of one SSRC (RFC 3711 §3.3.1 and appendix A).
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqState {
    started: bool,
    roc: u32,
    s_l: u16,
}

impl SeqState {
    /// The ROC to try for `seq`.
    pub fn estimate(&self, seq: u16) -> u32 {
        if !self.started {
            return self.roc;
        }
        if self.s_l < 32768 {
            if seq as i32 - self.s_l as i32 > 32768 {
                return self.roc.wrapping_sub(1);
            }
        } else if (self.s_l as i32 - 32768) > seq as i32 {
            return self.roc.wrapping_add(1);
        }
        self.roc
    }

    /// After the packet authenticated with `roc`.
    pub fn update(&mut self, seq: u16, roc: u32) {
        if !self.started {
            *self = SeqState {
                started: true,
                roc,
                s_l: seq,
            };
        } else if roc == self.roc {
            if seq > self.s_l {
                self.s_l = seq;
            }
        } else if roc == self.roc.wrapping_add(1) {
            self.roc = roc;
            self.s_l = seq;
        }
    }

    /// The sender side: ROC and sequence number of the next packet.
    pub fn next_to_send(&mut self) -> (u32, u16) {
        let out = (self.roc, self.s_l);
        self.s_l = self.s_l.wrapping_add(1);
        if self.s_l == 0 {
            self.roc = self.roc.wrapping_add(1);
        }
        out
    }

    /// A sender starting at `seq` (ROC 0).
    pub fn sender_at(seq: u16) -> SeqState {
        SeqState {
            started: true,
            roc: 0,
            s_l: seq,
        }
    }
}

// The GCM key is larger than the CM one; a handful of keys live for the whole run, so keep them
// inline rather than add a pointer chase per packet.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    Gcm(LessSafeKey),
    Cm { ctr: EncryptingKey, auth: hmac::Key },
}

/// One direction's SRTP session keys (what the DTLS-SRTP exporter and the KDF would give).
pub struct Key {
    profile: Profile,
    cipher: Cipher,
    salt: [u8; 14],
}

impl Key {
    /// Deterministic keys for `role` #`index` from `seed`: the forwarder and the blaster derive the
    /// same keys without a handshake. Every (role, index) gets distinct keys.
    pub fn derive(profile: Profile, seed: u64, role: &str, index: u32) -> Key {
        let part = |what: &[u8]| {
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(b"hnth-limit");
            ctx.update(&seed.to_be_bytes());
            ctx.update(role.as_bytes());
            ctx.update(&index.to_be_bytes());
            ctx.update(what);
            let d = ctx.finish();
            let mut out = [0u8; 32];
            out.copy_from_slice(d.as_ref());
            out
        };
        let key = part(b"key");
        let mut salt = [0u8; 14];
        salt.copy_from_slice(&part(b"salt")[..14]);
        let cipher = match profile {
            Profile::Gcm128 => Cipher::Gcm(LessSafeKey::new(
                UnboundKey::new(&AES_128_GCM, &key[..16]).expect("AES-128-GCM key"),
            )),
            Profile::Gcm256 => Cipher::Gcm(LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &key).expect("AES-256-GCM key"),
            )),
            Profile::Cm128Sha1_80 => Cipher::Cm {
                ctr: EncryptingKey::ctr(
                    UnboundCipherKey::new(&AES_128, &key[..16]).expect("AES-128 key"),
                )
                .expect("AES-CTR"),
                auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &part(b"auth")[..20]),
            },
        };
        Key {
            profile,
            cipher,
            salt,
        }
    }

    /// RFC 7714 §8.1: 00 00 | SSRC | ROC | SEQ, XOR the 12-byte salt.
    fn gcm_nonce(&self, h: &RtpHeader, roc: u32) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&h.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&h.seq.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(&self.salt[..12]) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// RFC 3711 §4.1.1: salt·2^16 XOR SSRC·2^64 XOR index·2^16.
    fn cm_iv(&self, h: &RtpHeader, roc: u32) -> EncryptionContext {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        let index = ((roc as u64) << 16) | h.seq as u64;
        for (i, b) in h.ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        EncryptionContext::Iv128(FixedLength::from(iv))
    }

    fn cm_tag(auth: &hmac::Key, authenticated: &[u8], roc: u32) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(auth);
        ctx.update(authenticated);
        ctx.update(&roc.to_be_bytes());
        ctx.sign()
    }

    /// Encrypts in place: `buf` holds the header `h` and `payload_len` bytes of plaintext and has
    /// room for the tag after them. Returns the SRTP packet's length.
    pub fn protect(&self, buf: &mut [u8], h: &RtpHeader, payload_len: usize, roc: u32) -> usize {
        let end = h.len + payload_len;
        let tag_len = self.profile.tag_len();
        match &self.cipher {
            Cipher::Gcm(key) => {
                let (hdr, rest) = buf.split_at_mut(h.len);
                let tag = key
                    .seal_in_place_separate_tag(
                        self.gcm_nonce(h, roc),
                        Aad::from(&*hdr),
                        &mut rest[..payload_len],
                    )
                    .expect("AES-GCM seal");
                rest[payload_len..payload_len + tag_len].copy_from_slice(tag.as_ref());
            }
            Cipher::Cm { ctr, auth } => {
                ctr.less_safe_encrypt(&mut buf[h.len..end], self.cm_iv(h, roc))
                    .expect("AES-CTR");
                let tag = Self::cm_tag(auth, &buf[..end], roc);
                buf[end..end + tag_len].copy_from_slice(&tag.as_ref()[..tag_len]);
            }
        }
        end + tag_len
    }

    /// Authenticates and decrypts the SRTP packet `buf` (header `h`) in place. Returns the
    /// plaintext payload's length, or `None` if it does not authenticate.
    pub fn unprotect(&self, buf: &mut [u8], h: &RtpHeader, roc: u32) -> Option<usize> {
        let tag_len = self.profile.tag_len();
        if buf.len() < h.len + tag_len {
            return None;
        }
        match &self.cipher {
            Cipher::Gcm(key) => {
                let (hdr, rest) = buf.split_at_mut(h.len);
                key.open_in_place(self.gcm_nonce(h, roc), Aad::from(&*hdr), rest)
                    .ok()
                    .map(|pt| pt.len())
            }
            Cipher::Cm { ctr, auth } => {
                let end = buf.len() - tag_len;
                let tag = Self::cm_tag(auth, &buf[..end], roc);
                constant_time::verify_slices_are_equal(&tag.as_ref()[..tag_len], &buf[end..])
                    .ok()?;
                // Counter mode: decryption is the same keystream XOR.
                ctr.less_safe_encrypt(&mut buf[h.len..end], self.cm_iv(h, roc))
                    .ok()?;
                Some(end - h.len)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Profile; 3] = [Profile::Gcm128, Profile::Gcm256, Profile::Cm128Sha1_80];

    fn packet(key: &Key, seq: u16, roc: u32, payload: &[u8]) -> (Vec<u8>, RtpHeader) {
        let mut buf = vec![0u8; 12 + payload.len() + 16];
        let hl = write_rtp_header(&mut buf, seq, 1234, 0x1111_2222);
        buf[hl..hl + payload.len()].copy_from_slice(payload);
        let h = parse_rtp(&buf).unwrap();
        let n = key.protect(&mut buf, &h, payload.len(), roc);
        buf.truncate(n);
        (buf, h)
    }

    #[test]
    fn round_trip_and_wrong_key_fails() {
        for p in ALL {
            let key = Key::derive(p, 7, "receiver", 0);
            let other = Key::derive(p, 7, "receiver", 1);
            let payload: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
            let (wire, h) = packet(&key, 65535, 3, &payload);
            assert_eq!(wire.len(), 12 + payload.len() + p.tag_len());
            assert_ne!(
                &wire[12..12 + payload.len()],
                &payload[..],
                "{p:?}: not encrypted"
            );

            let mut buf = wire.clone();
            let n = key
                .unprotect(&mut buf, &h, 3)
                .expect("decrypts with the right key");
            assert_eq!(&buf[12..12 + n], &payload[..], "{p:?}");

            assert!(
                other.unprotect(&mut wire.clone(), &h, 3).is_none(),
                "{p:?}: wrong key"
            );
            assert!(
                key.unprotect(&mut wire.clone(), &h, 4).is_none(),
                "{p:?}: wrong ROC"
            );
            let mut tampered = wire.clone();
            tampered[5] ^= 1; // the timestamp: header is authenticated
            assert!(
                key.unprotect(&mut tampered, &h, 3).is_none(),
                "{p:?}: header tampered"
            );
        }
    }

    /// RFC 7714 §16.1 test vector (AEAD_AES_128_GCM, RTP): checks the IV and AAD layout.
    #[test]
    fn rfc7714_vector() {
        let hex = |s: &str| -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key = hex("00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f");
        let salt = hex("51 75 69 64 20 70 72 6f 20 71 75 6f");
        let plain = hex(
            "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
             69736120 696e2070 61727465 73207472 6573",
        );
        let expect = hex(
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
             0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439
             0cce",
        );
        let mut s = [0u8; 14];
        s[..12].copy_from_slice(&salt);
        let k = Key {
            profile: Profile::Gcm128,
            cipher: Cipher::Gcm(LessSafeKey::new(
                UnboundKey::new(&AES_128_GCM, &key).unwrap(),
            )),
            salt: s,
        };
        let mut buf = plain.clone();
        buf.resize(plain.len() + 16, 0);
        let h = parse_rtp(&buf).unwrap();
        let n = k.protect(&mut buf, &h, plain.len() - 12, 0);
        assert_eq!(&buf[..n], &expect[..]);
    }

    /// AES_CM_128_HMAC_SHA1_80 with given session keys, against a packet computed independently
    /// (Python `cryptography` AES-CTR + `hmac`/SHA-1, following RFC 3711 §4.1.1 and §4.2).
    #[test]
    fn aes_cm_hmac_sha1_vector() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key: Vec<u8> = (0..16).collect();
        let mut salt = [0u8; 14];
        salt.copy_from_slice(&(0xa0..0xae).collect::<Vec<u8>>());
        let auth: Vec<u8> = (0x10..0x24).collect();
        let k = Key {
            profile: Profile::Cm128Sha1_80,
            cipher: Cipher::Cm {
                ctr: EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, &key).unwrap()).unwrap(),
                auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth),
            },
            salt,
        };
        let mut buf = hex("8060ffff00000001deadbeef");
        buf.extend(0..40u8);
        buf.resize(12 + 40 + 10, 0);
        let h = parse_rtp(&buf).unwrap();
        let n = k.protect(&mut buf, &h, 40, 5);
        let expect = hex(
            "8060ffff00000001deadbeefdf388b5fadd4718769eff8784c3cee7e0fd42977be9cce3a5bd97afff3e4\
             ddfa13b3946fb0c68c0d8353e6757a3625ace427",
        );
        assert_eq!(&buf[..n], &expect[..]);
        assert_eq!(k.unprotect(&mut buf, &h, 5), Some(40));
        assert_eq!(&buf[12..52], &(0..40u8).collect::<Vec<u8>>()[..]);
    }

    #[test]
    fn rollover_counter_follows_the_wrap() {
        let mut tx = SeqState::sender_at(65530);
        let mut rx = SeqState::default();
        for _ in 0..200_000u32 {
            let (roc, seq) = tx.next_to_send();
            let guess = rx.estimate(seq);
            assert_eq!(guess, roc, "seq {seq}");
            rx.update(seq, guess);
        }
        // A late packet from before the wrap is guessed in the previous ROC.
        let mut rx = SeqState::default();
        rx.update(65535, 0);
        rx.update(2, 1);
        assert_eq!(rx.estimate(65534), 0);
        assert_eq!(rx.estimate(3), 1);
    }

    #[test]
    fn header_with_csrc_and_extension() {
        let mut buf = vec![0u8; 40];
        write_rtp_header(&mut buf, 9, 0, 5);
        buf[0] |= 0x10 | 1; // X bit, one CSRC
        buf[16..20].copy_from_slice(&[0xbe, 0xde, 0, 2]); // 2 words of extension
        let h = parse_rtp(&buf).unwrap();
        assert_eq!(
            h,
            RtpHeader {
                len: 12 + 4 + 4 + 8,
                seq: 9,
                ssrc: 5
            }
        );
        assert!(parse_rtp(&buf[..20]).is_none());
    }
}
