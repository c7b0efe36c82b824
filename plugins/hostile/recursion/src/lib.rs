//! Hostile policy `hostile-recursion`. Attack: stack exhaustion. On a poison record (field
//! `poison` = true) `transform` recurses without bound; each frame keeps a 256-byte buffer
//! live on the shadow stack and the call is not a tail call, and `black_box` hides the depth
//! and the buffer from the optimiser, so the recursion cannot become a loop. It ends in a
//! stack-overflow trap (wasm call stack) or an out-of-bounds trap (shadow stack below
//! address 0), whichever limit comes first. Other records pass through.
//!
//! The host must survive the overflow (wasmtime's `max_wasm_stack`, which it must not raise
//! toward the host thread's own stack size) and treat the trap as a failed batch: good
//! records written, the poison record dead-lettered.

// Natively only the logic compiles (for `cargo test --workspace`); the exports, and so every
// use of this code, exist only in the wasm build.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use hostile_common::exports::masq::policy::policy::Guest;
use hostile_common::masq::policy::types::{Config, Outcome, PolicyInfo, Record};
use std::hint::black_box;

const WRITES: &str = "user_id";

struct HostileRecursion;

/// Recurses until the stack runs out. The base case exists only so the compiler does not
/// flag unconditional recursion; `black_box` makes it unreachable in practice.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 256];
    frame[(depth % 256) as usize] = depth as u8;
    let frame = black_box(frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = recurse(black_box(depth + 1));
    // Uses the frame after the call returns, so the frame must stay live (no tail call).
    below.wrapping_add(u64::from(frame[(below % 256) as usize]))
}

impl Guest for HostileRecursion {
    fn describe() -> PolicyInfo {
        hostile_common::info(
            "hostile-recursion",
            "Test only: recurses without bound when a record has poison=true; otherwise \
             passes through.",
            WRITES,
        )
    }

    fn configure(config: Config) -> Result<Vec<String>, String> {
        hostile_common::configure(&config, WRITES)
    }

    fn transform(batch: Vec<Record>) -> Vec<Outcome> {
        if batch.iter().any(hostile_common::is_poison) {
            black_box(recurse(black_box(0)));
        }
        batch
            .into_iter()
            .map(hostile_common::pass_through)
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
hostile_common::export!(HostileRecursion);
