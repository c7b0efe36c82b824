//! Hostile policy `hostile-panic`. Attack: a broken policy. `describe` and `configure` work,
//! so it loads, but every `transform` call panics (a trap), whatever the records.
//!
//! The host must not loop or crash: the batch fails, every one-record retry fails too, and
//! each record goes to the dead letters with the trap message as its reason (or the host
//! stops with a clear error if it judges the policy broken); nothing is written twice and no
//! message is lost.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record};

const WRITES: &str = "user_id";

struct HostilePanic;

impl Guest for HostilePanic {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-panic",
            "Test only: panics on every transform call.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        panic!(
            "hostile-panic: transform always panics ({} records)",
            batch.len()
        );
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostilePanic);
