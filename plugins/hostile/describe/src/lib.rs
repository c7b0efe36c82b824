//! Hostile policy `hostile-describe`. Attack: a policy that fails while being loaded.
//! `describe` panics (a trap); `configure` and `transform` would pass records through.
//!
//! The host must report a clear error at load (`masq run` refuses to start, `masq plugin
//! check` fails) naming the policy and the trap, rather than crash, hang or run without the
//! policy's name and version for the ledger.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record};

const WRITES: &str = "user_id";

struct HostileDescribe;

impl Guest for HostileDescribe {
    fn describe() -> PolicyInfo {
        panic!("hostile-describe: describe always panics");
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        batch
            .into_iter()
            .map(hostile_common::pass_through)
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileDescribe);
