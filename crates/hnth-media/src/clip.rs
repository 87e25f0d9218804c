//! Real media to send from a [`crate::testing::SyntheticSite`]: a looping VP8 clip read from an
//! IVF file and looping Opus packets read from an Ogg file. Used by the demo's simulated sites
//! (`hnth demo --simulated-sites`), so that a browser decodes a real picture and sound.
//!
//! Both readers are small and strict: they accept what `ffmpeg` writes (`-f ivf` with VP8,
//! `-c:a libopus` in Ogg) and refuse anything else with a [`ClipError`].

use std::fmt;

/// Why a clip could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipError(pub String);

impl fmt::Display for ClipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClipError {}

fn err<T>(m: impl Into<String>) -> Result<T, ClipError> {
    Err(ClipError(m.into()))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One VP8 frame of a clip.
#[derive(Clone)]
pub struct VideoFrame {
    pub data: Vec<u8>,
    /// A VP8 keyframe (RFC 6386 §9.1: bit 0 of the frame tag clear).
    pub keyframe: bool,
}

/// A VP8 clip at a constant frame rate, played in a loop.
#[derive(Clone)]
pub struct VideoClip {
    pub width: u16,
    pub height: u16,
    /// Frames per second (constant; from the IVF time base and timestamps).
    pub fps: u32,
    pub frames: Vec<VideoFrame>,
}

impl VideoClip {
    /// Read an IVF file of VP8 frames at a constant rate whose first frame is a keyframe.
    pub fn from_ivf(b: &[u8]) -> Result<VideoClip, ClipError> {
        if b.len() < 32 || &b[..4] != b"DKIF" {
            return err("not an IVF file (no DKIF signature)");
        }
        if &b[8..12] != b"VP80" {
            return err(format!(
                "IVF codec {:?}, expected VP80",
                String::from_utf8_lossy(&b[8..12])
            ));
        }
        let header_len = usize::from(u16_at(b, 6));
        let (width, height) = (u16_at(b, 12), u16_at(b, 14));
        let (rate, scale) = (u32_at(b, 16), u32_at(b, 20));
        if rate == 0 || scale == 0 {
            return err("IVF time base is zero");
        }
        let mut at = header_len.max(32);
        let mut frames = Vec::new();
        let mut pts = Vec::new();
        while at < b.len() {
            if at + 12 > b.len() {
                return err(format!("IVF frame header cut at byte {at}"));
            }
            let size = u32_at(b, at) as usize;
            let p = u64_at(b, at + 4);
            let data = b
                .get(at + 12..at + 12 + size)
                .ok_or_else(|| ClipError(format!("IVF frame data cut at byte {at}")))?;
            if data.is_empty() {
                return err(format!("empty IVF frame at byte {at}"));
            }
            frames.push(VideoFrame {
                keyframe: data[0] & 1 == 0,
                data: data.to_vec(),
            });
            pts.push(p);
            at += 12 + size;
        }
        if frames.is_empty() {
            return err("IVF file without frames");
        }
        if !frames[0].keyframe {
            return err("the clip's first frame is not a keyframe");
        }
        // Constant frame rate: every timestamp step is the same number of time-base ticks.
        let step = if pts.len() > 1 { pts[1] - pts[0] } else { 1 };
        if step == 0 || pts.windows(2).any(|w| w[1] - w[0] != step) {
            return err("the clip's frame rate is not constant");
        }
        let fps_num = u64::from(rate);
        let fps_den = u64::from(scale) * step;
        if fps_num % fps_den != 0 {
            return err(format!(
                "frame rate {fps_num}/{fps_den} is not a whole number"
            ));
        }
        Ok(VideoClip {
            width,
            height,
            fps: (fps_num / fps_den) as u32,
            frames,
        })
    }

    /// The index of the keyframe at or before frame `i` (the loop's start at worst).
    pub fn keyframe_at_or_before(&self, i: usize) -> usize {
        let i = i.min(self.frames.len() - 1);
        (0..=i)
            .rev()
            .find(|&j| self.frames[j].keyframe)
            .unwrap_or(0)
    }

    /// Length of one loop.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.frames.len() as u64) / self.fps.max(1)
    }
}

/// Opus packets of 20 ms each, played in a loop.
#[derive(Clone)]
pub struct AudioClip {
    pub packets: Vec<Vec<u8>>,
}

impl AudioClip {
    /// Read an Ogg Opus file (RFC 7845): the packets after the OpusHead and OpusTags headers.
    /// Every packet must last 20 ms.
    pub fn from_ogg_opus(b: &[u8]) -> Result<AudioClip, ClipError> {
        let mut packets: Vec<Vec<u8>> = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        let mut at = 0;
        while at < b.len() {
            if at + 27 > b.len() || &b[at..at + 4] != b"OggS" {
                return err(format!("no Ogg page at byte {at}"));
            }
            let segments = usize::from(b[at + 26]);
            let table = b
                .get(at + 27..at + 27 + segments)
                .ok_or_else(|| ClipError(format!("Ogg segment table cut at byte {at}")))?;
            let mut data = at + 27 + segments;
            for &lace in table {
                let lace = usize::from(lace);
                let chunk = b
                    .get(data..data + lace)
                    .ok_or_else(|| ClipError(format!("Ogg page data cut at byte {data}")))?;
                partial.extend_from_slice(chunk);
                data += lace;
                if lace < 255 {
                    packets.push(std::mem::take(&mut partial));
                }
            }
            at = data;
        }
        if packets.len() < 3 || !packets[0].starts_with(b"OpusHead") {
            return err("not an Ogg Opus file (no OpusHead)");
        }
        if !packets[1].starts_with(b"OpusTags") {
            return err("Ogg Opus file without OpusTags");
        }
        let packets: Vec<Vec<u8>> = packets.into_iter().skip(2).collect();
        for (i, p) in packets.iter().enumerate() {
            if p.is_empty() {
                return err(format!("empty Opus packet {i}"));
            }
            if opus_packet_samples(p) != Some(960) {
                return err(format!(
                    "Opus packet {i} does not last 20 ms (TOC {:#04x})",
                    p[0]
                ));
            }
        }
        Ok(AudioClip { packets })
    }
}

/// Samples at 48 kHz in one Opus packet (RFC 6716 §3.1), or None if malformed.
pub fn opus_packet_samples(p: &[u8]) -> Option<u32> {
    let toc = *p.first()?;
    let config = toc >> 3;
    let per_frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*p.get(1)? & 0x3f),
    };
    Some(per_frame * frames)
}

/// What a site sends instead of synthetic frames: a picture and a sound, both looping.
#[derive(Clone)]
pub struct Clip {
    pub video: VideoClip,
    pub audio: AudioClip,
}

impl Clip {
    pub fn new(ivf: &[u8], ogg_opus: &[u8]) -> Result<Clip, ClipError> {
        Ok(Clip {
            video: VideoClip::from_ivf(ivf)?,
            audio: AudioClip::from_ogg_opus(ogg_opus)?,
        })
    }
}

impl fmt::Debug for Clip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Clip {{ VP8 {}x{} {} fps, {} frames; Opus {} packets }}",
            self.video.width,
            self.video.height,
            self.video.fps,
            self.video.frames.len(),
            self.audio.packets.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ivf(frames: &[(&[u8], u64)]) -> Vec<u8> {
        let mut b = b"DKIF".to_vec();
        b.extend(0u16.to_le_bytes());
        b.extend(32u16.to_le_bytes());
        b.extend(b"VP80");
        b.extend(320u16.to_le_bytes());
        b.extend(180u16.to_le_bytes());
        b.extend(15u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend((frames.len() as u32).to_le_bytes());
        b.extend(0u32.to_le_bytes());
        for (data, pts) in frames {
            b.extend((data.len() as u32).to_le_bytes());
            b.extend(pts.to_le_bytes());
            b.extend(*data);
        }
        b
    }

    #[test]
    fn reads_ivf() {
        let b = ivf(&[
            (&[0x50, 1, 2], 0),
            (&[0x51, 3], 1),
            (&[0x50, 4], 2),
            (&[0x51], 3),
        ]);
        let c = VideoClip::from_ivf(&b).unwrap();
        assert_eq!(
            (c.width, c.height, c.fps, c.frames.len()),
            (320, 180, 15, 4)
        );
        let keys: Vec<bool> = c.frames.iter().map(|f| f.keyframe).collect();
        assert_eq!(keys, [true, false, true, false]);
        assert_eq!(c.keyframe_at_or_before(1), 0);
        assert_eq!(c.keyframe_at_or_before(3), 2);
        assert_eq!(c.frames[1].data, [0x51, 3]);
        // Refusals: a cut file, an inter frame first, an uneven rate.
        assert!(VideoClip::from_ivf(&b[..b.len() - 1]).is_err());
        assert!(VideoClip::from_ivf(&ivf(&[(&[0x51], 0)])).is_err());
        assert!(VideoClip::from_ivf(&ivf(&[(&[0x50], 0), (&[0x51], 1), (&[0x51], 3)])).is_err());
        assert!(VideoClip::from_ivf(b"RIFF").is_err());
    }

    fn ogg_page(packets: &[&[u8]]) -> Vec<u8> {
        let mut table = Vec::new();
        let mut body: Vec<u8> = Vec::new();
        for p in packets {
            let mut n = p.len();
            while n >= 255 {
                table.push(255u8);
                n -= 255;
            }
            table.push(n as u8);
            body.extend(*p);
        }
        let mut b = b"OggS".to_vec();
        b.resize(26, 0);
        b.push(table.len() as u8);
        b.extend(table);
        b.extend(body);
        b
    }

    #[test]
    fn reads_ogg_opus() {
        let long = vec![0xfcu8; 300]; // config 31 (CELT FB 20 ms), one frame
        let mut b = ogg_page(&[b"OpusHead\x01\x02"]);
        b.extend(ogg_page(&[b"OpusTags"]));
        b.extend(ogg_page(&[&[0xfc, 1, 2], &long, &[0x78, 9]]));
        let a = AudioClip::from_ogg_opus(&b).unwrap();
        assert_eq!(a.packets.len(), 3);
        assert_eq!(a.packets[1].len(), 300);
        assert_eq!(a.packets[2], [0x78, 9]);
        // A 10 ms packet is refused, as is a file without OpusHead.
        let mut bad = ogg_page(&[b"OpusHead"]);
        bad.extend(ogg_page(&[b"OpusTags", &[0xf0, 0]]));
        assert!(AudioClip::from_ogg_opus(&bad).is_err());
        assert!(AudioClip::from_ogg_opus(&ogg_page(&[b"x", b"y", b"z"])).is_err());
        assert_eq!(opus_packet_samples(&[0x78]), Some(960));
        assert_eq!(opus_packet_samples(&[0xfd]), Some(1920));
    }
}
