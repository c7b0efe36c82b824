//! `masq replay`: the pipeline fed from a table's dead letters, through the current (fixed)
//! policy. Messages that now pass are written once (the ledger guards it) and leave the
//! dead-letter table; the rest stay, with the new reason.

use super::{ending, exit_code, setup};
use crate::config::ReplayConfig;
use crate::keys::Pseudonymizer;
use crate::ops::metrics::Counters;
use crate::pipeline::batch::Provenance;
use crate::sink::postgres::WriteMode;
use crate::source::dead_letters::DeadLetterSource;
use std::process::ExitCode;

pub async fn run(config: ReplayConfig) -> anyhow::Result<ExitCode> {
    let common = &config.common;
    // The same key as `masq run`, so replayed rows carry the same tokens as the others.
    let started = setup::start(common).await?;
    let provenance = Provenance::of(&started.policy);
    let ledger = setup::ledger(common, true).await?;
    // Sealed bodies open with the same key file (every key of it, so letters sealed before a
    // rotation open too).
    let ring = match &*started.keys.current() {
        Pseudonymizer::Keyed(ring) => Some(ring.clone()),
        Pseudonymizer::Unkeyed => None,
    };
    let source = DeadLetterSource::new(&common.database, &common.table.to_string(), ring);
    let shape_only = source.shape_only().await?;
    if shape_only > 0 {
        tracing::warn!(
            count = shape_only,
            "dead letters stored without a key file hold only their body's shape and cannot be \
             replayed; they stay in masq.dead_letters"
        );
    }
    let (counters, stopped) = setup::drive_to_end(
        common,
        started,
        &ledger,
        source,
        WriteMode::Replay,
        &config.pipeline,
    )
    .await?;
    let c = |v: &std::sync::atomic::AtomicU64| Counters::get(v);
    println!(
        "{} dead letters of {} through {} {}: written {}, dropped {}, still dead {}, skipped {}",
        ending(&counters, stopped, "replayed"),
        common.table,
        provenance.name,
        provenance.version,
        c(&counters.written),
        c(&counters.dropped),
        c(&counters.dead_lettered),
        c(&counters.duplicates),
    );
    if shape_only > 0 {
        println!("{shape_only} dead letter(s) hold only their body's shape (stored without a key file): not replayable");
    }
    Ok(exit_code(&counters))
}
