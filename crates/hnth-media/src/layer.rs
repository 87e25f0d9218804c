//! Simulcast layer choice per receiver: pure, so it is unit-tested without media.

/// One simulcast layer as the server sees it arrive: its rid and its measured bitrate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerRate<R> {
    pub rid: R,
    pub bps: u64,
}

/// Choose the layer to forward to one receiver, given its share of the bandwidth estimate.
///
/// The best layer whose measured rate fits the budget wins; if none fits, the smallest.
/// Moving *up* needs 15 % headroom so that a receiver near a threshold does not flap between
/// layers (each switch costs a keyframe).
pub fn choose_layer<R: Clone + PartialEq>(
    budget_bps: u64,
    layers: &[LayerRate<R>],
    current: Option<&R>,
) -> Option<R> {
    // Runs for every forwarded video packet: no sorting, no allocation.
    let current_bps = current.and_then(|c| layers.iter().find(|l| &l.rid == c).map(|l| l.bps));
    let fits = |l: &&LayerRate<R>| {
        let moving_up = current_bps.is_some_and(|c| l.bps > c);
        if moving_up {
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
            },
            LayerRate {
                rid: "f",
                bps: 1_500_000,
            },
            LayerRate {
                rid: "h",
                bps: 500_000,
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
            let got = choose_layer(*budget, &layers(), current.as_ref());
            assert_eq!(got, *want, "budget {budget} current {current:?}");
        }
    }

    #[test]
    fn no_layers_no_choice() {
        assert_eq!(choose_layer::<&str>(1_000_000, &[], None), None);
    }
}
