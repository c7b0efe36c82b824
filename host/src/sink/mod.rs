//! Where decided messages go: PostgreSQL. One transaction per batch writes the rows, claims
//! each message id in masq's ledger and stores the dead letters; nothing is acknowledged to
//! the source before it commits.
//!
//! - `database`: connecting, with timeouts, and errors that say where and what to do
//! - `postgres`: `PostgresSink`, the pipeline's sink: (re)connects and sorts errors
//! - `transaction`: one batch's transaction (ledger claim, COPY, dead letters)
//! - `letter_body`: what of a dead letter's body is stored (sealed, its shape, or in clear)
//! - `ledger`: the compact, partitioned ledger (claims, partitions, retention, its tables)
//! - `schema`: the target table's columns and how a value becomes a cell
//! - `sql`: identifier quoting, storable text, SQL error classes
//! - `tables`: masq's own tables (dead letters, policy events, the ledger's) and their creation
//! - `events`: policy events, recorded for `masq status`

pub mod database;
pub mod events;
pub mod ledger;
pub mod letter_body;
pub mod postgres;
pub mod schema;
pub mod sql;
pub mod tables;
mod transaction;

use crate::pipeline::batch::{Item, Provenance};
use std::future::Future;

/// What one committed batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    pub written: u64,
    pub dropped: u64,
    pub dead_lettered: u64,
    /// Messages another writer had already settled: redeliveries the ledger skipped, or dead
    /// letters another replay took.
    pub duplicates: u64,
}

impl WriteReport {
    pub fn add(&mut self, other: WriteReport) {
        self.written += other.written;
        self.dropped += other.dropped;
        self.dead_lettered += other.dead_lettered;
        self.duplicates += other.duplicates;
    }
}

/// Why a batch was not written. Data errors never get here: their rows become dead letters.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Worth retrying the same batch: the connection, a lock, a restart, a timeout.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: the message says what to fix.
    #[error("{0}")]
    Permanent(String),
}

/// Where the pipeline's workers write. Each worker owns one.
pub trait Sink: Send + Sync + 'static {
    /// Writes a batch in one transaction (message ids are unique within it). On `Ok` the batch
    /// is committed and every message in it may be acknowledged.
    fn write(
        &mut self,
        items: &[Item],
        provenance: &Provenance,
    ) -> impl Future<Output = Result<WriteReport, WriteError>> + Send;

    /// What `write` would do, without writing: one JSON line per message (see
    /// `batch::verdict_json`).
    fn preview(
        &mut self,
        items: &[Item],
    ) -> impl Future<Output = anyhow::Result<Vec<serde_json::Value>>> + Send;
}
