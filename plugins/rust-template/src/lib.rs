//! A masq policy template (contract 0.2). It masks one field (setting `field`, default
//! `email`) into `masked_<field>` through the host's keyed pseudonyms, rejects records without
//! it, and keeps every other field as it is. Copy this folder to start a policy of your own.
//!
//! A 0.2 batch arrives as columns: each field once, with one value per record; a column of
//! strings comes packed (`texts`: the values' bytes back to back and where each ends). The
//! policy answers one outcome per record and the kept rows as columns, passes the columns it
//! does not change on as they came, and masks a whole packed column in one host call: no
//! value crosses the sandbox on its own, which is what makes a batch cheap.

wit_bindgen::generate!({
    path: "../../wit/v0.2",
    // `pseudonym-policy-plugin` is the world without `seal`; use `policy-plugin` to seal.
    world: "pseudonym-policy-plugin",
    additional_derives: [PartialEq],
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{
    Batch, Column, Config, Configured, Outcome, PolicyInfo, Setting, Texts, Transformed, Values,
};
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

    fn configure(config: Config) -> Result<Configured, String> {
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
        let configured = Configured {
            writes: vec![format!("masked_{field}")],
            // The field we mask holds personal data: masq cuts its values out of reasons
            // and log lines whatever their length.
            pii: vec![field.clone()],
        };
        FIELD.with(|f| *f.borrow_mut() = field);
        Ok(configured)
    }

    fn transform(batch: Batch) -> Transformed {
        FIELD.with(|f| {
            mask(&f.borrow(), batch, &mut |values| {
                masq::policy::pseudonym::pseudonymize_packed(&values)
            })
        })
    }
}

/// The policy's logic, free of host calls so `cargo test` can run it natively.
pub fn mask(
    field: &str,
    batch: Batch,
    pseudonymize: &mut dyn FnMut(Texts) -> Texts,
) -> Transformed {
    let n = batch.size as usize;
    let mut outcomes = vec![Outcome::Keep; n];
    let mut columns = Vec::with_capacity(batch.columns.len());
    let mut found = false;
    for column in batch.columns {
        if column.name != field {
            columns.push(column); // every other field is kept as it is, in one move
            continue;
        }
        found = true;
        for &i in &column.missing {
            outcomes[i as usize] = Outcome::Reject(format!("missing field(s): {field}"));
        }
        let not_a_string = || Outcome::Reject(format!("field '{field}' must be a string"));
        // A column of strings (packed, as masq sends one) is masked whole in one host call,
        // nulls staying null; anything else (numbers, a mix of kinds) record by record.
        let masked = match column.values {
            Values::PackedText(texts) => {
                for &i in &texts.nulls {
                    if !column.missing.contains(&i) {
                        outcomes[i as usize] = not_a_string();
                    }
                }
                pseudonymize(texts)
            }
            Values::Mixed(values) => {
                let mut strings = Vec::with_capacity(n);
                for (i, value) in values.iter().enumerate() {
                    strings.push(match value {
                        masq::policy::types::Value::Text(v) => Some(v.as_str()),
                        _ if column.missing.contains(&(i as u32)) => None,
                        _ => {
                            outcomes[i] = not_a_string();
                            None
                        }
                    });
                }
                pseudonymize(pack(strings))
            }
            _ => {
                for (i, outcome) in outcomes.iter_mut().enumerate() {
                    if !column.missing.contains(&(i as u32)) {
                        *outcome = not_a_string();
                    }
                }
                pack(vec![None; n])
            }
        };
        columns.push(Column {
            name: format!("masked_{field}"),
            values: Values::PackedText(masked),
            missing: column.missing,
        });
    }
    if !found {
        outcomes = vec![Outcome::Reject(format!("missing field(s): {field}")); n];
    }
    Transformed { outcomes, columns }
}

/// Packs one value per record (`None`: null) as a `texts` column.
pub fn pack(values: Vec<Option<&str>>) -> Texts {
    let mut texts = Texts {
        bytes: Vec::new(),
        ends: Vec::with_capacity(values.len()),
        nulls: Vec::new(),
    };
    for (i, value) in values.into_iter().enumerate() {
        match value {
            Some(v) => texts.bytes.extend_from_slice(v.as_bytes()),
            None => texts.nulls.push(i as u32),
        }
        texts.ends.push(texts.bytes.len() as u32);
    }
    texts
}

/// A packed column's values, `None` for a null. masq packs valid UTF-8; anything else traps,
/// which fails the batch rather than writing a wrong value.
pub fn unpack(texts: &Texts) -> Vec<Option<&str>> {
    let mut start = 0;
    texts
        .ends
        .iter()
        .enumerate()
        .map(|(i, &end)| {
            let value = &texts.bytes[start..end as usize];
            start = end as usize;
            (!texts.nulls.contains(&(i as u32)))
                .then(|| std::str::from_utf8(value).expect("masq packs UTF-8"))
        })
        .collect()
}

#[cfg(target_arch = "wasm32")]
export!(Template);

#[cfg(test)]
mod tests {
    use super::*;
    use masq::policy::types::{Metadata, Value};

    fn batch(columns: Vec<Column>, size: u32) -> Batch {
        Batch {
            size,
            source: "test".into(),
            columns,
            metadata: (0..size)
                .map(|i| Metadata {
                    message_id: format!("m{i}"),
                    sent_timestamp_ms: 0,
                    receive_count: 1,
                    attributes: Vec::new(),
                })
                .collect(),
        }
    }

    fn text(name: &str, values: &[Option<&str>], missing: Vec<u32>) -> Column {
        Column {
            name: name.into(),
            values: Values::PackedText(pack(values.to_vec())),
            missing,
        }
    }

    /// The host's `pseudonymize-packed`, with a readable stand-in token.
    fn tokens(values: Texts) -> Texts {
        let tokens: Vec<Option<String>> = unpack(&values)
            .into_iter()
            .map(|v| v.map(|v| format!("tok({v})")))
            .collect();
        pack(tokens.iter().map(|t| t.as_deref()).collect())
    }

    #[test]
    fn masks_the_field_and_keeps_the_rest() {
        let b = batch(
            vec![
                text("email", &[Some("a@b.c"), None], vec![1]),
                text("plan", &[Some("pro"), Some("free")], vec![]),
            ],
            2,
        );
        let out = mask("email", b, &mut tokens);
        assert_eq!(
            out.outcomes,
            [
                Outcome::Keep,
                Outcome::Reject("missing field(s): email".into())
            ]
        );
        assert_eq!(out.columns[0].name, "masked_email");
        let Values::PackedText(masked) = &out.columns[0].values else {
            panic!("{:?}", out.columns[0].values)
        };
        assert_eq!(unpack(masked), [Some("tok(a@b.c)"), None]);
        assert_eq!(out.columns[1].name, "plan");
    }

    #[test]
    fn rejects_values_that_are_not_strings() {
        let b = batch(
            vec![Column {
                name: "email".into(),
                values: Values::Mixed(vec![Value::Integer(1), Value::Text("x@y.z".into())]),
                missing: vec![],
            }],
            2,
        );
        let out = mask("email", b, &mut tokens);
        assert_eq!(
            out.outcomes,
            [
                Outcome::Reject("field 'email' must be a string".into()),
                Outcome::Keep
            ]
        );
    }

    #[test]
    fn a_null_is_rejected_and_the_others_masked() {
        let b = batch(
            vec![text("email", &[None, Some("x@y.z"), None], vec![2])],
            3,
        );
        let out = mask("email", b, &mut tokens);
        assert_eq!(
            out.outcomes,
            [
                Outcome::Reject("field 'email' must be a string".into()),
                Outcome::Keep,
                Outcome::Reject("missing field(s): email".into())
            ]
        );
        let Values::PackedText(masked) = &out.columns[0].values else {
            panic!("{:?}", out.columns[0].values)
        };
        assert_eq!(unpack(masked), [None, Some("tok(x@y.z)"), None]);
    }

    #[test]
    fn rejects_batches_without_the_field() {
        let b = batch(vec![text("plan", &[Some("pro")], vec![])], 1);
        assert_eq!(
            mask("email", b, &mut tokens).outcomes,
            [Outcome::Reject("missing field(s): email".into())]
        );
    }
}
