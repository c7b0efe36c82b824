//! Reasons never quote values. A dead letter's reason is stored in clear and logged, so it may
//! name fields, types and rules, never what a field held. masq's own reasons are written that
//! way; a policy's cannot be trusted to be, so before its reason is stored or logged every
//! value (of four characters or more) of the record it was given is cut out of it, and the
//! field it came from is named instead.

use crate::policy::{Field, Value};

/// Values shorter than this stay: "US", "ios", "2.0" are no secret, and cutting every short
/// string would leave a reason unreadable.
const SHORTEST_SECRET: usize = 4;

/// `reason` with every value of `fields` (4+ characters) replaced by `<field NAME>`.
pub fn scrub(reason: &str, fields: &[Field]) -> String {
    let mut secrets: Vec<(String, &str)> = Vec::new();
    for field in fields {
        let mut push = |text: String| {
            if text.chars().count() >= SHORTEST_SECRET {
                secrets.push((text, field.name.as_str()));
            }
        };
        match &field.value {
            Value::Text(t) => push(t.clone()),
            Value::Integer(i) => push(i.to_string()),
            Value::Float(f) => push(f.to_string()),
            Value::Json(j) => {
                push(j.clone());
                // A policy may quote a string inside an array or object on its own.
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(j) {
                    strings_in(&json, &mut |s| push(s.to_string()));
                }
            }
            Value::Boolean(_) | Value::Null => {}
        }
    }
    if secrets.is_empty() {
        return reason.to_string();
    }
    // Longest first: a value that contains another is cut whole.
    secrets.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
    let mut out = reason.to_string();
    for (secret, name) in secrets {
        if out.contains(&secret) {
            out = out.replace(&secret, &format!("<field {name}>"));
        }
    }
    out
}

fn strings_in(json: &serde_json::Value, found: &mut impl FnMut(&str)) {
    match json {
        serde_json::Value::String(s) => found(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings_in(v, found)),
        serde_json::Value::Object(members) => members.values().for_each(|v| strings_in(v, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: Value) -> Field {
        Field {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn values_are_cut_and_their_fields_named() {
        let record = [
            field("ip", Value::Text("199.172.111.135".into())),
            field("device_id", Value::Text("593-47-5928".into())),
            field("locale", Value::Text("RU".into())),
            field("n", Value::Integer(3_232_235_777)),
        ];
        assert_eq!(
            scrub(
                "ip 199.172.111.135 of device 593-47-5928 is banned in RU",
                &record
            ),
            "ip <field ip> of device <field device_id> is banned in RU"
        );
        assert_eq!(
            scrub(
                "must be a string to be masked, got integer 3232235777",
                &record
            ),
            "must be a string to be masked, got integer <field n>"
        );
        assert_eq!(
            scrub("missing field(s): user_id", &record),
            "missing field(s): user_id"
        );
    }

    #[test]
    fn the_longest_value_is_cut_first_and_strings_inside_json_too() {
        let record = [
            field("a", Value::Text("secret".into())),
            field("b", Value::Text("secret-and-more".into())),
            field("geo", Value::Json(r#"{"city": "Oslo-Nord"}"#.into())),
        ];
        assert_eq!(
            scrub("saw secret-and-more and secret in Oslo-Nord", &record),
            "saw <field b> and <field a> in <field geo>"
        );
    }
}
