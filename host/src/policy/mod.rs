//! The policy host: loads a WebAssembly component once, runs each batch in a fresh sandbox,
//! and swaps in new versions while running. Policies of contract 0.1 and 0.2 load alike.
//!
//! - `contract_v01`, `contract_v02`: each contract's generated bindings and its calls (the
//!   host's records into the contract's form and outcomes back)
//! - `record`: a decoded message as the host holds it, whatever the contract
//! - `runtime`: the engine (compile cache, pooling allocator, epoch deadlines, linker)
//! - `host`: one policy version: load checks, `transform`, isolation of failing records
//! - `imports`: what a policy may import and what those imports do (the sandbox)
//! - `active`: the version in service, and the canary records for the next one
//! - `reload`: watching the policy and key files, checking and swapping new versions

/// The generated bindings of one contract version (`path`: its WIT folder). Records compare
/// with `==`. The seal import (`seal`: its name in that version) traps where there is no key
/// to seal with; a policy importing it is refused at load then, so the trap only backs that
/// check up.
macro_rules! contract_bindings {
    ($path:literal, $($trappable:literal),+) => {
        wasmtime::component::bindgen!({
            path: $path,
            world: "policy-plugin",
            additional_derives: [PartialEq],
            imports: { $($trappable: trappable),+ },
        });
    };
}

mod active;
mod contract_v01;
mod contract_v02;
mod host;
mod imports;
mod packed;
mod record;
pub mod reload;
mod runtime;

pub use active::{ActivePolicy, Canary};
pub use contract_v01::masq::policy::types::{Field, Outcome, PolicyInfo, Setting, Value};
pub use host::{BatchError, Contract, PolicyHost, PolicyOptions};
pub use record::{Metadata, Record};
pub use runtime::PolicyRuntime;

/// The values of the batch a policy is running on, as its log lines are scrubbed of them
/// (see `pipeline::scrub`): kept in the form the contract handed them to the policy.
pub trait LogSecrets: Send + Sync {
    /// `text` with every value of the batch (4+ characters, 2+ for a field in `pii`)
    /// replaced by `<field NAME>`.
    fn scrub(&self, text: &str, pii: &[String]) -> String;
}
