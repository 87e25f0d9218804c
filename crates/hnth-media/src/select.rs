//! Who receives what: the tracks each receiver of a meeting should have, from what it was told
//! to receive ([`Receives`]). Pure: the meeting's peers and their tracks in, the wanted tracks
//! out; `Conference` opens and stops tracks (renegotiating) to match.

use std::collections::HashMap;

use str0m::media::{MediaKind, Mid};

use crate::conference::PeerId;

/// What a receiver gets of its meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receives {
    /// Without floor control: every sound and picture of the first `n` others to join the
    /// meeting (the console of the control center watches more than a site does).
    FirstJoined(usize),
    /// As the meeting's rules decide (C1, C4): the audio of every other peer of the meeting,
    /// each through its floor gate (so that giving the floor opens a sound that is already
    /// negotiated), and the video of exactly these peers, each at most this many lines tall
    /// (the cell it is shown in: a small cell gets the low simulcast layer). Nothing of a peer's
    /// video that is not listed is forwarded.
    Frame(Vec<(PeerId, u16)>),
}

/// One track a receiver should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    pub source: PeerId,
    pub mid: Mid,
    pub kind: MediaKind,
    /// The height of the cell it is shown in (video in a frame); None: no limit of the frame.
    pub cell_height: Option<u16>,
}

/// The peers whose video `receiver` takes: (source, cell height).
pub(crate) fn video_sources(
    receiver: PeerId,
    receives: &Receives,
    order: &[PeerId],
) -> Vec<(PeerId, Option<u16>)> {
    match receives {
        Receives::FirstJoined(n) => order
            .iter()
            .filter(|s| **s != receiver)
            .take(*n)
            .map(|s| (*s, None))
            .collect(),
        Receives::Frame(list) => list
            .iter()
            .filter(|(s, _)| *s != receiver && order.contains(s))
            .map(|(s, h)| (*s, Some(*h)))
            .collect(),
    }
}

/// The tracks `receiver` should have, given the meeting's peers in joining order and the
/// tracks each sends.
pub(crate) fn wants(
    receiver: PeerId,
    receives: &Receives,
    order: &[PeerId],
    tracks: &HashMap<PeerId, Vec<(Mid, MediaKind)>>,
) -> Vec<Want> {
    let videos = video_sources(receiver, receives, order);
    let mut out = Vec::new();
    for source in order.iter().filter(|s| **s != receiver) {
        let video = videos.iter().find(|(s, _)| s == source);
        let audio = match receives {
            Receives::FirstJoined(_) => video.is_some(),
            Receives::Frame(_) => true,
        };
        for (mid, kind) in tracks.get(source).map(Vec::as_slice).unwrap_or(&[]) {
            let wanted = match kind {
                MediaKind::Audio => audio,
                MediaKind::Video => video.is_some(),
            };
            if wanted {
                out.push(Want {
                    source: *source,
                    mid: *mid,
                    kind: *kind,
                    cell_height: video
                        .and_then(|(_, h)| *h)
                        .filter(|_| *kind == MediaKind::Video),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracks(ids: &[PeerId]) -> HashMap<PeerId, Vec<(Mid, MediaKind)>> {
        ids.iter()
            .map(|id| {
                (
                    *id,
                    vec![
                        (Mid::from("0"), MediaKind::Audio),
                        (Mid::from("1"), MediaKind::Video),
                    ],
                )
            })
            .collect()
    }

    type Summary = Vec<(PeerId, MediaKind, Option<u16>)>;

    fn summary(w: &[Want]) -> Summary {
        w.iter()
            .map(|w| (w.source, w.kind, w.cell_height))
            .collect()
    }

    #[test]
    fn first_joined_takes_sound_and_picture_of_the_first_others() {
        let order = [1, 2, 3, 4];
        let t = tracks(&order);
        use MediaKind::*;
        let cases: [(PeerId, usize, Summary); 4] = [
            (
                1,
                2,
                vec![
                    (2, Audio, None),
                    (2, Video, None),
                    (3, Audio, None),
                    (3, Video, None),
                ],
            ),
            (
                3,
                2,
                vec![
                    (1, Audio, None),
                    (1, Video, None),
                    (2, Audio, None),
                    (2, Video, None),
                ],
            ),
            (4, 0, vec![]),
            (
                2,
                9,
                vec![
                    (1, Audio, None),
                    (1, Video, None),
                    (3, Audio, None),
                    (3, Video, None),
                    (4, Audio, None),
                    (4, Video, None),
                ],
            ),
        ];
        for (rx, n, expect) in cases {
            assert_eq!(
                summary(&wants(rx, &Receives::FirstJoined(n), &order, &t)),
                expect,
                "receiver {rx}, first {n}"
            );
        }
    }

    #[test]
    fn a_frame_takes_every_sound_and_only_the_pictures_it_shows() {
        let order = [1, 2, 3, 4];
        let t = tracks(&order);
        use MediaKind::*;
        // Receiver 2 shows 3 large and 1 small; 4 is heard (if its gate opens) but not seen.
        let frame = Receives::Frame(vec![(3, 720), (1, 180)]);
        assert_eq!(
            summary(&wants(2, &frame, &order, &t)),
            vec![
                (1, Audio, None),
                (1, Video, Some(180)),
                (3, Audio, None),
                (3, Video, Some(720)),
                (4, Audio, None),
            ]
        );
        // Itself in its own frame, a peer that left, and an empty frame: ignored.
        let odd = Receives::Frame(vec![(2, 720), (9, 180)]);
        assert_eq!(
            summary(&wants(2, &odd, &order, &t)),
            vec![(1, Audio, None), (3, Audio, None), (4, Audio, None)]
        );
        // A peer whose tracks are not known yet gets nothing until they are.
        let mut partial = t.clone();
        partial.remove(&1);
        assert_eq!(
            summary(&wants(2, &frame, &order, &partial)),
            vec![(3, Audio, None), (3, Video, Some(720)), (4, Audio, None)]
        );
    }
}
