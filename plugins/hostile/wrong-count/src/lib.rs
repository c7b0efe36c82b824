//! Hostile policy `hostile-wrong-count`. Attack: breaking the one-outcome-per-record contract.
//! `transform` passes records through but always returns one outcome fewer than it got
//! records (the last record's outcome is missing; a one-record batch gets an empty list).
//!
//! The host must check the count before using any outcome: it must not write the batch's
//! records against the wrong messages, acknowledge a message without an outcome, or index
//! past the end. A wrong count fails the batch like a trap does; since the one-record retries
//! also return nothing, every record goes to the dead letters with a reason naming the count.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record};

const WRITES: &str = "user_id";

struct HostileWrongCount;

impl Guest for HostileWrongCount {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-wrong-count",
            "Test only: passes records through but returns one outcome fewer than records.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(mut batch: Vec<Record>) -> Vec<Outcome> {
        batch.pop();
        batch
            .into_iter()
            .map(hostile_common::pass_through)
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileWrongCount);
