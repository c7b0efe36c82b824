//! Hostile policy `hostile-huge-output`. Attack: flooding the host with output. For a poison
//! record (field `poison` = true) `transform` keeps the record with its `user_id` replaced by
//! a 16 MiB text value (16,777,216 'x' characters; the `poison` field and the other fields
//! are kept as they are). Every other record passes through unchanged.
//!
//! The host must cap the size of what it lifts out of a call (per value, per record or per
//! batch) and send an oversized record to the dead letters with a reason, instead of copying
//! it into memory, logs or the table; the batch's other records are written.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record, Value};

const WRITES: &str = "user_id";
/// 16 MiB.
pub const HUGE_LEN: usize = 16 << 20;

struct HostileHugeOutput;

impl Guest for HostileHugeOutput {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-huge-output",
            "Test only: for a record with poison=true, writes a 16 MiB text as user_id; \
             otherwise passes through.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        batch
            .into_iter()
            .map(|mut record| {
                if hostile_common::is_poison(&record) {
                    let huge = "x".repeat(HUGE_LEN);
                    match record.fields.iter_mut().find(|f| f.name == "user_id") {
                        Some(f) => f.value = Value::Text(huge),
                        None => record.fields.push(hostile_common::text("user_id", huge)),
                    }
                }
                hostile_common::pass_through(record)
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileHugeOutput);
