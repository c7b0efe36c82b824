//! The policy host: loads a WebAssembly component once, runs each batch in a fresh sandbox.

mod bindings;
mod host;
mod imports;

pub use bindings::masq::policy::types::{Field, Metadata, Outcome, PolicyInfo, Record, Value};
pub use host::{BatchError, PolicyHost, PolicyOptions};
