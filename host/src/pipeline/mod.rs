//! The one pipeline: source -> decide (decode, policy) -> judge (breaker) -> write (sink) ->
//! acknowledge. `masq run` feeds it from SQS, `masq load` from a file, `masq replay` from the
//! dead letters; all three get the same breaker, retries, metrics and exactly-once.
//!
//! Receivers keep receives in flight and hand chunks of messages to workers; each worker
//! gathers a batch, decides it in a fresh sandbox, writes rows, ledger and dead letters in one
//! transaction, and only then acknowledges the messages. A heartbeat keeps every message masq
//! holds claimed until it is acknowledged or handed back. The loops end on a stop signal, a
//! permanent error or, draining, when the source is empty; never because of one message.
//!
//! - `batch`: what is decided for each message; `decide`: decode + policy
//! - `breaker`: tells a broken policy from bad data; `backoff`: pauses between retries
//! - `held`: what masq holds, and when a drain is over
//! - `receive`: receivers and the heartbeat; `worker`: the worker; `watchdog`: stall reports

pub mod adapt;
pub mod backoff;
pub mod batch;
pub mod breaker;
pub mod decide;
mod held;
mod receive;
mod receivers;
pub mod scrub;
mod watchdog;
mod worker;

use crate::ops::metrics::Counters;
use crate::sink::Sink;
use crate::source::{Message, Source};
use decide::Decide;
use held::Held;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Most messages in one batch (one policy call, one transaction).
    pub batch_size: usize,
    /// Longest to wait for a batch to fill.
    pub batch_wait: Duration,
    /// Receive calls in flight (at most what the source allows): fixed, or adapted.
    pub receivers: adapt::Receivers,
    /// Batches processed at once, each by a worker with its own sink.
    pub workers: usize,
    /// Long-poll wait of each receive.
    pub wait: Duration,
    /// Stop when the source is empty.
    pub drain: bool,
    /// Print what would be written instead of writing; hold every message until the end,
    /// then hand all of them back.
    pub dry_run: bool,
    /// How long masq may hold messages without moving before it says so (log, /healthz).
    pub stall_after: Duration,
}

/// The first error that stops the pipeline (a missing privilege, an unreadable file); it is
/// returned once every message is back where it came from.
#[derive(Clone, Default)]
pub(crate) struct Fatal(Arc<Mutex<Option<anyhow::Error>>>);

impl Fatal {
    fn set(&self, e: anyhow::Error) {
        self.0.lock().expect("fatal lock").get_or_insert(e);
    }

    fn take(&self) -> Option<anyhow::Error> {
        self.0.lock().expect("fatal lock").take()
    }
}

/// Runs until `stop` is cancelled or, draining, the source is empty. One sink per worker.
pub async fn run<S: Source, K: Sink, D: Decide>(
    config: PipelineConfig,
    source: S,
    sinks: Vec<K>,
    decider: Arc<D>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let workers = sinks.len();
    let (slots, starting) = receivers::slots(config.receivers, source.max_receivers());
    counters.set_stall_after(config.stall_after);
    let held = Arc::new(Held::new(slots, starting, counters.clone()));
    let fatal = Fatal::default();
    let watchdog_stop = CancellationToken::new();
    let watchdog = tokio::spawn(watchdog::watchdog_loop(
        counters.clone(),
        config.stall_after,
        watchdog_stop.clone(),
    ));

    // Receiving stops on `stop` or when drained; workers finish what they hold, then stop.
    let receiving = stop.child_token();
    // A finite source (a file) came back empty: no more messages will come, so a worker
    // filling a batch stops waiting for them.
    let input_ended = CancellationToken::new();
    // Room for each worker's next batch, counted in receives; a receiver that finds it full
    // waits (and says so to the pool: the workers are the bottleneck). What masq holds stays
    // bounded.
    let chunk = source.max_chunk().max(1);
    let (tx, rx) = mpsc::channel::<Vec<Message>>(workers * config.batch_size.div_ceil(chunk) + 4);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let pool = receivers::Pool {
        source: source.clone(),
        config: config.clone(),
        held: held.clone(),
        counters: counters.clone(),
        tx,
        receiving: receiving.clone(),
        input_ended: input_ended.clone(),
        fatal: fatal.clone(),
        stats: Arc::default(),
    };
    let receiving_task = tokio::spawn(pool.run());

    let heartbeat_stop = CancellationToken::new();
    let heartbeat = tokio::spawn(receive::heartbeat_loop(
        source.clone(),
        held.clone(),
        heartbeat_stop.clone(),
    ));

    let shared = Arc::new(worker::Shared {
        config: config.clone(),
        breaker: breaker::Breaker::default(),
        held: held.clone(),
        counters: counters.clone(),
        stop: stop.clone(),
        input_ended,
        fatal: fatal.clone(),
    });
    let mut worker_tasks = JoinSet::new();
    for sink in sinks {
        let worker = worker::Worker {
            sink,
            source: source.clone(),
            decider: decider.clone(),
            shared: shared.clone(),
        };
        worker_tasks.spawn(worker.run(rx.clone()));
    }

    // Only workers may hold the receiving end: when they stop, senders must see it closed.
    drop(rx);
    let _ = receiving_task.await;
    while worker_tasks.join_next().await.is_some() {}
    // Messages still held were received but never started (stop came first): hand them back.
    let leftovers: Vec<String> = held.older_than(Duration::ZERO);
    if !leftovers.is_empty() {
        let refs: Vec<&str> = leftovers.iter().map(String::as_str).collect();
        source.release(&refs, Duration::ZERO).await;
        Counters::inc(&counters.released, refs.len() as u64);
        held.remove(refs.into_iter(), true);
    }
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    watchdog_stop.cancel();
    let _ = watchdog.await;
    match fatal.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
