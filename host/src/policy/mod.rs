//! The policy host: loads a WebAssembly component once, runs each batch in a fresh sandbox,
//! and swaps in new versions while running.
//!
//! - `bindings`: types and traits generated from `wit/policy.wit`
//! - `runtime`: the engine (compile cache, pooling allocator, epoch deadlines, linker)
//! - `host`: one policy version: load checks, `transform`, isolation of failing records
//! - `imports`: what a policy may import and what those imports do (the sandbox)
//! - `active`: the version in service, and the canary records for the next one
//! - `reload`: watching the policy and key files, checking and swapping new versions

mod active;
mod bindings;
mod host;
mod imports;
pub mod reload;
mod runtime;

pub use active::{ActivePolicy, Canary};
pub use bindings::masq::policy::types::{Field, Metadata, Outcome, PolicyInfo, Record, Value};
pub use host::{BatchError, PolicyHost, PolicyOptions};
pub use runtime::PolicyRuntime;
