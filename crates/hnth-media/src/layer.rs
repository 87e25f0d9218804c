//! Simulcast layer choice per receiver: pure, so it is unit-tested without media.

/// One simulcast layer as the server sees it arrive: its rid, its measured bitrate and its
/// picture height (from its last keyframe; None until one came).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerRate<R> {
    pub rid: R,
    pub bps: u64,
    pub height: Option<u16>,
}

/// The tallest layer height worth sending to a tile `view_height` pixels high: the smallest
/// layer at least that tall (a picture is never scaled up on screen), or no limit when no
/// layer is tall enough or the receiver said nothing. Heights not yet known do not count.
pub fn height_cap<R>(layers: &[LayerRate<R>], view_height: Option<u16>) -> Option<u16> {
    let want = view_height?;
    layers
        .iter()
        .filter_map(|l| l.height)
        .filter(|h| *h >= want)
        .min()
}

/// Choose the layer to forward to one receiver, given its share of the bandwidth estimate and
/// the height the receiver shows the picture at ([`height_cap`] of its view height).
///
/// The best layer within the height cap whose measured rate fits the budget wins; if none
/// fits, the smallest. Moving *up* needs 15 % headroom so that a receiver near a threshold
/// does not flap between layers (each switch costs a keyframe).
pub fn choose_layer<R: Clone + PartialEq>(
    budget_bps: u64,
    layers: &[LayerRate<R>],
    current: Option<&R>,
    cap: Option<u16>,
) -> Option<R> {
    // Runs for every forwarded video packet: no sorting, no allocation.
    let current_bps = current.and_then(|c| layers.iter().find(|l| &l.rid == c).map(|l| l.bps));
    let fits = |l: &&LayerRate<R>| {
        let tall_enough = match (cap, l.height) {
            (Some(cap), Some(h)) => h <= cap,
            // A layer of unknown height is used only when nothing limits the height.
            (Some(_), None) => false,
            (None, _) => true,
        };
        let moving_up = current_bps.is_some_and(|c| l.bps > c);
        tall_enough
            && if moving_up {
                l.bps.saturating_mul(115) / 100 <= budget_bps
            } else {
                l.bps <= budget_bps
            }
    };
    layers
        .iter()
        .filter(fits)
        .max_by_key(|l| l.bps)
        .or_else(|| layers.iter().min_by_key(|l| l.bps))
        .map(|l| l.rid.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> Vec<LayerRate<&'static str>> {
        vec![
            LayerRate {
                rid: "q",
                bps: 150_000,
                height: Some(180),
            },
            LayerRate {
                rid: "f",
                bps: 1_500_000,
                height: Some(720),
            },
            LayerRate {
                rid: "h",
                bps: 500_000,
                height: Some(360),
            },
        ]
    }

    #[test]
    fn table() {
        // (budget, current, expected)
        let cases: &[(u64, Option<&str>, Option<&str>)] = &[
            (10_000_000, None, Some("f")),
            (1_500_000, None, Some("f")),
            (1_499_999, None, Some("h")),
            (500_000, None, Some("h")),
            (499_999, None, Some("q")),
            (0, None, Some("q")),
            // Moving up from h to f needs 15 % headroom: 1.725 Mbit/s.
            (1_724_999, Some("h"), Some("h")),
            (1_725_000, Some("h"), Some("f")),
            // Staying or moving down needs no headroom.
            (1_500_000, Some("f"), Some("f")),
            (1_400_000, Some("f"), Some("h")),
            // A current layer that vanished is treated as no current layer.
            (600_000, Some("x"), Some("h")),
        ];
        for (budget, current, want) in cases {
            let got = choose_layer(*budget, &layers(), current.as_ref(), None);
            assert_eq!(got, *want, "budget {budget} current {current:?}");
        }
    }

    #[test]
    fn the_view_height_caps_the_layer() {
        // (view height, budget, expected): the smallest layer at least as tall as the tile,
        // within the budget.
        let cases: &[(Option<u16>, u64, Option<&str>)] = &[
            (None, 10_000_000, Some("f")),
            (Some(720), 10_000_000, Some("f")),
            (Some(1080), 10_000_000, Some("f")), // no layer that tall: the tallest
            (Some(361), 10_000_000, Some("f")),
            (Some(360), 10_000_000, Some("h")),
            (Some(181), 10_000_000, Some("h")),
            (Some(180), 10_000_000, Some("q")),
            (Some(0), 10_000_000, Some("q")), // a hidden tile
            (Some(720), 600_000, Some("h")),  // the budget still rules
            (Some(360), 100_000, Some("q")),
        ];
        for (view, budget, want) in cases {
            let cap = height_cap(&layers(), *view);
            let got = choose_layer(*budget, &layers(), None, cap);
            assert_eq!(got, *want, "view {view:?} budget {budget}");
        }
    }

    #[test]
    fn heights_not_yet_known() {
        let mut ls = layers();
        ls[1].height = None; // f has not sent a keyframe yet
                             // The cap comes from the known layers; f is not chosen while its height is unknown.
        assert_eq!(height_cap(&ls, Some(500)), None);
        assert_eq!(choose_layer(10_000_000, &ls, None, None), Some("f"));
        let cap = height_cap(&ls, Some(300));
        assert_eq!(cap, Some(360));
        assert_eq!(choose_layer(10_000_000, &ls, None, cap), Some("h"));
        // Nothing known: no cap.
        ls.iter_mut().for_each(|l| l.height = None);
        assert_eq!(height_cap(&ls, Some(180)), None);
    }

    #[test]
    fn no_layers_no_choice() {
        assert_eq!(choose_layer::<&str>(1_000_000, &[], None, None), None);
    }
}
