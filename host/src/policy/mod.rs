//! The policy host: loads a WebAssembly component once, runs each batch in a fresh sandbox,
//! and swaps in new versions while running.

mod active;
mod bindings;
mod host;
mod imports;
pub mod reload;

pub use active::{ActivePolicy, Canary};
pub use bindings::masq::policy::types::{Field, Metadata, Outcome, PolicyInfo, Record, Value};
pub use host::{BatchError, PolicyHost, PolicyOptions, PolicyRuntime};
