//! Fuzz target: `masq::source::decode::decode_body`, the only code that parses untrusted bytes (an SQS
//! message body) before the sandbox. Properties checked on every input (docs/fuzzing.md):
//!
//! 1. it never panics (and never hangs: `just fuzz` runs libFuzzer with a per-input timeout);
//! 2. on Ok, field names are unique;
//! 3. on Ok, the fields written back as a JSON object decode again to the same names in the
//!    same order, and to the same values (floats within rounding of the JSON text);
//! 4. on Err, the reason is non-empty and at most `MAX_REASON` bytes: a reason goes to the
//!    dead letters and the logs, and a long one may echo attacker data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use masq::source::decode::decode_body;
use masq::policy::{Field, Value};
use std::collections::HashSet;

/// The longest refusal reason accepted, in bytes.
const MAX_REASON: usize = 1024;

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        // A valid body as the SQS source hands it over...
        Ok(body) => check(body),
        // ...and any other bytes as lossy UTF-8 (replacement characters included).
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});

fn check(body: &str) {
    match decode_body(body) {
        Ok(fields) => {
            let mut seen = HashSet::with_capacity(fields.len());
            for f in &fields {
                assert!(
                    seen.insert(f.name.as_str()),
                    "duplicate member {:?} accepted",
                    f.name
                );
            }
            let again = to_json_object(&fields);
            let back = decode_body(&again)
                .unwrap_or_else(|e| panic!("re-encoded fields refused: {e}\nre-encoded: {again}"));
            let names = |fs: &[Field]| fs.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
            assert_eq!(
                names(&fields),
                names(&back),
                "names changed on re-decoding {again}"
            );
            for (a, b) in fields.iter().zip(&back) {
                assert!(
                    same_value(&a.value, &b.value),
                    "member {:?}: {:?} became {:?}",
                    a.name,
                    a.value,
                    b.value
                );
            }
        }
        Err(reason) => {
            assert!(!reason.is_empty(), "empty refusal reason");
            assert!(
                reason.len() <= MAX_REASON,
                "refusal reason is {} bytes (limit {MAX_REASON}); it starts {:?}",
                reason.len(),
                reason.chars().take(160).collect::<String>()
            );
        }
    }
}

/// The fields as one JSON object, members in order (serde_json's `Map` would sort them).
fn to_json_object(fields: &[Field]) -> String {
    let mut out = String::from("{");
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(&f.name).expect("a string always serialises"));
        out.push(':');
        out.push_str(
            &serde_json::to_string(&to_json(&f.name, &f.value)).expect("a value always serialises"),
        );
    }
    out.push('}');
    out
}

fn to_json(name: &str, value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| panic!("member {name:?}: float {x} has no JSON form")),
        Value::Text(s) => serde_json::Value::String(s.clone()),
        Value::Json(s) => serde_json::from_str(s)
            .unwrap_or_else(|e| panic!("member {name:?}: json value is not JSON ({e}): {s}")),
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => close(*x, *y),
        (Value::Json(x), Value::Json(y)) => {
            x == y
                || match (serde_json::from_str(x), serde_json::from_str(y)) {
                    (Ok(x), Ok(y)) => same_json(&x, &y),
                    _ => false,
                }
        }
        _ => a == b,
    }
}

/// JSON equality, but floats only within rounding: serde_json parses floats on a best-effort
/// basis (without its `float_roundtrip` feature), so text -> f64 -> text may move the last bit.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) if x.is_f64() && y.is_f64() => close(
            x.as_f64().unwrap_or(f64::NAN),
            y.as_f64().unwrap_or(f64::NAN),
        ),
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

fn close(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
}
