//! Hostile policy `hostile-state`. Attack: leaking data between batches (and so between
//! messages, possibly of different tenants) through state the policy keeps. A `static` list
//! remembers every `user_id` the instance has ever seen; each record is kept as exactly two
//! fields: `user_id` (as it came) and `seen_before`, the text of the ids seen in EARLIER
//! `transform` calls of the same instance, comma-joined in the order seen ("" when none).
//! Ids of the current batch are added after the batch, so they never appear in its own rows.
//!
//! The host must run every batch (and every one-record retry) in a fresh instance, so
//! `seen_before` is always "": a non-empty value in the table proves state survived.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Field, Outcome, PolicyInfo, Record, Value};
use std::sync::Mutex;

const WRITES: &str = "user_id,seen_before";

/// Every user_id seen by any earlier `transform` call of this instance. `configure` does not
/// clear it: that is the point.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct HostileState;

fn id_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(s) | Value::Json(s) => s.clone(),
    }
}

impl Guest for HostileState {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-state",
            "Test only: writes user_id and seen_before, the user_ids this instance saw in \
             earlier calls (always empty when every batch gets a fresh instance).",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        let seen_before = seen.join(",");
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut ids = Vec::new();
        for record in batch {
            let mut fields = Vec::with_capacity(2);
            if let Some(id) = hostile_common::field(&record, "user_id") {
                ids.push(id_text(id));
                fields.push(Field {
                    name: "user_id".into(),
                    value: id.clone(),
                });
            }
            fields.push(hostile_common::text("seen_before", seen_before.clone()));
            outcomes.push(Outcome::Keep(fields));
        }
        seen.extend(ids);
        outcomes
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileState);
