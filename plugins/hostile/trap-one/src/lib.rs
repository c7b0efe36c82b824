//! Hostile policy `hostile-trap-one`. Attack: one record that crashes the policy. `transform`
//! panics (a trap, since policies abort on panic) as soon as it reaches a record whose field
//! `user_id` is the text "poison"; every other record passes through unchanged.
//!
//! The host must not lose or duplicate the batch's good records: after the failed batch it
//! retries the records one at a time in fresh instances, writes the good ones and sends only
//! the poison record to the dead letters with the trap message as its reason.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record, Value};

const WRITES: &str = "user_id";

struct HostileTrapOne;

impl Guest for HostileTrapOne {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-trap-one",
            "Test only: panics on a record whose user_id is \"poison\"; otherwise passes \
             through.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        batch
            .into_iter()
            .map(|record| {
                if matches!(hostile_common::field(&record, "user_id"), Some(Value::Text(id)) if id == "poison")
                {
                    panic!("hostile-trap-one: user_id is \"poison\"");
                }
                hostile_common::pass_through(record)
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileTrapOne);
