//! Message body -> record fields. The first step of the pipeline and the only code that parses
//! untrusted bytes before the sandbox: it never panics, and every refusal is a reason string
//! that goes to the dead letters with the raw body.

use crate::policy::{Field, Value};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Decodes one message body into the members of its JSON object, in order.
pub fn decode_body(body: &str) -> Result<Vec<Field>, String> {
    if body.trim().is_empty() {
        return Err("empty message body: expected a JSON object".to_string());
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let fields = match de.deserialize_any(ObjectVisitor) {
        Ok(Fields(fields)) => fields,
        Err(e) => return Err(describe_error(&e)),
    };
    de.end().map_err(|e| describe_error(&e))?;
    Ok(fields)
}

/// What can be kept of a body without its values, for a dead letter when there is no key to
/// seal it with: its length, its SHA-256, and for a JSON object its member names with the
/// type of each value. Enough to recognise a message and see what was wrong with its shape.
pub fn body_shape(body: &str) -> serde_json::Value {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::Float(_) => "number",
        Value::Text(_) => "string",
        Value::Json(j) if j.starts_with('[') => "array",
        Value::Json(_) => "object",
    };
    let members = match decode_body(body) {
        Ok(fields) => serde_json::Value::Array(
            fields
                .iter()
                .map(|f| serde_json::json!([f.name, kind(&f.value)]))
                .collect(),
        ),
        Err(_) => serde_json::Value::String("not a JSON object masq can read".into()),
    };
    serde_json::json!({ "length": body.len(), "sha256": digest, "members": members })
}

fn describe_error(e: &serde_json::Error) -> String {
    if e.is_data() {
        // Our own messages (not an object, duplicate member) carry their position already.
        format!("{e}")
    } else {
        format!("invalid JSON: {e}")
    }
}

/// A member name for a refusal reason: quoted, and cut to 64 characters, because the name is
/// the sender's and the reason is stored and logged.
fn quoted(name: &str) -> String {
    const MAX: usize = 64;
    if name.chars().count() <= MAX {
        format!("'{name}'")
    } else {
        let head: String = name.chars().take(MAX).collect();
        format!("'{head}...' ({} bytes)", name.len())
    }
}

/// Members up to which a duplicate name is found by a scan rather than a set.
const SCAN_MEMBERS: usize = 16;

struct Fields(Vec<Field>);
struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields: Vec<Field> = Vec::with_capacity(map.size_hint().unwrap_or(8));
        // Duplicates are found by a scan of `fields` while the object is small (a login has
        // six members: a scan costs less than hashing and copying each name), and by a set
        // once it is not: a body of 100,000 members must not cost 10^10 compares.
        let mut names: Option<HashSet<String>> = None;
        while let Some(name) = map.next_key::<String>()? {
            let repeated = match &mut names {
                Some(set) => !set.insert(name.clone()),
                None if fields.len() < SCAN_MEMBERS => fields.iter().any(|f| f.name == name),
                None => {
                    let mut set: HashSet<String> = fields.iter().map(|f| f.name.clone()).collect();
                    let repeated = !set.insert(name.clone());
                    names = Some(set);
                    repeated
                }
            };
            if repeated {
                return Err(de::Error::custom(format!(
                    "member {} appears twice; masq will not guess which one counts",
                    quoted(&name)
                )));
            }
            let raw: serde_json::Value = map.next_value()?;
            let value = match raw {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Boolean(b),
                serde_json::Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        Value::Integer(i)
                    } else if n.is_u64() {
                        return Err(de::Error::custom(format!(
                            "member {}: an integer that does not fit in 64 signed bits",
                            quoted(&name)
                        )));
                    } else {
                        Value::Float(n.as_f64().unwrap_or(f64::NAN))
                    }
                }
                serde_json::Value::String(s) => Value::Text(s),
                nested @ (serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
                    Value::Json(nested.to_string())
                }
            };
            fields.push(Field { name, value });
        }
        Ok(Fields(fields))
    }

    // Anything but an object: say what it was instead.
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Fields, A::Error> {
        Err(de::Error::custom(
            "message body is a JSON array, not an object",
        ))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Fields, E> {
        Err(E::custom("message body is a JSON string, not an object"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Fields, E> {
        Err(E::custom("message body is a JSON boolean, not an object"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Fields, E> {
        Err(E::custom("message body is a JSON number, not an object"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Fields, E> {
        Err(E::custom("message body is a JSON number, not an object"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Fields, E> {
        Err(E::custom("message body is a JSON number, not an object"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Fields, E> {
        Err(E::custom("message body is JSON null, not an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(fields: &[Field]) -> Vec<&str> {
        fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn decodes_a_login_in_order_with_types() {
        let f = decode_body(
            r#"{"user_id": "u", "app_version": "2.3.0", "n": 7, "x": 1.5, "ok": true, "locale": null, "geo": {"a": [1]}}"#,
        )
        .unwrap();
        assert_eq!(
            names(&f),
            ["user_id", "app_version", "n", "x", "ok", "locale", "geo"]
        );
        assert_eq!(f[0].value, Value::Text("u".into()));
        assert_eq!(f[2].value, Value::Integer(7));
        assert_eq!(f[3].value, Value::Float(1.5));
        assert_eq!(f[4].value, Value::Boolean(true));
        assert_eq!(f[5].value, Value::Null);
        assert_eq!(f[6].value, Value::Json(r#"{"a":[1]}"#.into()));
    }

    #[test]
    fn refuses_bad_bodies_with_a_specific_reason() {
        let cases = [
            ("", "empty message body"),
            ("   \n", "empty message body"),
            ("{\"a\": ", "invalid JSON"),
            ("not json", "invalid JSON"),
            ("[1, 2]", "JSON array, not an object"),
            ("\"s\"", "JSON string, not an object"),
            ("42", "JSON number, not an object"),
            ("null", "JSON null, not an object"),
            ("true", "JSON boolean, not an object"),
            (r#"{"a": 1, "a": 2}"#, "member 'a' appears twice"),
            (
                r#"{"a": 18446744073709551615}"#,
                "does not fit in 64 signed bits",
            ),
            (r#"{"a": 1} {"b": 2}"#, "invalid JSON: trailing characters"),
        ];
        for (body, expected) in cases {
            let err = decode_body(body).unwrap_err();
            assert!(err.contains(expected), "{body:?}: {err}");
        }
    }

    #[test]
    fn finds_a_repeated_member_among_few_or_many() {
        // Below, at and past the size where the scan gives way to a set, the repeat first
        // met before the switch and after it.
        for members in [2, SCAN_MEMBERS, SCAN_MEMBERS + 1, 40] {
            for (first, again) in [(0, members - 1), (members - 1, members), (members / 2, members + 3)] {
                let mut names: Vec<String> = (0..members + 4).map(|i| format!("m{i}")).collect();
                names[again] = names[first].clone();
                let body = format!(
                    "{{{}}}",
                    names.iter().map(|n| format!("\"{n}\": 1")).collect::<Vec<_>>().join(", ")
                );
                let err = decode_body(&body).unwrap_err();
                assert!(err.contains(&format!("member 'm{first}' appears twice")), "{members} {first} {again}: {err}");
            }
            let unique = (0..members).map(|i| format!("\"m{i}\": {i}")).collect::<Vec<_>>().join(", ");
            assert_eq!(decode_body(&format!("{{{unique}}}")).unwrap().len(), members);
        }
    }

    #[test]
    fn reasons_never_echo_a_long_member_name_whole() {
        let long = "x".repeat(5000);
        for body in [
            format!(r#"{{"{long}": 1, "{long}": 2}}"#),
            format!(r#"{{"{long}": 18446744073709551615}}"#),
        ] {
            let err = decode_body(&body).unwrap_err();
            assert!(err.len() < 300, "{} bytes: {err}", err.len());
            assert!(err.contains("(5000 bytes)"), "{err}");
        }
    }

    #[test]
    fn many_members_decode_in_linear_time() {
        // 100,000 distinct members: a quadratic duplicate check would take seconds here.
        let body = format!(
            "{{{}}}",
            (0..100_000)
                .map(|i| format!("\"m{i}\": {i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let started = std::time::Instant::now();
        assert_eq!(decode_body(&body).unwrap().len(), 100_000);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn never_panics_on_deep_nesting() {
        let body = format!("{{\"a\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(decode_body(&body).unwrap_err().contains("invalid JSON"));
    }

    #[test]
    fn a_body_shape_keeps_names_and_types_never_values() {
        let body = r#"{"ip": "199.172.111.135", "n": 3, "ok": null, "geo": {"c": "Oslo"}}"#;
        let shape = body_shape(body).to_string();
        assert!(
            !shape.contains("199.172") && !shape.contains("Oslo"),
            "{shape}"
        );
        assert!(
            shape.contains(r#"["ip","string"],["n","number"],["ok","null"],["geo","object"]"#),
            "{shape}"
        );
        assert!(shape.contains(&format!("\"length\":{}", body.len())));
        assert!(body_shape("oops").to_string().contains("not a JSON object"));
    }
}
