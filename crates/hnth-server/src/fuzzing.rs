//! What the property tests of hostile input share (the signaling hub's, the pages' and the
//! API's): how many inputs a run tries, and JSON that is nearly right.
//!
//! `HNTH_FUZZ_CASES` sets the inputs per target: small in `cargo test`, 10⁶ in the long run of
//! `scripts/fuzz-long.sh`.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Inputs per target: `HNTH_FUZZ_CASES`, or `default` (what `cargo test` affords).
pub fn cases(default: u32) -> u32 {
    std::env::var("HNTH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A number a handler may take for an id or a count: the small ones that name real rows, the
/// boundaries, and whatever else.
pub fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        (-2i64..8).prop_map(Value::from),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-0.0)),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
    ]
    .boxed()
}

/// Text: short words a form expects, Vietnamese, markup, and any Unicode.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("Họp giao ban".to_string()),
        Just("<script>alert(1)</script>".to_string()),
        Just("'; DROP TABLE bookings; --".to_string()),
        Just("2026-12-31T23:59".to_string()),
        Just("31/12/2026".to_string()),
        "[a-z_]{1,12}",
        "\\PC{0,64}",
        prop::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect()),
    ]
    .boxed()
}

/// Any JSON value, of bounded depth, leaning to the shapes the handlers read.
pub fn value(keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            object(keys, inner),
        ]
    })
    .boxed()
}

/// An object whose keys are mostly the ones a handler reads (`keys`), with values from `v`.
pub fn object(
    keys: &'static [&'static str],
    v: impl Strategy<Value = Value> + 'static,
) -> BoxedStrategy<Value> {
    let key = prop_oneof![
        4 => prop::sample::select(keys).prop_map(str::to_string),
        1 => "[a-z_]{1,10}",
    ];
    prop::collection::vec((key, v), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>()))
        .boxed()
}
