//! `masq run`: the pipeline fed from an SQS queue, with everything a long-running consumer
//! needs around it: metrics and probes, hot reload of the policy and key files, policy events
//! for `masq status`, signals, a progress bar and the summary of a drain.

use super::{ending, exit_code, setup};
use crate::config::RunConfig;
use crate::ops::metrics::Counters;
use crate::pipeline::adapt::Receivers;
use crate::pipeline::decide::PolicyStep;
use crate::policy::reload::{ReloadReport, Reloader};
use crate::policy::{ActivePolicy, Canary, PolicyHost};
use crate::sink::events::EventLog;
use crate::sink::postgres::WriteMode;
use crate::source::sqs::SqsSource;
use anyhow::Context;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub async fn run(config: RunConfig) -> anyhow::Result<ExitCode> {
    let common = &config.common;
    let started = setup::start(common).await?;
    let keys = started.keys.clone();
    let active = Arc::new(ActivePolicy::new(started.policy));

    let source = SqsSource::connect(&config.queue_url, config.sqs_timeouts)
        .await?
        .with_visibility_timeout(config.visibility_timeout)
        .with_envelope(config.envelope)
        .with_payloads(config.payloads.clone());
    if source.is_fifo() {
        tracing::info!(
            queue = %config.queue_url,
            "FIFO queue: each message group is committed in send order; groups proceed in parallel"
        );
    }
    let (visible, _) = source.depth().await?;
    // Before the ledger is opened: opening it drops entries older than the retention.
    let (message_retention, visibility) = source.redelivery_window().await?;
    common
        .retention
        .check_against_queue(&config.queue_url, message_retention, visibility)?;
    let ledger = setup::ledger(common, !config.pipeline.dry_run).await?;

    let counters = Arc::new(Counters::default());
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot serve metrics on {addr}: is another process using it?")
        })?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
        tokio::spawn(crate::ops::http::serve(
            listener,
            counters.clone(),
            active.clone(),
        ));
    }
    let progress = (config.pipeline.drain && std::io::stderr().is_terminal())
        .then(|| spawn_progress(counters.clone(), visible));

    let events = EventLog::new(&common.database, &common.table.to_string());
    let record = async |event: &str| {
        let serving = active.current();
        events
            .record(event, Some(&serving), keys.current().key_id(), "")
            .await
    };
    record("started").await;
    let canary = Arc::new(Canary::new());
    let reloader = Reloader {
        loader: started.loader,
        plugin: common.policy.plugin.clone(),
        key_file: common.keys.key_file().map(Into::into),
        active: active.clone(),
        canary: canary.clone(),
        report: RunReports {
            counters: counters.clone(),
            events: events.clone(),
            keys: keys.clone(),
        },
    };
    let reloading = CancellationToken::new();
    let watcher = tokio::spawn(reloader.watch(reloading.clone()));

    tracing::info!(queue = %config.queue_url, table = %common.table, drain = config.pipeline.drain, "masq running");
    counters.ready.store(true, Ordering::Relaxed);
    let clock = Instant::now();
    let decider = PolicyStep {
        active: active.clone(),
        canary: Some(canary),
    };
    let result = setup::drive(
        common,
        &started.schema,
        &started.bodies,
        &ledger,
        source.clone(),
        WriteMode::Fresh,
        &config.pipeline,
        decider,
        counters.clone(),
    )
    .await;
    counters.ready.store(false, Ordering::Relaxed);
    reloading.cancel();
    let _ = watcher.await;
    if let Some(bar) = progress {
        bar.abort();
    }
    let stopped = result?;
    record("stopped").await;
    let seconds = clock.elapsed().as_secs_f64();

    let c = |v: &std::sync::atomic::AtomicU64| Counters::get(v);
    let (left, in_flight) = source.depth().await.unwrap_or((0, 0));
    let state = if config.pipeline.dry_run {
        "dry run (nothing written, nothing deleted; counts say what would have happened)"
            .to_string()
    } else {
        ending(&counters, stopped, "drained")
    };
    println!(
        "{state}: received {}, written {}, dead-lettered {}, dropped {}, duplicates skipped {}, handed back {}, \
         in {seconds:.2} s ({:.0} messages/s); policy swaps {}, refused {}; queue now has {left} visible, {in_flight} in flight; \
         receivers at most {} ({})",
        c(&counters.received),
        c(&counters.written),
        c(&counters.dead_lettered),
        c(&counters.dropped),
        c(&counters.duplicates),
        c(&counters.released),
        c(&counters.received) as f64 / seconds.max(1e-9),
        c(&counters.policy_swaps),
        c(&counters.policy_refusals),
        c(&counters.receivers_peak),
        match config.pipeline.receivers {
            Receivers::Auto { max } => format!("auto, up to {max}"),
            Receivers::Fixed(_) => "fixed".to_string(),
        },
    );
    // A drain that could not finish because the policy is broken must fail the job running it.
    Ok(if config.pipeline.drain {
        exit_code(&counters)
    } else {
        ExitCode::SUCCESS
    })
}

/// What a reload tells besides the log: the metrics, and the policy events `masq status` reads.
struct RunReports {
    counters: Arc<Counters>,
    events: EventLog,
    keys: Arc<crate::keys::Keys>,
}

impl ReloadReport for RunReports {
    async fn swapped(&self, new: &PolicyHost) {
        Counters::inc(&self.counters.policy_swaps, 1);
        self.events
            .record("swapped", Some(new), self.keys.current().key_id(), "")
            .await;
    }

    async fn refused(&self, serving: &PolicyHost, why: &str) {
        Counters::inc(&self.counters.policy_refusals, 1);
        self.events
            .record("refused", Some(serving), None, why)
            .await;
    }

    async fn key_rotated(&self, serving: &PolicyHost, key_id: Option<&str>) {
        Counters::inc(&self.counters.key_reloads, 1);
        self.events
            .record("key_rotated", Some(serving), key_id, "")
            .await;
    }

    async fn key_refused(&self, why: &str) {
        Counters::inc(&self.counters.key_refusals, 1);
        self.events.record("key_refused", None, None, why).await;
    }
}

fn spawn_progress(counters: Arc<Counters>, total: u64) -> tokio::task::JoinHandle<()> {
    let bar = indicatif::ProgressBar::new(total.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} messages ({per_sec}) {msg}",
        )
        .expect("valid template"),
    );
    tokio::spawn(async move {
        loop {
            let received = Counters::get(&counters.received);
            if received > bar.length().unwrap_or(0) {
                bar.set_length(received);
            }
            bar.set_position(received);
            bar.set_message(format!(
                "written {}, dead-lettered {}",
                Counters::get(&counters.written),
                Counters::get(&counters.dead_lettered)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
