//! Hostile policy `hostile-loop`. Attack: a denial of service by CPU. `transform` never
//! returns once a batch holds a poison record (field `poison` = true); other batches pass
//! through unchanged.
//!
//! The host must bound the time a call may run (epoch interruption or fuel), turn the
//! interruption into a trap, and so fail only this batch: the one-record retries write the
//! good records and send the poison record to the dead letters, without the worker hanging.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record};
use std::hint::black_box;

const WRITES: &str = "user_id";

struct HostileLoop;

impl Guest for HostileLoop {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-loop",
            "Test only: loops forever when a record has poison=true; otherwise passes through.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        if batch.iter().any(hostile_common::is_poison) {
            // Real work the optimiser cannot remove, so the loop spins instead of being
            // folded away: each turn reads and writes through black_box.
            let mut counter: u64 = 0;
            loop {
                counter = black_box(counter).wrapping_add(1);
            }
        }
        batch
            .into_iter()
            .map(hostile_common::pass_through)
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileLoop);
