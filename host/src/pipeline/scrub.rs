//! Reasons never quote values. A dead letter's reason is stored in clear and logged, so it may
//! name fields, types and rules, never what a field held. masq's own reasons are written that
//! way; a policy's cannot be trusted to be, so before its reason is stored or logged every
//! value (of four characters or more) of the record it was given is cut out of it, and the
//! field it came from is named instead.

use crate::policy::{Field, Value};

/// Values shorter than this stay: "US", "ios", "2.0" are no secret, and cutting every short
/// string would leave a reason unreadable.
const SHORTEST_SECRET: usize = 4;

/// Values of a field the policy declares PII (0.2 `configured.pii`) are cut from this length:
/// the policy says they are personal, so only a single character, which names nobody and
/// would shred every word it occurs in, stays.
const SHORTEST_PII: usize = 2;

/// `reason` with every value of `fields` (4+ characters) replaced by `<field NAME>`.
pub fn scrub(reason: &str, fields: &[Field]) -> String {
    scrub_declared(reason, fields, &[])
}

/// `scrub`, with the values of the fields named in `pii` cut from two characters on.
pub fn scrub_declared(reason: &str, fields: &[Field], pii: &[String]) -> String {
    let mut secrets = Secrets::default();
    for field in fields {
        secrets.add(&field.name, &field.value, pii.contains(&field.name));
    }
    secrets.scrub(reason)
}

/// The texts to cut out of a reason or a log line, each with the field it came from. Filled
/// from whatever shape the records have (fields of a record, columns of a 0.2 batch), so a
/// policy's log lines and its reasons are held to one rule.
#[derive(Default)]
pub struct Secrets<'a> {
    list: Vec<(std::borrow::Cow<'a, str>, &'a str)>,
}

impl<'a> Secrets<'a> {
    /// Adds a value of field `name`; `pii` when the policy declared the field personal.
    pub fn add(&mut self, name: &'a str, value: &'a Value, pii: bool) {
        match value {
            Value::Text(t) => self.add_text(name, t, pii),
            Value::Integer(i) => self.add_owned(name, i.to_string(), pii),
            Value::Float(f) => self.add_owned(name, f.to_string(), pii),
            Value::Json(j) => self.add_json(name, j, pii),
            Value::Boolean(_) | Value::Null => {}
        }
    }

    /// Adds a text value (a string, or a number's text).
    pub fn add_text(&mut self, name: &'a str, text: &'a str, pii: bool) {
        if long_enough(text, pii) {
            self.list.push((std::borrow::Cow::Borrowed(text), name));
        }
    }

    pub fn add_owned(&mut self, name: &'a str, text: String, pii: bool) {
        if long_enough(&text, pii) {
            self.list.push((std::borrow::Cow::Owned(text), name));
        }
    }

    /// Adds a JSON array or object: its whole text, and every string inside, since a policy
    /// may quote one on its own.
    pub fn add_json(&mut self, name: &'a str, json: &'a str, pii: bool) {
        self.add_text(name, json, pii);
        if let Ok(parsed) = serde_json::from_str::<serde_json::Value>(json) {
            strings_in(&parsed, &mut |s| self.add_owned(name, s.to_string(), pii));
        }
    }

    /// `text` with every secret replaced by `<field NAME>`, the longest first, so a value
    /// that contains another is cut whole.
    pub fn scrub(mut self, text: &str) -> String {
        if self.list.is_empty() {
            return text.to_string();
        }
        self.list.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
        let mut out = text.to_string();
        for (secret, name) in &self.list {
            if out.contains(secret.as_ref()) {
                out = out.replace(secret.as_ref(), &format!("<field {name}>"));
            }
        }
        out
    }
}

fn long_enough(text: &str, pii: bool) -> bool {
    let shortest = if pii { SHORTEST_PII } else { SHORTEST_SECRET };
    text.chars().nth(shortest - 1).is_some()
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
    fn declared_pii_is_cut_from_two_characters() {
        let record = [
            field("initials", Value::Text("JD".into())),
            field("zone", Value::Text("EU".into())),
        ];
        assert_eq!(
            scrub_declared("JD in EU", &record, &["initials".to_string()]),
            "<field initials> in EU"
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
