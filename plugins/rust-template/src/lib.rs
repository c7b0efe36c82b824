//! A masq policy template. It masks one field (setting `field`, default `email`) into
//! `masked_<field>` through the host's keyed pseudonyms, rejects records without it, and keeps
//! every other field as it is. Copy this folder to start a policy of your own.

wit_bindgen::generate!({
    path: "../../wit",
    // `pseudonym-policy-plugin` is the world without `seal`; use `policy-plugin` to seal.
    world: "pseudonym-policy-plugin",
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{Config, Field, Outcome, PolicyInfo, Record, Setting, Value};
use std::cell::RefCell;

thread_local! {
    // masq gives every batch a fresh instance, so this holds one batch's settings only.
    static FIELD: RefCell<String> = RefCell::new("email".to_string());
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Template;

impl Guest for Template {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "rust-template".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Masks one field (default email) into masked_<field>; keeps the rest."
                .into(),
            writes: vec!["masked_email".into()],
            settings: vec![Setting {
                name: "field".into(),
                description: "The field to mask; written as masked_<field>.".into(),
                default_value: "email".into(),
            }],
        }
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        let mut field = "email".to_string();
        for (key, value) in config {
            match key.as_str() {
                "field" if !value.trim().is_empty() => field = value.trim().to_string(),
                "field" => return Err("setting 'field' must name a field, e.g. field=email".into()),
                other => {
                    return Err(format!(
                        "unknown setting '{other}': rust-template takes field"
                    ));
                }
            }
        }
        let writes = vec![format!("masked_{field}")];
        FIELD.with(|f| *f.borrow_mut() = field);
        Ok(writes)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        FIELD.with(|f| {
            let field = f.borrow();
            batch
                .into_iter()
                .map(|r| mask(&field, r, &mut |v| masq::policy::pseudonym::pseudonymize(v)))
                .collect()
        })
    }
}

/// The policy's logic, free of host calls so `cargo test` can run it natively.
pub fn mask(field: &str, record: Record, pseudonymize: &mut dyn FnMut(&str) -> String) -> Outcome {
    let mut out = Vec::with_capacity(record.fields.len());
    let mut found = false;
    for f in record.fields {
        if f.name == field {
            found = true;
            match f.value {
                Value::Text(raw) => out.push(Field {
                    name: format!("masked_{field}"),
                    value: Value::Text(pseudonymize(&raw)),
                }),
                _ => return Outcome::Reject(format!("field '{field}' must be a string")),
            }
        } else {
            out.push(f);
        }
    }
    if found {
        Outcome::Keep(out)
    } else {
        Outcome::Reject(format!("missing field(s): {field}"))
    }
}

#[cfg(target_arch = "wasm32")]
export!(Template);

#[cfg(test)]
mod tests {
    use super::*;
    use masq::policy::types::Metadata;

    fn record(fields: &[(&str, Value)]) -> Record {
        Record {
            metadata: Metadata {
                message_id: "m".into(),
                sent_timestamp_ms: 0,
                receive_count: 1,
                source: "test".into(),
            },
            fields: fields
                .iter()
                .map(|(n, v)| Field {
                    name: n.to_string(),
                    value: v.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn masks_the_field_and_keeps_the_rest() {
        let r = record(&[
            ("email", Value::Text("a@b.c".into())),
            ("plan", Value::Text("pro".into())),
        ]);
        let Outcome::Keep(fields) = mask("email", r, &mut |v| format!("tok({v})")) else {
            panic!()
        };
        assert_eq!(fields[0].name, "masked_email");
        assert!(matches!(&fields[0].value, Value::Text(t) if t == "tok(a@b.c)"));
        assert_eq!(fields[1].name, "plan");
    }

    #[test]
    fn rejects_records_without_the_field() {
        let r = record(&[("plan", Value::Text("pro".into()))]);
        assert!(
            matches!(mask("email", r, &mut |v| v.to_string()), Outcome::Reject(why) if why == "missing field(s): email")
        );
    }
}
