//! decode -> transform -> write -> acknowledge.
//!
//! Receivers keep several long polls in flight and hand chunks of messages to workers; each
//! worker gathers a batch, decodes it, runs the policy in a fresh sandbox, writes rows, ledger
//! and dead letters in one transaction, and only then deletes the messages. A heartbeat keeps
//! every message masq holds invisible to other consumers until it is deleted or handed back.
//! The loops end on a stop signal or, with `--drain`, when the queue is empty; they never end
//! because of one bad message.

use crate::batch::{Item, Provenance, Stage, Verdict};
use crate::breaker::{self, Breaker};
use crate::decode::decode_body;
use crate::metrics::Counters;
use crate::policy::{ActivePolicy, BatchError, Canary, Metadata, Outcome, PolicyHost, Record};
use crate::sink::postgres::{PostgresSink, WriteReport};
use crate::sink::schema::TableSchema;
use crate::source::Message;
use crate::source::sqs::SqsSource;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How the pipeline runs; built from the CLI by `main`.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub database_url: String,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub receivers: usize,
    pub workers: usize,
    pub visibility_timeout: i32,
    pub wait_seconds: i32,
    pub drain: bool,
}

/// Every message masq holds, from receipt until it is deleted or handed back. The heartbeat
/// extends these; drain mode is done when nothing is held and every receiver found the queue
/// empty.
struct Held {
    inner: Mutex<HeldState>,
    changed: Notify,
    receivers: usize,
}

#[derive(Default)]
struct HeldState {
    receipts: HashMap<String, Instant>,
    /// Receivers whose last receive came back empty and that wait for the verdict.
    idle_receivers: usize,
    drained: bool,
}

impl Held {
    fn add(&self, messages: &[Message]) {
        let now = Instant::now();
        let mut s = self.inner.lock().expect("held lock");
        for m in messages {
            s.receipts.insert(m.receipt.clone(), now);
        }
    }

    fn remove<'a>(&self, receipts: impl Iterator<Item = &'a str>) {
        let mut s = self.inner.lock().expect("held lock");
        for r in receipts {
            s.receipts.remove(r);
        }
        drop(s);
        self.changed.notify_waiters();
    }

    fn older_than(&self, age: Duration) -> Vec<String> {
        let s = self.inner.lock().expect("held lock");
        s.receipts.iter().filter(|(_, t)| t.elapsed() >= age).map(|(r, _)| r.clone()).collect()
    }

    /// A receiver found the queue empty. Returns true once every receiver has, while masq
    /// holds nothing: that is an empty queue, not a gap between two receives.
    fn idle(&self) -> bool {
        let mut s = self.inner.lock().expect("held lock");
        s.idle_receivers += 1;
        if s.idle_receivers == self.receivers && s.receipts.is_empty() {
            s.drained = true;
        }
        s.drained
    }

    fn busy(&self) {
        self.inner.lock().expect("held lock").idle_receivers -= 1;
    }
}

/// Runs until `stop` is cancelled or, in drain mode, the queue is empty.
pub async fn run(
    config: PipelineConfig,
    source: SqsSource,
    policy: Arc<ActivePolicy>,
    canary: Arc<Canary>,
    schema: Arc<TableSchema>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // Connect every worker before receiving anything, so a bad DATABASE_URL holds no message.
    let mut sinks = Vec::with_capacity(config.workers);
    for _ in 0..config.workers {
        sinks.push(PostgresSink::connect(&config.database_url, schema.clone()).await?);
    }

    let held = Arc::new(Held { inner: Mutex::default(), changed: Notify::new(), receivers: config.receivers });
    // Receiving stops on `stop` or when drained; workers finish what they hold, then stop.
    let receiving = stop.child_token();
    let (tx, rx) = mpsc::channel::<Vec<Message>>(config.workers * config.batch_size.div_ceil(10) + config.receivers);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));

    let mut receivers = JoinSet::new();
    for _ in 0..config.receivers {
        receivers.spawn(receive_loop(
            source.clone(),
            config.clone(),
            held.clone(),
            counters.clone(),
            tx.clone(),
            receiving.clone(),
        ));
    }
    drop(tx);

    let heartbeat_stop = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat_loop(
        source.clone(),
        held.clone(),
        config.visibility_timeout,
        heartbeat_stop.clone(),
    ));

    let breaker = Arc::new(Breaker::default());
    let mut workers = JoinSet::new();
    for sink in sinks {
        workers.spawn(worker_loop(
            sink,
            source.clone(),
            policy.clone(),
            canary.clone(),
            breaker.clone(),
            config.clone(),
            held.clone(),
            counters.clone(),
            rx.clone(),
            stop.clone(),
        ));
    }

    // Only workers may hold the receiving end: when they stop, senders must see it closed.
    drop(rx);
    while receivers.join_next().await.is_some() {}
    while workers.join_next().await.is_some() {}
    // Messages still held were received but never started (stop came first): hand them back.
    let leftovers: Vec<String> = held.older_than(Duration::ZERO);
    if !leftovers.is_empty() {
        let refs: Vec<&str> = leftovers.iter().map(String::as_str).collect();
        source.set_visibility(&refs, 0).await;
        counters.released.fetch_add(refs.len() as u64, Ordering::Relaxed);
        held.remove(refs.into_iter());
    }
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    Ok(())
}

async fn receive_loop(
    source: SqsSource,
    config: PipelineConfig,
    held: Arc<Held>,
    counters: Arc<Counters>,
    tx: mpsc::Sender<Vec<Message>>,
    receiving: CancellationToken,
) {
    let wait = if config.drain { config.wait_seconds.min(1) } else { config.wait_seconds };
    let mut backoff = Duration::from_millis(500);
    loop {
        let receive = source.receive(wait, config.visibility_timeout);
        tokio::pin!(receive);
        let received = tokio::select! {
            r = &mut receive => r,
            _ = receiving.cancelled() => {
                // A receive cut off mid-flight may already have taken messages, which would
                // then stay invisible for a whole timeout. With messages waiting it returns
                // within milliseconds, so let it finish briefly and hand back what it got.
                if let Ok(Ok(messages)) = tokio::time::timeout(Duration::from_secs(2), &mut receive).await
                    && !messages.is_empty()
                {
                    let receipts: Vec<&str> = messages.iter().map(|m| m.receipt.as_str()).collect();
                    source.set_visibility(&receipts, 0).await;
                    counters.received.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                    counters.released.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                }
                return;
            }
        };
        match received {
            Ok(messages) if messages.is_empty() => {
                backoff = Duration::from_millis(500);
                if config.drain {
                    if held.idle() {
                        receiving.cancel();
                        return;
                    }
                    // Wait for held messages to finish (they may come back) or a short pause.
                    let notified = held.changed.notified();
                    tokio::select! {
                        _ = receiving.cancelled() => return,
                        _ = notified => {},
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {},
                    }
                    held.busy();
                }
            }
            Ok(messages) => {
                backoff = Duration::from_millis(500);
                held.add(&messages);
                counters.received.fetch_add(messages.len() as u64, Ordering::Relaxed);
                let permit = tokio::select! {
                    _ = receiving.cancelled() => Err(()),
                    permit = tx.reserve() => permit.map_err(|_| ()),
                };
                match permit {
                    Ok(permit) => permit.send(messages),
                    Err(()) => {
                        // Stopping, or workers gone: give these back now rather than let
                        // them sit invisible until their timeout.
                        let receipts: Vec<&str> = messages.iter().map(|m| m.receipt.as_str()).collect();
                        source.set_visibility(&receipts, 0).await;
                        counters.released.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                        held.remove(receipts.into_iter());
                        return;
                    }
                }
            }
            Err(e) => {
                Counters::inc(&counters.sqs_errors, 1);
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "receive failed");
                tokio::select! {
                    _ = receiving.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn heartbeat_loop(source: SqsSource, held: Arc<Held>, visibility_timeout: i32, stop: CancellationToken) {
    // Extend at a third of the timeout, so one failed extension still leaves time for the next.
    let period = Duration::from_secs(visibility_timeout as u64) / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {},
        }
        let receipts = held.older_than(period);
        if !receipts.is_empty() {
            tracing::debug!(messages = receipts.len(), "extending visibility of held messages");
            let refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
            source.set_visibility(&refs, visibility_timeout).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn worker_loop(
    mut sink: PostgresSink,
    source: SqsSource,
    policy: Arc<ActivePolicy>,
    canary: Arc<Canary>,
    breaker: Arc<Breaker>,
    config: PipelineConfig,
    held: Arc<Held>,
    counters: Arc<Counters>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<Message>>>>,
    stop: CancellationToken,
) {
    let mut acks = JoinSet::new();
    loop {
        let Some(batch) = next_batch(&rx, config.batch_size, config.batch_wait, &stop).await else { break };
        let started = Instant::now();
        // The version in service when the batch starts decides all of it, even if a swap
        // happens meanwhile; the ledger names exactly this version.
        let policy = policy.current();
        let provenance = Provenance {
            name: policy.info().name.clone(),
            version: policy.info().version.clone(),
            digest: policy.digest().to_string(),
        };
        let (items, health) = decide(&policy, &canary, &counters, &source, batch).await;
        if let breaker::Verdict::Broken { failed, evaluated, back_off } =
            breaker.judge(policy.digest(), health.failed, health.evaluated)
        {
            // Not bad data: the policy fails on most records. Dead-lettering would drain the
            // queue into the dead-letter table; leave the messages in the queue instead.
            counters.policy_broken.store(true, Ordering::Relaxed);
            Counters::inc(&counters.policy_broken_batches, 1);
            tracing::error!(
                policy = %policy.info().name,
                version = %policy.info().version,
                failed,
                evaluated,
                back_off_s = back_off.as_secs(),
                last_error = %health.last_error,
                "policy is BROKEN: it fails on most records. Messages stay in the queue, nothing is \
                 dead-lettered; fix or swap the policy (replace the file, or SIGHUP)"
            );
            let receipts: Vec<&str> = items.iter().map(|i| i.message.receipt.as_str()).collect();
            source.set_visibility(&receipts, back_off.as_secs().min(43_200) as i32).await;
            Counters::inc(&counters.released, receipts.len() as u64);
            held.remove(receipts.into_iter());
            if config.drain {
                // A drain cannot finish with a broken policy: stop and say so (exit code 3).
                stop.cancel();
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(back_off) => continue,
            }
        }
        counters.policy_broken.store(false, Ordering::Relaxed);
        match write_with_retry(&mut sink, &items, &provenance, &config.database_url, &counters, &stop).await {
            Some(report) => {
                crate::failpoint::crash_after_commit();
                add_report(&counters, report);
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters.observe_batch(started.elapsed().as_secs_f64());
                tracing::debug!(
                    messages = items.len(),
                    written = report.written,
                    dead_lettered = report.dead_lettered,
                    duplicates = report.duplicates,
                    ms = started.elapsed().as_millis() as u64,
                    "batch committed"
                );
                // Deleting after commit, off the worker's path: the next batch need not wait.
                let source = source.clone();
                let held = held.clone();
                acks.spawn(async move {
                    let receipts: Vec<&str> = items.iter().map(|i| i.message.receipt.as_str()).collect();
                    source.delete(&receipts).await;
                    held.remove(receipts.into_iter());
                });
            }
            None => {
                // Stopping and the database never took the batch: give the messages back.
                let receipts: Vec<&str> = items.iter().map(|i| i.message.receipt.as_str()).collect();
                source.set_visibility(&receipts, 0).await;
                counters.released.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                held.remove(receipts.into_iter());
            }
        }
        while acks.try_join_next().is_some() {}
    }
    while acks.join_next().await.is_some() {}
}

/// Takes the next batch: waits for a first chunk, then fills up for at most `wait`.
/// `None` when stopping or when receivers are gone and nothing is left.
async fn next_batch(
    rx: &tokio::sync::Mutex<mpsc::Receiver<Vec<Message>>>,
    size: usize,
    wait: Duration,
    stop: &CancellationToken,
) -> Option<Vec<Message>> {
    let mut rx = rx.lock().await;
    let mut batch = tokio::select! {
        biased;
        _ = stop.cancelled() => return None,
        first = rx.recv() => first?,
    };
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < size {
        // A chunk is at most ten messages; a batch may end a little over `size` rather than
        // split a chunk.
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(more)) => batch.extend(more),
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch)
}

/// Decodes and transforms a batch: the verdict for every message, in order. Duplicates of a
/// message id within the batch (a redelivery that overtook the first copy) are acknowledged
/// with the first copy and not written again.
async fn decide(
    policy: &Arc<PolicyHost>,
    canary: &Canary,
    counters: &Counters,
    source: &SqsSource,
    batch: Vec<Message>,
) -> (Vec<Item>, PolicyHealth) {
    let mut seen = HashSet::with_capacity(batch.len());
    let mut items = Vec::with_capacity(batch.len());
    let mut duplicates = Vec::new();
    for message in batch {
        if seen.insert(message.id.clone()) {
            items.push(Item { verdict: Verdict::Drop, message });
        } else {
            duplicates.push(message);
        }
    }
    let mut records = Vec::with_capacity(items.len());
    let mut record_of = Vec::with_capacity(items.len());
    for (i, item) in items.iter_mut().enumerate() {
        match decode_body(&item.message.body) {
            Ok(fields) => {
                records.push(Record {
                    metadata: Metadata {
                        message_id: item.message.id.clone(),
                        sent_timestamp_ms: item.message.sent_ms,
                        receive_count: item.message.receive_count,
                        source: source.queue_url().to_string(),
                    },
                    fields,
                });
                record_of.push(i);
            }
            Err(reason) => item.verdict = Verdict::Dead { stage: Stage::Decode, reason },
        }
    }
    canary.remember(&records);
    let policy_started = Instant::now();
    let outcomes = transform(policy, records).await;
    Counters::inc(&counters.policy_nanos, policy_started.elapsed().as_nanos() as u64);
    let mut health = PolicyHealth { evaluated: outcomes.len() as u64, ..PolicyHealth::default() };
    for (i, outcome) in record_of.into_iter().zip(outcomes) {
        items[i].verdict = match outcome {
            Ok(Outcome::Keep(fields)) => Verdict::Row(fields),
            Ok(Outcome::Drop) => Verdict::Drop,
            Ok(Outcome::Reject(reason)) => Verdict::Dead { stage: Stage::Policy, reason },
            Err(e) => {
                health.failed += 1;
                let reason = e.to_string();
                health.last_error = reason.clone();
                Verdict::Dead { stage: Stage::Policy, reason }
            }
        };
    }
    // Redelivered copies ride along as drops; the ledger already has (or is getting) the id,
    // so they write nothing, and their receipts are deleted with the batch.
    items.extend(duplicates.into_iter().map(|message| Item { message, verdict: Verdict::Drop }));
    (items, health)
}

/// How the policy fared on a batch: records it ran on, records it failed on.
#[derive(Debug, Default)]
struct PolicyHealth {
    evaluated: u64,
    failed: u64,
    last_error: String,
}

fn add_report(c: &Counters, r: WriteReport) {
    Counters::inc(&c.written, r.written);
    Counters::inc(&c.dropped, r.dropped);
    Counters::inc(&c.dead_lettered, r.dead_lettered);
    Counters::inc(&c.duplicates, r.duplicates);
}

/// Runs the policy on a blocking thread; a failing batch is split to find its bad records
/// (see `PolicyHost::transform_isolated`).
async fn transform(policy: &Arc<PolicyHost>, records: Vec<Record>) -> Vec<Result<Outcome, BatchError>> {
    if records.is_empty() {
        return Vec::new();
    }
    let policy = policy.clone();
    tokio::task::spawn_blocking(move || policy.transform_isolated(&records))
        .await
        .expect("the policy runs in a sandbox and cannot panic the host")
}

/// Writes until the database takes the batch. Gives up only when stopping (after a grace
/// period), returning `None`: the caller then hands the messages back to the queue.
async fn write_with_retry(
    sink: &mut PostgresSink,
    items: &[Item],
    provenance: &Provenance,
    database_url: &str,
    counters: &Counters,
    stop: &CancellationToken,
) -> Option<WriteReport> {
    // Within the 25 s a stop may take, leave time to hand messages back.
    const GRACE_AFTER_STOP: Duration = Duration::from_secs(15);
    let mut backoff = Duration::from_millis(200);
    let mut stop_seen: Option<Instant> = None;
    // Duplicate copies of a message id in one batch would claim the id twice: write the first.
    let mut seen = HashSet::new();
    let unique: Vec<Item> = items.iter().filter(|i| seen.insert(i.message.id.clone())).cloned().collect();
    loop {
        if sink.is_closed() {
            match PostgresSink::connect(database_url, sink.schema()).await {
                Ok(new) => *sink = new,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot reconnect to PostgreSQL"),
            }
        }
        if !sink.is_closed() {
            match sink.write(&unique, provenance).await {
                Ok(report) => return Some(report),
                Err(e) => {
                    Counters::inc(&counters.postgres_errors, 1);
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "batch not written; retrying")
                }
            }
        }
        if stop.is_cancelled() {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if since.elapsed() >= GRACE_AFTER_STOP {
                return None;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
