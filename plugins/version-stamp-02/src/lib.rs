//! version-stamp on contract 0.2, for hot swaps between a 0.1 and a 0.2 policy: each row
//! names the message and the policy version that produced it (`3.0.0`, apart from the 0.1
//! build's `1.0.0` and `2.0.0`), so a test can check every row against the ledger.

wit_bindgen::generate!({
    path: "../../wit/v0.2",
    world: "pseudonym-policy-plugin",
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{
    Batch, Column, Config, Configured, Outcome, PolicyInfo, Transformed, Value, Values,
};

const VERSION: &str = "3.0.0";
const WRITES: [&str; 3] = ["message_id", "policy_version", "user_id"];

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct VersionStamp;

impl Guest for VersionStamp {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "version-stamp".into(),
            version: VERSION.into(),
            description: "Writes message_id, policy_version and user_id; for hot-swap tests."
                .into(),
            writes: WRITES.iter().map(|s| s.to_string()).collect(),
            settings: Vec::new(),
        }
    }

    fn configure(config: Config) -> Result<Configured, String> {
        match config.first() {
            Some((key, _)) => Err(format!("version-stamp takes no settings, got '{key}'")),
            None => Ok(Configured {
                writes: WRITES.iter().map(|s| s.to_string()).collect(),
                pii: Vec::new(),
            }),
        }
    }

    fn transform(batch: Batch) -> Transformed {
        stamp(batch)
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
