//! `masq load`: the pipeline fed from a JSONL file or stdin instead of SQS: for backfills
//! (re-running a load is safe: each line's id is `<source-id>:<line>`, and the ledger skips
//! lines already written) and for measuring the host path without a queue in front of it.

use super::{ending, exit_code, setup};
use crate::config::LoadConfig;
use crate::ops::metrics::Counters;
use crate::sink::ledger;
use crate::sink::postgres::WriteMode;
use crate::source::jsonl::JsonlSource;
use std::process::ExitCode;
use std::time::Instant;

pub async fn run(config: LoadConfig) -> anyhow::Result<ExitCode> {
    let common = &config.common;
    let started = setup::start(common).await?;
    let ledger = setup::ledger(common, true).await?;
    let source_id = JsonlSource::source_id(&config.input.path, config.input.source_id.clone());
    let sent_ms = match config.input.sent_ms {
        Some(ms) => ms,
        None => ledger::loads::sent_ms(&common.database, &ledger, &source_id).await?,
    };
    let source = JsonlSource::open(&config.input.path, source_id, sent_ms)?;
    let clock = Instant::now();
    let (counters, stopped) = setup::drive_to_end(
        common,
        started,
        &ledger,
        source,
        WriteMode::Fresh,
        &config.pipeline,
    )
    .await?;
    let seconds = clock.elapsed().as_secs_f64();
    let c = |v: &std::sync::atomic::AtomicU64| Counters::get(v);
    let lines = c(&counters.received);
    let released = c(&counters.released);
    println!(
        "{} {lines} lines: written {}, dead-lettered {}, dropped {}, duplicates skipped {}, in {seconds:.2} s ({:.0} rows/s){}",
        ending(&counters, stopped, "loaded"),
        c(&counters.written),
        c(&counters.dead_lettered),
        c(&counters.dropped),
        c(&counters.duplicates),
        lines as f64 / seconds.max(1e-9),
        if released > 0 {
            format!(
                "; {released} lines not loaded: run the same load again to finish (lines written are skipped)"
            )
        } else {
            String::new()
        }
    );
    if released > 0
        && !counters
            .policy_broken
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Ok(ExitCode::FAILURE);
    }
    Ok(exit_code(&counters))
}
