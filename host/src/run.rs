//! `masq run`: wires key, policy, table, queue and signals together, runs the pipeline and
//! prints the summary. Everything that can be checked is checked before the first receive.

use crate::cli::RunArgs;
use crate::keys::Keys;
use crate::metrics::Counters;
use crate::pipeline::{self, PipelineConfig};
use crate::policy::reload::Reloader;
use crate::policy::{ActivePolicy, Canary, PolicyOptions};
use crate::setup;
use crate::sink::events::EventLog;
use crate::source::sqs::SqsSource;
use anyhow::Context;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Longest a stop may take from signal to exit.
const STOP_DEADLINE: Duration = Duration::from_secs(25);

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let keys = Arc::new(Keys::new(setup::pseudonymizer(
        args.key_file.as_deref(),
        args.unkeyed,
    )?));
    let options = PolicyOptions {
        deadline: Duration::from_millis(args.policy_deadline_ms),
        memory_limit: (args.policy_memory_mb as usize) << 20,
        config: args.policy_config.clone(),
        ..PolicyOptions::default()
    };
    let database = args.database.database()?;
    let setup::Loaded {
        table,
        schema,
        loader,
        policy,
    } = setup::load_policy(
        &args.plugin,
        &database,
        &args.table,
        options,
        keys.clone(),
        args.plugin_sha256.clone(),
    )
    .await?;
    let active = Arc::new(ActivePolicy::new(policy));

    let source = SqsSource::connect(&args.queue.queue_url, args.queue.timeouts()).await?;
    let (visible, _) = source.depth().await?;

    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());

    let counters = Arc::new(Counters::default());
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot serve metrics on {addr}: is another process using it?")
        })?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
        tokio::spawn(crate::metrics::serve(
            listener,
            counters.clone(),
            active.clone(),
        ));
    }
    let progress = (args.drain && std::io::stderr().is_terminal())
        .then(|| spawn_progress(counters.clone(), visible));

    let events = EventLog::new(&database, &table.to_string());
    events
        .record(
            "started",
            Some(&active.current()),
            keys.current().key_id(),
            "",
        )
        .await;
    let canary = Arc::new(Canary::new());
    let reloader = Reloader {
        loader,
        plugin: args.plugin.clone(),
        key_file: args.key_file.clone(),
        active: active.clone(),
        canary: canary.clone(),
        counters: counters.clone(),
        events: events.clone(),
    };
    let reloading = CancellationToken::new();
    let watcher = tokio::spawn(reloader.watch(reloading.clone()));

    let config = PipelineConfig {
        database: database.clone(),
        batch_size: args.batch_size as usize,
        batch_wait: Duration::from_millis(args.batch_wait_ms),
        receivers: args.receivers as usize,
        workers: args.workers as usize,
        visibility_timeout: args.visibility_timeout,
        wait_seconds: args.wait_seconds,
        drain: args.drain || args.dry_run,
        dry_run: args.dry_run,
        stall_after: Duration::from_secs(args.stall_timeout),
    };
    tracing::info!(queue = %args.queue.queue_url, table = %table, drain = args.drain, "masq running");
    counters.ready.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let result = pipeline::run(
        config,
        source.clone(),
        active.clone(),
        canary,
        schema,
        counters.clone(),
        stop.clone(),
    )
    .await;
    counters.ready.store(false, Ordering::Relaxed);
    reloading.cancel();
    let _ = watcher.await;
    if let Some(bar) = progress {
        bar.abort();
    }
    result?;
    events
        .record(
            "stopped",
            Some(&active.current()),
            keys.current().key_id(),
            "",
        )
        .await;
    let seconds = started.elapsed().as_secs_f64();

    let broken = counters.policy_broken.load(Ordering::Relaxed);
    let c = |v: &std::sync::atomic::AtomicU64| Counters::get(v);
    let (left, in_flight) = source.depth().await.unwrap_or((0, 0));
    let summary = format!(
        "{}: received {}, written {}, dead-lettered {}, dropped {}, duplicates skipped {}, handed back {}, \
         in {:.2} s ({:.0} messages/s); policy swaps {}, refused {}; queue now has {} visible, {} in flight",
        if args.dry_run {
            "dry run (nothing written, nothing deleted; counts say what would have happened)"
        } else if broken {
            "stopped, policy BROKEN (it fails on most records; messages left in the queue)"
        } else if stop.is_cancelled() {
            "stopped"
        } else {
            "drained"
        },
        c(&counters.received),
        c(&counters.written),
        c(&counters.dead_lettered),
        c(&counters.dropped),
        c(&counters.duplicates),
        c(&counters.released),
        seconds,
        c(&counters.received) as f64 / seconds.max(1e-9),
        c(&counters.policy_swaps),
        c(&counters.policy_refusals),
        left,
        in_flight,
    );
    println!("{summary}");
    // A drain that could not finish because the policy is broken must fail the job running it.
    Ok(if broken && (args.drain || args.dry_run) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn spawn_signal_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!(
            "stopping: no new receives; finishing batches in flight, handing back the rest"
        );
        stop.cancel();
        // A stop must not hang: past the deadline, exit. Messages not yet deleted reappear
        // after their visibility timeout and the ledger skips those already written.
        std::thread::spawn(|| {
            std::thread::sleep(STOP_DEADLINE);
            crate::logging::fatal(&format!(
                "stop took longer than {} s; exiting now",
                STOP_DEADLINE.as_secs()
            ));
            std::process::exit(2);
        });
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        crate::logging::fatal("second signal: exiting now");
        std::process::exit(130);
    });
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
