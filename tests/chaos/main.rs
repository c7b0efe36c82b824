//! Chaos tests: the real `masq` binary killed, starved of its database and fed a faulty SQS,
//! and every time the same promise checked at the end: each good message is exactly one row,
//! each malformed one exactly one dead letter, the ledger holds every message once, and the
//! queue is empty.
//!
//! They run against a private PostgreSQL (scripts/chaos-pg.sh, target/chaos-pg) that they may
//! stop hard, and the shared SQS server, some through tools/faultproxy. `cargo test` runs this
//! binary after the integration tests, never beside them; inside it, one scenario runs at a
//! time (`exclusive`). Sizes: short by default (part of `just test`), `MASQ_CHAOS=full` for
//! the long form (`just chaos`).
//!
//! The sandbox's resident-memory test (sandbox_memory.rs) lives here too: it measures the
//! whole process, so it needs one where nothing else runs beside it, which `exclusive` gives.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod drain_under_errors;
mod kill9;
mod pg_restart;
// Not chaos, but a measurement of the whole process's memory that no other test may disturb.
mod sandbox_memory;
mod scale_out;
mod slow_policy;
mod sqs_faults;
