//! `masq load`: the pipeline fed from a JSONL file or stdin instead of SQS: for backfills
//! (re-running a load is safe: each line's id is `<source-id>:<line>`, and the ledger skips
//! lines already written) and for measuring the host path without a queue in front of it.

use super::{ending, exit_code, setup, signals};
use crate::config::LoadConfig;
use crate::ops::metrics::Counters;
use crate::pipeline::decide::PolicyStep;
use crate::policy::ActivePolicy;
use crate::sink::postgres::WriteMode;
use crate::source::jsonl::JsonlSource;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

pub async fn run(config: LoadConfig) -> anyhow::Result<ExitCode> {
    let common = &config.common;
    let started = setup::start(common).await?;
    let source = JsonlSource::open(&config.input, config.source_id.clone(), config.sent_ms)?;
    let sinks = setup::sinks(
        common,
        &started.schema,
        WriteMode::Fresh,
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
    let clock = Instant::now();
    crate::pipeline::run(
        config.pipeline.clone(),
        source,
        sinks,
        decider,
        counters.clone(),
        stop.clone(),
    )
    .await?;
    let seconds = clock.elapsed().as_secs_f64();
    let c = |v: &std::sync::atomic::AtomicU64| Counters::get(v);
    let lines = c(&counters.received);
    let released = c(&counters.released);
    println!(
        "{} {lines} lines: written {}, dead-lettered {}, dropped {}, duplicates skipped {}, in {seconds:.2} s ({:.0} rows/s){}",
        ending(&counters, stop.is_cancelled(), "loaded"),
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
