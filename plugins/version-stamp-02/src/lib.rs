//! version-stamp on contract 0.2, for hot swaps between a 0.1 and a 0.2 policy: each row
//! names the message and the policy version that produced it (`3.0.0`, apart from the 0.1
//! build's `1.0.0` and `2.0.0`), so a test can check every row against the ledger.
//!
//! With the setting `attribute=NAME` it also writes the message attribute NAME (a message
//! attribute, an SQS system attribute such as `MessageGroupId`, or an SNS fact such as
//! `sns.topic_arn`) into the column `attribute_value`: how a policy reads the metadata's
//! attributes.

wit_bindgen::generate!({
    path: "../../wit/v0.2",
    world: "pseudonym-policy-plugin",
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{
    Batch, Column, Config, Configured, Outcome, PolicyInfo, Setting, Transformed, Value, Values,
};

const VERSION: &str = "3.0.0";
const WRITES: [&str; 3] = ["message_id", "policy_version", "user_id"];
const ATTRIBUTE_COLUMN: &str = "attribute_value";

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct VersionStamp;

// masq gives every batch a fresh instance: this holds one batch's setting only.
static ATTRIBUTE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl Guest for VersionStamp {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "version-stamp".into(),
            version: VERSION.into(),
            description: "Writes message_id, policy_version and user_id; for hot-swap tests."
                .into(),
            writes: WRITES.iter().map(|s| s.to_string()).collect(),
            settings: vec![Setting {
                name: "attribute".into(),
                description: format!(
                    "A message attribute to write into the column {ATTRIBUTE_COLUMN} (none by default)"
                ),
                default_value: String::new(),
            }],
        }
    }

    fn configure(config: Config) -> Result<Configured, String> {
        let mut writes: Vec<String> = WRITES.iter().map(|s| s.to_string()).collect();
        let mut attribute = None;
        for (key, value) in config {
            match key.as_str() {
                "attribute" if !value.is_empty() => attribute = Some(value),
                "attribute" => {}
                other => {
                    return Err(format!("version-stamp takes only 'attribute', got '{other}'"));
                }
            }
        }
        if attribute.is_some() {
            writes.push(ATTRIBUTE_COLUMN.into());
        }
        *ATTRIBUTE.lock().unwrap() = attribute;
        Ok(Configured {
            writes,
            pii: Vec::new(),
        })
    }

    fn transform(batch: Batch) -> Transformed {
        let attribute = ATTRIBUTE.lock().unwrap().clone();
        let values: Option<Vec<Option<String>>> = attribute.map(|name| {
            batch
                .metadata
                .iter()
                .map(|m| {
                    m.attributes
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v.clone())
                })
                .collect()
        });
        let mut out = stamp(batch);
        if let Some(values) = values {
            out.columns.push(Column {
                name: ATTRIBUTE_COLUMN.into(),
                values: Values::Text(values),
                missing: Vec::new(),
            });
        }
        out
    }
}

/// Keeps every record with a string `user_id`, as the 0.1 build does.
pub fn stamp(batch: Batch) -> Transformed {
    let n = batch.size as usize;
    let user_ids: Vec<Option<String>> = match batch
        .columns
        .into_iter()
        .find(|c| c.name == "user_id")
        .map(|c| c.values)
    {
        // masq sends a column of strings packed: the values' bytes and where each ends.
        Some(Values::PackedText(texts)) => {
            let mut start = 0;
            texts
                .ends
                .iter()
                .enumerate()
                .map(|(i, &end)| {
                    let value = &texts.bytes[start..end as usize];
                    start = end as usize;
                    (!texts.nulls.contains(&(i as u32)))
                        .then(|| String::from_utf8_lossy(value).into_owned())
                })
                .collect()
        }
        Some(Values::Text(values)) => values,
        Some(Values::Mixed(values)) => values
            .into_iter()
            .map(|v| match v {
                Value::Text(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => vec![None; n],
    };
    let outcomes = user_ids
        .iter()
        .map(|u| match u {
            Some(_) => Outcome::Keep,
            None => Outcome::Reject("missing field(s): user_id".into()),
        })
        .collect();
    let text = |name: &str, values: Vec<Option<String>>| Column {
        name: name.into(),
        values: Values::Text(values),
        missing: Vec::new(),
    };
    Transformed {
        outcomes,
        columns: vec![
            text(
                "message_id",
                batch
                    .metadata
                    .into_iter()
                    .map(|m| Some(m.message_id))
                    .collect(),
            ),
            text("policy_version", vec![Some(VERSION.to_string()); n]),
            text("user_id", user_ids),
        ],
    }
}

#[cfg(target_arch = "wasm32")]
export!(VersionStamp);
