//! One module per subcommand. Each takes its validated config (see `config`), wires the core
//! together, and prints what the user asked for; none of them holds pipeline logic.
//!
//! - `run` (SQS), `load` (a file), `replay` (the dead letters): the one pipeline, three sources
//! - `db`: `db init` and `status`; `dead_letters`: listing, showing and sealing them; `seed`: filling a queue; `keys`: `keygen` and `reveal`
//! - `plugin`: `plugin check` and `plugin test`, for policy authors
//! - `setup`: the start-up `run`, `load` and `replay` share; `signals`: stopping on a signal

pub mod db;
pub mod dead_letters;
pub mod keys;
pub mod load;
pub mod plugin;
pub mod replay;
pub mod run;
pub mod seed;
mod setup;
mod signals;

use crate::ops::metrics::Counters;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

/// Exit code 3 says a drain could not finish because the policy fails on most records; the
/// job that ran it must fail. The same rule for `run --drain`, `load` and `replay`.
pub const EXIT_POLICY_BROKEN: u8 = 3;

/// The exit code of a pipeline command that ran to its end.
fn exit_code(counters: &Counters) -> ExitCode {
    if counters.policy_broken.load(Ordering::Relaxed) {
        ExitCode::from(EXIT_POLICY_BROKEN)
    } else {
        ExitCode::SUCCESS
    }
}

/// The first words of a summary: how the pipeline ended.
fn ending(counters: &Counters, stopped: bool, done: &str) -> String {
    if counters.policy_broken.load(Ordering::Relaxed) {
        "stopped, policy BROKEN (it fails on most records; messages left where they were)".into()
    } else if stopped {
        "stopped".into()
    } else {
        done.into()
    }
}
