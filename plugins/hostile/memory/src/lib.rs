//! Hostile policy `hostile-memory`. Attack: a denial of service by memory. On a poison record
//! (field `poison` = true) `transform` allocates 1 MiB blocks, touching each, until an
//! allocation fails; the allocation failure aborts (a trap). Without a limit the instance
//! grows its linear memory to the 4 GiB a wasm32 module can address. Other records pass
//! through.
//!
//! The host must cap each instance's memory (a `ResourceLimiter` / `StoreLimits`, or the
//! pooling allocator's per-instance limit) so `memory.grow` fails early, and treat the
//! resulting trap as a failed batch: good records written, the poison record dead-lettered,
//! the host process unharmed.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record};
use std::hint::black_box;

const WRITES: &str = "user_id";
const BLOCK: usize = 1 << 20;

struct HostileMemory;

/// Allocates until the allocator fails (which aborts) and never returns.
fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // vec![1; n] writes every byte, so the pages are really used.
        let block = vec![1u8; black_box(BLOCK)];
        hoard.push(black_box(block));
        black_box(&hoard);
    }
}

impl Guest for HostileMemory {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-memory",
            "Test only: allocates without bound when a record has poison=true; otherwise \
             passes through.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        if batch.iter().any(hostile_common::is_poison) {
            exhaust_memory();
        }
        batch
            .into_iter()
            .map(hostile_common::pass_through)
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileMemory);
