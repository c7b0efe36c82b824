//! masq as a library: `source -> pipeline -> policy -> sink`, with the commands apart. Used by
//! the `masq` binary, the integration tests, the benchmarks and the fuzz targets.
//!
//! - `source`: where messages come from (SQS, a file, the dead letters) and decoding them
//! - `pipeline`: the one pipeline every command runs (batch, decide, judge, write, acknowledge)
//! - `policy`: the WebAssembly sandbox policies run in, and swapping them while running
//! - `sink`: PostgreSQL (rows, ledger, dead letters in one transaction)
//! - `keys`: the key file and what the `pseudonym` and `seal` imports compute
//! - `ops`: metrics and probes, logging, failpoints
//! - `cli` (clap only) -> `config` (validated settings) -> `commands` (one per subcommand)

pub mod cli;
pub mod commands;
pub mod config;
pub mod keys;
pub mod ops;
pub mod pipeline;
pub mod policy;
pub mod sink;
pub mod source;
