//! `masq replay`: the pipeline fed from a table's dead letters, through the current (fixed)
//! policy. Messages that now pass are written once (the ledger guards it) and leave the
//! dead-letter table; the rest stay, with the new reason.

use super::{exit_code, setup, signals};
use crate::config::ReplayConfig;
use crate::ops::metrics::Counters;
use crate::pipeline::batch::Provenance;
use crate::pipeline::decide::PolicyStep;
use crate::policy::ActivePolicy;
use crate::sink::postgres::WriteMode;
use crate::source::dead_letters::DeadLetterSource;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub async fn run(config: ReplayConfig) -> anyhow::Result<ExitCode> {
    let common = &config.common;
    // The same key as `masq run`, so replayed rows carry the same tokens as the others.
    let started = setup::start(common).await?;
    let provenance = Provenance::of(&started.policy);
    let source = DeadLetterSource::new(&common.database, &common.table.to_string());
    let sinks = setup::sinks(
        common,
        &started.schema,
        WriteMode::Replay,
        config.pipeline.workers,
    )
    .await?;
    let stop = CancellationToken::new();
    signals::stop_on_signal(stop.clone());
    let counters = Arc::new(Counters::default());
    let decider = Arc::new(PolicyStep {
        active: Arc::new(ActivePolicy::new(started.policy)),
        canary: None,
    });
    crate::pipeline::run(
        config.pipeline.clone(),
        source,
        sinks,
        decider,
        counters.clone(),
        stop.clone(),
    )
    .await?;
    let c = |v: &std::sync::atomic::AtomicU64| Counters::get(v);
    println!(
        "{} dead letters of {} through {} {}: written {}, dropped {}, still dead {}, skipped {}",
        super::ending(&counters, stop.is_cancelled(), "replayed"),
        common.table,
        provenance.name,
        provenance.version,
        c(&counters.written),
        c(&counters.dropped),
        c(&counters.dead_lettered),
        c(&counters.duplicates),
    );
    Ok(exit_code(&counters))
}
