//! A test policy for hot swaps. Each row it writes names the message and the policy version
//! that produced it, so a test can check every row against the ledger: the version the
//! ledger records for a message must be the version that wrote its row. The version is set
//! at build time (`STAMP_VERSION`), so one source gives the two versions a swap test needs.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-plugin",
});

use exports::masq::policy::policy::Guest;
use masq::policy::types::{Config, Field, Outcome, PolicyInfo, Record, Value};

const VERSION: &str = match option_env!("STAMP_VERSION") {
    Some(v) => v,
    None => "1.0.0",
};
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

    fn configure(config: Config) -> Result<Vec<String>, String> {
        match config.first() {
            Some((key, _)) => Err(format!("version-stamp takes no settings, got '{key}'")),
            None => Ok(WRITES.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        batch.into_iter().map(stamp).collect()
    }
}

pub fn stamp(record: Record) -> Outcome {
    let user_id = record
        .fields
        .into_iter()
        .find(|f| f.name == "user_id")
        .map(|f| f.value);
    match user_id {
        Some(Value::Text(user_id)) => Outcome::Keep(vec![
            Field {
                name: "message_id".into(),
                value: Value::Text(record.metadata.message_id),
            },
            Field {
                name: "policy_version".into(),
                value: Value::Text(VERSION.into()),
            },
            Field {
                name: "user_id".into(),
                value: Value::Text(user_id),
            },
        ]),
        _ => Outcome::Reject("missing field(s): user_id".into()),
    }
}

#[cfg(target_arch = "wasm32")]
export!(VersionStamp);
